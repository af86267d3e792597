/* Whole-model CUDA forward passes against the CPU reference backend:
 * stories260K (llama2.c checkpoint from the data directory), a SmolLM2-135M
 * shaped synthetic model (GQA 9/3 heads, head_dim 64, 30 layers), and the
 * real SmolLM2 (alias smollm2) when the data cache has it.
 *   logits: ||gpu - cpu|| / ||cpu|| <= 3e-2 with bf16 weights, top-1 agreement >= 95%
 *   perplexity over a few windows (kg_model_forward_nll): within 1% of the CPU
 *   JS divergence against a perturbed copy (kg_model_forward_js): mean within
 *     10% of the CPU's, JS(p, p) exactly 0, argmax agreement >= 95%
 *   block streaming under a small memory budget: the same logits and NLLs as
 *     resident weights (1e-6), also after kg_model_sync of an edited block.
 * First, on the CPU alone (so it runs everywhere): kg_model_forward_nll and
 * kg_model_forward_js against float64 oracles written from the definitions
 * on the model's logits. Without a CUDA device the test then exits 77
 * (skipped) if those passed. */
#include "cuda_testlib.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "model/model_internal.h"
#ifdef KG_HAVE_CUDA
#include "model/cuda/kg_cuda.h"
#endif

static kg_backend *gpu, *cpu;

/* Tokens of real text when the model has a tokenizer and the data directory
 * has TinyStories, else uniform random ids. */
static int32_t *make_tokens(kg_tokenizer *tok, int vocab, int n) {
  int32_t *out = malloc((size_t)n * sizeof(int32_t));
  size_t got = 0;
  if (tok) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/text/tinystories/TinyStories-valid.head.txt", kgtest_data_dir());
    FILE *f = fopen(path, "rb");
    if (f) {
      static char buf[1 << 17];
      size_t len = fread(buf, 1, sizeof(buf) - 1, f);
      fclose(f);
      int32_t *ids = NULL;
      size_t k = 0;
      if (kg_tokenizer_encode(tok, buf, len, 1, &ids, &k) == KG_OK) {
        for (; got < (size_t)n && got < k; got++) out[got] = ids[got];
        free(ids);
      }
    }
  }
  for (; got < (size_t)n; got++) out[got] = (int32_t)(ct_next() % (uint64_t)vocab);
  return out;
}

static double mean_finite(const double *x, int64_t n, int64_t *count) {
  double s = 0;
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++)
    if (!isnan(x[i])) s += x[i], k++;
  if (count) *count = k;
  return k ? s / (double)k : NAN;
}

/* Edits q's host weights like a compression step and re-uploads the block. */
static void perturb(kg_model *q, int layer) {
  kg_linear *d = &q->blocks[layer].lin[KG_LIN_DOWN], *g = &q->blocks[layer].lin[KG_LIN_GATE];
  for (size_t i = 0; i < (size_t)d->rows * d->cols; i += 3) d->w[i] = 0.0f;
  for (size_t i = 0; i < (size_t)g->rows * g->cols; i++) g->w[i] *= 0.8f;
  CHECK_OK(kg_model_sync(q, layer));
}

