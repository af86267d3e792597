/* Internals shared by the model layer; not part of the public API. */
#ifndef KG_MODEL_MODEL_INTERNAL_H
#define KG_MODEL_MODEL_INTERNAL_H

#include "model/model.h"

/* Scratch buffers in backend memory, sized for `rows` token rows. The
 * 16-bit activation path (backend act16 ops) reuses xb..up as 16-bit
 * buffers of the same widths, so it needs no memory of its own. */
/* The block's intermediates hold float32 or, on the 16-bit activation path,
 * 16-bit values: they are sized in bytes (rows x width x element size), so a
 * float32 reservation also serves twice its rows at 16 bits. */
struct kg_workspace {
  int64_t row_bytes; /* element bytes x rows the intermediates below can hold */
  float *xb;    /* [rows, dim] normed input / projection output */
  float *q;     /* [rows, n_heads * head_dim] */
  float *k;     /* [rows, n_kv_heads * head_dim] */
  float *v;
  float *att;   /* [rows, n_heads * head_dim] */
  float *gate;  /* [rows, hidden] */
  float *up;    /* [rows, hidden] */
  int64_t x_rows;
  float *x;     /* [x_rows, dim] float32 residual stream for kg_model_forward */
  /* head */
  int64_t head_rows;
  float *head_in;     /* [head_rows, dim] gathered normed rows */
  float *head_logits; /* [head_rows, vocab] backend memory */
  float *host_logits; /* [head_rows, vocab] host copy (aliases head_logits on CPU) */
  int64_t *row_ids;   /* [head_rows] host */
};

/* Makes sure the model's workspace holds the intermediates of a block over
 * `rows` rows with elements of `elem_bytes` (4, or 2 on the 16-bit path),
 * and, with `hidden`, a float32 residual stream (ws->x) of `rows` rows. */
int kg_workspace_reserve(kg_model *m, int64_t rows, int elem_bytes, int hidden);
void kg_workspace_free(kg_model *m);
/* Backend bytes of a workspace for `rows` token rows plus the output head
 * (what plan_weights is told to keep free for activations). */
size_t kg_workspace_bytes(const kg_model_config *c, int64_t rows);

#endif
