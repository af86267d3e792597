/* Calibration statistics summed across MPI ranks: each rank accumulates a
 * disjoint shard of the calibration sequences, kg_stats_allreduce sums them,
 * and the result must equal one process accumulating everything (up to
 * float64 summation order). Run by ctest as one process and by
 * tests/py/test_stats_mpi.py under `mpirun -np 3`. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>

#include "compress/stats.h"
#include "io/error.h"
#include "kgtest.h"

enum { D = 37, SEQS = 11, TOKENS = 23 };

/* Same numbers on every rank without sharing them. */
static float lcg_normalish(uint64_t *s) {
  double acc = 0.0;
  for (int i = 0; i < 4; i++) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    acc += (double)(*s >> 11) / 9007199254740992.0;
  }
  return (float)((acc - 2.0) * 1.7);
}

static double max_rel_diff(const double *a, const double *b, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (fabs(a[i] - b[i]) > num) num = fabs(a[i] - b[i]);
    if (fabs(b[i]) > den) den = fabs(b[i]);
  }
  return den > 0 ? num / den : num;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  static float X[SEQS * TOKENS * D];
  uint64_t seed = 42;
  for (int i = 0; i < SEQS * TOKENS * D; i++) X[i] = lcg_normalish(&seed) * (1.0f + (float)(i % D) / 4.0f);

  kg_linear_stats part, full;
  CHECK_OK(kg_stats_init(&part, D, 1));
  CHECK_OK(kg_stats_init(&full, D, 1));
  for (int s = 0; s < SEQS; s++) {
    const float *seq = X + (int64_t)s * TOKENS * D;
    CHECK_OK(kg_stats_accumulate(&full, seq, TOKENS, 1));
    if (s % size == rank) CHECK_OK(kg_stats_accumulate(&part, seq, TOKENS, 1));
  }
  if (size > 1) CHECK(part.n_samples < full.n_samples); /* a shard really is partial */
  CHECK_OK(kg_stats_allreduce(&part, MPI_COMM_WORLD));
  CHECK(part.n_samples == SEQS && part.n_tokens == (int64_t)SEQS * TOKENS);

  static double Hp[D * D], Hf[D * D];
  double sp[D], sf[D];
  CHECK_OK(kg_stats_hessian(&part, Hp));
  CHECK_OK(kg_stats_hessian(&full, Hf));
  CHECK_OK(kg_stats_scaler_row(&part, sp));
  CHECK_OK(kg_stats_scaler_row(&full, sf));
  const double dh = max_rel_diff(Hp, Hf, D * D), ds = max_rel_diff(sp, sf, D);
  CHECK_MSG(dh < 1e-14, "hessian differs by %.3g", dh);
  CHECK_MSG(ds < 1e-14, "scaler_row differs by %.3g", ds);
  if (rank == 0) fprintf(stderr, "ranks %d: hessian rel diff %.3g, scaler_row rel diff %.3g\n", size, dh, ds);

  /* Every rank learns about a shape mismatch instead of hanging. */
  if (size > 1) {
    kg_linear_stats odd;
    CHECK_OK(kg_stats_init(&odd, rank == 0 ? 5 : 6, 0));
    CHECK(kg_stats_allreduce(&odd, MPI_COMM_WORLD) == KG_ERR_ARG);
    kg_stats_free(&odd);
  }
  CHECK(kg_stats_allreduce(&part, MPI_COMM_NULL) == KG_OK);

  kg_stats_free(&part);
  kg_stats_free(&full);
  int failures = kgtest_failures, total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Finalize();
  if (rank == 0) kgtest_failures = total;
  return kgtest_finish("test_stats_mpi");
}
