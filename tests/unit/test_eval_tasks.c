/* Task files and prompts: every task loads with the row counts of
 * shared/data/SOURCES.md; prompts of chosen documents equal strings written
 * out by hand from lm-eval's templates (boolq/piqa/arc/openbookqa/winogrande/
 * lambada/hellaswag/mmlu YAMLs) and LLM-KICK's scripts; calibration texts
 * carry the gold answer; malformed files give one-line errors naming
 * file:line. Few-shot sampling is checked against CPython in
 * tests/py/test_eval_prompts.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/error.h"
#include "io/paths.h"
#include "io/tasks.h"
#include "kgtest.h"

static kg_task_data *load(const char *name, size_t expect_docs) {
  kg_task_data *d = NULL;
  CHECK_OK(kg_task_load(name, &d));
  if (d) CHECK_MSG(d->n_docs == expect_docs, "%s: %zu documents, expected %zu", name, d->n_docs, expect_docs);
  return d;
}

static void expect_prompt(kg_task_data *d, size_t doc, int k, kg_prompt_style style, const char *ctx0,
                          const char *cont0, int n_ctx, int n_cont) {
  kg_task_prompt p;
  kg_fewshot_state fs;
  kg_fewshot_init(&fs, 1234);
  CHECK_OK(kg_task_prompt_build(d, doc, k, style, &fs, &p));
  CHECK_MSG(p.n_contexts == n_ctx && p.n_continuations == n_cont, "%s doc %zu: %d contexts, %d continuations",
            d->info->name, doc, p.n_contexts, p.n_continuations);
  if (p.n_contexts) CHECK_STR(p.contexts[0], ctx0);
  if (cont0 && p.n_continuations) CHECK_STR(p.continuations[0], cont0);
  kg_task_prompt_free(&p);
}

static void test_zero_shot_prompts(void) {
  kg_task_data *d;
  if ((d = load("boolq", 3270))) {
    /* "{{passage}}\nQuestion: {{question}}?\nAnswer:", choices no/yes */
    expect_prompt(d, 2644, 0, KG_PROMPT_HARNESS,
                  "The season is set for release in 2019.\nQuestion: are they going to make a punisher season 2?\nAnswer:",
                  " no", 1, 2);
    CHECK(d->docs[2644].gold == 1 && !strcmp(d->docs[2644].choices[1], "yes"));
    kg_task_free(d);
  }
  if ((d = load("piqa", 1838))) { /* "Question: {{goal}}\nAnswer:" */
    expect_prompt(d, 1, 0, KG_PROMPT_HARNESS, "Question: dresser\nAnswer:", " replace drawer with bobby pin", 1, 2);
    kg_task_free(d);
  }
  if ((d = load("arc_easy", 2376))) { /* "Question: {{question}}\nAnswer:" */
    expect_prompt(d, 1, 0, KG_PROMPT_HARNESS,
                  "Question: Which piece of safety equipment is used to keep mold spores from entering the "
                  "respiratory system?\nAnswer:",
                  " safety goggles", 1, 4);
    kg_task_free(d);
  }
  if ((d = load("arc_challenge", 1172))) kg_task_free(d);
  if ((d = load("openbookqa", 500))) { /* doc_to_text: question_stem */
    expect_prompt(d, 1, 0, KG_PROMPT_HARNESS, "There is most likely going to be fog around:", " a marsh", 1, 4);
    kg_task_free(d);
  }
  if ((d = load("winogrande", 1267))) { /* partial contexts; " " + the text after the blank */
    expect_prompt(d, 0, 0, KG_PROMPT_HARNESS, "Sarah was a much better surgeon than Maria so Sarah",
                  " always got the easier cases.", 2, 1);
    kg_task_free(d);
  }
  if ((d = load("lambada", 5153))) { /* text without its last word; " " + the last word */
    expect_prompt(d, 3604, 0, KG_PROMPT_HARNESS,
                  "“Happy to comply,” I said.\n“So, you’re Ben. Ben what?” \n“No, I’m Matt…Matt Casale. I live down "
                  "the street.”\n“Wasn’t he just calling you ‘Ben’ just now?”\n“No, ‘Bean’—it’s a",
                  " nickname", 1, 1);
    kg_task_free(d);
  }
  if ((d = load("hellaswag", 10042))) {
    /* preprocess(label + ": " + ctx_a + " " + ctx_b.capitalize()): the original
     * ctx_b "he" / "the lady" is capitalized; WikiHow brackets are removed */
    expect_prompt(d, 0, 0, KG_PROMPT_HARNESS, "Roof shingle removal: A man is sitting on a roof. He",
                  " is using wrap to wrap a pair of skis.", 1, 4);
    expect_prompt(d, 1, 0, KG_PROMPT_HARNESS,
                  "Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady",
                  " swings and lands in her arms.", 1, 4);
    CHECK(d->docs[0].gold == 3);
    int spans = 0; /* "[...]" spans are gone; a lone "[" stays, as in the harness */
    for (size_t i = 0; i < d->n_docs; i++) {
      const char *o = strchr(d->docs[i].text, '[');
      spans += o && strchr(o, ']');
      for (int j = 0; j < 4; j++) {
        o = strchr(d->docs[i].choices[j], '[');
        spans += o && strchr(o, ']');
      }
    }
    CHECK_MSG(spans == 0, "%d HellaSwag texts still hold a [...] span", spans);
    kg_task_free(d);
  }
  if ((d = load("triviaqa", 3000))) {
    expect_prompt(d, 1, 0, KG_PROMPT_LLMKICK, "Question: What type of animal is a dik-dik?\nAnswer:", NULL, 1, 0);
    CHECK(d->docs[1].n_answers == 5); /* "Antelope" once: answer and aliases deduplicated */
    kg_task_free(d);
  }
  if ((d = load("freebaseqa", 19520))) { /* LLM-KICK main_freebase.py, always zero-shot */
    expect_prompt(d, 2, 3, KG_PROMPT_LLMKICK,
                  "Please give answer to this question: Who wrote the 1956 novel '101 Dalmatians'?\nThe answer is ",
                  NULL, 1, 0);
    CHECK(d->docs[2].n_answers == 1 && !strcmp(d->docs[2].answers[0], "dodie smith"));
    kg_task_free(d);
  }
}

