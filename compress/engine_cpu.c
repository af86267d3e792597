/* The host engine (see engine.h): float64 statistics (compress/stats.h),
 * host solvers (kg_compress_linear), MPI sums; activations stay float32 in
 * backend memory. This is the reference every other engine is compared with. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/compress_internal.h"
#include "compress/engine.h"
#include "compress/stats.h"
#include "io/error.h"
#include "io/log.h"

typedef struct cpu_engine {
  kg_engine base;
  int host_activations;   /* the backend's memory is host memory */
  float *acts[2];         /* backend memory [n, T, dim] */
  size_t sample_floats;
  float *host_x;          /* host copy of a device hook input */
  size_t host_x_cap;
  uint16_t *host16;       /* host copy of a 16-bit hook input */
  size_t host16_cap;
  kg_linear_stats stats[KG_INPUT_COUNT];
  kg_linear_stats recon[KG_INPUT_COUNT];
  int with_gram;
  double stats_seconds;
  /* per group, built on first use by solve */
  double *H[KG_INPUT_COUNT], *scaler[KG_INPUT_COUNT], *G[KG_INPUT_COUNT];
  float *before, *zeros;  /* [rows * cols] scratch for reconstruction errors */
  size_t scratch_cap;
} cpu_engine;

static cpu_engine *cpu_of(kg_engine *e) { return (cpu_engine *)e; }

static void stats_free_all(cpu_engine *c) {
  for (int i = 0; i < KG_INPUT_COUNT; i++) {
    kg_stats_free(&c->stats[i]);
    kg_stats_free(&c->recon[i]);
  }
}

static int cpu_solve_end(kg_engine *e) {
  cpu_engine *c = cpu_of(e);
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    free(c->H[in]);
    free(c->scaler[in]);
    free(c->G[in]);
    c->H[in] = c->scaler[in] = c->G[in] = NULL;
  }
  return KG_OK;
}

static void cpu_destroy(kg_engine *e) {
  cpu_engine *c = cpu_of(e);
  kg_backend *be = e->m->be;
  (void)cpu_solve_end(e);
  stats_free_all(c);
  if (c->acts[1] != c->acts[0]) be->ops->release(be, c->acts[1]);
  be->ops->release(be, c->acts[0]);
  free(c->host_x);
  free(c->host16);
  free(c->before);
  free(c->zeros);
  free(c);
}

static int cpu_acts_init(kg_engine *e, int n, int T, int dim, int sets) {
  cpu_engine *c = cpu_of(e);
  kg_backend *be = e->m->be;
  c->sample_floats = (size_t)T * dim;
  const size_t bytes = (size_t)n * c->sample_floats * sizeof(float);
  for (int i = 0; i < sets; i++)
    if (!(c->acts[i] = be->ops->alloc(be, bytes)))
      return kg_error_context("calibration activations (%d samples x %d tokens): ", n, T);
  if (sets == 1) c->acts[1] = c->acts[0];
  return KG_OK;
}

static int cpu_acts_load(kg_engine *e, int set, int s, float *x) {
  cpu_engine *c = cpu_of(e);
  kg_backend *be = e->m->be;
  return be->ops->copy(be, x, c->acts[set] + (size_t)s * c->sample_floats, c->sample_floats * sizeof(float));
}

static int cpu_acts_store(kg_engine *e, int set, int s, const float *x) {
  cpu_engine *c = cpu_of(e);
  kg_backend *be = e->m->be;
  return be->ops->copy(be, c->acts[set] + (size_t)s * c->sample_floats, x, c->sample_floats * sizeof(float));
}

static void cpu_acts_swap(kg_engine *e) {
  cpu_engine *c = cpu_of(e);
  float *t = c->acts[0];
  c->acts[0] = c->acts[1];
  c->acts[1] = t;
}

static int cpu_stats_begin(kg_engine *e, const kg_stats_plan *plan) {
  cpu_engine *c = cpu_of(e);
  stats_free_all(c);
  c->with_gram = plan->with_gram;
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    if (!plan->want[in]) continue;
    KG_TRY(kg_stats_init(&c->stats[in], plan->width[in], plan->with_gram));
    if (plan->with_recon && !plan->with_gram) KG_TRY(kg_stats_init(&c->recon[in], plan->width[in], 1));
  }
  return KG_OK;
}

