/* GGUF parsing on hand-built files: metadata of every value type, typed
 * getters, string and number arrays, tensor infos and data offsets with a
 * non-default alignment, every truncation and a table of malformed headers,
 * and the llama checkpoint mapping (canonical names, reversed shapes, tied
 * embeddings, config from llama.* keys, unsupported architectures). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/gguf.h"
#include "kgtest.h"

typedef struct buf {
  unsigned char *p;
  size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 256;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
}
static void u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void u32(buf *b, uint32_t v) { for (int i = 0; i < 4; i++) u8(b, (uint8_t)(v >> (8 * i))); }
static void u64(buf *b, uint64_t v) { for (int i = 0; i < 8; i++) u8(b, (uint8_t)(v >> (8 * i))); }
static void f32(buf *b, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  u32(b, u);
}
static void str(buf *b, const char *s) {
  u64(b, strlen(s));
  put(b, s, strlen(s));
}
static void kv_u32(buf *b, const char *k, uint32_t v) { str(b, k); u32(b, KG_GGUF_UINT32); u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { str(b, k); u32(b, KG_GGUF_FLOAT32); f32(b, v); }
static void kv_str(buf *b, const char *k, const char *v) { str(b, k); u32(b, KG_GGUF_STRING); str(b, v); }

/* The model: dim 32, hidden 64, 1 layer, 2 heads, 1 kv head (head_dim 16), vocab 8. */
enum { DIM = 32, HID = 64, VOCAB = 8, KVD = 16 };

typedef struct tinfo {
  const char *name;
  int ndims;
  uint64_t ne[2];
  uint32_t type; /* ggml id */
  size_t nbytes;
  size_t offset;
} tinfo;

typedef struct options {
  const char *arch;
  int with_output, drop_ffn_down, alignment;
  uint32_t version;
  /* header corruption hooks */
  int bad_type, five_dims, ne0_33, misalign, beyond, dup_name, array_of_arrays, unknown_kv_type, huge_ne;
} options;

static size_t type_bytes(uint32_t type, uint64_t elems) {
  switch (type) {
  case 0: return 4 * elems;            /* f32 */
  case 1: case 30: return 2 * elems;   /* f16, bf16 */
  case 2: return elems / 32 * 18;      /* q4_0 */
  case 3: return elems / 32 * 20;      /* q4_1 */
  case 8: return elems / 32 * 34;      /* q8_0 */
  default: return 0;
  }
}

/* Fills tensor data with values whose float expansion the test recomputes:
 * element i of tensor k (seed k) is value(k, i). */
static float value(int k, uint64_t i) { return (float)((int)((i * 7 + (uint64_t)k * 3) % 15) - 7) * 0.5f; }

static void emit_data(buf *b, const tinfo *t, int k) {
  uint64_t elems = t->ne[0] * (t->ndims > 1 ? t->ne[1] : 1);
  if (t->type == 0) {
    for (uint64_t i = 0; i < elems; i++) f32(b, value(k, i));
  } else if (t->type == 1) { /* f16 of exact halves: sign, exponent, mantissa by hand */
    for (uint64_t i = 0; i < elems; i++) {
      float v = value(k, i);
      uint16_t h = 0;
      if (v != 0) {
        float a = v < 0 ? -v : v;
        int e = 0;
        while (a >= 2) a /= 2, e++;
        while (a < 1) a *= 2, e--;
        h = (uint16_t)(((v < 0) << 15) | ((e + 15) << 10) | (uint16_t)((a - 1) * 1024));
      }
      u8(b, (uint8_t)h);
      u8(b, (uint8_t)(h >> 8));
    }
  } else if (t->type == 30) { /* bf16: top half of the float32 bits (exact for these values) */
    for (uint64_t i = 0; i < elems; i++) {
      float v = value(k, i);
      uint32_t u;
      memcpy(&u, &v, 4);
      u8(b, (uint8_t)(u >> 16));
      u8(b, (uint8_t)(u >> 24));
    }
  } else { /* q8_0 / q4_0 / q4_1 blocks with d = 0.5 (f16 0x3800), m = -1 (0xbc00) */
    for (uint64_t blk = 0; blk < elems / 32; blk++) {
      u8(b, 0x00); u8(b, 0x38);
      if (t->type == 3) { u8(b, 0x00); u8(b, 0xbc); }
      if (t->type == 8) {
        for (int j = 0; j < 32; j++) u8(b, (uint8_t)(int8_t)(int)(value(k, blk * 32 + j) * 2));
      } else {
        for (int j = 0; j < 16; j++) {
          int q0 = (int)(blk + j) % 16, q1 = (int)(blk + j + 5) % 16;
          u8(b, (uint8_t)(q0 | (q1 << 4)));
        }
      }
    }
  }
}

