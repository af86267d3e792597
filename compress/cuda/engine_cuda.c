/* The CUDA compression engine (see compress/engine.h and cc.h): statistics
 * accumulate on the device from the block forward's hook, are summed over
 * the team with NCCL, and each linear is solved on the device from its fp32
 * host master weights (uploaded to scratch, solved in fp32, downloaded).
 * Options the device solvers do not take (the Wanda variant, RTN, blocksize
 * > 128, M > 64 for masks) are solved on the host from downloaded statistics,
 * with the same results as the host engine would give from those statistics.
 *
 * Transfers overlap with device work: a linear's weights upload on a helper
 * thread while the factorization of its input's Hessian runs, its result
 * downloads on another while the next linear starts, and the backend's 16-bit
 * copy is refreshed on the device from the solved float32 matrix instead of
 * a second upload from the host (kg_model_sync is then skipped). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/compress_internal.h"
#include "compress/cuda/engine_cuda.h"
#include "compress/stats.h"
#include "io/error.h"
#include "io/log.h"
#include "model/cuda/kg_cuda.h"

static void prefetch_drop(cuda_engine *c);

static void release_input(cuda_engine *c, int in) {
  kg_cc_stats_free(&c->stats[in]);
  kg_cc_stats_free(&c->recon[in]);
  free(c->host_scaler[in]);
  c->host_scaler[in] = NULL;
  kg_cc_free(c->sqrt_scaler[in]);
  c->sqrt_scaler[in] = NULL;
}

static int cu_solve_end(kg_engine *e) {
  cuda_engine *c = cu_of(e);
  prefetch_drop(c);
  kg_cc_factor_free(&c->factor);
  return cue_join_download(c);
}

static void *prefetch_run(void *arg) {
  struct prefetch_job *p = arg;
  p->rc = kg_cc_obs_prepare(p->cc, &p->job, p->f);
  /* The error is this thread's; the main thread rebuilds and reports it. */
  if (p->rc < 0) kg_error_clear();
  return NULL;
}

/* Waits for the prefetch; 1 when next_factor holds a usable factorization. */
static int prefetch_join(cuda_engine *c) {
  if (!c->prefetch_active) return c->next_input >= 0;
  pthread_join(c->prefetch_thread, NULL);
  c->prefetch_active = 0;
  if (c->prefetch.rc < 0 || cudaStreamSynchronize(c->cc2->stream) != cudaSuccess) {
    (void)cudaGetLastError();
    kg_cc_factor_free(&c->next_factor);
    c->next_input = -1;
    return 0;
  }
  return 1;
}

static void prefetch_drop(cuda_engine *c) {
  (void)prefetch_join(c);
  kg_cc_factor_free(&c->next_factor);
  c->next_input = -1;
}

/* Starts the factorization of the first input after `in` that has a Hessian. */
static void prefetch_after(cuda_engine *c, kg_linear_input in) {
  const kg_compress_opts *o = c->base.o;
  if (!c->cc2 || c->prefetch_active || c->next_input >= 0) return;
  for (int j = (int)in + 1; j < KG_INPUT_COUNT; j++) {
    const kg_cc_stats *st = &c->stats[j];
    if (!st->gram || st->n_samples <= 0) continue;
    c->prefetch = (struct prefetch_job){
        .cc = c->cc2,
        .job = {.rows = 1, .cols = st->d, .G = st->gram, .n_samples = st->n_samples, .blocksize = o->blocksize,
                .percdamp = o->percdamp, .max_damp_retries = 3,
                .act_order = o->method == KG_METHOD_GPTQ && o->act_order},
        .f = &c->next_factor,
    };
    if (pthread_create(&c->prefetch_thread, NULL, prefetch_run, &c->prefetch) != 0) return;
    c->prefetch_active = 1;
    c->next_input = j;
    return;
  }
}

/* Moves a prefetched factorization for `in` into c->factor. */
static void prefetch_take(cuda_engine *c, kg_linear_input in) {
  if (c->next_input != (int)in) return;
  if (!prefetch_join(c)) return;
  kg_cc_factor_free(&c->factor);
  c->factor = c->next_factor;
  memset(&c->next_factor, 0, sizeof(c->next_factor));
  c->next_input = -1;
}

