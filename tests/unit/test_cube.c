/* The cube model, its HDF5 file (round trip, identical bytes, atomic
 * publish, errors) and merging. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "io/cube.h"
#include "io/error.h"
#include "kgtest.h"

static char tmpdir[256];

static void tmp_path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", tmpdir, name); }

static int read_all(const char *path, unsigned char **buf, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  *buf = malloc(*n ? *n : 1);
  size_t got = fread(*buf, 1, *n, f);
  fclose(f);
  return got == *n ? 0 : -1;
}

static int same_bytes(const char *a, const char *b) {
  unsigned char *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  int same = read_all(a, &x, &nx) == 0 && read_all(b, &y, &ny) == 0 && nx == ny && memcmp(x, y, nx) == 0;
  free(x);
  free(y);
  return same;
}

/* A grid like the coordinator's: string, float and int dimensions; float,
 * int and string variables with sub-axes; provenance. */
static kg_cube *sample_cube(double base) {
  kg_cube *c = kg_cube_create();
  const char *models[] = {"smollm2-135m"};
  const char *methods[] = {"dense", "magnitude", "wanda"};
  const double sparsity[] = {0.0, 0.5};
  const char *structure[] = {"unstructured", "2:4"};
  const char *tasks[] = {"boolq", "piqa"};
  const int32_t layers[] = {0, 1, 2, 3};
  CHECK(kg_cube_add_dim_str(c, "model", models, 1) == 0);
  CHECK(kg_cube_add_dim_str(c, "prune_method", methods, 3) == 1);
  CHECK(kg_cube_add_dim_f64(c, "sparsity", sparsity, 2) == 2);
  CHECK(kg_cube_add_dim_str(c, "structure", structure, 2) == 3);
  CHECK(kg_cube_add_dim_str(c, "task", tasks, 2) == 4);
  CHECK(kg_cube_add_dim_i32(c, "layer", layers, 4) == 5);
  const char *cell[] = {"model", "prune_method", "sparsity", "structure"};
  const char *cell_task[] = {"model", "prune_method", "sparsity", "structure", "task"};
  const char *cell_layer[] = {"model", "prune_method", "sparsity", "structure", "layer"};
  int ppl = kg_cube_add_var(c, "ppl", KG_CUBE_F64, cell, 4);
  int status = kg_cube_add_var(c, "status", KG_CUBE_STR, cell, 4);
  int acc = kg_cube_add_var(c, "acc", KG_CUBE_F64, cell_task, 5);
  int nnz = kg_cube_add_var(c, "nnz", KG_CUBE_I32, cell_layer, 5);
  CHECK(ppl == 0 && status == 1 && acc == 2 && nnz == 3);
  int64_t i[5] = {0, 2, 1, 0, 1};
  CHECK_OK(kg_cube_set_f64(c, ppl, i, base + 0.25));
  CHECK_OK(kg_cube_set_str(c, status, i, "done"));
  CHECK_OK(kg_cube_set_f64(c, acc, i, base / 100));
  CHECK_OK(kg_cube_set_i32(c, nnz, i, 4096));
  int64_t j[5] = {0, 1, 0, 1, 3};
  CHECK_OK(kg_cube_set_str(c, status, j, "failed"));
  CHECK_OK(kg_cube_set_i32(c, nnz, j, -7));
  CHECK_OK(kg_cube_set_attr(c, ppl, "units", "1"));
  CHECK_OK(kg_cube_set_attr(c, ppl, "long_name", "perplexity on WikiText-2"));
  CHECK_OK(kg_cube_set_attr(c, KG_CUBE_DIM(2), "long_name", "fraction of weights pruned"));
  CHECK_OK(kg_cube_set_attr(c, KG_CUBE_GLOBAL, "git_commit", "0123abcd"));
  CHECK_OK(kg_cube_set_attr(c, KG_CUBE_GLOBAL, "config", "sweep = {\n  sparsity = [0.0, 0.5];\n};\n"));
  CHECK_OK(kg_cube_set_attr(c, KG_CUBE_GLOBAL, "note", "caf\xc3\xa9 \xe2\x9c\x93"));
  return c;
}