/* expected float of element i of tensor k with the given ggml type */
static float expected(const tinfo *t, int k, uint64_t i) {
  if (t->type == 2 || t->type == 3) {
    uint64_t blk = i / 32, j = i % 32;
    int q = j < 16 ? (int)(blk + j) % 16 : (int)(blk + (j - 16) + 5) % 16;
    return t->type == 2 ? (float)(q - 8) * 0.5f : (float)q * 0.5f - 1.0f;
  }
  return value(k, i);
}

static tinfo tensors_of(int i) {
  static const tinfo all[] = {
      {"token_embd.weight", 2, {DIM, VOCAB}, 0, 0, 0},   {"blk.0.attn_norm.weight", 1, {DIM, 1}, 0, 0, 0},
      {"blk.0.attn_q.weight", 2, {DIM, DIM}, 8, 0, 0},   {"blk.0.attn_k.weight", 2, {DIM, KVD}, 1, 0, 0},
      {"blk.0.attn_v.weight", 2, {DIM, KVD}, 30, 0, 0},  {"blk.0.attn_output.weight", 2, {DIM, DIM}, 0, 0, 0},
      {"blk.0.ffn_norm.weight", 1, {DIM, 1}, 0, 0, 0},   {"blk.0.ffn_gate.weight", 2, {DIM, HID}, 2, 0, 0},
      {"blk.0.ffn_up.weight", 2, {DIM, HID}, 3, 0, 0},   {"blk.0.ffn_down.weight", 2, {HID, DIM}, 0, 0, 0},
      {"output_norm.weight", 1, {DIM, 1}, 0, 0, 0},      {"output.weight", 2, {DIM, VOCAB}, 0, 0, 0},
  };
  return all[i];
}
#define N_ALL 12

