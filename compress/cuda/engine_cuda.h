/* The CUDA compression engine's state, shared by its two sources:
 * engine_cuda.c (activations, statistics, solves) and engine_cuda_masters.c
 * (moving master weights between host and device). Private to compress/cuda. */
#ifndef KG_COMPRESS_CUDA_ENGINE_CUDA_H
#define KG_COMPRESS_CUDA_ENGINE_CUDA_H

#include <pthread.h>
#include <stdint.h>

#include "compress/cuda/cc.h"
#include "compress/cuda/cc_xfer.h"
#include "compress/engine.h"
#include "model/cuda/kg_cuda.h"

typedef struct cuda_engine {
  kg_engine base;
  const kg_cuda_context *ctx;
  kg_cc *cc;
  kg_cc_team *team;       /* NULL without a team communicator */
  /* activations */
  size_t sample;          /* floats per sample */
  int n, sets;
  int pinned;             /* sets live in pinned host memory (memory budget) */
  uint16_t *acts[2];      /* fp16 bits [n * sample]: device, or pinned host */
  float *scales[2];       /* device [n]: each sample's power-of-two scale */
  uint16_t *stage;        /* device [sample] (pinned mode) */
  /* statistics */
  kg_cc_stats stats[KG_INPUT_COUNT], recon[KG_INPUT_COUNT];
  int with_gram;
  int min_input;          /* inputs below were released (solves come in input order) */
  cudaEvent_t *events;    /* pairs around each accumulation, for timing */
  int n_events, cap_events;
  double stats_seconds;
  /* solves */
  float *dW, *dW0, *dWork; /* device [rows * cols] */
  size_t w_cap, w0_cap, work_cap;
  uint32_t *dbits;        /* zero bitmask of a masked W (device) */
  size_t bits_cap;
  /* A mask method's zeros reach the host masters on one worker thread,
   * queued, while the device goes on (engine_cuda_masters.c). */
  struct cue_mask_queue *masks;
  int exact_masters;      /* read masters from exact 16-bit device copies (KG_CC_EXACT_MASTER) */
  int n_widened;          /* masters read back from the device instead of uploaded */
  double *host_scaler[KG_INPUT_COUNT];
  double *sqrt_scaler[KG_INPUT_COUNT]; /* device */
  kg_cc_factor factor;
  /* transfers of master weights (cc_xfer.h) */
  cc_xfer up, down;
  int have_xfer;
  pthread_t down_thread;  /* the previous linear's download, while down_active */
  int down_active;
  struct xfer_job {
    cc_xfer *x;
    void *dst;
    const void *src;
    size_t bytes;
    int upload;
    cudaError_t err;
  } down_job;
  /* The factorization of a later input's Hessian, built on a second
   * context by a helper thread while this input's linears solve. */
  kg_cc *cc2;
  kg_cc_factor next_factor;
  int next_input;         /* input next_factor is for, -1 when none */
  pthread_t prefetch_thread;
  int prefetch_active;
  struct prefetch_job {
    kg_cc *cc;
    kg_cc_obs_job job;
    kg_cc_factor *f;
    int rc;
  } prefetch;
  /* where the solves' wall time went (reported when the engine goes) */
  int n_solves;
  double t_prepare, t_wait, t_solve, t_result, t_recon;
} cuda_engine;

static inline cuda_engine *cu_of(kg_engine *e) { return (cuda_engine *)e; }

#define ENG_CUDA(call)                                                                                     \
  do {                                                                                                     \
    cudaError_t eng_e_ = (call);                                                                           \
    if (eng_e_ != cudaSuccess) return kg_cc_cuda_fail(eng_e_, #call, __FILE__, __LINE__);                  \
  } while (0)


/* ---- engine_cuda_masters.c ---- */

/* Starts job on a helper thread (*started = 1), or runs it here when no
 * thread can be made; cue_xfer_finish joins it and reports its status. */
void cue_xfer_start(struct xfer_job *j, pthread_t *t, int *started);
int cue_xfer_finish(struct xfer_job *j, pthread_t t, int started, const char *what);
/* A host<->device copy of master weights, complete on return. */
int cue_copy_weights(cuda_engine *c, int upload, void *dst, const void *src, size_t bytes);
/* Waits for the previous linear's download into its host master. */
int cue_join_download(cuda_engine *c);
/* Waits until every queued mask has reached its host master. */
void cue_join_mask(cuda_engine *c);
int cue_sync_masters(kg_engine *e);
/* Joins and frees the mask worker (cu_destroy). */
void cue_masks_destroy(cuda_engine *c);
/* Magnitude and Wanda only zero weights. */
int cue_is_mask_method(kg_method_kind k);
/* dW's zeros: counted into *zeros, queued for lin->w on the mask worker. */
int cue_download_mask(cuda_engine *c, kg_linear *lin, int64_t n, int64_t *zeros);

#endif