static void test_model(void) {
  kg_cube *c = kg_cube_create();
  const double sp[] = {0.5, 0.0, 0.7};
  const char *names[] = {"a", "b"};
  const char *dup[] = {"a", "a"};
  const double nanl[] = {0.1, NAN};
  CHECK(kg_cube_add_dim_f64(c, "sparsity", sp, 3) == 0);
  CHECK(kg_cube_add_dim_str(c, "method", names, 2) == KG_ERR_ARG);
  CHECK(strstr(kg_error_message(), "sel(method") != NULL);
  CHECK(kg_cube_add_dim_str(c, "x", dup, 2) == KG_ERR_ARG);
  CHECK(kg_cube_add_dim_f64(c, "y", nanl, 2) == KG_ERR_ARG);
  CHECK(kg_cube_add_dim_str(c, "9lives", names, 2) == KG_ERR_ARG);
  CHECK(kg_cube_add_dim_str(c, "has/slash", names, 2) == KG_ERR_ARG);
  CHECK(kg_cube_add_dim_str(c, "sparsity", names, 2) == KG_ERR_ARG);
  CHECK(kg_cube_add_dim_str(c, "empty", names, 0) == KG_ERR_ARG);
  const char *bad_utf8[] = {"ok", "\xc3\x28"};
  CHECK(kg_cube_add_dim_str(c, "z", bad_utf8, 2) == KG_ERR_ARG);
  CHECK(kg_cube_add_dim_str(c, "kind", names, 2) == 1);
  CHECK(kg_cube_n_dims(c) == 2);
  CHECK(kg_cube_label_index_num(c, 0, 0.7) == 2);
  CHECK(kg_cube_label_index_num(c, 0, 0.3) == -1);
  CHECK(kg_cube_label_index_str(c, 1, "b") == 1);
  char text[64];
  kg_cube_label_text(c, 0, 0, text, sizeof(text));
  CHECK_STR(text, "0.5");

  const char *dims[] = {"sparsity", "kind"};
  const char *unknown[] = {"sparsity", "nope"};
  const char *twice[] = {"kind", "kind"};
  CHECK(kg_cube_add_var(c, "v", KG_CUBE_F64, unknown, 2) == KG_ERR_NOT_FOUND);
  CHECK(kg_cube_add_var(c, "v", KG_CUBE_F64, twice, 2) == KG_ERR_ARG);
  CHECK(kg_cube_add_var(c, "kind", KG_CUBE_F64, dims, 2) == KG_ERR_ARG); /* clashes with a dimension */
  int f = kg_cube_add_var(c, "f", KG_CUBE_F64, dims, 2);
  int n = kg_cube_add_var(c, "n", KG_CUBE_I32, dims, 2);
  int s = kg_cube_add_var(c, "s", KG_CUBE_STR, dims, 2);
  int scalar = kg_cube_add_var(c, "total", KG_CUBE_F64, NULL, 0);
  CHECK(f == 0 && n == 1 && s == 2 && scalar == 3);
  CHECK(kg_cube_add_var(c, "f", KG_CUBE_F64, dims, 2) == KG_ERR_ARG);
  CHECK(kg_cube_var_cells(c, f) == 6 && kg_cube_var_cells(c, scalar) == 1);

  int64_t idx[2] = {2, 1}, bad[2] = {3, 0}, neg[2] = {0, -1};
  double d = 0;
  int32_t k = 0;
  const char *str = NULL;
  CHECK_OK(kg_cube_get_f64(c, f, idx, &d));
  CHECK(isnan(d));
  CHECK_OK(kg_cube_get_i32(c, n, idx, &k));
  CHECK(k == KG_CUBE_I32_FILL);
  CHECK_OK(kg_cube_get_str(c, s, idx, &str));
  CHECK_STR(str, "");
  CHECK(kg_cube_is_fill(c, f, idx) == 1 && kg_cube_is_fill(c, n, idx) == 1 && kg_cube_is_fill(c, s, idx) == 1);
  CHECK_OK(kg_cube_set_f64(c, f, idx, 3.5));
  CHECK_OK(kg_cube_set_i32(c, n, idx, 12));
  CHECK_OK(kg_cube_set_str(c, s, idx, "wanda"));
  CHECK(kg_cube_is_fill(c, f, idx) == 0 && kg_cube_is_fill(c, n, idx) == 0 && kg_cube_is_fill(c, s, idx) == 0);
  CHECK_OK(kg_cube_get_f64(c, f, idx, &d));
  CHECK(d == 3.5);
  CHECK_OK(kg_cube_get_str(c, s, idx, &str));
  CHECK_STR(str, "wanda");
  CHECK(kg_cube_set_f64(c, f, bad, 1.0) == KG_ERR_ARG);
  CHECK(strstr(kg_error_message(), "sparsity") != NULL);
  CHECK(kg_cube_set_f64(c, f, neg, 1.0) == KG_ERR_ARG);
  CHECK(kg_cube_set_i32(c, f, idx, 1) == KG_ERR_ARG); /* type mismatch */
  CHECK(kg_cube_set_str(c, s, idx, "\xff") == KG_ERR_ARG);
  CHECK_OK(kg_cube_set_str(c, s, idx, NULL)); /* back to fill */
  CHECK(kg_cube_is_fill(c, s, idx) == 1);
  CHECK_OK(kg_cube_set_f64(c, scalar, NULL, 42));
  /* Changing the int fill moves the cells that held the old one. */
  CHECK_OK(kg_cube_set_fill_i32(c, n, -1));
  CHECK(kg_cube_data_i32(c, n)[0] == -1 && kg_cube_data_i32(c, n)[5] == 12);
  CHECK(kg_cube_set_fill_i32(c, f, -1) == KG_ERR_ARG);

  CHECK_OK(kg_cube_set_attr(c, KG_CUBE_GLOBAL, "b_first", "1"));
  CHECK_OK(kg_cube_set_attr(c, KG_CUBE_GLOBAL, "a_second", "2"));
  CHECK_OK(kg_cube_set_attr(c, KG_CUBE_GLOBAL, "b_first", "3"));
  CHECK(kg_cube_n_attrs(c, KG_CUBE_GLOBAL) == 2);
  CHECK_STR(kg_cube_attr_key(c, KG_CUBE_GLOBAL, 0), "b_first");
  CHECK_STR(kg_cube_get_attr(c, KG_CUBE_GLOBAL, "b_first"), "3");
  CHECK(kg_cube_get_attr(c, KG_CUBE_GLOBAL, "zzz") == NULL);
  CHECK(kg_cube_set_attr(c, f, "_FillValue", "x") == KG_ERR_ARG);
  CHECK(kg_cube_set_attr(c, f, "CLASS", "x") == KG_ERR_ARG);
  CHECK(kg_cube_set_attr(c, f, "units", "\xe2\x82") == KG_ERR_ARG);

  kg_cube_cell_text(c, f, idx, text, sizeof(text));
  CHECK_STR(text, "sparsity=0.7, kind=b");
  kg_format_f64(0.1, text, sizeof(text));
  CHECK_STR(text, "0.1");
  kg_format_f64(-INFINITY, text, sizeof(text));
  CHECK_STR(text, "-inf");
  kg_format_f64(1.0 / 3.0, text, sizeof(text));
  CHECK(strtod(text, NULL) == 1.0 / 3.0);

  kg_cube *copy = NULL;
  CHECK_OK(kg_cube_clone(c, &copy));
  CHECK(copy && kg_cube_data_f64(copy, f)[5] == 3.5 && kg_cube_var_fill_i32(copy, n) == -1);
  kg_cube_free(copy);
  kg_cube_free(c);

  CHECK(kg_utf8_valid("\xf0\x9f\x98\x80", 4) == 1);
  CHECK(kg_utf8_valid("\xed\xa0\x80", 3) == 0);     /* surrogate */
  CHECK(kg_utf8_valid("\xe0\x80\xaf", 3) == 0);     /* overlong */
  CHECK(kg_utf8_valid("\xf4\x90\x80\x80", 4) == 0); /* past U+10FFFF */
}

