/* Result cubes: the in-memory model of a sweep's results and its HDF5 file.
 *
 * A cube has named dimensions (each with float64, int32 or UTF-8 string
 * labels), variables (float64 with NaN fill, int32 with a fill value, or
 * UTF-8 strings with "" fill) laid over an ordered list of those dimensions,
 * and string attributes on variables and on the cube (provenance). The
 * coordinator decides which dimensions and variables exist; this module only
 * stores, writes and reads them.
 *
 * On disk a cube is a netCDF-4/HDF5 file that
 * `xr.open_dataset(path, engine="h5netcdf")` and h5py read directly: every
 * dimension is a coordinate variable (an HDF5 dimension scale holding the
 * labels), every variable has its scales attached, `_FillValue` marks cells
 * not yet set, creation order is tracked, and identical cubes give identical
 * bytes.
 *
 * Ownership: a kg_cube owns copies of every name, label, string value and
 * attribute given to it; pointers it returns stay valid until the same item
 * is overwritten or the cube is freed. Functions returning int give KG_OK (or
 * an index >= 0 where documented) or a negative kg_code with kg_error set.
 * A cube is not thread-safe, and neither is the serial HDF5 library: call
 * kg_cube_write/kg_cube_read from one thread at a time.
 */
#ifndef KG_IO_CUBE_H
#define KG_IO_CUBE_H

#include <stddef.h>
#include <stdint.h>

typedef enum kg_cube_type {
  KG_CUBE_F64 = 0, /* double; fill is NaN */
  KG_CUBE_I32 = 1, /* int32_t; fill defaults to KG_CUBE_I32_FILL */
  KG_CUBE_STR = 2, /* UTF-8 text; fill is "" */
} kg_cube_type;

/* netCDF's default int fill (NC_FILL_INT), so netCDF tools agree with us. */
#define KG_CUBE_I32_FILL (-2147483647)
/* HDF5 allows at most 32 axes per dataset. */
#define KG_CUBE_MAX_RANK 32

typedef struct kg_cube kg_cube;

/* Attribute targets other than a variable index (see kg_cube_set_attr). */
#define KG_CUBE_GLOBAL (-1)
#define KG_CUBE_DIM(d) (-2 - (d))

/* Returns an empty cube the caller frees with kg_cube_free, or NULL with
 * kg_error(KG_ERR_NOMEM). */
kg_cube *kg_cube_create(void);
void kg_cube_free(kg_cube *cube); /* NULL is fine */
/* Deep copy into *out (caller frees). */
int kg_cube_clone(const kg_cube *cube, kg_cube **out);

/* ---- dimensions ----
 * Names start with a letter and use letters, digits, '_', '-', '.', '+';
 * `method` is refused because it shadows xarray's .sel(method=...). A
 * dimension has at least one label; labels are unique (string labels are
 * valid UTF-8, numeric labels are not NaN). Labels are copied and cannot be
 * changed later. Each returns the new dimension's index (>= 0). */
int kg_cube_add_dim_f64(kg_cube *cube, const char *name, const double *labels, int64_t n);
int kg_cube_add_dim_i32(kg_cube *cube, const char *name, const int32_t *labels, int64_t n);
int kg_cube_add_dim_str(kg_cube *cube, const char *name, const char *const *labels, int64_t n);

int kg_cube_n_dims(const kg_cube *cube);
/* Index of the dimension called `name`, or KG_ERR_NOT_FOUND (error set). */
int kg_cube_find_dim(const kg_cube *cube, const char *name);
const char *kg_cube_dim_name(const kg_cube *cube, int dim);
kg_cube_type kg_cube_dim_type(const kg_cube *cube, int dim);
int64_t kg_cube_dim_size(const kg_cube *cube, int dim);
/* Label `i` of a dimension of the matching type (programmer error otherwise). */
double kg_cube_label_f64(const kg_cube *cube, int dim, int64_t i);
int32_t kg_cube_label_i32(const kg_cube *cube, int dim, int64_t i);
const char *kg_cube_label_str(const kg_cube *cube, int dim, int64_t i);
/* Position of a label, or -1 when absent. A numeric lookup works for both
 * float64 and int32 dimensions. */
int64_t kg_cube_label_index_num(const kg_cube *cube, int dim, double label);
int64_t kg_cube_label_index_str(const kg_cube *cube, int dim, const char *label);
/* Writes label `i` as text ("wanda", "0.5", "3") into out; truncates. */
void kg_cube_label_text(const kg_cube *cube, int dim, int64_t i, char *out, size_t cap);

/* ---- variables ----
 * A variable lies over `ndims` existing dimensions given by name (0 gives a
 * scalar); its cells start as fill. Names follow the dimension rules and
 * must not repeat a dimension's or another variable's name. Returns the
 * variable's index (>= 0). */
int kg_cube_add_var(kg_cube *cube, const char *name, kg_cube_type type, const char *const *dims, int ndims);
/* Changes an int32 variable's fill value; cells holding the old fill take
 * the new one. */
int kg_cube_set_fill_i32(kg_cube *cube, int var, int32_t fill);

