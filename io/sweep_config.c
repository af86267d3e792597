/* Loading a sweep config: libconfig parse, the diagnostics list, the typed
 * getters every section uses, and the entry points of io/sweep_config.h. */
#include "io/sweep_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/paths.h"
#include "io/sweep_internal.h"

/* ---- diagnostics ------------------------------------------------------ */

void kg_diag_list_init(kg_diag_list *list) { memset(list, 0, sizeof(*list)); }

void kg_diag_list_free(kg_diag_list *list) {
  if (!list) return;
  for (size_t i = 0; i < list->count; i++) {
    free(list->items[i].file);
    free(list->items[i].message);
  }
  free(list->items);
  memset(list, 0, sizeof(*list));
}

static int diag_vadd(kg_diag_list *list, kg_diag_severity sev, const char *file, int line, const char *fmt,
                     va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (list->count == list->cap) {
    size_t cap = list->cap ? list->cap * 2 : 16;
    kg_diag *grown = realloc(list->items, cap * sizeof(*grown));
    if (!grown) return kg_error(KG_ERR_NOMEM, "sweep config: out of memory for diagnostics");
    list->items = grown;
    list->cap = cap;
  }
  kg_diag *d = &list->items[list->count];
  d->severity = sev;
  d->line = line;
  d->file = strdup(file ? file : "(config)");
  d->message = strdup(msg);
  if (!d->file || !d->message) {
    free(d->file);
    free(d->message);
    return kg_error(KG_ERR_NOMEM, "sweep config: out of memory for diagnostics");
  }
  list->count++;
  if (sev == KG_DIAG_ERROR) list->n_errors++;
  else list->n_warnings++;
  return KG_OK;
}

int kg_diag_add(kg_diag_list *list, kg_diag_severity sev, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = diag_vadd(list, sev, file, line, fmt, ap);
  va_end(ap);
  return rc;
}

/* Insertion sort keeps equal keys in insertion order (stable) and the lists
 * are a few dozen entries long. `first_file` (the config itself) comes
 * first, then @included files in order of first appearance. */
static void sort_diags(kg_diag_list *list, const char *first_file) {
  size_t n = list->count;
  int *rank = calloc(n ? n : 1, sizeof(int));
  if (!rank) return; /* unsorted output is still correct output */
  for (size_t i = 0; i < n; i++) {
    rank[i] = first_file && !strcmp(list->items[i].file, first_file) ? -1 : (int)i;
    for (size_t j = 0; j < i && rank[i] >= 0; j++)
      if (!strcmp(list->items[j].file, list->items[i].file)) {
        rank[i] = rank[j];
        break;
      }
  }
  for (size_t i = 1; i < n; i++) {
    kg_diag d = list->items[i];
    int r = rank[i];
    size_t j = i;
    while (j > 0 && (rank[j - 1] > r || (rank[j - 1] == r && list->items[j - 1].line > d.line))) {
      list->items[j] = list->items[j - 1];
      rank[j] = rank[j - 1];
      j--;
    }
    list->items[j] = d;
    rank[j] = r;
  }
  free(rank);
}

void kg_diag_list_sort(kg_diag_list *list) { sort_diags(list, NULL); }

void kg_diag_print(const kg_diag *d, FILE *out) {
  const char *sev = d->severity == KG_DIAG_WARNING ? "warning: " : "";
  if (d->line > 0) fprintf(out, "%s:%d: %s%s\n", d->file, d->line, sev, d->message);
  else fprintf(out, "%s: %s%s\n", d->file, sev, d->message);
}

void kg_diag_list_print(const kg_diag_list *list, FILE *out) {
  for (size_t i = 0; i < list->count; i++) kg_diag_print(&list->items[i], out);
}

/* ---- locating and describing settings ---------------------------------- */

static void sv_vdiag(kg_sv *v, kg_diag_severity sev, const config_setting_t *at, const char *fmt, va_list ap) {
  char shown[4096];
  const char *file = at ? kg_sv_display_path(v, config_setting_source_file(at), shown, sizeof shown) : NULL;
  int line = at ? (int)config_setting_source_line(at) : 1;
  if (!file) file = v->path;
  if (line <= 0) line = 1; /* the root group has no line of its own */
  if (diag_vadd(v->diags, sev, file, line, fmt, ap) < 0) v->nomem = 1;
}

