/* Cubes as netCDF-4/HDF5 files (see io/cube.h).
 *
 * Layout, following what netCDF-C writes so that netCDF-C, h5netcdf/xarray
 * and h5py all read the file as a netCDF-4 dataset:
 *   /                 _NCProperties ("version=2,kickgrid=...,hdf5=...") then
 *                     the global (provenance) attributes, vlen UTF-8 scalars
 *   /<dim>            1-D labels, an HDF5 dimension scale (CLASS, NAME=<dim>)
 *                     with _Netcdf4Coordinates=[dimid] and _Netcdf4Dimid
 *   /<var>            values; _FillValue (numeric types), user attributes,
 *                     _Netcdf4Coordinates (the dimids of its axes) and a
 *                     dimension scale attached to every axis (DIMENSION_LIST)
 * Link and attribute creation order are tracked and indexed everywhere
 * (netCDF-4 requires it), object timestamps are off and every dataset is
 * contiguous and written whole in one call, so the same cube always gives
 * the same bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <hdf5_hl.h>

#include "io/cube.h"
#include "io/cube_internal.h"
#include "io/error.h"
#include "io/log.h"

#define NC_PROPERTIES "_NCProperties"
#define NC_DIMID "_Netcdf4Dimid"
#define NC_COORDS "_Netcdf4Coordinates"
#define NC_FILL "_FillValue"
#define KG_MARK "kickgrid="

/* ---------- HDF5 error plumbing ---------- */

/* HDF5 prints its own error stack by default; we turn that off while we
 * work and turn the innermost HDF5 message into part of ours. */
typedef struct {
  H5E_auto2_t func;
  void *data;
} h5_quiet;

static void h5_quiet_begin(h5_quiet *q) {
  H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void h5_quiet_end(const h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

static herr_t innermost_cb(unsigned n, const H5E_error2_t *err, void *data) {
  if (n == 0 && err->desc) snprintf((char *)data, 256, "%s", err->desc);
  return 0;
}

static int h5_fail(int code, const char *path, const char *what) {
  char detail[256] = "";
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, detail);
  H5Eclear2(H5E_DEFAULT);
  if (detail[0]) return kg_error(code, "%s: %s (HDF5: %s)", path, what, detail);
  return kg_error(code, "%s: %s", path, what);
}

static void close_id(hid_t *id) {
  if (*id < 0) return;
  H5I_type_t t = H5Iget_type(*id);
  if (t == H5I_DATASET) H5Dclose(*id);
  else if (t == H5I_DATATYPE) H5Tclose(*id);
  else if (t == H5I_DATASPACE) H5Sclose(*id);
  else if (t == H5I_ATTR) H5Aclose(*id);
  else if (t == H5I_GENPROP_LST) H5Pclose(*id);
  else if (t == H5I_FILE) H5Fclose(*id);
  *id = -1;
}

/* ---------- writing ---------- */

static hid_t vlen_utf8_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0) return t;
  if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

static hid_t file_type_of(kg_cube_type type) {
  if (type == KG_CUBE_F64) return H5Tcopy(H5T_IEEE_F64LE);
  if (type == KG_CUBE_I32) return H5Tcopy(H5T_STD_I32LE);
  return vlen_utf8_type();
}

static hid_t mem_type_of(kg_cube_type type) {
  if (type == KG_CUBE_F64) return H5Tcopy(H5T_NATIVE_DOUBLE);
  if (type == KG_CUBE_I32) return H5Tcopy(H5T_NATIVE_INT32);
  return vlen_utf8_type();
}

static int write_attr_raw(const char *path, hid_t obj, const char *key, hid_t ftype, hid_t mtype, hid_t space,
                          const void *buf) {
  hid_t a = H5Acreate2(obj, key, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) return h5_fail(KG_ERR_IO, path, "cannot create an attribute");
  herr_t st = H5Awrite(a, mtype, buf);
  H5Aclose(a);
  if (st < 0) return h5_fail(KG_ERR_IO, path, "cannot write an attribute");
  return KG_OK;
}

