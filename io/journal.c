/* The crash-safe journal of finished grid cells (see io/journal.h). */
#include "io/journal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/error.h"
#include "io/log.h"

#define LINE_HEAD "{\"crc32\":\""
#define LINE_MID "\",\"record\":"
#define HEAD_LEN (sizeof(LINE_HEAD) - 1 + 8 + sizeof(LINE_MID) - 1)
/* A record is a few hundred bytes; anything this long is damage, not data. */
#define MAX_LINE ((size_t)64 << 20)

struct kg_journal {
  int fd;
  off_t size;
  char *path;
};

uint32_t kg_crc32(uint32_t crc, const void *data, size_t len) {
  const unsigned char *p = data;
  crc = ~crc;
  for (size_t i = 0; i < len; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

/* ---------- opening ---------- */

static int sync_parent_dir(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof(dir), ".");
  else if (slash == path) snprintf(dir, sizeof(dir), "/");
  else snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return kg_error(KG_ERR_IO, "%s: cannot open its directory to sync: %s", path, strerror(errno));
  int rc = fsync(fd) == 0 ? KG_OK : kg_error(KG_ERR_IO, "%s: cannot sync its directory: %s", path, strerror(errno));
  close(fd);
  return rc;
}

/* Length of the file up to and including its last newline. */
static int complete_length(const char *path, int fd, off_t size, off_t *out) {
  char buf[4096];
  off_t end = size;
  while (end > 0) {
    size_t n = end > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)end;
    ssize_t got = pread(fd, buf, n, end - (off_t)n);
    if (got != (ssize_t)n) return kg_error(KG_ERR_IO, "%s: cannot read: %s", path, got < 0 ? strerror(errno) : "short read");
    for (size_t i = n; i > 0; i--)
      if (buf[i - 1] == '\n') {
        *out = end - (off_t)n + (off_t)i;
        return KG_OK;
      }
    end -= (off_t)n;
  }
  *out = 0;
  return KG_OK;
}

int kg_journal_open(const char *path, kg_journal **out) {
  int rc = KG_OK, existed;
  struct stat st;
  kg_journal *j = NULL;
  *out = NULL;
  existed = stat(path, &st) == 0;
  if (!(j = calloc(1, sizeof(*j))) || !(j->path = strdup(path))) {
    free(j);
    return kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
  }
  j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (j->fd < 0) {
    rc = kg_error(KG_ERR_IO, "%s: cannot open the journal: %s", path, strerror(errno));
    goto done;
  }
  if (fstat(j->fd, &st) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    goto done;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = kg_error(KG_ERR_IO, "%s: the journal is not a regular file", path);
    goto done;
  }
  off_t keep;
  if ((rc = complete_length(path, j->fd, st.st_size, &keep)) < 0) goto done;
  if (keep != st.st_size) {
    /* Never acknowledged (its fsync did not return), so dropping it loses nothing. */
    kg_debug("%s: cutting a torn last line of %lld bytes left by an interrupted append", path,
             (long long)(st.st_size - keep));
    if (ftruncate(j->fd, keep) != 0 || fsync(j->fd) != 0) {
      rc = kg_error(KG_ERR_IO, "%s: cannot cut the torn last line: %s", path, strerror(errno));
      goto done;
    }
  }
  j->size = keep;
  if (!existed && (rc = sync_parent_dir(path)) < 0) goto done;
  *out = j;
  j = NULL;
done:
  kg_journal_close(j);
  return rc;
}

int kg_journal_close(kg_journal *j) {
  int rc = KG_OK;
  if (!j) return KG_OK;
  if (j->fd >= 0 && close(j->fd) != 0) rc = kg_error(KG_ERR_IO, "%s: close failed: %s", j->path, strerror(errno));
  free(j->path);
  free(j);
  return rc;
}

/* ---------- appending ---------- */

/* Finite doubles as the shortest JSON number that reads back exactly (cJSON
 * would print NaN as null); non-finite ones as strings. */
static cJSON *f64_json(double v) {
  char text[64];
  kg_format_f64(v, text, sizeof(text));
  return isfinite(v) ? cJSON_CreateRaw(text) : cJSON_CreateString(text);
}

/* Copy of s with every byte that is not part of valid UTF-8 replaced by '?'. */
static char *utf8_sanitized(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n + 1);
  for (size_t i = 0; i < n;) {
    size_t len = 1;
    unsigned char c = (unsigned char)d[i];
    if (c >= 0xC0) len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (c < 0x80 || (i + len <= n && kg_utf8_valid(d + i, len))) {
      i += c < 0x80 ? 1 : len;
    } else {
      d[i++] = '?';
    }
  }
  return d;
}

static int check_text(const char *what, const char *s, const char *cell) {
  if (s && !kg_utf8_valid(s, strlen(s)))
    return kg_error(KG_ERR_ARG, "journal: %s of cell '%s' is not valid UTF-8", what, cell ? cell : "");
  return KG_OK;
}

