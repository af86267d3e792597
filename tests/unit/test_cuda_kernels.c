/* Every CUDA backend operation against the CPU reference backend on fresh
 * random inputs: several shapes (odd ones too), GQA ratios, decode with a
 * cache at pos0 > 0. Outputs are poisoned with NaN first, so an element the
 * GPU never wrote fails the check.
 *
 * Tolerances, as ||gpu - cpu|| / ||cpu||:
 *   float32 element-wise and row-wise ops (norm, rope, swiglu, add, embed): 1e-6
 *   GEMMs against the CPU on the same 16-bit-rounded operands: 1e-5
 *   outputs stored in 16 bits (the act16 path): 8e-3 (bf16 keeps 8 bits)
 *   attention (16-bit operands and probabilities on the tensor cores): 1e-2
 *   row_nll / row_js (float64): 1e-10
 * Exits 77 (skipped) without a CUDA device. */
#include "cuda_testlib.h"

#ifdef KG_HAVE_CUDA
#include "model/cuda/kg_cuda.h"
#endif

static kg_backend *gpu, *cpu;
static int attn_variant; /* KG_CUDA_ATTN_VARIANT under test (flash kernel configurations) */

#define TOL_F32 1e-6
#define TOL_GEMM 1e-5
#define TOL_16 8e-3
#define TOL_ATTN 1e-2
#define TOL_ROW 1e-10

static void check_embed(int vocab, int dim, int n) {
  char name[128];
  float *table = ct_randn((size_t)vocab * dim, 1.0f);
  ct_round16(gpu->act16, table, (size_t)vocab * dim); /* the CPU sees what the GPU stores */
  int32_t *tok = malloc((size_t)n * sizeof(int32_t));
  for (int i = 0; i < n; i++) tok[i] = (int32_t)(ct_next() % (uint64_t)vocab);
  kg_weight wc = {0}, wg = {0};
  float *ref = malloc((size_t)n * dim * sizeof(float));
  CHECK_OK(cpu->ops->weight_upload(cpu, &wc, table, vocab, dim));
  CHECK_OK(gpu->ops->weight_upload(gpu, &wg, table, vocab, dim));
  CHECK_OK(cpu->ops->embed(cpu, &wc, tok, n, ref));
  float *d = gpu->ops->alloc(gpu, (size_t)n * dim * sizeof(float));
  ct_poison(gpu, d, (size_t)n * dim * sizeof(float));
  CHECK_OK(gpu->ops->embed(gpu, &wg, tok, n, d));
  float *out = ct_host(gpu, d, (size_t)n * dim);
  snprintf(name, sizeof(name), "embed vocab=%d dim=%d n=%d", vocab, dim, n);
  ct_check(name, out, ref, (size_t)n * dim, 0.0);
  gpu->ops->weight_release(gpu, &wg);
  gpu->ops->release(gpu, d);
  free(table), free(tok), free(ref), free(out);
}

static void check_norm(kg_norm_kind kind, int64_t n, int d, int alias) {
  char name[128];
  const char *kn = kind == KG_NORM_RMS ? "rms" : "layer";
  float *x = ct_randn((size_t)n * d, 2.0f), *gain = ct_randn((size_t)d, 1.0f);
  for (size_t i = 0; i < (size_t)n * d; i++) x[i] += 0.5f; /* a mean for LayerNorm to remove */
  float *ref = malloc((size_t)n * d * sizeof(float));
  CHECK_OK(cpu->ops->norm(cpu, kind, x, gain, n, d, 1e-5f, ref));
  float *dx = ct_dev(gpu, x, (size_t)n * d), *dg = ct_dev(gpu, gain, (size_t)d), *dy = dx;
  if (!alias) {
    dy = gpu->ops->alloc(gpu, (size_t)n * d * sizeof(float));
    ct_poison(gpu, dy, (size_t)n * d * sizeof(float));
  }
  CHECK_OK(gpu->ops->norm(gpu, kind, dx, dg, n, d, 1e-5f, dy));
  float *out = ct_host(gpu, dy, (size_t)n * d);
  snprintf(name, sizeof(name), "norm %s n=%lld d=%d%s", kn, (long long)n, d, alias ? " in place" : "");
  ct_check(name, out, ref, (size_t)n * d, TOL_F32);
  free(out);
  if (gpu->ops->norm_h) {
    void *dh = gpu->ops->alloc(gpu, (size_t)n * d * 2);
    float *x2 = ct_dev(gpu, x, (size_t)n * d);
    ct_poison(gpu, dh, (size_t)n * d * 2);
    CHECK_OK(gpu->ops->norm_h(gpu, kind, x2, dg, n, d, 1e-5f, dh));
    out = ct_host16(gpu, dh, (size_t)n * d);
    snprintf(name, sizeof(name), "norm_h %s n=%lld d=%d", kn, (long long)n, d);
    ct_check(name, out, ref, (size_t)n * d, TOL_16);
    free(out);
    gpu->ops->release(gpu, dh);
    gpu->ops->release(gpu, x2);
  }
  if (!alias) gpu->ops->release(gpu, dy);
  gpu->ops->release(gpu, dx);
  gpu->ops->release(gpu, dg);
  free(x), free(gain), free(ref);
}

