/* Opening a model by name: paths, aliases, synthetic specs, and the
 * tokenizer that belongs with each kind of checkpoint. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "io/error.h"
#include "io/mapfile.h"
#include "io/gguf.h"
#include "io/manifest.h"
#include "io/paths.h"
#include "io/synthetic.h"
#include "model/model.h"

static int open_checkpoint(const char *spec, kg_checkpoint **ck) {
  if (!strncmp(spec, "synthetic:", 10)) {
    kg_synthetic_spec syn;
    KG_TRY(kg_synthetic_spec_parse(spec + 10, &syn));
    return kg_synthetic_checkpoint(&syn, ck);
  }
  char path[PATH_MAX];
  KG_TRY(kg_resolve_model(spec, path, sizeof(path)));
  return kg_checkpoint_open(path, ck);
}

int kg_model_load(const char *spec, kg_backend *be, kg_model **out, kg_tokenizer **tok) {
  int rc = KG_OK;
  kg_checkpoint *ck = NULL;
  *out = NULL;
  if (tok) *tok = NULL;
  if ((rc = open_checkpoint(spec, &ck)) < 0) goto done;
  if ((rc = kg_model_from_checkpoint(ck, be, out)) < 0) goto done;
  snprintf((*out)->source, sizeof((*out)->source), "%s", spec);
  if (tok && (rc = kg_model_tokenizer(spec, ck, tok, (*out)->tokenizer_source, sizeof((*out)->tokenizer_source))) < 0) {
    kg_model_free(*out);
    *out = NULL;
  }
done:
  kg_checkpoint_close(ck);
  return rc;
}

/* A llama2.c tokenizer export beside the model whose vocabulary matches. */
static int find_llama2c_tokenizer(const char *model_path, int vocab, kg_tokenizer **out, char *source, size_t cap) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", model_path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  else snprintf(dir, sizeof(dir), ".");
  DIR *d = opendir(dir);
  if (!d) return kg_error(KG_ERR_NOT_FOUND, "%s: cannot list the model's directory for a tokenizer", dir);
  int rc = KG_ERR_NOT_FOUND;
  struct dirent *e;
  char candidate[PATH_MAX];
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".bin") != 0) continue;
    if (strncmp(e->d_name, "tok", 3) != 0) continue;
    if (kg_path_join(candidate, sizeof(candidate), dir, e->d_name) < 0) continue;
    kg_tokenizer *t = NULL;
    if (kg_tokenizer_load(candidate, &t) < 0) continue;
    if (kg_tokenizer_vocab_size(t) == vocab) {
      *out = t;
      snprintf(source, cap, "%s", candidate);
      rc = KG_OK;
      break;
    }
    kg_tokenizer_free(t);
  }
  closedir(d);
  if (rc < 0)
    return kg_error(KG_ERR_NOT_FOUND, "%s: no tokenizer (tok*.bin with %d tokens) beside the model", model_path, vocab);
  return KG_OK;
}

/* Synthetic models borrow their family's real tokenizer from the data directory. */
static int synthetic_tokenizer(int vocab, kg_tokenizer **out, char *source, size_t cap) {
  const char *rel = vocab == 32000 ? "tokenizers/llama2/tokenizer.model"
                    : vocab >= 128000 ? "tokenizers/llama3/tokenizer.json"
                    : vocab >= 50257 ? "tokenizers/gpt2/vocab.json"
                    : vocab >= 512 ? "models/stories260K/tok512.bin"
                                   : NULL;
  if (!rel) return kg_error(KG_ERR_UNSUPPORTED, "no tokenizer fits a synthetic vocabulary of %d", vocab);
  char path[PATH_MAX];
  KG_TRY(kg_data_path(path, sizeof(path), rel));
  KG_TRY(kg_tokenizer_load(path, out));
  snprintf(source, cap, "%s", path);
  if (kg_tokenizer_vocab_size(*out) > vocab) {
    kg_tokenizer_free(*out);
    *out = NULL;
    return kg_error(KG_ERR_UNSUPPORTED, "tokenizer %s is larger than the synthetic vocabulary of %d", path, vocab);
  }
  return KG_OK;
}