static void test_mmlu(void) {
  kg_task_data *d = load("mmlu", 14042);
  if (!d) return;
  CHECK(d->n_subjects == 57 && d->n_fewshot == 285);
  CHECK_STR(d->subjects[0], "abstract_algebra");
  /* the first abstract_algebra test question is quoted (it holds commas) */
  CHECK_STR(d->docs[0].raw, "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.");
  CHECK(d->docs[0].gold == 1);
  const char *q0 = "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
                   "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:";
  char want[2048];
  snprintf(want, sizeof(want), "The following are multiple choice questions (with answers) about abstract algebra.\n\n%s",
           q0);
  expect_prompt(d, 0, 0, KG_PROMPT_HARNESS, want, " A", 1, 4);
  /* 1-shot: the first dev row with " B" (its answer index 1), then "\n\n" */
  snprintf(want, sizeof(want),
           "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
           "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n%s",
           q0);
  expect_prompt(d, 0, 1, KG_PROMPT_HARNESS, want, " A", 1, 4);
  /* LLM-KICK/hendrycks: "about  abstract algebra" (format_subject's leading space) */
  snprintf(want, sizeof(want),
           "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
           "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n%s",
           q0);
  expect_prompt(d, 0, 1, KG_PROMPT_LLMKICK, want, NULL, 1, 4);
  char *desc = kg_mmlu_description("high_school_us_history", KG_PROMPT_HARNESS);
  CHECK_STR(desc, "The following are multiple choice questions (with answers) about high school us history.\n\n");
  free(desc);
  kg_task_prompt p;
  CHECK(kg_task_prompt_build(d, 0, 6, KG_PROMPT_HARNESS, NULL, &p) == KG_ERR_ARG); /* dev has 5 per subject */
  kg_task_free(d);
}