int kg_cube_n_vars(const kg_cube *cube);
int kg_cube_find_var(const kg_cube *cube, const char *name); /* or KG_ERR_NOT_FOUND */
const char *kg_cube_var_name(const kg_cube *cube, int var);
kg_cube_type kg_cube_var_type(const kg_cube *cube, int var);
int kg_cube_var_ndims(const kg_cube *cube, int var);
int kg_cube_var_dim(const kg_cube *cube, int var, int axis); /* dimension index of an axis */
int64_t kg_cube_var_cells(const kg_cube *cube, int var);      /* product of its dim sizes */
int32_t kg_cube_var_fill_i32(const kg_cube *cube, int var);

/* Cells are addressed by one index per axis of the variable (row-major, last
 * axis fastest, like the file). Out-of-range indices and a type that does not
 * match the variable are KG_ERR_ARG. String values are copied; NULL is "".
 * Invalid UTF-8 is refused. */
int kg_cube_set_f64(kg_cube *cube, int var, const int64_t *index, double value);
int kg_cube_set_i32(kg_cube *cube, int var, const int64_t *index, int32_t value);
int kg_cube_set_str(kg_cube *cube, int var, const int64_t *index, const char *value);
int kg_cube_get_f64(const kg_cube *cube, int var, const int64_t *index, double *out);
int kg_cube_get_i32(const kg_cube *cube, int var, const int64_t *index, int32_t *out);
/* *out points into the cube (never NULL; "" for fill). */
int kg_cube_get_str(const kg_cube *cube, int var, const int64_t *index, const char **out);
/* 1 when the cell holds the fill value (NaN, the int fill, ""), 0 when set. */
int kg_cube_is_fill(const kg_cube *cube, int var, const int64_t *index);

/* Flat (row-major) access for bulk readers; `flat` < kg_cube_var_cells. */
int kg_cube_flat_index(const kg_cube *cube, int var, const int64_t *index, int64_t *flat);
void kg_cube_unflatten(const kg_cube *cube, int var, int64_t flat, int64_t *index);
int kg_cube_flat_is_fill(const kg_cube *cube, int var, int64_t flat);
/* Element arrays of a variable of the matching type (NULL otherwise). String
 * cells may be NULL, meaning "". Owned by the cube; read-only. */
const double *kg_cube_data_f64(const kg_cube *cube, int var);
const int32_t *kg_cube_data_i32(const kg_cube *cube, int var);
const char *const *kg_cube_data_str(const kg_cube *cube, int var);

/* ---- attributes ----
 * `var` is a variable index, KG_CUBE_GLOBAL for the cube's own (provenance)
 * attributes, or KG_CUBE_DIM(d) for dimension d's coordinate. Keys
 * follow the name rules (names netCDF reserves, such as _FillValue, CLASS,
 * NAME, are refused); values are UTF-8 text. Setting an existing key
 * replaces its value and keeps its position; order of first setting is the
 * order in the file. */
int kg_cube_set_attr(kg_cube *cube, int var, const char *key, const char *value);
/* NULL when absent. */
const char *kg_cube_get_attr(const kg_cube *cube, int var, const char *key);
int kg_cube_n_attrs(const kg_cube *cube, int var);
const char *kg_cube_attr_key(const kg_cube *cube, int var, int i);
const char *kg_cube_attr_value(const kg_cube *cube, int var, int i);

/* ---- cells as text ----
 * "model=smollm2-135m, sparsity=0.5" for the cell `index` of a variable;
 * truncates to cap. */
void kg_cube_cell_text(const kg_cube *cube, int var, const int64_t *index, char *out, size_t cap);

/* ---- files ----
 * Writes the whole cube to `path.tmp.<pid>`, fsyncs it, renames it over
 * `path` and fsyncs the directory, so readers see the old file or the new
 * one, never a mix. On failure the temporary file is removed and `path` is
 * untouched. */
int kg_cube_write(const kg_cube *cube, const char *path);
/* Loads a cube written by kg_cube_write into *out (caller frees). A file
 * that is not HDF5, or an HDF5 file not written by kickgrid, is
 * KG_ERR_FORMAT with a message naming the file and what is wrong. (HDF5
 * 1.10 itself does not bounds-check string heap references, so a cube whose
 * bytes were damaged on disk can still crash inside the library.) */
int kg_cube_read(const char *path, kg_cube **out);

/* ---- merging ----
 * Builds the union of `n` cubes into *out (caller frees). Dimensions are
 * matched by name and type; numeric labels are sorted, string labels kept in
 * first-seen order. A variable must have the same type and dimensions in
 * every input that has it. Where two inputs both set a cell to different
 * values it is an error naming the cell, except that when the cube has a
 * string variable `status` over the cell's dimensions the input whose status
 * ranks higher (done > failed > pending > n/a) supplies the cell; two "done"
 * cells that disagree are an error. Variable attributes come from the first
 * input holding the variable. Global attributes equal in every input are
 * kept; the others are kept per input as `<key>_input<i>`; `merged_from`
 * lists the input names. `names` label inputs in messages (paths). */
int kg_cube_merge(const kg_cube *const *inputs, const char *const *names, int n, kg_cube **out);

/* Shortest text that reads back to the same double ("0.5", "1e-07"); NaN and
 * infinities as "nan", "inf", "-inf". Truncates to cap. */
void kg_format_f64(double v, char *out, size_t cap);

/* True when s is valid UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF). */
int kg_utf8_valid(const char *s, size_t len);

#endif
