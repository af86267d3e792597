/* llama2.c legacy checkpoints (Karpathy's export "version 0"): a header of
 * seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len; a negative vocab_size means the classifier is not shared) and then
 * float32 arrays, each stacked over layers where per-layer:
 *   token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim],
 *   wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim],
 *   rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim, hidden],
 *   w3 [L, hidden, dim], rms_final [dim], freq_cis_real [seq, head/2],
 *   freq_cis_imag [seq, head/2], then wcls [vocab, dim] when unshared.
 * Matrices are already [out, in] like PyTorch Linear weights. w1 is the gate,
 * w3 the up projection and w2 the down projection (run.c computes
 * w2(silu(w1 x) * w3 x)). q/k rows are in Meta's interleaved-pair order since
 * run.c rotates adjacent pairs, hence rope_interleaved. */
#include <stdint.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/mapfile.h"

#define HEADER_BYTES 28

typedef struct l2c_header {
  int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len;
} l2c_header;

static int32_t rd_i32(const unsigned char *p) {
  uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
  int32_t v;
  memcpy(&v, &u, 4);
  return v;
}

/* Checks the header describes a model (each field in a sane range) so that
 * files of another format are recognised as such before the size check. */
static int header_plausible(const l2c_header *h, const char *name) {
  const char *why = NULL;
  if (h->dim <= 0 || h->dim > 65536) why = "dim";
  else if (h->hidden <= 0 || h->hidden > (1 << 19)) why = "hidden_dim";
  else if (h->layers <= 0 || h->layers > 1024) why = "n_layers";
  else if (h->heads <= 0 || h->heads > 1024 || h->dim % h->heads != 0 || (h->dim / h->heads) % 2 != 0) why = "n_heads";
  else if (h->kv_heads <= 0 || h->kv_heads > h->heads || h->heads % h->kv_heads != 0) why = "n_kv_heads";
  else if (h->vocab == 0 || h->vocab > (1 << 22) || h->vocab < -(1 << 22)) why = "vocab_size";
  else if (h->seq_len <= 0 || h->seq_len > (1 << 20)) why = "seq_len";
  if (!why) return KG_OK;
  return kg_error(KG_ERR_FORMAT,
                  "%s: unrecognized checkpoint format (no GGUF magic, not a Hugging Face directory, and not a "
                  "llama2.c .bin: header field %s is implausible in (%d, %d, %d, %d, %d, %d, %d))",
                  name, why, h->dim, h->hidden, h->layers, h->heads, h->kv_heads, h->vocab, h->seq_len);
}

static void stem_of(const char *path, char *out, size_t cap) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  snprintf(out, cap, "%s", base);
  char *dot = strrchr(out, '.');
  if (dot && dot != out) *dot = '\0';
}

/* Adds one [rows, cols] (cols 0: vector) float32 slice starting `off` floats into the weights. */
static int add_f32(kg_checkpoint *ck, const unsigned char *w, uint64_t off, const char *name, int64_t rows,
                   int64_t cols) {
  int64_t shape[2] = {rows, cols};
  uint64_t n = (uint64_t)rows * (uint64_t)(cols ? cols : 1);
  return kg_checkpoint_add(ck, name, KG_DT_F32, cols ? 2 : 1, shape, w + 4 * off, (size_t)n * 4);
}

