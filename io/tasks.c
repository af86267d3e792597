#include "io/tasks.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/arena.h"
#include "io/error.h"
#include "io/paths.h"
#include "io/tasks_internal.h"
#include "io/unicode.h"

static const kg_task_info tasks[] = {
    {"boolq", "boolq", KG_TASK_MULTIPLE_CHOICE, "tasks/boolq.jsonl", 0, 0},
    {"piqa", "piqa", KG_TASK_MULTIPLE_CHOICE, "tasks/piqa.jsonl", 1, 0},
    {"hellaswag", "hellaswag", KG_TASK_MULTIPLE_CHOICE, "tasks/hellaswag_val_full.txt.bz2", 1, 0},
    {"winogrande", "winogrande", KG_TASK_MULTIPLE_INPUT, "tasks/winogrande.jsonl", 0, 0},
    {"arc_easy", "arc_easy", KG_TASK_MULTIPLE_CHOICE, "tasks/arc_easy.jsonl", 1, 0},
    {"arc_challenge", "arc_challenge", KG_TASK_MULTIPLE_CHOICE, "tasks/arc_challenge.jsonl", 1, 0},
    {"openbookqa", "openbookqa", KG_TASK_MULTIPLE_CHOICE, "tasks/openbook_qa.jsonl", 1, 0},
    {"lambada", "lambada_openai", KG_TASK_LOGLIKELIHOOD, "tasks/lambada_openai.jsonl", 0, 0},
    {"mmlu", "mmlu", KG_TASK_MULTIPLE_CHOICE, "tasks/mmlu", 0, 5},
    {"freebaseqa", "LLM-KICK factoid_qa/main_freebase.py", KG_TASK_GENERATE, "tasks/freebaseqa.jsonl", 0, 0},
    {"triviaqa", "TriviaQA closed-book (llm-foundry triviaqa_sm_sub)", KG_TASK_GENERATE,
     "tasks/triviaqa_sm_sub.jsonl", 0, 0},
};

size_t kg_task_count(void) { return sizeof(tasks) / sizeof(tasks[0]); }
const kg_task_info *kg_task_at(size_t i) { return i < kg_task_count() ? &tasks[i] : NULL; }

const kg_task_info *kg_task_find(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < kg_task_count(); i++)
    if (!strcmp(tasks[i].name, name) || !strcmp(tasks[i].harness_name, name)) return &tasks[i];
  return NULL;
}

/* ---- Storage ---- */

