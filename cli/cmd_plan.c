/* kickgrid plan: validate a sweep config, list its cells, estimate its cost. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/error.h"
#include "io/sweep_config.h"
#include "io/sweep_cost.h"

static const char usage[] =
    "usage: kickgrid plan [options] SWEEP.cfg\n\n"
    "Validates a sweep config before any work: every problem is reported at once\n"
    "as FILE:LINE: message. Then prints the cells of the grid (computed, or\n"
    "replicas whose values are copied because the method ignores calibration\n"
    "data), the counts, and a rough cost per model and in total.\n\n"
    "options:\n"
    "  --json                  print the plan as JSON on stdout\n"
    "  --allow-missing-models  report model paths that do not exist as warnings\n"
    "                          (the shipped paper configs hold paths you edit)\n"
    "  --no-cells              leave out the per-cell table\n"
    "  --ranks N               check the sweep for `mpirun -np N` (the team must fit;\n"
    "                          with N > 1 rank 0 only coordinates) and estimate the\n"
    "                          wall time with all teams busy\n"
    "  -h, --help              this text\n\n"
    "exit status: 0 valid (warnings allowed), 1 errors in the config, 2 usage.\n"
    "Config keys are described in configs/README.md.\n";

/* "3.2 PFLOP" */
static const char *fmt_flops(double f, char *buf, size_t cap) {
  static const char *const units[] = {"FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP", "ZFLOP"};
  int u = 0;
  while (f >= 1000.0 && u < 7) {
    f /= 1000.0;
    u++;
  }
  snprintf(buf, cap, "%.3g %s", f, units[u]);
  return buf;
}

/* Seconds as "42 s", "12 min", "3.1 h" or "4.2 days". */
static const char *fmt_time(double s, char *buf, size_t cap) {
  if (s < 120) snprintf(buf, cap, "%.2g s", s);
  else if (s < 7200) snprintf(buf, cap, "%.3g min", s / 60);
  else if (s < 3 * 86400) snprintf(buf, cap, "%.3g h", s / 3600);
  else snprintf(buf, cap, "%.3g days", s / 86400);
  return buf;
}

static const char *model_source(const kg_sweep_model *m, char *buf, size_t cap) {
  if (m->source == KG_MODEL_SYNTHETIC) snprintf(buf, cap, "synthetic %s (seed %llu)", m->synthetic, (unsigned long long)m->seed);
  else if (m->source == KG_MODEL_ALIAS) snprintf(buf, cap, "alias %s", m->path);
  else snprintf(buf, cap, "%s", m->path);
  return buf;
}

