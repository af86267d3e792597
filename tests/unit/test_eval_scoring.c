/* Scoring rules on hand-built cases: lm-eval acc/acc_norm (ties, empty and
 * multi-token choices, character length vs byte length), aggregation and
 * stderrs, SQuAD normalization/EM/F1, LLM-KICK answer and letter rules. The
 * expected values are worked out by hand from the reference definitions. */
#include <math.h>

#include "evaluate/scoring.h"
#include "io/error.h"
#include "kgtest.h"

static void test_argmax_and_ties(void) {
  double a[4] = {-3.0, -1.5, -1.5, -9.0};
  CHECK(kg_argmax_first(a, 4) == 1); /* a tie goes to the first choice (np.argmax) */
  double b[3] = {-2.0, NAN, -1.0};
  CHECK(kg_argmax_first(b, 3) == 1); /* numpy: NaN is the maximum */
  double c[1] = {-7.0};
  CHECK(kg_argmax_first(c, 1) == 0);
}

static void test_multiple_choice(void) {
  double acc, accn;
  /* lls -6 over 3 chars (-2/char) and -8 over 8 chars (-1/char): acc picks 0, acc_norm picks 1 */
  double lls[2] = {-6.0, -8.0};
  size_t chars[2] = {3, 8};
  CHECK(kg_score_multiple_choice(lls, chars, 2, 1, &acc, &accn) == 0);
  CHECK(acc == 0.0 && accn == 1.0);
  CHECK(kg_score_multiple_choice(lls, chars, 2, 0, &acc, &accn) == 0);
  CHECK(acc == 1.0 && accn == 0.0);
  /* exact ties in both: the first listed choice wins */
  double tie[3] = {-4.0, -4.0, -8.0};
  size_t tie_chars[3] = {2, 2, 4};
  kg_score_multiple_choice(tie, tie_chars, 3, 0, &acc, &accn);
  CHECK(acc == 1.0 && accn == 1.0);
  kg_score_multiple_choice(tie, tie_chars, 3, 1, &acc, &accn);
  CHECK(acc == 0.0 && accn == 0.0);
  /* normalized tie only: -4/2 == -8/4, acc_norm takes index 0 */
  kg_score_multiple_choice(tie, tie_chars, 3, 2, &acc, &accn);
  CHECK(acc == 0.0 && accn == 0.0);
  /* an empty choice: ll 0 over 0 chars is NaN, which numpy's argmax returns */
  double e[2] = {-1.0, 0.0};
  size_t e_chars[2] = {4, 0};
  kg_score_multiple_choice(e, e_chars, 2, 1, &acc, &accn);
  CHECK(acc == 1.0 && accn == 1.0);
  /* a multi-token choice just sums more terms; only the totals matter */
  double m[2] = {-0.5 - 0.25 - 0.125, -1.0};
  size_t m_chars[2] = {9, 3};
  kg_score_multiple_choice(m, m_chars, 2, 0, &acc, &accn);
  CHECK(acc == 1.0 && accn == 1.0);
  /* character length, not bytes: "café" is 4 characters and 5 bytes */
  CHECK(kg_utf8_length("café") == 4);
  CHECK(kg_utf8_length("日本語") == 3);
  CHECK(kg_utf8_length("") == 0);
  CHECK(kg_utf8_length("a\xff" "b") == 3); /* an invalid byte counts once */
  /* "café" is 4 characters in 5 bytes, "cafes" 5 in 5: per character -4.4/4 = -1.1
   * loses to -5.0/5 = -1.0, while per byte -0.88 would beat -1.0 */
  double u[2] = {-4.4, -5.0};
  size_t u_chars[2] = {kg_utf8_length("café"), kg_utf8_length("cafes")};
  kg_score_multiple_choice(u, u_chars, 2, 1, &acc, &accn);
  CHECK(accn == 1.0);
  double w[2] = {-5.0, -3.9};
  size_t w_chars[2] = {kg_utf8_length("日本"), kg_utf8_length("ab")};
  /* chars: -2.5 vs -1.95 -> 1; bytes (6, 2): -0.83 vs -1.95 -> 0 */
  kg_score_multiple_choice(w, w_chars, 2, 1, &acc, &accn);
  CHECK(accn == 1.0);
}