static void check_rope(int n_seq, int T, int pos0, int n_heads, int head_dim) {
  char name[128];
  const size_t n = (size_t)n_seq * T * n_heads * head_dim;
  float *x = ct_randn(n, 1.0f), *inv = malloc((size_t)head_dim / 2 * sizeof(float));
  for (int i = 0; i < head_dim / 2; i++) inv[i] = (float)(1.0 / pow(10000.0, (double)(2 * i) / head_dim));
  float *dx = ct_dev(gpu, x, n);
  CHECK_OK(gpu->ops->rope(gpu, dx, n_seq, T, pos0, n_heads, head_dim, inv));
  float *out = ct_host(gpu, dx, n);
  float *x16 = NULL;
  if (gpu->ops->rope_h) {
    x16 = malloc(n * sizeof(float));
    memcpy(x16, x, n * sizeof(float));
    ct_round16(gpu->act16, x16, n);
  }
  CHECK_OK(cpu->ops->rope(cpu, x, n_seq, T, pos0, n_heads, head_dim, inv));
  snprintf(name, sizeof(name), "rope seqs=%d T=%d pos0=%d heads=%d hd=%d", n_seq, T, pos0, n_heads, head_dim);
  ct_check(name, out, x, n, TOL_F32);
  free(out);
  if (x16) {
    void *dh = ct_dev16(gpu, x16, n);
    CHECK_OK(gpu->ops->rope_h(gpu, dh, n_seq, T, pos0, n_heads, head_dim, inv));
    out = ct_host16(gpu, dh, n);
    CHECK_OK(cpu->ops->rope(cpu, x16, n_seq, T, pos0, n_heads, head_dim, inv));
    snprintf(name, sizeof(name), "rope_h seqs=%d T=%d pos0=%d heads=%d hd=%d", n_seq, T, pos0, n_heads, head_dim);
    ct_check(name, out, x16, n, TOL_16);
    free(out), free(x16);
    gpu->ops->release(gpu, dh);
  }
  gpu->ops->release(gpu, dx);
  free(x), free(inv);
}

static void check_cache_store(int n_seq, int T, int pos0, int kv_stride, int width) {
  char name[128];
  const size_t nc = (size_t)n_seq * kv_stride * width, nx = (size_t)n_seq * T * width;
  float *cache = ct_randn(nc, 1.0f), *x = ct_randn(nx, 1.0f);
  float *dc = ct_dev(gpu, cache, nc), *dx = ct_dev(gpu, x, nx);
  CHECK_OK(gpu->ops->cache_store(gpu, dc, dx, n_seq, T, pos0, kv_stride, width));
  CHECK_OK(cpu->ops->cache_store(cpu, cache, x, n_seq, T, pos0, kv_stride, width));
  float *out = ct_host(gpu, dc, nc);
  snprintf(name, sizeof(name), "cache_store seqs=%d T=%d pos0=%d stride=%d w=%d (whole cache)", n_seq, T, pos0,
           kv_stride, width);
  ct_check(name, out, cache, nc, 0.0);
  gpu->ops->release(gpu, dc);
  gpu->ops->release(gpu, dx);
  free(cache), free(x), free(out);
}

