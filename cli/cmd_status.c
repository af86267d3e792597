/* kickgrid status: what a result cube holds and how far its sweep got. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/cube.h"
#include "io/error.h"

static const char *const usage_text =
    "usage: kickgrid status CUBE.h5 [--json] [--max-failed N]\n\n"
    "Prints a result cube's dimensions and sizes, how many cells each variable\n"
    "has set, the count of grid cells per value of the `status` variable, the\n"
    "failed cells with their `error` message, and the provenance attributes.\n\n"
    "  --json          print one JSON object instead (every failed cell, full attributes)\n"
    "  --max-failed N  list at most N failed cells in text mode (default 20)\n";

static const char *type_name(kg_cube_type t) {
  return t == KG_CUBE_F64 ? "float64" : t == KG_CUBE_I32 ? "int32" : "string";
}

static int64_t count_set(const kg_cube *c, int v) {
  int64_t n = 0, cells = kg_cube_var_cells(c, v);
  for (int64_t f = 0; f < cells; f++) n += !kg_cube_flat_is_fill(c, v, f);
  return n;
}

/* Distinct status values: done, failed, pending, n/a first, then others in
 * first-seen order, "" (never set) last. */
typedef struct {
  const char *value[64];
  int64_t count[64];
  int n;
  int64_t other; /* values beyond the table */
} status_counts;

static void count_statuses(const kg_cube *c, int s, status_counts *sc) {
  static const char *const known[] = {"done", "failed", "pending", "n/a"};
  memset(sc, 0, sizeof(*sc));
  for (int i = 0; i < 4; i++) sc->value[sc->n++] = known[i];
  const char *const *data = kg_cube_data_str(c, s);
  int64_t cells = kg_cube_var_cells(c, s), unset = 0;
  for (int64_t f = 0; f < cells; f++) {
    const char *v = data[f] ? data[f] : "";
    if (!v[0]) { unset++; continue; }
    int k = 0;
    while (k < sc->n && strcmp(sc->value[k], v)) k++;
    if (k == sc->n) {
      if (sc->n == 63) { sc->other++; continue; }
      sc->value[sc->n++] = v;
    }
    sc->count[k]++;
  }
  sc->value[sc->n] = "";
  sc->count[sc->n++] = unset;
}

/* The `error` variable when it lies over exactly status's dimensions. */
static int error_var_for(const kg_cube *c, int s) {
  int e = kg_cube_find_var(c, "error");
  kg_error_clear();
  if (e < 0 || kg_cube_var_type(c, e) != KG_CUBE_STR || kg_cube_var_ndims(c, e) != kg_cube_var_ndims(c, s)) return -1;
  for (int k = 0; k < kg_cube_var_ndims(c, s); k++)
    if (kg_cube_var_dim(c, e, k) != kg_cube_var_dim(c, s, k)) return -1;
  return e;
}

static cJSON *label_json(const kg_cube *c, int d, int64_t i) {
  switch (kg_cube_dim_type(c, d)) {
  case KG_CUBE_F64: return cJSON_CreateNumber(kg_cube_label_f64(c, d, i));
  case KG_CUBE_I32: return cJSON_CreateNumber(kg_cube_label_i32(c, d, i));
  default: return cJSON_CreateString(kg_cube_label_str(c, d, i));
  }
}

