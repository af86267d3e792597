/* llama2.c reader on stories260K (header numbers, canonical names, slices
 * that point into the mapping without copies, file bytes at the offsets the
 * legacy layout gives), an unshared classifier, and bad files. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/mapfile.h"
#include "kgtest.h"

static char *write_temp(const void *data, size_t n) {
  static char path[64];
  snprintf(path, sizeof(path), "/tmp/kg_test_l2c_XXXXXX.bin");
  int fd = mkstemps(path, 4);
  if (fd < 0) return NULL;
  if (write(fd, data, n) != (ssize_t)n) path[0] = '\0';
  close(fd);
  return path;
}

/* Byte offset of a per-layer array element block in the legacy layout,
 * spelled out array by array (floats). */
static size_t legacy_offset(const char *what, int layer) {
  const size_t dim = 64, hid = 172, L = 5, vocab = 512, kv = 32;
  size_t off = vocab * dim; /* token_embedding */
  if (!strcmp(what, "rms_att")) return 28 + 4 * (off + layer * dim);
  off += L * dim;
  if (!strcmp(what, "wq")) return 28 + 4 * (off + layer * dim * dim);
  off += L * dim * dim;
  if (!strcmp(what, "wk")) return 28 + 4 * (off + layer * kv * dim);
  off += L * kv * dim;
  if (!strcmp(what, "wv")) return 28 + 4 * (off + layer * kv * dim);
  off += L * kv * dim;
  if (!strcmp(what, "wo")) return 28 + 4 * (off + layer * dim * dim);
  off += L * dim * dim;
  if (!strcmp(what, "rms_ffn")) return 28 + 4 * (off + layer * dim);
  off += L * dim;
  if (!strcmp(what, "w1")) return 28 + 4 * (off + layer * hid * dim);
  off += L * hid * dim;
  if (!strcmp(what, "w2")) return 28 + 4 * (off + layer * dim * hid);
  off += L * dim * hid;
  if (!strcmp(what, "w3")) return 28 + 4 * (off + layer * hid * dim);
  off += L * hid * dim;
  return 28 + 4 * off; /* rms_final */
}