void kg_sv_error(kg_sv *v, const config_setting_t *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sv_vdiag(v, KG_DIAG_ERROR, at, fmt, ap);
  va_end(ap);
}

void kg_sv_warning(kg_sv *v, const config_setting_t *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sv_vdiag(v, KG_DIAG_WARNING, at, fmt, ap);
  va_end(ap);
}

const char *kg_sv_keypath(char *buf, size_t cap, const char *prefix, const char *key) {
  if (prefix && prefix[0]) snprintf(buf, cap, "%s.%s", prefix, key);
  else snprintf(buf, cap, "%s", key);
  return buf;
}

const char *kg_sv_describe(const config_setting_t *s, char *buf, size_t cap) {
  switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: snprintf(buf, cap, "an integer (%lld)", config_setting_get_int64(s)); break;
    case CONFIG_TYPE_FLOAT: snprintf(buf, cap, "a float (%g)", config_setting_get_float(s)); break;
    case CONFIG_TYPE_BOOL: snprintf(buf, cap, "a boolean (%s)", config_setting_get_bool(s) ? "true" : "false"); break;
    case CONFIG_TYPE_STRING: snprintf(buf, cap, "a string (\"%.60s\")", config_setting_get_string(s)); break;
    case CONFIG_TYPE_GROUP: snprintf(buf, cap, "a group { ... }"); break;
    case CONFIG_TYPE_ARRAY: snprintf(buf, cap, "an array [ ... ]"); break;
    case CONFIG_TYPE_LIST: snprintf(buf, cap, "a list ( ... )"); break;
    default: snprintf(buf, cap, "a value of unknown type"); break;
  }
  return buf;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return (size_t)-1;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
      size_t best = diag + cost;
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

const char *kg_sv_suggest(const char *word, const char *const *names) {
  const char *best = NULL;
  size_t best_d = (size_t)-1;
  size_t len = strlen(word);
  /* A third of the word's length catches typos and plural slips without
   * proposing unrelated short keys. */
  size_t limit = len / 3 > 1 ? len / 3 : 1;
  if (limit > 3) limit = 3;
  for (size_t i = 0; names[i]; i++) {
    size_t d = edit_distance(word, names[i]);
    if (d < best_d) {
      best_d = d;
      best = names[i];
    }
  }
  return best && best_d <= limit && best_d < len ? best : NULL;
}

void kg_sv_check_keys(kg_sv *v, const config_setting_t *g, const char *prefix, const char *const *allowed) {
  char kp[256];
  for (int i = 0; i < config_setting_length(g); i++) {
    const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
    const char *name = config_setting_name(m);
    if (!name) continue;
    int known = 0;
    for (size_t k = 0; allowed[k] && !known; k++) known = !strcmp(allowed[k], name);
    if (known) continue;
    const char *hint = kg_sv_suggest(name, allowed);
    kg_sv_keypath(kp, sizeof kp, prefix, name);
    if (hint) kg_sv_error(v, m, "%s: unknown key (did you mean \"%s\"?)", kp, hint);
    else kg_sv_error(v, m, "%s: unknown key", kp);
  }
}

int kg_sv_group_list(kg_sv *v, const config_setting_t *s, const char *key, const char *example) {
  char got[128];
  if (config_setting_type(s) == CONFIG_TYPE_LIST) return 1;
  if (config_setting_type(s) == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0) return 1;
  kg_sv_error(v, s, "%s: expected a list of groups ( %s, ... ), got %s", key, example,
              kg_sv_describe(s, got, sizeof got));
  return 0;
}

int kg_sv_element_group(kg_sv *v, const config_setting_t *e, const char *prefix, const char *example) {
  char got[128];
  if (config_setting_type(e) == CONFIG_TYPE_GROUP) return 1;
  kg_sv_error(v, e, "%s: expected a group %s, got %s", prefix, example, kg_sv_describe(e, got, sizeof got));
  return 0;
}

