/* GNU: FNM_CASEFOLD, memmem. */
#include "io/manifest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "io/data_internal.h"
#include "io/error.h"
#include "io/mapfile.h"
#include "io/paths.h"

static char default_manifest_path[PATH_MAX];

const char *kg_manifest_default_path(void) {
  const char *env = getenv("KG_MANIFEST");
  if (env && *env) return env;
  snprintf(default_manifest_path, sizeof(default_manifest_path), "%s/configs/data-manifest.json", KG_SOURCE_DIR);
  return default_manifest_path;
}

static void free_source(kg_data_source *s) {
  free(s->url);
  free(s->archive);
  free(s->member);
  free(s->archive_sha256);
  free(s->transform);
  free(s->transform_field);
}

void kg_manifest_free(kg_manifest *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n_entries; i++) {
    kg_data_entry *e = &m->entries[i];
    for (size_t j = 0; j < e->n_sources; j++) free_source(&e->sources[j]);
    free(e->sources);
    free(e->name);
    free(e->path);
  }
  free(m->entries);
  free(m->path);
  free(m);
}

/* Context for messages: "manifest.json: entry 12 (c4-train): ". */
typedef struct load_ctx {
  const char *file;
  size_t index;
  const char *name;
} load_ctx;

static int bad_entry(const load_ctx *c, const char *problem) {
  return kg_error(KG_ERR_FORMAT, "%s: entry %zu (%s): %s", c->file, c->index, c->name ? c->name : "unnamed",
                  problem);
}

static int is_sha256_hex(const char *s) {
  if (!s || strlen(s) != 64) return 0;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
  return 1;
}

/* Relative, no "..", "." or empty components, so a manifest cannot write
 * outside the data or cache directory. */
static int is_safe_relative_path(const char *p) {
  if (!p[0] || p[0] == '/' || strchr(p, '\\')) return 0;
  for (const char *seg = p; *seg;) {
    const char *end = strchr(seg, '/');
    size_t len = end ? (size_t)(end - seg) : strlen(seg);
    if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.')) return 0;
    if (!end) break;
    seg = end + 1;
    if (!*seg) return 0;
  }
  return 1;
}

static int check_keys(const load_ctx *c, const cJSON *obj, const char *const *allowed, const char *where) {
  for (const cJSON *it = obj->child; it; it = it->next) {
    int ok = 0;
    for (const char *const *a = allowed; *a; a++) ok |= !strcmp(*a, it->string);
    if (!ok) {
      char why[160];
      snprintf(why, sizeof(why), "unknown key \"%.60s\" in %s", it->string, where);
      return bad_entry(c, why);
    }
  }
  return KG_OK;
}

/* Copies an optional string member; *out stays NULL when it is absent. */
static int get_string(const load_ctx *c, const cJSON *obj, const char *key, int required, char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = NULL;
  if (!v) {
    if (!required) return KG_OK;
    char why[96];
    snprintf(why, sizeof(why), "missing \"%s\"", key);
    return bad_entry(c, why);
  }
  if (!cJSON_IsString(v) || !v->valuestring[0]) {
    char why[96];
    snprintf(why, sizeof(why), "\"%s\" must be a non-empty string", key);
    return bad_entry(c, why);
  }
  if (!(*out = strdup(v->valuestring))) return kg_error(KG_ERR_NOMEM, "%s: out of memory", c->file);
  return KG_OK;
}

static int get_count(const load_ctx *c, const cJSON *obj, const char *key, int64_t *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = -1;
  if (!v) return KG_OK;
  /* Doubles hold every integer below 2^53 exactly, far above any file size. */
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
      v->valuedouble != (double)(int64_t)v->valuedouble) {
    char why[96];
    snprintf(why, sizeof(why), "\"%s\" must be a non-negative integer", key);
    return bad_entry(c, why);
  }
  *out = (int64_t)v->valuedouble;
  return KG_OK;
}