static void stats_release(cuda_engine *c) {
  prefetch_drop(c);
  kg_cc_factor_free(&c->factor);
  for (int in = 0; in < KG_INPUT_COUNT; in++) release_input(c, in);
  c->min_input = 0;
}

static void report_solve_times(const cuda_engine *c) {
  if (!c->n_solves) return;
  kg_info("cuda engine: %d of %d masters read from exact device copies instead of uploaded", c->n_widened, c->n_solves);
  kg_info("cuda engine, %d solves: upload (+ factorization) %.2f s, waiting for downloads %.2f s, solve %.2f s, "
          "results %.2f s, recon errors and weight refresh %.2f s",
          c->n_solves, c->t_prepare, c->t_wait, c->t_solve, c->t_result, c->t_recon);
  if (c->have_xfer && c->up.seconds > 0 && c->down.seconds > 0)
    kg_info("cuda engine transfers: up %.1f GB in %.2f s (%.1f GB/s), down %.1f GB in %.2f s (%.1f GB/s), %d threads each",
            c->up.bytes / 1e9, c->up.seconds, c->up.bytes / 1e9 / c->up.seconds, c->down.bytes / 1e9,
            c->down.seconds, c->down.bytes / 1e9 / c->down.seconds, c->up.threads);
}

static void cu_destroy(kg_engine *e) {
  cuda_engine *c = cu_of(e);
  (void)cue_join_download(c);
  cue_masks_destroy(c);
  report_solve_times(c);
  if (c->have_xfer) {
    cc_xfer_destroy(&c->up);
    cc_xfer_destroy(&c->down);
  }
  if (c->cc) kg_cc_sync(c->cc);
  stats_release(c);
  kg_cc_destroy(c->cc2);
  for (int i = 0; i < c->sets; i++) {
    if (c->pinned)
      cudaFreeHost(c->acts[i]);
    else
      kg_cc_free(c->acts[i]);
    kg_cc_free(c->scales[i]);
  }
  kg_cc_free(c->stage);
  kg_cc_free(c->dW);
  kg_cc_free(c->dW0);
  kg_cc_free(c->dWork);
  kg_cc_free(c->dbits);
  for (int i = 0; i < c->cap_events; i++) cudaEventDestroy(c->events[i]);
  free(c->events);
  kg_cc_destroy(c->cc);
  free(c);
}

static int cu_acts_init(kg_engine *e, int n, int T, int dim, int sets) {
  cuda_engine *c = cu_of(e);
  c->n = n;
  c->sets = sets;
  c->sample = (size_t)T * dim;
  const size_t bytes = (size_t)n * c->sample * sizeof(uint16_t);
  c->pinned = c->ctx->memory_budget_bytes > 0;
  for (int i = 0; i < sets; i++) {
    KG_TRY(kg_cc_alloc((void **)&c->scales[i], (size_t)n * sizeof(float), "activation scales"));
    if (c->pinned) {
      cudaError_t err = cudaMallocHost((void **)&c->acts[i], bytes);
      if (err != cudaSuccess) {
        c->acts[i] = NULL;
        return kg_error(KG_ERR_NOMEM, "no pinned host memory for calibration activations (%d x %d tokens, %.1f GiB)",
                        n, T, (double)bytes / 1073741824.0);
      }
    } else {
      KG_TRY(kg_cc_alloc((void **)&c->acts[i], bytes, "calibration activations (16-bit)"));
    }
  }
  if (sets == 1) {
    c->acts[1] = c->acts[0];
    c->scales[1] = c->scales[0];
  }
  if (c->pinned) KG_TRY(kg_cc_alloc((void **)&c->stage, c->sample * sizeof(uint16_t), "an activation staging buffer"));
  kg_debug("calibration activations: %d x %.2f GiB fp16 in %s memory", sets, (double)bytes / 1073741824.0,
           c->pinned ? "pinned host" : "device");
  return KG_OK;
}

