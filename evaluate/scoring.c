#include "evaluate/scoring.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/pyrandom.h"
#include "io/unicode.h"

int kg_argmax_first(const double *x, int n) {
  int best = 0;
  for (int i = 0; i < n; i++) {
    if (isnan(x[i])) return i;
    if (x[i] > x[best]) best = i;
  }
  return best;
}

size_t kg_utf8_length(const char *s) {
  size_t n = 0, len = strlen(s);
  for (size_t i = 0; i < len; n++) {
    size_t k = kg_utf8_decode((const unsigned char *)s + i, len - i, NULL);
    i += k ? k : 1;
  }
  return n;
}

int kg_score_multiple_choice(const double *lls, const size_t *choice_chars, int n_choices, int gold, double *acc,
                             double *acc_norm) {
  int pred = kg_argmax_first(lls, n_choices);
  if (acc) *acc = pred == gold ? 1.0 : 0.0;
  if (acc_norm) {
    double stack[16];
    double *norm = n_choices > 16 ? malloc((size_t)n_choices * sizeof(*norm)) : NULL;
    double *v = n_choices <= 16 ? stack : norm;
    if (!v) { /* allocation failure: fall back to a slower in-place scan */
      int best = 0;
      for (int i = 1; i < n_choices; i++)
        if (lls[i] / (double)choice_chars[i] > lls[best] / (double)choice_chars[best]) best = i;
      *acc_norm = best == gold ? 1.0 : 0.0;
    } else {
      for (int i = 0; i < n_choices; i++) v[i] = lls[i] / (double)choice_chars[i];
      *acc_norm = kg_argmax_first(v, n_choices) == gold ? 1.0 : 0.0;
    }
    free(norm);
  }
  return pred;
}

double kg_mean(const double *x, size_t n) {
  if (n == 0) return NAN;
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += x[i];
  return s / (double)n;
}

double kg_mean_stderr(const double *x, size_t n) {
  if (n < 2) return NAN;
  double mu = kg_mean(x, n), ss = 0.0;
  for (size_t i = 0; i < n; i++) ss += (x[i] - mu) * (x[i] - mu);
  return sqrt(ss / (double)(n - 1)) / sqrt((double)n);
}

double kg_perplexity_of_loglik(const double *ll, size_t n) { return exp(-kg_mean(ll, n)); }

double kg_bootstrap_stderr_perplexity(const double *ll, size_t n, int iters) {
  if (n == 0 || iters <= 0) return NAN;
  int chunk = iters < 1000 ? iters : 1000, n_chunks = iters / chunk;
  size_t total = (size_t)n_chunks * (size_t)chunk;
  double *res = malloc(total * sizeof(*res));
  if (!res) return NAN;
  kg_pyrand r;
  double dn = (double)n;
  size_t w = 0;
  for (int c = 0; c < n_chunks; c++) {
    kg_pyrand_seed(&r, (uint64_t)c);
    for (int j = 0; j < chunk; j++) {
      double s = 0.0;
      for (size_t i = 0; i < n; i++) s += ll[(size_t)floor(kg_pyrand_random(&r) * dn)];
      res[w++] = exp(-(s / dn));
    }
  }
  double se = total >= 2 ? kg_mean_stderr(res, total) * sqrt((double)total) : NAN; /* sample stddev */
  free(res);
  return se;
}

double kg_pooled_stderr(const double *stderrs, const size_t *sizes, size_t k) {
  double num = 0.0, total = 0.0;
  for (size_t i = 0; i < k; i++) {
    num += ((double)sizes[i] - 1.0) * stderrs[i] * stderrs[i] * (double)sizes[i];
    total += (double)sizes[i];
  }
  if (total - (double)k <= 0.0) return NAN;
  return sqrt(num / (total - (double)k) / total);
}

/* ---- Unicode helpers (the subset SQuAD/LLM-KICK normalization touches) ---- */

