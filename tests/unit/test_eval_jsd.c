/* JS divergence over windows and prompt batches on stories260K: a clone
 * against the original gives exactly 0 and full top-1 agreement; a clone
 * with perturbed weights gives per-token values equal to recomputing each
 * row from kg_model_logits of both models, and mean/median/p95/max/top-1
 * equal to statistics taken here from those rows. Row-level numerics are
 * checked against NumPy in tests/py/test_eval_jsd.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate/jsd.h"
#include "io/error.h"
#include "kgtest.h"

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *s, size_t n, double q) {
  double idx = q * (double)(n - 1);
  size_t lo = (size_t)floor(idx), hi = (size_t)ceil(idx);
  return s[lo] + (s[hi] - s[lo]) * (idx - (double)lo);
}

static int argmax_row(const float *r, int V) {
  int b = 0;
  for (int v = 1; v < V; v++)
    if (r[v] > r[b]) b = v;
  return b;
}

int main(void) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/models/stories260K/stories260K.bin", kgtest_data_dir());
  kg_backend *be = NULL;
  kg_model *m = NULL, *c = NULL;
  CHECK_OK(kg_backend_create("cpu", 1, &be));
  CHECK_OK(kg_model_load(path, be, &m, NULL));
  if (!m) return kgtest_finish("test_eval_jsd");
  CHECK_OK(kg_model_clone(m, be, &c));
  if (!c) return kgtest_finish("test_eval_jsd");
  int V = m->cfg.vocab_size, seqlen = 48, windows = 3;
  int64_t n = (int64_t)seqlen * windows + 17; /* a tail that is dropped */
  int32_t *tokens = malloc((size_t)n * sizeof(*tokens));
  srand(7);
  for (int64_t i = 0; i < n; i++) tokens[i] = 3 + rand() % (V - 3);

  kg_js_result r;
  CHECK_OK(kg_js_divergence(m, c, tokens, n, seqlen, 0, &r));
  CHECK(r.n_windows == windows && r.n_tokens == (int64_t)seqlen * windows);
  CHECK(r.mean == 0.0 && r.max == 0.0 && r.median == 0.0 && r.top1_agree == 1.0);

  /* perturb the clone: scale one block's up-projection */
  kg_linear *up = &c->blocks[1].lin[KG_LIN_UP];
  for (int i = 0; i < up->rows * up->cols; i++) up->w[i] *= (i % 3) ? 1.3f : -0.7f;
  CHECK_OK(kg_model_sync(c, 1));
  CHECK_OK(kg_js_divergence(m, c, tokens, n, seqlen, 2, &r));
  CHECK(r.n_windows == 2 && r.n_tokens == 2 * seqlen);
  size_t cnt = (size_t)(2 * seqlen);
  double *js = malloc(cnt * sizeof(*js));
  float *la = malloc((size_t)seqlen * (size_t)V * sizeof(float)), *lb = malloc((size_t)seqlen * (size_t)V * sizeof(float));
  double sum = 0.0;
  int agree = 0;
  for (int w = 0; w < 2; w++) {
    CHECK_OK(kg_model_logits(m, tokens + w * seqlen, seqlen, la));
    CHECK_OK(kg_model_logits(c, tokens + w * seqlen, seqlen, lb));
    for (int t = 0; t < seqlen; t++) {
      const float *pa = la + (size_t)t * (size_t)V, *pb = lb + (size_t)t * (size_t)V;
      double v = kg_js_logits(pa, pb, V);
      js[w * seqlen + t] = v;
      sum += v;
      agree += argmax_row(pa, V) == argmax_row(pb, V);
    }
  }
  qsort(js, cnt, sizeof(*js), cmp_d);
  fprintf(stderr, "perturbed: mean %.6f median %.6f p95 %.6f max %.6f top1 %.3f\n", r.mean, r.median, r.p95, r.max,
          r.top1_agree);
  CHECK(r.mean > 1e-4);
  CHECK_NEAR(r.mean, sum / (double)cnt, 1e-6);
  CHECK_NEAR(r.median, pct(js, cnt, 0.5), 1e-6);
  CHECK_NEAR(r.p95, pct(js, cnt, 0.95), 1e-6);
  CHECK_NEAR(r.max, js[cnt - 1], 1e-6);
  CHECK_NEAR(r.top1_agree, (double)agree / (double)cnt, 1e-12);
  CHECK(r.max <= log(2.0));

  /* prompt batches: two sequences of different length, both models */
  const int32_t *seqs[2] = {tokens, tokens + 100};
  int lens[2] = {seqlen, 9};
  kg_js_result rs;
  CHECK_OK(kg_js_divergence_seqs(m, c, seqs, lens, 2, 2, &rs));
  CHECK(rs.n_tokens == seqlen + 9 && rs.n_windows == 2);
  double s2 = 0.0;
  CHECK_OK(kg_model_logits(m, tokens + 100, 9, la));
  CHECK_OK(kg_model_logits(c, tokens + 100, 9, lb));
  for (int t = 0; t < 9; t++) s2 += kg_js_logits(la + (size_t)t * V, lb + (size_t)t * V, V);
  CHECK_OK(kg_model_logits(m, tokens, seqlen, la));
  CHECK_OK(kg_model_logits(c, tokens, seqlen, lb));
  for (int t = 0; t < seqlen; t++) s2 += kg_js_logits(la + (size_t)t * V, lb + (size_t)t * V, V);
  CHECK_NEAR(rs.mean, s2 / (seqlen + 9), 1e-6);

  /* errors */
  CHECK(kg_js_divergence(m, c, tokens, 10, seqlen, 0, &r) == KG_ERR_ARG);
  CHECK(kg_js_divergence(m, c, tokens, n, 0, 0, &r) == KG_ERR_ARG);

  free(js);
  free(la);
  free(lb);
  free(tokens);
  kg_model_free(c);
  kg_model_free(m);
  kg_backend_destroy(be);
  return kgtest_finish("test_eval_jsd");
}