static void check_swiglu(int64_t n) {
  char name[128];
  float *g = ct_randn((size_t)n, 3.0f), *u = ct_randn((size_t)n, 1.0f), *ref = malloc((size_t)n * sizeof(float));
  CHECK_OK(cpu->ops->swiglu(cpu, g, u, n, ref));
  float *dg = ct_dev(gpu, g, (size_t)n), *du = ct_dev(gpu, u, (size_t)n);
  float *dout = gpu->ops->alloc(gpu, (size_t)n * sizeof(float));
  ct_poison(gpu, dout, (size_t)n * sizeof(float));
  CHECK_OK(gpu->ops->swiglu(gpu, dg, du, n, dout));
  float *out = ct_host(gpu, dout, (size_t)n);
  snprintf(name, sizeof(name), "swiglu n=%lld", (long long)n);
  ct_check(name, out, ref, (size_t)n, TOL_F32);
  free(out);
  if (gpu->ops->swiglu_h) {
    ct_round16(gpu->act16, g, (size_t)n);
    ct_round16(gpu->act16, u, (size_t)n);
    CHECK_OK(cpu->ops->swiglu(cpu, g, u, n, ref));
    void *hg = ct_dev16(gpu, g, (size_t)n), *hu = ct_dev16(gpu, u, (size_t)n);
    CHECK_OK(gpu->ops->swiglu_h(gpu, hg, hu, n, hg)); /* out aliases gate, as forward.c uses it */
    out = ct_host16(gpu, hg, (size_t)n);
    snprintf(name, sizeof(name), "swiglu_h n=%lld (out aliases gate)", (long long)n);
    ct_check(name, out, ref, (size_t)n, TOL_16);
    free(out);
    gpu->ops->release(gpu, hg);
    gpu->ops->release(gpu, hu);
  }
  gpu->ops->release(gpu, dg);
  gpu->ops->release(gpu, du);
  gpu->ops->release(gpu, dout);
  free(g), free(u), free(ref);
}

static void check_add(int64_t n) {
  char name[128];
  float *y = ct_randn((size_t)n, 1.0f), *x = ct_randn((size_t)n, 1.0f);
  float *dy = ct_dev(gpu, y, (size_t)n), *dx = ct_dev(gpu, x, (size_t)n);
  CHECK_OK(gpu->ops->add(gpu, dy, dx, n));
  CHECK_OK(cpu->ops->add(cpu, y, x, n));
  float *out = ct_host(gpu, dy, (size_t)n);
  snprintf(name, sizeof(name), "add n=%lld", (long long)n);
  ct_check(name, out, y, (size_t)n, TOL_F32);
  gpu->ops->release(gpu, dy);
  gpu->ops->release(gpu, dx);
  free(y), free(x), free(out);
}

/* linear (float32 in/out), linear_h (16-bit in/out), linear_h_f32 (16-bit in,
 * float32 out, plain and accumulating). The CPU gets the operands the GPU
 * multiplies (weights and inputs rounded to 16 bits): only summation order
 * differs, hence the 1e-5 tolerance. */