static void check_same_cube(const kg_cube *a, const kg_cube *b) {
  CHECK(kg_cube_n_dims(a) == kg_cube_n_dims(b) && kg_cube_n_vars(a) == kg_cube_n_vars(b));
  if (kg_cube_n_dims(a) != kg_cube_n_dims(b) || kg_cube_n_vars(a) != kg_cube_n_vars(b)) return;
  for (int d = 0; d < kg_cube_n_dims(a); d++) {
    CHECK_STR(kg_cube_dim_name(a, d), kg_cube_dim_name(b, d));
    CHECK(kg_cube_dim_type(a, d) == kg_cube_dim_type(b, d) && kg_cube_dim_size(a, d) == kg_cube_dim_size(b, d));
    for (int64_t i = 0; i < kg_cube_dim_size(a, d); i++) {
      char x[128], y[128];
      kg_cube_label_text(a, d, i, x, sizeof(x));
      kg_cube_label_text(b, d, i, y, sizeof(y));
      CHECK_STR(x, y);
    }
    CHECK(kg_cube_n_attrs(a, KG_CUBE_DIM(d)) == kg_cube_n_attrs(b, KG_CUBE_DIM(d)));
  }
  for (int v = 0; v < kg_cube_n_vars(a); v++) {
    CHECK_STR(kg_cube_var_name(a, v), kg_cube_var_name(b, v));
    CHECK(kg_cube_var_type(a, v) == kg_cube_var_type(b, v) && kg_cube_var_cells(a, v) == kg_cube_var_cells(b, v));
    for (int64_t f = 0; f < kg_cube_var_cells(a, v); f++) {
      if (kg_cube_var_type(a, v) == KG_CUBE_F64) {
        double x = kg_cube_data_f64(a, v)[f], y = kg_cube_data_f64(b, v)[f];
        CHECK((isnan(x) && isnan(y)) || x == y);
      } else if (kg_cube_var_type(a, v) == KG_CUBE_I32) {
        CHECK(kg_cube_data_i32(a, v)[f] == kg_cube_data_i32(b, v)[f]);
      } else {
        const char *x = kg_cube_data_str(a, v)[f], *y = kg_cube_data_str(b, v)[f];
        CHECK_STR(x ? x : "", y ? y : "");
      }
    }
    CHECK(kg_cube_n_attrs(a, v) == kg_cube_n_attrs(b, v));
    for (int i = 0; i < kg_cube_n_attrs(a, v) && i < kg_cube_n_attrs(b, v); i++) {
      CHECK_STR(kg_cube_attr_key(a, v, i), kg_cube_attr_key(b, v, i));
      CHECK_STR(kg_cube_attr_value(a, v, i), kg_cube_attr_value(b, v, i));
    }
  }
  CHECK(kg_cube_n_attrs(a, KG_CUBE_GLOBAL) == kg_cube_n_attrs(b, KG_CUBE_GLOBAL));
  for (int i = 0; i < kg_cube_n_attrs(a, KG_CUBE_GLOBAL) && i < kg_cube_n_attrs(b, KG_CUBE_GLOBAL); i++) {
    CHECK_STR(kg_cube_attr_key(a, KG_CUBE_GLOBAL, i), kg_cube_attr_key(b, KG_CUBE_GLOBAL, i));
    CHECK_STR(kg_cube_attr_value(a, KG_CUBE_GLOBAL, i), kg_cube_attr_value(b, KG_CUBE_GLOBAL, i));
  }
}

