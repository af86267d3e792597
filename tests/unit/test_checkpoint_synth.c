/* Synthetic checkpoints (spec parsing, determinism across runs and thread
 * counts, seed sensitivity, the normal(0, 0.02) moments) and the Hugging Face
 * writer: kg_hf_write then kg_hf_open gives back the same bytes for f32,
 * the round-to-nearest-even values for bf16, single files and shards, LLaMA
 * and DCLM layouts. */
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/synthetic.h"
#include "kgtest.h"

static const char *SMALL = "dim=64,hidden=96,layers=2,heads=4,kv_heads=2,vocab=100,seed=5,dtype=f32";

static void test_spec_parse(void) {
  kg_synthetic_spec s;
  CHECK_OK(kg_synthetic_spec_parse("llama-2-7b", &s));
  CHECK(s.config.dim == 4096 && s.config.hidden_dim == 11008 && s.config.n_layers == 32 && s.config.n_heads == 32);
  CHECK(s.config.n_kv_heads == 32 && s.config.vocab_size == 32000 && s.config.rope_theta == 1e4f);
  CHECK(s.config.max_seq_len == 4096 && s.config.head_dim == 128 && !s.config.tied_embeddings && s.dtype == KG_DT_BF16);
  CHECK_OK(kg_synthetic_spec_parse("synthetic:llama-3-8b,layers=2,seed=9,dtype=f16", &s));
  CHECK(s.config.n_layers == 2 && s.config.n_kv_heads == 8 && s.config.hidden_dim == 14336 && s.seed == 9);
  CHECK(s.config.vocab_size == 128256 && s.config.rope_theta == 5e5f && s.config.max_seq_len == 8192);
  CHECK(s.dtype == KG_DT_F16);
  CHECK_OK(kg_synthetic_spec_parse("llama-3.1-8b", &s));
  CHECK(s.config.rope_scaling == KG_ROPE_SCALING_LLAMA3 && s.config.rope_factor == 8.0f &&
        s.config.rope_original_max_pos == 8192);
  CHECK_OK(kg_synthetic_spec_parse("dclm-7b", &s));
  CHECK(s.config.arch == KG_ARCH_DCLM && s.config.norm == KG_NORM_LAYER_GAIN && s.config.qk_norm == 1);
  CHECK(s.config.dim == 4096 && s.config.hidden_dim == 11008 && s.config.vocab_size == 50432);
  CHECK(s.config.n_kv_heads == 32 && s.config.max_seq_len == 2048);
  CHECK_OK(kg_synthetic_spec_parse("dclm-7b,dim=64,heads=4,layers=2,vocab=100", &s));
  CHECK(s.config.hidden_dim == kg_dclm_hidden_dim(64) && s.config.n_kv_heads == 4 && s.config.head_dim == 16);
  CHECK_OK(kg_synthetic_spec_parse("smollm2-135m", &s));
  CHECK(s.config.dim == 576 && s.config.hidden_dim == 1536 && s.config.n_layers == 30 && s.config.n_heads == 9);
  CHECK(s.config.n_kv_heads == 3 && s.config.vocab_size == 49152 && s.config.rope_theta == 1e5f);
  CHECK(s.config.tied_embeddings == 1 && s.config.head_dim == 64);
  CHECK_OK(kg_synthetic_spec_parse(SMALL, &s));
  CHECK(s.config.dim == 64 && s.config.n_kv_heads == 2 && s.config.head_dim == 16 && s.seed == 5);
  CHECK(kg_synthetic_spec_parse("llama-2-7b,wings=2", &s) == KG_ERR_ARG && strstr(kg_error_message(), "'wings'"));
  CHECK(kg_synthetic_spec_parse("llama-2-7b,layers=zero", &s) == KG_ERR_ARG);
  CHECK(kg_synthetic_spec_parse("gpt-5", &s) == KG_ERR_ARG && strstr(kg_error_message(), "'gpt-5'"));
  CHECK(kg_synthetic_spec_parse("dim=64,layers=2", &s) == KG_ERR_ARG);
  CHECK(kg_synthetic_spec_parse("llama-2-7b,dtype=q4_0", &s) == KG_ERR_ARG);
  CHECK(kg_synthetic_spec_parse("dim=64,hidden=96,layers=2,heads=4,kv_heads=3", &s) == KG_ERR_FORMAT);
}

static kg_checkpoint *generate(const char *spec_text) {
  kg_synthetic_spec s;
  kg_checkpoint *ck = NULL;
  if (kg_synthetic_spec_parse(spec_text, &s) < 0 || kg_synthetic_checkpoint(&s, &ck) < 0)
    fprintf(stderr, "generate %s: %s\n", spec_text, kg_error_message());
  return ck;
}

static int same_bytes(const kg_checkpoint *a, const kg_checkpoint *b) {
  if (!a || !b || a->n_tensors != b->n_tensors) return 0;
  for (size_t i = 0; i < a->n_tensors; i++) {
    const kg_tensor_ref *t = kg_checkpoint_find(b, a->tensors[i].name);
    if (!t || t->nbytes != a->tensors[i].nbytes || memcmp(t->data, a->tensors[i].data, t->nbytes) != 0) return 0;
  }
  return 1;
}