static void test_calibration(void) {
  kg_text_list l = {0};
  CHECK_OK(kg_task_calibration_texts("boolq", &l));
  CHECK(l.count == 3270);
  if (l.count > 2644)
    CHECK_STR(l.texts[2644],
              "The season is set for release in 2019.\nQuestion: are they going to make a punisher season 2?\nAnswer: yes");
  kg_text_list_free(&l);
  kg_task_data *d = NULL;
  CHECK_OK(kg_task_load("winogrande", &d));
  if (d) {
    CHECK_OK(kg_task_data_calibration_texts(d, 2, &l));
    CHECK(l.count == 2);
    if (l.count == 2) CHECK_STR(l.texts[0], "Sarah was a much better surgeon than Maria so Maria always got the easier cases.");
    kg_text_list_free(&l);
    kg_task_free(d);
  }
  CHECK_OK(kg_task_load("arc_easy", &d));
  if (d) {
    CHECK_OK(kg_task_data_calibration_texts(d, 2, &l));
    if (l.count == 2)
      CHECK_STR(l.texts[1], "Question: Which piece of safety equipment is used to keep mold spores from entering the "
                            "respiratory system?\nAnswer: breathing mask");
    kg_text_list_free(&l);
    kg_task_free(d);
  }
  CHECK(kg_task_calibration_texts("no_such_task", &l) == KG_ERR_NOT_FOUND);
}

static void test_helpers(void) {
  char *s = kg_hellaswag_preprocess("  [header] How to dry a cat [title] Use a towel. [step] Pat it dry.  ");
  CHECK_STR(s, " How to dry a cat. Use a towel. Pat it dry."); /* the harness keeps the space left by "[header]" */
  free(s);
  const char *t = "abc \t\n\xc2\xa0"; /* U+00A0 is whitespace to Python */
  CHECK(kg_py_rstrip_len(t, strlen(t)) == 3);
  CHECK(kg_py_lstrip_off("\xe3\x80\x80x", 4) == 3); /* U+3000 */
  CHECK(kg_task_find("lambada_openai") == kg_task_find("lambada"));
  CHECK(kg_task_find("nope") == NULL);
}

/* Writes text to a temporary file; returns its path (static buffer). */
static const char *tmpfile_with(const char *name, const char *text) {
  static char path[256];
  snprintf(path, sizeof(path), "/tmp/kg_eval_tasks_%d_%s", (int)getpid(), name);
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
  return path;
}

/* code 0: any error code */
static void expect_error(const char *task, const char *path, int code, const char *needle) {
  kg_task_data *d = NULL;
  int rc = kg_task_load_path(task, path, &d);
  CHECK_MSG(code ? rc == code : rc < 0, "%s: got %d (%s), expected %d", path, rc, kg_error_message(), code);
  CHECK_MSG(strstr(kg_error_message(), needle) != NULL, "message '%s' lacks '%s'", kg_error_message(), needle);
  CHECK(strchr(kg_error_message(), '\n') == NULL);
  CHECK(d == NULL);
  unlink(path);
}

