/* A minimal test harness: CHECK records a failure and goes on, so one run
 * reports every broken expectation; main returns the failure count. */
#ifndef KG_TESTS_KGTEST_H
#define KG_TESTS_KGTEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int kgtest_failures;
static int kgtest_checks;

#define CHECK(cond)                                                            \
  do {                                                                         \
    kgtest_checks++;                                                           \
    if (!(cond)) {                                                             \
      kgtest_failures++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_MSG(cond, ...)                                                   \
  do {                                                                         \
    kgtest_checks++;                                                           \
    if (!(cond)) {                                                             \
      kgtest_failures++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
    }                                                                          \
  } while (0)

#define CHECK_OK(expr)                                                         \
  do {                                                                         \
    int kgtest_rc_ = (expr);                                                   \
    CHECK_MSG(kgtest_rc_ == 0, "%s returned %d: %s", #expr, kgtest_rc_,        \
              kg_error_message());                                             \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
  do {                                                                         \
    double kgtest_a_ = (double)(a), kgtest_b_ = (double)(b);                   \
    CHECK_MSG(fabs(kgtest_a_ - kgtest_b_) <= (tol), "%s=%.9g %s=%.9g tol=%g",  \
              #a, kgtest_a_, #b, kgtest_b_, (double)(tol));                    \
  } while (0)

#define CHECK_STR(a, b)                                                        \
  do {                                                                         \
    const char *kgtest_sa_ = (a), *kgtest_sb_ = (b);                           \
    CHECK_MSG(kgtest_sa_ && kgtest_sb_ && strcmp(kgtest_sa_, kgtest_sb_) == 0, \
              "'%s' != '%s'", kgtest_sa_ ? kgtest_sa_ : "(null)",              \
              kgtest_sb_ ? kgtest_sb_ : "(null)");                             \
  } while (0)

/* Data directory for tests: $KG_DATA_DIR, else ../shared/data beside the source tree. */
static inline const char *kgtest_data_dir(void) {
  const char *d = getenv("KG_DATA_DIR");
  return d && *d ? d : KG_SOURCE_DIR "/../shared/data";
}

static inline int kgtest_finish(const char *name) {
  if (kgtest_failures)
    fprintf(stderr, "%s: %d of %d checks FAILED\n", name, kgtest_failures, kgtest_checks);
  else
    fprintf(stderr, "%s: all %d checks passed\n", name, kgtest_checks);
  return kgtest_failures ? 1 : 0;
}

#endif
