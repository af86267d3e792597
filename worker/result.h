/* The result of one grid cell as it travels from a worker to the
 * coordinator: status, timing, and values addressed by (cube variable,
 * flat cell index). Packed into one byte buffer for MPI. */
#ifndef KG_WORKER_RESULT_H
#define KG_WORKER_RESULT_H

#include <stddef.h>
#include <stdint.h>

#include "io/cube.h"
#include "io/journal.h"
#include "worker/schema.h"

typedef struct kg_cell_value {
  int var;          /* cube variable index */
  int64_t flat;     /* row-major cell index within the variable */
  kg_cube_type type;
  double f64;
  int32_t i32;
  char *str;        /* owned */
} kg_cell_value;

typedef struct kg_cell_result {
  int64_t cell;     /* index into the sweep's cells */
  int ok;           /* 1 done, 0 failed */
  char error[1024];
  double wall_s;
  char host[128];
  kg_cell_value *values; /* owned */
  size_t n, cap;
} kg_cell_result;

void kg_cell_result_init(kg_cell_result *r, int64_t cell);
void kg_cell_result_free(kg_cell_result *r);
/* Values at a full index vector of the variable (checked against the cube). */
int kg_cell_result_f64(kg_cell_result *r, const kg_cube *cube, int var, const int64_t *index, double value);
int kg_cell_result_i32(kg_cell_result *r, const kg_cube *cube, int var, const int64_t *index, int32_t value);
int kg_cell_result_str(kg_cell_result *r, const kg_cube *cube, int var, const int64_t *index, const char *value);

/* Serialization; *buf is malloc'd and owned by the caller. */
int kg_cell_result_pack(const kg_cell_result *r, unsigned char **buf, size_t *len);
int kg_cell_result_unpack(const unsigned char *buf, size_t len, kg_cell_result *r);

/* The same values rewritten for another cell of the cube (replicas): the
 * first KG_GRID_CELL_DIMS axes of every index are replaced by target's. */
int kg_cell_result_retarget(const kg_cell_result *src, const kg_cube *cube, const int64_t *target_cell_index,
                            kg_cell_result *dst);

/* Journal record of a result (entries point into `r` and `scratch`, which
 * must outlive the record). */
typedef struct kg_cell_record {
  kg_journal_record rec;
  kg_journal_entry *entries;
  int64_t *indices;
} kg_cell_record;
int kg_cell_result_to_record(const kg_cell_result *r, const kg_cube *cube, const char *key, int attempts,
                             kg_cell_record *out);
void kg_cell_record_free(kg_cell_record *out);

#endif