static int cu_acts_load(kg_engine *e, int set, int s, float *x) {
  cuda_engine *c = cu_of(e);
  const uint16_t *src = c->acts[set] + (size_t)s * c->sample;
  if (c->pinned) {
    ENG_CUDA(cudaMemcpyAsync(c->stage, src, c->sample * sizeof(uint16_t), cudaMemcpyHostToDevice, c->cc->stream));
    src = c->stage;
  }
  return kg_cc_unpack16(c->cc, src, (int64_t)c->sample, c->scales[set] + s, x);
}

static int cu_acts_store(kg_engine *e, int set, int s, const float *x) {
  cuda_engine *c = cu_of(e);
  uint16_t *dst = c->acts[set] + (size_t)s * c->sample;
  KG_TRY(kg_cc_pack16(c->cc, x, (int64_t)c->sample, c->pinned ? c->stage : dst, c->scales[set] + s));
  if (c->pinned)
    ENG_CUDA(cudaMemcpyAsync(dst, c->stage, c->sample * sizeof(uint16_t), cudaMemcpyDeviceToHost, c->cc->stream));
  return KG_OK;
}

static void cu_acts_swap(kg_engine *e) {
  cuda_engine *c = cu_of(e);
  uint16_t *a = c->acts[0];
  float *s = c->scales[0];
  c->acts[0] = c->acts[1];
  c->scales[0] = c->scales[1];
  c->acts[1] = a;
  c->scales[1] = s;
}

static int cu_stats_begin(kg_engine *e, const kg_stats_plan *plan) {
  cuda_engine *c = cu_of(e);
  stats_release(c);
  c->with_gram = plan->with_gram;
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    if (!plan->want[in]) continue;
    KG_TRY(kg_cc_stats_init(c->cc, &c->stats[in], plan->width[in], plan->with_gram));
    if (plan->with_recon && !plan->with_gram) KG_TRY(kg_cc_stats_init(c->cc, &c->recon[in], plan->width[in], 1));
  }
  return KG_OK;
}

static int next_event_pair(cuda_engine *c, cudaEvent_t *start, cudaEvent_t *stop) {
  if (c->n_events + 2 > c->cap_events) {
    const int cap = c->cap_events ? 2 * c->cap_events : 256;
    cudaEvent_t *grown = realloc(c->events, (size_t)cap * sizeof(cudaEvent_t));
    if (!grown) return kg_error(KG_ERR_NOMEM, "out of memory");
    c->events = grown;
    for (int i = c->cap_events; i < cap; i++) {
      if (cudaEventCreate(&c->events[i]) != cudaSuccess) {
        c->cap_events = i;
        return kg_error(KG_ERR_DEVICE, "CUDA: cudaEventCreate failed");
      }
    }
    c->cap_events = cap;
  }
  *start = c->events[c->n_events++];
  *stop = c->events[c->n_events++];
  return KG_OK;
}

static int cu_stats_add(kg_engine *e, kg_linear_input in, const float *x, int64_t rows, int samples, int into_recon) {
  cuda_engine *c = cu_of(e);
  cudaEvent_t t0 = NULL, t1 = NULL;
  KG_TRY(next_event_pair(c, &t0, &t1));
  ENG_CUDA(cudaEventRecord(t0, c->cc->stream));
  KG_TRY(kg_cc_stats_add(c->cc, &c->stats[in], into_recon && c->recon[in].d ? &c->recon[in] : NULL, x, rows, samples));
  ENG_CUDA(cudaEventRecord(t1, c->cc->stream));
  return KG_OK;
}

static int cu_stats_add16(kg_engine *e, kg_linear_input in, const void *x, kg_dtype dtype, int64_t rows,
                          int samples, int into_recon) {
  cuda_engine *c = cu_of(e);
  cudaEvent_t t0 = NULL, t1 = NULL;
  KG_TRY(next_event_pair(c, &t0, &t1));
  ENG_CUDA(cudaEventRecord(t0, c->cc->stream));
  KG_TRY(kg_cc_stats_add16(c->cc, &c->stats[in], into_recon && c->recon[in].d ? &c->recon[in] : NULL, x, dtype,
                           rows, samples));
  ENG_CUDA(cudaEventRecord(t1, c->cc->stream));
  return KG_OK;
}