static int add_entry(cJSON *values, const kg_journal_entry *e, const char *cell) {
  if (!e->var || !e->var[0]) return kg_error(KG_ERR_ARG, "journal: cell '%s' has an entry without a variable", cell);
  if (e->ndims < 0 || e->ndims > KG_CUBE_MAX_RANK || (e->ndims && !e->index))
    return kg_error(KG_ERR_ARG, "journal: cell '%s' variable '%s' has a bad index", cell, e->var);
  KG_TRY(check_text("a variable name", e->var, cell));
  cJSON *o = cJSON_CreateObject(), *idx = NULL, *val = NULL;
  if (!o) goto nomem;
  cJSON_AddItemToObject(o, "var", cJSON_CreateString(e->var));
  if (!(idx = cJSON_AddArrayToObject(o, "index"))) goto nomem;
  for (int k = 0; k < e->ndims; k++) {
    if (e->index[k] < 0 || e->index[k] > ((int64_t)1 << 53)) {
      cJSON_Delete(o);
      return kg_error(KG_ERR_ARG, "journal: cell '%s' variable '%s' index %lld is out of range", cell, e->var,
                      (long long)e->index[k]);
    }
    cJSON_AddItemToArray(idx, cJSON_CreateNumber((double)e->index[k]));
  }
  if (e->type == KG_CUBE_F64) {
    cJSON_AddItemToObject(o, "type", cJSON_CreateString("f64"));
    val = f64_json(e->f64);
  } else if (e->type == KG_CUBE_I32) {
    cJSON_AddItemToObject(o, "type", cJSON_CreateString("i32"));
    val = cJSON_CreateNumber(e->i32);
  } else if (e->type == KG_CUBE_STR) {
    if (check_text("a string value", e->str, cell) < 0) {
      cJSON_Delete(o);
      return KG_ERR_ARG;
    }
    cJSON_AddItemToObject(o, "type", cJSON_CreateString("str"));
    val = cJSON_CreateString(e->str ? e->str : "");
  } else {
    cJSON_Delete(o);
    return kg_error(KG_ERR_ARG, "journal: cell '%s' variable '%s' has unknown type %d", cell, e->var, (int)e->type);
  }
  if (!val) goto nomem;
  cJSON_AddItemToObject(o, "value", val);
  cJSON_AddItemToArray(values, o);
  return KG_OK;
nomem:
  cJSON_Delete(o);
  return kg_error(KG_ERR_NOMEM, "journal: out of memory");
}

/* The record's JSON text (malloc'd; caller frees). */
static int record_text(const kg_journal_record *r, char **out) {
  int rc = KG_OK;
  char *error = NULL, *host = NULL;
  cJSON *o = NULL, *values = NULL;
  *out = NULL;
  if (!r->cell || !r->cell[0]) return kg_error(KG_ERR_ARG, "journal: record without a cell key");
  KG_TRY(check_text("the key", r->cell, r->cell));
  if (r->status != KG_JOURNAL_DONE && r->status != KG_JOURNAL_FAILED)
    return kg_error(KG_ERR_ARG, "journal: cell '%s' has unknown status %d", r->cell, (int)r->status);
  if (r->n_entries < 0 || (r->n_entries && !r->entries))
    return kg_error(KG_ERR_ARG, "journal: cell '%s' has a bad entry list", r->cell);
  if (!(error = utf8_sanitized(r->error ? r->error : "")) || !(host = utf8_sanitized(r->host ? r->host : "")) ||
      !(o = cJSON_CreateObject())) {
    rc = kg_error(KG_ERR_NOMEM, "journal: out of memory");
    goto done;
  }
  cJSON_AddItemToObject(o, "cell", cJSON_CreateString(r->cell));
  cJSON_AddItemToObject(o, "status", cJSON_CreateString(r->status == KG_JOURNAL_DONE ? "done" : "failed"));
  cJSON_AddItemToObject(o, "attempts", cJSON_CreateNumber(r->attempts));
  cJSON_AddItemToObject(o, "wall_s", f64_json(r->wall_s));
  cJSON_AddItemToObject(o, "host", cJSON_CreateString(host));
  cJSON_AddItemToObject(o, "error", cJSON_CreateString(error));
  if (!(values = cJSON_AddArrayToObject(o, "values"))) {
    rc = kg_error(KG_ERR_NOMEM, "journal: out of memory");
    goto done;
  }
  for (int i = 0; i < r->n_entries; i++)
    if ((rc = add_entry(values, &r->entries[i], r->cell)) < 0) goto done;
  if (!(*out = cJSON_PrintUnformatted(o))) rc = kg_error(KG_ERR_NOMEM, "journal: out of memory");
done:
  cJSON_Delete(o);
  free(error);
  free(host);
  return rc;
}