static void check_linear(int64_t n, int rows, int cols) {
  char name[160];
  const kg_dtype t = gpu->act16;
  float *w = ct_randn((size_t)rows * cols, 0.05f), *x = ct_randn((size_t)n * cols, 1.0f);
  float *wr = malloc((size_t)rows * cols * sizeof(float)), *xr = malloc((size_t)n * cols * sizeof(float));
  memcpy(wr, w, (size_t)rows * cols * sizeof(float));
  memcpy(xr, x, (size_t)n * cols * sizeof(float));
  ct_round16(t, wr, (size_t)rows * cols);
  ct_round16(t, xr, (size_t)n * cols);
  kg_weight wc = {0}, wexact = {0}, wg = {0};
  float *ref = malloc((size_t)n * rows * sizeof(float)), *ref_exact = malloc((size_t)n * rows * sizeof(float));
  CHECK_OK(cpu->ops->weight_upload(cpu, &wc, wr, rows, cols));
  CHECK_OK(cpu->ops->weight_upload(cpu, &wexact, w, rows, cols));
  CHECK_OK(cpu->ops->linear(cpu, &wc, xr, n, ref));
  CHECK_OK(cpu->ops->linear(cpu, &wexact, x, n, ref_exact));
  CHECK_OK(gpu->ops->weight_upload(gpu, &wg, w, rows, cols)); /* the GPU rounds the float32 master itself */
  float *dx = ct_dev(gpu, x, (size_t)n * cols), *dy = gpu->ops->alloc(gpu, (size_t)n * rows * sizeof(float));
  ct_poison(gpu, dy, (size_t)n * rows * sizeof(float));
  CHECK_OK(gpu->ops->linear(gpu, &wg, dx, n, dy));
  float *out = ct_host(gpu, dy, (size_t)n * rows);
  snprintf(name, sizeof(name), "linear n=%lld %dx%d (vs rounded operands)", (long long)n, rows, cols);
  ct_check(name, out, ref, (size_t)n * rows, TOL_GEMM);
  snprintf(name, sizeof(name), "linear n=%lld %dx%d (vs float32 operands)", (long long)n, rows, cols);
  ct_check(name, out, ref_exact, (size_t)n * rows, TOL_ATTN);
  free(out);
  if (gpu->ops->linear_h) {
    void *xh = ct_dev16(gpu, xr, (size_t)n * cols), *yh = gpu->ops->alloc(gpu, (size_t)n * rows * 2);
    ct_poison(gpu, yh, (size_t)n * rows * 2);
    CHECK_OK(gpu->ops->linear_h(gpu, &wg, xh, n, yh));
    out = ct_host16(gpu, yh, (size_t)n * rows);
    snprintf(name, sizeof(name), "linear_h n=%lld %dx%d", (long long)n, rows, cols);
    ct_check(name, out, ref, (size_t)n * rows, TOL_16);
    free(out);
    ct_poison(gpu, dy, (size_t)n * rows * sizeof(float));
    CHECK_OK(gpu->ops->linear_h_f32(gpu, &wg, xh, n, dy, 0));
    out = ct_host(gpu, dy, (size_t)n * rows);
    snprintf(name, sizeof(name), "linear_h_f32 n=%lld %dx%d", (long long)n, rows, cols);
    ct_check(name, out, ref, (size_t)n * rows, TOL_GEMM);
    free(out);
    float *y0 = ct_randn((size_t)n * rows, 1.0f);
    CHECK_OK(gpu->ops->to_device(gpu, dy, y0, (size_t)n * rows * sizeof(float)));
    CHECK_OK(gpu->ops->linear_h_f32(gpu, &wg, xh, n, dy, 1));
    for (size_t i = 0; i < (size_t)n * rows; i++) y0[i] += ref[i];
    out = ct_host(gpu, dy, (size_t)n * rows);
    snprintf(name, sizeof(name), "linear_h_f32 accumulate n=%lld %dx%d", (long long)n, rows, cols);
    ct_check(name, out, y0, (size_t)n * rows, TOL_GEMM);
    free(out), free(y0);
    gpu->ops->release(gpu, xh);
    gpu->ops->release(gpu, yh);
  }
  gpu->ops->weight_release(gpu, &wg);
  gpu->ops->release(gpu, dx);
  gpu->ops->release(gpu, dy);
  free(w), free(x), free(wr), free(xr), free(ref), free(ref_exact);
}

/* Attention over a cache [n_seq, kv_stride, kv_heads*hd] holding positions
 * 0 .. pos0+T-1; queries at pos0 .. pos0+T-1. The CPU sees 16-bit-rounded
 * q/k/v (what the tensor cores multiply). */