static int llama2c_build(kg_checkpoint *ck, const unsigned char *data, size_t size, const char *name) {
  if (size < HEADER_BYTES)
    return kg_error(KG_ERR_FORMAT, "%s: unrecognized checkpoint format (%zu bytes is too small for a llama2.c header)",
                    name, size);
  l2c_header h;
  int32_t *f = &h.dim;
  for (int i = 0; i < 7; i++) f[i] = rd_i32(data + 4 * i);
  KG_TRY(header_plausible(&h, name));
  int shared = h.vocab > 0;
  uint64_t vocab = (uint64_t)(shared ? h.vocab : -(int64_t)h.vocab);
  uint64_t dim = (uint64_t)h.dim, hid = (uint64_t)h.hidden, L = (uint64_t)h.layers;
  uint64_t hs = dim / (uint64_t)h.heads, kv_dim = hs * (uint64_t)h.kv_heads;
  /* offsets in floats; the ranges checked above keep every product far below 2^63 */
  uint64_t o_emb = 0, o_rms_att = o_emb + vocab * dim, o_wq = o_rms_att + L * dim, o_wk = o_wq + L * dim * dim;
  uint64_t o_wv = o_wk + L * kv_dim * dim, o_wo = o_wv + L * kv_dim * dim, o_rms_ffn = o_wo + L * dim * dim;
  uint64_t o_w1 = o_rms_ffn + L * dim, o_w2 = o_w1 + L * hid * dim, o_w3 = o_w2 + L * dim * hid;
  uint64_t o_rms_final = o_w3 + L * hid * dim, o_freq = o_rms_final + dim;
  uint64_t o_wcls = o_freq + (uint64_t)h.seq_len * hs; /* real and imag halves: seq * hs/2 each */
  uint64_t total = o_wcls + (shared ? 0 : vocab * dim);
  uint64_t want = HEADER_BYTES + 4 * total;
  if ((uint64_t)size != want)
    return kg_error(KG_ERR_FORMAT,
                    "%s: file size %zu does not match the llama2.c header (dim %d, hidden %d, %d layers, %d heads, %d "
                    "kv heads, vocab %d, seq %d need %llu bytes)%s",
                    name, size, h.dim, h.hidden, h.layers, h.heads, h.kv_heads, h.vocab, h.seq_len,
                    (unsigned long long)want, (uint64_t)size < want ? ": truncated" : "");

  kg_model_config *c = &ck->config;
  kg_model_config_defaults(c);
  stem_of(name, c->name, sizeof(c->name));
  c->dim = h.dim;
  c->hidden_dim = h.hidden;
  c->n_layers = h.layers;
  c->n_heads = h.heads;
  c->n_kv_heads = h.kv_heads;
  c->head_dim = (int)hs;
  c->vocab_size = (int)vocab;
  c->max_seq_len = h.seq_len;
  c->norm_eps = 1e-5f;
  c->rope_theta = 10000.0f;
  c->tied_embeddings = shared;
  /* run.c's encode() uses sentencepiece ids 1 (BOS) and 2 (EOS) */
  c->bos_id = vocab > 2 ? 1 : -1;
  c->eos_id = vocab > 2 ? 2 : -1;
  KG_TRY(kg_model_config_validate(c, name));
  ck->rope_interleaved = 1;

  /* byte pointers: a buffer handed in by the fuzzer need not be float-aligned */
  const unsigned char *w = data + HEADER_BYTES;
  char nm[96];
  KG_TRY(add_f32(ck, w, o_emb, "model.embed_tokens.weight", (int64_t)vocab, (int64_t)dim));
  for (uint64_t l = 0; l < L; l++) {
    int li = (int)l;
#define LAYER(suffix, off, rows, cols)                                                                                 \
  do {                                                                                                                 \
    snprintf(nm, sizeof(nm), "model.layers.%d.%s.weight", li, suffix);                                               \
    KG_TRY(add_f32(ck, w, (off), nm, (int64_t)(rows), (int64_t)(cols)));                                              \
  } while (0)
    LAYER("input_layernorm", o_rms_att + l * dim, dim, 0);
    LAYER("self_attn.q_proj", o_wq + l * dim * dim, dim, dim);
    LAYER("self_attn.k_proj", o_wk + l * kv_dim * dim, kv_dim, dim);
    LAYER("self_attn.v_proj", o_wv + l * kv_dim * dim, kv_dim, dim);
    LAYER("self_attn.o_proj", o_wo + l * dim * dim, dim, dim);
    LAYER("post_attention_layernorm", o_rms_ffn + l * dim, dim, 0);
    LAYER("mlp.gate_proj", o_w1 + l * hid * dim, hid, dim);
    LAYER("mlp.down_proj", o_w2 + l * dim * hid, dim, hid);
    LAYER("mlp.up_proj", o_w3 + l * hid * dim, hid, dim);
#undef LAYER
  }
  KG_TRY(add_f32(ck, w, o_rms_final, "model.norm.weight", (int64_t)dim, 0));
  if (!shared) KG_TRY(add_f32(ck, w, o_wcls, "lm_head.weight", (int64_t)vocab, (int64_t)dim));
  return kg_checkpoint_check_shapes(ck);
}

int kg_llama2c_open_memory(const unsigned char *data, size_t size, const char *name, kg_checkpoint **out) {
  kg_checkpoint *ck = NULL;
  *out = NULL;
  KG_TRY(kg_checkpoint_new(KG_CKPT_LLAMA2C, name, &ck));
  int rc = llama2c_build(ck, data, size, name);
  if (rc < 0) {
    kg_checkpoint_close(ck);
    return rc;
  }
  *out = ck;
  return KG_OK;
}

int kg_llama2c_open(const char *path, kg_checkpoint **out) {
  int rc = KG_OK;
  kg_checkpoint *ck = NULL;
  kg_mapped_file *f = NULL;
  *out = NULL;
  if ((rc = kg_mapped_file_open(path, &f)) < 0) goto done;
  if ((rc = kg_checkpoint_new(KG_CKPT_LLAMA2C, path, &ck)) < 0) goto done;
  if ((rc = kg_arena_adopt_mapping(ck->arena, f)) < 0) goto done;
  const unsigned char *data = f->data;
  size_t size = f->size;
  f = NULL; /* owned by the arena now */
  if ((rc = llama2c_build(ck, data, size, path)) < 0) goto done;
  *out = ck;
  ck = NULL;
done:
  kg_mapped_file_close(f);
  kg_checkpoint_close(ck);
  return rc;
}