static void compare_model(const char *spec, int T, int n_win) {
  char name[200];
  kg_model *mc = NULL, *mg = NULL, *qc = NULL, *qg = NULL;
  kg_tokenizer *tok = NULL;
  if (kg_model_load(spec, cpu, &mc, &tok) < 0 && kg_model_load(spec, cpu, &mc, NULL) < 0) {
    printf("SKIP %s: %s\n", spec, kg_error_message());
    return;
  }
  CHECK_OK(kg_model_load(spec, gpu, &mg, NULL));
  if (!mg) return;
  const int vocab = mc->cfg.vocab_size;
  const int64_t n = (int64_t)n_win * T;
  int32_t *tokens = make_tokens(tok, vocab, (int)n);

  /* logits of the first window */
  float *lc = malloc((size_t)T * vocab * sizeof(float)), *lg = malloc((size_t)T * vocab * sizeof(float));
  for (size_t i = 0; i < (size_t)T * vocab; i++) lg[i] = NAN;
  CHECK_OK(kg_model_logits(mc, tokens, T, lc));
  CHECK_OK(kg_model_logits(mg, tokens, T, lg));
  snprintf(name, sizeof(name), "%s logits T=%d", spec, T);
  ct_check(name, lg, lc, (size_t)T * vocab, 3e-2);
  int agree = 0;
  for (int t = 0; t < T; t++)
    agree += kg_row_argmax(lc + (size_t)t * vocab, vocab) == kg_row_argmax(lg + (size_t)t * vocab, vocab);
  snprintf(name, sizeof(name), "%s top-1 agreement %d/%d (1 - fraction)", spec, agree, T);
  ct_report(name, 1.0 - (double)agree / T, 0.05, 0);

  /* perplexity of n_win windows in one batch */
  double *nc = malloc((size_t)n * sizeof(double)), *ng = malloc((size_t)n * sizeof(double));
  CHECK_OK(kg_model_forward_nll(mc, tokens, n_win, T, NULL, nc));
  CHECK_OK(kg_model_forward_nll(mg, tokens, n_win, T, NULL, ng));
  int64_t kc = 0, kgpu = 0;
  const double ppl_c = exp(mean_finite(nc, n, &kc)), ppl_g = exp(mean_finite(ng, n, &kgpu));
  snprintf(name, sizeof(name), "%s ppl %d x %d: cpu %.4f gpu %.4f (rows %lld/%lld)", spec, n_win, T, ppl_c, ppl_g,
           (long long)kgpu, (long long)kc);
  ct_report(name, kc == kgpu && kc == (int64_t)n_win * (T - 1) ? fabs(ppl_g / ppl_c - 1.0) : INFINITY, 1e-2, 0);
  /* the NLL of the first window's rows agrees with the GPU's own logits */
  double num = 0, den = 0;
  for (int t = 0; t < T - 1; t++) {
    const float *row = lg + (size_t)t * vocab;
    const double ref = kg_row_logsumexp(row, vocab) - row[tokens[t + 1]];
    num += (ng[t] - ref) * (ng[t] - ref);
    den += ref * ref;
  }
  snprintf(name, sizeof(name), "%s forward_nll vs the GPU's logits", spec);
  ct_report(name, sqrt(num / den), 2e-2, 0);

  /* JS against a perturbed copy, on both backends */
  CHECK_OK(kg_model_clone(mc, cpu, &qc));
  CHECK_OK(kg_model_clone(mc, gpu, &qg));
  if (qc && qg) {
    perturb(qc, 0);
    perturb(qg, 0);
    double *jc = malloc((size_t)n * sizeof(double)), *jg = malloc((size_t)n * sizeof(double));
    int32_t *apc = malloc((size_t)n * 4), *apg = malloc((size_t)n * 4), *aqg = malloc((size_t)n * 4);
    CHECK_OK(kg_model_forward_js(mc, qc, tokens, n_win, T, NULL, jc, apc, NULL));
    CHECK_OK(kg_model_forward_js(mg, qg, tokens, n_win, T, NULL, jg, apg, aqg));
    const double mjc = mean_finite(jc, n, NULL), mjg = mean_finite(jg, n, NULL);
    snprintf(name, sizeof(name), "%s mean JS vs perturbed copy: cpu %.3e gpu %.3e", spec, mjc, mjg);
    ct_report(name, fabs(mjg / mjc - 1.0), 0.10, 0);
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++) same += apc[i] == apg[i];
    snprintf(name, sizeof(name), "%s argmax under p, gpu vs cpu (1 - fraction)", spec);
    ct_report(name, 1.0 - (double)same / (double)n, 0.05, 0);
    CHECK_OK(kg_model_forward_js(mg, mg, tokens, n_win, T, NULL, jg, NULL, NULL));
    double mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fabs(jg[i]) > mx || isnan(jg[i]) ? (isnan(jg[i]) ? INFINITY : fabs(jg[i])) : mx;
    snprintf(name, sizeof(name), "%s JS(p, p) = 0 on the GPU", spec);
    ct_report(name, mx, 0.0, 0);
    free(jc), free(jg), free(apc), free(apg), free(aqg);
  }
  kg_model_free(qc);
  kg_model_free(qg);
  kg_model_free(mc);
  kg_model_free(mg);
  kg_tokenizer_free(tok);
  free(tokens), free(lc), free(lg), free(nc), free(ng);
}