static int print_json(const char *path, const kg_cube *c, int s) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "path", path);
  cJSON *dims = cJSON_AddArrayToObject(root, "dims");
  for (int d = 0; d < kg_cube_n_dims(c); d++) {
    cJSON *o = cJSON_CreateObject(), *labels;
    cJSON_AddStringToObject(o, "name", kg_cube_dim_name(c, d));
    cJSON_AddNumberToObject(o, "size", (double)kg_cube_dim_size(c, d));
    cJSON_AddStringToObject(o, "type", type_name(kg_cube_dim_type(c, d)));
    labels = cJSON_AddArrayToObject(o, "labels");
    for (int64_t i = 0; i < kg_cube_dim_size(c, d); i++) cJSON_AddItemToArray(labels, label_json(c, d, i));
    cJSON_AddItemToArray(dims, o);
  }
  cJSON *vars = cJSON_AddArrayToObject(root, "variables");
  for (int v = 0; v < kg_cube_n_vars(c); v++) {
    cJSON *o = cJSON_CreateObject(), *vd;
    cJSON_AddStringToObject(o, "name", kg_cube_var_name(c, v));
    cJSON_AddStringToObject(o, "type", type_name(kg_cube_var_type(c, v)));
    vd = cJSON_AddArrayToObject(o, "dims");
    for (int k = 0; k < kg_cube_var_ndims(c, v); k++)
      cJSON_AddItemToArray(vd, cJSON_CreateString(kg_cube_dim_name(c, kg_cube_var_dim(c, v, k))));
    cJSON_AddNumberToObject(o, "cells", (double)kg_cube_var_cells(c, v));
    cJSON_AddNumberToObject(o, "set", (double)count_set(c, v));
    cJSON_AddItemToArray(vars, o);
  }
  if (s >= 0) {
    status_counts sc;
    count_statuses(c, s, &sc);
    cJSON *st = cJSON_AddObjectToObject(root, "status");
    cJSON_AddNumberToObject(st, "cells", (double)kg_cube_var_cells(c, s));
    cJSON *counts = cJSON_AddObjectToObject(st, "counts");
    for (int k = 0; k < sc.n; k++)
      if (sc.count[k] || k < 4) cJSON_AddNumberToObject(counts, sc.value[k][0] ? sc.value[k] : "unset", (double)sc.count[k]);
    int e = error_var_for(c, s);
    cJSON *failed = cJSON_AddArrayToObject(root, "failed");
    const char *const *data = kg_cube_data_str(c, s);
    int64_t idx[KG_CUBE_MAX_RANK];
    for (int64_t f = 0; f < kg_cube_var_cells(c, s); f++) {
      if (!data[f] || strcmp(data[f], "failed")) continue;
      cJSON *o = cJSON_CreateObject(), *cell = cJSON_AddObjectToObject(o, "cell");
      kg_cube_unflatten(c, s, f, idx);
      for (int k = 0; k < kg_cube_var_ndims(c, s); k++) {
        int d = kg_cube_var_dim(c, s, k);
        cJSON_AddItemToObject(cell, kg_cube_dim_name(c, d), label_json(c, d, idx[k]));
      }
      if (e >= 0) {
        const char *msg = kg_cube_data_str(c, e)[f];
        cJSON_AddStringToObject(o, "error", msg ? msg : "");
      }
      cJSON_AddItemToArray(failed, o);
    }
  } else {
    cJSON_AddNullToObject(root, "status");
  }
  cJSON *attrs = cJSON_AddObjectToObject(root, "attributes");
  for (int i = 0; i < kg_cube_n_attrs(c, KG_CUBE_GLOBAL); i++)
    cJSON_AddStringToObject(attrs, kg_cube_attr_key(c, KG_CUBE_GLOBAL, i), kg_cube_attr_value(c, KG_CUBE_GLOBAL, i));
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) {
    kg_error(KG_ERR_NOMEM, "out of memory printing JSON");
    return kg_cli_fail("status");
  }
  printf("%s\n", text);
  free(text);
  return 0;
}

static void print_labels(const kg_cube *c, int d) {
  int64_t n = kg_cube_dim_size(c, d), shown = n > 8 ? 6 : n;
  for (int64_t i = 0; i < shown; i++) {
    char label[128];
    kg_cube_label_text(c, d, i, label, sizeof(label));
    printf("%s%s", i ? ", " : "", label);
  }
  if (shown < n) printf(", ... (%lld more)", (long long)(n - shown));
}

static void print_dims_of(const kg_cube *c, int v) {
  printf("(");
  for (int k = 0; k < kg_cube_var_ndims(c, v); k++) printf("%s%s", k ? ", " : "", kg_cube_dim_name(c, kg_cube_var_dim(c, v, k)));
  printf(")");
}

/* First line of a provenance value, with its size when it has more. */
static void print_attr_summary(const char *key, const char *value) {
  size_t len = strlen(value), first = strcspn(value, "\n");
  int lines = 1;
  for (const char *p = value; *p; p++) lines += *p == '\n' && p[1];
  printf("  %-22s %.*s%s", key, (int)(first > 100 ? 100 : first), value, first > 100 ? "..." : "");
  if (lines > 1) printf("  [%d lines, %zu bytes]", lines, len);
  printf("\n");
}

