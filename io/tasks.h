/* Evaluation task data: the files under tasks/ in the data directory, read
 * into documents, and the prompt text lm-evaluation-harness (or LLM-KICK)
 * builds from each document.
 *
 * The zero-shot files are llm-foundry JSON Lines ({"query", "choices",
 * "gold"}, WinoGrande {"context_options", "continuation", "gold"}, LAMBADA
 * {"context", "continuation"}, QA {"context", "answer", "aliases"}),
 * HellaSwag is llama.cpp's text format (bzip2: decompressed with libbz2
 * with libbz2), MMLU is one
 * CSV per subject under tasks/mmlu/{dev,test}.
 * Each document is turned back into the harness's doc_to_text /
 * doc_to_choice / doc_to_target; docs/tasks.md lists, per task, where the
 * llm-foundry preprocessing lost information the harness uses.
 *
 * This lives in io/ because compression calibrates on task examples too
 * (kg_task_calibration_texts). Errors name the file and line.
 *
 * Ownership: a kg_task_data owns every string its documents point to
 * (kg_task_free). kg_task_prompt and kg_text_list results belong to the
 * caller (kg_task_prompt_free, kg_text_list_free). */
#ifndef KG_IO_TASKS_H
#define KG_IO_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "io/datasets.h"
#include "io/pyrandom.h"

struct kg_arena;

typedef enum kg_task_kind {
  KG_TASK_MULTIPLE_CHOICE = 0, /* one context; continuation " " + choice per choice (acc, acc_norm) */
  KG_TASK_MULTIPLE_INPUT = 1,  /* WinoGrande: one context per choice, one shared continuation (acc) */
  KG_TASK_LOGLIKELIHOOD = 2,   /* LAMBADA: one context, one continuation (acc = greedy, perplexity) */
  KG_TASK_GENERATE = 3,        /* FreebaseQA, TriviaQA: greedy generation scored against answers */
} kg_task_kind;

typedef struct kg_task_info {
  const char *name;         /* command-line name: "boolq", "arc_easy", "mmlu", ... */
  const char *harness_name; /* the lm-eval task it reproduces, or the LLM-KICK script */
  kg_task_kind kind;
  const char *path;         /* relative to the data directory (MMLU: the folder holding dev/ and test/) */
  int has_acc_norm;         /* the harness reports acc_norm for it */
  int default_fewshot;      /* 0, or 5 for MMLU */
} kg_task_info;

size_t kg_task_count(void);
const kg_task_info *kg_task_at(size_t i);
/* NULL when unknown (no error recorded). */
const kg_task_info *kg_task_find(const char *name);

typedef struct kg_task_doc {
  /* doc_to_text without few-shot examples (MC, LAMBADA, QA prompt); NULL for WinoGrande */
  const char *text;
  /* doc_to_choice: answer texts (MC), or the partial contexts (WinoGrande) */
  const char **choices;
  int n_choices;
  int gold;           /* index of the right choice; -1 when the task has none */
  /* LAMBADA: the continuation with its leading space (" word"); WinoGrande: the
   * text after the blank; QA: the reference answer; NULL otherwise */
  const char *target;
  const char **answers; /* QA: the answer then its aliases (deduplicated) */
  int n_answers;
  int subject;          /* MMLU: index into kg_task_data.subjects; -1 otherwise */
  const char *raw;      /* MMLU question / QA question as stored (LLM-KICK prompts); else NULL */
} kg_task_doc;

typedef struct kg_task_data {
  const kg_task_info *info;
  kg_task_doc *docs;       /* the evaluation split, in file order (MMLU: subjects alphabetically) */
  size_t n_docs;
  kg_task_doc *fewshot;    /* a separate few-shot split (MMLU dev), or NULL */
  size_t n_fewshot;
  const char **subjects;   /* MMLU subject names ("abstract_algebra", ...) */
  int n_subjects;
  char source[512];        /* file or folder read */
  struct kg_arena *arena;  /* owns the strings */
} kg_task_data;

