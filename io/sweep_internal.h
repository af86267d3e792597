/* Shared by io/sweep_*.c only: the validation context and typed getters
 * that turn libconfig settings into values or diagnostics. Not a public
 * header; other modules use io/sweep_config.h. */
#ifndef KG_IO_SWEEP_INTERNAL_H
#define KG_IO_SWEEP_INTERNAL_H

#include <libconfig.h>

#include "io/sweep_config.h"

/* Getter results: the key is absent (the caller keeps its default), present
 * and valid, or present and wrong (a diagnostic was recorded). */
enum { KG_SV_ABSENT = 0, KG_SV_OK = 1, KG_SV_BAD = -1 };

typedef struct kg_sv {
  kg_diag_list *diags;
  const kg_sweep_options *opts;
  kg_sweep *sw;
  const char *path;
  char include_dir[4096]; /* the config's directory: libconfig resolves @include against it */
  int nomem; /* an allocation failed while collecting; the load fails with KG_ERR_NOMEM */
  /* Errors found in each section; the cross checks trust only clean ones. */
  size_t err_models, err_methods, err_sparsity, err_calibration, err_pruning, err_evaluation, err_grid;
  /* Settings kept for cross-section checks, parallel to the sweep's arrays;
   * they live as long as the config_t. NULL entries mean "not written". */
  const config_setting_t *root, *s_prune_method, *s_sparsity, *s_calibration, *s_quant, *s_pruning;
  const config_setting_t *s_evaluation, *s_js, *s_js_enabled, *s_grid, *s_team_size, *s_blocksize, *s_owl_lambda;
  const config_setting_t *s_js_seqlen;
  const config_setting_t **method_set;   /* [n_methods]; [0] (dense) is NULL */
  /* Key paths ("sparsity[2]") keep the config's numbering when earlier
   * entries were rejected. */
  const config_setting_t **sparsity_set; /* [n_sparsities] */
  const char **sparsity_kp;
  const config_setting_t **calib_seqlen_set; /* [n_calibs] */
  const char **calib_kp;
  const config_setting_t **ppl_seqlen_set; /* [n_ppl] */
  const char **ppl_kp;
  const config_setting_t **model_set;    /* [n_models] */
} kg_sv;

/* Diagnostics located at a setting (its file and line; the root maps to line 1). */
void kg_sv_error(kg_sv *v, const config_setting_t *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void kg_sv_warning(kg_sv *v, const config_setting_t *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A file name as libconfig reports it, made relative to the working
 * directory (an @include is recorded relative to the config's directory). */
const char *kg_sv_display_path(kg_sv *v, const char *file, char *buf, size_t cap);
/* "prefix.key", or "key" when prefix is empty; into buf. */
const char *kg_sv_keypath(char *buf, size_t cap, const char *prefix, const char *key);
/* "a string (\"128\")", "an integer (5)", "a group", ... */
const char *kg_sv_describe(const config_setting_t *s, char *buf, size_t cap);
/* Best near miss of `word` among `names` (edit distance), or NULL. */
const char *kg_sv_suggest(const char *word, const char *const *names);

/* Reports every member of group `g` not in `allowed` (NULL-terminated). */
void kg_sv_check_keys(kg_sv *v, const config_setting_t *g, const char *prefix, const char *const *allowed);
/* A list of groups ( { ... }, ... ) (an empty [] too); reports anything else
 * at `s` and returns 0. `example` shows one element in the message. */
int kg_sv_group_list(kg_sv *v, const config_setting_t *s, const char *key, const char *example);
/* A group; reports anything else at `e` and returns 0. */
int kg_sv_element_group(kg_sv *v, const config_setting_t *e, const char *prefix, const char *example);
/* Reports `key` missing from `g` (at the line of g). */
void kg_sv_missing(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key);

int kg_sv_int(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, long long min, long long max,
              long long *out);
/* lo/hi bounds; *_open makes the bound exclusive; hi = INFINITY for none. */
int kg_sv_float(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, double lo, int lo_open,
                double hi, int hi_open, double *out);
int kg_sv_bool(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, int *out);
/* The string is owned by the config; copy it into the arena to keep it. */
int kg_sv_string(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, const char **out);
/* kg_sv_string that also reports the key missing. */
int kg_sv_required_string(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, const char **out);
/* A string that must be one of `names`; *out is its index. `noun` names the
 * kind of value in the message ("method", "dtype"). */
int kg_sv_enum(kg_sv *v, const config_setting_t *g, const char *prefix, const char *key, const char *noun,
               const char *const *names, int *out);
/* Letters, digits, '.', '_', '-', '+'; 1..64 bytes (names end up in cell keys and file names). */
int kg_sv_check_name(kg_sv *v, const config_setting_t *at, const char *keypath, const char *name);
/* Copies into the sweep arena; sets v->nomem on failure. */
char *kg_sv_strdup(kg_sv *v, const char *s);
void *kg_sv_alloc(kg_sv *v, size_t n, size_t size);

/* Sections (io/sweep_validate.c, io/sweep_sections.c). */
void kg_sv_models(kg_sv *v, const config_setting_t *root);
void kg_sv_methods(kg_sv *v, const config_setting_t *root);
void kg_sv_sparsity(kg_sv *v, const config_setting_t *root);
void kg_sv_calibration(kg_sv *v, const config_setting_t *root);
void kg_sv_pruning(kg_sv *v, const config_setting_t *root);
void kg_sv_evaluation(kg_sv *v, const config_setting_t *root);
void kg_sv_grid(kg_sv *v, const config_setting_t *root);
void kg_sv_cross_checks(kg_sv *v);

/* Tasks as calibration sources exclude these (no prompt pool to sample). */
int kg_sv_task_is_calibration_source(const char *task);
int kg_sv_task_index(const char *name);
/* Parses "wikitext2", "c4" or "file:PATH" for perplexity/JS datasets. */
int kg_sv_text_dataset(kg_sv *v, const config_setting_t *at, const char *keypath, const char *value,
                       kg_text_kind *kind, const char **path);

/* Shortest decimal that reads back as the same double ("0.6", not
 * "0.59999999999999998"): sparsity labels in cell keys and the cube. */
void kg_sv_ratio_label(double x, char *buf, size_t cap);

/* Fills sweep->dims (io/sweep_cells.c). */
int kg_sv_build_dims(kg_sv *v);

#endif