static uint32_t lower_cp(uint32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
  if ((c >= 0xc0 && c <= 0xde && c != 0xd7)) return c + 32;
  if ((c >= 0x100 && c <= 0x12f) || (c >= 0x132 && c <= 0x137)) return c | 1u;
  if (c == 0x130) return 'i'; /* Python gives "i" + U+0307 */
  if (c >= 0x139 && c <= 0x148) return (c & 1u) ? c + 1 : c;
  if (c >= 0x14a && c <= 0x177) return c | 1u;
  if (c == 0x178) return 0xff;
  if (c >= 0x179 && c <= 0x17e) return (c & 1u) ? c + 1 : c;
  if (c >= 0x391 && c <= 0x3ab && c != 0x3a2) return c + 32;
  if (c >= 0x410 && c <= 0x42f) return c + 32;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  return c;
}

static int space_cp(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Python str.isalnum() (what \w matches once '_' is gone), approximated for
 * non-ASCII by excluding the symbol and punctuation blocks. */
static int word_cp(uint32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c >= 0x80 && c <= 0xbf) return c == 0xaa || c == 0xb2 || c == 0xb3 || c == 0xb5 || c == 0xb9 || c == 0xba ||
                                     (c >= 0xbc && c <= 0xbe);
  if (c == 0xd7 || c == 0xf7) return 0;
  if (space_cp(c)) return 0;
  if ((c >= 0x2000 && c <= 0x2bff) || (c >= 0x3000 && c <= 0x303f) || (c >= 0xfe00 && c <= 0xfe0f) ||
      (c >= 0xff00 && c <= 0xff0f) || (c >= 0x1f000 && c <= 0x1faff))
    return 0;
  return 1;
}

static int ascii_punct(uint32_t c) { return c < 0x80 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", (int)c) && c; }

typedef struct cps {
  uint32_t *v;
  size_t n;
} cps;

/* Decodes UTF-8 (invalid bytes become U+FFFD, as decoding with "replace"). */
static int decode(const char *s, cps *out) {
  size_t len = strlen(s);
  out->v = malloc((len + 1) * sizeof(*out->v));
  out->n = 0;
  if (!out->v) return -1;
  for (size_t i = 0; i < len;) {
    uint32_t c = 0xfffd;
    size_t k = kg_utf8_decode((const unsigned char *)s + i, len - i, &c);
    if (!k) {
      k = 1;
      c = 0xfffd;
    }
    out->v[out->n++] = c;
    i += k;
  }
  return 0;
}

static char *encode(const uint32_t *v, size_t n) {
  char *s = malloc(n * 4 + 1);
  if (!s) return NULL;
  size_t w = 0;
  for (size_t i = 0; i < n; i++) w += kg_utf8_encode(v[i], (unsigned char *)s + w);
  s[w] = '\0';
  return s;
}

static int is_article(const uint32_t *v, size_t n) {
  return (n == 1 && v[0] == 'a') || (n == 2 && v[0] == 'a' && v[1] == 'n') ||
         (n == 3 && v[0] == 't' && v[1] == 'h' && v[2] == 'e');
}

char *kg_squad_normalize(const char *s) {
  cps a;
  if (decode(s, &a) < 0) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < a.n; i++) { /* lower, then remove punctuation */
    uint32_t c = lower_cp(a.v[i]);
    if (!ascii_punct(c)) a.v[n++] = c;
  }
  /* \b(a|an|the)\b -> ' ': a maximal run of word characters equal to an article */
  for (size_t i = 0; i < n;) {
    if (!word_cp(a.v[i])) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < n && word_cp(a.v[j])) j++;
    if (is_article(a.v + i, j - i)) {
      a.v[i] = ' ';
      memmove(a.v + i + 1, a.v + j, (n - j) * sizeof(*a.v));
      n -= j - i - 1;
      j = i + 1;
    }
    i = j;
  }
  /* ' '.join(text.split()) */
  size_t w = 0;
  for (size_t i = 0; i < n;) {
    while (i < n && space_cp(a.v[i])) i++;
    if (i >= n) break;
    if (w) a.v[w++] = ' ';
    while (i < n && !space_cp(a.v[i])) a.v[w++] = a.v[i++];
  }
  char *r = encode(a.v, w);
  free(a.v);
  return r;
}