/* Enough samples a forward for the backend's preferred rows: GEMMs of that
 * many rows run near the device's rate, and the attention grid fills it.
 * Methods without Hessians take twice the rows: they hold no Grams or solver
 * buffers, so the larger workspace still leaves their peak below the
 * reference's (7B, Wanda without recon errors, one machine: 11.45 -> 11.25 s
 * at 16.47 -> 17.25 GiB; bench/NOTES.md, run I).
 * KG_CALIB_ROWS overrides the rows for measurements. One sample under a
 * memory budget, where every extra token of workspace is a token less for
 * weights. */
static int cu_preferred_batch(kg_engine *e, int T) {
  cuda_engine *c = cu_of(e);
  const char *env = getenv("KG_CALIB_ROWS");
  const long forced = env ? atol(env) : 0;
  const int64_t rows = forced > 0 ? forced : e->m->be->preferred_rows * (kg_method_uses_hessian(e->o->method) ? 1 : 2);
  if (c->ctx->memory_budget_bytes > 0 || T <= 0 || rows <= T) return 1;
  return (int)(rows / T);
}

static int cu_stats_finish(kg_engine *e) {
  cuda_engine *c = cu_of(e);
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    KG_TRY(kg_cc_stats_finish(c->cc, &c->stats[in]));
    KG_TRY(kg_cc_stats_finish(c->cc, &c->recon[in]));
  }
  KG_TRY(kg_cc_check_finite(c->cc, "calibration activations"));
  for (int i = 0; i + 1 < c->n_events; i += 2) {
    float ms = 0.0f;
    ENG_CUDA(cudaEventElapsedTime(&ms, c->events[i], c->events[i + 1]));
    c->stats_seconds += ms / 1000.0;
  }
  c->n_events = 0;
  return KG_OK;
}

static int cu_stats_allreduce(kg_engine *e, MPI_Comm team) {
  cuda_engine *c = cu_of(e);
  if (team == MPI_COMM_NULL) return KG_OK;
  if (!c->team) return kg_error(KG_ERR_ARG, "device stats allreduce: the engine was made without a team");
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    if (c->stats[in].d) KG_TRY(kg_cc_team_sum_stats(c->team, c->cc, team, &c->stats[in]));
    if (c->recon[in].d) KG_TRY(kg_cc_team_sum_stats(c->team, c->cc, team, &c->recon[in]));
  }
  return kg_cc_sync(c->cc);
}

static double cu_stats_seconds(kg_engine *e) { return cu_of(e)->stats_seconds; }

/* scaler_row on the host, the way kg_stats_scaler_row computes it. */
static int host_scaler(cuda_engine *c, kg_linear_input in, const double **out) {
  kg_cc_stats *st = &c->stats[in];
  if (!st->d) return kg_error(KG_ERR_ARG, "no statistics for input %s", kg_linear_input_name(in));
  if (st->n_samples <= 0) return kg_error(KG_ERR_ARG, "scaler_row: no calibration samples accumulated");
  if (!c->host_scaler[in]) {
    double *s = malloc((size_t)st->d * sizeof(double));
    if (!s) return kg_error(KG_ERR_NOMEM, "out of memory");
    int rc = kg_cc_download(c->cc, s, st->sqnorm, (size_t)st->d * sizeof(double));
    if (rc < 0) {
      free(s);
      return rc;
    }
    for (int64_t j = 0; j < st->d; j++) s[j] /= (double)st->n_samples;
    c->host_scaler[in] = s;
  }
  *out = c->host_scaler[in];
  return KG_OK;
}

static int cu_scaler_row(kg_engine *e, kg_linear_input in, double *out) {
  cuda_engine *c = cu_of(e);
  const double *s = NULL;
  KG_TRY(host_scaler(c, in, &s));
  memcpy(out, s, (size_t)c->stats[in].d * sizeof(double));
  return KG_OK;
}