static int build(const options *o, buf *b, tinfo *ts) {
  int nt = 0;
  for (int i = 0; i < N_ALL; i++) {
    tinfo t = tensors_of(i);
    if (!o->with_output && !strcmp(t.name, "output.weight")) continue;
    if (o->drop_ffn_down && !strcmp(t.name, "blk.0.ffn_down.weight")) continue;
    t.nbytes = type_bytes(t.type, t.ne[0] * (t.ndims > 1 ? t.ne[1] : 1));
    ts[nt++] = t;
  }
  if (o->dup_name) ts[nt - 1].name = ts[0].name;
  size_t align = o->alignment ? (size_t)o->alignment : 32, off = 0;
  for (int i = 0; i < nt; i++) {
    ts[i].offset = off;
    off += (ts[i].nbytes + align - 1) / align * align;
  }
  b->n = 0;
  put(b, "GGUF", 4);
  u32(b, o->version ? o->version : 3);
  u64(b, (uint64_t)nt);
  u64(b, 16 + (o->alignment ? 1 : 0) + (o->array_of_arrays ? 1 : 0) + (o->unknown_kv_type ? 1 : 0));
  kv_str(b, "general.architecture", o->arch ? o->arch : "llama");
  if (o->alignment) kv_u32(b, "general.alignment", (uint32_t)o->alignment);
  kv_u32(b, "llama.embedding_length", DIM);
  kv_u32(b, "llama.feed_forward_length", HID);
  kv_u32(b, "llama.block_count", 1);
  kv_u32(b, "llama.attention.head_count", 2);
  kv_u32(b, "llama.attention.head_count_kv", 1);
  kv_u32(b, "llama.context_length", 256);
  kv_f32(b, "llama.rope.freq_base", 50000.0f);
  kv_f32(b, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
  str(b, "tokenizer.ggml.bos_token_id"); u32(b, KG_GGUF_INT64); u64(b, 1);
  str(b, "tokenizer.ggml.eos_token_id"); u32(b, KG_GGUF_UINT8); u8(b, 2);
  str(b, "general.flag"); u32(b, KG_GGUF_BOOL); u8(b, 1);
  str(b, "general.ratio"); u32(b, KG_GGUF_FLOAT64); { double d = -2.5; uint64_t u; memcpy(&u, &d, 8); u64(b, u); }
  str(b, "tokenizer.ggml.tokens"); u32(b, KG_GGUF_ARRAY); u32(b, KG_GGUF_STRING); u64(b, 3);
  str(b, "<s>"); str(b, ""); str(b, "hello");
  str(b, "tokenizer.ggml.token_type"); u32(b, KG_GGUF_ARRAY); u32(b, KG_GGUF_INT32); u64(b, 3);
  u32(b, 3); u32(b, (uint32_t)-1); u32(b, 1);
  str(b, "tokenizer.ggml.scores"); u32(b, KG_GGUF_ARRAY); u32(b, KG_GGUF_FLOAT32); u64(b, 2);
  f32(b, 0.5f); f32(b, -1.25f);
  if (o->array_of_arrays) { str(b, "x.nested"); u32(b, KG_GGUF_ARRAY); u32(b, KG_GGUF_ARRAY); u64(b, 0); }
  if (o->unknown_kv_type) { str(b, "x.odd"); u32(b, 13); u32(b, 0); }
  for (int i = 0; i < nt; i++) {
    str(b, ts[i].name);
    u32(b, o->five_dims && i == 0 ? 5 : (uint32_t)ts[i].ndims);
    uint64_t ne0 = o->ne0_33 && i == 2 ? 33 : o->huge_ne && i == 0 ? (1ULL << 62) : ts[i].ne[0];
    u64(b, ne0);
    if (ts[i].ndims > 1) u64(b, o->huge_ne && i == 0 ? (1ULL << 62) : ts[i].ne[1]);
    u32(b, o->bad_type && i == 1 ? 99 : ts[i].type);
    uint64_t toff = ts[i].offset + (o->misalign && i == 1 ? 4 : 0);
    if (o->beyond && i == nt - 1) toff += 1ULL << 20;
    u64(b, toff);
  }
  while (b->n % align) u8(b, 0);
  size_t data_start = b->n;
  for (int i = 0; i < nt; i++) {
    while (b->n < data_start + ts[i].offset) u8(b, 0);
    emit_data(b, &ts[i], i);
  }
  return nt;
}

static void test_parse_and_getters(void) {
  buf b = {0};
  tinfo ts[N_ALL];
  options o = {.alignment = 64};
  int nt = build(&o, &b, ts);
  kg_gguf *g = NULL;
  CHECK_OK(kg_gguf_parse(b.p, b.n, "tiny.gguf", &g));
  if (!g) return;
  CHECK(g->version == 3 && g->n_tensors == (uint64_t)nt && g->alignment == 64 && g->n_kv == 17);
  int64_t iv;
  double dv;
  int bv;
  char *sv = NULL;
  CHECK_OK(kg_gguf_get_int(g, "llama.block_count", &iv));
  CHECK(iv == 1);
  CHECK_OK(kg_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &iv));
  CHECK(iv == 2);
  CHECK_OK(kg_gguf_get_float(g, "llama.rope.freq_base", &dv));
  CHECK(dv == 50000.0);
  CHECK_OK(kg_gguf_get_float(g, "general.ratio", &dv));
  CHECK(dv == -2.5);
  CHECK_OK(kg_gguf_get_float(g, "llama.block_count", &dv)); /* integers convert */
  CHECK(dv == 1.0);
  CHECK_OK(kg_gguf_get_bool(g, "general.flag", &bv));
  CHECK(bv == 1);
  CHECK_OK(kg_gguf_get_string(g, "general.architecture", &sv));
  CHECK_STR(sv, "llama");
  free(sv);
  CHECK(kg_gguf_get_int(g, "general.architecture", &iv) == KG_ERR_FORMAT);
  CHECK(strstr(kg_error_message(), "general.architecture") != NULL);
  CHECK(kg_gguf_get_string(g, "llama.block_count", &sv) == KG_ERR_FORMAT);
  CHECK(kg_gguf_get_bool(g, "no.such.key", &bv) == KG_ERR_NOT_FOUND);
  const kg_gguf_kv *tok = kg_gguf_find(g, "tokenizer.ggml.tokens");
  CHECK(tok && tok->type == KG_GGUF_ARRAY && tok->array_type == KG_GGUF_STRING && tok->array_len == 3);
  kg_gguf_string s;
  const char *want[] = {"<s>", "", "hello"};
  kg_gguf_string_iter it;
  kg_gguf_string_iter_init(&it, tok);
  int k = 0;
  while (kg_gguf_string_iter_next(&it, &s)) {
    CHECK(k < 3 && s.len == strlen(want[k]) && kg_gguf_string_eq(s, want[k]));
    k++;
  }
  CHECK(k == 3);
  CHECK_OK(kg_gguf_array_string(tok, 2, &s));
  CHECK(kg_gguf_string_eq(s, "hello"));
  CHECK(kg_gguf_array_string(tok, 3, &s) == KG_ERR_ARG);
  const kg_gguf_kv *tt = kg_gguf_find(g, "tokenizer.ggml.token_type");
  CHECK_OK(kg_gguf_array_number(tt, 1, &dv));
  CHECK(dv == -1.0);
  CHECK(kg_gguf_array_string(tt, 0, &s) == KG_ERR_FORMAT);
  CHECK_OK(kg_gguf_array_number(kg_gguf_find(g, "tokenizer.ggml.scores"), 1, &dv));
  CHECK(dv == -1.25);
  CHECK(kg_gguf_array_number(tok, 0, &dv) == KG_ERR_FORMAT);
  const kg_gguf_tensor_info *q = kg_gguf_find_tensor(g, "blk.0.attn_q.weight");
  CHECK(q && q->n_dims == 2 && q->ne[0] == DIM && q->ne[1] == DIM && q->ne[2] == 1 && q->dtype == KG_DT_Q8_0);
  CHECK(q && q->nbytes == (size_t)DIM * DIM / 32 * 34);
  const kg_gguf_tensor_info *t0 = &g->tensors[0];
  size_t data_start = (size_t)((const unsigned char *)t0->data - b.p);
  CHECK(data_start % 64 == 0);
  for (int i = 0; i < nt; i++) {
    CHECK(g->tensors[i].offset == ts[i].offset && g->tensors[i].offset % 64 == 0);
    CHECK((const unsigned char *)g->tensors[i].data == b.p + data_start + ts[i].offset);
  }
  CHECK(kg_gguf_find_tensor(g, "output.weight") == NULL);
  kg_gguf_free(g);

  /* every proper prefix fails cleanly with a message */
  int prefix_ok = 0;
  for (size_t n = 0; n < b.n; n++) {
    kg_error_clear();
    int rc = kg_gguf_parse(b.p, n, "cut.gguf", &g);
    if (rc == 0 || g || !kg_error_message()[0]) prefix_ok++;
    if (rc == 0) kg_gguf_free(g);
  }
  CHECK_MSG(prefix_ok == 0, "%d truncated prefixes were accepted", prefix_ok);
  free(b.p);
}