static int parse_source(const load_ctx *c, const cJSON *js, kg_data_source *s) {
  static const char *const keys[] = {"url", "archive", "member", "archive_size", "archive_sha256", "transform",
                                     "note", NULL};
  static const char *const transform_keys[] = {"op", "count", "field", NULL};
  char why[256];
  s->archive_size = -1;
  s->transform_count = -1;
  if (!cJSON_IsObject(js)) return bad_entry(c, "every source must be an object");
  KG_TRY(check_keys(c, js, keys, "a source"));
  KG_TRY(get_string(c, js, "url", 1, &s->url));
  KG_TRY(get_string(c, js, "archive", 0, &s->archive));
  KG_TRY(get_string(c, js, "member", 0, &s->member));
  KG_TRY(get_string(c, js, "archive_sha256", 0, &s->archive_sha256));
  KG_TRY(get_count(c, js, "archive_size", &s->archive_size));
  if (strncmp(s->url, "https://", 8) && strncmp(s->url, "http://", 7) && strncmp(s->url, "file://", 7))
    return bad_entry(c, "source url must start with https://, http:// or file://");
  if (s->archive_sha256 && !is_sha256_hex(s->archive_sha256))
    return bad_entry(c, "archive_sha256 must be 64 lower-case hex digits");
  if (s->archive) {
    int member_kind = !strcmp(s->archive, "zip") || !strcmp(s->archive, "tgz");
    int stream_kind = !strcmp(s->archive, "bz2") || !strcmp(s->archive, "gz");
    if (!member_kind && !stream_kind) return bad_entry(c, "archive must be \"zip\", \"tgz\", \"bz2\" or \"gz\"");
    if (member_kind != (s->member != NULL))
      return bad_entry(c, member_kind ? "zip and tgz sources need a \"member\"" : "bz2/gz sources take no \"member\"");
  } else if (s->member || s->archive_sha256 || s->archive_size >= 0) {
    return bad_entry(c, "\"member\", \"archive_size\" and \"archive_sha256\" need an \"archive\"");
  }
  /* The member goes on unzip's/tar's command line: no options, no patterns. */
  if (s->member && (s->member[0] == '-' || strpbrk(s->member, "*?[]\\")))
    return bad_entry(c, "member must not start with '-' or contain wildcard characters");
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(js, "transform");
  if (t) {
    if (!cJSON_IsObject(t)) return bad_entry(c, "transform must be an object {\"op\": ..., \"count\": ...}");
    KG_TRY(check_keys(c, t, transform_keys, "a transform"));
    KG_TRY(get_string(c, t, "op", 1, &s->transform));
    KG_TRY(get_string(c, t, "field", 0, &s->transform_field));
    KG_TRY(get_count(c, t, "count", &s->transform_count));
    if (kg_data_transform_check(s->transform, s->transform_count, s->transform_field, why, sizeof(why)) < 0)
      return bad_entry(c, why);
  }
  return KG_OK;
}

static int parse_entry(const load_ctx *c0, const cJSON *js, kg_data_entry *e) {
  static const char *const keys[] = {"name", "path", "location", "optional", "size", "sha256", "sources", "note", NULL};
  load_ctx c = *c0;
  char *location = NULL, *sha = NULL;
  int rc = KG_OK;
  if (!cJSON_IsObject(js)) return bad_entry(&c, "must be an object");
  if ((rc = get_string(&c, js, "name", 1, &e->name)) < 0) goto done;
  c.name = e->name;
  if ((rc = check_keys(&c, js, keys, "an entry")) < 0) goto done;
  if ((rc = get_string(&c, js, "path", 1, &e->path)) < 0 || (rc = get_string(&c, js, "location", 0, &location)) < 0 ||
      (rc = get_string(&c, js, "sha256", 1, &sha)) < 0 || (rc = get_count(&c, js, "size", &e->size)) < 0)
    goto done;
  if (!is_safe_relative_path(e->path)) {
    rc = bad_entry(&c, "path must be relative, without '..', '.' or empty parts");
    goto done;
  }
  if (e->size < 0) {
    rc = bad_entry(&c, "missing \"size\"");
    goto done;
  }
  if (!is_sha256_hex(sha)) {
    rc = bad_entry(&c, "sha256 must be 64 lower-case hex digits");
    goto done;
  }
  memcpy(e->sha256, sha, 65);
  if (!location || !strcmp(location, "data")) e->location = KG_DATA_IN_DATA_DIR;
  else if (!strcmp(location, "cache")) e->location = KG_DATA_IN_CACHE;
  else {
    rc = bad_entry(&c, "location must be \"data\" or \"cache\"");
    goto done;
  }
  const cJSON *opt = cJSON_GetObjectItemCaseSensitive(js, "optional");
  if (opt && !cJSON_IsBool(opt)) {
    rc = bad_entry(&c, "optional must be true or false");
    goto done;
  }
  e->optional = cJSON_IsTrue(opt);
  const cJSON *sources = cJSON_GetObjectItemCaseSensitive(js, "sources");
  int n = cJSON_IsArray(sources) ? cJSON_GetArraySize(sources) : 0;
  if (n <= 0) {
    rc = bad_entry(&c, "needs a non-empty \"sources\" array");
    goto done;
  }
  if (!(e->sources = calloc((size_t)n, sizeof(*e->sources)))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", c.file);
    goto done;
  }
  for (const cJSON *s = sources->child; s; s = s->next) {
    e->n_sources++;
    if ((rc = parse_source(&c, s, &e->sources[e->n_sources - 1])) < 0) goto done;
  }
done:
  free(location);
  free(sha);
  return rc;
}