static cJSON *diags_json(const kg_diag_list *d) {
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; arr && i < d->count; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", d->items[i].file);
    cJSON_AddNumberToObject(o, "line", d->items[i].line);
    cJSON_AddStringToObject(o, "severity", d->items[i].severity == KG_DIAG_ERROR ? "error" : "warning");
    cJSON_AddStringToObject(o, "message", d->items[i].message);
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

static void print_json(cJSON *root) {
  char *text = cJSON_Print(root);
  if (text) {
    fputs(text, stdout);
    fputc('\n', stdout);
  }
  free(text);
}

/* Teams that work at once under `mpirun -np ranks` (0 when not given). */
static int teams_for(const kg_sweep *sw, int ranks) {
  int workers = ranks > 1 ? ranks - 1 : ranks;
  return workers / sw->grid.team_size;
}

static void print_text(const kg_sweep *sw, const kg_sweep_cells *cells, const kg_cell_cost *costs,
                       const kg_cost_assumptions *a, int show_cells, int ranks) {
  const kg_sweep_axes *d = kg_sweep_dims(sw);
  char b1[64], b2[64], b3[64], src[512];
  printf("sweep \"%s\" (%s)\n", sw->name, sw->path);
  printf("dimensions:");
  for (int i = 0; i < KG_SWEEP_NDIMS; i++) printf("%s %s %zu", i ? " x" : "", d->dim[i].name, d->dim[i].len);
  printf(" = %zu cube cells\n", cells->cube_size);
  for (int i = 0; i < KG_SWEEP_NDIMS; i++) {
    printf("  %-13s", d->dim[i].name);
    for (size_t j = 0; j < d->dim[i].len; j++) printf(" %s", d->dim[i].labels[j]);
    printf("\n");
  }

  if (show_cells) {
    size_t width = 4;
    for (size_t i = 0; i < cells->n_cells; i++)
      if (strlen(cells->cells[i].key) > width) width = strlen(cells->cells[i].key);
    printf("\ncells (cube order):\n  %-*s  %-8s  %s\n", (int)width, "key", "status", "work");
    for (size_t i = 0; i < cells->n_cells; i++) {
      const kg_sweep_cell *c = &cells->cells[i];
      if (c->replica_of >= 0)
        printf("  %-*s  %-8s  copies %s\n", (int)width, c->key, "replica", cells->cells[c->replica_of].key);
      else
        printf("  %-*s  %-8s  %s\n", (int)width, c->key, "computed",
               costs[i].params_known ? fmt_flops(costs[i].total_flops, b1, sizeof b1) : "size unknown");
    }
  }

  printf("\nn/a (method, sparsity, structure) slots: %zu of %zu\n", cells->n_slots_na, cells->n_slots);
  if (cells->n_slots_na <= 48) {
    size_t ns = d->dim[KG_DIM_SPARSITY].len, nt = d->dim[KG_DIM_STRUCTURE].len;
    for (size_t p = 0; p < d->dim[KG_DIM_METHOD].len; p++) {
      int any = 0;
      for (size_t s = 0; s < ns; s++)
        for (size_t t = 0; t < nt; t++)
          if (kg_sweep_slot_na(sw, cells, (int)p, (int)s, (int)t)) {
            if (!any) printf("  %s:", d->dim[KG_DIM_METHOD].labels[p]);
            printf("%s %s/%s", any ? "," : "", d->dim[KG_DIM_SPARSITY].labels[s], d->dim[KG_DIM_STRUCTURE].labels[t]);
            any = 1;
          }
      if (any) printf("\n");
    }
  }
  printf("counts: computed %zu, replicas %zu, n/a %zu, total %zu\n", cells->n_computed, cells->n_replicas, cells->n_na,
         cells->cube_size);

  printf("\nmodels:\n");
  for (size_t i = 0; i < sw->n_models; i++) {
    const kg_sweep_model *m = &sw->models[i];
    if (m->n_params > 0)
      printf("  %-18s %s: %.4g M parameters", m->name, model_source(m, src, sizeof src), (double)m->n_params / 1e6);
    else printf("  %-18s %s: size unknown", m->name, model_source(m, src, sizeof src));
    if (m->shape_known) printf(", %d layers, context %d", m->shape.n_layers, m->shape.max_seq_len);
    printf("\n");
  }

  printf("\ncost (rough):\n");
  printf("  assumptions: forward = 2 x parameters FLOPs per token; calibration, Hessian and\n"
         "  evaluation work as in io/sweep_cost.h; WikiText-2 test %.0fk tokens, C4 %g windows,\n"
         "  file: texts %g bytes/token; CPU %.2g TFLOP/s sustained (one node, fp32 BLAS),\n"
         "  one H100 %.3g TFLOP/s sustained. Replicas cost nothing.\n",
         a->wikitext2_tokens / 1e3, a->c4_eval_windows, a->bytes_per_token, a->cpu_flops_per_s / 1e12,
         a->gpu_flops_per_s / 1e12);
  double total = 0;
  size_t uncosted = 0, hessian_unknown = 0;
  for (size_t mi = 0; mi < sw->n_models; mi++) {
    double f = 0, calib = 0, hess = 0, eval = 0;
    size_t n = 0;
    for (size_t i = 0; i < cells->n_cells; i++) {
      const kg_sweep_cell *c = &cells->cells[i];
      if (c->replica_of >= 0 || c->model != &sw->models[mi]) continue;
      n++;
      if (!costs[i].params_known) {
        uncosted++;
        continue;
      }
      hessian_unknown += !costs[i].hessian_known;
      f += costs[i].total_flops;
      calib += costs[i].calib_flops;
      hess += costs[i].hessian_flops;
      eval += costs[i].eval_flops;
    }
    total += f;
    if (sw->models[mi].n_params <= 0) {
      printf("  %-18s %zu computed cells: size unknown\n", sw->models[mi].name, n);
      continue;
    }
    printf("  %-18s %zu computed cells, %s", sw->models[mi].name, n, fmt_flops(f, b1, sizeof b1));
    printf(" (calibration %s, ", fmt_flops(calib, b1, sizeof b1));
    printf("Hessian %s, ", fmt_flops(hess, b1, sizeof b1));
    printf("evaluation %s)", fmt_flops(eval, b1, sizeof b1));
    printf(": CPU %s, one H100 %s\n", fmt_time(f / a->cpu_flops_per_s, b2, sizeof b2),
           fmt_time(f / a->gpu_flops_per_s, b3, sizeof b3));
  }
  printf("  total: %s: CPU %s, one H100 %s", fmt_flops(total, b1, sizeof b1),
         fmt_time(total / a->cpu_flops_per_s, b2, sizeof b2), fmt_time(total / a->gpu_flops_per_s, b3, sizeof b3));
  int teams = teams_for(sw, ranks);
  if (teams > 0)
    printf("\n  with %d ranks: %d team%s of %d: about CPU %s, H100 %s of wall time if the work splits evenly\n", ranks,
           teams, teams == 1 ? "" : "s", sw->grid.team_size, fmt_time(total / a->cpu_flops_per_s / teams, b2, sizeof b2),
           fmt_time(total / a->gpu_flops_per_s / teams, b3, sizeof b3));
  else printf(" (divide by the number of teams working at once)\n");
  if (uncosted) printf("  %zu computed cells are not counted: their model's size is unknown\n", uncosted);
  if (hessian_unknown)
    printf("  %zu cells leave out SparseGPT/GPTQ Hessian work: their model's shape is unknown\n", hessian_unknown);
}

static cJSON *plan_json(const kg_sweep *sw, const kg_sweep_cells *cells, const kg_cell_cost *costs,
                        const kg_cost_assumptions *a, const kg_diag_list *diags, int ranks) {
  const kg_sweep_axes *d = kg_sweep_dims(sw);
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "config", sw->path);
  cJSON_AddStringToObject(root, "name", sw->name);
  cJSON_AddBoolToObject(root, "valid", 1);
  cJSON_AddItemToObject(root, "diagnostics", diags_json(diags));
  cJSON *dims = cJSON_AddObjectToObject(root, "dims");
  for (int i = 0; i < KG_SWEEP_NDIMS; i++) {
    cJSON *arr = d->dim[i].values ? cJSON_CreateDoubleArray(d->dim[i].values, (int)d->dim[i].len)
                                  : cJSON_CreateStringArray(d->dim[i].labels, (int)d->dim[i].len);
    cJSON_AddItemToObject(dims, d->dim[i].name, arr);
  }
  cJSON *jc = cJSON_AddArrayToObject(root, "cells");
  double total = 0;
  size_t uncosted = 0;
  for (size_t i = 0; i < cells->n_cells; i++) {
    const kg_sweep_cell *c = &cells->cells[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", c->key);
    cJSON *idx = cJSON_CreateIntArray(c->index, KG_SWEEP_NDIMS);
    cJSON_AddItemToObject(o, "index", idx);
    cJSON_AddStringToObject(o, "status", c->replica_of >= 0 ? "replica" : "computed");
    if (c->replica_of >= 0) cJSON_AddStringToObject(o, "replica_of", cells->cells[c->replica_of].key);
    else if (costs[i].params_known) {
      cJSON_AddNumberToObject(o, "flops", costs[i].total_flops);
      cJSON_AddNumberToObject(o, "calibration_flops", costs[i].calib_flops);
      cJSON_AddNumberToObject(o, "hessian_flops", costs[i].hessian_flops);
      cJSON_AddNumberToObject(o, "evaluation_flops", costs[i].eval_flops);
      total += costs[i].total_flops;
    } else uncosted++;
    cJSON_AddItemToArray(jc, o);
  }
  cJSON *na = cJSON_AddArrayToObject(root, "na_slots");
  for (size_t p = 0; p < d->dim[KG_DIM_METHOD].len; p++)
    for (size_t s = 0; s < d->dim[KG_DIM_SPARSITY].len; s++)
      for (size_t t = 0; t < d->dim[KG_DIM_STRUCTURE].len; t++) {
        if (!kg_sweep_slot_na(sw, cells, (int)p, (int)s, (int)t)) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prune_method", d->dim[KG_DIM_METHOD].labels[p]);
        cJSON_AddNumberToObject(o, "sparsity", d->dim[KG_DIM_SPARSITY].values[s]);
        cJSON_AddStringToObject(o, "structure", d->dim[KG_DIM_STRUCTURE].labels[t]);
        cJSON_AddItemToArray(na, o);
      }
  cJSON *counts = cJSON_AddObjectToObject(root, "counts");
  cJSON_AddNumberToObject(counts, "computed", (double)cells->n_computed);
  cJSON_AddNumberToObject(counts, "replicas", (double)cells->n_replicas);
  cJSON_AddNumberToObject(counts, "na", (double)cells->n_na);
  cJSON_AddNumberToObject(counts, "total", (double)cells->cube_size);
  cJSON *models = cJSON_AddArrayToObject(root, "models");
  for (size_t i = 0; i < sw->n_models; i++) {
    const kg_sweep_model *m = &sw->models[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "source", m->source == KG_MODEL_SYNTHETIC ? "synthetic" : m->source == KG_MODEL_ALIAS ? "alias" : "path");
    cJSON_AddStringToObject(o, m->synthetic ? "synthetic" : "path", m->synthetic ? m->synthetic : m->path);
    cJSON_AddStringToObject(o, "open", m->open_spec);
    if (m->n_params > 0) cJSON_AddNumberToObject(o, "params", (double)m->n_params);
    else cJSON_AddNullToObject(o, "params");
    if (m->shape_known) {
      cJSON_AddNumberToObject(o, "layers", m->shape.n_layers);
      cJSON_AddNumberToObject(o, "context", m->shape.max_seq_len);
    }
    cJSON_AddItemToArray(models, o);
  }
  cJSON *cost = cJSON_AddObjectToObject(root, "cost");
  cJSON *as = cJSON_AddObjectToObject(cost, "assumptions");
  cJSON_AddNumberToObject(as, "cpu_flops_per_s", a->cpu_flops_per_s);
  cJSON_AddNumberToObject(as, "h100_flops_per_s", a->gpu_flops_per_s);
  cJSON_AddNumberToObject(as, "wikitext2_tokens", a->wikitext2_tokens);
  cJSON_AddNumberToObject(as, "c4_eval_windows", a->c4_eval_windows);
  cJSON_AddNumberToObject(as, "bytes_per_token", a->bytes_per_token);
  cJSON_AddStringToObject(as, "forward", "2 * parameters FLOPs per token");
  cJSON_AddNumberToObject(cost, "total_flops", total);
  cJSON_AddNumberToObject(cost, "cpu_hours", total / a->cpu_flops_per_s / 3600.0);
  cJSON_AddNumberToObject(cost, "h100_hours", total / a->gpu_flops_per_s / 3600.0);
  cJSON_AddNumberToObject(cost, "cells_without_cost", (double)uncosted);
  int teams = teams_for(sw, ranks);
  if (teams > 0) {
    cJSON_AddNumberToObject(cost, "ranks", ranks);
    cJSON_AddNumberToObject(cost, "teams", teams);
    cJSON_AddNumberToObject(cost, "cpu_wall_hours", total / a->cpu_flops_per_s / 3600.0 / teams);
    cJSON_AddNumberToObject(cost, "h100_wall_hours", total / a->gpu_flops_per_s / 3600.0 / teams);
  }
  return root;
}

int kg_cmd_plan(int argc, char **argv) {
  const char *path = NULL;
  int json = 0, show_cells = 1;
  long long ranks = 0;
  kg_sweep_options opts = {0};
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--allow-missing-models")) opts.missing_models_are_warnings = 1;
    else if (!strcmp(a, "--no-cells")) show_cells = 0;
    else if (!strcmp(a, "--ranks")) {
      if (i + 1 >= argc) return kg_cli_usage_error("plan", "--ranks needs a value");
      if (kg_cli_parse_int("plan", a, argv[++i], 1, 1 << 24, &ranks)) return 2;
    }
    else if (a[0] == '-' && a[1]) return kg_cli_usage_error("plan", "unknown option %s", a);
    else if (path) return kg_cli_usage_error("plan", "one sweep config at a time (got %s and %s)", path, a);
    else path = a;
  }
  if (!path) return kg_cli_usage_error("plan", "a sweep config is required");

  int status = 0;
  kg_diag_list diags;
  kg_sweep *sw = NULL;
  kg_sweep_cells *cells = NULL;
  kg_cell_cost *costs = NULL;
  cJSON *out = NULL;
  kg_diag_list_init(&diags);
  int rc = kg_sweep_load_opts(path, &opts, &sw, &diags);
  /* The coordinator's own check, with the rank count it will see. */
  if (rc >= 0 && ranks > 0) rc = kg_sweep_check_world(sw, ranks > 1 ? (int)ranks - 1 : 1, &diags);
  kg_diag_list_print(&diags, stderr);
  if (rc < 0) {
    if (json && (out = cJSON_CreateObject())) {
      cJSON_AddStringToObject(out, "config", path);
      cJSON_AddBoolToObject(out, "valid", 0);
      cJSON_AddItemToObject(out, "diagnostics", diags_json(&diags));
      print_json(out);
    }
    status = kg_cli_fail("plan");
    goto done;
  }
  if (kg_sweep_expand(sw, &cells) < 0) {
    status = kg_cli_fail("plan");
    goto done;
  }
  kg_cost_assumptions a;
  kg_cost_default_assumptions(&a);
  if (!(costs = calloc(cells->n_cells ? cells->n_cells : 1, sizeof(*costs)))) {
    kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
    status = kg_cli_fail("plan");
    goto done;
  }
  for (size_t i = 0; i < cells->n_cells; i++)
    if (cells->cells[i].replica_of < 0) kg_sweep_cell_cost(sw, &cells->cells[i], &a, &costs[i]);
  if (json) {
    if (!(out = plan_json(sw, cells, costs, &a, &diags, (int)ranks))) {
      kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
      status = kg_cli_fail("plan");
      goto done;
    }
    print_json(out);
  } else {
    print_text(sw, cells, costs, &a, show_cells, (int)ranks);
  }
done:
  cJSON_Delete(out);
  free(costs);
  kg_sweep_cells_free(cells);
  kg_sweep_free(sw);
  kg_diag_list_free(&diags);
  return status;
}