static void test_files(void) {
  char p1[512], p2[512], p3[512];
  tmp_path(p1, sizeof(p1), "one.h5");
  tmp_path(p2, sizeof(p2), "two.h5");
  tmp_path(p3, sizeof(p3), "three.h5");
  kg_cube *c = sample_cube(20.0), *back = NULL;
  CHECK_OK(kg_cube_write(c, p1));
  CHECK_OK(kg_cube_write(c, p2));
  CHECK_MSG(same_bytes(p1, p2), "two writes of one cube differ");
  CHECK_OK(kg_cube_read(p1, &back));
  if (back) {
    check_same_cube(c, back);
    CHECK_OK(kg_cube_write(back, p3));
    CHECK_MSG(same_bytes(p1, p3), "read then write changed the bytes");
    kg_cube_free(back);
  }
  /* A different value gives different bytes (the comparison can fail). */
  kg_cube *other = sample_cube(21.0);
  CHECK_OK(kg_cube_write(other, p3));
  CHECK(!same_bytes(p1, p3));
  kg_cube_free(other);

  /* Overwriting publishes the new cube. */
  kg_cube *v2 = sample_cube(99.0);
  CHECK_OK(kg_cube_write(v2, p1));
  CHECK_OK(kg_cube_read(p1, &back));
  if (back) {
    check_same_cube(v2, back);
    kg_cube_free(back);
  }
  kg_cube_free(v2);

  /* A failed publish leaves no temporary file and the target untouched. */
  char dir_target[512], inner[600], tmp[700];
  tmp_path(dir_target, sizeof(dir_target), "occupied");
  CHECK(mkdir(dir_target, 0755) == 0);
  snprintf(inner, sizeof(inner), "%s/keep", dir_target);
  FILE *keep = fopen(inner, "w");
  if (keep) fclose(keep);
  CHECK(kg_cube_write(c, dir_target) == KG_ERR_IO);
  CHECK(strstr(kg_error_message(), "occupied") != NULL);
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", dir_target, (long)getpid());
  CHECK(access(tmp, F_OK) != 0);
  CHECK(access(inner, F_OK) == 0);
  unlink(inner);
  rmdir(dir_target);
  char missing[512];
  tmp_path(missing, sizeof(missing), "no/such/dir/x.h5");
  CHECK(kg_cube_write(c, missing) == KG_ERR_IO);
  kg_cube_free(c);

  /* Files that are not cubes. */
  CHECK(kg_cube_read(missing, &back) == KG_ERR_NOT_FOUND && back == NULL);
  char text[512];
  tmp_path(text, sizeof(text), "text.h5");
  FILE *t = fopen(text, "w");
  if (t) {
    fputs("not hdf5 at all\n", t);
    fclose(t);
  }
  CHECK(kg_cube_read(text, &back) == KG_ERR_FORMAT);
  CHECK(strstr(kg_error_message(), "not an HDF5 file") != NULL && strstr(kg_error_message(), "text.h5") != NULL);
  char plain[512];
  tmp_path(plain, sizeof(plain), "plain.h5");
  hid_t file = H5Fcreate(plain, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[1] = {3};
  hid_t space = H5Screate_simple(1, dims, NULL);
  hid_t ds = H5Dcreate2(file, "x", H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(ds);
  H5Sclose(space);
  H5Fclose(file);
  CHECK(kg_cube_read(plain, &back) == KG_ERR_FORMAT);
  CHECK(strstr(kg_error_message(), "not a kickgrid cube") != NULL);
  unlink(text);
  unlink(plain);
  unlink(p1);
  unlink(p2);
  unlink(p3);
}

/* Many variables on shared scales: H5DS rewrites REFERENCE_LIST on every
 * attach, which must stay within HDF5's attribute limits. */
static void test_many_variables(void) {
  char p[512];
  tmp_path(p, sizeof(p), "many.h5");
  kg_cube *c = kg_cube_create(), *back = NULL;
  const char *m[] = {"a", "b"};
  const double s[] = {0.1, 0.2, 0.3};
  kg_cube_add_dim_str(c, "model", m, 2);
  kg_cube_add_dim_f64(c, "sparsity", s, 3);
  const char *dims[] = {"model", "sparsity"};
  for (int v = 0; v < 300; v++) {
    char name[32];
    snprintf(name, sizeof(name), "metric_%03d", v);
    int id = kg_cube_add_var(c, name, v % 3 == 0 ? KG_CUBE_STR : KG_CUBE_F64, dims, 2);
    int64_t idx[2] = {v % 2, v % 3};
    if (v % 3 == 0) kg_cube_set_str(c, id, idx, name);
    else kg_cube_set_f64(c, id, idx, v);
    kg_cube_set_attr(c, id, "units", "1");
  }
  CHECK_OK(kg_cube_write(c, p));
  CHECK_OK(kg_cube_read(p, &back));
  if (back) check_same_cube(c, back);
  kg_cube_free(back);
  kg_cube_free(c);
  unlink(p);
}

static kg_cube *split_cube(const char *model, const double *sparsity, int n_sp, double base, const char *status,
                           const char *commit) {
  kg_cube *c = kg_cube_create();
  const char *methods[] = {"magnitude", "wanda"};
  kg_cube_add_dim_str(c, "model", &model, 1);
  kg_cube_add_dim_str(c, "prune_method", methods, 2);
  kg_cube_add_dim_f64(c, "sparsity", sparsity, n_sp);
  const char *dims[] = {"model", "prune_method", "sparsity"};
  int ppl = kg_cube_add_var(c, "ppl", KG_CUBE_F64, dims, 3);
  int st = kg_cube_add_var(c, "status", KG_CUBE_STR, dims, 3);
  int err = kg_cube_add_var(c, "error", KG_CUBE_STR, dims, 3);
  for (int p = 0; p < 2; p++)
    for (int s = 0; s < n_sp; s++) {
      int64_t idx[3] = {0, p, s};
      kg_cube_set_str(c, st, idx, status);
      if (!strcmp(status, "done")) kg_cube_set_f64(c, ppl, idx, base + 10 * p + sparsity[s]);
      if (!strcmp(status, "failed")) kg_cube_set_str(c, err, idx, "CUDA out of memory");
    }
  kg_cube_set_attr(c, ppl, "units", "1");
  kg_cube_set_attr(c, KG_CUBE_GLOBAL, "git_commit", commit);
  kg_cube_set_attr(c, KG_CUBE_GLOBAL, "kickgrid_version", "0.1.0");
  return c;
}

static void test_merge(void) {
  const double sa[] = {0.5, 0.0}, sb[] = {0.7, 0.5};
  kg_cube *a = split_cube("m1", sa, 2, 10, "done", "aaa"), *b = split_cube("m2", sb, 2, 20, "done", "bbb");
  const kg_cube *in[] = {a, b};
  const char *names[] = {"a.h5", "b.h5"};
  kg_cube *m = NULL;
  CHECK_OK(kg_cube_merge(in, names, 2, &m));
  if (m) {
    int sp = kg_cube_find_dim(m, "sparsity"), model = kg_cube_find_dim(m, "model");
    CHECK(kg_cube_dim_size(m, sp) == 3 && kg_cube_label_f64(m, sp, 0) == 0.0 && kg_cube_label_f64(m, sp, 1) == 0.5 &&
          kg_cube_label_f64(m, sp, 2) == 0.7);
    CHECK(kg_cube_dim_size(m, model) == 2 && !strcmp(kg_cube_label_str(m, model, 1), "m2"));
    int ppl = kg_cube_find_var(m, "ppl");
    double v = 0;
    int64_t idx[3] = {1, 1, 2}; /* m2, wanda, 0.7 */
    CHECK_OK(kg_cube_get_f64(m, ppl, idx, &v));
    CHECK(v == 20 + 10 + 0.7);
    int64_t hole[3] = {0, 0, 2}; /* m1 never ran 0.7 */
    CHECK(kg_cube_is_fill(m, ppl, hole) == 1);
    CHECK_STR(kg_cube_get_attr(m, KG_CUBE_GLOBAL, "kickgrid_version"), "0.1.0");
    CHECK(kg_cube_get_attr(m, KG_CUBE_GLOBAL, "git_commit") == NULL);
    CHECK_STR(kg_cube_get_attr(m, KG_CUBE_GLOBAL, "git_commit_input0"), "aaa");
    CHECK_STR(kg_cube_get_attr(m, KG_CUBE_GLOBAL, "git_commit_input1"), "bbb");
    CHECK_STR(kg_cube_get_attr(m, KG_CUBE_GLOBAL, "merged_from"), "a.h5\nb.h5");
    CHECK_STR(kg_cube_get_attr(m, ppl, "units"), "1");
    kg_cube_free(m);
  }
  /* Overlapping equal cells are fine; a different done value is an error naming the cell. */
  kg_cube *a2 = split_cube("m1", sa, 2, 10, "done", "aaa");
  const kg_cube *same[] = {a, a2};
  CHECK_OK(kg_cube_merge(same, names, 2, &m));
  kg_cube_free(m);
  kg_cube *a3 = split_cube("m1", sa, 2, 11, "done", "aaa");
  const kg_cube *clash[] = {a, a3};
  CHECK(kg_cube_merge(clash, names, 2, &m) == KG_ERR_FORMAT && m == NULL);
  CHECK(strstr(kg_error_message(), "model=m1, prune_method=magnitude, sparsity=0.5") != NULL);
  CHECK(strstr(kg_error_message(), "a.h5") && strstr(kg_error_message(), "b.h5"));
  /* done beats failed: the failed input's error message does not leak in,
   * whichever order the inputs come in. */
  kg_cube *f = split_cube("m1", sa, 2, 0, "failed", "ccc");
  for (int order = 0; order < 2; order++) {
    const kg_cube *mixed[] = {order ? a : f, order ? f : a};
    CHECK_OK(kg_cube_merge(mixed, names, 2, &m));
    if (!m) continue;
    int64_t idx[3] = {0, 1, 0};
    const char *st = NULL, *err = NULL;
    double v = 0;
    kg_cube_get_str(m, kg_cube_find_var(m, "status"), idx, &st);
    kg_cube_get_str(m, kg_cube_find_var(m, "error"), idx, &err);
    kg_cube_get_f64(m, kg_cube_find_var(m, "ppl"), idx, &v);
    CHECK_STR(st, "done");
    CHECK_STR(err, "");
    CHECK(v == 10 + 10 + 0.0); /* merged sparsity labels are sorted: index 0 is 0.0 */
    kg_cube_free(m);
  }
  /* A cube without a status variable is united, not outranked. */
  kg_cube *extra = kg_cube_create();
  const char *m1[] = {"m1"}, *wanda[] = {"wanda"};
  const double half[] = {0.5};
  kg_cube_add_dim_str(extra, "model", m1, 1);
  kg_cube_add_dim_str(extra, "prune_method", wanda, 1);
  kg_cube_add_dim_f64(extra, "sparsity", half, 1);
  const char *cell_dims[] = {"model", "prune_method", "sparsity"};
  int flops = kg_cube_add_var(extra, "flops", KG_CUBE_F64, cell_dims, 3);
  int64_t zero[3] = {0, 0, 0};
  kg_cube_set_f64(extra, flops, zero, 1e12);
  const kg_cube *with_extra[] = {a, extra};
  CHECK_OK(kg_cube_merge(with_extra, names, 2, &m));
  if (m) {
    int64_t idx[3] = {0, 1, 1}; /* m1, wanda, 0.5 */
    double v = 0;
    CHECK_OK(kg_cube_get_f64(m, kg_cube_find_var(m, "flops"), idx, &v));
    CHECK(v == 1e12);
    kg_cube_free(m);
  }
  kg_cube_free(extra);
  /* Type clash on a dimension. */
  kg_cube *t = kg_cube_create();
  const char *sps[] = {"x"};
  kg_cube_add_dim_str(t, "sparsity", sps, 1);
  const kg_cube *types[] = {a, t};
  CHECK(kg_cube_merge(types, names, 2, &m) == KG_ERR_FORMAT);
  CHECK(strstr(kg_error_message(), "sparsity") != NULL);
  kg_cube_free(t);
  kg_cube_free(f);
  kg_cube_free(a3);
  kg_cube_free(a2);
  kg_cube_free(a);
  kg_cube_free(b);
}

int main(void) {
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/kg_test_cube.XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_model();
  test_files();
  test_many_variables();
  test_merge();
  rmdir(tmpdir);
  return kgtest_finish("test_cube");
}
