/* Private to io/cube*.c: the cube's storage, shared by the model (cube.c),
 * the HDF5 reader/writer (cube_hdf5.c) and the merger (cube_merge.c). Other
 * modules use io/cube.h only. */
#ifndef KG_IO_CUBE_INTERNAL_H
#define KG_IO_CUBE_INTERNAL_H

#include <stdint.h>

#include "io/cube.h"

typedef struct kg_cube_attr {
  char *key;
  char *value;
} kg_cube_attr;

typedef struct kg_cube_attrs {
  kg_cube_attr *items;
  int n, cap;
} kg_cube_attrs;

typedef struct kg_cube_dim {
  char *name;
  kg_cube_type type;
  int64_t n;
  double *f64; /* labels of the matching type; the others are NULL */
  int32_t *i32;
  char **str;
  kg_cube_attrs attrs;
} kg_cube_dim;

typedef struct kg_cube_var {
  char *name;
  kg_cube_type type;
  int ndims;
  int dims[KG_CUBE_MAX_RANK];
  int64_t cells;
  double *f64; /* values of the matching type, row-major */
  int32_t *i32;
  char **str; /* NULL cells mean "" */
  int32_t fill_i32;
  kg_cube_attrs attrs;
} kg_cube_var;

struct kg_cube {
  kg_cube_dim *dims;
  int n_dims, cap_dims;
  kg_cube_var *vars;
  int n_vars, cap_vars;
  kg_cube_attrs attrs;
};

int kg_cube_check_name(const char *what, const char *name);
int kg_cube_mul_cells(int64_t a, int64_t b, int64_t *out);
kg_cube_attrs *kg_cube_attrs_of(const kg_cube *c, int target);
/* Stores a copy of value (NULL or "" becomes the fill). */
int kg_cube_set_str_flat(kg_cube *c, int var, int64_t flat, const char *value);
/* Adds a copy of src's dimension d (labels and attributes) to dst; returns its index. */
int kg_cube_copy_dim(kg_cube *dst, const kg_cube *src, int d);

#endif
