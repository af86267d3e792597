/* Readers for the llm-foundry JSON Lines task files and llama.cpp's HellaSwag
 * text file, turning each row back into the harness's fields. */
#include <cjson/cJSON.h>
#include <bzlib.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/arena.h"
#include "io/datasets.h"
#include "io/error.h"
#include "io/tasks_internal.h"

extern char **environ;

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static const char *json_string(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* Fills doc->choices from a JSON array of strings; returns the count or < 0. */
static int json_choices(kg_task_data *d, const cJSON *arr, const char ***out, const char *where) {
  if (!cJSON_IsArray(arr)) return kg_error(KG_ERR_FORMAT, "%s: expected an array of strings", where);
  int n = cJSON_GetArraySize(arr);
  if (n <= 0 || n > 64) return kg_error(KG_ERR_FORMAT, "%s: %d entries (expected 1..64)", where, n);
  const char **c = kg_arena_alloc(d->arena, (size_t)n * sizeof(*c));
  if (!c) return kg_error_context("%s: ", where);
  int i = 0;
  const cJSON *el;
  cJSON_ArrayForEach(el, arr) {
    if (!cJSON_IsString(el) || !el->valuestring) return kg_error(KG_ERR_FORMAT, "%s: entry %d is not a string", where, i);
    if (!(c[i++] = kg_tasks_strdup(d, el->valuestring))) return kg_error_context("%s: ", where);
  }
  *out = c;
  return n;
}

static int json_gold(const cJSON *row, int n_choices, const char *where) {
  const cJSON *g = cJSON_GetObjectItemCaseSensitive(row, "gold");
  if (!cJSON_IsNumber(g) || g->valuedouble != (double)(int)g->valuedouble)
    return kg_error(KG_ERR_FORMAT, "%s: \"gold\" is missing or not an integer", where);
  if (g->valueint < 0 || g->valueint >= n_choices)
    return kg_error(KG_ERR_FORMAT, "%s: gold %d outside 0..%d", where, g->valueint, n_choices - 1);
  return g->valueint;
}

/* query/choices/gold rows: the harness's doc_to_text differs per task only
 * in what surrounds the llm-foundry query (docs/tasks.md). */
static int row_multiple_choice(kg_task_data *d, const cJSON *row, const char *where) {
  const char *name = d->info->name;
  const char *query = json_string(row, "query");
  if (!query) return kg_error(KG_ERR_FORMAT, "%s: \"query\" is missing or not a string", where);
  kg_task_doc *doc = kg_tasks_new_doc(d, 0);
  if (!doc) return kg_error_context("%s: ", where);
  int n = json_choices(d, cJSON_GetObjectItemCaseSensitive(row, "choices"), &doc->choices, where);
  if (n < 0) return n;
  doc->n_choices = n;
  if ((doc->gold = json_gold(row, n, where)) < 0) return doc->gold;
  if (!strcmp(name, "boolq")) {
    /* llm-foundry: "Passage: {passage}\nQuestion: {question}?"; harness:
     * "{passage}\nQuestion: {question}?\nAnswer:" */
    if (!starts_with(query, "Passage: ") || !strstr(query, "\nQuestion: "))
      return kg_error(KG_ERR_FORMAT, "%s: BoolQ query is not \"Passage: ...\\nQuestion: ...\"", where);
    doc->text = kg_tasks_concat(d, query + strlen("Passage: "), "\nAnswer:");
  } else if (!strcmp(name, "piqa")) {
    size_t len = strlen(query);
    if (!starts_with(query, "Question: ") || len == 0 || query[len - 1] != '\n')
      return kg_error(KG_ERR_FORMAT, "%s: PIQA query is not \"Question: ...\\n\"", where);
    doc->text = kg_tasks_concat(d, query, "Answer:");
  } else if (!strcmp(name, "arc_easy") || !strcmp(name, "arc_challenge")) {
    if (!starts_with(query, "Question: "))
      return kg_error(KG_ERR_FORMAT, "%s: ARC query does not start with \"Question: \"", where);
    doc->text = kg_tasks_concat(d, query, "\nAnswer:");
  } else { /* openbookqa: doc_to_text is the bare question_stem */
    doc->text = kg_tasks_strdup(d, query);
  }
  return doc->text ? KG_OK : kg_error_context("%s: ", where);
}

static int row_winogrande(kg_task_data *d, const cJSON *row, const char *where) {
  const char *cont = json_string(row, "continuation");
  if (!cont) return kg_error(KG_ERR_FORMAT, "%s: \"continuation\" is missing or not a string", where);
  kg_task_doc *doc = kg_tasks_new_doc(d, 0);
  if (!doc) return kg_error_context("%s: ", where);
  int n = json_choices(d, cJSON_GetObjectItemCaseSensitive(row, "context_options"), &doc->choices, where);
  if (n < 0) return n;
  doc->n_choices = n;
  if ((doc->gold = json_gold(row, n, where)) < 0) return doc->gold;
  doc->target = kg_tasks_strdup(d, cont);
  return doc->target ? KG_OK : kg_error_context("%s: ", where);
}

static int row_lambada(kg_task_data *d, const cJSON *row, const char *where) {
  const char *ctx = json_string(row, "context"), *cont = json_string(row, "continuation");
  if (!ctx || !cont) return kg_error(KG_ERR_FORMAT, "%s: \"context\" and \"continuation\" must be strings", where);
  kg_task_doc *doc = kg_tasks_new_doc(d, 0);
  if (!doc) return kg_error_context("%s: ", where);
  /* harness: text.split(' ')[:-1] joined, and ' ' + the last word */
  doc->text = kg_tasks_strdup(d, ctx);
  doc->target = kg_tasks_concat(d, " ", cont);
  return doc->text && doc->target ? KG_OK : kg_error_context("%s: ", where);
}

static int row_qa(kg_task_data *d, const cJSON *row, const char *where) {
  const char *ctx = json_string(row, "context"), *answer = json_string(row, "answer");
  if (!ctx || !answer) return kg_error(KG_ERR_FORMAT, "%s: \"context\" and \"answer\" must be strings", where);
  const cJSON *aliases = cJSON_GetObjectItemCaseSensitive(row, "aliases");
  if (aliases && !cJSON_IsArray(aliases)) return kg_error(KG_ERR_FORMAT, "%s: \"aliases\" is not an array", where);
  kg_task_doc *doc = kg_tasks_new_doc(d, 0);
  if (!doc) return kg_error_context("%s: ", where);
  int n_alias = aliases ? cJSON_GetArraySize(aliases) : 0;
  const char **ans = kg_arena_alloc(d->arena, (size_t)(n_alias + 1) * sizeof(*ans));
  if (!ans || !(ans[0] = kg_tasks_strdup(d, answer))) return kg_error_context("%s: ", where);
  int n = 1;
  const cJSON *el;
  cJSON_ArrayForEach(el, aliases) {
    if (!cJSON_IsString(el) || !el->valuestring) return kg_error(KG_ERR_FORMAT, "%s: an alias is not a string", where);
    int dup = 0;
    for (int i = 0; i < n && !dup; i++) dup = !strcmp(ans[i], el->valuestring);
    if (!dup && !(ans[n++] = kg_tasks_strdup(d, el->valuestring))) return kg_error_context("%s: ", where);
  }
  doc->answers = ans;
  doc->n_answers = n;
  doc->target = ans[0];
  doc->raw = kg_tasks_strdup(d, ctx);
  /* TriviaQA's context already is the prompt "Question: ...\nAnswer:"; the
   * FreebaseQA prompt is built per style (kg_task_prompt_build). */
  doc->text = doc->raw;
  return doc->raw ? KG_OK : kg_error_context("%s: ", where);
}

int kg_tasks_load_jsonl(kg_task_data *d, const char *path) {
  char *buf = NULL;
  size_t len = 0;
  int rc = kg_text_file(path, &buf, &len);
  if (rc < 0) return rc;
  kg_task_kind kind = d->info->kind;
  const char *name = d->info->name;
  size_t line_no = 0;
  char where[600];
  for (char *p = buf, *end = buf + len; p < end;) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    line_no++;
    char *line = p;
    p += n + (nl ? 1 : 0);
    size_t k = 0;
    while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
    if (k == n) continue;
    snprintf(where, sizeof(where), "%s:%zu", path, line_no);
    cJSON *row = cJSON_ParseWithLength(line, n);
    if (!row || !cJSON_IsObject(row)) {
      cJSON_Delete(row);
      rc = kg_error(KG_ERR_FORMAT, "%s: not a JSON object", where);
      goto done;
    }
    if (kind == KG_TASK_MULTIPLE_CHOICE) rc = row_multiple_choice(d, row, where);
    else if (kind == KG_TASK_MULTIPLE_INPUT) rc = row_winogrande(d, row, where);
    else if (kind == KG_TASK_LOGLIKELIHOOD) rc = row_lambada(d, row, where);
    else rc = row_qa(d, row, where);
    cJSON_Delete(row);
    if (rc < 0) goto done;
  }
  if (d->n_docs == 0) rc = kg_error(KG_ERR_FORMAT, "%s: no %s examples", path, name);
done:
  free(buf);
  return rc;
}

