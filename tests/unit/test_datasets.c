/* Text dataset readers: counts on the shared files (as SOURCES.md states
 * them), the Hugging Face WikiText row rule on hand-made edge cases, JSONL
 * error messages with file:line, TinyStories splitting and the UTF-8 check.
 * The byte-exact comparisons against an independent Python rebuild live in
 * tests/py/test_datasets.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/datasets.h"
#include "io/error.h"
#include "io/paths.h"
#include "kgtest.h"

static char tmp_path[64];

static const char *write_tmp(const char *content, size_t len) {
  snprintf(tmp_path, sizeof(tmp_path), "/tmp/kg_test_datasets_XXXXXX");
  int fd = mkstemp(tmp_path);
  if (fd < 0 || write(fd, content, len) != (ssize_t)len) {
    fprintf(stderr, "cannot write %s\n", tmp_path);
    exit(1);
  }
  close(fd);
  return tmp_path;
}

static void test_shared_counts(void) {
  kg_paths_set_data_dir(kgtest_data_dir());
  kg_text_list train = {0}, valid = {0}, rows = {0}, stories = {0};
  CHECK_OK(kg_c4_train_texts(&train));
  CHECK_MSG(train.count == 1041, "c4 train: %zu documents", train.count);
  CHECK_OK(kg_c4_validation_texts(&valid));
  CHECK_MSG(valid.count == 1025, "c4 validation: %zu documents", valid.count);
  if (train.count) CHECK(!strncmp(train.texts[0], "Beginners BBQ Class Taking Place in Missoula!", 45));

  char path[4096];
  CHECK_OK(kg_data_path(path, sizeof(path), KG_WIKITEXT2_TEST_FILE));
  CHECK_OK(kg_wikitext_rows(path, &rows));
  size_t blank = 0;
  for (size_t i = 0; i < rows.count; i++) blank += rows.lens[i] == 0;
  CHECK_MSG(rows.count == 4358 && blank == 1467, "wikitext: %zu rows, %zu blank", rows.count, blank);
  if (rows.count > 1) CHECK_STR(rows.texts[1], " = Robert Boulter = \n");

  /* The joined text is the rows with "\n\n" between them. */
  char *text = NULL;
  size_t len = 0, expect = 0;
  for (size_t i = 0; i < rows.count; i++) expect += rows.lens[i];
  expect += 2 * (rows.count - 1);
  CHECK_OK(kg_wikitext2_test_text(&text, &len));
  CHECK(len == expect && text && strlen(text) == len);
  if (text) CHECK(!strncmp(text, "\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is", 45));
  kg_text_free(text);

  CHECK_OK(kg_data_path(path, sizeof(path), KG_TINYSTORIES_VALID_FILE));
  CHECK_OK(kg_tinystories_texts(path, &stories));
  CHECK_MSG(stories.count == 232, "tinystories: %zu stories", stories.count);
  if (stories.count) CHECK(!strncmp(stories.texts[0], "Spot. Spot saw", 14));

  size_t used = 0;
  CHECK_OK(kg_c4_validation_text(KG_C4_VALIDATION_REFERENCE_DOCS, &text, &len, &used));
  CHECK(used == valid.count);
  size_t joined = 0;
  for (size_t i = 0; i < valid.count; i++) joined += valid.lens[i] + (i ? 1 : 0);
  CHECK(len == joined);
  kg_text_free(text);
  CHECK_OK(kg_c4_validation_text(2, &text, &len, &used));
  CHECK(used == 2 && valid.count >= 2 && len == valid.lens[0] + 1 + valid.lens[1]);
  if (text && valid.count >= 2) CHECK(text[valid.lens[0]] == ' ' && !strcmp(text + valid.lens[0] + 1, valid.texts[1]));
  kg_text_free(text);

  kg_text_list_free(&train);
  kg_text_list_free(&valid);
  kg_text_list_free(&rows);
  kg_text_list_free(&stories);
  CHECK(train.count == 0 && train.texts == NULL);
}

static void test_wikitext_rule(void) {
  /* CRLF and a lone CR end lines (Python universal newlines); a row that is
   * only whitespace, Unicode spaces included (U+00A0, U+3000), becomes "". */
  const char content[] = "a\r\nb\rc\n \n\xc2\xa0\xe3\x80\x80\n\t\nx \xc2\xa0\nend";
  const char *p = write_tmp(content, sizeof(content) - 1);
  kg_text_list rows = {0};
  CHECK_OK(kg_wikitext_rows(p, &rows));
  const char *want[] = {"a\n", "b\n", "c\n", "", "", "", "x \xc2\xa0\n", "end"};
  CHECK_MSG(rows.count == 8, "%zu rows", rows.count);
  for (size_t i = 0; i < rows.count && i < 8; i++) CHECK_STR(rows.texts[i], want[i]);
  kg_text_list_free(&rows);
  char *text = NULL;
  size_t len = 0;
  CHECK_OK(kg_wikitext_text(p, &text, &len));
  CHECK_STR(text, "a\n\n\nb\n\n\nc\n\n\n\n\n\n\n\n\nx \xc2\xa0\n\n\nend");
  kg_text_free(text);
  unlink(p);

  const char bad[] = "ok\n\xff\n";
  p = write_tmp(bad, sizeof(bad) - 1);
  CHECK(kg_wikitext_rows(p, &rows) == KG_ERR_FORMAT);
  CHECK(strstr(kg_error_message(), ":2: invalid UTF-8") != NULL);
  kg_text_list_free(&rows);
  unlink(p);
}