typedef struct bad_case {
  const char *what;
  options o;
  const char *needle; /* expected in the message */
} bad_case;

static void test_malformed(void) {
  const bad_case cases[] = {
      {"version 1", {.version = 1}, "version 1"},
      {"version 4", {.version = 4}, "version 4"},
      {"unknown ggml type", {.bad_type = 1}, "unknown ggml type 99"},
      {"five dimensions", {.five_dims = 1}, "5 dimensions"},
      {"row not whole blocks", {.ne0_33 = 1}, "whole number of q8_0 blocks"},
      {"misaligned offset", {.misalign = 1}, "not a multiple of the alignment"},
      {"data beyond the file", {.beyond = 1}, "past the end"},
      {"duplicate tensor", {.dup_name = 1}, "duplicate tensor"},
      {"array of arrays", {.array_of_arrays = 1}, "array of arrays"},
      {"unknown value type", {.unknown_kv_type = 1}, "unknown value type 13"},
      {"shape overflow", {.huge_ne = 1}, "too large"},
      {"alignment not a power of two", {.alignment = 48}, "power of two"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    buf b = {0};
    tinfo ts[N_ALL];
    build(&cases[i].o, &b, ts);
    kg_gguf *g = NULL;
    kg_error_clear();
    int rc = kg_gguf_parse(b.p, b.n, "bad.gguf", &g);
    CHECK_MSG(rc < 0 && !g && strstr(kg_error_message(), cases[i].needle) &&
                  strncmp(kg_error_message(), "bad.gguf: ", 10) == 0,
              "%s: rc %d message '%s'", cases[i].what, rc, kg_error_message());
    kg_gguf_free(g);
    free(b.p);
  }
  /* byte-level corruptions of a good file */
  buf b = {0};
  tinfo ts[N_ALL];
  options o = {0};
  build(&o, &b, ts);
  kg_gguf *g = NULL;
  b.p[0] = 'X';
  CHECK(kg_gguf_parse(b.p, b.n, "m.gguf", &g) == KG_ERR_FORMAT && strstr(kg_error_message(), "bad magic"));
  b.p[0] = 'G';
  unsigned char saved[8];
  memcpy(saved, b.p + 16, 8);
  memset(b.p + 16, 0xff, 8); /* n_kv = 2^64 - 1 */
  CHECK(kg_gguf_parse(b.p, b.n, "m.gguf", &g) == KG_ERR_FORMAT && strstr(kg_error_message(), "cannot fit"));
  memcpy(b.p + 16, saved, 8);
  memset(b.p + 24, 0xff, 8); /* first key length huge */
  CHECK(kg_gguf_parse(b.p, b.n, "m.gguf", &g) == KG_ERR_FORMAT && strstr(kg_error_message(), "beyond the end"));
  CHECK(kg_gguf_parse(NULL, 0, "empty.gguf", &g) == KG_ERR_FORMAT);
  free(b.p);
}

static char *write_temp(const buf *b) {
  static char path[64];
  snprintf(path, sizeof(path), "/tmp/kg_test_gguf_XXXXXX.gguf");
  int fd = mkstemps(path, 5);
  if (fd < 0) return NULL;
  if (write(fd, b->p, b->n) != (ssize_t)b->n) path[0] = '\0';
  close(fd);
  return path;
}

static void test_checkpoint_mapping(void) {
  buf b = {0};
  tinfo ts[N_ALL];
  options o = {.alignment = 64};
  int nt = build(&o, &b, ts);
  char *path = write_temp(&b);
  CHECK(path && path[0]);
  kg_checkpoint *ck = NULL;
  CHECK_OK(kg_checkpoint_open(path, &ck));
  if (ck) {
    const kg_model_config *c = &ck->config;
    CHECK(ck->format == KG_CKPT_GGUF && ck->gguf != NULL && ck->rope_interleaved == 1);
    CHECK(c->dim == DIM && c->hidden_dim == HID && c->n_layers == 1 && c->n_heads == 2 && c->n_kv_heads == 1);
    CHECK(c->head_dim == 16 && c->vocab_size == VOCAB && c->max_seq_len == 256);
    CHECK(c->rope_theta == 50000.0f && c->norm_eps == 1e-6f && c->tied_embeddings == 1);
    CHECK(c->bos_id == 1 && c->eos_id == 2 && c->rope_scaling == KG_ROPE_SCALING_NONE);
    CHECK(ck->n_tensors == (size_t)nt);
    static const char *canon[] = {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                                  "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                                  "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                                  "model.layers.0.post_attention_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
                                  "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
                                  "model.norm.weight"};
    for (int i = 0; i < nt; i++) {
      const kg_tensor_ref *t = kg_checkpoint_find(ck, canon[i]);
      CHECK_MSG(t != NULL, "%s missing", canon[i]);
      if (!t) continue;
      /* PyTorch shape is ne reversed */
      CHECK(t->ndim == ts[i].ndims && t->shape[0] == (int64_t)(ts[i].ndims == 2 ? ts[i].ne[1] : ts[i].ne[0]));
      if (t->ndim == 2) CHECK(t->shape[1] == (int64_t)ts[i].ne[0]);
      int64_t n = kg_tensor_elems(t);
      float *v = malloc((size_t)n * sizeof(float));
      CHECK_OK(kg_dequantize(t->dtype, t->data, v, n));
      int bad = 0;
      for (int64_t e = 0; e < n; e++) bad += v[e] != expected(&ts[i], i, (uint64_t)e);
      CHECK_MSG(bad == 0, "%s: %d values differ", canon[i], bad);
      free(v);
    }
    kg_checkpoint_close(ck);
  }
  unlink(path);

  /* untied when output.weight is present; lm_head maps from it */
  o.with_output = 1;
  build(&o, &b, ts);
  path = write_temp(&b);
  CHECK_OK(kg_gguf_checkpoint_open(path, &ck));
  if (ck) {
    CHECK(ck->config.tied_embeddings == 0 && kg_checkpoint_find(ck, "lm_head.weight") != NULL);
    kg_checkpoint_close(ck);
  }
  unlink(path);

  /* another architecture: one-line error naming it */
  options other = {.arch = "gpt2"};
  build(&other, &b, ts);
  path = write_temp(&b);
  CHECK(kg_checkpoint_open(path, &ck) == KG_ERR_UNSUPPORTED && !ck);
  CHECK(strstr(kg_error_message(), "'gpt2'") && strstr(kg_error_message(), path));
  unlink(path);

  /* a missing tensor the config implies */
  options missing = {.drop_ffn_down = 1};
  build(&missing, &b, ts);
  path = write_temp(&b);
  CHECK(kg_checkpoint_open(path, &ck) == KG_ERR_NOT_FOUND);
  CHECK(strstr(kg_error_message(), "missing tensor model.layers.0.mlp.down_proj.weight") != NULL);
  unlink(path);
  free(b.p);
}

int main(void) {
  test_parse_and_getters();
  test_malformed();
  test_checkpoint_mapping();
  return kgtest_finish("test_checkpoint_gguf");
}