static void test_stories(const char *path) {
  char *file = NULL;
  size_t size = 0;
  CHECK_OK(kg_read_file(path, &file, &size));
  kg_checkpoint *ck = NULL;
  CHECK_OK(kg_checkpoint_open(path, &ck));
  if (!ck || !file) return;
  const kg_model_config *c = &ck->config;
  CHECK(ck->format == KG_CKPT_LLAMA2C && ck->rope_interleaved == 1);
  CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4);
  CHECK(c->head_dim == 8 && c->vocab_size == 512 && c->max_seq_len == 512 && c->tied_embeddings == 1);
  CHECK(c->norm_eps == 1e-5f && c->rope_theta == 10000.0f && c->norm == KG_NORM_RMS);
  CHECK_STR(c->name, "stories260K");
  CHECK(ck->n_tensors == 1 + 5 * 9 + 1);
  CHECK(kg_checkpoint_find(ck, "lm_head.weight") == NULL);
  static const struct { const char *legacy, *canon; int64_t rows, cols; } map[] = {
      {"rms_att", "input_layernorm", 64, 0},        {"wq", "self_attn.q_proj", 64, 64},
      {"wk", "self_attn.k_proj", 32, 64},           {"wv", "self_attn.v_proj", 32, 64},
      {"wo", "self_attn.o_proj", 64, 64},           {"rms_ffn", "post_attention_layernorm", 64, 0},
      {"w1", "mlp.gate_proj", 172, 64},             {"w2", "mlp.down_proj", 64, 172},
      {"w3", "mlp.up_proj", 172, 64},
  };
  for (int l = 0; l < 5; l++) {
    for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++) {
      char name[96];
      snprintf(name, sizeof(name), "model.layers.%d.%s.weight", l, map[k].canon);
      const kg_tensor_ref *t = kg_checkpoint_find(ck, name);
      CHECK_MSG(t != NULL, "%s missing", name);
      if (!t) continue;
      CHECK(t->dtype == KG_DT_F32 && t->shape[0] == map[k].rows && t->ndim == (map[k].cols ? 2 : 1));
      size_t off = legacy_offset(map[k].legacy, l);
      CHECK_MSG(memcmp(t->data, file + off, t->nbytes) == 0, "%s bytes differ from the file at %zu", name, off);
      if (l > 0) { /* slices of one mapping: the previous layer sits right before */
        char prev[96];
        snprintf(prev, sizeof(prev), "model.layers.%d.%s.weight", l - 1, map[k].canon);
        const kg_tensor_ref *p = kg_checkpoint_find(ck, prev);
        CHECK(p && (const char *)p->data + p->nbytes == (const char *)t->data);
      }
    }
  }
  const kg_tensor_ref *emb = kg_checkpoint_find(ck, "model.embed_tokens.weight");
  const kg_tensor_ref *fin = kg_checkpoint_find(ck, "model.norm.weight");
  CHECK(emb && memcmp(emb->data, file + 28, emb->nbytes) == 0 && emb->shape[0] == 512 && emb->shape[1] == 64);
  CHECK(fin && memcmp(fin->data, file + legacy_offset("rms_final", 0), 64 * 4) == 0);
  kg_checkpoint_close(ck);

  /* the same bytes from memory */
  CHECK_OK(kg_llama2c_open_memory((const unsigned char *)file, size, "mem.bin", &ck));
  if (ck) {
    CHECK(ck->n_tensors == 47 && (const char *)kg_checkpoint_find(ck, "model.embed_tokens.weight")->data == file + 28);
    kg_checkpoint_close(ck);
  }

  /* an unshared classifier: negative vocab in the header, wcls appended */
  size_t wcls = 512 * 64 * 4;
  char *unshared = malloc(size + wcls);
  memcpy(unshared, file, size);
  int32_t neg = -512;
  memcpy(unshared + 20, &neg, 4);
  for (size_t i = 0; i < 512 * 64; i++) {
    float v = (float)i * 0.001f;
    memcpy(unshared + size + 4 * i, &v, 4);
  }
  char *p = write_temp(unshared, size + wcls);
  CHECK_OK(kg_checkpoint_open(p, &ck));
  if (ck) {
    const kg_tensor_ref *head = kg_checkpoint_find(ck, "lm_head.weight");
    CHECK(ck->config.tied_embeddings == 0 && ck->config.vocab_size == 512);
    CHECK(head && head->shape[0] == 512 && memcmp(head->data, unshared + size, wcls) == 0);
    kg_checkpoint_close(ck);
  }
  unlink(p);

  /* truncated by one float */
  p = write_temp(file, size - 4);
  CHECK(kg_checkpoint_open(p, &ck) == KG_ERR_FORMAT && !ck);
  CHECK(strstr(kg_error_message(), p) && strstr(kg_error_message(), "does not match the llama2.c header") &&
        strstr(kg_error_message(), "truncated"));
  unlink(p);
  /* one float too many */
  memcpy(unshared, file, size);
  p = write_temp(unshared, size + 4);
  CHECK(kg_checkpoint_open(p, &ck) == KG_ERR_FORMAT && strstr(kg_error_message(), "does not match"));
  unlink(p);
  /* implausible header (kv heads do not divide heads) */
  int32_t three = 3;
  memcpy(unshared + 16, &three, 4);
  p = write_temp(unshared, size);
  CHECK(kg_checkpoint_open(p, &ck) == KG_ERR_FORMAT && strstr(kg_error_message(), "n_kv_heads is implausible"));
  unlink(p);
  free(unshared);
  free(file);
}

static void test_not_a_checkpoint(void) {
  kg_checkpoint *ck = NULL;
  const char text[] = "this is a text file, not a model at all, honestly";
  char *p = write_temp(text, sizeof(text));
  CHECK(kg_checkpoint_open(p, &ck) == KG_ERR_FORMAT && !ck);
  CHECK(strstr(kg_error_message(), "unrecognized checkpoint format") && strstr(kg_error_message(), p));
  unlink(p);
  p = write_temp("abc", 3);
  CHECK(kg_checkpoint_open(p, &ck) == KG_ERR_FORMAT && strstr(kg_error_message(), "too small"));
  unlink(p);
  CHECK(kg_checkpoint_open("/nonexistent/model.bin", &ck) == KG_ERR_NOT_FOUND);
  CHECK(strstr(kg_error_message(), "/nonexistent/model.bin") != NULL);
  CHECK(kg_llama2c_open_memory(NULL, 0, "empty", &ck) == KG_ERR_FORMAT);
}

int main(void) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/models/stories260K/stories260K.bin", kgtest_data_dir());
  if (access(path, R_OK) == 0) test_stories(path);
  else fprintf(stderr, "test_checkpoint_llama2c: %s missing, stories260K checks skipped\n", path);
  test_not_a_checkpoint();
  return kgtest_finish("test_checkpoint_llama2c");
}