/* ---- HellaSwag ---- */

/* Decompresses the HellaSwag file with libbz2. */
static int read_bzip2(const char *path, char **out, size_t *out_len) {
  int rc = KG_OK, bzerr = BZ_OK;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return kg_error(KG_ERR_IO, "%s: %s", path, strerror(errno));
  BZFILE *bz = BZ2_bzReadOpen(&bzerr, f, 0, 0, NULL, 0);
  while (bz && bzerr == BZ_OK) {
    if (cap - len < 65536) {
      size_t ncap = cap ? cap * 2 : 1 << 20;
      char *nb = realloc(buf, ncap + 1);
      if (!nb) {
        rc = kg_error(KG_ERR_NOMEM, "%s: decompressed text does not fit in memory", path);
        goto done;
      }
      buf = nb;
      cap = ncap;
    }
    int got = BZ2_bzRead(&bzerr, bz, buf + len, (int)(cap - len));
    if (got > 0) len += (size_t)got;
  }
  if (bzerr != BZ_STREAM_END) rc = kg_error(KG_ERR_FORMAT, "%s: corrupt or not bzip2 (libbz2 error %d)", path, bzerr);
done:
  if (bz) BZ2_bzReadClose(&bzerr, bz);
  fclose(f);
  if (rc < 0) {
    free(buf);
    return rc;
  }
  if (!buf && !(buf = malloc(1))) return kg_error(KG_ERR_NOMEM, "%s: empty buffer", path);
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return KG_OK;
}

