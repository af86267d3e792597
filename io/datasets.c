#include "io/datasets.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/data_internal.h"
#include "io/error.h"
#include "io/manifest.h"
#include "io/mapfile.h"

void kg_text_free(char *text) { free(text); }

void kg_text_list_free(kg_text_list *list) {
  if (!list) return;
  for (size_t i = 0; i < list->count; i++) free(list->texts[i]);
  free(list->texts);
  free(list->lens);
  memset(list, 0, sizeof(*list));
}

static int list_reserve_one(kg_text_list *list) {
  if (list->count < list->capacity) return KG_OK;
  size_t cap = list->capacity ? list->capacity * 2 : 64;
  char **texts = realloc(list->texts, cap * sizeof(*texts));
  if (!texts) return kg_error(KG_ERR_NOMEM, "text list: out of memory for %zu entries", cap);
  list->texts = texts;
  size_t *lens = realloc(list->lens, cap * sizeof(*lens));
  if (!lens) return kg_error(KG_ERR_NOMEM, "text list: out of memory for %zu entries", cap);
  list->lens = lens;
  list->capacity = cap;
  return KG_OK;
}

/* Appends text[0, len) followed by `suffix` (may be NULL). */
static int list_push_with_suffix(kg_text_list *list, const char *text, size_t len, const char *suffix) {
  size_t extra = suffix ? strlen(suffix) : 0;
  KG_TRY(list_reserve_one(list));
  if (len > SIZE_MAX - extra - 1) return kg_error(KG_ERR_NOMEM, "text list: entry of %zu bytes is too large", len);
  char *copy = malloc(len + extra + 1);
  if (!copy) return kg_error(KG_ERR_NOMEM, "text list: out of memory for %zu bytes", len + extra + 1);
  if (len) memcpy(copy, text, len);
  if (extra) memcpy(copy + len, suffix, extra);
  copy[len + extra] = '\0';
  list->texts[list->count] = copy;
  list->lens[list->count] = len + extra;
  list->count++;
  return KG_OK;
}

int kg_text_list_push(kg_text_list *list, const char *text, size_t len) {
  return list_push_with_suffix(list, text, len, NULL);
}

int kg_text_list_join(const kg_text_list *list, size_t first, size_t count, const char *sep, char **out,
                      size_t *out_len) {
  *out = NULL;
  if (out_len) *out_len = 0;
  if (first > list->count) first = list->count;
  if (count > list->count - first) count = list->count - first;
  size_t sep_len = sep ? strlen(sep) : 0;
  size_t total = 0;
  for (size_t i = 0; i < count; i++) {
    size_t add = list->lens[first + i] + (i ? sep_len : 0);
    if (total > SIZE_MAX - 1 - add) return kg_error(KG_ERR_NOMEM, "joining %zu texts: size overflows", count);
    total += add;
  }
  char *buf = malloc(total + 1);
  if (!buf) return kg_error(KG_ERR_NOMEM, "joining %zu texts: out of memory for %zu bytes", count, total + 1);
  size_t pos = 0;
  for (size_t i = 0; i < count; i++) {
    if (i && sep_len) {
      memcpy(buf + pos, sep, sep_len);
      pos += sep_len;
    }
    memcpy(buf + pos, list->texts[first + i], list->lens[first + i]);
    pos += list->lens[first + i];
  }
  buf[pos] = '\0';
  *out = buf;
  if (out_len) *out_len = pos;
  return KG_OK;
}

/* Length of the UTF-8 sequence at s (n bytes available) and its code point,
 * or 0 when the bytes are not a sequence Python's strict decoder accepts. */
static size_t utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    *cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    *cp = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;      /* overlong */
    else if (c == 0xED) hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    *cp = c & 0x07;
    if (c == 0xF0) lo = 0x90;      /* overlong */
    else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (s[i] & 0x3F);
  }
  return len;
}

int kg_text_check_utf8(const char *what, const char *buf, size_t len) {
  const unsigned char *s = (const unsigned char *)buf;
  size_t line = 1;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    if (s[i] == 0) return kg_error(KG_ERR_FORMAT, "%s:%zu: NUL byte at byte offset %zu", what, line, i);
    size_t step = utf8_sequence(s + i, len - i, &cp);
    if (!step)
      return kg_error(KG_ERR_FORMAT, "%s:%zu: invalid UTF-8 (byte 0x%02x at byte offset %zu)", what, line, s[i], i);
    if (s[i] == '\n') line++;
    i += step;
  }
  return KG_OK;
}