static int write_text_attr(const char *path, hid_t obj, const char *key, const char *value) {
  int rc;
  hid_t t = vlen_utf8_type(), s = H5Screate(H5S_SCALAR);
  if (t < 0 || s < 0) rc = h5_fail(KG_ERR_IO, path, "cannot make a string attribute type");
  else rc = write_attr_raw(path, obj, key, t, t, s, &value);
  close_id(&t);
  close_id(&s);
  if (rc < 0) kg_error_context("attribute '%s': ", key);
  return rc;
}

static int write_ints_attr(const char *path, hid_t obj, const char *key, const int32_t *vals, int n, int scalar) {
  hsize_t dims[1] = {(hsize_t)n};
  hid_t s = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
  if (s < 0) return h5_fail(KG_ERR_IO, path, "cannot make an attribute dataspace");
  int rc = write_attr_raw(path, obj, key, H5T_STD_I32LE, H5T_NATIVE_INT32, s, vals);
  H5Sclose(s);
  return rc;
}

static int write_user_attrs(const char *path, hid_t obj, const kg_cube_attrs *a) {
  for (int i = 0; i < a->n; i++) KG_TRY(write_text_attr(path, obj, a->items[i].key, a->items[i].value));
  return KG_OK;
}

/* The netCDF-4 marker attribute, a fixed-length ASCII string like the one
 * netCDF-C writes; its "kickgrid=" key is how kg_cube_read recognizes us. */
static int write_ncproperties(const char *path, hid_t file) {
  unsigned maj = 0, min = 0, rel = 0;
  char text[256];
  H5get_libversion(&maj, &min, &rel);
  snprintf(text, sizeof(text), "version=2," KG_MARK "%s,hdf5=%u.%u.%u", KG_VERSION, maj, min, rel);
  int rc = KG_OK;
  hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
  if (t < 0 || s < 0 || H5Tset_size(t, strlen(text)) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
      H5Tset_cset(t, H5T_CSET_ASCII) < 0)
    rc = h5_fail(KG_ERR_IO, path, "cannot make the _NCProperties type");
  else
    rc = write_attr_raw(path, file, NC_PROPERTIES, t, t, s, text);
  close_id(&t);
  close_id(&s);
  return rc;
}

/* Every dataset: tracked+indexed attribute order, no timestamps, contiguous,
 * with the fill value recorded (h5py's .fillvalue, netCDF-C). HDF5 skips
 * pre-filling storage that the first write covers whole, as ours does. */
static hid_t dataset_plist(const char *path, kg_cube_type type, int32_t fill_i32) {
  hid_t p = H5Pcreate(H5P_DATASET_CREATE), t = -1;
  double nan_fill = NAN;
  const char *empty = "";
  int ok = p >= 0 && H5Pset_attr_creation_order(p, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) >= 0 &&
           H5Pset_obj_track_times(p, 0) >= 0 && H5Pset_layout(p, H5D_CONTIGUOUS) >= 0 &&
           (t = mem_type_of(type)) >= 0;
  if (ok) {
    const void *fill = type == KG_CUBE_F64 ? (const void *)&nan_fill
                       : type == KG_CUBE_I32 ? (const void *)&fill_i32
                                             : (const void *)&empty;
    ok = H5Pset_fill_value(p, t, fill) >= 0;
  }
  close_id(&t);
  if (!ok) {
    close_id(&p);
    h5_fail(KG_ERR_IO, path, "cannot make a dataset creation property list");
    return -1;
  }
  return p;
}

/* Creates dataset `name` of the given shape and writes `data` (double[],
 * int32_t[] or char*[] with NULL meaning ""). */