/* The same model on a backend whose budget keeps only half the blocks
 * resident: identical results, also after editing a streamed block. */
static void check_streaming(const char *spec, int T) {
  char name[200];
  kg_backend *small = NULL;
  kg_model *mr = NULL, *ms = NULL;
  CHECK_OK(kg_cuda_backend_create(0, &small));
  CHECK_OK(kg_model_load(spec, gpu, &mr, NULL));
  if (!small || !mr) return;
  const kg_model_config *c = &mr->cfg;
  size_t used = 0, peak = 0;
  CHECK_OK(kg_backend_memory_stats(small, &used, NULL));
  int64_t blk = 0;
  for (int id = 0; id < KG_LIN_COUNT; id++) blk += (int64_t)mr->blocks[0].lin[id].rows * mr->blocks[0].lin[id].cols;
  blk *= 2;
  const int64_t glob = (int64_t)c->vocab_size * c->dim * 2 * (mr->lm_head == mr->embed ? 1 : 2);
  const int64_t rows = c->max_seq_len < 512 ? 512 : c->max_seq_len > 4096 ? 4096 : c->max_seq_len;
  const size_t staging = ((size_t)4 << 20) * 6;
  const int want_resident = c->n_layers / 2;
  const size_t budget = used + (size_t)glob + kg_workspace_bytes(c, rows) + staging + (size_t)(2 + want_resident) * blk + blk / 2;
  CHECK_OK(kg_backend_set_memory_budget(small, budget));
  CHECK_OK(kg_model_load(spec, small, &ms, NULL));
  if (!ms) {
    kg_model_free(mr);
    kg_backend_destroy(small);
    return;
  }
  int streamed = 0;
  for (int l = 0; l < c->n_layers; l++) streamed += ms->blocks[l].lin[0].dev.streamed;
  snprintf(name, sizeof(name), "%s streaming plan: %d of %d blocks streamed (want %d)", spec, streamed, c->n_layers,
           c->n_layers - want_resident);
  ct_report(name, streamed == c->n_layers - want_resident ? 0.0 : 1.0, 0.0, 0);
  const int vocab = c->vocab_size, n_win = 2;
  int32_t *tokens = make_tokens(NULL, vocab, n_win * T);
  float *a = malloc((size_t)T * vocab * 4), *b = malloc((size_t)T * vocab * 4), *a0 = malloc((size_t)T * vocab * 4);
  for (int pass = 0; pass < 2; pass++) {
    CHECK_OK(kg_model_logits(mr, tokens, T, a));
    CHECK_OK(kg_model_logits(ms, tokens, T, b));
    snprintf(name, sizeof(name), "%s streamed logits == resident logits%s", spec, pass ? " after sync" : "");
    ct_check(name, b, a, (size_t)T * vocab, 1e-6);
    double *na = malloc((size_t)n_win * T * 8), *nb = malloc((size_t)n_win * T * 8);
    CHECK_OK(kg_model_forward_nll(mr, tokens, n_win, T, NULL, na));
    CHECK_OK(kg_model_forward_nll(ms, tokens, n_win, T, NULL, nb));
    double num = 0, den = 0;
    for (int64_t i = 0; i < (int64_t)n_win * T; i++)
      if (!isnan(na[i])) num += (na[i] - nb[i]) * (na[i] - nb[i]), den += na[i] * na[i];
    snprintf(name, sizeof(name), "%s streamed NLL == resident NLL%s", spec, pass ? " after sync" : "");
    ct_report(name, isnan(num) ? INFINITY : sqrt(num / den), 1e-6, 0);
    free(na), free(nb);
    if (pass == 0) {
      memcpy(a0, a, (size_t)T * vocab * 4);
      const int l = c->n_layers - 1; /* a streamed block */
      perturb(mr, l);
      perturb(ms, l);
    } else {
      const double moved = ct_rel(a, a0, (size_t)T * vocab, NULL);
      snprintf(name, sizeof(name), "%s sync of a streamed block changes the logits (rel %.2e >= 1e-4)", spec, moved);
      ct_report(name, moved >= 1e-4 ? 0.0 : 1.0, 0.0, 0);
    }
  }
  CHECK_OK(kg_backend_memory_stats(small, NULL, &peak));
  snprintf(name, sizeof(name), "%s streaming peak %.1f MiB within the %.1f MiB budget", spec, (double)peak / (1 << 20),
           (double)budget / (1 << 20));
  ct_report(name, peak <= budget ? 0.0 : 1.0, 0.0, 0);
  free(tokens), free(a), free(b), free(a0);
  kg_model_free(ms);
  kg_model_free(mr);
  kg_backend_destroy(small);
}