static void expect_jsonl_error(const char *content, const char *needle) {
  const char *p = write_tmp(content, strlen(content));
  kg_text_list list = {0};
  int rc = kg_jsonl_texts(p, "text", &list);
  char where[128];
  snprintf(where, sizeof(where), "%s%s", p, needle);
  CHECK_MSG(rc == KG_ERR_FORMAT && strstr(kg_error_message(), where), "rc %d, message '%s', wanted '%s'", rc,
            kg_error_message(), where);
  kg_text_list_free(&list);
  unlink(p);
}

static void test_jsonl(void) {
  const char good[] = "{\"text\": \"one\", \"x\": 1}\n\n  \n{\"text\": \"t\\u00e9\\n\\\"q\\\"\"}\r\n{\"text\":\"\"}";
  const char *p = write_tmp(good, sizeof(good) - 1);
  kg_text_list list = {0};
  CHECK_OK(kg_jsonl_texts(p, "text", &list));
  CHECK(list.count == 3);
  if (list.count == 3) {
    CHECK_STR(list.texts[0], "one");
    CHECK_STR(list.texts[1], "t\xc3\xa9\n\"q\"");
    CHECK(list.lens[2] == 0);
  }
  kg_text_list_free(&list);
  unlink(p);

  expect_jsonl_error("{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"\n", ":3: invalid JSON");
  expect_jsonl_error("{\"text\": \"a\"}\n{\"body\": \"b\"}\n", ":2: no field \"text\"");
  expect_jsonl_error("{\"text\": 5}\n", ":1: field \"text\" is not a string");
  expect_jsonl_error("[\"text\"]\n", ":1: expected a JSON object");
  expect_jsonl_error("{\"text\": \"a\"} x\n", ":1: unexpected text after the JSON value");
  expect_jsonl_error("\n{\"text\": \"a\\u0000b\"}\n", ":2: a string holds \\u0000");
  expect_jsonl_error("{\"text\": \"\xc0\xaf\"}\n", ":1: invalid UTF-8");
  /* An escaped backslash followed by u0000 is ordinary text. */
  const char literal[] = "{\"text\": \"a\\\\u0000\"}\n";
  p = write_tmp(literal, sizeof(literal) - 1);
  CHECK_OK(kg_jsonl_texts(p, "text", &list));
  if (list.count == 1) CHECK_STR(list.texts[0], "a\\u0000");
  kg_text_list_free(&list);
  unlink(p);
  CHECK(kg_jsonl_texts("/nonexistent/kg.jsonl", "text", &list) == KG_ERR_NOT_FOUND);
}

static void test_tinystories(void) {
  const char content[] = " tail of a story.\n<|endoftext|>\nOnce upon a time.\n\nThe end.\n  <|endoftext|> \r\n"
                         "<|endoftext|>\nNot a <|endoftext|> separator.\n<|endoftext|>\n";
  const char *p = write_tmp(content, sizeof(content) - 1);
  kg_text_list list = {0};
  CHECK_OK(kg_tinystories_texts(p, &list));
  CHECK_MSG(list.count == 3, "%zu stories", list.count);
  if (list.count == 3) {
    CHECK_STR(list.texts[0], "tail of a story.");
    CHECK_STR(list.texts[1], "Once upon a time.\n\nThe end.");
    CHECK_STR(list.texts[2], "Not a <|endoftext|> separator.");
  }
  kg_text_list_free(&list);
  unlink(p);
}

static void test_utf8_and_join(void) {
  CHECK_OK(kg_text_check_utf8("t", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
  CHECK(kg_text_check_utf8("t", "\xc0\x80", 2) == KG_ERR_FORMAT);         /* overlong NUL */
  CHECK(kg_text_check_utf8("t", "\xe0\x9f\xbf", 3) == KG_ERR_FORMAT);     /* overlong 3-byte */
  CHECK(kg_text_check_utf8("t", "\xed\xa0\x80", 3) == KG_ERR_FORMAT);     /* surrogate */
  CHECK(kg_text_check_utf8("t", "\xf4\x90\x80\x80", 4) == KG_ERR_FORMAT); /* above U+10FFFF */
  CHECK(kg_text_check_utf8("t", "\xe2\x82", 2) == KG_ERR_FORMAT);         /* cut short */
  CHECK(kg_text_check_utf8("t", "a\nb\0c", 5) == KG_ERR_FORMAT);
  CHECK(strstr(kg_error_message(), "t:2: NUL byte") != NULL);

  kg_text_list l = {0};
  CHECK_OK(kg_text_list_push(&l, "ab", 2));
  CHECK_OK(kg_text_list_push(&l, "", 0));
  CHECK_OK(kg_text_list_push(&l, "cd", 2));
  char *s = NULL;
  size_t n = 0;
  CHECK_OK(kg_text_list_join(&l, 0, 3, "--", &s, &n));
  CHECK_STR(s, "ab----cd");
  CHECK(n == 8);
  kg_text_free(s);
  CHECK_OK(kg_text_list_join(&l, 1, 99, " ", &s, &n));
  CHECK_STR(s, " cd");
  kg_text_free(s);
  CHECK_OK(kg_text_list_join(&l, 5, 1, " ", &s, &n));
  CHECK(s && n == 0 && s[0] == '\0');
  kg_text_free(s);
  kg_text_list_free(&l);
}

int main(void) {
  test_shared_counts();
  test_wikitext_rule();
  test_jsonl();
  test_tinystories();
  test_utf8_and_join();
  return kgtest_finish("test_datasets");
}