static int create_dataset(const char *path, hid_t file, const char *name, kg_cube_type type, int32_t fill_i32,
                          int rank, const hsize_t *shape, int64_t cells, const void *data, hid_t *out) {
  int rc = KG_OK;
  hid_t ftype = -1, mtype = -1, space = -1, plist = -1, ds = -1;
  const char **strs = NULL;
  *out = -1;
  if ((ftype = file_type_of(type)) < 0 || (mtype = mem_type_of(type)) < 0) {
    rc = h5_fail(KG_ERR_IO, path, "cannot make a datatype");
    goto done;
  }
  space = rank ? H5Screate_simple(rank, shape, NULL) : H5Screate(H5S_SCALAR);
  if (space < 0) {
    rc = h5_fail(KG_ERR_IO, path, "cannot make a dataspace");
    goto done;
  }
  if ((plist = dataset_plist(path, type, fill_i32)) < 0) {
    rc = kg_error_code();
    goto done;
  }
  if ((ds = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, plist, H5P_DEFAULT)) < 0) {
    rc = h5_fail(KG_ERR_IO, path, "cannot create a dataset");
    goto done;
  }
  if (type == KG_CUBE_STR) {
    char *const *src = (char *const *)data;
    if (!(strs = malloc((size_t)cells * sizeof(*strs)))) {
      rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
      goto done;
    }
    for (int64_t i = 0; i < cells; i++) strs[i] = src[i] ? src[i] : "";
    data = strs;
  }
  if (H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    rc = h5_fail(KG_ERR_IO, path, "cannot write a dataset");
    goto done;
  }
  *out = ds;
  ds = -1;
done:
  free(strs);
  close_id(&ds);
  close_id(&plist);
  close_id(&space);
  close_id(&mtype);
  close_id(&ftype);
  if (rc < 0) kg_error_context("'%s': ", name);
  return rc;
}

static int write_dimension(const char *path, hid_t file, const kg_cube *c, int d, hid_t *out) {
  const kg_cube_dim *dim = &c->dims[d];
  hsize_t shape[1] = {(hsize_t)dim->n};
  const void *labels = dim->type == KG_CUBE_F64 ? (const void *)dim->f64
                       : dim->type == KG_CUBE_I32 ? (const void *)dim->i32
                                                  : (const void *)dim->str;
  int32_t dimid = d;
  KG_TRY(create_dataset(path, file, dim->name, dim->type, KG_CUBE_I32_FILL, 1, shape, dim->n, labels, out));
  KG_TRY(write_ints_attr(path, *out, NC_COORDS, &dimid, 1, 0));
  if (H5DSset_scale(*out, dim->name) < 0) return h5_fail(KG_ERR_IO, path, "cannot make a dimension scale");
  KG_TRY(write_ints_attr(path, *out, NC_DIMID, &dimid, 1, 1));
  return write_user_attrs(path, *out, &dim->attrs);
}

static int write_variable(const char *path, hid_t file, const kg_cube *c, int v, hid_t *out) {
  const kg_cube_var *var = &c->vars[v];
  hsize_t shape[KG_CUBE_MAX_RANK];
  int32_t dimids[KG_CUBE_MAX_RANK];
  for (int k = 0; k < var->ndims; k++) {
    shape[k] = (hsize_t)c->dims[var->dims[k]].n;
    dimids[k] = var->dims[k];
  }
  const void *data = var->type == KG_CUBE_F64 ? (const void *)var->f64
                     : var->type == KG_CUBE_I32 ? (const void *)var->i32
                                                : (const void *)var->str;
  KG_TRY(create_dataset(path, file, var->name, var->type, var->fill_i32, var->ndims, shape, var->cells, data, out));
  /* No _FillValue on strings: xarray would turn "" cells into NaN. */
  if (var->type != KG_CUBE_STR) {
    double nan_fill = NAN;
    hsize_t one[1] = {1};
    hid_t s = H5Screate_simple(1, one, NULL);
    if (s < 0) return h5_fail(KG_ERR_IO, path, "cannot make an attribute dataspace");
    int rc = var->type == KG_CUBE_F64
                 ? write_attr_raw(path, *out, NC_FILL, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, s, &nan_fill)
                 : write_attr_raw(path, *out, NC_FILL, H5T_STD_I32LE, H5T_NATIVE_INT32, s, &var->fill_i32);
    H5Sclose(s);
    KG_TRY(rc);
  }
  KG_TRY(write_user_attrs(path, *out, &var->attrs));
  if (var->ndims) KG_TRY(write_ints_attr(path, *out, NC_COORDS, dimids, var->ndims, 0));
  return KG_OK;
}