static int device_sqrt_scaler(cuda_engine *c, kg_linear_input in, const double **out) {
  if (!c->sqrt_scaler[in]) {
    const double *s = NULL;
    KG_TRY(host_scaler(c, in, &s));
    const int64_t d = c->stats[in].d;
    double *q = malloc((size_t)d * sizeof(double));
    if (!q) return kg_error(KG_ERR_NOMEM, "out of memory");
    int rc = KG_OK;
    for (int64_t j = 0; j < d && rc >= 0; j++) {
      if (!(s[j] >= 0.0) || !isfinite(s[j]))
        rc = kg_error(KG_ERR_NUMERIC, "wanda: scaler_row[%lld] = %g is not a finite non-negative value", (long long)j, s[j]);
      q[j] = sqrt(s[j]);
    }
    if (rc >= 0) rc = kg_cc_alloc((void **)&c->sqrt_scaler[in], (size_t)d * sizeof(double), "a Wanda scaler");
    if (rc >= 0) rc = kg_cc_upload(c->cc, c->sqrt_scaler[in], q, (size_t)d * sizeof(double));
    free(q);
    if (rc < 0) return rc;
  }
  *out = c->sqrt_scaler[in];
  return KG_OK;
}

static int grow(float **buf, size_t *cap, size_t n, const char *what) {
  if (n <= *cap) return KG_OK;
  kg_cc_free(*buf);
  *buf = NULL;
  *cap = 0;
  KG_TRY(kg_cc_alloc((void **)buf, n * sizeof(float), what));
  *cap = n;
  return KG_OK;
}

/* Whether the device solvers take this method with these options. */
static int device_solvable(const kg_compress_opts *o) {
  switch (o->method) {
  case KG_METHOD_MAGNITUDE: return o->prune_n == 0 || o->prune_m <= 64;
  case KG_METHOD_WANDA:
  case KG_METHOD_OWL_WANDA: return o->prune_n ? o->prune_m <= 64 : !o->use_variant;
  case KG_METHOD_SPARSEGPT:
  case KG_METHOD_OWL_SPARSEGPT:
  case KG_METHOD_GPTQ: return kg_cc_obs_supported(o->blocksize, o->prune_n, o->prune_m);
  default: return 0;
  }
}

static int needs_factor(const kg_compress_opts *o) {
  return o->method == KG_METHOD_SPARSEGPT || o->method == KG_METHOD_OWL_SPARSEGPT || o->method == KG_METHOD_GPTQ;
}

/* The device sweep's job for lin (W = dW; quant is the storage job.quant points at). */
static int obs_job(cuda_engine *c, const kg_linear *lin, kg_linear_input in, double sparsity, kg_quant_opts *quant,
                   kg_cc_obs_job *job) {
  const kg_compress_opts *o = c->base.o;
  const int64_t rows = lin->rows, cols = lin->cols;
  kg_cc_stats *st = &c->stats[in];
  if (!st->gram) return kg_error(KG_ERR_ARG, "%s needs the Hessian of its input", kg_method_name(o->method));
  *quant = o->quant;
  *job = (kg_cc_obs_job){
      .W = c->dW, .rows = rows, .cols = cols, .G = st->gram, .n_samples = st->n_samples, .blocksize = o->blocksize,
      .percdamp = o->percdamp, .max_damp_retries = 3,
  };
  if (o->method == KG_METHOD_GPTQ) {
    job->quant = quant;
    job->act_order = o->act_order;
    if (o->act_order) {
      KG_TRY(grow(&c->dWork, &c->work_cap, (size_t)(rows * cols), "an act_order work buffer"));
      job->work = c->dWork;
    }
  } else {
    job->sparsity = o->prune_n ? 0.0 : sparsity;
    job->prune_n = o->prune_n;
    job->prune_m = o->prune_m;
  }
  return KG_OK;
}

/* Uploads lin's master into dW0; for a Hessian method whose factorization is
 * not cached yet, builds it meanwhile (it reads only the Gram). */