static void test_bad_input(void) {
  expect_error("boolq", tmpfile_with("a.jsonl", "{\"query\": \"Passage: x\\nQuestion: y?\", \"choices\": [\"no\", \"yes\"], \"gold\": 1}\n{oops\n"),
               KG_ERR_FORMAT, ":2:");
  expect_error("piqa", tmpfile_with("b.jsonl", "{\"query\": \"Question: x\\n\", \"choices\": [\"a\", \"b\"], \"gold\": 2}\n"),
               KG_ERR_FORMAT, "gold 2");
  expect_error("boolq", tmpfile_with("c.jsonl", "{\"query\": \"no passage\", \"choices\": [\"no\", \"yes\"], \"gold\": 0}\n"),
               KG_ERR_FORMAT, ":1:");
  expect_error("winogrande", tmpfile_with("d.jsonl", "{\"context_options\": [\"a\", 3], \"continuation\": \"x\", \"gold\": 0}\n"),
               KG_ERR_FORMAT, "not a string");
  expect_error("lambada", tmpfile_with("e.jsonl", "\n\n"), KG_ERR_FORMAT, "no lambada examples");
  expect_error("hellaswag", tmpfile_with("f.txt", "Label: ctx\n7\na\nb\nc\nd\n"), KG_ERR_FORMAT, ":2:");
  expect_error("hellaswag", tmpfile_with("g.txt", "Label: ctx\n1\na\nb\n"), KG_ERR_FORMAT, "truncated");
  expect_error("hellaswag", tmpfile_with("h.bz2", "this is not bzip2"), KG_ERR_FORMAT, "bzip2");
  expect_error("triviaqa", "/nonexistent/triviaqa.jsonl", 0, "/nonexistent/triviaqa.jsonl");
  /* MMLU: a folder with a broken CSV */
  char dir[256], sub[300], file[400];
  snprintf(dir, sizeof(dir), "/tmp/kg_eval_mmlu_%d", (int)getpid());
  snprintf(sub, sizeof(sub), "%s/test", dir);
  CHECK_OK(kg_mkdir_p(sub));
  snprintf(sub, sizeof(sub), "%s/dev", dir);
  CHECK_OK(kg_mkdir_p(sub));
  snprintf(file, sizeof(file), "%s/test/x_test.csv", dir);
  FILE *f = fopen(file, "w");
  if (f) {
    fputs("question,choice0,choice1,choice2,choice3,answer\n\"ok, quoted\",a,b,c,d,0\n\"unterminated,a,b,c,d,1\n", f);
    fclose(f);
  }
  kg_task_data *d = NULL;
  int rc = kg_task_load_path("mmlu", dir, &d);
  CHECK(rc == KG_ERR_FORMAT && strstr(kg_error_message(), "x_test.csv:3"));
  f = fopen(file, "w");
  if (f) {
    fputs("question,choice0,choice1,choice2,choice3,answer\n\"multi\nline \"\"q\"\"\",a,b,c,d,3\n", f);
    fclose(f);
  }
  rc = kg_task_load_path("mmlu", dir, &d); /* dev file missing */
  CHECK(rc == KG_ERR_NOT_FOUND && strstr(kg_error_message(), "x_dev.csv"));
  snprintf(file, sizeof(file), "%s/dev/x_dev.csv", dir);
  f = fopen(file, "w");
  if (f) {
    fputs("Q1,a,b,c,d,C\n", f); /* hendrycks layout: no header, letter answers */
    fclose(f);
  }
  CHECK_OK(kg_task_load_path("mmlu", dir, &d));
  if (d) {
    CHECK(d->n_docs == 1 && d->docs[0].gold == 3 && !strcmp(d->docs[0].raw, "multi\nline \"q\""));
    CHECK(d->n_fewshot == 1 && d->fewshot[0].gold == 2);
    kg_task_free(d);
  }
  unlink(file);
  snprintf(file, sizeof(file), "%s/test/x_test.csv", dir);
  unlink(file);
  snprintf(sub, sizeof(sub), "%s/test", dir);
  rmdir(sub);
  snprintf(sub, sizeof(sub), "%s/dev", dir);
  rmdir(sub);
  rmdir(dir);
}

int main(void) {
  kg_paths_set_data_dir(kgtest_data_dir());
  test_helpers();
  test_zero_shot_prompts();
  test_mmlu();
  test_calibration();
  test_bad_input();
  return kgtest_finish("test_eval_tasks");
}
