/* Internals shared by the compress layer. */
#ifndef KG_COMPRESS_COMPRESS_INTERNAL_H
#define KG_COMPRESS_COMPRESS_INTERNAL_H

#include "compress/compress.h"

/* Compresses W [rows, cols] in place with the method of `o` at `sparsity`;
 * scaler_row (Wanda) and H (Hessian methods) come from the statistics of the
 * linear's input. Fills lr->percdamp / damp_retries. */
int kg_compress_linear(const kg_compress_opts *o, double sparsity, float *W, int64_t rows, int64_t cols,
                       const double *scaler_row, const double *H, kg_linear_report *lr);

#endif