/* The block workspace is sized in bytes per element by the path that asks:
 * a float32 reservation serves twice its rows at 16 bits without moving, a
 * block forward reserves no residual stream, a full forward does. */
static int count_hook(void *ctx, int layer, kg_linear_input which, const float *x, int64_t n_rows, int cols) {
  (void)layer, (void)x, (void)cols;
  if (which == KG_INPUT_ATTN) *(int64_t *)ctx += n_rows;
  return 0;
}

static void check_workspace_reserve(kg_backend *be, const char *where) {
  char name[240];
  kg_model *m = NULL;
  CHECK_OK(kg_model_load("synthetic:smollm2-135m,layers=2", be, &m, NULL));
  if (!m) return;
  const kg_model_config *c = &m->cfg;
  const int T = 64;
  const size_t n = (size_t)4 * T * c->dim;
  float *x = be->ops->alloc(be, n * sizeof(float)), *host = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) host[i] = (float)((double)(ct_next() % 2001) / 1000.0 - 1.0);
  CHECK_OK(be->ops->to_device(be, x, host, n * sizeof(float)));
  /* one sequence through both paths first: scratch that either allocates on first use */
  int64_t seen = 0;
  const int act16 = kg_model_has_act16(m);
  CHECK_OK(kg_model_block_forward(m, 0, x, 1, T, count_hook, &seen));
  if (act16) CHECK_OK(kg_model_block_forward(m, 0, x, 1, T, NULL, NULL));
  CHECK_OK(kg_model_block_forward(m, 0, x, 2, T, count_hook, &seen));
  kg_workspace *ws = m->ws;
  snprintf(name, sizeof(name), "%s: float32 block forward of %d rows: %lld workspace bytes a row-element, no residual",
           where, 2 * T, ws ? (long long)ws->row_bytes : -1LL);
  ct_report(name, ws && ws->row_bytes == 2 * T * 4 && !ws->x && seen == 3 * T ? 0.0 : 1.0, 0.0, 0);
  if (!ws) goto done;
  float *xb = ws->xb, *gate = ws->gate;
  if (act16) {
    size_t used1 = 0, used2 = 0;
    CHECK_OK(kg_backend_memory_stats(be, &used1, NULL));
    CHECK_OK(kg_model_block_forward(m, 0, x, 4, T, NULL, NULL));
    CHECK_OK(kg_backend_memory_stats(be, &used2, NULL));
    snprintf(name, sizeof(name), "%s: 16-bit forward of twice the rows fits the float32 workspace (%lld bytes allocated)",
             where, (long long)used2 - (long long)used1);
    ct_report(name, ws->xb == xb && ws->gate == gate && ws->row_bytes == 2 * T * 4 && used2 == used1 ? 0.0 : 1.0, 0.0, 0);
  }
  CHECK_OK(kg_workspace_reserve(m, 4 * T, 4, 1));
  snprintf(name, sizeof(name), "%s: a full forward's reservation grows the intermediates and adds the residual", where);
  ct_report(name, ws->row_bytes == 4 * T * 4 && ws->x && ws->x_rows == 4 * T ? 0.0 : 1.0, 0.0, 0);
done:
  free(host);
  be->ops->release(be, x);
  kg_model_free(m);
}

