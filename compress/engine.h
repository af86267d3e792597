/* The compute engine of the compression pipeline (compress/pipeline.c).
 *
 * The pipeline decides what happens (which blocks, groups, passes, which rank
 * solves which linear); an engine does the heavy parts:
 *   - keeps the calibration activations of this rank's samples between
 *     blocks (two sets, "inps" and "outs", swapped after every block);
 *   - accumulates the statistics of a group's linear inputs from the block
 *     forward's hook and sums them over the team;
 *   - compresses one linear (its host master weights) from those statistics
 *     and measures the reconstruction error.
 *
 * Two implementations:
 *   cpu  (engine_cpu.c)          float64 statistics on the host (compress/stats.h),
 *                                host solvers (kg_compress_linear), MPI sums;
 *                                activations stay float32 in backend memory.
 *                                Works with any backend (device activations are
 *                                copied to the host in the hook).
 *   cuda (compress/cuda/)        statistics on the device (16-bit tensor-core
 *                                Gram, fp32 accumulation), NCCL sums, device
 *                                SparseGPT/GPTQ/Wanda/magnitude; activations kept
 *                                in 16 bits on the device, or in pinned host
 *                                memory when the backend has a memory budget.
 *
 * kg_engine_create picks cuda when the model's backend is the CUDA backend,
 * else cpu. The environment variable KG_COMPRESS_ENGINE (cpu, cuda, auto)
 * overrides the choice: cpu on a CUDA backend runs the host engine over device
 * activations, which isolates the engine's effect in comparisons.
 *
 * Every op returns KG_OK or a negative kg_code with kg_error set. The engine
 * borrows the model and the options (both outlive it). */
#ifndef KG_COMPRESS_ENGINE_H
#define KG_COMPRESS_ENGINE_H

#include <stdint.h>

#include "compress/compress.h"
#include "model/model.h"

typedef struct kg_engine kg_engine;

/* The two activation sets: the current block's inputs and its outputs. */
enum { KG_ACTS_INPS = 0, KG_ACTS_OUTS = 1 };

/* What a group's statistics pass collects. */
typedef struct kg_stats_plan {
  int want[KG_INPUT_COUNT];  /* inputs the group's linears read */
  int width[KG_INPUT_COUNT]; /* their widths (in_features) */
  int with_gram;             /* Hessian methods: the Gram of every wanted input */
  int with_recon;            /* Hessian-free methods: a Gram over the first samples, for reconstruction errors */
} kg_stats_plan;

/* What solving one linear reports (copied to every rank of the team). */
typedef struct kg_solve_out {
  double recon_error;    /* trace((W-W') G (W-W')^T), NaN without a Gram */
  double recon_relative; /* recon_error / trace(W G W^T) */
  double percdamp;       /* damping used (Hessian methods), else NaN */
  int damp_retries;
  int64_t zeros;         /* exact zeros in W' */
  double seconds;
  int device_current;    /* the backend's copy of the weights already holds W' (no kg_model_sync needed) */
} kg_solve_out;

typedef struct kg_engine_ops {
  const char *name;
  void (*destroy)(kg_engine *e);

  /* Room for n samples of [T, dim] floats in each of `sets` activation
   * sets (1 or 2). With one set, "outs" is "inps": a sample's block output
   * replaces its input, which is all the pipeline needs unless a pass must
   * keep a block's inputs after writing its outputs (propagate = dense). */
  int (*acts_init)(kg_engine *e, int n, int T, int dim, int sets);
  /* Sample s of a set into / from x, a backend float32 buffer [T, dim]. */
  int (*acts_load)(kg_engine *e, int set, int s, float *x);
  int (*acts_store)(kg_engine *e, int set, int s, const float *x);
  void (*acts_swap)(kg_engine *e);

  /* Zeroed accumulators for a plan (drops the previous group's). */
  int (*stats_begin)(kg_engine *e, const kg_stats_plan *plan);
  /* Adds a hook input x (backend memory, [rows, width], `samples` whole
   * calibration sequences) to input `in`; into_recon also adds it to the
   * recon Gram. */
  int (*stats_add)(kg_engine *e, kg_linear_input in, const float *x, int64_t rows, int samples, int into_recon);
  /* Optional (NULL: the pipeline hooks the float32 path): as stats_add for
   * a 16-bit hook input of the backend's act16 type. */
  int (*stats_add16)(kg_engine *e, kg_linear_input in, const void *x, kg_dtype dtype, int64_t rows, int samples,
                     int into_recon);
  /* After this rank's pass: waits for queued work, reports bad inputs. */
  int (*stats_finish)(kg_engine *e);
  /* Sums the statistics over the team (MPI_COMM_NULL: nothing to do). */
  int (*stats_allreduce)(kg_engine *e, MPI_Comm team);
  /* Seconds spent accumulating since the engine was created. */
  double (*stats_seconds)(kg_engine *e);
  /* Wanda's scaler_row of input `in` (host, width doubles). */
  int (*scaler_row)(kg_engine *e, kg_linear_input in, double *out);

  /* Compresses lin->w in place with the pipeline's method at `sparsity`,
   * from the statistics of input `in` (none for data-free runs). */
  int (*solve)(kg_engine *e, kg_linear *lin, kg_linear_input in, double sparsity, kg_solve_out *out);
  /* Completes the group's solves and drops what solve cached
   * (factorizations, scalers). The backend's copies hold the results; the
   * host masters may still be updating until sync_masters. */
  int (*solve_end)(kg_engine *e);
  /* Optional (NULL: masters are current after solve_end): waits until the
   * host masters hold every result. */
  int (*sync_masters)(kg_engine *e);
  /* Optional (NULL: 1): calibration samples the engine prefers per block
   * forward for sequences of T tokens. */
  int (*preferred_batch)(kg_engine *e, int T);
} kg_engine_ops;

struct kg_engine {
  const kg_engine_ops *ops;
  kg_model *m;               /* borrowed */
  const kg_compress_opts *o; /* borrowed */
};

/* Picks and creates the engine for m's backend (see above). *out is owned by
 * the caller (kg_engine_destroy). */
int kg_engine_create(kg_model *m, const kg_compress_opts *o, kg_engine **out);
void kg_engine_destroy(kg_engine *e);

int kg_engine_cpu_create(kg_model *m, const kg_compress_opts *o, kg_engine **out);
/* KG_ERR_UNSUPPORTED in builds without CUDA or when m's backend is not CUDA. */
int kg_engine_cuda_create(kg_model *m, const kg_compress_opts *o, kg_engine **out);

/* Releases what engines cache for the life of the process (the CUDA engine's
 * NCCL communicators). Call before MPI_Finalize; harmless when nothing is
 * cached. */
void kg_engine_shutdown(void);

#endif