static void test_determinism(void) {
  setenv("KG_THREADS", "1", 1);
  kg_checkpoint *a = generate(SMALL);
  setenv("KG_THREADS", "3", 1);
  kg_checkpoint *b = generate(SMALL);
  unsetenv("KG_THREADS");
  CHECK(a && b && same_bytes(a, b));
  kg_checkpoint *c = generate("dim=64,hidden=96,layers=2,heads=4,kv_heads=2,vocab=100,seed=6,dtype=f32");
  CHECK(a && c && a->n_tensors == c->n_tensors);
  int differing = 0, norms_ones = 1, matrices = 0;
  for (size_t i = 0; a && c && i < a->n_tensors; i++) {
    const kg_tensor_ref *t = &a->tensors[i];
    const kg_tensor_ref *u = kg_checkpoint_find(c, t->name);
    if (t->ndim == 1) {
      for (int64_t k = 0; k < t->shape[0]; k++) norms_ones &= ((const float *)t->data)[k] == 1.0f;
      continue;
    }
    matrices++;
    differing += u && memcmp(t->data, u->data, t->nbytes) != 0;
  }
  CHECK_MSG(matrices > 0 && differing == matrices, "%d of %d matrices differ between seeds", differing, matrices);
  CHECK(norms_ones);
  /* different tensors of one model are different streams */
  const kg_tensor_ref *q = a ? kg_checkpoint_find(a, "model.layers.0.self_attn.q_proj.weight") : NULL;
  const kg_tensor_ref *o = a ? kg_checkpoint_find(a, "model.layers.0.self_attn.o_proj.weight") : NULL;
  CHECK(q && o && q->nbytes == o->nbytes && memcmp(q->data, o->data, q->nbytes) != 0);
  /* bf16 generation is the rounding of the f32 stream */
  kg_checkpoint *h = generate("dim=64,hidden=96,layers=2,heads=4,kv_heads=2,vocab=100,seed=5,dtype=bf16");
  int bad = 0;
  for (size_t i = 0; a && h && i < a->n_tensors; i++) {
    const kg_tensor_ref *t = &a->tensors[i], *u = kg_checkpoint_find(h, t->name);
    for (int64_t k = 0; u && k < kg_tensor_elems(t); k++)
      bad += ((const uint16_t *)u->data)[k] != kg_f32_to_bf16(((const float *)t->data)[k]);
  }
  CHECK(h && bad == 0);
  kg_checkpoint_close(a);
  kg_checkpoint_close(b);
  kg_checkpoint_close(c);
  kg_checkpoint_close(h);
}

static void test_moments(void) {
  /* 4M draws across chunks: mean 0, sd 0.02, and the tail mass of a normal */
  kg_checkpoint *ck = generate("dim=2048,hidden=2048,layers=1,heads=16,vocab=8,seed=11,dtype=f32");
  const kg_tensor_ref *t = ck ? kg_checkpoint_find(ck, "model.layers.0.mlp.gate_proj.weight") : NULL;
  CHECK(t != NULL);
  if (!t) return;
  int64_t n = kg_tensor_elems(t);
  const float *v = t->data;
  double s = 0, s2 = 0, s4 = 0;
  int64_t beyond2 = 0;
  for (int64_t i = 0; i < n; i++) {
    s += v[i];
    s2 += (double)v[i] * v[i];
  }
  double mean = s / n, var = s2 / n - mean * mean, sd = sqrt(var);
  for (int64_t i = 0; i < n; i++) {
    double z = (v[i] - mean) / sd;
    s4 += z * z * z * z;
    beyond2 += fabs(z) > 2;
  }
  CHECK_MSG(fabs(mean) < 4 * 0.02 / sqrt((double)n), "mean %g", mean);
  CHECK_MSG(fabs(sd - 0.02) < 0.0002, "sd %g", sd);
  /* a normal has kurtosis 3 and 4.55%% beyond 2 sd; the 8-uniform sum has 2.85 and a little less */
  CHECK_MSG(fabs(s4 / n - 2.85) < 0.05, "kurtosis %g", s4 / n);
  CHECK_MSG(fabs((double)beyond2 / n - 0.0455) < 0.004, "tail %g", (double)beyond2 / n);
  kg_checkpoint_close(ck);
}

static char *temp_dir(void) {
  static char tmpl[64];
  snprintf(tmpl, sizeof(tmpl), "/tmp/kg_test_hf_XXXXXX");
  return mkdtemp(tmpl);
}