static void check_attention(int n_seq, int T, int pos0, int kv_stride, int n_heads, int n_kv, int hd) {
  char name[160];
  const kg_dtype t = gpu->act16;
  const size_t nq = (size_t)n_seq * T * n_heads * hd, nkv = (size_t)n_seq * kv_stride * n_kv * hd;
  float *q = ct_randn(nq, 1.0f), *k = ct_randn(nkv, 1.0f), *v = ct_randn(nkv, 1.0f);
  ct_round16(t, q, nq);
  ct_round16(t, k, nkv);
  ct_round16(t, v, nkv);
  float *ref = malloc(nq * sizeof(float));
  kg_attention_args a = {.q = q, .k_cache = k, .v_cache = v, .out = ref, .n_seq = n_seq, .T = T, .pos0 = pos0,
                         .kv_stride = kv_stride, .n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd};
  CHECK_OK(cpu->ops->attention(cpu, &a));
  float *dq = ct_dev(gpu, q, nq), *dk = ct_dev(gpu, k, nkv), *dv = ct_dev(gpu, v, nkv);
  float *dout = gpu->ops->alloc(gpu, nq * sizeof(float));
  ct_poison(gpu, dout, nq * sizeof(float));
  kg_attention_args g = a;
  g.q = dq, g.k_cache = dk, g.v_cache = dv, g.out = dout;
  CHECK_OK(gpu->ops->attention(gpu, &g));
  float *out = ct_host(gpu, dout, nq);
  snprintf(name, sizeof(name), "attention v%d seqs=%d T=%d pos0=%d stride=%d heads=%d/%d hd=%d", attn_variant, n_seq, T,
           pos0, kv_stride, n_heads, n_kv, hd);
  ct_check(name, out, ref, nq, TOL_ATTN);
  free(out);
  if (gpu->ops->attention_h) {
    void *hq = ct_dev16(gpu, q, nq), *hk = ct_dev16(gpu, k, nkv), *hv = ct_dev16(gpu, v, nkv);
    void *ho = gpu->ops->alloc(gpu, nq * 2);
    ct_poison(gpu, ho, nq * 2);
    g.q = hq, g.k_cache = hk, g.v_cache = hv, g.out = ho;
    CHECK_OK(gpu->ops->attention_h(gpu, &g));
    out = ct_host16(gpu, ho, nq);
    snprintf(name, sizeof(name), "attention_h v%d seqs=%d T=%d pos0=%d stride=%d heads=%d/%d hd=%d", attn_variant, n_seq,
             T, pos0, kv_stride, n_heads, n_kv, hd);
    ct_check(name, out, ref, nq, TOL_ATTN);
    free(out);
    gpu->ops->release(gpu, hq), gpu->ops->release(gpu, hk), gpu->ops->release(gpu, hv), gpu->ops->release(gpu, ho);
  }
  gpu->ops->release(gpu, dq), gpu->ops->release(gpu, dk), gpu->ops->release(gpu, dv), gpu->ops->release(gpu, dout);
  free(q), free(k), free(v), free(ref);
}

/* Logit rows with the features that break naive code: a large offset
 * (overflowing exp without the max), ties for the maximum, identical rows
 * (JS exactly 0), and rows where one distribution is nearly one-hot. */
static float *logit_rows(int64_t n, int vocab) {
  float *x = ct_randn((size_t)n * vocab, 3.0f);
  for (int64_t r = 0; r < n; r++) {
    float *row = x + (size_t)r * vocab;
    if (r % 4 == 1)
      for (int i = 0; i < vocab; i++) row[i] += 120.0f;
    if (r % 5 == 2) row[vocab / 3] = row[vocab / 2] = 40.0f; /* a tie: the lower index wins */
    if (r % 7 == 3) row[(int)(ct_next() % (uint64_t)vocab)] = 60.0f;
  }
  return x;
}

static void check_row_ops(int64_t n, int vocab) {
  char name[128];
  float *p = logit_rows(n, vocab), *q = logit_rows(n, vocab);
  for (int64_t r = 0; r < n; r += 3) memcpy(q + (size_t)r * vocab, p + (size_t)r * vocab, (size_t)vocab * sizeof(float));
  int32_t *targets = malloc((size_t)n * sizeof(int32_t));
  for (int64_t i = 0; i < n; i++) targets[i] = (int32_t)(ct_next() % (uint64_t)vocab);
  double *nll_c = malloc((size_t)n * sizeof(double)), *nll_g = malloc((size_t)n * sizeof(double));
  double *js_c = malloc((size_t)n * sizeof(double)), *js_g = malloc((size_t)n * sizeof(double));
  int32_t *ap_c = malloc((size_t)n * 4), *aq_c = malloc((size_t)n * 4), *ap_g = malloc((size_t)n * 4), *aq_g = malloc((size_t)n * 4);
  CHECK_OK(cpu->ops->row_nll(cpu, p, n, vocab, targets, nll_c));
  CHECK_OK(cpu->ops->row_js(cpu, p, q, n, vocab, js_c, ap_c, aq_c));
  float *dp = ct_dev(gpu, p, (size_t)n * vocab), *dq = ct_dev(gpu, q, (size_t)n * vocab);
  for (int64_t i = 0; i < n; i++) nll_g[i] = js_g[i] = NAN, ap_g[i] = aq_g[i] = -1;
  CHECK_OK(gpu->ops->row_nll(gpu, dp, n, vocab, targets, nll_g));
  CHECK_OK(gpu->ops->row_js(gpu, dp, dq, n, vocab, js_g, ap_g, aq_g));
  double num = 0, den = 0, jnum = 0, jden = 0, jmax = 0;
  int64_t arg_bad = 0, nonfinite = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(nll_g[i]) || !isfinite(js_g[i])) nonfinite++;
    num += (nll_g[i] - nll_c[i]) * (nll_g[i] - nll_c[i]);
    den += nll_c[i] * nll_c[i];
    const double dj = fabs(js_g[i] - js_c[i]);
    jnum += dj * dj;
    jden += js_c[i] * js_c[i];
    if (dj > jmax) jmax = dj;
    arg_bad += ap_g[i] != ap_c[i] || aq_g[i] != aq_c[i];
    if (i % 3 == 0 && js_g[i] != 0.0) arg_bad += 1000000; /* identical rows must give exactly 0 */
  }
  snprintf(name, sizeof(name), "row_nll n=%lld vocab=%d", (long long)n, vocab);
  ct_report(name, nonfinite ? INFINITY : sqrt(num / den), TOL_ROW, (size_t)nonfinite);
  snprintf(name, sizeof(name), "row_js n=%lld vocab=%d (max abs %.1e)", (long long)n, vocab, jmax);
  ct_report(name, nonfinite ? INFINITY : sqrt(jnum / jden), TOL_ROW, (size_t)nonfinite);
  snprintf(name, sizeof(name), "row_js argmax p/q and JS(p,p)=0, n=%lld vocab=%d", (long long)n, vocab);
  ct_report(name, (double)arg_bad, 0.0, 0);
  gpu->ops->release(gpu, dp), gpu->ops->release(gpu, dq);
  free(p), free(q), free(targets), free(nll_c), free(nll_g), free(js_c), free(js_g);
  free(ap_c), free(aq_c), free(ap_g), free(aq_g);
}