static int upload_and_factor(cuda_engine *c, const kg_linear *lin, kg_linear_input in, double sparsity, size_t bytes) {
  const kg_compress_opts *o = c->base.o;
  if (c->exact_masters && lin->dev.exact) {
    /* The backend's 16-bit copy is the master itself: no host traffic. */
    const int rc = kg_cuda_weight_widen(c->base.m->be, &lin->dev, c->dW0);
    if (rc != KG_ERR_UNSUPPORTED) {
      KG_TRY(rc);
      c->n_widened++;
      if (device_solvable(o) && needs_factor(o) && c->stats[in].gram) {
        kg_quant_opts quant;
        kg_cc_obs_job job;
        KG_TRY(obs_job(c, lin, in, sparsity, &quant, &job));
        KG_TRY(kg_cc_obs_prepare(c->cc, &job, &c->factor));
      }
      return KG_OK;
    }
    kg_error_clear();
  }
  if (!(c->have_xfer && device_solvable(o) && needs_factor(o) && c->stats[in].gram))
    return cue_copy_weights(c, 1, c->dW0, lin->w, bytes);
  kg_quant_opts quant;
  kg_cc_obs_job job;
  KG_TRY(obs_job(c, lin, in, sparsity, &quant, &job));
  struct xfer_job up = {&c->up, c->dW0, lin->w, bytes, 1, cudaSuccess};
  pthread_t t;
  int started = 0;
  cue_xfer_start(&up, &t, &started);
  const int factor_rc = kg_cc_obs_prepare(c->cc, &job, &c->factor);
  const int upload_rc = cue_xfer_finish(&up, t, started, "weight upload");
  KG_TRY(factor_rc);
  return upload_rc;
}

static int device_solve(cuda_engine *c, const kg_linear *lin, kg_linear_input in, double sparsity, kg_solve_out *out) {
  const kg_compress_opts *o = c->base.o;
  const int64_t rows = lin->rows, cols = lin->cols;
  kg_prune_opts popts = {sparsity, o->prune_n, o->prune_m, o->use_variant};
  switch (o->method) {
  case KG_METHOD_MAGNITUDE: return kg_cc_magnitude_prune(c->cc, c->dW, rows, cols, &popts);
  case KG_METHOD_WANDA:
  case KG_METHOD_OWL_WANDA: {
    const double *ss = NULL;
    KG_TRY(kg_cc_flag_nonfinite(c->cc, c->dW, rows * cols));
    KG_TRY(kg_cc_check_finite(c->cc, "wanda: weight"));
    KG_TRY(device_sqrt_scaler(c, in, &ss));
    return kg_cc_wanda_prune(c->cc, c->dW, rows, cols, ss, &popts);
  }
  default: break;
  }
  kg_quant_opts quant;
  kg_cc_obs_job job;
  KG_TRY(obs_job(c, lin, in, sparsity, &quant, &job));
  kg_obs_result res;
  KG_TRY(kg_cc_obs_sweep(c->cc, &job, &c->factor, &res));
  out->percdamp = res.percdamp;
  out->damp_retries = res.retries;
  return KG_OK;
}

/* The host path: kg_compress_linear on downloaded statistics. */
static int host_solve(cuda_engine *c, kg_linear *lin, kg_linear_input in, double sparsity, kg_solve_out *out) {
  const kg_compress_opts *o = c->base.o;
  const int64_t cols = lin->cols;
  const double *scaler = NULL;
  double *H = NULL;
  kg_linear_stats hs;
  int rc = KG_OK;
  memset(&hs, 0, sizeof(hs));
  kg_cc_stats *st = &c->stats[in];
  if (st->d && (rc = host_scaler(c, in, &scaler)) < 0) goto done;
  if (st->gram) {
    if ((rc = kg_stats_init(&hs, cols, 1)) < 0) goto done;
    if ((rc = kg_cc_stats_download(c->cc, st, &hs)) < 0) goto done;
    if (!(H = malloc((size_t)cols * cols * sizeof(double)))) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory for a %lldx%lld Hessian", (long long)cols, (long long)cols);
      goto done;
    }
    if ((rc = kg_stats_hessian(&hs, H)) < 0) goto done;
  }
  kg_linear_report lr = {0};
  if ((rc = kg_compress_linear(o, sparsity, lin->w, lin->rows, cols, scaler, H, &lr)) < 0) goto done;
  out->percdamp = lr.percdamp;
  out->damp_retries = lr.damp_retries;
done:
  kg_stats_free(&hs);
  free(H);
  return rc;
}

/* Refreshes the backend's 16-bit copy of lin from dW on the device, when
 * the backend holds it resident; otherwise the pipeline uploads from the host. */
static int refresh_backend(cuda_engine *c, kg_linear *lin, int *current) {
  *current = 0;
  const int rc = kg_cuda_weight_refresh(c->base.m->be, &lin->dev, c->dW);
  if (rc == KG_ERR_UNSUPPORTED) {
    kg_error_clear();
    return KG_OK;
  }
  KG_TRY(rc);
  *current = 1;
  return KG_OK;
}

