/* Compressing a whole model: the sequential layer-wise pipeline of the
 * SparseGPT/Wanda reference code.
 *
 * Layer-0 inputs of every calibration sample are captured; then for each
 * block, one pass collects the statistics of its linear layers, the linears
 * are pruned (or quantized), and the block is run again with the new weights
 * so block i+1 calibrates on the outputs of the compressed block i
 * (propagate = pruned; with propagate = dense the outputs of the dense block
 * are used). With true_sequential the linears are handled in the reference's
 * four groups (q,k,v / o / gate,up / down), each calibrated after the previous
 * group was compressed.
 *
 * With a team communicator, calibration samples are split across the team's
 * ranks, statistics are summed with an all-reduce, each linear is solved by
 * one rank and broadcast: every rank ends with the same model as a single
 * process would produce. */
#ifndef KG_COMPRESS_COMPRESS_H
#define KG_COMPRESS_COMPRESS_H

#include <mpi.h>
#include <stdint.h>

#include "compress/calib.h"
#include "compress/quant.h"
#include "io/method_kind.h"
#include "model/model.h"

/* kg_method_kind lives in io/method_kind.h, shared with sweep configs. */

/* "dense", "magnitude", "wanda", "sparsegpt", "owl-wanda", "owl-sparsegpt", "rtn", "gptq". */
int kg_method_parse(const char *name, kg_method_kind *out);
const char *kg_method_name(kg_method_kind kind);
int kg_method_uses_calibration(kg_method_kind kind); /* data-aware methods */
int kg_method_uses_hessian(kg_method_kind kind);     /* SparseGPT-family and GPTQ */
int kg_method_is_quantization(kg_method_kind kind);

typedef struct kg_compress_opts {
  kg_method_kind method;
  double sparsity;        /* unstructured target, [0, 1) */
  int prune_n, prune_m;   /* N:M pattern when prune_n > 0 */
  kg_quant_opts quant;    /* RTN / GPTQ */
  int act_order;          /* GPTQ */
  int true_sequential;    /* 0 */
  int propagate_dense;    /* 0: next block sees pruned outputs (reference) */
  double percdamp;        /* 0.01 */
  int blocksize;          /* 128 */
  int use_variant;        /* Wanda's alpha-bisection variant */
  double owl_m;           /* 5 */
  double owl_lambda;      /* 0.08 */
  int recon_samples;      /* samples used for the reconstruction error when the
                             method needs no Hessian (Hessian methods use all);
                             default 16; 0: no reconstruction errors at all */
  int calib_batch;        /* calibration samples per block forward (0: the
                             engine's choice; results do not depend on it
                             beyond float summation order) */
  MPI_Comm team;          /* MPI_COMM_NULL: this process alone */
} kg_compress_opts;

void kg_compress_opts_defaults(kg_compress_opts *o);

typedef struct kg_linear_report {
  int layer;
  kg_linear_id linear;
  int64_t rows, cols;
  double target_sparsity;
  double sparsity;       /* zeros / weights after compression */
  double recon_error;    /* ||X W^T - X W'^T||_F^2 on the calibration tokens used */
  double recon_relative; /* recon_error / ||X W^T||_F^2 */
  double percdamp;       /* damping actually used (Hessian methods), else NaN */
  int damp_retries;
  double seconds;
} kg_linear_report;

typedef struct kg_compress_report {
  kg_linear_report *linears; /* [n_layers * KG_LIN_COUNT], owned */
  int n_linears;
  double *layer_sparsity;    /* [n_layers] target per block (OWL allocation), owned */
  int n_layers;
  double overall_sparsity;   /* over all linear weights */
  double seconds;
  double calib_forward_seconds;
  double stats_seconds;
  double solve_seconds;
  int64_t recon_tokens;      /* tokens the reconstruction errors were measured on */
} kg_compress_report;

void kg_compress_report_free(kg_compress_report *r);

/* Compresses `m` in place. calib may be NULL for magnitude and RTN (then no
 * reconstruction errors are reported). On a team, every rank passes the same
 * calib set. rep may be NULL. */
int kg_compress_model(kg_model *m, const kg_calib_set *calib, const kg_compress_opts *opts, kg_compress_report *rep);

#endif