char *kg_tasks_strndup(kg_task_data *d, const char *s, size_t n) {
  char *p = kg_arena_alloc(d->arena, n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *kg_tasks_strdup(kg_task_data *d, const char *s) { return kg_tasks_strndup(d, s, strlen(s)); }

char *kg_tasks_concat(kg_task_data *d, const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *p = kg_arena_alloc(d->arena, la + lb + 1);
  if (!p) return NULL;
  memcpy(p, a, la);
  memcpy(p + la, b, lb + 1);
  return p;
}

kg_task_doc *kg_tasks_new_doc(kg_task_data *d, int fewshot) {
  kg_task_doc **arr = fewshot ? &d->fewshot : &d->docs;
  size_t *n = fewshot ? &d->n_fewshot : &d->n_docs;
  if ((*n & (*n - 1)) == 0) { /* grow at powers of two */
    size_t cap = *n ? *n * 2 : 64;
    kg_task_doc *g = realloc(*arr, cap * sizeof(**arr));
    if (!g) return (kg_error(KG_ERR_NOMEM, "task documents (%zu)", cap), NULL);
    *arr = g;
  }
  kg_task_doc *doc = &(*arr)[(*n)++];
  memset(doc, 0, sizeof(*doc));
  doc->gold = -1;
  doc->subject = -1;
  return doc;
}

int kg_task_load_path(const char *name, const char *path, kg_task_data **out) {
  *out = NULL;
  const kg_task_info *info = kg_task_find(name);
  if (!info) return kg_error(KG_ERR_NOT_FOUND, "unknown task \"%s\"", name ? name : "(null)");
  kg_task_data *d = calloc(1, sizeof(*d));
  if (!d) return kg_error(KG_ERR_NOMEM, "task %s", name);
  int rc = KG_OK;
  d->info = info;
  snprintf(d->source, sizeof(d->source), "%s", path);
  if (!(d->arena = kg_arena_create())) {
    rc = kg_error_context("task %s: ", name);
    goto done;
  }
  if (!strcmp(info->name, "mmlu")) rc = kg_tasks_load_mmlu(d, path);
  else if (!strcmp(info->name, "hellaswag")) rc = kg_tasks_load_hellaswag(d, path);
  else rc = kg_tasks_load_jsonl(d, path);
done:
  if (rc < 0) {
    kg_task_free(d);
    return rc;
  }
  *out = d;
  return KG_OK;
}

int kg_task_load(const char *name, kg_task_data **out) {
  *out = NULL;
  const kg_task_info *info = kg_task_find(name);
  if (!info) return kg_error(KG_ERR_NOT_FOUND, "unknown task \"%s\"", name ? name : "(null)");
  char path[1024];
  KG_TRY(kg_data_path(path, sizeof(path), info->path));
  if (!kg_path_exists(path))
    return kg_error(KG_ERR_NOT_FOUND, "%s: task %s data is not present (data directory %s)", path, info->name,
                    kg_data_dir());
  return kg_task_load_path(info->name, path, out);
}

void kg_task_free(kg_task_data *d) {
  if (!d) return;
  free(d->docs);
  free(d->fewshot);
  kg_arena_destroy(d->arena);
  free(d);
}

/* ---- Python string semantics ---- */

static int py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

size_t kg_py_rstrip_len(const char *s, size_t len) {
  size_t keep = 0, i = 0;
  while (i < len) {
    uint32_t cp = 0;
    size_t n = kg_utf8_decode((const unsigned char *)s + i, len - i, &cp);
    if (n == 0) { /* an invalid byte is not whitespace */
      n = 1;
      cp = 0xfffd;
    }
    i += n;
    if (!py_space(cp)) keep = i;
  }
  return keep;
}

size_t kg_py_lstrip_off(const char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint32_t cp = 0;
    size_t n = kg_utf8_decode((const unsigned char *)s + i, len - i, &cp);
    if (n == 0 || !py_space(cp)) break;
    i += n;
  }
  return i;
}

/* Python's str.replace(old, new): left to right, non-overlapping. */
static char *replace_all(const char *s, const char *old, const char *rep) {
  size_t lo = strlen(old), lr = strlen(rep), n = 0;
  for (const char *p = strstr(s, old); p; p = strstr(p + lo, old)) n++;
  size_t len = strlen(s) + n * lr + 1;
  char *out = malloc(len), *w = out;
  if (!out) return (kg_error(KG_ERR_NOMEM, "string replace"), NULL);
  for (const char *p = s;;) {
    const char *q = strstr(p, old);
    if (!q) {
      strcpy(w, p);
      break;
    }
    memcpy(w, p, (size_t)(q - p));
    w += q - p;
    memcpy(w, rep, lr);
    w += lr;
    p = q + lo;
  }
  return out;
}

char *kg_hellaswag_preprocess(const char *text) {
  size_t len = strlen(text), off = kg_py_lstrip_off(text, len), end = kg_py_rstrip_len(text, len);
  if (end < off) end = off;
  char *stripped = strndup(text + off, end - off);
  if (!stripped) return (kg_error(KG_ERR_NOMEM, "hellaswag text"), NULL);
  char *a = replace_all(stripped, " [title]", ". ");
  free(stripped);
  if (!a) return NULL;
  /* re.sub("\\[.*?\\]", "", text): each "[" up to the nearest "]" */
  char *w = a;
  for (const char *p = a; *p;) {
    const char *close = *p == '[' ? strchr(p + 1, ']') : NULL;
    if (close) {
      p = close + 1;
      continue;
    }
    *w++ = *p++;
  }
  *w = '\0';
  char *b = replace_all(a, "  ", " ");
  free(a);
  return b;
}

char *kg_tasks_hellaswag_query(const char *line) {
  /* llama.cpp's line is "label: ctx_a ctx_b" with ctx_b lower-case; the
   * harness writes ctx_a + " " + ctx_b.capitalize(). ActivityNet contexts end
   * in the unfinished ctx_b after the last sentence; WikiHow contexts start
   * "How to" and have an empty ctx_b. */
  char *q = kg_hellaswag_preprocess(line);
  if (!q) return NULL;
  char *ctx = strstr(q, ": ");
  if (!ctx) return q;
  ctx += 2;
  size_t n = strlen(ctx);
  if (strncmp(ctx, "How to", 6) == 0 || n == 0 || strchr(".!?", ctx[n - 1])) return q;
  char *frag = ctx;
  for (char *p = ctx; p[0] && p[1]; p++)
    if (strchr(".!?", p[0]) && p[1] == ' ') frag = p + 2;
  if (*frag >= 'a' && *frag <= 'z') *frag = (char)(*frag - 'a' + 'A');
  for (char *p = frag + 1; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  return q;
}