void kg_sv_missing(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key) {
  if (prefix && prefix[0]) kg_sv_error(v, g, "%s: missing required key \"%s\"", prefix, key);
  else kg_sv_error(v, g, "missing required key \"%s\"", key);
}

/* ---- typed getters ------------------------------------------------------ */

static const config_setting_t *member(const config_setting_t *g, const char *key) {
  return g ? config_setting_get_member(g, key) : NULL;
}

static void wrong_type(kg_sv *v, const config_setting_t *s, const char *kp, const char *expected) {
  char got[128];
  kg_sv_error(v, s, "%s: expected %s, got %s", kp, expected, kg_sv_describe(s, got, sizeof got));
}

int kg_sv_int(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, long long min, long long max,
              long long *out) {
  const config_setting_t *s = member(g, key);
  char kp[256];
  if (!s) return KG_SV_ABSENT;
  kg_sv_keypath(kp, sizeof kp, prefix, key);
  int t = config_setting_type(s);
  if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
    wrong_type(v, s, kp, "an integer");
    return KG_SV_BAD;
  }
  long long x = config_setting_get_int64(s);
  if (x < min || x > max) {
    /* Huge upper bounds only guard the int conversion; naming them helps nobody. */
    if (x < min && max >= (1LL << 30)) kg_sv_error(v, s, "%s: %lld is out of range (must be at least %lld)", kp, x, min);
    else kg_sv_error(v, s, "%s: %lld is out of range [%lld, %lld]", kp, x, min, max);
    return KG_SV_BAD;
  }
  *out = x;
  return KG_SV_OK;
}

int kg_sv_float(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, double lo, int lo_open,
                double hi, int hi_open, double *out) {
  const config_setting_t *s = member(g, key);
  char kp[256];
  if (!s) return KG_SV_ABSENT;
  kg_sv_keypath(kp, sizeof kp, prefix, key);
  int t = config_setting_type(s);
  double x;
  if (t == CONFIG_TYPE_FLOAT) x = config_setting_get_float(s);
  else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) x = (double)config_setting_get_int64(s);
  else {
    wrong_type(v, s, kp, "a number");
    return KG_SV_BAD;
  }
  int below = lo_open ? !(x > lo) : !(x >= lo);
  int above = hi_open ? !(x < hi) : !(x <= hi);
  if (below || above || !isfinite(x)) {
    if (isinf(hi)) kg_sv_error(v, s, "%s: %g is out of range (must be %s %g)", kp, x, lo_open ? ">" : ">=", lo);
    else kg_sv_error(v, s, "%s: %g is out of range %c%g, %g%c", kp, x, lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
    return KG_SV_BAD;
  }
  *out = x;
  return KG_SV_OK;
}

int kg_sv_bool(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, int *out) {
  const config_setting_t *s = member(g, key);
  char kp[256];
  if (!s) return KG_SV_ABSENT;
  if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
    wrong_type(v, s, kg_sv_keypath(kp, sizeof kp, prefix, key), "a boolean (true or false)");
    return KG_SV_BAD;
  }
  *out = config_setting_get_bool(s);
  return KG_SV_OK;
}

int kg_sv_string(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, const char **out) {
  const config_setting_t *s = member(g, key);
  char kp[256];
  if (!s) return KG_SV_ABSENT;
  kg_sv_keypath(kp, sizeof kp, prefix, key);
  if (config_setting_type(s) != CONFIG_TYPE_STRING) {
    wrong_type(v, s, kp, "a string");
    return KG_SV_BAD;
  }
  const char *str = config_setting_get_string(s);
  if (!str[0]) {
    kg_sv_error(v, s, "%s: must not be empty", kp);
    return KG_SV_BAD;
  }
  *out = str;
  return KG_SV_OK;
}

int kg_sv_required_string(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, const char **out) {
  int rc = kg_sv_string(v, g, prefix, key, out);
  if (rc == KG_SV_ABSENT) kg_sv_missing(v, g, prefix, key);
  return rc;
}