static void check_gram(int64_t n, int d) {
  char name[128];
  float *x = ct_randn((size_t)n * d, 1.0f);
  double *gc = calloc((size_t)d * d, sizeof(double)), *gg = calloc((size_t)d * d, sizeof(double));
  double *cc = calloc((size_t)d, sizeof(double)), *cg = calloc((size_t)d, sizeof(double));
  /* accumulation adds to a (symmetric) matrix already there */
  for (size_t i = 0; i < (size_t)d; i++)
    for (size_t j = 0; j < (size_t)d; j++) gc[i * d + j] = gg[i * d + j] = (double)((i + j) % 7);
  CHECK_OK(cpu->ops->gram_accumulate(cpu, x, n, d, gc, cc));
  float *dx = ct_dev(gpu, x, (size_t)n * d);
  CHECK_OK(gpu->ops->gram_accumulate(gpu, dx, n, d, gg, cg));
  double num = 0, den = 0, cnum = 0, cden = 0;
  for (size_t i = 0; i < (size_t)d * d; i++) num += (gg[i] - gc[i]) * (gg[i] - gc[i]), den += gc[i] * gc[i];
  for (int j = 0; j < d; j++) cnum += (cg[j] - cc[j]) * (cg[j] - cc[j]), cden += cc[j] * cc[j];
  snprintf(name, sizeof(name), "gram_accumulate n=%lld d=%d", (long long)n, d);
  ct_report(name, sqrt(num / den), 1e-12, 0);
  snprintf(name, sizeof(name), "gram_accumulate colsq n=%lld d=%d", (long long)n, d);
  ct_report(name, sqrt(cnum / cden), 1e-12, 0);
  gpu->ops->release(gpu, dx);
  free(x), free(gc), free(gg), free(cc), free(cg);
}

/* Streamed weights: staged per block on demand, the same products as
 * resident ones, refreshed by a re-upload (kg_model_sync). */