/* Loads `name` from the data directory. *out is owned by the caller. */
int kg_task_load(const char *name, kg_task_data **out);
/* Loads `name` from an explicit file (MMLU: a folder with dev/ and test/). */
int kg_task_load_path(const char *name, const char *path, kg_task_data **out);
void kg_task_free(kg_task_data *d);

/* ---- Prompts ---- */

typedef enum kg_prompt_style {
  KG_PROMPT_HARNESS = 0, /* lm-evaluation-harness templates */
  KG_PROMPT_LLMKICK = 1, /* LLM-KICK's scripts (MMLU generate mode, FreebaseQA) */
} kg_prompt_style;

/* What is scored for one document. MULTIPLE_CHOICE: 1 context and
 * n_choices continuations; MULTIPLE_INPUT: n_choices contexts and 1
 * continuation; LOGLIKELIHOOD: 1 and 1; GENERATE: 1 context, no
 * continuation. Strings are malloc'd and owned by the prompt. */
typedef struct kg_task_prompt {
  char **contexts;
  int n_contexts;
  char **continuations;
  int n_continuations;
} kg_task_prompt;

/* Few-shot example selection state for one pass over a task: the harness
 * seeds one random.Random(seed) per task (default 1234) and draws for each
 * evaluated document in order, so documents must be visited in ascending
 * order for the prompts to equal the harness's. */
typedef struct kg_fewshot_state {
  kg_pyrand rnd;
} kg_fewshot_state;
void kg_fewshot_init(kg_fewshot_state *s, uint64_t seed);

/* Builds the prompt of docs[doc] with num_fewshot examples (the harness's
 * fewshot_context + construct_requests):
 *  - separate few-shot split (MMLU): its first num_fewshot documents of the
 *    same subject (sampler first_n), after the subject description;
 *  - otherwise random.sample(docs, num_fewshot + 1) with the evaluated
 *    document removed (the harness's rule when the few-shot split is the
 *    evaluation split), each example written as text + " " + answer and
 *    followed by "\n\n".
 * KG_PROMPT_LLMKICK changes MMLU to the original hendrycks/LLM-KICK prompt
 * and FreebaseQA to LLM-KICK's question template; other tasks ignore it.
 * FreebaseQA is always zero-shot (LLM-KICK's protocol). */
int kg_task_prompt_build(const kg_task_data *d, size_t doc, int num_fewshot, kg_prompt_style style,
                         kg_fewshot_state *fs, kg_task_prompt *out);
void kg_task_prompt_free(kg_task_prompt *p);

/* "The following are multiple choice questions (with answers) about
 * {subject with spaces}.\n\n" (LLMKICK: the original's double space after
 * "about"). Returns a malloc'd string or NULL (kg_error set). */
char *kg_mmlu_description(const char *subject, kg_prompt_style style);

/* ---- Calibration from task examples (issue 3) ---- */

/* One text per evaluation document with its gold answer filled in, in file
 * order: the zero-shot prompt text followed by the right answer the way the
 * harness writes a few-shot example (BoolQ: passage, question and " yes";
 * ARC: the question and " " + the right choice; WinoGrande: the sentence with
 * the right option; LAMBADA: the whole passage; MMLU: question, choices and
 * " B"; QA: question prompt and " " + answer). Appends to *out. */
int kg_task_calibration_texts(const char *task, kg_text_list *out);
/* The same from already loaded data, documents [0, max_docs) (<= 0: all). */
int kg_task_data_calibration_texts(const kg_task_data *d, size_t max_docs, kg_text_list *out);

/* ---- Text helpers shared with evaluate/ (Python str semantics) ---- */

/* Byte length of s[0, len) without trailing whitespace as Python's
 * str.rstrip() defines it (ASCII and Unicode White_Space code points). */
size_t kg_py_rstrip_len(const char *s, size_t len);
/* Byte offset of the first character that is not Python whitespace (lstrip). */
size_t kg_py_lstrip_off(const char *s, size_t len);
/* The HellaSwag preprocess of lm-eval: strip, " [title]" -> ". ", drop
 * "[...]" spans, "  " -> " ". Returns a malloc'd string or NULL. */
char *kg_hellaswag_preprocess(const char *text);

#endif