static void list_names(char *buf, size_t cap, const char *const *names) {
  size_t used = 0;
  buf[0] = 0;
  for (size_t i = 0; names[i] && used + 1 < cap; i++)
    used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
}

int kg_sv_enum(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, const char *noun,
               const char *const *names, int *out) {
  const char *str = NULL;
  int rc = kg_sv_string(v, g, prefix, key, &str);
  if (rc != KG_SV_OK) return rc;
  for (int i = 0; names[i]; i++)
    if (!strcmp(names[i], str)) {
      *out = i;
      return KG_SV_OK;
    }
  char kp[256], all[512];
  kg_sv_keypath(kp, sizeof kp, prefix, key);
  const char *hint = kg_sv_suggest(str, names);
  const config_setting_t *s = member(g, key);
  if (hint) kg_sv_error(v, s, "%s: unknown %s \"%s\" (did you mean \"%s\"?)", kp, noun, str, hint);
  else {
    list_names(all, sizeof all, names);
    kg_sv_error(v, s, "%s: unknown %s \"%s\" (expected one of: %s)", kp, noun, str, all);
  }
  return KG_SV_BAD;
}

int kg_sv_check_name(kg_sv *v, const config_setting_t *at, const char *keypath, const char *name) {
  size_t len = strlen(name);
  int ok = len >= 1 && len <= 64;
  for (size_t i = 0; ok && i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    ok = isalnum(c) || c == '.' || c == '_' || c == '-' || c == '+';
  }
  if (!ok) {
    kg_sv_error(v, at, "%s: \"%s\" must be 1 to 64 letters, digits, '.', '_', '-' or '+'", keypath, name);
    return KG_SV_BAD;
  }
  return KG_SV_OK;
}

char *kg_sv_strdup(kg_sv *v, const char *s) {
  if (!s) return NULL;
  char *c = kg_arena_strdup(v->sw->arena, s);
  if (!c) v->nomem = 1;
  return c;
}

void *kg_sv_alloc(kg_sv *v, size_t n, size_t size) {
  if (n == 0) n = 1;
  if (size && n > SIZE_MAX / size) {
    v->nomem = 1;
    return NULL;
  }
  void *p = kg_arena_alloc(v->sw->arena, n * size);
  if (!p) v->nomem = 1;
  return p;
}

/* ---- names ------------------------------------------------------------- */

static const char *const k_task_names[] = {"boolq",    "piqa",       "hellaswag", "winogrande",
                                           "arc_easy", "arc_challenge", "openbookqa", "lambada",
                                           "mmlu",     "freebaseqa", "triviaqa",  NULL};
static const char *const k_method_names[] = {"magnitude", "wanda", "sparsegpt", "owl-wanda", "owl-sparsegpt", NULL};

const char *const *kg_sweep_task_names(void) { return k_task_names; }
const char *const *kg_sweep_method_names(void) { return k_method_names; }

int kg_sv_task_index(const char *name) {
  for (int i = 0; k_task_names[i]; i++)
    if (!strcmp(k_task_names[i], name)) return i;
  return -1;
}

int kg_sv_task_is_calibration_source(const char *task) {
  /* MMLU prompts are few-shot question templates and LAMBADA is a
   * last-word cloze: neither gives free-running text to calibrate on. */
  return kg_sv_task_index(task) >= 0 && strcmp(task, "mmlu") != 0 && strcmp(task, "lambada") != 0;
}

/* ---- load --------------------------------------------------------------- */

static const char *const k_top_keys[] = {"name",        "data_dir", "models",     "prune_method", "sparsity",
                                         "quantization", "calibration", "pruning", "evaluation",   "grid",
                                         NULL};

