/* GNU: FNM_CASEFOLD, memmem. */
/* Transforms that rebuild a manifest file from its upstream form. Each one
 * is documented in docs/data.md; the SHA-256 check after it is what makes
 * the result trustworthy, so they only need to be exact, not general. */
#include "io/data_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"

const char *const kg_data_transforms[] = {"head_bytes", "ggml_vocab_tests_head", "json_array_to_jsonl", "jsonl_field",
                                          NULL};

#define GGML_VOCAB_SEPARATOR "\n__ggml_vocab_test__\n"
/* Transforms that hold their whole input in memory refuse more than this. */
#define TRANSFORM_MAX_INPUT ((size_t)256 << 20)
#define JSON_MAX_DEPTH 64

void kg_data_sink_init(kg_data_sink *sink, FILE *fp, const char *what, int64_t limit) {
  sink->fp = fp;
  sink->what = what;
  sink->bytes = 0;
  sink->limit = limit;
  kg_sha256_init(&sink->sha);
}

int kg_data_sink_write(kg_data_sink *sink, const void *data, size_t len) {
  if (sink->limit >= 0 && (int64_t)len > sink->limit - sink->bytes)
    return kg_error(KG_ERR_FORMAT, "%s: more than the expected %lld bytes", sink->what, (long long)sink->limit);
  if (len && fwrite(data, 1, len, sink->fp) != len)
    return kg_error(KG_ERR_IO, "%s: write failed: %s", sink->what, strerror(errno));
  kg_sha256_update(&sink->sha, data, len);
  sink->bytes += (int64_t)len;
  return KG_OK;
}

void kg_data_sink_digest(kg_data_sink *sink, char hex[KG_SHA256_HEX_CHARS]) {
  uint8_t digest[KG_SHA256_DIGEST_BYTES];
  kg_sha256_final(&sink->sha, digest);
  kg_sha256_hex(digest, hex);
}

int kg_json_has_escaped_nul(const char *s, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] != '\\') continue;
    if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4)) return 1;
    i++; /* the escaped character cannot start another escape */
  }
  return 0;
}

int kg_data_transform_check(const char *op, int64_t count, const char *field, char *why, size_t why_cap) {
  if (!op) return KG_OK;
  int known = 0;
  for (const char *const *t = kg_data_transforms; *t; t++) known |= !strcmp(*t, op);
  if (!known) {
    snprintf(why, why_cap, "unknown transform \"%s\"", op);
    return KG_ERR_FORMAT;
  }
  if (count <= 0) {
    snprintf(why, why_cap, "transform \"%s\" needs a positive \"count\"", op);
    return KG_ERR_FORMAT;
  }
  if (!strcmp(op, "jsonl_field") && (!field || !field[0])) {
    snprintf(why, why_cap, "transform \"jsonl_field\" needs a \"field\"");
    return KG_ERR_FORMAT;
  }
  return KG_OK;
}

typedef struct growbuf {
  char *data;
  size_t len, cap;
} growbuf;

static int growbuf_put(growbuf *b, const char *s, size_t n) {
  if (n > TRANSFORM_MAX_INPUT || b->len > TRANSFORM_MAX_INPUT - n)
    return kg_error(KG_ERR_FORMAT, "transform input larger than %zu bytes", TRANSFORM_MAX_INPUT);
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return kg_error(KG_ERR_NOMEM, "transform: out of memory for %zu bytes", cap);
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return KG_OK;
}

static int growbuf_putc(growbuf *b, char c) { return growbuf_put(b, &c, 1); }

static int copy_all(const char *what, FILE *in, kg_data_sink *out) {
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0) KG_TRY(kg_data_sink_write(out, buf, n));
  if (ferror(in)) return kg_error(KG_ERR_IO, "%s: read error", what);
  return KG_OK;
}

static int head_bytes(const char *what, int64_t count, FILE *in, kg_data_sink *out) {
  char buf[1 << 16];
  int64_t left = count;
  while (left > 0) {
    size_t want = left < (int64_t)sizeof(buf) ? (size_t)left : sizeof(buf);
    size_t n = fread(buf, 1, want, in);
    if (n == 0) break;
    KG_TRY(kg_data_sink_write(out, buf, n));
    left -= (int64_t)n;
  }
  if (left > 0)
    return kg_error(KG_ERR_FORMAT, "%s: ends after %lld bytes; head_bytes needs %lld", what,
                    (long long)(count - left), (long long)count);
  return KG_OK;
}

static int read_all(const char *what, FILE *in, growbuf *b) {
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0) KG_TRY(growbuf_put(b, buf, n));
  if (ferror(in)) return kg_error(KG_ERR_IO, "%s: read error", what);
  return KG_OK;
}

/* llama.cpp tokenizer test inputs: every test string is followed by the
 * separator line; keep the first `count` tests with their separators. */
