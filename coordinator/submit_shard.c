/* Splitting a sweep into per-model shards: one config per shard, each with
 * its own cube, so several batch jobs can run one grid and `kickgrid merge`
 * (or xarray.combine_by_coords) joins the results. */
#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/submit.h"
#include "io/error.h"
#include "io/sweep_cost.h"

int kg_submit_shard_models(const kg_sweep *sw, int k, int *shard_of_model) {
  int rc = KG_OK;
  kg_sweep_cells *cells = NULL;
  double *cost = NULL, *load = NULL;
  size_t *order = NULL;
  const size_t n = sw->n_models;
  if (k < 1 || (size_t)k > n)
    return kg_error(KG_ERR_ARG, "cannot split %zu model%s into %d jobs: a shard holds whole models", n,
                    n == 1 ? "" : "s", k);
  if ((rc = kg_sweep_expand(sw, &cells)) < 0) goto done;
  cost = calloc(n, sizeof(*cost));
  load = calloc((size_t)k, sizeof(*load));
  order = calloc(n, sizeof(*order));
  if (!cost || !load || !order) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  kg_cost_assumptions a;
  kg_cost_default_assumptions(&a);
  double known_sum = 0;
  size_t known = 0;
  int *unknown = calloc(n, sizeof(int));
  if (!unknown) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < cells->n_cells; i++) {
    const kg_sweep_cell *c = &cells->cells[i];
    if (c->replica_of >= 0) continue;
    kg_cell_cost cc;
    kg_sweep_cell_cost(sw, c, &a, &cc);
    size_t m = (size_t)c->index[KG_DIM_MODEL];
    if (cc.params_known) cost[m] += cc.total_flops;
    else unknown[m] = 1;
  }
  for (size_t m = 0; m < n; m++)
    if (!unknown[m]) {
      known_sum += cost[m];
      known++;
    }
  /* A model of unknown size (a placeholder path) counts as an average one. */
  for (size_t m = 0; m < n; m++)
    if (unknown[m]) cost[m] = known ? known_sum / (double)known : 1.0;
  free(unknown);
  for (size_t m = 0; m < n; m++) order[m] = m;
  /* Largest first (stable for equal costs, so the split is reproducible). */
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && cost[order[j]] > cost[order[j - 1]]; j--) {
      size_t t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  /* The first k models seed the k shards so that none is empty. */
  for (size_t r = 0; r < n; r++) {
    size_t m = order[r];
    int best = 0;
    if (r < (size_t)k) best = (int)r;
    else
      for (int s = 1; s < k; s++)
        if (load[s] < load[best]) best = s;
    shard_of_model[m] = best;
    load[best] += cost[m];
  }
done:
  kg_sweep_cells_free(cells);
  free(cost);
  free(load);
  free(order);
  return rc;
}

static void directory_of(const char *path, char *out, size_t cap) {
  snprintf(out, cap, "%s", path);
  char *slash = strrchr(out, '/');
  if (!slash) snprintf(out, cap, ".");
  else if (slash == out) out[1] = '\0';
  else *slash = '\0';
}

static int set_string(config_setting_t *group, const char *key, const char *value) {
  config_setting_t *s = config_setting_get_member(group, key);
  if (s && config_setting_type(s) != CONFIG_TYPE_STRING) {
    config_setting_remove(group, key);
    s = NULL;
  }
  if (!s) s = config_setting_add(group, key, CONFIG_TYPE_STRING);
  if (!s || config_setting_set_string(s, value) != CONFIG_TRUE)
    return kg_error(KG_ERR_NOMEM, "cannot set %s in the shard config", key);
  return KG_OK;
}

/* The shard must describe the same grid, minus the other models: libconfig
 * prints floats with 15 digits, which could move a sparsity label. */