int kg_squad_exact_match(const char *prediction, const char *truth) {
  char *p = kg_squad_normalize(prediction), *t = kg_squad_normalize(truth);
  int eq = p && t && !strcmp(p, t);
  free(p);
  free(t);
  return eq;
}

/* Splits a normalized string (single spaces) into token start pointers. */
static size_t split_tokens(char *s, char ***out) {
  size_t n = 0, cap = 8;
  char **v = malloc(cap * sizeof(*v));
  if (!v) return (*out = NULL, 0);
  for (char *p = strtok(s, " "); p; p = strtok(NULL, " ")) {
    if (n == cap) {
      char **g = realloc(v, cap * 2 * sizeof(*v));
      if (!g) break;
      v = g;
      cap *= 2;
    }
    v[n++] = p;
  }
  *out = v;
  return n;
}

double kg_squad_f1(const char *prediction, const char *truth) {
  char *p = kg_squad_normalize(prediction), *t = kg_squad_normalize(truth);
  char **pt = NULL, **tt = NULL;
  double f1 = 0.0;
  if (!p || !t) goto done;
  size_t np = split_tokens(p, &pt), nt = split_tokens(t, &tt);
  if (!pt || !tt || np == 0 || nt == 0) goto done;
  /* Counter(pred) & Counter(truth): each truth token matches at most once */
  unsigned char *used = calloc(nt, 1);
  if (!used) goto done;
  size_t same = 0;
  for (size_t i = 0; i < np; i++)
    for (size_t j = 0; j < nt; j++)
      if (!used[j] && !strcmp(pt[i], tt[j])) {
        used[j] = 1;
        same++;
        break;
      }
  free(used);
  if (same) {
    double prec = (double)same / (double)np, rec = (double)same / (double)nt;
    f1 = 2.0 * prec * rec / (prec + rec);
  }
done:
  free(pt);
  free(tt);
  free(p);
  free(t);
  return f1;
}

void kg_squad_max_over(const char *prediction, const char *const *truths, int n, double *em, double *f1) {
  double best_em = 0.0, best_f1 = 0.0;
  for (int i = 0; i < n; i++) {
    double e = kg_squad_exact_match(prediction, truths[i]), f = kg_squad_f1(prediction, truths[i]);
    if (e > best_em) best_em = e;
    if (f > best_f1) best_f1 = f;
  }
  if (em) *em = best_em;
  if (f1) *f1 = best_f1;
}

/* strip(), remove " ", lower() as LLM-KICK's validate_response does. */
static char *llmkick_norm(const char *s) {
  cps a;
  if (decode(s, &a) < 0) return NULL;
  size_t lo = 0, hi = a.n;
  while (lo < hi && space_cp(a.v[lo])) lo++;
  while (hi > lo && space_cp(a.v[hi - 1])) hi--;
  size_t w = 0;
  for (size_t i = lo; i < hi; i++)
    if (a.v[i] != ' ') a.v[w++] = lower_cp(a.v[i]);
  char *r = encode(a.v, w);
  free(a.v);
  return r;
}

int kg_llmkick_answer_match(const char *output, const char *const *answers, int n) {
  char *o = llmkick_norm(output);
  int hit = 0;
  for (int i = 0; o && i < n && !hit; i++) {
    char *a = llmkick_norm(answers[i]);
    hit = a && strstr(o, a) != NULL;
    free(a);
  }
  free(o);
  return hit;
}

int kg_llmkick_letter_match(const char *token_text, char letter) {
  cps a;
  if (!token_text || decode(token_text, &a) < 0) return 0;
  int hit = a.n > 0 && a.v[a.n - 1] == (uint32_t)(unsigned char)letter;
  free(a.v);
  return hit;
}