static int cu_solve(kg_engine *e, kg_linear *lin, kg_linear_input in, double sparsity, kg_solve_out *out) {
  cuda_engine *c = cu_of(e);
  const int64_t rows = lin->rows, cols = lin->cols;
  const size_t n = (size_t)(rows * cols), bytes = n * sizeof(float);
  const double t0 = kg_now();
  out->recon_error = out->recon_relative = out->percdamp = NAN;
  out->damp_retries = 0;
  out->device_current = 0;
  /* Methods that read no statistics (magnitude, RTN without data) solve
   * block after block with no plan in between: only statistics impose an order. */
  if ((int)in < c->min_input && kg_method_uses_calibration(e->o->method))
    return kg_error(KG_ERR_ARG, "the statistics of input %s were released (linears must come in input order)",
                    kg_linear_input_name(in));
  if ((int)in >= c->min_input) {
    /* Inputs below this one are done with: free their Grams before the
     * solve allocates (the down projection's is the largest). */
    for (int k = c->min_input; k < (int)in; k++) release_input(c, k);
    c->min_input = in;
  }
  if (c->factor.U && c->factor.G != c->stats[in].gram) kg_cc_factor_free(&c->factor);
  if (device_solvable(e->o) && needs_factor(e->o)) {
    prefetch_take(c, in);
    prefetch_after(c, in);
  }
  /* recon_samples = 0: no reconstruction errors, for any method */
  const kg_cc_stats *gsrc = e->o->recon_samples <= 0 ? NULL
                            : c->with_gram          ? &c->stats[in]
                            : c->recon[in].d        ? &c->recon[in]
                                                    : NULL;
  const float *G = gsrc && gsrc->gram && gsrc->n_samples > 0 ? gsrc->gram : NULL;
  /* The previous linear's download reads dW: it must end before dW moves. */
  if (n > c->w_cap) KG_TRY(cue_join_download(c));
  KG_TRY(grow(&c->dW, &c->w_cap, n, "a weight matrix"));
  KG_TRY(grow(&c->dW0, &c->w0_cap, n, "a weight matrix"));
  double t = kg_now();
  KG_TRY(upload_and_factor(c, lin, in, sparsity, bytes));
  c->t_prepare += kg_now() - t;
  t = kg_now();
  KG_TRY(cue_join_download(c));
  c->t_wait += kg_now() - t;
  c->n_solves++;
  if (device_solvable(e->o)) {
    ENG_CUDA(cudaMemcpyAsync(c->dW, c->dW0, bytes, cudaMemcpyDeviceToDevice, c->cc->stream));
    t = kg_now();
    KG_TRY(device_solve(c, lin, in, sparsity, out));
    c->t_solve += kg_now() - t;
    t = kg_now();
    if (cue_is_mask_method(e->o->method)) {
      KG_TRY(cue_download_mask(c, lin, (int64_t)n, &out->zeros));
    } else {
      KG_TRY(kg_cc_count_zeros(c->cc, c->dW, (int64_t)n, &out->zeros));
      if (c->have_xfer) {
        /* Joined by the next solve or solve_end, before anyone reads lin->w;
         * without a thread it ran here, and its status is checked now. */
        c->down_job = (struct xfer_job){&c->down, lin->w, c->dW, bytes, 0, cudaSuccess};
        cue_xfer_start(&c->down_job, &c->down_thread, &c->down_active);
        if (!c->down_active) KG_TRY(cue_xfer_finish(&c->down_job, 0, 0, "download of solved weights"));
      } else {
        KG_TRY(cue_copy_weights(c, 0, lin->w, c->dW, bytes));
      }
    }
  } else {
    t = kg_now();
    KG_TRY(host_solve(c, lin, in, sparsity, out));
    c->t_solve += kg_now() - t;
    t = kg_now();
    KG_TRY(cue_copy_weights(c, 1, c->dW, lin->w, bytes));
    KG_TRY(kg_cc_count_zeros(c->cc, c->dW, (int64_t)n, &out->zeros));
  }
  c->t_result += kg_now() - t;
  t = kg_now();
  if (G) {
    double err = NAN, base = NAN;
    KG_TRY(kg_cc_recon_error(c->cc, c->dW0, c->dW, rows, cols, G, &err, &base));
    out->recon_error = err;
    out->recon_relative = base > 0 ? err / base : NAN;
  }
  KG_TRY(refresh_backend(c, lin, &out->device_current));
  KG_TRY(kg_cc_sync(c->cc));
  c->t_recon += kg_now() - t;
  out->seconds = kg_now() - t0;
  return KG_OK;
}

