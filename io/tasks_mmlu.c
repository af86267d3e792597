/* MMLU: one CSV per subject in dev/ (few-shot) and test/ (evaluation).
 * Two layouts are accepted: a header row question,choice0..choice3,answer
 * with a 0-based answer index (the shared data), or hendrycks/test's
 * header-less rows with the answer as a letter A-D. Fields follow RFC 4180:
 * quoted fields may hold commas, doubled quotes and newlines. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/arena.h"
#include "io/datasets.h"
#include "io/error.h"
#include "io/paths.h"
#include "io/tasks_internal.h"

enum { MMLU_FIELDS = 6 };

/* Splits the next CSV record at *pos into fields (decoded in place in buf:
 * quotes removed, "" collapsed). Returns the field count, 0 at the end of
 * the buffer, or < 0 on a malformed record. *line advances over newlines. */
static int csv_record(char *buf, size_t len, size_t *pos, char **fields, int max_fields, size_t *line,
                      const char *path) {
  size_t i = *pos;
  if (i >= len) return 0;
  size_t start_line = *line;
  int n = 0;
  for (;;) {
    char *out = buf + i, *w = out;
    if (i < len && buf[i] == '"') {
      i++;
      for (;;) {
        if (i >= len) return kg_error(KG_ERR_FORMAT, "%s:%zu: unterminated quoted field", path, start_line);
        if (buf[i] == '"') {
          if (i + 1 < len && buf[i + 1] == '"') {
            *w++ = '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (buf[i] == '\n') (*line)++;
        *w++ = buf[i++];
      }
      if (i < len && buf[i] != ',' && buf[i] != '\n' && buf[i] != '\r')
        return kg_error(KG_ERR_FORMAT, "%s:%zu: text after a closing quote", path, start_line);
    } else {
      while (i < len && buf[i] != ',' && buf[i] != '\n' && buf[i] != '\r') {
        if (buf[i] == '"') return kg_error(KG_ERR_FORMAT, "%s:%zu: quote inside an unquoted field", path, start_line);
        *w++ = buf[i++];
      }
    }
    if (n >= max_fields) return kg_error(KG_ERR_FORMAT, "%s:%zu: more than %d fields", path, start_line, max_fields);
    fields[n++] = out;
    int at_end = i >= len || buf[i] != ',';
    if (i < len && buf[i] == '\r') i++;
    if (at_end) {
      if (i < len && buf[i] == '\n') i++;
      (*line)++;
      *w = '\0';
      break;
    }
    *w = '\0';
    i++; /* the comma */
  }
  *pos = i;
  return n;
}

static int is_header(char **f, int n) {
  static const char *names[MMLU_FIELDS] = {"question", "choice0", "choice1", "choice2", "choice3", "answer"};
  if (n != MMLU_FIELDS) return 0;
  for (int i = 0; i < MMLU_FIELDS; i++)
    if (strcmp(f[i], names[i]) != 0) return 0;
  return 1;
}

static int parse_answer(const char *s, int letters) {
  if (letters) return s[0] >= 'A' && s[0] <= 'D' && s[1] == '\0' ? s[0] - 'A' : -1;
  return s[0] >= '0' && s[0] <= '3' && s[1] == '\0' ? s[0] - '0' : -1;
}

/* harness doc_to_text: "{{question.strip()}}\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:" */
static char *harness_text(kg_task_data *d, const char *q, const char **c) {
  size_t qlen = strlen(q), off = kg_py_lstrip_off(q, qlen);
  size_t qend = kg_py_rstrip_len(q, qlen);
  if (qend < off) qend = off;
  size_t total = (qend - off) + 16 + 16;
  for (int j = 0; j < 4; j++) total += strlen(c[j]) + 4;
  char *t = malloc(total);
  if (!t) return (kg_error(KG_ERR_NOMEM, "MMLU prompt text"), NULL);
  int w = snprintf(t, total, "%.*s", (int)(qend - off), q + off);
  for (int j = 0; j < 4; j++) w += snprintf(t + w, total - (size_t)w, "\n%c. %s", 'A' + j, c[j]);
  snprintf(t + w, total - (size_t)w, "\nAnswer:");
  char *r = kg_tasks_strdup(d, t);
  free(t);
  return r;
}

static int load_csv(kg_task_data *d, const char *path, int subject, int fewshot) {
  char *buf = NULL;
  size_t len = 0, pos = 0, line = 1;
  int rc = kg_text_file(path, &buf, &len);
  if (rc < 0) return rc;
  char *f[MMLU_FIELDS + 1];
  int first = 1, letters = 0, rows = 0;
  for (;;) {
    size_t rec_line = line;
    int n = csv_record(buf, len, &pos, f, MMLU_FIELDS + 1, &line, path);
    if (n < 0) {
      rc = n;
      goto done;
    }
    if (n == 0) break;
    if (n == 1 && f[0][0] == '\0') continue; /* blank line */
    if (first) {
      first = 0;
      if (is_header(f, n)) continue;
      letters = 1; /* hendrycks/test layout: no header, answer letters */
    }
    if (n != MMLU_FIELDS) {
      rc = kg_error(KG_ERR_FORMAT, "%s:%zu: %d fields (expected question, 4 choices, answer)", path, rec_line, n);
      goto done;
    }
    int gold = parse_answer(f[5], letters);
    if (gold < 0) {
      rc = kg_error(KG_ERR_FORMAT, "%s:%zu: answer \"%.16s\" is not %s", path, rec_line, f[5], letters ? "A-D" : "0-3");
      goto done;
    }
    kg_task_doc *doc = kg_tasks_new_doc(d, fewshot);
    const char **c = doc ? kg_arena_alloc(d->arena, 4 * sizeof(*c)) : NULL;
    if (!c) {
      rc = kg_error_context("%s:%zu: ", path, rec_line);
      goto done;
    }
    for (int j = 0; j < 4; j++)
      if (!(c[j] = kg_tasks_strdup(d, f[1 + j]))) {
        rc = kg_error_context("%s:%zu: ", path, rec_line);
        goto done;
      }
    doc->choices = c;
    doc->n_choices = 4;
    doc->gold = gold;
    doc->subject = subject;
    if (!(doc->raw = kg_tasks_strdup(d, f[0])) || !(doc->text = harness_text(d, f[0], c))) {
      rc = kg_error_context("%s:%zu: ", path, rec_line);
      goto done;
    }
    rows++;
  }
  if (rows == 0) rc = kg_error(KG_ERR_FORMAT, "%s: no questions", path);
done:
  free(buf);
  return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int kg_tasks_load_mmlu(kg_task_data *d, const char *dir) {
  int rc = KG_OK;
  char test_dir[1024], path[1200];
  char **names = NULL;
  size_t n_names = 0, cap = 0;
  DIR *dh = NULL;
  if ((rc = kg_path_join(test_dir, sizeof(test_dir), dir, "test")) < 0) return rc;
  if (!(dh = opendir(test_dir))) return kg_error(KG_ERR_NOT_FOUND, "%s: cannot open the MMLU test folder", test_dir);
  struct dirent *e;
  while ((e = readdir(dh))) {
    size_t L = strlen(e->d_name);
    if (L <= 9 || strcmp(e->d_name + L - 9, "_test.csv") != 0) continue;
    if (n_names == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      char **nn = realloc(names, ncap * sizeof(*nn));
      if (!nn) {
        rc = kg_error(KG_ERR_NOMEM, "MMLU subject list");
        goto done;
      }
      names = nn;
      cap = ncap;
    }
    if (!(names[n_names] = strndup(e->d_name, L - 9))) {
      rc = kg_error(KG_ERR_NOMEM, "MMLU subject list");
      goto done;
    }
    n_names++;
  }
  if (n_names == 0) {
    rc = kg_error(KG_ERR_NOT_FOUND, "%s: no *_test.csv files", test_dir);
    goto done;
  }
  qsort(names, n_names, sizeof(*names), cmp_str);
  if (!(d->subjects = kg_arena_alloc(d->arena, n_names * sizeof(*d->subjects)))) {
    rc = kg_error_context("MMLU: ");
    goto done;
  }
  for (size_t s = 0; s < n_names; s++) {
    if (!(d->subjects[s] = kg_tasks_strdup(d, names[s]))) {
      rc = kg_error_context("MMLU: ");
      goto done;
    }
    d->n_subjects = (int)s + 1;
    snprintf(path, sizeof(path), "%s/test/%s_test.csv", dir, names[s]);
    if ((rc = load_csv(d, path, (int)s, 0)) < 0) goto done;
    snprintf(path, sizeof(path), "%s/dev/%s_dev.csv", dir, names[s]);
    if (!kg_path_exists(path)) {
      rc = kg_error(KG_ERR_NOT_FOUND, "%s: missing (MMLU few-shot examples come from dev/)", path);
      goto done;
    }
    if ((rc = load_csv(d, path, (int)s, 1)) < 0) goto done;
  }
done:
  if (dh) closedir(dh);
  for (size_t i = 0; i < n_names; i++) free(names[i]);
  free(names);
  return rc;
}
