/* Prompt text per document, as lm-evaluation-harness's fewshot_context and
 * construct_requests assemble it (target_delimiter " ", fewshot_delimiter
 * "\n\n"), or as LLM-KICK's scripts write it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/tasks_internal.h"

#define FREEBASE_PREFIX "Please give answer to this question: "
#define FREEBASE_SUFFIX "\nThe answer is "

typedef struct strbuf {
  char *p;
  size_t len, cap;
  int failed;
} strbuf;

static void sb_add(strbuf *b, const char *s) {
  if (b->failed || !s) return;
  size_t n = strlen(s);
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *g = realloc(b->p, cap);
    if (!g) {
      b->failed = 1;
      return;
    }
    b->p = g;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n + 1);
  b->len += n;
}

/* Takes the buffer's string (or NULL with kg_error when it failed). */
static char *sb_take(strbuf *b) {
  if (!b->failed && !b->p) sb_add(b, "");
  if (b->failed) {
    free(b->p);
    b->p = NULL;
    kg_error(KG_ERR_NOMEM, "prompt text");
    return NULL;
  }
  char *s = b->p;
  b->p = NULL;
  return s;
}

static int is_mmlu(const kg_task_data *d) { return d->n_subjects > 0; }
static int is_freebase(const kg_task_data *d) { return !strcmp(d->info->name, "freebaseqa"); }

char *kg_mmlu_description(const char *subject, kg_prompt_style style) {
  strbuf b = {0};
  sb_add(&b, "The following are multiple choice questions (with answers) about");
  /* hendrycks' format_subject prefixes every word with a space, so the
   * original prompt reads "about  abstract algebra"; lm-eval has one space. */
  const char *w = subject;
  int first = 1;
  while (*w) {
    const char *us = strchr(w, '_');
    size_t n = us ? (size_t)(us - w) : strlen(w);
    char word[256];
    snprintf(word, sizeof(word), "%.*s", (int)(n < 255 ? n : 255), w);
    sb_add(&b, style == KG_PROMPT_LLMKICK && first ? "  " : " ");
    sb_add(&b, word);
    first = 0;
    w += n + (us ? 1 : 0);
  }
  sb_add(&b, ".\n\n");
  return sb_take(&b);
}

/* LLM-KICK's format_example: the question as stored, "\nA. ..", "\nAnswer:". */
static void llmkick_mmlu_example(strbuf *b, const kg_task_doc *doc, int with_answer) {
  char line[8];
  sb_add(b, doc->raw);
  for (int j = 0; j < doc->n_choices; j++) {
    snprintf(line, sizeof(line), "\n%c. ", 'A' + j);
    sb_add(b, line);
    sb_add(b, doc->choices[j]);
  }
  sb_add(b, "\nAnswer:");
  if (with_answer) {
    snprintf(line, sizeof(line), " %c\n\n", 'A' + doc->gold);
    sb_add(b, line);
  }
}

/* The text of a worked example (doc_to_text, or the right partial context
 * for WinoGrande) and its answer (doc_to_target as text). */
static const char *example_text(const kg_task_data *d, const kg_task_doc *doc) {
  if (d->info->kind == KG_TASK_MULTIPLE_INPUT) return doc->choices[doc->gold];
  return doc->text;
}

static void example_answer(const kg_task_data *d, const kg_task_doc *doc, char letter[2], const char **out) {
  if (is_mmlu(d)) {
    letter[0] = (char)('A' + doc->gold);
    letter[1] = '\0';
    *out = letter;
  } else if (d->info->kind == KG_TASK_MULTIPLE_CHOICE) {
    *out = doc->choices[doc->gold];
  } else {
    *out = doc->target; /* WinoGrande tail, LAMBADA " word", QA answer */
  }
}