int kg_tasks_load_hellaswag(kg_task_data *d, const char *path) {
  char *buf = NULL;
  size_t len = 0, plen = strlen(path);
  int rc = plen > 4 && !strcmp(path + plen - 4, ".bz2") ? read_bzip2(path, &buf, &len) : kg_text_file(path, &buf, &len);
  if (rc < 0) return rc;
  if ((rc = kg_text_check_utf8(path, buf, len)) < 0) goto done;
  /* Six lines per example: "label: ctx", gold index, four endings. */
  char *lines[6];
  size_t line_no = 0;
  char *p = buf, *end = buf + len;
  while (p < end) {
    size_t first = line_no + 1;
    int got = 0;
    for (; got < 6 && p < end; got++) {
      char *nl = memchr(p, '\n', (size_t)(end - p));
      if (nl) *nl = '\0';
      if (nl && nl > p && nl[-1] == '\r') nl[-1] = '\0';
      lines[got] = p;
      p = nl ? nl + 1 : end;
      line_no++;
    }
    if (got == 1 && lines[0][0] == '\0') break; /* trailing blank line */
    if (got < 6) {
      rc = kg_error(KG_ERR_FORMAT, "%s:%zu: truncated example (%d of 6 lines)", path, first, got);
      goto done;
    }
    char *endp = NULL;
    long gold = strtol(lines[1], &endp, 10);
    if (endp == lines[1] || *endp != '\0' || gold < 0 || gold > 3) {
      rc = kg_error(KG_ERR_FORMAT, "%s:%zu: gold label \"%.20s\" is not 0..3", path, first + 1, lines[1]);
      goto done;
    }
    if (!strstr(lines[0], ": ")) {
      rc = kg_error(KG_ERR_FORMAT, "%s:%zu: context line lacks \"label: \"", path, first);
      goto done;
    }
    kg_task_doc *doc = kg_tasks_new_doc(d, 0);
    const char **choices = doc ? kg_arena_alloc(d->arena, 4 * sizeof(*choices)) : NULL;
    char *query = choices ? kg_tasks_hellaswag_query(lines[0]) : NULL;
    if (!query || !(doc->text = kg_tasks_strdup(d, query))) {
      free(query);
      rc = kg_error_context("%s:%zu: ", path, first);
      goto done;
    }
    free(query);
    for (int j = 0; j < 4; j++) {
      char *ending = kg_hellaswag_preprocess(lines[2 + j]);
      choices[j] = ending ? kg_tasks_strdup(d, ending) : NULL;
      free(ending);
      if (!choices[j]) {
        rc = kg_error_context("%s:%zu: ", path, first + 2 + (size_t)j);
        goto done;
      }
    }
    doc->choices = choices;
    doc->n_choices = 4;
    doc->gold = (int)gold;
  }
  if (d->n_docs == 0) rc = kg_error(KG_ERR_FORMAT, "%s: no HellaSwag examples", path);
done:
  free(buf);
  return rc;
}