static int write_hdf5(const kg_cube *c, const char *path, const char *tmp) {
  int rc = KG_OK;
  hid_t fcpl = -1, fapl = -1, file = -1;
  hid_t *dim_ds = calloc((size_t)c->n_dims + 1, sizeof(hid_t));
  hid_t *var_ds = calloc((size_t)c->n_vars + 1, sizeof(hid_t));
  if (!dim_ds || !var_ds) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  for (int d = 0; d < c->n_dims; d++) dim_ds[d] = -1;
  for (int v = 0; v < c->n_vars; v++) var_ds[v] = -1;
  if ((fcpl = H5Pcreate(H5P_FILE_CREATE)) < 0 || (fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 ||
      H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
      H5Pset_attr_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
      H5Pset_obj_track_times(fcpl, 0) < 0 ||
      /* 1.8-format objects at most, like netCDF-C, so older readers cope. */
      H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18) < 0) {
    rc = h5_fail(KG_ERR_IO, path, "cannot set file properties");
    goto done;
  }
  if ((file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl)) < 0) {
    rc = h5_fail(KG_ERR_IO, tmp, "cannot create the file");
    goto done;
  }
  if ((rc = write_ncproperties(tmp, file)) < 0) goto done;
  if ((rc = write_user_attrs(tmp, file, &c->attrs)) < 0) goto done;
  for (int d = 0; d < c->n_dims; d++)
    if ((rc = write_dimension(tmp, file, c, d, &dim_ds[d])) < 0) goto done;
  for (int v = 0; v < c->n_vars; v++)
    if ((rc = write_variable(tmp, file, c, v, &var_ds[v])) < 0) goto done;
  for (int v = 0; v < c->n_vars; v++)
    for (int k = 0; k < c->vars[v].ndims; k++)
      if (H5DSattach_scale(var_ds[v], dim_ds[c->vars[v].dims[k]], (unsigned)k) < 0) {
        rc = h5_fail(KG_ERR_IO, tmp, "cannot attach a dimension scale");
        kg_error_context("'%s' axis %d: ", c->vars[v].name, k);
        goto done;
      }
done:
  for (int d = 0; dim_ds && d < c->n_dims; d++) close_id(&dim_ds[d]);
  for (int v = 0; var_ds && v < c->n_vars; v++) close_id(&var_ds[v]);
  free(dim_ds);
  free(var_ds);
  close_id(&fcpl);
  close_id(&fapl);
  if (file >= 0 && H5Fclose(file) < 0 && rc == KG_OK) rc = h5_fail(KG_ERR_IO, tmp, "cannot close the file");
  return rc;
}

static int fsync_path(const char *path, int is_dir) {
  int fd = open(path, (is_dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kg_error(KG_ERR_IO, "%s: cannot open to sync: %s", path, strerror(errno));
  int rc = KG_OK;
  if (fsync(fd) != 0) rc = kg_error(KG_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
  close(fd);
  return rc;
}

int kg_cube_write(const kg_cube *c, const char *path) {
  int rc = KG_OK, tmp_made = 0;
  char tmp[PATH_MAX], dir[PATH_MAX];
  h5_quiet quiet;
  if (!path || !path[0]) return kg_error(KG_ERR_ARG, "cube: empty output path");
  size_t len = strlen(path);
  if (path[len - 1] == '/') return kg_error(KG_ERR_ARG, "%s: output path names a directory", path);
  if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
    return kg_error(KG_ERR_ARG, "%s: path too long", path);
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof(dir), ".");
  else if (slash == path) snprintf(dir, sizeof(dir), "/");
  else snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);

  h5_quiet_begin(&quiet);
  tmp_made = 1;
  if ((rc = write_hdf5(c, path, tmp)) < 0) goto done;
  if ((rc = fsync_path(tmp, 0)) < 0) goto done;
  if (rename(tmp, path) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    goto done;
  }
  tmp_made = 0;
  rc = fsync_path(dir, 1);
done:
  h5_quiet_end(&quiet);
  if (tmp_made) unlink(tmp);
  return rc;
}

/* ---------- reading ---------- */

typedef struct {
  char **names;
  int n, cap;
  int failed;
} name_list;

static herr_t collect_link(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  name_list *l = data;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    char **names = realloc(l->names, (size_t)cap * sizeof(char *));
    if (!names) { l->failed = 1; return -1; }
    l->names = names;
    l->cap = cap;
  }
  if (!(l->names[l->n] = strdup(name))) { l->failed = 1; return -1; }
  l->n++;
  return 0;
}