int kg_text_file(const char *path, char **text, size_t *len) {
  int rc = KG_OK;
  char *buf = NULL;
  size_t size = 0;
  *text = NULL;
  if (len) *len = 0;
  if ((rc = kg_read_file(path, &buf, &size)) < 0) goto done;
  if ((rc = kg_text_check_utf8(path, buf, size)) < 0) goto done;
  *text = buf;
  buf = NULL;
  if (len) *len = size;
done:
  free(buf);
  return rc;
}

/* Python's str.isspace() set (Python 3.11 Unicode database). */
static int is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

/* True when Python's s.strip() of the (valid UTF-8) bytes would be empty. */
static int python_strip_is_empty(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t step = utf8_sequence(u + i, n - i, &cp);
    if (!step || !is_python_space(cp)) return 0;
    i += step;
  }
  return 1;
}

int kg_wikitext_rows(const char *path, kg_text_list *rows) {
  int rc = KG_OK;
  char *buf = NULL;
  size_t size = 0;
  if ((rc = kg_text_file(path, &buf, &size)) < 0) goto done;
  for (size_t i = 0; i < size;) {
    size_t end = i;
    while (end < size && buf[end] != '\n' && buf[end] != '\r') end++;
    int has_newline = end < size;
    size_t next = end;
    if (has_newline) next += (buf[end] == '\r' && end + 1 < size && buf[end + 1] == '\n') ? 2 : 1;
    if (python_strip_is_empty(buf + i, end - i))
      rc = list_push_with_suffix(rows, "", 0, NULL);
    else
      rc = list_push_with_suffix(rows, buf + i, end - i, has_newline ? "\n" : NULL);
    if (rc < 0) goto done;
    i = next;
  }
done:
  free(buf);
  return rc;
}

int kg_wikitext_text(const char *path, char **text, size_t *len) {
  kg_text_list rows = {0};
  int rc = kg_wikitext_rows(path, &rows);
  if (rc == KG_OK) rc = kg_text_list_join(&rows, 0, rows.count, "\n\n", text, len);
  kg_text_list_free(&rows);
  return rc;
}

int kg_wikitext2_test_text(char **text, size_t *len) {
  char path[PATH_MAX];
  *text = NULL;
  KG_TRY(kg_resolve_data_file(KG_WIKITEXT2_TEST_FILE, path, sizeof(path)));
  return kg_wikitext_text(path, text, len);
}

static int jsonl_line(const char *path, size_t line_no, const char *line, size_t n, const char *field,
                      kg_text_list *out) {
  int rc = KG_OK;
  cJSON *doc = NULL;
  size_t start = 0;
  while (start < n && (line[start] == ' ' || line[start] == '\t' || line[start] == '\r')) start++;
  if (start == n) return KG_OK; /* blank lines are allowed */
  for (size_t i = 0; i < n; i++) {
    uint32_t cp;
    size_t step = line[i] ? utf8_sequence((const unsigned char *)line + i, n - i, &cp) : 0;
    if (!step) return kg_error(KG_ERR_FORMAT, "%s:%zu: invalid UTF-8 or NUL at column %zu", path, line_no, i + 1);
    i += step - 1;
  }
  if (kg_json_has_escaped_nul(line, n))
    return kg_error(KG_ERR_FORMAT, "%s:%zu: a string holds \\u0000, which kickgrid texts cannot carry", path,
                    line_no);
  const char *end = NULL;
  doc = cJSON_ParseWithLengthOpts(line, n, &end, 0);
  if (!doc) {
    size_t col = end && end >= line && end <= line + n ? (size_t)(end - line) + 1 : 0;
    rc = kg_error(KG_ERR_FORMAT, "%s:%zu: invalid JSON near column %zu", path, line_no, col);
    goto done;
  }
  for (const char *p = end; p && p < line + n; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\r') {
      rc = kg_error(KG_ERR_FORMAT, "%s:%zu: unexpected text after the JSON value at column %zu", path, line_no,
                    (size_t)(p - line) + 1);
      goto done;
    }
  }
  if (!cJSON_IsObject(doc)) {
    rc = kg_error(KG_ERR_FORMAT, "%s:%zu: expected a JSON object", path, line_no);
    goto done;
  }
  const cJSON *value = cJSON_GetObjectItemCaseSensitive(doc, field);
  if (!value) {
    rc = kg_error(KG_ERR_FORMAT, "%s:%zu: no field \"%s\"", path, line_no, field);
    goto done;
  }
  if (!cJSON_IsString(value) || !value->valuestring) {
    rc = kg_error(KG_ERR_FORMAT, "%s:%zu: field \"%s\" is not a string", path, line_no, field);
    goto done;
  }
  rc = kg_text_list_push(out, value->valuestring, strlen(value->valuestring));