static void remove_dir(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static int file_exists(const char *dir, const char *name) {
  char p[512];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

static void test_writer_round_trip(const char *spec_text) {
  kg_checkpoint *src = generate(spec_text);
  char *dir = temp_dir();
  CHECK(src && dir);
  if (!src || !dir) return;
  /* f32, one file: identical bytes */
  CHECK_OK(kg_hf_write(dir, &src->config, src->tensors, src->n_tensors, KG_DT_F32, 0));
  CHECK(file_exists(dir, "config.json") && file_exists(dir, "model.safetensors"));
  CHECK(!file_exists(dir, "model.safetensors.index.json"));
  kg_checkpoint *back = NULL;
  CHECK_OK(kg_hf_open(dir, &back));
  CHECK(back && same_bytes(src, back));
  if (back) {
    const kg_model_config *a = &src->config, *b = &back->config;
    CHECK(a->arch == b->arch && a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers);
    CHECK(a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim);
    CHECK(a->vocab_size == b->vocab_size && a->max_seq_len == b->max_seq_len && a->norm_eps == b->norm_eps);
    CHECK(a->norm == b->norm && a->qk_norm == b->qk_norm && a->rope_theta == b->rope_theta);
    CHECK(a->rope_scaling == b->rope_scaling && a->rope_factor == b->rope_factor);
    CHECK(a->rope_low_freq_factor == b->rope_low_freq_factor && a->rope_original_max_pos == b->rope_original_max_pos);
    CHECK(a->tied_embeddings == b->tied_embeddings && a->bos_id == b->bos_id && a->eos_id == b->eos_id);
    CHECK(back->rope_interleaved == 0 && back->format == KG_CKPT_HF);
  }
  kg_checkpoint_close(back);
  /* bf16 in shards of at most 40 KB: the rounded values, an index, no stale single file */
  CHECK_OK(kg_hf_write(dir, &src->config, src->tensors, src->n_tensors, KG_DT_BF16, 40000));
  CHECK(file_exists(dir, "model.safetensors.index.json") && !file_exists(dir, "model.safetensors"));
  char pattern[128];
  glob_t g;
  snprintf(pattern, sizeof(pattern), "%s/model-0000?-of-0000?.safetensors", dir);
  CHECK(glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc >= 2);
  globfree(&g);
  CHECK_OK(kg_hf_open(dir, &back));
  int bad = 0;
  for (size_t i = 0; back && i < src->n_tensors; i++) {
    const kg_tensor_ref *t = &src->tensors[i], *u = kg_checkpoint_find(back, t->name);
    if (!u || u->dtype != KG_DT_BF16) {
      bad++;
      continue;
    }
    for (int64_t k = 0; k < kg_tensor_elems(t); k++) {
      uint16_t h;
      memcpy(&h, (const unsigned char *)u->data + 2 * k, 2);
      bad += h != kg_f32_to_bf16(((const float *)t->data)[k]);
    }
  }
  CHECK_MSG(back && bad == 0, "%d bf16 values differ", bad);
  /* and back to one file: the index goes */
  if (back) CHECK_OK(kg_hf_write(dir, &back->config, back->tensors, back->n_tensors, KG_DT_BF16, 0));
  CHECK(!file_exists(dir, "model.safetensors.index.json") && file_exists(dir, "model.safetensors"));
  kg_checkpoint *again = NULL;
  CHECK_OK(kg_hf_open(dir, &again));
  CHECK(again && back && same_bytes(back, again));
  kg_checkpoint_close(again);
  kg_checkpoint_close(back);
  /* errors: a missing tensor, a quantized output type */
  CHECK(kg_hf_write(dir, &src->config, src->tensors, src->n_tensors - 1, KG_DT_F32, 0) == KG_ERR_NOT_FOUND);
  CHECK(kg_hf_write(dir, &src->config, src->tensors, src->n_tensors, KG_DT_Q8_0, 0) == KG_ERR_ARG);
  remove_dir(dir);
  kg_checkpoint_close(src);
}

static void test_dclm_unwritable(void) {
  kg_checkpoint *src = generate("dclm-7b,dim=64,heads=4,layers=1,vocab=50,dtype=f32");
  char *dir = temp_dir();
  if (!src || !dir) return;
  kg_model_config c = src->config;
  c.hidden_dim = 128; /* an OpenLM config cannot say this */
  CHECK(kg_hf_write(dir, &c, src->tensors, src->n_tensors, KG_DT_F32, 0) == KG_ERR_UNSUPPORTED);
  CHECK(strstr(kg_error_message(), "OpenLM config cannot express") != NULL);
  remove_dir(dir);
  kg_checkpoint_close(src);
}

int main(void) {
  test_spec_parse();
  test_determinism();
  test_moments();
  test_writer_round_trip(SMALL);
  test_writer_round_trip("dclm-7b,dim=64,heads=4,layers=2,vocab=100,seed=3,dtype=f32");
  test_writer_round_trip("llama-3.1-8b,dim=64,hidden=96,heads=4,kv_heads=2,layers=1,vocab=64,dtype=f32");
  test_writer_round_trip("smollm2-135m,dim=48,hidden=64,heads=3,kv_heads=1,layers=2,vocab=70,dtype=f32");
  test_dclm_unwritable();
  return kgtest_finish("test_checkpoint_synth");
}