static void name_list_free(name_list *l) {
  for (int i = 0; i < l->n; i++) free(l->names[i]);
  free(l->names);
  memset(l, 0, sizeof(*l));
}

static herr_t collect_attr(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  return collect_link(obj, name, NULL, data);
}

/* Link (or attribute) names in creation order when the file tracks it, else
 * by name. */
static int list_names(const char *path, hid_t obj, int attrs, name_list *out) {
  for (int pass = 0; pass < 2; pass++) {
    H5_index_t order = pass == 0 ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    hsize_t idx = 0;
    name_list_free(out);
    herr_t st = attrs ? H5Aiterate2(obj, order, H5_ITER_INC, &idx, collect_attr, out)
                      : H5Literate(obj, order, H5_ITER_INC, &idx, collect_link, out);
    if (out->failed) return kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
    if (st >= 0) return KG_OK;
    H5Eclear2(H5E_DEFAULT);
  }
  return h5_fail(KG_ERR_FORMAT, path, "cannot list objects");
}

static int is_hidden_attr(const char *key) {
  return key[0] == '_' || !strcmp(key, "CLASS") || !strcmp(key, "NAME") || !strcmp(key, "DIMENSION_LIST") ||
         !strcmp(key, "REFERENCE_LIST");
}

/* Reads a scalar string attribute (fixed or variable length) into a malloc'd
 * string; *out is NULL when the attribute is not a single string. */
static int read_text_attr(const char *path, hid_t obj, const char *key, char **out) {
  int rc = KG_OK;
  hid_t a = -1, t = -1, s = -1;
  *out = NULL;
  if ((a = H5Aopen(obj, key, H5P_DEFAULT)) < 0 || (t = H5Aget_type(a)) < 0 || (s = H5Aget_space(a)) < 0) {
    rc = h5_fail(KG_ERR_FORMAT, path, "cannot open an attribute");
    goto done;
  }
  if (H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(s) != 1) goto done;
  if (H5Tis_variable_str(t) > 0) {
    char *v = NULL;
    if (H5Aread(a, t, &v) < 0) {
      rc = h5_fail(KG_ERR_FORMAT, path, "cannot read an attribute");
      goto done;
    }
    *out = strdup(v ? v : "");
    H5free_memory(v);
  } else {
    size_t n = H5Tget_size(t);
    char *buf = calloc(n + 1, 1);
    if (buf && H5Aread(a, t, buf) < 0) {
      free(buf);
      rc = h5_fail(KG_ERR_FORMAT, path, "cannot read an attribute");
      goto done;
    }
    *out = buf;
  }
  if (!*out) rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
done:
  close_id(&s);
  close_id(&t);
  close_id(&a);
  if (rc < 0) kg_error_context("attribute '%s': ", key);
  return rc;
}

static int read_user_attrs(const char *path, hid_t obj, kg_cube *c, int target) {
  name_list keys = {0};
  int rc = list_names(path, obj, 1, &keys);
  for (int i = 0; rc >= 0 && i < keys.n; i++) {
    char *value = NULL;
    if (is_hidden_attr(keys.names[i])) continue;
    if ((rc = read_text_attr(path, obj, keys.names[i], &value)) < 0) break;
    if (!value) {
      kg_debug("%s: skipping non-text attribute '%s'", path, keys.names[i]);
      continue;
    }
    rc = kg_cube_set_attr(c, target, keys.names[i], value);
    free(value);
    if (rc < 0) kg_error_context("%s: ", path);
  }
  name_list_free(&keys);
  return rc;
}