int kg_journal_append(kg_journal *j, const kg_journal_record *rec) {
  int rc = KG_OK;
  char *text = NULL, *line = NULL;
  if ((rc = record_text(rec, &text)) < 0) return rc;
  size_t tlen = strlen(text), len = HEAD_LEN + tlen + 2;
  if (len > MAX_LINE) {
    rc = kg_error(KG_ERR_ARG, "journal: record of cell '%s' is %zu bytes (limit %zu)", rec->cell, len, MAX_LINE);
    goto done;
  }
  if (!(line = malloc(len + 1))) {
    rc = kg_error(KG_ERR_NOMEM, "journal: out of memory");
    goto done;
  }
  snprintf(line, len + 1, LINE_HEAD "%08x" LINE_MID "%s}\n", (unsigned)kg_crc32(0, text, tlen), text);
  for (size_t off = 0; off < len;) {
    ssize_t n = write(j->fd, line + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      rc = kg_error(KG_ERR_IO, "%s: cannot append: %s", j->path, n < 0 ? strerror(errno) : "no progress");
      goto done;
    }
    off += (size_t)n;
  }
  if (fsync(j->fd) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: fsync failed: %s", j->path, strerror(errno));
    goto done;
  }
  j->size += (off_t)len;
done:
  if (rc < 0 && line && ftruncate(j->fd, j->size) != 0)
    kg_warn("%s: could not cut back a failed append: %s", j->path, strerror(errno));
  free(text);
  free(line);
  return rc;
}

/* ---------- replaying ---------- */

static int json_f64(const cJSON *v, double *out) {
  if (cJSON_IsNumber(v)) {
    *out = v->valuedouble;
    return 1;
  }
  if (!cJSON_IsString(v)) return 0;
  if (!strcmp(v->valuestring, "nan")) *out = NAN;
  else if (!strcmp(v->valuestring, "inf")) *out = INFINITY;
  else if (!strcmp(v->valuestring, "-inf")) *out = -INFINITY;
  else return 0;
  return 1;
}

static int json_int(const cJSON *v, double lo, double hi, int64_t *out) {
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
    return 0;
  *out = (int64_t)v->valuedouble;
  return 1;
}

static const char *json_str(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Parsed record storage, freed after the callback. */
typedef struct {
  cJSON *root;
  kg_journal_entry *entries;
  int64_t *indices;
} parsed_record;

static void parsed_free(parsed_record *p) {
  cJSON_Delete(p->root);
  free(p->entries);
  free(p->indices);
  memset(p, 0, sizeof(*p));
}

/* Fills rec from one line (without its newline); *why explains a reject. */
static int parse_line(const char *line, size_t len, kg_journal_record *rec, parsed_record *p, const char **why) {
  char hex[9];
  memset(rec, 0, sizeof(*rec));
  if (len < HEAD_LEN + 1 || memcmp(line, LINE_HEAD, sizeof(LINE_HEAD) - 1) ||
      memcmp(line + sizeof(LINE_HEAD) - 1 + 8, LINE_MID, sizeof(LINE_MID) - 1) || line[len - 1] != '}') {
    *why = "not a journal line";
    return 0;
  }
  memcpy(hex, line + sizeof(LINE_HEAD) - 1, 8);
  hex[8] = '\0';
  char *end = NULL;
  unsigned long want = strtoul(hex, &end, 16);
  const char *text = line + HEAD_LEN;
  size_t tlen = len - HEAD_LEN - 1;
  if (*end || strspn(hex, "0123456789abcdef") != 8) {
    *why = "bad checksum field";
    return 0;
  }
  if (kg_crc32(0, text, tlen) != (uint32_t)want) {
    *why = "checksum mismatch";
    return 0;
  }
  *why = "malformed record";
  if (!(p->root = cJSON_ParseWithLength(text, tlen)) || !cJSON_IsObject(p->root)) return 0;
  const cJSON *o = p->root;
  const char *status = json_str(o, "status");
  int64_t attempts;
  rec->cell = json_str(o, "cell");
  rec->host = json_str(o, "host");
  rec->error = json_str(o, "error");
  if (!rec->cell || !rec->host || !rec->error || !status) return 0;
  if (!strcmp(status, "done")) rec->status = KG_JOURNAL_DONE;
  else if (!strcmp(status, "failed")) rec->status = KG_JOURNAL_FAILED;
  else return 0;
  if (!json_int(cJSON_GetObjectItemCaseSensitive(o, "attempts"), 0, 2147483647.0, &attempts)) return 0;
  rec->attempts = (int)attempts;
  if (!json_f64(cJSON_GetObjectItemCaseSensitive(o, "wall_s"), &rec->wall_s)) return 0;
  const cJSON *values = cJSON_GetObjectItemCaseSensitive(o, "values");
  if (!cJSON_IsArray(values)) return 0;
  int n = cJSON_GetArraySize(values);
  p->entries = calloc((size_t)n + 1, sizeof(*p->entries));
  p->indices = calloc((size_t)n * KG_CUBE_MAX_RANK + 1, sizeof(int64_t));
  if (!p->entries || !p->indices) {
    *why = "out of memory";
    return 0;
  }
  int i = 0;
  const cJSON *ev;
  cJSON_ArrayForEach(ev, values) {
    kg_journal_entry *e = &p->entries[i];
    int64_t *index = p->indices + (size_t)i * KG_CUBE_MAX_RANK;
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(ev, "index");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(ev, "value");
    const char *type = json_str(ev, "type");
    e->var = json_str(ev, "var");
    if (!e->var || !type || !cJSON_IsArray(idx) || !val || cJSON_GetArraySize(idx) > KG_CUBE_MAX_RANK) return 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, idx) {
      if (!json_int(x, 0, 9007199254740992.0, &index[e->ndims])) return 0;
      e->ndims++;
    }
    e->index = index;
    if (!strcmp(type, "f64")) {
      e->type = KG_CUBE_F64;
      if (!json_f64(val, &e->f64)) return 0;
    } else if (!strcmp(type, "i32")) {
      int64_t v;
      e->type = KG_CUBE_I32;
      if (!json_int(val, -2147483648.0, 2147483647.0, &v)) return 0;
      e->i32 = (int32_t)v;
    } else if (!strcmp(type, "str")) {
      e->type = KG_CUBE_STR;
      if (!cJSON_IsString(val)) return 0;
      e->str = val->valuestring;
    } else {
      return 0;
    }
    i++;
  }
  rec->n_entries = i;
  rec->entries = p->entries;
  return 1;
}