/* Room for `bytes` in the host copy of a hook input. */
static int host_room(cpu_engine *c, size_t bytes) {
  if (bytes <= c->host_x_cap) return KG_OK;
  float *grown = realloc(c->host_x, bytes);
  if (!grown) return kg_error(KG_ERR_NOMEM, "out of memory copying activations");
  c->host_x = grown;
  c->host_x_cap = bytes;
  return KG_OK;
}

static int accumulate(cpu_engine *c, kg_linear_input in, const float *hx, int64_t rows, int samples, int into_recon) {
  KG_TRY(kg_stats_accumulate(&c->stats[in], hx, rows, samples));
  if (into_recon && c->recon[in].d) KG_TRY(kg_stats_accumulate(&c->recon[in], hx, rows, samples));
  return KG_OK;
}

static int cpu_stats_add(kg_engine *e, kg_linear_input in, const float *x, int64_t rows, int samples, int into_recon) {
  cpu_engine *c = cpu_of(e);
  const double t0 = kg_now();
  const float *hx = x;
  if (!c->host_activations) {
    const size_t bytes = (size_t)rows * c->stats[in].d * sizeof(float);
    KG_TRY(host_room(c, bytes));
    KG_TRY(e->m->be->ops->to_host(e->m->be, c->host_x, x, bytes));
    hx = c->host_x;
  }
  KG_TRY(accumulate(c, in, hx, rows, samples, into_recon));
  c->stats_seconds += kg_now() - t0;
  return KG_OK;
}

/* A 16-bit hook input (device memory of a backend with the 16-bit path). */
static int cpu_stats_add16(kg_engine *e, kg_linear_input in, const void *x, kg_dtype dtype, int64_t rows,
                           int samples, int into_recon) {
  cpu_engine *c = cpu_of(e);
  const double t0 = kg_now();
  const int64_t n = rows * c->stats[in].d;
  KG_TRY(host_room(c, (size_t)n * sizeof(float)));
  if ((size_t)n > c->host16_cap) {
    uint16_t *grown = realloc(c->host16, (size_t)n * sizeof(uint16_t));
    if (!grown) return kg_error(KG_ERR_NOMEM, "out of memory copying activations");
    c->host16 = grown;
    c->host16_cap = (size_t)n;
  }
  KG_TRY(e->m->be->ops->to_host(e->m->be, c->host16, x, (size_t)n * sizeof(uint16_t)));
  for (int64_t i = 0; i < n; i++)
    c->host_x[i] = dtype == KG_DT_F16 ? kg_f16_to_f32(c->host16[i]) : kg_bf16_to_f32(c->host16[i]);
  KG_TRY(accumulate(c, in, c->host_x, rows, samples, into_recon));
  c->stats_seconds += kg_now() - t0;
  return KG_OK;
}

static int cpu_stats_finish(kg_engine *e) { return KG_OK; }

static int cpu_stats_allreduce(kg_engine *e, MPI_Comm team) {
  cpu_engine *c = cpu_of(e);
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    if (!c->stats[in].d) continue;
    KG_TRY(kg_stats_allreduce(&c->stats[in], team));
    if (c->recon[in].d) KG_TRY(kg_stats_allreduce(&c->recon[in], team));
  }
  return KG_OK;
}

static double cpu_stats_seconds(kg_engine *e) { return cpu_of(e)->stats_seconds; }

static int cpu_scaler_row(kg_engine *e, kg_linear_input in, double *out) {
  return kg_stats_scaler_row(&cpu_of(e)->stats[in], out);
}

static int64_t count_zeros(const float *w, int64_t n) {
  int64_t z = 0;
  for (int64_t i = 0; i < n; i++) z += w[i] == 0.0f;
  return z;
}