static void test_aggregates(void) {
  double x[4] = {1, 0, 1, 1};
  CHECK_NEAR(kg_mean(x, 4), 0.75, 1e-15);
  /* sample variance 0.25, stderr sqrt(0.25)/sqrt(4) = 0.25 */
  CHECK_NEAR(kg_mean_stderr(x, 4), 0.25, 1e-15);
  CHECK(isnan(kg_mean_stderr(x, 1)));
  double ll[3] = {-1.0, -2.0, -3.0};
  CHECK_NEAR(kg_perplexity_of_loglik(ll, 3), exp(2.0), 1e-12);
  /* pooled: sizes 10 and 30, stderrs 0.1 and 0.05:
   * var = (9*0.01*10 + 29*0.0025*30) / (40 - 2) = (0.9 + 2.175) / 38; / 40, sqrt */
  double se[2] = {0.1, 0.05};
  size_t sz[2] = {10, 30};
  CHECK_NEAR(kg_pooled_stderr(se, sz, 2), sqrt((0.9 + 2.175) / 38.0 / 40.0), 1e-15);
  /* a constant sample has no bootstrap spread */
  double c[5] = {-2, -2, -2, -2, -2};
  CHECK_NEAR(kg_bootstrap_stderr_perplexity(c, 5, 2000), 0.0, 1e-12);
  CHECK(kg_bootstrap_stderr_perplexity(ll, 3, 2000) > 0.0);
}

static void test_squad(void) {
  char *n = kg_squad_normalize("  The Quick, brown fox!  ");
  CHECK_STR(n, "quick brown fox");
  free(n);
  n = kg_squad_normalize("A theory of an apple: the end");
  CHECK_STR(n, "theory of apple end"); /* whole words only: "theory" keeps its "the" */
  free(n);
  n = kg_squad_normalize("don't-stop_me");
  CHECK_STR(n, "dontstopme");
  free(n);
  n = kg_squad_normalize("Ünïcode ÉCOLE");
  CHECK_STR(n, "ünïcode école");
  free(n);
  CHECK(kg_squad_exact_match("The Beatles", "beatles"));
  CHECK(!kg_squad_exact_match("Beatles band", "beatles"));
  CHECK(kg_squad_exact_match("", "the a an"));
  /* F1: pred "new york city", truth "york city hall": 2 common; p 2/3, r 2/3 */
  CHECK_NEAR(kg_squad_f1("New York City", "York City Hall"), 2.0 / 3.0, 1e-12);
  /* repeated tokens count by multiplicity: pred "x b b", truth "b b b c" -> 2 in common */
  CHECK_NEAR(kg_squad_f1("x b b", "b b b c"), 2 * (2.0 / 3) * (2.0 / 4) / (2.0 / 3 + 2.0 / 4), 1e-12);
  CHECK(kg_squad_f1("paris", "london") == 0.0);
  CHECK(kg_squad_f1("", "") == 0.0); /* SQuAD v1.1: no common tokens -> 0 */
  const char *truths[3] = {"Onion", "Allium cepa", "Onions"};
  double em, f1;
  kg_squad_max_over("an allium cepa.", truths, 3, &em, &f1);
  CHECK(em == 1.0 && f1 == 1.0);
  kg_squad_max_over("red onion", truths, 3, &em, &f1);
  CHECK(em == 0.0);
  CHECK_NEAR(f1, 2 * 0.5 * 1.0 / 1.5, 1e-12);
}

static void test_llmkick(void) {
  const char *ans[2] = {"dodie smith", "Dodie Smith (author)"};
  CHECK(kg_llmkick_answer_match("The answer is  DodieSmith, I think", ans, 2));
  CHECK(!kg_llmkick_answer_match("The answer is Dodie", ans, 2));
  const char *gold[1] = {"goldeneye"};
  CHECK(kg_llmkick_answer_match(" Golden Eye (1995)", gold, 1)); /* spaces removed on both sides */
  CHECK(kg_llmkick_letter_match(" B", 'B'));
  CHECK(kg_llmkick_letter_match("B", 'B'));
  CHECK(!kg_llmkick_letter_match(" B.", 'B')); /* the last character must be the letter */
  CHECK(!kg_llmkick_letter_match("", 'A'));   /* an empty token leaves the prompt's ':' last */
  CHECK(!kg_llmkick_letter_match(" b", 'B'));
}

int main(void) {
  test_argmax_and_ties();
  test_multiple_choice();
  test_aggregates();
  test_squad();
  test_llmkick();
  return kgtest_finish("test_eval_scoring");
}