static void directory_of(const char *path, char *out, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(out, cap, ".");
  else if (slash == path) snprintf(out, cap, "/");
  else snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

/* libconfig records an @include as written, relative to the including
 * config's directory; diagnostics and provenance name it from the working
 * directory instead, as the config itself is named. */
const char *kg_sv_display_path(kg_sv *v, const char *file, char *buf, size_t cap) {
  if (!file || !strcmp(file, v->path) || file[0] == '/' || !strcmp(v->include_dir, ".")) return file;
  snprintf(buf, cap, "%s/%s", v->include_dir, file);
  return buf;
}

static int read_text(kg_sv *v, const char *path, char **out, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  if (!f) return kg_error(KG_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
  int rc = KG_OK;
  char *buf = NULL;
  long len = -1;
  if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: cannot seek", path);
    goto done;
  }
  if (!(buf = kg_sv_alloc(v, (size_t)len + 1, 1))) { rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path); goto done; }
  if (len && fread(buf, 1, (size_t)len, f) != (size_t)len) { rc = kg_error(KG_ERR_IO, "%s: short read", path); goto done; }
  buf[len] = 0;
  *out = buf;
  *out_len = (size_t)len;
done:
  fclose(f);
  return rc;
}

/* Keeps the bytes of the config and of every file it @includes, for provenance. */
static int keep_sources(kg_sv *v, const config_t *cf) {
  kg_sweep *sw = v->sw;
  size_t n = cf->num_filenames ? cf->num_filenames : 1;
  sw->source_paths = kg_sv_alloc(v, n, sizeof(char *));
  sw->source_texts = kg_sv_alloc(v, n, sizeof(char *));
  if (!sw->source_paths || !sw->source_texts) return kg_error(KG_ERR_NOMEM, "%s: out of memory", v->path);
  char shown[4096];
  for (size_t i = 0; i < n; i++) {
    const char *file = i == 0 ? v->path : kg_sv_display_path(v, cf->filenames[i], shown, sizeof shown);
    char *text = NULL;
    size_t len = 0;
    KG_TRY(read_text(v, file, &text, &len));
    sw->source_paths[i] = kg_sv_strdup(v, file);
    sw->source_texts[i] = text;
    if (i == 0) {
      sw->text = text;
      sw->text_len = len;
    }
  }
  sw->n_sources = n;
  return KG_OK;
}

static void syntax_error(kg_sv *v, const config_t *cf) {
  char shown[4096];
  const char *file = kg_sv_display_path(v, config_error_file(cf), shown, sizeof shown);
  const char *text = config_error_text(cf);
  if (config_error_type(cf) == CONFIG_ERR_FILE_IO || !file) {
    if (kg_diag_add(v->diags, KG_DIAG_ERROR, v->path, 0, "cannot read the config: %s",
                    errno ? strerror(errno) : (text ? text : "I/O error")) < 0)
      v->nomem = 1;
    return;
  }
  /* libconfig arrays hold one scalar type; the natural mixed sparsity list
   * needs a libconfig list, which is not obvious from its message. */
  const char *hint = text && strstr(text, "mismatched element type")
                         ? " (an array [ ] holds one type; write mixed values as a list: ( 0.5, \"2:4\" ))"
                         : "";
  if (kg_diag_add(v->diags, KG_DIAG_ERROR, file, config_error_line(cf), "%s%s", text ? text : "syntax error", hint) < 0)
    v->nomem = 1;
}