static int str_eq(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

/* The harness drops few-shot candidates equal (as dicts) to the evaluated doc. */
static int doc_equal(const kg_task_doc *a, const kg_task_doc *b) {
  if (a == b) return 1;
  if (a->gold != b->gold || a->n_choices != b->n_choices || a->subject != b->subject) return 0;
  if (!str_eq(a->text, b->text) || !str_eq(a->target, b->target) || !str_eq(a->raw, b->raw)) return 0;
  for (int j = 0; j < a->n_choices; j++)
    if (!str_eq(a->choices[j], b->choices[j])) return 0;
  return 1;
}

void kg_fewshot_init(kg_fewshot_state *s, uint64_t seed) { kg_pyrand_seed(&s->rnd, seed); }

/* Appends the labeled examples for docs[idx]. */
static int add_fewshot(strbuf *b, const kg_task_data *d, size_t idx, int k, kg_prompt_style style,
                       kg_fewshot_state *fs) {
  const kg_task_doc *doc = &d->docs[idx];
  char letter[2];
  const char *answer;
  if (d->fewshot) { /* sampler first_n over the subject's dev rows */
    int taken = 0;
    for (size_t i = 0; i < d->n_fewshot && taken < k; i++) {
      const kg_task_doc *ex = &d->fewshot[i];
      if (ex->subject != doc->subject) continue;
      taken++;
      if (style == KG_PROMPT_LLMKICK && is_mmlu(d)) {
        llmkick_mmlu_example(b, ex, 1);
        continue;
      }
      example_answer(d, ex, letter, &answer);
      sb_add(b, example_text(d, ex));
      sb_add(b, " ");
      sb_add(b, answer);
      sb_add(b, "\n\n");
    }
    if (taken < k)
      return kg_error(KG_ERR_ARG, "%s: %d few-shot examples asked, the few-shot split has %d for this subject",
                      d->source, k, taken);
    return KG_OK;
  }
  if (!fs) return kg_error(KG_ERR_ARG, "%s: few-shot sampling needs a kg_fewshot_state", d->source);
  size_t want = (size_t)k + 1;
  if (want > d->n_docs)
    return kg_error(KG_ERR_ARG, "%s: %d few-shot examples asked from %zu documents", d->source, k, d->n_docs);
  size_t *pick = malloc(want * sizeof(*pick));
  if (!pick) return kg_error(KG_ERR_NOMEM, "few-shot indices");
  if (kg_pyrand_sample(&fs->rnd, d->n_docs, want, pick) < 0) {
    free(pick);
    return kg_error_context("%s: ", d->source);
  }
  int used = 0;
  for (size_t i = 0; i < want && used < k; i++) {
    const kg_task_doc *ex = &d->docs[pick[i]];
    if (doc_equal(ex, doc)) continue;
    example_answer(d, ex, letter, &answer);
    sb_add(b, example_text(d, ex));
    sb_add(b, " ");
    sb_add(b, answer);
    sb_add(b, "\n\n");
    used++;
  }
  free(pick);
  return KG_OK;
}

static int set_strings(char ***arr, int *n, int count) {
  *arr = calloc((size_t)count, sizeof(**arr));
  if (!*arr) return kg_error(KG_ERR_NOMEM, "prompt strings");
  *n = count;
  return KG_OK;
}

static char *concat2(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + lb + 1);
  if (!s) return (kg_error(KG_ERR_NOMEM, "prompt text"), NULL);
  memcpy(s, a, la);
  memcpy(s + la, b, lb + 1);
  return s;
}