static int print_text(const char *path, const kg_cube *c, int s, long long max_failed) {
  printf("cube: %s\n\ndimensions (%d):\n", path, kg_cube_n_dims(c));
  for (int d = 0; d < kg_cube_n_dims(c); d++) {
    printf("  %-16s %6lld  %-7s  ", kg_cube_dim_name(c, d), (long long)kg_cube_dim_size(c, d),
           type_name(kg_cube_dim_type(c, d)));
    print_labels(c, d);
    printf("\n");
  }
  printf("\nvariables (%d):\n", kg_cube_n_vars(c));
  for (int v = 0; v < kg_cube_n_vars(c); v++) {
    printf("  %-22s %-7s  %lld/%lld set  ", kg_cube_var_name(c, v), type_name(kg_cube_var_type(c, v)),
           (long long)count_set(c, v), (long long)kg_cube_var_cells(c, v));
    print_dims_of(c, v);
    printf("\n");
  }
  if (s >= 0) {
    status_counts sc;
    count_statuses(c, s, &sc);
    printf("\ncells by status (%lld cells over ", (long long)kg_cube_var_cells(c, s));
    print_dims_of(c, s);
    printf("):\n");
    for (int k = 0; k < sc.n; k++)
      if (sc.count[k] || k < 4) printf("  %-10s %lld\n", sc.value[k][0] ? sc.value[k] : "(unset)", (long long)sc.count[k]);
    if (sc.other) printf("  %-10s %lld\n", "(others)", (long long)sc.other);
    int e = error_var_for(c, s);
    const char *const *data = kg_cube_data_str(c, s);
    int64_t idx[KG_CUBE_MAX_RANK], n_failed = 0;
    for (int64_t f = 0; f < kg_cube_var_cells(c, s); f++) n_failed += data[f] && !strcmp(data[f], "failed");
    if (n_failed) printf("\nfailed cells (%lld):\n", (long long)n_failed);
    int64_t shown = 0;
    for (int64_t f = 0; f < kg_cube_var_cells(c, s) && shown < max_failed; f++) {
      if (!data[f] || strcmp(data[f], "failed")) continue;
      char cell[1024];
      kg_cube_unflatten(c, s, f, idx);
      kg_cube_cell_text(c, s, idx, cell, sizeof(cell));
      const char *msg = e >= 0 ? kg_cube_data_str(c, e)[f] : NULL;
      printf("  %s%s%s\n", cell, msg && msg[0] ? ": " : "", msg ? msg : "");
      shown++;
    }
    if (shown < n_failed) printf("  ... and %lld more (see --json)\n", (long long)(n_failed - shown));
  } else {
    printf("\n(no `status` variable: cells by status unknown)\n");
  }
  int na = kg_cube_n_attrs(c, KG_CUBE_GLOBAL);
  printf("\nprovenance (%d attributes):\n", na);
  for (int i = 0; i < na; i++)
    print_attr_summary(kg_cube_attr_key(c, KG_CUBE_GLOBAL, i), kg_cube_attr_value(c, KG_CUBE_GLOBAL, i));
  return 0;
}

int kg_cmd_status(int argc, char **argv) {
  static const struct option opts[] = {
      {"json", no_argument, NULL, 'j'}, {"max-failed", required_argument, NULL, 'm'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
  int json = 0, c;
  long long max_failed = 20;
  kg_cube *cube = NULL;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'h') {
      fputs(usage_text, stdout);
      return 0;
    }
    if (c == 'j') json = 1;
    else if (c == 'm') {
      if (kg_cli_parse_int("status", "--max-failed", optarg, 0, 1LL << 40, &max_failed)) return 2;
    } else {
      return kg_cli_usage_error("status", "unknown option");
    }
  }
  if (optind != argc - 1) return kg_cli_usage_error("status", "expected exactly one cube file");
  const char *path = argv[optind];
  if (kg_cube_read(path, &cube) < 0) return kg_cli_fail("status");
  int s = kg_cube_find_var(cube, "status");
  kg_error_clear();
  if (s >= 0 && kg_cube_var_type(cube, s) != KG_CUBE_STR) s = -1;
  int rc = json ? print_json(path, cube, s) : print_text(path, cube, s, max_failed);
  kg_cube_free(cube);
  return rc;
}