int kg_sweep_load_opts(const char *path, const kg_sweep_options *opts, kg_sweep **out, kg_diag_list *diags) {
  int rc = KG_OK;
  config_t cf;
  kg_diag_list local;
  kg_sweep_options no_opts = {0};
  kg_sv v;
  memset(&v, 0, sizeof v);
  kg_diag_list_init(&local);
  config_init(&cf);
  *out = NULL;
  v.diags = diags ? diags : &local;
  v.opts = opts ? opts : &no_opts;
  v.path = path;
  size_t errors_before = v.diags->n_errors;

  kg_sweep *sw = calloc(1, sizeof(*sw));
  if (!sw) { rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path); goto done; }
  if (!(sw->arena = kg_arena_create())) { rc = KG_ERR_NOMEM; goto done; }
  v.sw = sw;
  sw->path = kg_sv_strdup(&v, path);

  directory_of(path, v.include_dir, sizeof v.include_dir);
  config_set_include_dir(&cf, v.include_dir);
  errno = 0;
  if (!config_read_file(&cf, path)) {
    syntax_error(&v, &cf);
    int io = config_error_type(&cf) == CONFIG_ERR_FILE_IO;
    rc = kg_error(io ? KG_ERR_IO : KG_ERR_FORMAT, "%s: %s", path, io ? "cannot read the config" : "config syntax error");
    goto done;
  }
  if ((rc = keep_sources(&v, &cf)) < 0) goto done;

  const config_setting_t *root = config_root_setting(&cf);
  v.root = root;
  kg_sv_check_keys(&v, root, "", k_top_keys);
  const char *s = NULL;
  if (kg_sv_string(&v, root, "", "name", &s) == KG_SV_OK) {
    if (kg_sv_check_name(&v, config_setting_get_member(root, "name"), "name", s) == KG_SV_OK)
      sw->name = kg_sv_strdup(&v, s);
  } else if (!config_setting_get_member(root, "name")) {
    kg_sv_missing(&v, root, "", "name");
  }
  if (kg_sv_string(&v, root, "", "data_dir", &s) == KG_SV_OK) {
    if (!kg_path_is_dir(s))
      kg_sv_error(&v, config_setting_get_member(root, "data_dir"), "data_dir: \"%s\" is not a directory", s);
    sw->data_dir = kg_sv_strdup(&v, s);
  }
  /* Each section's error count lets the cross checks skip conclusions drawn
   * from a section that is already reported broken (a calibration list with
   * a bad entry is not "empty"), while still reporting everything else. */
  size_t mark = v.diags->n_errors;
#define KG_SECTION(fn, counter)        \
  fn(&v, root);                        \
  v.counter = v.diags->n_errors - mark; \
  mark = v.diags->n_errors
  KG_SECTION(kg_sv_models, err_models);
  KG_SECTION(kg_sv_methods, err_methods);
  KG_SECTION(kg_sv_sparsity, err_sparsity);
  KG_SECTION(kg_sv_calibration, err_calibration);
  KG_SECTION(kg_sv_pruning, err_pruning);
  KG_SECTION(kg_sv_evaluation, err_evaluation);
  KG_SECTION(kg_sv_grid, err_grid);
#undef KG_SECTION
  if (!v.nomem) kg_sv_cross_checks(&v);
  if (v.diags->n_errors == errors_before && !v.nomem) kg_sv_build_dims(&v);

  if (v.nomem) { rc = kg_error(KG_ERR_NOMEM, "%s: out of memory while validating", path); goto done; }
  size_t n_err = v.diags->n_errors - errors_before;
  if (n_err) {
    rc = kg_error(KG_ERR_FORMAT, "%s: %zu error%s in the sweep config", path, n_err, n_err == 1 ? "" : "s");
    goto done;
  }
  *out = sw;
  sw = NULL;
done:
  config_destroy(&cf);
  if (v.diags == &local) kg_diag_list_free(&local);
  else sort_diags(v.diags, path);
  kg_sweep_free(sw);
  return rc;
}

int kg_sweep_load(const char *path, kg_sweep **out, kg_diag_list *diags) {
  return kg_sweep_load_opts(path, NULL, out, diags);
}

void kg_sweep_free(kg_sweep *sweep) {
  if (!sweep) return;
  kg_arena_destroy(sweep->arena);
  free(sweep);
}

const kg_sweep_axes *kg_sweep_dims(const kg_sweep *sweep) { return &sweep->dims; }

int kg_sweep_check_world(const kg_sweep *sweep, int world_size, kg_diag_list *diags) {
  if (sweep->grid.team_size <= world_size) return KG_OK;
  if (diags)
    kg_diag_add(diags, KG_DIAG_ERROR, sweep->path, sweep->grid.team_size_line,
                "grid.team_size: %d is larger than the %d working rank%s of this run", sweep->grid.team_size,
                world_size, world_size == 1 ? "" : "s");
  return kg_error(KG_ERR_ARG, "%s: grid.team_size %d is larger than the %d working ranks of this run", sweep->path,
                  sweep->grid.team_size, world_size);
}
