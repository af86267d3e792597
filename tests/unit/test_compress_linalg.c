/* compress/linalg.h and the solvers' invariants that need no oracle:
 * U^T U H = I for the inverse Cholesky factor, error codes for matrices that
 * are not positive definite, a zero-sparsity SparseGPT solve that must leave
 * W untouched, and argument checking across the compress API. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/gptq.h"
#include "compress/linalg.h"
#include "compress/masks.h"
#include "compress/owl.h"
#include "compress/quant.h"
#include "compress/sparsegpt.h"
#include "compress/stats.h"
#include "compress/wanda.h"
#include "io/error.h"
#include "kgtest.h"

enum { N = 70, ROWS = 24 };

static double urand(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*s >> 11) / 9007199254740992.0 - 0.5;
}

/* H = A A^T / k + 0.1 I: symmetric positive definite. */
static void spd(double *H, int n, uint64_t seed) {
  const int k = 2 * n;
  double *A = malloc(sizeof(double) * (size_t)(n * k));
  for (int i = 0; i < n * k; i++) A[i] = urand(&seed);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int t = 0; t < k; t++) s += A[i * k + t] * A[j * k + t];
      H[i * n + j] = s / k + (i == j ? 0.1 : 0.0);
    }
  free(A);
}

static void test_inverse_factor(void) {
  static double H[N * N], U[N * N], L[N * N];
  spd(H, N, 7);
  memcpy(U, H, sizeof H);
  CHECK_OK(kg_linalg_upper_chol_of_inverse(U, N));
  double worst = 0, below = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      if (j < i) below += fabs(U[i * N + j]);
      /* (U^T U H)_ij */
      double v = 0;
      for (int a = 0; a < N; a++) {
        double uu = 0;
        for (int b = 0; b <= (a < i ? a : i); b++) uu += U[b * N + i] * U[b * N + a];
        v += uu * H[a * N + j];
      }
      worst = fmax(worst, fabs(v - (i == j)));
    }
  CHECK_MSG(worst < 1e-10, "U^T U H - I max %.3g", worst);
  CHECK(below == 0.0);
  for (int i = 0; i < N; i++) CHECK(U[i * N + i] > 0);

  memcpy(L, H, sizeof H);
  CHECK_OK(kg_linalg_cholesky_lower(L, N));
  double lw = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j <= i; j++) {
      double v = 0;
      for (int t = 0; t <= j; t++) v += L[i * N + t] * L[j * N + t];
      lw = fmax(lw, fabs(v - H[i * N + j]));
    }
  CHECK_MSG(lw < 1e-12, "L L^T - H max %.3g", lw);

  H[5 * N + 5] = -1.0; /* indefinite */
  memcpy(U, H, sizeof H);
  CHECK(kg_linalg_upper_chol_of_inverse(U, N) == KG_ERR_NUMERIC);
  CHECK(strstr(kg_error_message(), "not positive definite") != NULL);
  CHECK(kg_linalg_cholesky_lower(U, 0) == KG_ERR_ARG);
}

static void test_solvers(void) {
  static double H[N * N];
  static float W[ROWS * N], W0[ROWS * N];
  spd(H, N, 3);
  uint64_t s = 99;
  for (int i = 0; i < ROWS * N; i++) W0[i] = (float)urand(&s);

  /* Nothing to prune and nothing to quantize: every error is zero. */
  kg_sparsegpt_opts o;
  kg_sparsegpt_opts_default(&o, 0.0);
  kg_sparsegpt_result r;
  memcpy(W, W0, sizeof W);
  CHECK_OK(kg_sparsegpt_prune(W, ROWS, N, H, &o, &r));
  CHECK(memcmp(W, W0, sizeof W) == 0 && r.loss == 0.0 && r.masked == 0);

  /* 2:4 on a width that is a multiple of 4 but not of the blocksize. */
  o.prune_n = 2;
  o.prune_m = 4;
  o.blocksize = 16;
  static float W2[ROWS * 72];
  static double H2[72 * 72];
  spd(H2, 72, 5);
  for (int i = 0; i < ROWS * 72; i++) W2[i] = (float)urand(&s);
  CHECK_OK(kg_sparsegpt_prune(W2, ROWS, 72, H2, &o, &r));
  int bad = 0;
  for (int i = 0; i < ROWS * 72; i += 4) bad += (W2[i] == 0) + (W2[i + 1] == 0) + (W2[i + 2] == 0) + (W2[i + 3] == 0) != 2;
  CHECK(bad == 0 && r.masked == ROWS * 72 / 2);
  o.blocksize = 18; /* not a multiple of M */
  CHECK(kg_sparsegpt_prune(W2, ROWS, 72, H2, &o, &r) == KG_ERR_ARG);

  /* GPTQ at 8 bits barely moves the weights. */
  kg_gptq_opts g;
  kg_gptq_opts_default(&g, 8);
  memcpy(W, W0, sizeof W);
  CHECK_OK(kg_gptq_quantize(W, ROWS, N, H, &g, NULL, NULL, NULL, NULL));
  double dmax = 0;
  for (int i = 0; i < ROWS * N; i++) dmax = fmax(dmax, fabs(W[i] - W0[i]));
  CHECK_MSG(dmax < 0.02, "8-bit GPTQ moved a weight by %.3g", dmax);
  CHECK(kg_gptq_quantize(W, ROWS, N, NULL, &g, NULL, NULL, NULL, NULL) == KG_ERR_ARG);
  CHECK(kg_gptq_quantize(W, ROWS, N, H, NULL, NULL, NULL, NULL, NULL) == KG_ERR_ARG);
}

static void test_argument_errors(void) {
  float W[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  double sc[4] = {1, 1, 1, 1};
  uint8_t m[8];
  kg_prune_opts p = {.sparsity = 0.5};
  CHECK(kg_wanda_mask(W, 2, 4, sc, NULL, m, NULL) == KG_ERR_ARG);
  CHECK(kg_wanda_mask(W, 0, 4, sc, &p, m, NULL) == KG_ERR_ARG);
  CHECK(kg_magnitude_prune(W, 2, -4, &p) == KG_ERR_ARG);
  kg_quant_opts q = {.bits = 4, .group_size = 9};
  CHECK(kg_rtn_quantize(W, 2, 4, &q, NULL, NULL) == KG_ERR_ARG);
  CHECK(strstr(kg_error_message(), "group size 9") != NULL);
  double ratio;
  CHECK(kg_owl_outlier_ratio(NULL, 1, 5.0, &ratio) == KG_ERR_ARG);
  kg_owl_linear lin = {W, 2, 4, sc};
  CHECK(kg_owl_outlier_ratio(&lin, 1, 0.0, &ratio) == KG_ERR_ARG);
  CHECK_OK(kg_owl_outlier_ratio(&lin, 1, 1.5, &ratio));
  CHECK_NEAR(ratio, 25.0, 1e-12); /* mean 4.5, only 7 and 8 exceed 6.75 */
  kg_linear_stats st;
  CHECK(kg_stats_init(&st, -3, 0) == KG_ERR_ARG);
  CHECK_OK(kg_stats_init(&st, 4, 1));
  CHECK(kg_stats_accumulate(&st, NULL, 3, 1) == KG_ERR_ARG);
  double err;
  CHECK(kg_recon_error(W, W, 2, 4, NULL, &err) == KG_ERR_ARG);
  kg_stats_free(&st);
}

int main(void) {
  test_inverse_factor();
  test_solvers();
  test_argument_errors();
  return kgtest_finish("test_compress_linalg");
}
