/* Throughput and memory of CUDA perplexity passes on a LLaMA-2-7B-shaped
 * model (the issue 6 target: 83 windows x 4096 tokens in <= 8 s, peak <= 15.2
 * GiB on one H100). Runs only with KG_CUDA_PERF=1 (else exits 77), since it
 * needs a large GPU and minutes of setup. Settings (environment):
 *   KG_CUDA_PERF_MODEL   model spec (default synthetic:llama-2-7b)
 *   KG_CUDA_PERF_WINDOWS windows timed (default 8), KG_CUDA_PERF_SEQLEN (4096)
 *   KG_CUDA_PERF_BATCH   windows per forward (default 1)
 *   KG_CUDA_PERF_STREAM_GB  also time a run under this memory budget (block
 *                        streaming) and check it gives the resident NLLs
 * Checks: every NLL finite; streaming NLLs equal resident ones (1e-6).
 * Prints the seconds per window, the extrapolation to 83 windows, the
 * effective TFLOP/s and the peak device memory. */
#include "cuda_testlib.h"
#include "io/checkpoint.h"
#include "io/log.h"
#include "io/synthetic.h"
#include "model/model.h"

static int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int load(const char *spec, kg_checkpoint *ck, kg_backend *be, kg_model **m) {
  return ck ? kg_model_from_checkpoint(ck, be, m) : kg_model_load(spec, be, m, NULL);
}

/* Seconds per window over `windows` windows (after one warm-up batch); NLLs of the first batch into first_nll. */
static double time_windows(kg_model *m, const int32_t *tokens, int windows, int batch, int T, double *first_nll,
                           int *nonfinite) {
  double *nll = malloc((size_t)batch * T * sizeof(double));
  CHECK_OK(kg_model_forward_nll(m, tokens, batch, T, NULL, nll)); /* warm-up: workspace, cuBLAS heuristics */
  memcpy(first_nll, nll, (size_t)batch * T * sizeof(double));
  CHECK_OK(m->be->ops->synchronize(m->be));
  const double t0 = now_s();
  for (int w = 0; w < windows; w += batch) {
    const int nb = windows - w < batch ? windows - w : batch;
    CHECK_OK(kg_model_forward_nll(m, tokens + (size_t)w * T, nb, T, NULL, nll));
    for (int64_t i = 0; i < (int64_t)nb * T; i++)
      if (i % T != T - 1 && !isfinite(nll[i])) (*nonfinite)++;
  }
  CHECK_OK(m->be->ops->synchronize(m->be));
  free(nll);
  return (now_s() - t0) / windows;
}

/* Milliseconds per call of one operation (after a warm-up), `reps` calls. */
#define TIME_OP(be, reps, ms, call)                                  \
  do {                                                               \
    CHECK_OK(call);                                                  \
    CHECK_OK((be)->ops->synchronize(be));                            \
    const double t_ = now_s();                                       \
    for (int r_ = 0; r_ < (reps); r_++) CHECK_OK(call);              \
    CHECK_OK((be)->ops->synchronize(be));                            \
    (ms) = (now_s() - t_) * 1e3 / (reps);                            \
  } while (0)

/* Each operation of a block (and the head) at the model's shapes for one
 * window: where a forward pass spends its time. */
