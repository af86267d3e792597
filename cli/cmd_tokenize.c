/* kickgrid tokenize: encode text to ids or decode ids to text with any
 * supported tokenizer (SentencePiece .model, llama2.c .bin, tokenizer.json,
 * GPT-2 vocab.json + merges.txt, GGUF). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/error.h"
#include "io/log.h"
#include "io/mapfile.h"
#include "io/tokenizer.h"

static const char usage[] =
    "usage: kickgrid tokenize --tokenizer PATH [--bos|--no-bos] [--decode] [TEXT | -f FILE]\n\n"
    "Encodes TEXT (or the contents of FILE, or standard input) and prints the\n"
    "token ids separated by spaces. With --decode, reads ids (separated by\n"
    "whitespace) from TEXT, FILE or standard input and prints the text.\n\n"
    "options:\n"
    "  --tokenizer PATH  tokenizer.model, tokenizer.bin, tokenizer.json, vocab.json\n"
    "                    (merges.txt beside it) or a .gguf file\n"
    "  --bos, --no-bos   prepend BOS or not (default: what the tokenizer's own\n"
    "                    config does, e.g. yes for LLaMA, no for GPT-2)\n"
    "  --decode          decode ids instead of encoding text\n"
    "  -f FILE           read the input from FILE\n"
    "  --info            print the tokenizer's kind, vocabulary size and special ids\n"
    "  --time            print the encode speed on standard error\n";

static int read_stream(FILE *f, char **out, size_t *size) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  if (!buf) return kg_error(KG_ERR_NOMEM, "stdin: out of memory");
  for (;;) {
    if (n + 1 >= cap) {
      char *b = realloc(buf, cap * 2);
      if (!b) {
        free(buf);
        return kg_error(KG_ERR_NOMEM, "stdin: out of memory");
      }
      buf = b;
      cap *= 2;
    }
    size_t k = fread(buf + n, 1, cap - n - 1, f);
    n += k;
    if (k == 0) break;
  }
  if (ferror(f)) {
    free(buf);
    return kg_error(KG_ERR_IO, "stdin: read error");
  }
  buf[n] = '\0';
  *out = buf;
  *size = n;
  return KG_OK;
}

static int parse_ids(const char *s, int32_t **ids, size_t *n) {
  size_t cap = 64, k = 0;
  int32_t *v = malloc(cap * sizeof *v);
  if (!v) return kg_error(KG_ERR_NOMEM, "out of memory");
  while (*s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == ',') s++;
    if (!*s) break;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || errno || x < -1 || x > INT32_MAX) {
      free(v);
      return kg_error(KG_ERR_ARG, "--decode: '%.20s' is not a token id", s);
    }
    if (k == cap) {
      int32_t *w = realloc(v, 2 * cap * sizeof *v);
      if (!w) {
        free(v);
        return kg_error(KG_ERR_NOMEM, "out of memory");
      }
      v = w;
      cap *= 2;
    }
    v[k++] = (int32_t)x;
    s = end;
  }
  *ids = v;
  *n = k;
  return KG_OK;
}

static void print_info(const kg_tokenizer *tok) {
  printf("kind       %s\nvocab      %d\nbos        %d\neos        %d\nunk        %d\nadds_bos   %s\n",
         kg_tokenizer_describe(tok), kg_tokenizer_vocab_size(tok), kg_tokenizer_bos_id(tok), kg_tokenizer_eos_id(tok),
         kg_tokenizer_unk_id(tok), kg_tokenizer_adds_bos(tok) ? "yes" : "no");
}

int kg_cmd_tokenize(int argc, char **argv) {
  const char *path = NULL, *file = NULL, *text_arg = NULL;
  int bos = -1, decode = 0, info = 0, timing = 0, status = 0;
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--bos")) bos = 1;
    else if (!strcmp(a, "--no-bos")) bos = 0;
    else if (!strcmp(a, "--decode")) decode = 1;
    else if (!strcmp(a, "--info")) info = 1;
    else if (!strcmp(a, "--time")) timing = 1;
    else if (!strcmp(a, "--tokenizer") || !strcmp(a, "-f")) {
      if (i + 1 >= argc) return kg_cli_usage_error("tokenize", "%s needs a value", a);
      if (a[1] == 'f') file = argv[++i];
      else path = argv[++i];
    } else if (!strcmp(a, "--")) {
      if (i + 1 < argc) text_arg = argv[++i];
      if (i + 1 < argc) return kg_cli_usage_error("tokenize", "give the text as one argument");
    } else if (a[0] == '-' && a[1]) {
      return kg_cli_usage_error("tokenize", "unknown option %s", a);
    } else {
      if (text_arg) return kg_cli_usage_error("tokenize", "give the text as one argument (quote it)");
      text_arg = a;
    }
  }
  if (!path) return kg_cli_usage_error("tokenize", "--tokenizer is required");
  if (file && text_arg) return kg_cli_usage_error("tokenize", "give either TEXT or -f FILE, not both");

  kg_tokenizer *tok = NULL;
  char *owned = NULL, *out_text = NULL;
  int32_t *ids = NULL;
  size_t len = 0, n_ids = 0;
  const char *input = text_arg;
  if (kg_tokenizer_load(path, &tok) < 0) goto fail;
  if (info) {
    print_info(tok);
    if (!text_arg && !file) goto done;
  }
  if (file) {
    if (kg_read_file(file, &owned, &len) < 0) goto fail;
    input = owned;
  } else if (!text_arg) {
    if (read_stream(stdin, &owned, &len) < 0) goto fail;
    input = owned;
  } else {
    len = strlen(text_arg);
  }
  if (decode) {
    if (parse_ids(input, &ids, &n_ids) < 0 || kg_tokenizer_decode(tok, ids, n_ids, &out_text) < 0) goto fail;
    fputs(out_text, stdout);
    fputc('\n', stdout);
    goto done;
  }
  int add_bos = bos >= 0 ? bos : kg_tokenizer_adds_bos(tok);
  double t0 = kg_now();
  if (kg_tokenizer_encode(tok, input, len, add_bos, &ids, &n_ids) < 0) goto fail;
  double dt = kg_now() - t0;
  for (size_t i = 0; i < n_ids; i++) printf(i ? " %d" : "%d", ids[i]);
  putchar('\n');
  if (timing)
    fprintf(stderr, "%zu bytes -> %zu tokens in %.3f s (%.2f MB/s)\n", len, n_ids, dt,
            dt > 0 ? (double)len / dt / 1e6 : 0.0);
  goto done;
fail:
  status = kg_cli_fail("tokenize");
done:
  free(ids);
  free(out_text);
  free(owned);
  kg_tokenizer_free(tok);
  return status;
}
