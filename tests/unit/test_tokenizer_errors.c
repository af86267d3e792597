/* Bad tokenizer files give a one-line error naming the file and a negative
 * code, never a crash: truncations, wrong magic, malformed JSON, merges that
 * reference unknown tokens, missing side files; and every prefix of the
 * fuzzer's seed files either loads or fails cleanly. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/error.h"
#include "io/mapfile.h"
#include "io/tokenizer.h"
#include "kgtest.h"

static char dir[256];

static const char *put(const char *name, const void *data, size_t n) {
  static char path[8][512];
  static int k;
  char *p = path[k++ % 8];
  snprintf(p, sizeof path[0], "%s/%s", dir, name);
  char sub[512];
  snprintf(sub, sizeof sub, "%s", p);
  char *slash = strrchr(sub, '/');
  if (slash) {
    *slash = '\0';
    mkdir(sub, 0700);
  }
  FILE *f = fopen(p, "wb");
  if (f) {
    fwrite(data, 1, n, f);
    fclose(f);
  }
  return p;
}

static const char *puts_file(const char *name, const char *text) { return put(name, text, strlen(text)); }

/* Loading fails with `code` (0: any error) and a one-line message naming the file and containing `needle`. */
static void expect_fail(const char *path, int code, const char *needle) {
  kg_tokenizer *t = NULL;
  kg_error_clear();
  int rc = kg_tokenizer_load(path, &t);
  const char *msg = kg_error_message();
  CHECK_MSG(rc < 0 && !t, "%s loaded (rc %d)", path, rc);
  CHECK_MSG(code == 0 || rc == code, "%s: rc %d, want %d (%s)", path, rc, code, msg);
  CHECK_MSG(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
  CHECK_MSG(!strchr(msg, '\n'), "message is not one line: %s", msg);
  CHECK_MSG(!needle || strstr(msg, needle), "message lacks '%s': %s", needle, msg);
  kg_tokenizer_free(t);
}

static char *slurp(const char *path, size_t *n) {
  char *d = NULL;
  CHECK_OK(kg_read_file(path, &d, n));
  return d;
}

static void data_path(char *out, size_t cap, const char *rel) { snprintf(out, cap, "%s/%s", kgtest_data_dir(), rel); }

static const char TINY_JSON[] =
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]},"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}}";

static void bad_json_files(void) {
  kg_tokenizer *t = NULL;
  /* the tiny file is fine as it is */
  CHECK_OK(kg_tokenizer_load(puts_file("ok/tokenizer.json", TINY_JSON), &t));
  kg_tokenizer_free(t);
  expect_fail(puts_file("trunc/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "),
              KG_ERR_FORMAT, "malformed JSON");
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", TINY_JSON);
  char *m = strstr(buf, "\"a b\"");
  memcpy(m, "\"a z\"", 5);
  expect_fail(puts_file("merge/tokenizer.json", buf), KG_ERR_FORMAT, "merge 0");
  expect_fail(puts_file("nomodel/tokenizer.json", "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}"),
              KG_ERR_FORMAT, "vocab");
  expect_fail(puts_file("wp/tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}"),
              KG_ERR_UNSUPPORTED, "WordPiece");
  expect_fail(puts_file("id/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}"),
              KG_ERR_FORMAT, NULL);
  expect_fail(puts_file("re/tokenizer.json",
                        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}}"),
              KG_ERR_FORMAT, "regex");
  /* GPT-2 files: vocab.json without merges.txt, and a bad merges line */
  expect_fail(puts_file("gpt2a/vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2}"), KG_ERR_NOT_FOUND, "merges.txt");
  puts_file("gpt2b/merges.txt", "#version: 0.2\na b\na b c\n");
  expect_fail(puts_file("gpt2b/vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2}"), KG_ERR_FORMAT, "line 3");
  puts_file("gpt2c/merges.txt", "#version: 0.2\na q\n");
  expect_fail(puts_file("gpt2c/vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2}"), KG_ERR_FORMAT, "merge 0");
}

static void bad_binary_files(void) {
  char p[4096];
  size_t n = 0;
  data_path(p, sizeof p, "models/stories260K/tok512.bin");
  char *bin = slurp(p, &n);
  data_path(p, sizeof p, "tokenizers/llama2/tokenizer.model");
  size_t nm = 0;
  char *model = slurp(p, &nm);
  if (!bin || !model) return;
  expect_fail(put("trunc.bin", bin, 1000), KG_ERR_FORMAT, "token");
  expect_fail(put("magic.bin", "\xff\xff\xff\x7f\x00\x00", 6), KG_ERR_FORMAT, "max_token_length");
  expect_fail(put("empty.bin", "", 0), KG_ERR_FORMAT, NULL);
  expect_fail(put("trunc.model", model, 20000), KG_ERR_FORMAT, "past the end");
  expect_fail(put("garbage.model", "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12), KG_ERR_FORMAT, NULL);
  expect_fail(put("nopieces.model", "\x12\x02\x18\x02", 4), KG_ERR_FORMAT, "no pieces");
  /* a unigram model (model_type 1) is refused rather than encoded wrongly */
  char uni[] = "\x0a\x0e" "\x0a\x05<unk>" "\x15\x00\x00\x00\x00" "\x18\x02" "\x12\x02\x18\x01";
  expect_fail(put("unigram.model", uni, sizeof uni - 1), KG_ERR_UNSUPPORTED, "BPE");
  expect_fail(put("bad.gguf", "GGUF\x03\x00\x00\x00", 8), 0, NULL);
  char missing[600];
  snprintf(missing, sizeof missing, "%s/does-not-exist.model", dir);
  expect_fail(missing, KG_ERR_NOT_FOUND, NULL);
  free(bin);
  free(model);
}

/* Every prefix of every seed file (format byte first) loads or fails cleanly;
 * the whole files load and encode. */
static void seed_prefixes(void) {
  char cdir[4096];
  snprintf(cdir, sizeof cdir, "%s/tests/fuzz/corpus/tokenizer", KG_SOURCE_DIR);
  DIR *d = opendir(cdir);
  CHECK_MSG(d != NULL, "no seed corpus at %s", cdir);
  if (!d) return;
  int files = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", cdir, e->d_name);
    size_t n = 0;
    char *data = slurp(path, &n);
    if (!data || n < 2) continue;
    files++;
    kg_tokenizer_format fmt = (kg_tokenizer_format)(data[0] % 4);
    kg_tokenizer *t = NULL;
    CHECK_MSG(kg_tokenizer_load_memory(fmt, data + 1, n - 1, e->d_name, &t) == 0, "%s: %s", e->d_name,
              kg_error_message());
    int32_t *ids = NULL;
    size_t k = 0;
    CHECK_OK(t ? kg_tokenizer_encode(t, "the 123 and then", 16, 0, &ids, &k) : 0);
    CHECK(!t || k > 0);
    free(ids);
    kg_tokenizer_free(t);
    for (size_t len = 0; len < n - 1; len += len < 64 ? 1 : 7) {
      t = NULL;
      kg_error_clear();
      int rc = kg_tokenizer_load_memory(fmt, data + 1, len, e->d_name, &t);
      CHECK_MSG(rc == 0 || (!t && strstr(kg_error_message(), e->d_name)), "%s[:%zu]: rc %d: %s", e->d_name, len, rc,
                kg_error_message());
      kg_tokenizer_free(t);
    }
    free(data);
  }
  closedir(d);
  CHECK(files >= 4);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/kg_tokerr_XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  bad_json_files();
  bad_binary_files();
  seed_prefixes();
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return kgtest_finish("test_tokenizer_errors");
}