static int read_ints_attr(const char *path, hid_t obj, const char *key, int32_t *vals, int cap, int *n) {
  int rc = KG_OK;
  hid_t a = -1, s = -1, t = -1;
  *n = 0;
  if (H5Aexists(obj, key) <= 0) return kg_error(KG_ERR_FORMAT, "%s: missing attribute %s", path, key);
  if ((a = H5Aopen(obj, key, H5P_DEFAULT)) < 0 || (s = H5Aget_space(a)) < 0 || (t = H5Aget_type(a)) < 0) {
    rc = h5_fail(KG_ERR_FORMAT, path, "cannot open an attribute");
    goto done;
  }
  hssize_t np = H5Sget_simple_extent_npoints(s);
  if (H5Tget_class(t) != H5T_INTEGER || np < 1 || np > cap) {
    rc = kg_error(KG_ERR_FORMAT, "%s: attribute %s is not 1 to %d integers", path, key, cap);
    goto done;
  }
  if (H5Aread(a, H5T_NATIVE_INT32, vals) < 0) {
    rc = h5_fail(KG_ERR_FORMAT, path, "cannot read an attribute");
    goto done;
  }
  *n = (int)np;
done:
  close_id(&t);
  close_id(&s);
  close_id(&a);
  return rc;
}

static int cube_type_of(hid_t t, kg_cube_type *out) {
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  if (cls == H5T_FLOAT && size == 8) *out = KG_CUBE_F64;
  else if (cls == H5T_INTEGER && size == 4 && H5Tget_sign(t) == H5T_SGN_2) *out = KG_CUBE_I32;
  else if (cls == H5T_STRING && H5Tis_variable_str(t) > 0) *out = KG_CUBE_STR;
  else return -1;
  return 0;
}

/* Reads a whole dataset into a fresh array (double[], int32_t[] or char*[]
 * of malloc'd strings). */
static int read_values(const char *path, hid_t ds, kg_cube_type type, int64_t cells, void **out) {
  int rc = KG_OK;
  hid_t mt = -1, ft = -1, space = -1;
  void *buf = NULL;
  *out = NULL;
  size_t elem = type == KG_CUBE_F64 ? sizeof(double) : type == KG_CUBE_I32 ? sizeof(int32_t) : sizeof(char *);
  if ((uint64_t)cells > SIZE_MAX / elem || !(buf = calloc((size_t)cells ? (size_t)cells : 1, elem))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory for %lld cells", path, (long long)cells);
    goto done;
  }
  if (type == KG_CUBE_STR) mt = (ft = H5Dget_type(ds)) >= 0 ? H5Tcopy(ft) : -1;
  else mt = mem_type_of(type);
  if (mt < 0 || H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    rc = h5_fail(KG_ERR_FORMAT, path, "cannot read a dataset");
    goto done;
  }
  if (type == KG_CUBE_STR) {
    /* Own the strings with malloc so the cube can free them. */
    char **hs = buf, **mine = calloc((size_t)cells ? (size_t)cells : 1, sizeof(char *));
    for (int64_t i = 0; mine && i < cells; i++)
      if (hs[i] && hs[i][0] && !(mine[i] = strdup(hs[i]))) {
        for (int64_t j = 0; j < i; j++) free(mine[j]);
        free(mine);
        mine = NULL;
      }
    if ((space = H5Dget_space(ds)) >= 0) H5Dvlen_reclaim(mt, space, H5P_DEFAULT, buf);
    free(buf);
    buf = mine;
    if (!mine) {
      rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
      goto done;
    }
  }
  *out = buf;
  buf = NULL;
done:
  free(buf);
  close_id(&space);
  close_id(&ft);
  close_id(&mt);
  return rc;
}