int kg_journal_replay(const char *path, int strict, kg_journal_replay_fn fn, void *user, kg_journal_stats *stats) {
  int rc = KG_OK;
  kg_journal_stats local = {0, 0, 0};
  char *line = NULL;
  size_t cap = 0;
  int64_t lineno = 0;
  parsed_record p = {0};
  FILE *f = fopen(path, "rb");
  if (!f)
    return kg_error(errno == ENOENT ? KG_ERR_NOT_FOUND : KG_ERR_IO, "%s: cannot open the journal: %s", path,
                    strerror(errno));
  for (;;) {
    errno = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) {
      if (ferror(f)) rc = kg_error(KG_ERR_IO, "%s: read error: %s", path, strerror(errno));
      break;
    }
    lineno++;
    if (line[n - 1] != '\n') {
      /* getline only returns an unterminated line at end of file. */
      kg_debug("%s:%lld: skipping a torn last line of %zd bytes (an append was interrupted)", path, (long long)lineno, n);
      local.torn = 1;
      break;
    }
    kg_journal_record rec;
    const char *why = NULL;
    int ok = (size_t)n - 1 <= MAX_LINE && parse_line(line, (size_t)n - 1, &rec, &p, &why);
    if (!ok) {
      local.corrupt++;
      if (strict) {
        rc = kg_error(KG_ERR_FORMAT, "%s:%lld: %s", path, (long long)lineno, why ? why : "line too long");
        break;
      }
      kg_warn("%s:%lld: skipping a damaged record (%s)", path, (long long)lineno, why ? why : "line too long");
      parsed_free(&p);
      continue;
    }
    local.records++;
    rc = fn ? fn(&rec, user) : KG_OK;
    parsed_free(&p);
    if (rc < 0) break;
  }
  parsed_free(&p);
  free(line);
  fclose(f);
  if (stats) *stats = local;
  return rc < 0 ? rc : KG_OK;
}

int kg_journal_apply(kg_cube *cube, const kg_journal_record *rec) {
  for (int i = 0; i < rec->n_entries; i++) {
    const kg_journal_entry *e = &rec->entries[i];
    int v = kg_cube_find_var(cube, e->var);
    if (v < 0) return kg_error_context("journal cell '%s': ", rec->cell);
    if (kg_cube_var_ndims(cube, v) != e->ndims)
      return kg_error(KG_ERR_FORMAT, "journal cell '%s': variable '%s' has %d axes but the record gives %d indices",
                      rec->cell, e->var, kg_cube_var_ndims(cube, v), e->ndims);
    int rc = e->type == KG_CUBE_F64   ? kg_cube_set_f64(cube, v, e->index, e->f64)
             : e->type == KG_CUBE_I32 ? kg_cube_set_i32(cube, v, e->index, e->i32)
                                      : kg_cube_set_str(cube, v, e->index, e->str);
    if (rc < 0) return kg_error_context("journal cell '%s': ", rec->cell);
  }
  return KG_OK;
}