/* log softmax(l)[t] from the definition, in long double. */
static double oracle_nll(const float *l, int vocab, int t) {
  long double mx = l[0], s = 0;
  for (int i = 1; i < vocab; i++) mx = l[i] > mx ? l[i] : mx;
  for (int i = 0; i < vocab; i++) s += expl((long double)l[i] - mx);
  return (double)(logl(s) + mx - (long double)l[t]);
}

/* JS = 1/2 KL(P||M) + 1/2 KL(Q||M), M = (P+Q)/2, natural log, long double. */
static double oracle_js(const float *a, const float *b, int vocab) {
  long double ma = a[0], mb = b[0], sa = 0, sb = 0, js = 0;
  for (int i = 1; i < vocab; i++) ma = a[i] > ma ? a[i] : ma, mb = b[i] > mb ? b[i] : mb;
  for (int i = 0; i < vocab; i++) sa += expl(a[i] - ma), sb += expl(b[i] - mb);
  for (int i = 0; i < vocab; i++) {
    const long double p = expl(a[i] - ma) / sa, q = expl(b[i] - mb) / sb, m = (p + q) / 2;
    if (p > 0) js += 0.5L * p * logl(p / m);
    if (q > 0) js += 0.5L * q * logl(q / m);
  }
  return (double)js;
}

/* The CPU's forward_nll / forward_js against the oracles on kg_model_logits. */
static void check_cpu_head(const char *path) {
  char name[200];
  kg_model *m = NULL, *q = NULL;
  if (kg_model_load(path, cpu, &m, NULL) < 0) {
    printf("SKIP cpu head checks: %s\n", kg_error_message());
    return;
  }
  CHECK_OK(kg_model_clone(m, cpu, &q));
  if (!q) return;
  perturb(q, 1);
  const int T = 40, n_seq = 3, vocab = m->cfg.vocab_size;
  const int64_t n = (int64_t)n_seq * T;
  int32_t *tok = make_tokens(NULL, vocab, (int)n);
  uint8_t *want = malloc((size_t)n);
  for (int64_t r = 0; r < n; r++) want[r] = r % T != T - 1 && r % 5 != 2;
  double *nll = malloc((size_t)n * 8), *js = malloc((size_t)n * 8);
  int32_t *ap = malloc((size_t)n * 4), *aq = malloc((size_t)n * 4);
  float *lp = malloc((size_t)T * vocab * 4), *lq = malloc((size_t)T * vocab * 4);
  CHECK_OK(kg_model_forward_nll(m, tok, n_seq, T, want, nll));
  CHECK_OK(kg_model_forward_js(m, q, tok, n_seq, T, want, js, ap, aq));
  double en = 0, ej = 0;
  int bad = 0;
  for (int s = 0; s < n_seq; s++) {
    CHECK_OK(kg_model_logits(m, tok + (size_t)s * T, T, lp));
    CHECK_OK(kg_model_logits(q, tok + (size_t)s * T, T, lq));
    for (int t = 0; t < T; t++) {
      const int64_t r = (int64_t)s * T + t;
      const float *a = lp + (size_t)t * vocab, *b = lq + (size_t)t * vocab;
      if (!want[r]) {
        bad += !isnan(nll[r]) || !isnan(js[r]) || ap[r] != -1 || aq[r] != -1;
        continue;
      }
      const double on = oracle_nll(a, vocab, tok[r + 1]), oj = oracle_js(a, b, vocab);
      en = fmax(en, fabs(nll[r] - on) / fabs(on));
      ej = fmax(ej, fabs(js[r] - oj));
      int am = 0, bm = 0;
      for (int i = 1; i < vocab; i++) am = a[i] > a[am] ? i : am, bm = b[i] > b[bm] ? i : bm;
      bad += ap[r] != am || aq[r] != bm;
    }
  }
  /* The oracle's logits come from one sequence per pass, the functions' from
   * the whole batch: float32 GEMMs of other shapes round differently (~1e-7). */
  snprintf(name, sizeof(name), "cpu forward_nll vs float64 oracle (max rel)");
  ct_report(name, en, 1e-5, 0);
  snprintf(name, sizeof(name), "cpu forward_js vs float64 oracle (max abs)");
  ct_report(name, ej, 1e-5, 0);
  ct_report("cpu forward_js argmax and unwanted rows NaN / -1", (double)bad, 0.0, 0);
  want[T - 1] = 1;
  const int rc = kg_model_forward_nll(m, tok, n_seq, T, want, nll);
  ct_report("cpu forward_nll refuses a sequence's last row", rc == KG_ERR_ARG ? 0.0 : 1.0, 0.0, 0);
  free(tok), free(want), free(nll), free(js), free(ap), free(aq), free(lp), free(lq);
  kg_model_free(q);
  kg_model_free(m);
}