static void check_streaming(void) {
  const int rows = 96, cols = 80, n = 33;
  float *w1 = ct_randn((size_t)rows * cols, 0.1f), *w2 = ct_randn((size_t)rows * cols, 0.1f);
  float *x = ct_randn((size_t)n * cols, 1.0f);
  kg_weight res = {0}, st[2] = {{0}, {0}};
  st[0].streamed = st[1].streamed = 1;
  st[0].group = 0, st[1].group = 1;
  CHECK_OK(gpu->ops->weight_upload(gpu, &res, w1, rows, cols));
  CHECK_OK(gpu->ops->weight_upload(gpu, &st[0], w1, rows, cols));
  CHECK_OK(gpu->ops->weight_upload(gpu, &st[1], w2, rows, cols));
  CHECK(st[0].host != NULL && st[0].data == NULL);
  float *dx = ct_dev(gpu, x, (size_t)n * cols), *dy = gpu->ops->alloc(gpu, (size_t)n * rows * 4);
  CHECK(gpu->ops->linear(gpu, &st[0], dx, n, dy) < 0); /* not staged: an error, not a crash */
  kg_weight *b0 = &st[0], *b1 = &st[1];
  CHECK_OK(gpu->ops->weights_acquire(gpu, &b0, 1));
  CHECK_OK(gpu->ops->weights_prefetch(gpu, &b1, 1));
  CHECK_OK(gpu->ops->linear(gpu, &st[0], dx, n, dy));
  float *a = ct_host(gpu, dy, (size_t)n * rows);
  CHECK_OK(gpu->ops->linear(gpu, &res, dx, n, dy));
  float *ref = ct_host(gpu, dy, (size_t)n * rows);
  ct_check("streaming: staged weight == resident weight", a, ref, (size_t)n * rows, 0.0);
  free(a), free(ref);
  /* block 1 was prefetched; acquiring it switches slots */
  CHECK_OK(gpu->ops->weights_acquire(gpu, &b1, 1));
  CHECK(st[0].data == NULL);
  CHECK_OK(gpu->ops->weight_upload(gpu, &res, w2, rows, cols));
  CHECK_OK(gpu->ops->linear(gpu, &st[1], dx, n, dy));
  a = ct_host(gpu, dy, (size_t)n * rows);
  CHECK_OK(gpu->ops->linear(gpu, &res, dx, n, dy));
  ref = ct_host(gpu, dy, (size_t)n * rows);
  ct_check("streaming: prefetched block == resident weight", a, ref, (size_t)n * rows, 0.0);
  free(a), free(ref);
  /* a re-upload (what kg_model_sync does after compression) replaces the staged copy */
  for (size_t i = 0; i < (size_t)rows * cols; i++) w2[i] *= -0.5f;
  CHECK_OK(gpu->ops->weight_upload(gpu, &st[1], w2, rows, cols));
  CHECK_OK(gpu->ops->weight_upload(gpu, &res, w2, rows, cols));
  CHECK_OK(gpu->ops->weights_acquire(gpu, &b1, 1));
  CHECK_OK(gpu->ops->linear(gpu, &st[1], dx, n, dy));
  a = ct_host(gpu, dy, (size_t)n * rows);
  CHECK_OK(gpu->ops->linear(gpu, &res, dx, n, dy));
  ref = ct_host(gpu, dy, (size_t)n * rows);
  ct_check("streaming: re-uploaded weight is restaged", a, ref, (size_t)n * rows, 0.0);
  free(a), free(ref);
  gpu->ops->weight_release(gpu, &st[0]);
  gpu->ops->weight_release(gpu, &st[1]);
  gpu->ops->weight_release(gpu, &res);
  gpu->ops->release(gpu, dx), gpu->ops->release(gpu, dy);
  free(w1), free(w2), free(x);
}

static void check_memory_rules(void) {
  size_t used = 0, peak = 0;
  CHECK_OK(kg_backend_memory_stats(gpu, &used, &peak));
  gpu->ops->release(gpu, NULL); /* a no-op */
  CHECK_OK(kg_backend_set_memory_budget(gpu, used + ((size_t)64 << 20)));
  void *p = gpu->ops->alloc(gpu, (size_t)100 << 20);
  const int code = kg_error_code();
  ct_report("memory budget refuses 100 MiB over a 64 MiB margin", p == NULL && code == KG_ERR_NOMEM ? 0.0 : 1.0, 0.0, 0);
  gpu->ops->release(gpu, p);
  void *q = gpu->ops->alloc(gpu, (size_t)32 << 20);
  ct_report("memory budget allows 32 MiB within it", q ? 0.0 : 1.0, 0.0, 0);
  gpu->ops->release(gpu, q);
  CHECK_OK(kg_backend_set_memory_budget(gpu, 0));
  CHECK_OK(kg_backend_set_memory_budget(cpu, 1)); /* a no-op on the CPU */
#ifdef KG_HAVE_CUDA
  /* device -1 follows the node-local rank, modulo the device count */
  int count = 0;
  cudaGetDeviceCount(&count);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5", 1);
  kg_backend *b = NULL;
  CHECK_OK(kg_cuda_backend_create(-1, &b));
  const kg_cuda_context *ctx = b ? kg_cuda_context_of(b) : NULL;
  ct_report("device -1 picks local rank 5 modulo the device count", ctx && ctx->device == 5 % count ? 0.0 : 1.0, 0.0, 0);
  CHECK(kg_cuda_context_of(cpu) == NULL);
  kg_backend_destroy(b);
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  CHECK(kg_cuda_backend_create(count, &b) == KG_ERR_ARG);
#endif
}