static int read_dimension(const char *path, hid_t ds, const char *name, kg_cube *c, int *dimid) {
  int rc = KG_OK, n_ids = 0;
  hid_t t = -1, s = -1;
  void *labels = NULL;
  kg_cube_type type = KG_CUBE_F64;
  int32_t id;
  hsize_t n = 0;
  if ((t = H5Dget_type(ds)) < 0 || (s = H5Dget_space(ds)) < 0) {
    rc = h5_fail(KG_ERR_FORMAT, path, "cannot inspect a dataset");
    goto done;
  }
  if (H5Sget_simple_extent_ndims(s) != 1 || H5Sget_simple_extent_dims(s, &n, NULL) != 1 || n < 1 ||
      n > ((hsize_t)1 << 40)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: dimension '%s' is not a non-empty 1-D dataset", path, name);
    goto done;
  }
  if (cube_type_of(t, &type) < 0) {
    rc = kg_error(KG_ERR_FORMAT, "%s: dimension '%s' has labels of an unsupported type", path, name);
    goto done;
  }
  if ((rc = read_ints_attr(path, ds, NC_DIMID, &id, 1, &n_ids)) < 0) goto done;
  if ((rc = read_values(path, ds, type, (int64_t)n, &labels)) < 0) goto done;
  if (type == KG_CUBE_F64) rc = kg_cube_add_dim_f64(c, name, labels, (int64_t)n);
  else if (type == KG_CUBE_I32) rc = kg_cube_add_dim_i32(c, name, labels, (int64_t)n);
  else rc = kg_cube_add_dim_str(c, name, (const char *const *)labels, (int64_t)n);
  if (rc < 0) {
    rc = kg_error_context("%s: ", path) == KG_ERR_NOMEM ? KG_ERR_NOMEM : KG_ERR_FORMAT;
    goto done;
  }
  *dimid = id;
  rc = read_user_attrs(path, ds, c, KG_CUBE_DIM(c->n_dims - 1));
done:
  if (labels && type == KG_CUBE_STR)
    for (hsize_t i = 0; i < n; i++) free(((char **)labels)[i]);
  free(labels);
  close_id(&s);
  close_id(&t);
  if (rc < 0) kg_error_context("dimension '%s': ", name);
  return rc;
}

static int read_variable(const char *path, hid_t ds, const char *name, kg_cube *c, const int32_t *dimids) {
  int rc = KG_OK, rank = 0, n_ids = 0;
  hid_t t = -1, s = -1;
  void *values = NULL;
  kg_cube_type type;
  hsize_t shape[KG_CUBE_MAX_RANK];
  int32_t ids[KG_CUBE_MAX_RANK];
  const char *dims[KG_CUBE_MAX_RANK];
  if ((t = H5Dget_type(ds)) < 0 || (s = H5Dget_space(ds)) < 0) {
    rc = h5_fail(KG_ERR_FORMAT, path, "cannot inspect a dataset");
    goto done;
  }
  if (cube_type_of(t, &type) < 0) {
    rc = kg_error(KG_ERR_FORMAT, "%s: variable '%s' has an unsupported type (float64, int32, vlen string)", path, name);
    goto done;
  }
  rank = H5Sget_simple_extent_ndims(s);
  if (rank < 0 || rank > KG_CUBE_MAX_RANK || H5Sget_simple_extent_dims(s, shape, NULL) != rank) {
    rc = kg_error(KG_ERR_FORMAT, "%s: variable '%s' has a bad shape", path, name);
    goto done;
  }
  if (rank > 0) {
    if ((rc = read_ints_attr(path, ds, NC_COORDS, ids, KG_CUBE_MAX_RANK, &n_ids)) < 0) goto done;
    if (n_ids != rank) {
      rc = kg_error(KG_ERR_FORMAT, "%s: variable '%s' has %d axes but %d dimension ids", path, name, rank, n_ids);
      goto done;
    }
  }
  for (int k = 0; k < rank; k++) {
    int d = -1;
    for (int j = 0; j < c->n_dims; j++)
      if (dimids[j] == ids[k]) d = j;
    if (d < 0 || (hsize_t)c->dims[d].n != shape[k]) {
      rc = kg_error(KG_ERR_FORMAT, "%s: variable '%s' axis %d does not match a dimension", path, name, k);
      goto done;
    }
    dims[k] = c->dims[d].name;
  }
  int v = kg_cube_add_var(c, name, type, dims, rank);
  if (v < 0) {
    rc = kg_error_context("%s: ", path) == KG_ERR_NOMEM ? KG_ERR_NOMEM : KG_ERR_FORMAT;
    goto done;
  }
  kg_cube_var *var = &c->vars[v];
  if (type == KG_CUBE_I32) {
    int32_t fill;
    int nf = 0;
    if ((rc = read_ints_attr(path, ds, NC_FILL, &fill, 1, &nf)) < 0) goto done;
    var->fill_i32 = fill;
  }
  if ((rc = read_values(path, ds, type, var->cells, &values)) < 0) goto done;
  if (type == KG_CUBE_F64) { free(var->f64); var->f64 = values; }
  else if (type == KG_CUBE_I32) { free(var->i32); var->i32 = values; }
  else { free(var->str); var->str = values; }
  values = NULL;
  rc = read_user_attrs(path, ds, c, v);
done:
  free(values);
  close_id(&s);
  close_id(&t);
  if (rc < 0) kg_error_context("variable '%s': ", name);
  return rc;
}