#ifdef KG_HAVE_CUDA
/* w->exact: set when the 16-bit copy holds the uploaded floats bit for bit,
 * so kg_cuda_weight_widen can stand in for the host master; refused for any
 * rounding. bf16 keeps floats whose low 16 bits are zero. */
static void check_exact_weights(void) {
  const int rows = 37, cols = 53;
  const size_t n = (size_t)rows * cols;
  float *host = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
  float *dev = gpu->ops->alloc(gpu, n * sizeof(float));
  kg_weight w;
  memset(&w, 0, sizeof(w));
  w.group = -1;
  for (size_t i = 0; i < n; i++) {
    float v = ct_normal(1.0f);
    uint32_t b;
    memcpy(&b, &v, 4);
    b &= 0xffff0000u; /* on the bf16 grid */
    memcpy(&host[i], &b, 4);
  }
  host[5] = -0.0f;
  CHECK_OK(gpu->ops->weight_upload(gpu, &w, host, rows, cols));
  ct_report("exact: bf16-grid weights are flagged exact", w.exact ? 0.0 : 1.0, 0.0, 0);
  CHECK_OK(kg_cuda_weight_widen(gpu, &w, dev));
  CHECK_OK(gpu->ops->to_host(gpu, back, dev, n * sizeof(float)));
  ct_report("exact: widened copy equals the master bit for bit", memcmp(back, host, n * sizeof(float)) ? 1.0 : 0.0, 0.0, 0);
  host[7] = nextafterf(host[7], 10.0f); /* one float off the grid */
  CHECK_OK(gpu->ops->weight_upload(gpu, &w, host, rows, cols));
  const int rc = kg_cuda_weight_widen(gpu, &w, dev);
  kg_error_clear();
  ct_report("exact: one rounded weight clears the flag, widen refuses", !w.exact && rc == KG_ERR_UNSUPPORTED ? 0.0 : 1.0,
            0.0, 0);
  host[7] = back[7];
  CHECK_OK(gpu->ops->to_device(gpu, dev, host, n * sizeof(float)));
  CHECK_OK(kg_cuda_weight_refresh(gpu, &w, dev));
  ct_report("exact: a refresh from grid values sets it again", w.exact ? 0.0 : 1.0, 0.0, 0);
  gpu->ops->weight_release(gpu, &w);
  gpu->ops->release(gpu, dev);
  free(host);
  free(back);
}
#else
static void check_exact_weights(void) {}
#endif

int main(void) {
  CHECK_OK(kg_cpu_backend_create(0, &cpu));
  ct_seed();
  char path[4096];
  snprintf(path, sizeof(path), "%s/models/stories260K/stories260K.bin", kgtest_data_dir());
  check_cpu_head(path);
  check_workspace_reserve(cpu, "cpu");
  gpu = ct_cuda_or_skip();
  if (!gpu) {
    const int rc = ct_finish("test_cuda_forward");
    kg_backend_destroy(cpu);
    return rc ? rc : 77;
  }
  check_exact_weights();
  {
    kg_backend *fresh = NULL;
    CHECK_OK(kg_cuda_backend_create(0, &fresh));
    if (fresh) check_workspace_reserve(fresh, "cuda");
    kg_backend_destroy(fresh);
  }
  compare_model(path, 256, 3);
  compare_model("synthetic:smollm2-135m,layers=6", 256, 2);
  compare_model("smollm2", 256, 2);
  check_streaming(path, 128);
  check_streaming("synthetic:smollm2-135m,layers=6", 128);
  kg_backend_destroy(gpu);
  kg_backend_destroy(cpu);
  return ct_finish("test_cuda_forward");
}