static void breakdown(kg_model *m, int T) {
  kg_backend *be = m->be;
  const kg_backend_ops *o = be->ops;
  const kg_model_config *c = &m->cfg;
  if (!o->linear_h) return;
  const int64_t n = T;
  const int qw = c->n_heads * c->head_dim, kvw = c->n_kv_heads * c->head_dim;
  const size_t maxw = (size_t)(c->hidden_dim > qw ? c->hidden_dim : qw);
  float *x = ct_randn((size_t)n * c->dim, 1.0f);
  float *dx = ct_dev(be, x, (size_t)n * c->dim);
  void *a = ct_dev16(be, x, (size_t)n * c->dim);
  void *b = be->ops->alloc(be, (size_t)n * maxw * 2), *b2 = be->ops->alloc(be, (size_t)n * maxw * 2);
  float *y = be->ops->alloc(be, (size_t)n * 32768 * 4);
  CHECK_OK(be->ops->to_device(be, b, y, 0));
  kg_block *blk = &m->blocks[0];
  kg_weight *w[KG_LIN_COUNT];
  for (int id = 0; id < KG_LIN_COUNT; id++) w[id] = &blk->lin[id].dev;
  CHECK_OK(o->weights_acquire ? o->weights_acquire(be, w, KG_LIN_COUNT) : 0);
  double ms;
  const int R = 10;
  TIME_OP(be, R, ms, o->norm_h(be, c->norm, dx, blk->dev_attn_norm, n, c->dim, c->norm_eps, a));
  printf("  norm_h          %8.3f ms\n", ms);
  double gflop = 2.0 * n * qw * c->dim / 1e9;
  TIME_OP(be, R, ms, o->linear_h(be, w[KG_LIN_Q], a, n, b));
  printf("  linear_h q      %8.3f ms  %6.0f TFLOP/s\n", ms, gflop / ms);
  gflop = 2.0 * n * kvw * c->dim / 1e9;
  TIME_OP(be, R, ms, o->linear_h(be, w[KG_LIN_K], a, n, b));
  printf("  linear_h k      %8.3f ms  %6.0f TFLOP/s\n", ms, gflop / ms);
  gflop = 2.0 * n * c->hidden_dim * c->dim / 1e9;
  TIME_OP(be, R, ms, o->linear_h(be, w[KG_LIN_GATE], a, n, b));
  printf("  linear_h gate   %8.3f ms  %6.0f TFLOP/s\n", ms, gflop / ms);
  TIME_OP(be, R, ms, o->linear_h_f32(be, w[KG_LIN_DOWN], b, n, dx, 1));
  printf("  linear_h_f32 down+acc %8.3f ms  %6.0f TFLOP/s\n", ms, gflop / ms);
  TIME_OP(be, R, ms, o->linear(be, w[KG_LIN_GATE], dx, n, y));
  printf("  linear (f32 in/out) gate %8.3f ms  %6.0f TFLOP/s\n", ms, gflop / ms);
  TIME_OP(be, R, ms, o->rope_h(be, b, 1, T, 0, c->n_heads, c->head_dim, m->rope_inv_freq));
  printf("  rope_h q        %8.3f ms\n", ms);
  kg_attention_args at = {.q = b, .k_cache = b2, .v_cache = b2, .out = a, .n_seq = 1, .T = T, .pos0 = 0,
                          .kv_stride = T, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim};
  CHECK_OK(be->ops->to_device(be, b, y, 0));
  void *ah = be->ops->alloc(be, (size_t)n * qw * 2);
  at.out = ah;
  ct_poison(be, b, (size_t)n * maxw * 2); /* overwritten next: keep the attention inputs finite */
  {
    float *r = ct_randn((size_t)n * maxw, 1.0f);
    void *t1 = ct_dev16(be, r, (size_t)n * maxw);
    CHECK_OK(be->ops->copy(be, b, t1, (size_t)n * maxw * 2));
    CHECK_OK(be->ops->copy(be, b2, t1, (size_t)n * maxw * 2));
    be->ops->release(be, t1);
    free(r);
  }
  gflop = 2.0 * 2.0 * ((double)T * T / 2) * c->n_heads * c->head_dim / 1e9;
  const char *keep = getenv("KG_CUDA_ATTN_VARIANT");
  for (int v = 0; v <= 23; v++) { /* 9-23: the sm_90a wgmma kernels */
    char vs[16];
    snprintf(vs, sizeof(vs), "%d", v);
    setenv("KG_CUDA_ATTN_VARIANT", vs, 1);
    TIME_OP(be, R, ms, o->attention_h(be, &at));
    printf("  attention_h v%d  %8.3f ms  %6.0f TFLOP/s (causal)\n", v, ms, gflop / ms);
  }
  if (keep) setenv("KG_CUDA_ATTN_VARIANT", keep, 1);
  else unsetenv("KG_CUDA_ATTN_VARIANT");
  TIME_OP(be, R, ms, o->swiglu_h(be, b, b2, n * c->hidden_dim, b));
  printf("  swiglu_h        %8.3f ms\n", ms);
  gflop = 2.0 * n * c->vocab_size * c->dim / 1e9;
  TIME_OP(be, R, ms, o->linear_h_f32(be, &m->dev_lm_head, a, n, y, 0));
  printf("  head linear     %8.3f ms  %6.0f TFLOP/s\n", ms, gflop / ms);
  int32_t *tg = malloc((size_t)n * 4);
  double *nl = malloc((size_t)n * 8);
  for (int64_t i = 0; i < n; i++) tg[i] = (int32_t)(i % c->vocab_size);
  TIME_OP(be, R, ms, o->row_nll(be, y, n, c->vocab_size, tg, nl));
  printf("  row_nll         %8.3f ms\n", ms);
  be->ops->release(be, dx), be->ops->release(be, a), be->ops->release(be, b), be->ops->release(be, b2);
  be->ops->release(be, y), be->ops->release(be, ah);
  free(x), free(tg), free(nl);
}