int kg_manifest_load(const char *path, kg_manifest **out) {
  int rc = KG_OK;
  char *text = NULL;
  size_t size = 0;
  cJSON *root = NULL;
  kg_manifest *m = NULL;
  *out = NULL;
  if (!path) path = kg_manifest_default_path();
  if ((rc = kg_read_file(path, &text, &size)) < 0) {
    kg_error_context("data manifest (set KG_MANIFEST or --manifest): ");
    goto done;
  }
  const char *end = NULL;
  if (!(root = cJSON_ParseWithLengthOpts(text, size, &end, 0))) {
    size_t line = 1;
    for (const char *p = text; end && p < end && p < text + size; p++) line += *p == '\n';
    rc = kg_error(KG_ERR_FORMAT, "%s:%zu: invalid JSON", path, line);
    goto done;
  }
  const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
  if (schema && (!cJSON_IsNumber(schema) || schema->valuedouble != 1)) {
    rc = kg_error(KG_ERR_UNSUPPORTED, "%s: schema %g is not supported (this kickgrid reads schema 1)", path,
                  cJSON_IsNumber(schema) ? schema->valuedouble : -1.0);
    goto done;
  }
  const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
  if (!cJSON_IsArray(entries)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: no \"entries\" array", path);
    goto done;
  }
  size_t n = (size_t)cJSON_GetArraySize(entries);
  if (!(m = calloc(1, sizeof(*m))) || !(m->path = strdup(path)) ||
      (n && !(m->entries = calloc(n, sizeof(*m->entries))))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  for (const cJSON *js = entries->child; js; js = js->next) {
    load_ctx c = {path, m->n_entries, NULL};
    kg_data_entry *e = &m->entries[m->n_entries++];
    if ((rc = parse_entry(&c, js, e)) < 0) goto done;
    for (size_t j = 0; j + 1 < m->n_entries; j++) {
      const kg_data_entry *o = &m->entries[j];
      int same_file = o->location == e->location && !strcmp(o->path, e->path);
      if (!strcmp(o->name, e->name) || same_file) {
        rc = bad_entry(&c, same_file ? "path repeats an earlier entry" : "name repeats an earlier entry");
        goto done;
      }
    }
  }
  *out = m;
  m = NULL;
done:
  cJSON_Delete(root);
  free(text);
  kg_manifest_free(m);
  return rc;
}

const kg_data_entry *kg_manifest_find(const kg_manifest *m, const char *key) {
  for (size_t i = 0; i < m->n_entries; i++)
    if (!strcmp(m->entries[i].name, key) || !strcmp(m->entries[i].path, key)) return &m->entries[i];
  return NULL;
}

static int pattern_matches(const kg_data_entry *e, const char *pat) {
  if (!pat[0]) return 0;
  if (!fnmatch(pat, e->name, FNM_CASEFOLD) || !fnmatch(pat, e->path, 0)) return 1;
  size_t n = strlen(pat);
  while (n > 1 && pat[n - 1] == '/') n--;
  return !strncmp(e->path, pat, n) && e->path[n] == '/';
}

