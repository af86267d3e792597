#include "io/json_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/mapfile.h"

int kg_json_parse(const char *text, size_t len, const char *source, cJSON **out) {
  const char *end = NULL;
  *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!*out) {
    size_t at = end && end >= text ? (size_t)(end - text) : 0;
    return kg_error(KG_ERR_FORMAT, "%s: invalid JSON near byte %zu", source, at);
  }
  /* only whitespace may follow the value (safetensors pads headers with spaces) */
  for (size_t at = (size_t)(end - text); at < len; at++) {
    char ch = text[at];
    if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
      cJSON_Delete(*out);
      *out = NULL;
      return kg_error(KG_ERR_FORMAT, "%s: unexpected data after the JSON value at byte %zu", source, at);
    }
  }
  return KG_OK;
}

int kg_json_read_file(const char *path, cJSON **out) {
  char *text = NULL;
  size_t len = 0;
  *out = NULL;
  KG_TRY(kg_read_file(path, &text, &len));
  int rc = kg_json_parse(text, len, path, out);
  free(text);
  return rc;
}

static const cJSON *lookup(const cJSON *obj, const char *key) {
  const cJSON *it = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
  return it && !cJSON_IsNull(it) ? it : NULL;
}

int kg_json_opt_double(const cJSON *obj, const char *key, const char *source, double *out) {
  const cJSON *it = lookup(obj, key);
  if (!it) return 0;
  if (!cJSON_IsNumber(it)) return kg_error(KG_ERR_FORMAT, "%s: \"%s\" must be a number", source, key);
  *out = it->valuedouble;
  return 1;
}

int kg_json_opt_int(const cJSON *obj, const char *key, const char *source, long long *out) {
  const cJSON *it = lookup(obj, key);
  if (!it) return 0;
  double v = it->valuedouble;
  if (!cJSON_IsNumber(it) || v != floor(v) || fabs(v) > 9007199254740992.0)
    return kg_error(KG_ERR_FORMAT, "%s: \"%s\" must be an integer", source, key);
  *out = (long long)v;
  return 1;
}

int kg_json_opt_bool(const cJSON *obj, const char *key, const char *source, int *out) {
  const cJSON *it = lookup(obj, key);
  if (!it) return 0;
  if (!cJSON_IsBool(it)) return kg_error(KG_ERR_FORMAT, "%s: \"%s\" must be true or false", source, key);
  *out = cJSON_IsTrue(it);
  return 1;
}

int kg_json_opt_string(const cJSON *obj, const char *key, const char *source, const char **out) {
  const cJSON *it = lookup(obj, key);
  if (!it) return 0;
  if (!cJSON_IsString(it) || !it->valuestring)
    return kg_error(KG_ERR_FORMAT, "%s: \"%s\" must be a string", source, key);
  *out = it->valuestring;
  return 1;
}

int kg_json_req_int(const cJSON *obj, const char *key, const char *source, long long *out) {
  int rc = kg_json_opt_int(obj, key, source, out);
  if (rc == 0) return kg_error(KG_ERR_FORMAT, "%s: missing \"%s\"", source, key);
  return rc < 0 ? rc : KG_OK;
}

int kg_json_exact_uint(const cJSON *item, uint64_t *out) {
  if (!cJSON_IsNumber(item)) return KG_ERR_FORMAT;
  double v = item->valuedouble;
  if (!(v >= 0.0) || v > 9007199254740992.0 || v != floor(v)) return KG_ERR_FORMAT;
  *out = (uint64_t)v;
  return KG_OK;
}

cJSON *kg_json_float(float v) {
  char text[32];
  if (!isfinite(v)) return cJSON_CreateNull();
  if (v == floorf(v) && fabsf(v) < 1e9f) { /* 10000.0 rather than 1e+04 */
    snprintf(text, sizeof(text), "%.1f", (double)v);
    return cJSON_CreateRaw(text);
  }
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(text, sizeof(text), "%.*g", prec, (double)v);
    if ((float)strtod(text, NULL) == v) break;
  }
  return cJSON_CreateRaw(text);
}

size_t kg_json_quote(char *out, size_t cap, const char *s) {
  size_t n = 0;
#define PUT(ch)                                                                                                        \
  do {                                                                                                                 \
    if (n < cap) out[n] = (ch);                                                                                        \
    n++;                                                                                                               \
  } while (0)
  PUT('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      PUT('\\');
      PUT((char)*p);
    } else if (*p < 0x20) {
      char esc[8];
      snprintf(esc, sizeof(esc), "\\u%04x", *p);
      for (int i = 0; esc[i]; i++) PUT(esc[i]);
    } else {
      PUT((char)*p);
    }
  }
  PUT('"');
#undef PUT
  if (cap) out[n < cap ? n : cap - 1] = '\0';
  return n;
}