done:
  cJSON_Delete(doc);
  return rc;
}

int kg_jsonl_texts(const char *path, const char *field, kg_text_list *out) {
  int rc = KG_OK;
  char *line = NULL;
  size_t line_cap = 0, line_no = 0;
  FILE *fp = fopen(path, "rb");
  if (!fp) return kg_error(errno == ENOENT ? KG_ERR_NOT_FOUND : KG_ERR_IO, "%s: %s", path, strerror(errno));
  ssize_t n;
  while ((n = getline(&line, &line_cap, fp)) >= 0) {
    line_no++;
    size_t len = (size_t)n;
    if (len && line[len - 1] == '\n') len--;
    if ((rc = jsonl_line(path, line_no, line, len, field, out)) < 0) goto done;
  }
  if (ferror(fp)) rc = kg_error(KG_ERR_IO, "%s:%zu: read error: %s", path, line_no + 1, strerror(errno));
done:
  free(line);
  fclose(fp);
  return rc;
}

static int is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Appends s[begin, end) trimmed of ASCII whitespace, unless that is empty. */
static int push_trimmed(kg_text_list *out, const char *s, size_t begin, size_t end) {
  while (begin < end && is_ascii_space(s[begin])) begin++;
  while (end > begin && is_ascii_space(s[end - 1])) end--;
  return end > begin ? kg_text_list_push(out, s + begin, end - begin) : KG_OK;
}

static int is_separator_line(const char *s, size_t n) {
  static const char sep[] = "<|endoftext|>";
  size_t a = 0, b = n;
  while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) a++;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r')) b--;
  return b - a == sizeof(sep) - 1 && !memcmp(s + a, sep, sizeof(sep) - 1);
}

int kg_tinystories_texts(const char *path, kg_text_list *out) {
  int rc = KG_OK;
  char *buf = NULL;
  size_t size = 0;
  if ((rc = kg_text_file(path, &buf, &size)) < 0) goto done;
  size_t story_begin = 0;
  for (size_t i = 0; i < size;) {
    size_t end = i;
    while (end < size && buf[end] != '\n') end++;
    if (is_separator_line(buf + i, end - i)) {
      if ((rc = push_trimmed(out, buf, story_begin, i)) < 0) goto done;
      story_begin = end < size ? end + 1 : size;
    }
    i = end + 1;
  }
  rc = push_trimmed(out, buf, story_begin, size);
done:
  free(buf);
  return rc;
}

static int c4_texts(const char *rel, kg_text_list *out) {
  char path[PATH_MAX];
  KG_TRY(kg_resolve_data_file(rel, path, sizeof(path)));
  return kg_jsonl_texts(path, "text", out);
}

int kg_c4_train_texts(kg_text_list *out) { return c4_texts(KG_C4_TRAIN_FILE, out); }
int kg_c4_validation_texts(kg_text_list *out) { return c4_texts(KG_C4_VALIDATION_FILE, out); }

int kg_c4_validation_text(size_t n_docs, char **text, size_t *len, size_t *n_used) {
  kg_text_list docs = {0};
  *text = NULL;
  int rc = kg_c4_validation_texts(&docs);
  if (rc == KG_OK) {
    size_t used = n_docs < docs.count ? n_docs : docs.count;
    rc = kg_text_list_join(&docs, 0, used, " ", text, len);
    if (n_used) *n_used = rc == KG_OK ? used : 0;
  }
  kg_text_list_free(&docs);
  return rc;
}