int main(void) {
  const char *perf = getenv("KG_CUDA_PERF");
  if (!perf || strcmp(perf, "1")) {
    printf("SKIP: set KG_CUDA_PERF=1 to run the CUDA throughput test\n");
    return 77;
  }
  kg_backend *gpu = ct_cuda_or_skip();
  if (!gpu) return 77;
  ct_seed();
  const char *spec = getenv("KG_CUDA_PERF_MODEL");
  if (!spec || !*spec) spec = "synthetic:llama-2-7b";
  const int T = env_int("KG_CUDA_PERF_SEQLEN", 4096), windows = env_int("KG_CUDA_PERF_WINDOWS", 8);
  const int batch = env_int("KG_CUDA_PERF_BATCH", 1);
  kg_checkpoint *ck = NULL;
  double t0 = now_s();
  if (!strncmp(spec, "synthetic:", 10)) {
    kg_synthetic_spec syn;
    CHECK_OK(kg_synthetic_spec_parse(spec + 10, &syn));
    CHECK_OK(kg_synthetic_checkpoint(&syn, &ck));
  }
  kg_model *m = NULL;
  CHECK_OK(load(spec, ck, gpu, &m));
  if (!m) return ct_finish("test_cuda_perf");
  printf("loaded %s in %.1f s\n", spec, now_s() - t0);
  const kg_model_config *c = &m->cfg;
  int32_t *tokens = malloc((size_t)(windows + batch) * T * sizeof(int32_t));
  for (size_t i = 0; i < (size_t)(windows + batch) * T; i++) tokens[i] = (int32_t)(ct_next() % (uint64_t)c->vocab_size);
  double *first = malloc((size_t)batch * T * sizeof(double)), *first_s = malloc((size_t)batch * T * sizeof(double));
  int nonfinite = 0;
  const double spw = time_windows(m, tokens, windows, batch, T, first, &nonfinite);
  size_t peak = 0;
  CHECK_OK(kg_backend_memory_stats(gpu, NULL, &peak));
  double params = 0;
  for (int id = 0; id < KG_LIN_COUNT; id++) params += (double)m->blocks[0].lin[id].rows * m->blocks[0].lin[id].cols;
  params = params * c->n_layers + (double)c->vocab_size * c->dim * (m->lm_head == m->embed ? 1 : 2);
  /* causal attention: QK^T and PV over half the T x T scores, per layer */
  const double attn = 2.0 * 2.0 * c->n_layers * ((double)T * T / 2) * c->n_heads * c->head_dim;
  const double flops = 2.0 * params * T + attn;
  printf("PERF %s: %.4f s per %d-token window (batch %d): %.2f s for 83 windows, %.0f TFLOP/s, peak %.2f GiB\n", spec,
         spw, T, batch, 83 * spw, flops / spw / 1e12, (double)peak / (1 << 30));
  ct_report("perf: every NLL finite", nonfinite ? 1.0 : 0.0, 0.0, 0);
  if (batch == 1 && windows >= 2) {
    double *first2 = malloc((size_t)2 * T * sizeof(double));
    const double spw2 = time_windows(m, tokens, windows, 2, T, first2, &nonfinite);
    size_t peak2 = 0;
    CHECK_OK(kg_backend_memory_stats(gpu, NULL, &peak2));
    printf("PERF %s: %.4f s per window with 2 windows per forward: %.2f s for 83 windows, %.0f TFLOP/s, peak %.2f GiB\n",
           spec, spw2, 83 * spw2, flops / spw2 / 1e12, (double)peak2 / (1 << 30));
    free(first2);
  }
  printf("one window's operations (layer 0, head):\n");
  breakdown(m, T);

  const char *sgb = getenv("KG_CUDA_PERF_STREAM_GB");
  if (sgb && *sgb) {
    kg_backend *small = NULL;
    kg_model *ms = NULL;
    CHECK_OK(kg_cuda_backend_create(0, &small));
    if (small) CHECK_OK(kg_backend_set_memory_budget(small, (size_t)(atof(sgb) * (double)(1 << 30))));
    t0 = now_s();
    if (small) CHECK_OK(load(spec, ck, small, &ms));
    if (ms) {
      int streamed = 0;
      for (int l = 0; l < c->n_layers; l++) streamed += ms->blocks[l].lin[0].dev.streamed;
      printf("loaded %s under %s GiB in %.1f s: %d of %d blocks streamed\n", spec, sgb, now_s() - t0, streamed, c->n_layers);
      int nf = 0;
      const int sw = windows < 2 ? windows : 2;
      const double sspw = time_windows(ms, tokens, sw, batch, T, first_s, &nf);
      size_t speak = 0;
      CHECK_OK(kg_backend_memory_stats(small, NULL, &speak));
      printf("PERF %s streaming (%s GiB): %.4f s per window, %.2f s for 83 windows, peak %.2f GiB\n", spec, sgb, sspw,
             83 * sspw, (double)speak / (1 << 30));
      double num = 0, den = 0;
      for (int64_t i = 0; i < (int64_t)batch * T; i++)
        if (!isnan(first[i])) num += (first[i] - first_s[i]) * (first[i] - first_s[i]), den += first[i] * first[i];
      ct_report("perf: streamed NLL == resident NLL", isnan(num) ? INFINITY : sqrt(num / den), 1e-6, 0);
      ct_report("perf: streaming peak within the budget", (double)speak <= atof(sgb) * (double)(1 << 30) ? 0.0 : 1.0, 0.0, 0);
    }
    kg_model_free(ms);
    kg_backend_destroy(small);
  }
  kg_model_free(m);
  kg_checkpoint_close(ck);
  kg_backend_destroy(gpu);
  free(tokens), free(first), free(first_s);
  return ct_finish("test_cuda_perf");
}