static const kg_engine_ops cuda_ops = {
    .name = "cuda",
    .destroy = cu_destroy,
    .acts_init = cu_acts_init,
    .acts_load = cu_acts_load,
    .acts_store = cu_acts_store,
    .acts_swap = cu_acts_swap,
    .stats_begin = cu_stats_begin,
    .stats_add = cu_stats_add,
    .stats_finish = cu_stats_finish,
    .stats_allreduce = cu_stats_allreduce,
    .stats_seconds = cu_stats_seconds,
    .scaler_row = cu_scaler_row,
    .solve = cu_solve,
    .solve_end = cu_solve_end,
    .stats_add16 = cu_stats_add16,
    .sync_masters = cue_sync_masters,
    .preferred_batch = cu_preferred_batch,
};

int kg_engine_cuda_create(kg_model *m, const kg_compress_opts *o, kg_engine **out) {
  int rc = KG_OK;
  *out = NULL;
  const kg_cuda_context *ctx = kg_cuda_context_of(m->be);
  if (!ctx) return kg_error(KG_ERR_UNSUPPORTED, "the CUDA compression engine needs the CUDA backend");
  cuda_engine *c = calloc(1, sizeof(*c));
  if (!c) return kg_error(KG_ERR_NOMEM, "out of memory");
  c->base.ops = &cuda_ops;
  c->next_input = -1;
  c->base.m = m;
  c->base.o = o;
  c->ctx = ctx;
  /* KG_CC_EXACT_MASTER=0 uploads every master from the host (for comparisons). */
  const char *em = getenv("KG_CC_EXACT_MASTER");
  c->exact_masters = !(em && !strcmp(em, "0"));
  rc = kg_cc_create(ctx->device, ctx->stream, &c->cc);
  /* KG_CC_PREFETCH=0 factors each Hessian when its first linear solves.
   * Off under a memory budget: a second factorization costs up to 4 d_ff^2 bytes. */
  const char *pf = getenv("KG_CC_PREFETCH");
  if (rc >= 0 && !(pf && !strcmp(pf, "0")) && ctx->memory_budget_bytes == 0 && needs_factor(o) && device_solvable(o))
    rc = kg_cc_create(ctx->device, NULL, &c->cc2);
  /* KG_CC_XFER=0 keeps plain pageable copies (for comparisons). */
  const char *xfer = getenv("KG_CC_XFER");
  if (rc >= 0 && !(xfer && !strcmp(xfer, "0"))) {
    const cudaError_t xe = cc_xfer_init(&c->up, ctx->device);
    const cudaError_t de = xe == cudaSuccess ? cc_xfer_init(&c->down, ctx->device) : xe;
    if (de == cudaSuccess) {
      c->have_xfer = 1;
    } else {
      if (xe == cudaSuccess) cc_xfer_destroy(&c->up);
      rc = kg_cc_cuda_fail(de, "transfer streams", __FILE__, __LINE__);
    }
  }
  if (o->team != MPI_COMM_NULL) {
    /* NCCL setup is collective: every rank must get there, or none. */
    int mine = rc < 0 ? rc : 0, worst = 0;
    if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MIN, o->team) != MPI_SUCCESS)
      rc = kg_error(KG_ERR_COMM, "MPI_Allreduce failed");
    else if (worst < 0 && rc >= 0)
      rc = kg_error(worst, "another rank of the team failed");
    if (rc >= 0) rc = kg_cc_team_get(o->team, ctx->device, &c->team);
  }
  if (rc < 0) {
    cu_destroy(&c->base);
    return rc;
  }
  *out = &c->base;
  return KG_OK;
}

void kg_engine_shutdown(void) { kg_cc_team_release_all(); }