/* DIR/kickgrid.json {"tokenizer": PATH} written by kg_model_save_tokenizer. */
static int sidecar_tokenizer(const char *dir, kg_tokenizer **out, char *source, size_t cap) {
  char path[PATH_MAX], *text = NULL;
  KG_TRY(kg_path_join(path, sizeof(path), dir, "kickgrid.json"));
  if (!kg_path_exists(path)) return kg_error(KG_ERR_NOT_FOUND, "%s: no tokenizer.json, tokenizer.model, tokenizer .bin or kickgrid.json in the model directory", dir);
  KG_TRY(kg_read_file(path, &text, NULL));
  cJSON *root = cJSON_Parse(text);
  free(text);
  const cJSON *t = root ? cJSON_GetObjectItemCaseSensitive(root, "tokenizer") : NULL;
  int rc;
  if (!cJSON_IsString(t)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: expected {\"tokenizer\": \"PATH\"}", path);
  } else {
    snprintf(source, cap, "%s", t->valuestring);
    rc = kg_tokenizer_load(t->valuestring, out);
  }
  cJSON_Delete(root);
  return rc;
}

int kg_model_tokenizer(const char *spec, const kg_checkpoint *ck, kg_tokenizer **out, char *source, size_t cap) {
  char path[PATH_MAX];
  *out = NULL;
  switch (ck->format) {
  case KG_CKPT_GGUF:
    snprintf(source, cap, "%s", ck->path);
    return kg_tokenizer_from_gguf(ck->gguf, ck->path, out);
  case KG_CKPT_LLAMA2C: return find_llama2c_tokenizer(ck->path, ck->config.vocab_size, out, source, cap);
  case KG_CKPT_SYNTHETIC: return synthetic_tokenizer(ck->config.vocab_size, out, source, cap);
  case KG_CKPT_HF: {
    static const char *const names[] = {"tokenizer.json", "tokenizer.model", "tokenizer.bin"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
      KG_TRY(kg_path_join(path, sizeof(path), ck->path, names[i]));
      if (kg_path_exists(path)) {
        snprintf(source, cap, "%s", path);
        return kg_tokenizer_load(path, out);
      }
    }
    char bin_model[PATH_MAX];
    KG_TRY(kg_path_join(bin_model, sizeof(bin_model), ck->path, "model.bin"));
    if (find_llama2c_tokenizer(bin_model, ck->config.vocab_size, out, source, cap) == KG_OK) return KG_OK;
    return sidecar_tokenizer(ck->path, out, source, cap);
  }
  }
  return kg_error(KG_ERR_UNSUPPORTED, "%s: unknown checkpoint format", spec);
}

static int copy_file(const char *from, const char *to) {
  char *data = NULL;
  size_t n = 0;
  KG_TRY(kg_read_file(from, &data, &n));
  FILE *f = fopen(to, "wb");
  int rc = KG_OK;
  if (!f || fwrite(data, 1, n, f) != n) rc = kg_error(KG_ERR_IO, "%s: cannot write", to);
  if (f && fclose(f) != 0 && rc >= 0) rc = kg_error(KG_ERR_IO, "%s: cannot write", to);
  free(data);
  return rc;
}

int kg_model_save_tokenizer(const kg_model *m, const char *dir) {
  const char *src = m->tokenizer_source;
  char dst[PATH_MAX];
  if (!src[0]) return kg_error(KG_ERR_ARG, "the model was loaded without a tokenizer");
  const char *base = strrchr(src, '/');
  base = base ? base + 1 : src;
  size_t len = strlen(base);
  const int is_gguf = len > 5 && !strcmp(base + len - 5, ".gguf");
  if (!is_gguf) {
    KG_TRY(kg_path_join(dst, sizeof(dst), dir, base));
    return copy_file(src, dst);
  }
  /* The tokenizer lives inside the GGUF: point at it. */
  char *abs = realpath(src, NULL);
  cJSON *root = cJSON_CreateObject();
  int rc = KG_OK;
  if (!root || !cJSON_AddStringToObject(root, "tokenizer", abs ? abs : src)) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
  } else {
    char *text = cJSON_Print(root);
    if ((rc = kg_path_join(dst, sizeof(dst), dir, "kickgrid.json")) >= 0) {
      FILE *f = fopen(dst, "w");
      if (!f || fprintf(f, "%s\n", text) < 0) rc = kg_error(KG_ERR_IO, "%s: cannot write", dst);
      if (f) fclose(f);
    }
    free(text);
  }
  cJSON_Delete(root);
  free(abs);
  return rc;
}