static int is_dimension_scale(hid_t ds) {
  return H5DSis_scale(ds) > 0;
}

int kg_cube_read(const char *path, kg_cube **out) {
  int rc = KG_OK;
  hid_t file = -1, ds = -1;
  kg_cube *c = NULL;
  char *props = NULL;
  name_list names = {0};
  int32_t *dimids = NULL;
  h5_quiet quiet;
  *out = NULL;
  struct stat st;
  if (stat(path, &st) != 0) return kg_error(errno == ENOENT ? KG_ERR_NOT_FOUND : KG_ERR_IO, "%s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) return kg_error(KG_ERR_FORMAT, "%s: not a regular file", path);
  h5_quiet_begin(&quiet);
  if (H5Fis_hdf5(path) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    rc = kg_error(KG_ERR_FORMAT, "%s: not an HDF5 file, so not a kickgrid cube", path);
    goto done;
  }
  if ((file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
    rc = h5_fail(KG_ERR_FORMAT, path, "cannot open the HDF5 file");
    goto done;
  }
  if (H5Aexists(file, NC_PROPERTIES) > 0 && (rc = read_text_attr(path, file, NC_PROPERTIES, &props)) < 0) goto done;
  if (!props || !strstr(props, KG_MARK)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: not a kickgrid cube (its _NCProperties attribute does not name kickgrid)", path);
    goto done;
  }
  if (!(c = kg_cube_create())) { rc = KG_ERR_NOMEM; goto done; }
  if ((rc = read_user_attrs(path, file, c, KG_CUBE_GLOBAL)) < 0) goto done;
  if ((rc = list_names(path, file, 0, &names)) < 0) goto done;
  if (!(dimids = calloc((size_t)names.n + 1, sizeof(int32_t)))) { rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path); goto done; }
  /* Dimensions first so variables can refer to all of them. */
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < names.n; i++) {
      if ((ds = H5Dopen2(file, names.names[i], H5P_DEFAULT)) < 0) {
        rc = h5_fail(KG_ERR_FORMAT, path, "object is not a dataset");
        kg_error_context("'%s': ", names.names[i]);
        goto done;
      }
      int scale = is_dimension_scale(ds);
      if (pass == 0 && scale) {
        int32_t id = -1;
        if ((rc = read_dimension(path, ds, names.names[i], c, &id)) < 0) goto done;
        for (int d = 0; d + 1 < c->n_dims; d++)
          if (dimids[d] == id) {
            rc = kg_error(KG_ERR_FORMAT, "%s: dimensions '%s' and '%s' share id %d", path, c->dims[d].name,
                          names.names[i], id);
            goto done;
          }
        dimids[c->n_dims - 1] = id;
      } else if (pass == 1 && !scale) {
        if ((rc = read_variable(path, ds, names.names[i], c, dimids)) < 0) goto done;
      }
      close_id(&ds);
    }
  *out = c;
  c = NULL;
done:
  close_id(&ds);
  if (file >= 0) H5Fclose(file);
  h5_quiet_end(&quiet);
  name_list_free(&names);
  free(dimids);
  free(props);
  kg_cube_free(c);
  return rc;
}