int main(void) {
  gpu = ct_cuda_or_skip();
  if (!gpu) return 77;
  CHECK_OK(kg_cpu_backend_create(0, &cpu));
  ct_seed();
  printf("16-bit type %s\n", kg_dtype_name(gpu->act16));

  check_embed(37, 45, 13);
  check_embed(1000, 256, 300);
  const struct { kg_norm_kind k; int64_t n; int d; int alias; } norms[] = {
      {KG_NORM_RMS, 1, 7, 0},        {KG_NORM_RMS, 33, 64, 0},    {KG_NORM_RMS, 130, 4096, 1},
      {KG_NORM_LAYER_GAIN, 5, 1000, 0},   {KG_NORM_LAYER_GAIN, 17, 576, 1}, {KG_NORM_RMS, 4096, 576, 0},
      {KG_NORM_LAYER_GAIN, 9, 45, 0},     {KG_NORM_RMS, 3, 8192, 0},  {KG_NORM_RMS, 2, 12000, 1}};
  for (size_t i = 0; i < sizeof(norms) / sizeof(norms[0]); i++) check_norm(norms[i].k, norms[i].n, norms[i].d, norms[i].alias);
  check_rope(2, 5, 0, 3, 8);
  check_rope(1, 7, 37, 9, 64);
  check_rope(3, 33, 4000, 4, 128);
  check_rope(1, 1, 131000, 2, 128);
  check_rope(2, 9, 3, 40, 64); /* more heads than one block's rows */
  check_cache_store(3, 5, 7, 20, 24);
  check_cache_store(1, 1, 63, 64, 128);
  check_swiglu(1);
  check_swiglu(1001);
  check_swiglu(3 * 11008 + 5);
  check_swiglu(3 * 11008); /* the 8-wide path */
  check_add(7);
  check_add(4096 * 3 + 1);
  check_linear(1, 64, 64);
  check_linear(7, 33, 45);
  check_linear(300, 256, 512);
  check_linear(64, 1000, 37);
  check_linear(513, 576, 1536);
  /* attention: flash (T >= 16, head_dim 64/96/128), the sm_90a wgmma kernel
   * (9-23: 16-bit, head_dim 64/128 on a 9.0 device; the others fall back)
   * and the warp kernel (decode, other sizes) */
  for (attn_variant = 0; attn_variant <= 23; attn_variant++) {
    char v[16];
    snprintf(v, sizeof(v), "%d", attn_variant);
    setenv("KG_CUDA_ATTN_VARIANT", v, 1);
    check_attention(2, 100, 0, 100, 4, 2, 64);
    check_attention(1, 130, 0, 130, 8, 8, 128);
    check_attention(2, 17, 5, 40, 6, 3, 96);
    check_attention(1, 65, 0, 65, 9, 3, 64);
    check_attention(1, 1024, 0, 1024, 4, 1, 128);
    check_attention(1, 300, 77, 400, 8, 2, 128);
  }
  unsetenv("KG_CUDA_ATTN_VARIANT");
  attn_variant = -1;
  check_attention(2, 200, 0, 200, 8, 2, 128); /* the default choice */
  check_attention(3, 1, 57, 64, 4, 1, 128);
  check_attention(2, 1, 0, 8, 8, 2, 64);
  check_attention(2, 3, 10, 16, 4, 4, 64);
  check_attention(1, 50, 0, 50, 8, 4, 8);
  check_attention(2, 40, 3, 50, 5, 5, 40);
  check_row_ops(37, 1000);
  check_row_ops(300, 32000);
  check_row_ops(8, 128256);
  check_gram(50, 33);
  check_gram(700, 256);
  check_streaming();
  check_memory_rules();

  kg_backend_destroy(gpu);
  kg_backend_destroy(cpu);
  return ct_finish("test_cuda_kernels");
}