int kg_data_entry_matches(const kg_data_entry *e, const char *patterns) {
  char pat[512];
  for (const char *p = patterns; *p;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len < sizeof(pat)) {
      memcpy(pat, p, len);
      pat[len] = '\0';
      if (pattern_matches(e, pat)) return 1;
    }
    if (!comma) break;
    p = comma + 1;
  }
  return 0;
}

int kg_data_entry_file(const kg_data_entry *e, char *out, size_t cap) {
  return kg_path_join(out, cap, e->location == KG_DATA_IN_CACHE ? kg_cache_dir() : kg_data_dir(), e->path);
}

const char *kg_data_state_name(kg_data_state s) {
  switch (s) {
  case KG_DATA_OK: return "ok";
  case KG_DATA_MISSING: return "missing";
  case KG_DATA_MISMATCH: return "MISMATCH";
  case KG_DATA_FETCH_FAILED: return "FAILED";
  case KG_DATA_SKIPPED: return "skipped";
  case KG_DATA_FETCHED: return "fetched";
  }
  return "?";
}

kg_data_state kg_data_check_entry(const kg_data_entry *e, char *detail, size_t cap) {
  char path[PATH_MAX], hex[KG_SHA256_HEX_CHARS];
  struct stat st;
  detail[0] = '\0';
  if (kg_data_entry_file(e, path, sizeof(path)) < 0) {
    snprintf(detail, cap, "%s", kg_error_message());
    return KG_DATA_MISSING;
  }
  if (stat(path, &st) != 0) {
    snprintf(detail, cap, "%s: %s", path, strerror(errno));
    return KG_DATA_MISSING;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(detail, cap, "%s: not a regular file", path);
    return KG_DATA_MISMATCH;
  }
  if ((int64_t)st.st_size != e->size) {
    snprintf(detail, cap, "%s: %lld bytes, expected %lld", path, (long long)st.st_size, (long long)e->size);
    return KG_DATA_MISMATCH;
  }
  if (kg_sha256_file(path, hex, NULL) < 0) {
    snprintf(detail, cap, "%s", kg_error_message());
    return KG_DATA_MISMATCH;
  }
  if (strcmp(hex, e->sha256) != 0) {
    snprintf(detail, cap, "%s: sha256 %.16s..., expected %.16s...", path, hex, e->sha256);
    return KG_DATA_MISMATCH;
  }
  return KG_DATA_OK;
}

int kg_data_walk(const kg_manifest *m, const kg_data_options *opt, kg_data_summary *sum, kg_data_action_fn action,
                 const char *verb) {
  kg_data_summary local = {0};
  const char *only = opt && opt->only && opt->only[0] ? opt->only : NULL;
  char detail[2048];
  for (size_t i = 0; i < m->n_entries; i++) {
    const kg_data_entry *e = &m->entries[i];
    if (only && !kg_data_entry_matches(e, only)) continue;
    local.selected++;
    kg_data_state st = kg_data_check_entry(e, detail, sizeof(detail));
    if (st == KG_DATA_MISSING && e->optional && !only) {
      st = KG_DATA_SKIPPED;
      snprintf(detail, sizeof(detail), "optional; fetch it with 'kickgrid data fetch --only %s'", e->name);
    } else if (st != KG_DATA_OK && action) {
      st = action(e, opt, detail, sizeof(detail));
    }
    switch (st) {
    case KG_DATA_OK: local.ok++; break;
    case KG_DATA_FETCHED: local.fetched++; break;
    case KG_DATA_MISSING: local.missing++; break;
    case KG_DATA_MISMATCH: local.mismatched++; break;
    case KG_DATA_FETCH_FAILED: local.failed++; break;
    case KG_DATA_SKIPPED: local.skipped++; break;
    }
    if (opt && opt->report) opt->report(e, st, detail, opt->user);
  }
  if (sum) *sum = local;
  if (only && local.selected == 0)
    return kg_error(KG_ERR_ARG, "no entry of %s matches '%s' (see 'kickgrid data list')", m->path, only);
  size_t bad = local.missing + local.mismatched + local.failed;
  if (bad == 0) return KG_OK;
  return kg_error(local.mismatched || local.failed ? KG_ERR_FORMAT : KG_ERR_NOT_FOUND,
                  "%s: %zu of %zu files not ok (%zu missing, %zu mismatching, %zu failed to fetch)%s", verb, bad,
                  local.selected, local.missing, local.mismatched, local.failed,
                  action ? "" : "; run 'kickgrid data fetch'");
}