static int cpu_solve(kg_engine *e, kg_linear *lin, kg_linear_input in, double sparsity, kg_solve_out *out) {
  cpu_engine *c = cpu_of(e);
  const kg_compress_opts *o = e->o;
  const int64_t rows = lin->rows, cols = lin->cols;
  const size_t n = (size_t)(rows * cols);
  const double tl = kg_now();
  out->recon_error = out->recon_relative = NAN;
  const int have_stats = c->stats[in].d > 0;
  if (have_stats && !c->scaler[in]) {
    if (!(c->scaler[in] = malloc((size_t)cols * sizeof(double)))) return kg_error(KG_ERR_NOMEM, "out of memory");
    KG_TRY(kg_stats_scaler_row(&c->stats[in], c->scaler[in]));
  }
  if (have_stats && c->with_gram && !c->H[in]) {
    if (!(c->H[in] = malloc((size_t)cols * cols * sizeof(double))))
      return kg_error(KG_ERR_NOMEM, "out of memory for a %lldx%lld Hessian", (long long)cols, (long long)cols);
    KG_TRY(kg_stats_hessian(&c->stats[in], c->H[in]));
  }
  /* recon_samples = 0: no reconstruction errors, for any method */
  const kg_linear_stats *gram_src = o->recon_samples <= 0 ? NULL
                                    : c->with_gram        ? &c->stats[in]
                                    : c->recon[in].d      ? &c->recon[in]
                                                          : NULL;
  if (gram_src && gram_src->n_samples > 0 && !c->G[in]) {
    if (!(c->G[in] = malloc((size_t)cols * cols * sizeof(double)))) return kg_error(KG_ERR_NOMEM, "out of memory");
    KG_TRY(kg_stats_gram(gram_src, c->G[in]));
  }
  if (c->G[in]) {
    if (n > c->scratch_cap) {
      free(c->before);
      free(c->zeros);
      c->scratch_cap = 0;
      c->before = malloc(n * sizeof(float));
      c->zeros = calloc(n, sizeof(float));
      if (!c->before || !c->zeros) return kg_error(KG_ERR_NOMEM, "out of memory");
      c->scratch_cap = n;
    }
    memcpy(c->before, lin->w, n * sizeof(float));
  }
  kg_linear_report lr = {0};
  KG_TRY(kg_compress_linear(o, sparsity, lin->w, rows, cols, c->scaler[in], c->H[in], &lr));
  if (c->G[in]) {
    double err = NAN, base = NAN;
    KG_TRY(kg_recon_error(c->before, lin->w, rows, cols, c->G[in], &err));
    KG_TRY(kg_recon_error(c->before, c->zeros, rows, cols, c->G[in], &base));
    out->recon_error = err;
    out->recon_relative = base > 0 ? err / base : NAN;
  }
  out->percdamp = lr.percdamp;
  out->damp_retries = lr.damp_retries;
  out->zeros = count_zeros(lin->w, (int64_t)n);
  out->seconds = kg_now() - tl;
  return KG_OK;
}

static const kg_engine_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .acts_init = cpu_acts_init,
    .acts_load = cpu_acts_load,
    .acts_store = cpu_acts_store,
    .acts_swap = cpu_acts_swap,
    .stats_begin = cpu_stats_begin,
    .stats_add = cpu_stats_add,
    .stats_add16 = cpu_stats_add16,
    .stats_finish = cpu_stats_finish,
    .stats_allreduce = cpu_stats_allreduce,
    .stats_seconds = cpu_stats_seconds,
    .scaler_row = cpu_scaler_row,
    .solve = cpu_solve,
    .solve_end = cpu_solve_end,
};

int kg_engine_cpu_create(kg_model *m, const kg_compress_opts *o, kg_engine **out) {
  *out = NULL;
  cpu_engine *c = calloc(1, sizeof(*c));
  if (!c) return kg_error(KG_ERR_NOMEM, "out of memory");
  c->base.ops = &cpu_ops;
  c->base.m = m;
  c->base.o = o;
  c->host_activations = !strcmp(m->be->ops->name, "cpu");
  *out = &c->base;
  return KG_OK;
}