static int check_shard(const kg_sweep *sw, const int *shard_of_model, int shard, const char *path) {
  kg_sweep *got = NULL;
  kg_diag_list diags;
  kg_diag_list_init(&diags);
  int rc = kg_sweep_load(path, &got, &diags);
  if (rc < 0) {
    kg_diag_list_print(&diags, stderr);
    kg_diag_list_free(&diags);
    return kg_error(KG_ERR_FORMAT, "%s: the shard config does not load (see above)", path);
  }
  kg_diag_list_free(&diags);
  size_t want = 0;
  for (size_t m = 0; m < sw->n_models; m++) want += shard_of_model[m] == shard;
  for (int d = 0; d < KG_SWEEP_NDIMS && rc >= 0; d++) {
    const kg_sweep_dim *a = &sw->dims.dim[d], *b = &got->dims.dim[d];
    if (d == KG_DIM_MODEL) {
      if (b->len != want) rc = kg_error(KG_ERR_FORMAT, "%s: %zu models, expected %zu", path, b->len, want);
      continue;
    }
    if (a->len != b->len) {
      rc = kg_error(KG_ERR_FORMAT, "%s: dimension %s has %zu labels, the sweep %zu", path, a->name, b->len, a->len);
      break;
    }
    for (size_t i = 0; i < a->len && rc >= 0; i++) {
      if (strcmp(a->labels[i], b->labels[i]) || (a->values && a->values[i] != b->values[i]))
        rc = kg_error(KG_ERR_FORMAT, "%s: %s label '%s' became '%s' when the config was rewritten", path, a->name,
                      a->labels[i], b->labels[i]);
    }
  }
  kg_sweep_free(got);
  return rc;
}

int kg_submit_write_shard(const char *config, const kg_sweep *sw, const int *shard_of_model, int shard,
                          const char *path, const char *cube, const char *log_dir) {
  config_t cf;
  config_init(&cf);
  int rc = KG_OK;
  char dir[4096];
  directory_of(config, dir, sizeof dir);
  config_set_include_dir(&cf, dir);
  if (config_read_file(&cf, config) != CONFIG_TRUE) {
    rc = kg_error(KG_ERR_FORMAT, "%s:%d: %s", config_error_file(&cf) ? config_error_file(&cf) : config,
                  config_error_line(&cf), config_error_text(&cf));
    goto done;
  }
  config_setting_t *models = config_lookup(&cf, "models");
  if (!models || !config_setting_is_aggregate(models)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: no models list", config);
    goto done;
  }
  for (int i = config_setting_length(models) - 1; i >= 0; i--) {
    const char *name = NULL;
    config_setting_t *m = config_setting_get_elem(models, (unsigned)i);
    if (!m || config_setting_lookup_string(m, "name", &name) != CONFIG_TRUE) {
      rc = kg_error(KG_ERR_FORMAT, "%s: models[%d] has no name", config, i);
      goto done;
    }
    size_t k = 0;
    while (k < sw->n_models && strcmp(sw->models[k].name, name)) k++;
    if (k == sw->n_models) {
      rc = kg_error(KG_ERR_FORMAT, "%s: models[%d] '%s' is not in the loaded sweep", config, i, name);
      goto done;
    }
    if (shard_of_model[k] != shard && config_setting_remove_elem(models, (unsigned)i) != CONFIG_TRUE) {
      rc = kg_error(KG_ERR_NOMEM, "cannot drop model '%s' from the shard config", name);
      goto done;
    }
  }
  config_setting_t *root = config_root_setting(&cf), *grid = config_setting_get_member(root, "grid");
  if (!grid && !(grid = config_setting_add(root, "grid", CONFIG_TYPE_GROUP))) {
    rc = kg_error(KG_ERR_NOMEM, "cannot add a grid group to the shard config");
    goto done;
  }
  if ((rc = set_string(grid, "output", cube)) < 0) goto done;
  if ((rc = set_string(grid, "log_dir", log_dir)) < 0) goto done;
  if (config_write_file(&cf, path) != CONFIG_TRUE) {
    rc = kg_error(KG_ERR_IO, "%s: cannot write the shard config", path);
    goto done;
  }
  rc = check_shard(sw, shard_of_model, shard, path);
done:
  config_destroy(&cf);
  return rc;
}