int kg_data_verify(const kg_manifest *m, const kg_data_options *opt, kg_data_summary *sum) {
  return kg_data_walk(m, opt, sum, NULL, "verify");
}

int kg_data_mirror_url(const char *url, const char *mirror, char *out, size_t cap) {
  const char *rest = NULL;
  if (!strncmp(url, "https://", 8)) rest = url + 8;
  else if (!strncmp(url, "http://", 7)) rest = url + 7;
  size_t mlen = mirror ? strlen(mirror) : 0;
  while (mlen && mirror[mlen - 1] == '/') mlen--;
  int n = rest && mlen ? snprintf(out, cap, "%.*s/%s", (int)mlen, mirror, rest) : snprintf(out, cap, "%s", url);
  if (n < 0 || (size_t)n >= cap) return kg_error(KG_ERR_ARG, "mirrored URL too long: %s", url);
  return KG_OK;
}

/* Aliases resolve without reading the manifest, so a model name works even
 * where the manifest is not installed; tests check both agree. */
static const struct {
  const char *alias;
  kg_data_location location;
  const char *path;
} model_aliases[] = {
    {"smollm2", KG_DATA_IN_CACHE, "models/SmolLM2-135M-Instruct.Q4_1.gguf"},
    {"stories260K", KG_DATA_IN_DATA_DIR, "models/stories260K/stories260K.bin"},
};

int kg_resolve_model(const char *spec, char *out, size_t cap) {
  for (size_t i = 0; i < sizeof(model_aliases) / sizeof(model_aliases[0]); i++) {
    if (strcasecmp(spec, model_aliases[i].alias) != 0) continue;
    if (model_aliases[i].location == KG_DATA_IN_DATA_DIR) return kg_resolve_data_file(model_aliases[i].path, out, cap);
    KG_TRY(kg_path_join(out, cap, kg_cache_dir(), model_aliases[i].path));
    if (!kg_path_exists(out))
      return kg_error(KG_ERR_NOT_FOUND, "model '%s' is not downloaded (%s is missing); run 'kickgrid data fetch --only %s'",
                      model_aliases[i].alias, out, model_aliases[i].alias);
    return KG_OK;
  }
  int n = snprintf(out, cap, "%s", spec);
  if (n < 0 || (size_t)n >= cap) return kg_error(KG_ERR_ARG, "model path too long: %s", spec);
  return KG_OK;
}

int kg_resolve_data_file(const char *rel, char *out, size_t cap) {
  int rc = KG_OK;
  kg_manifest *m = NULL;
  KG_TRY(kg_data_path(out, cap, rel));
  if (kg_path_exists(out)) return KG_OK;
  char missing[PATH_MAX];
  snprintf(missing, sizeof(missing), "%s", out);
  /* Only on the error path: the manifest tells which entry to fetch. */
  if (kg_manifest_load(NULL, &m) < 0) {
    kg_error_clear();
    rc = kg_error(KG_ERR_NOT_FOUND, "data file %s is missing (data directory %s; set KG_DATA_DIR or --data-dir)",
                  missing, kg_data_dir());
    goto done;
  }
  const kg_data_entry *e = kg_manifest_find(m, rel);
  if (e && e->location == KG_DATA_IN_CACHE) {
    if ((rc = kg_data_entry_file(e, out, cap)) < 0) goto done;
    if (kg_path_exists(out)) goto done;
    snprintf(missing, sizeof(missing), "%s", out);
  }
  if (e)
    rc = kg_error(KG_ERR_NOT_FOUND, "data file %s is missing (manifest entry '%s'); run 'kickgrid data fetch --only %s'",
                  missing, e->name, e->name);
  else
    rc = kg_error(KG_ERR_NOT_FOUND, "data file %s is missing and not in the data manifest %s (data directory %s)",
                  missing, m->path, kg_data_dir());
done:
  kg_manifest_free(m);
  return rc;
}