static int ggml_vocab_tests_head(const char *what, int64_t count, FILE *in, kg_data_sink *out) {
  int rc = KG_OK;
  growbuf b = {0};
  const size_t sep_len = strlen(GGML_VOCAB_SEPARATOR);
  if ((rc = read_all(what, in, &b)) < 0) goto done;
  size_t pos = 0;
  for (int64_t k = 0; k < count; k++) {
    const char *hit = b.len >= pos + sep_len ? memmem(b.data + pos, b.len - pos, GGML_VOCAB_SEPARATOR, sep_len) : NULL;
    if (!hit) {
      rc = kg_error(KG_ERR_FORMAT, "%s: holds %lld test strings; the transform needs %lld", what, (long long)k,
                    (long long)count);
      goto done;
    }
    pos = (size_t)(hit - b.data) + sep_len;
  }
  rc = kg_data_sink_write(out, b.data, pos);
done:
  free(b.data);
  return rc;
}

/* A streaming reader for json_array_to_jsonl. Results: 0 a value was copied,
 * 1 the input ended inside it, <0 malformed (kg_error set). */
typedef struct json_stream {
  FILE *in;
  const char *what;
  long long pos;
} json_stream;

static int js_get(json_stream *s) {
  int c = getc(s->in);
  if (c != EOF) s->pos++;
  return c;
}

static void js_unget(json_stream *s, int c) {
  if (c == EOF) return;
  ungetc(c, s->in);
  s->pos--;
}

static int js_skip_ws(json_stream *s) {
  int c;
  do c = js_get(s);
  while (c == ' ' || c == '\t' || c == '\n' || c == '\r');
  return c;
}

static int js_bad(json_stream *s, const char *problem) {
  return kg_error(KG_ERR_FORMAT, "%s: malformed JSON at byte %lld: %s", s->what, s->pos, problem);
}

static int js_copy_string(json_stream *s, growbuf *b) {
  KG_TRY(growbuf_putc(b, '"'));
  for (;;) {
    int c = js_get(s);
    if (c == EOF) return 1;
    if (c < 0x20) return js_bad(s, "control character inside a string");
    KG_TRY(growbuf_putc(b, (char)c));
    if (c == '"') return 0;
    if (c == '\\') {
      if ((c = js_get(s)) == EOF) return 1;
      KG_TRY(growbuf_putc(b, (char)c));
    }
  }
}

static int js_copy_value(json_stream *s, growbuf *b, int c, int depth);

/* Objects and arrays: members re-joined with Python json.dumps' default
 * separators ", " and ": ", strings and numbers kept byte for byte. */
static int js_copy_container(json_stream *s, growbuf *b, int open, int depth) {
  const char close = open == '{' ? '}' : ']';
  int rc;
  if (depth > JSON_MAX_DEPTH) return js_bad(s, "nested too deeply");
  KG_TRY(growbuf_putc(b, (char)open));
  int c = js_skip_ws(s);
  if (c == close) return growbuf_putc(b, close);
  for (;;) {
    if (c == EOF) return 1;
    if (open == '{') {
      if (c != '"') return js_bad(s, "expected a member name");
      if ((rc = js_copy_string(s, b)) != 0) return rc;
      if ((c = js_skip_ws(s)) == EOF) return 1;
      if (c != ':') return js_bad(s, "expected ':'");
      KG_TRY(growbuf_put(b, ": ", 2));
      if ((c = js_skip_ws(s)) == EOF) return 1;
    }
    if ((rc = js_copy_value(s, b, c, depth + 1)) != 0) return rc;
    c = js_skip_ws(s);
    if (c == EOF) return 1;
    if (c == close) return growbuf_putc(b, close);
    if (c != ',') return js_bad(s, "expected ',' or the end of the container");
    KG_TRY(growbuf_put(b, ", ", 2));
    c = js_skip_ws(s);
  }
}

static int js_copy_value(json_stream *s, growbuf *b, int c, int depth) {
  if (c == EOF) return 1;
  if (c == '"') return js_copy_string(s, b);
  if (c == '{' || c == '[') return js_copy_container(s, b, c, depth);
  if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
    char word[64];
    size_t n = 0;
    while (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z')) {
      if (n + 1 >= sizeof(word)) return js_bad(s, "literal too long");
      word[n++] = (char)c;
      c = js_get(s);
    }
    word[n] = '\0';
    if (c == EOF) return 1; /* a number cut by the end may be incomplete */
    js_unget(s, c);
    int is_word = word[0] >= 'a' && word[0] <= 'z';
    if (is_word && strcmp(word, "true") && strcmp(word, "false") && strcmp(word, "null"))
      return js_bad(s, "unknown literal");
    return growbuf_put(b, word, n);
  }
  return js_bad(s, "unexpected character");
}

/* A JSON array (possibly cut off after the records we need) of which the
 * first `count` elements become one compact line each. */