int kg_task_prompt_build(const kg_task_data *d, size_t idx, int num_fewshot, kg_prompt_style style,
                         kg_fewshot_state *fs, kg_task_prompt *out) {
  memset(out, 0, sizeof(*out));
  if (idx >= d->n_docs) return kg_error(KG_ERR_ARG, "%s: document %zu of %zu", d->source, idx, d->n_docs);
  if (num_fewshot < 0) return kg_error(KG_ERR_ARG, "negative few-shot count %d", num_fewshot);
  const kg_task_doc *doc = &d->docs[idx];
  kg_task_kind kind = d->info->kind;
  int rc = KG_OK;
  strbuf b = {0};
  char *prefix = NULL;
  if (is_freebase(d)) num_fewshot = 0; /* LLM-KICK's protocol is zero-shot */

  if (is_mmlu(d)) {
    char *desc = kg_mmlu_description(d->subjects[doc->subject], style);
    if (!desc) return kg_error_context("%s: ", d->source);
    sb_add(&b, desc);
    free(desc);
  }
  if (num_fewshot > 0 && (rc = add_fewshot(&b, d, idx, num_fewshot, style, fs)) < 0) goto done;
  if (!(prefix = sb_take(&b))) {
    rc = kg_error_context("%s: ", d->source);
    goto done;
  }

  if (kind == KG_TASK_MULTIPLE_INPUT) {
    if ((rc = set_strings(&out->contexts, &out->n_contexts, doc->n_choices)) < 0 ||
        (rc = set_strings(&out->continuations, &out->n_continuations, 1)) < 0)
      goto done;
    for (int j = 0; j < doc->n_choices; j++)
      if (!(out->contexts[j] = concat2(prefix, doc->choices[j]))) {
        rc = kg_error_context("%s: ", d->source);
        goto done;
      }
    if (!(out->continuations[0] = concat2(" ", doc->target))) rc = kg_error_context("%s: ", d->source);
    goto done;
  }

  if ((rc = set_strings(&out->contexts, &out->n_contexts, 1)) < 0) goto done;
  strbuf c = {0};
  sb_add(&c, prefix);
  if (is_mmlu(d) && style == KG_PROMPT_LLMKICK) llmkick_mmlu_example(&c, doc, 0);
  else if (is_freebase(d)) {
    sb_add(&c, FREEBASE_PREFIX);
    sb_add(&c, doc->raw);
    sb_add(&c, FREEBASE_SUFFIX);
  } else sb_add(&c, doc->text);
  if (!(out->contexts[0] = sb_take(&c))) {
    rc = kg_error_context("%s: ", d->source);
    goto done;
  }

  if (kind == KG_TASK_LOGLIKELIHOOD) {
    if ((rc = set_strings(&out->continuations, &out->n_continuations, 1)) < 0) goto done;
    if (!(out->continuations[0] = strdup(doc->target))) rc = kg_error(KG_ERR_NOMEM, "prompt text");
  } else if (kind == KG_TASK_MULTIPLE_CHOICE) {
    if ((rc = set_strings(&out->continuations, &out->n_continuations, doc->n_choices)) < 0) goto done;
    for (int j = 0; j < doc->n_choices; j++) {
      char letter[3] = {' ', (char)('A' + j), '\0'};
      out->continuations[j] = is_mmlu(d) ? strdup(letter) : concat2(" ", doc->choices[j]);
      if (!out->continuations[j]) {
        rc = kg_error(KG_ERR_NOMEM, "prompt text");
        goto done;
      }
    }
  }
done:
  free(b.p);
  free(prefix);
  if (rc < 0) kg_task_prompt_free(out);
  return rc;
}

void kg_task_prompt_free(kg_task_prompt *p) {
  if (!p) return;
  for (int i = 0; i < p->n_contexts; i++) free(p->contexts ? p->contexts[i] : NULL);
  for (int i = 0; i < p->n_continuations; i++) free(p->continuations ? p->continuations[i] : NULL);
  free(p->contexts);
  free(p->continuations);
  memset(p, 0, sizeof(*p));
}

/* ---- Calibration texts ---- */

int kg_task_data_calibration_texts(const kg_task_data *d, size_t max_docs, kg_text_list *out) {
  size_t n = max_docs > 0 && max_docs < d->n_docs ? max_docs : d->n_docs;
  char letter[2];
  const char *answer;
  for (size_t i = 0; i < n; i++) {
    const kg_task_doc *doc = &d->docs[i];
    strbuf b = {0};
    if (is_freebase(d)) {
      sb_add(&b, FREEBASE_PREFIX);
      sb_add(&b, doc->raw);
      sb_add(&b, FREEBASE_SUFFIX);
      sb_add(&b, doc->target);
    } else if (d->info->kind == KG_TASK_LOGLIKELIHOOD) {
      sb_add(&b, doc->text);
      sb_add(&b, doc->target);
    } else {
      example_answer(d, doc, letter, &answer);
      sb_add(&b, example_text(d, doc));
      sb_add(&b, " ");
      sb_add(&b, answer);
    }
    char *t = sb_take(&b);
    if (!t) return kg_error_context("%s: calibration text %zu: ", d->source, i);
    int rc = kg_text_list_push(out, t, strlen(t));
    free(t);
    if (rc < 0) return rc;
  }
  return KG_OK;
}

int kg_task_calibration_texts(const char *task, kg_text_list *out) {
  kg_task_data *d = NULL;
  KG_TRY(kg_task_load(task, &d));
  int rc = kg_task_data_calibration_texts(d, 0, out);
  kg_task_free(d);
  return rc;
}