static int json_array_to_jsonl(const char *what, int64_t count, FILE *in, kg_data_sink *out) {
  int rc = KG_OK;
  growbuf b = {0};
  json_stream s = {in, what, 0};
  int c = js_skip_ws(&s);
  if (c != '[') {
    rc = js_bad(&s, "expected '[' at the start");
    goto done;
  }
  for (int64_t k = 0; k < count; k++) {
    c = js_skip_ws(&s);
    if (k > 0 && c == ',') c = js_skip_ws(&s);
    else if (k > 0 && c != ']' && c != EOF) {
      rc = js_bad(&s, "expected ',' between records");
      goto done;
    }
    if (c == ']' || c == EOF) {
      rc = kg_error(KG_ERR_FORMAT, "%s: the array %s after %lld records; the transform needs %lld", what,
                    c == EOF ? "is cut off" : "ends", (long long)k, (long long)count);
      goto done;
    }
    b.len = 0;
    int r = js_copy_value(&s, &b, c, 0);
    if (r < 0) {
      rc = r;
      goto done;
    }
    if (r == 1) {
      rc = kg_error(KG_ERR_FORMAT, "%s: cut off inside record %lld; the transform needs %lld complete records", what,
                    (long long)k + 1, (long long)count);
      goto done;
    }
    if ((rc = growbuf_putc(&b, '\n')) < 0 || (rc = kg_data_sink_write(out, b.data, b.len)) < 0) goto done;
  }
done:
  free(b.data);
  return rc;
}

/* A JSON string as Python's json.dumps(..., ensure_ascii=False) writes it. */
static int put_python_json_string(growbuf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  KG_TRY(growbuf_putc(b, '"'));
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    const char *esc = NULL;
    switch (*p) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    default: break;
    }
    if (esc) {
      KG_TRY(growbuf_put(b, esc, strlen(esc)));
    } else if (*p < 0x20) {
      char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
      KG_TRY(growbuf_put(b, u, sizeof(u)));
    } else {
      KG_TRY(growbuf_putc(b, (char)*p));
    }
  }
  return growbuf_putc(b, '"');
}

/* The first `count` lines of a JSON Lines file reduced to one string field,
 * written as {"field": value} the way Python's json.dumps writes it. */
static int jsonl_field(const char *what, int64_t count, const char *field, FILE *in, kg_data_sink *out) {
  int rc = KG_OK;
  char *line = NULL;
  size_t cap = 0;
  long long line_no = 0;
  int64_t done_lines = 0;
  growbuf b = {0};
  cJSON *doc = NULL;
  ssize_t n;
  while (done_lines < count && (n = getline(&line, &cap, in)) >= 0) {
    line_no++;
    size_t len = (size_t)n;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len == 0) continue;
    if (kg_json_has_escaped_nul(line, len)) {
      rc = kg_error(KG_ERR_FORMAT, "%s:%lld: a string holds \\u0000", what, line_no);
      goto done;
    }
    cJSON_Delete(doc);
    doc = cJSON_ParseWithLength(line, len);
    const cJSON *v = doc ? cJSON_GetObjectItemCaseSensitive(doc, field) : NULL;
    if (!cJSON_IsString(v) || !v->valuestring) {
      rc = kg_error(KG_ERR_FORMAT, "%s:%lld: %s", what, line_no,
                    doc ? "no string field of that name" : "invalid JSON");
      goto done;
    }
    b.len = 0;
    if ((rc = growbuf_putc(&b, '{')) < 0 || (rc = put_python_json_string(&b, field)) < 0 ||
        (rc = growbuf_put(&b, ": ", 2)) < 0 || (rc = put_python_json_string(&b, v->valuestring)) < 0 ||
        (rc = growbuf_put(&b, "}\n", 2)) < 0 || (rc = kg_data_sink_write(out, b.data, b.len)) < 0)
      goto done;
    done_lines++;
  }
  if (done_lines < count) {
    rc = ferror(in) ? kg_error(KG_ERR_IO, "%s: read error", what)
                    : kg_error(KG_ERR_FORMAT, "%s: holds %lld records; the transform needs %lld", what,
                               (long long)done_lines, (long long)count);
  }
done:
  cJSON_Delete(doc);
  free(b.data);
  free(line);
  return rc;
}

int kg_data_transform_run(const char *op, int64_t count, const char *field, const char *what, FILE *in,
                          kg_data_sink *out, int *consumed_all) {
  *consumed_all = 0;
  if (!op) {
    KG_TRY(copy_all(what, in, out));
    *consumed_all = 1;
    return KG_OK;
  }
  if (!strcmp(op, "head_bytes")) return head_bytes(what, count, in, out);
  if (!strcmp(op, "ggml_vocab_tests_head")) {
    KG_TRY(ggml_vocab_tests_head(what, count, in, out));
    *consumed_all = 1;
    return KG_OK;
  }
  if (!strcmp(op, "json_array_to_jsonl")) return json_array_to_jsonl(what, count, in, out);
  if (!strcmp(op, "jsonl_field")) return jsonl_field(what, count, field, in, out);
  return kg_error(KG_ERR_UNSUPPORTED, "%s: unknown transform \"%s\"", what, op);
}
