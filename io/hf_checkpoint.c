/* Hugging Face checkpoint directories: config.json plus model.safetensors,
 * or shards listed in model.safetensors.index.json.
 *
 * LlamaForCausalLM (LLaMA-2/3/3.1, SmolLM2, what kg_hf_write produces) uses
 * the canonical names already.
 *
 * DCLM-7B (apple/DCLM-7B, OpenLM) is an OpenLMForCausalLM whose `model` is an
 * open_lm Transformer, so tensors are named model.tok_embeddings,
 * model.layers.N.attention.{in_proj,out_proj,q_norm,k_norm},
 * model.layers.N.{attention_norm,ffn_norm}, model.layers.N.feed_forward.{w12,w3},
 * model.norm and model.output (raw open_lm checkpoints drop the "model."
 * prefix; both are accepted). in_proj is [3*dim, dim], chunked q|k|v along
 * rows; w12 is [2*hidden, dim], chunked gate|up (SwiGLUTorch: silu(first
 * half) * second half); w3 is the down projection. The hidden size is not in
 * the config: open_lm derives it as 256 * ceil(int(8*dim/3) / 256) (11008 for
 * dim 4096). Norms are gain-only LayerNorms over the last dimension, q_norm
 * and k_norm over the whole n_heads*head_dim projection before the heads are
 * split. open_lm's RotaryWithCast rotates halves (rotate_half = cat(-x2, x1)
 * over chunk(2) of each head) with theta 10000, the Hugging Face convention,
 * so DCLM rows need no un-permuting: rope_interleaved = 0. */
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/json_util.h"
#include "io/log.h"
#include "io/paths.h"
#include "io/safetensors.h"

#define MAX_SHARDS 4096

static int path_in(char *out, size_t cap, const char *dir, const char *file) {
  if (snprintf(out, cap, "%s/%s", dir, file) >= (int)cap) return kg_error(KG_ERR_ARG, "%s: path too long", dir);
  return KG_OK;
}


/* ---- config.json ---- */

static int parse_rope_scaling(const cJSON *rs, const char *src, kg_model_config *c) {
  const char *type = NULL;
  if (!rs || cJSON_IsNull(rs)) return KG_OK;
  if (!cJSON_IsObject(rs)) return kg_error(KG_ERR_FORMAT, "%s: \"rope_scaling\" must be an object or null", src);
  int got = kg_json_opt_string(rs, "rope_type", src, &type);
  if (got == 0) got = kg_json_opt_string(rs, "type", src, &type);
  KG_TRY(got);
  if (!type || !strcmp(type, "default")) return KG_OK;
  double f = 0;
  if (!strcmp(type, "llama3")) {
    long long orig = 0;
    double lo = 0, hi = 0;
    if (kg_json_opt_double(rs, "factor", src, &f) != 1 || kg_json_opt_double(rs, "low_freq_factor", src, &lo) != 1 ||
        kg_json_opt_double(rs, "high_freq_factor", src, &hi) != 1 ||
        kg_json_opt_int(rs, "original_max_position_embeddings", src, &orig) != 1)
      return kg_error(KG_ERR_FORMAT,
                      "%s: llama3 rope_scaling needs factor, low_freq_factor, high_freq_factor and "
                      "original_max_position_embeddings",
                      src);
    c->rope_scaling = KG_ROPE_SCALING_LLAMA3;
    c->rope_factor = (float)f;
    c->rope_low_freq_factor = (float)lo;
    c->rope_high_freq_factor = (float)hi;
    c->rope_original_max_pos = (int)orig;
    return KG_OK;
  }
  if (!strcmp(type, "linear")) {
    if (kg_json_opt_double(rs, "factor", src, &f) != 1)
      return kg_error(KG_ERR_FORMAT, "%s: linear rope_scaling needs a factor", src);
    c->rope_scaling = KG_ROPE_SCALING_LINEAR;
    c->rope_factor = (float)f;
    return KG_OK;
  }
  return kg_error(KG_ERR_UNSUPPORTED, "%s: rope scaling type '%s' is not supported (llama3, linear)", src, type);
}

/* eos_token_id may be a list (LLaMA-3.1 instruct); the first entry is the id. */
static int token_id(const cJSON *root, const char *key, const char *src, int *out) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
  if (cJSON_IsArray(it)) it = cJSON_GetArrayItem(it, 0);
  if (!it || cJSON_IsNull(it)) return KG_OK;
  uint64_t v;
  if (kg_json_exact_uint(it, &v) < 0 || v > (1u << 30))
    return kg_error(KG_ERR_FORMAT, "%s: \"%s\" must be a token id", src, key);
  *out = (int)v;
  return KG_OK;
}

static int parse_llama_config(const cJSON *root, const char *src, kg_model_config *c) {
  long long dim, hid, layers, heads, kv, vocab, head_dim = 0, ctx = 2048;
  double eps = 1e-6, theta = 10000.0; /* transformers' LlamaConfig defaults */
  int tied = 0, flag = 0;
  const char *act = NULL;
  KG_TRY(kg_json_req_int(root, "hidden_size", src, &dim));
  KG_TRY(kg_json_req_int(root, "intermediate_size", src, &hid));
  KG_TRY(kg_json_req_int(root, "num_hidden_layers", src, &layers));
  KG_TRY(kg_json_req_int(root, "num_attention_heads", src, &heads));
  KG_TRY(kg_json_req_int(root, "vocab_size", src, &vocab));
  kv = heads;
  KG_TRY(kg_json_opt_int(root, "num_key_value_heads", src, &kv));
  KG_TRY(kg_json_opt_int(root, "head_dim", src, &head_dim));
  KG_TRY(kg_json_opt_int(root, "max_position_embeddings", src, &ctx));
  KG_TRY(kg_json_opt_double(root, "rms_norm_eps", src, &eps));
  KG_TRY(kg_json_opt_double(root, "rope_theta", src, &theta));
  KG_TRY(kg_json_opt_bool(root, "tie_word_embeddings", src, &tied));
  KG_TRY(kg_json_opt_string(root, "hidden_act", src, &act));
  if (act && strcmp(act, "silu") != 0)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu)", src, act);
  if (kg_json_opt_bool(root, "attention_bias", src, &flag) == 1 && flag)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: attention_bias is not supported", src);
  if (kg_json_opt_bool(root, "mlp_bias", src, &flag) == 1 && flag)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: mlp_bias is not supported", src);
  if (dim <= 0 || dim > (1 << 20) || hid <= 0 || hid > (1 << 22) || layers <= 0 || layers > 4096 || heads <= 0 ||
      heads > 4096 || kv <= 0 || kv > 4096 || vocab <= 0 || vocab > (1 << 24) || head_dim < 0 || head_dim > 4096 ||
      ctx <= 0 || ctx > (1LL << 30))
    return kg_error(KG_ERR_FORMAT, "%s: model sizes out of range", src);
  c->dim = (int)dim;
  c->hidden_dim = (int)hid;
  c->n_layers = (int)layers;
  c->n_heads = (int)heads;
  c->n_kv_heads = (int)kv;
  c->head_dim = head_dim ? (int)head_dim : (int)(dim / heads);
  c->vocab_size = (int)vocab;
  c->max_seq_len = (int)ctx;
  c->norm_eps = (float)eps;
  c->norm = KG_NORM_RMS;
  c->tied_embeddings = tied;
  /* newer transformers nest theta and scaling in rope_parameters */
  const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
  if (cJSON_IsObject(rp)) {
    KG_TRY(kg_json_opt_double(rp, "rope_theta", src, &theta));
    KG_TRY(parse_rope_scaling(rp, src, c));
  } else {
    KG_TRY(parse_rope_scaling(cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"), src, c));
  }
  c->rope_theta = (float)theta;
  KG_TRY(token_id(root, "bos_token_id", src, &c->bos_id));
  KG_TRY(token_id(root, "eos_token_id", src, &c->eos_id));
  return KG_OK;
}

static int parse_dclm_config(const cJSON *root, const char *src, kg_model_config *c) {
  /* the first DCLM uploads nest the open_lm Params in params_args_dict; later ones are flat */
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "params_args_dict");
  if (!cJSON_IsObject(p)) p = root;
  long long dim, layers, heads, vocab, ctx = 2048, moe = 0;
  double eps = 1e-5;
  int tied = 0, qk = 0, post = 0;
  const char *norm = NULL, *ffn = "swiglu", *pos = "rotary";
  KG_TRY(kg_json_req_int(p, "dim", src, &dim));
  KG_TRY(kg_json_req_int(p, "n_layers", src, &layers));
  KG_TRY(kg_json_req_int(p, "n_heads", src, &heads));
  KG_TRY(kg_json_req_int(p, "vocab_size", src, &vocab));
  KG_TRY(kg_json_opt_int(p, "seq_len", src, &ctx));
  KG_TRY(kg_json_opt_double(p, "norm_eps", src, &eps));
  KG_TRY(kg_json_opt_bool(p, "weight_tying", src, &tied));
  int got = kg_json_opt_bool(p, "apply_qk_norm", src, &qk);
  KG_TRY(got);
  if (got == 0) KG_TRY(kg_json_opt_bool(p, "qk_norm", src, &qk));
  got = kg_json_opt_string(p, "norm_type", src, &norm);
  KG_TRY(got);
  if (got == 0) KG_TRY(kg_json_opt_string(p, "model_norm", src, &norm));
  KG_TRY(kg_json_opt_string(p, "ffn_type", src, &ffn));
  KG_TRY(kg_json_opt_string(p, "positional_embedding_type", src, &pos));
  KG_TRY(kg_json_opt_bool(p, "post_embed_norm", src, &post));
  KG_TRY(kg_json_opt_int(p, "moe_freq", src, &moe));
  if (!norm) return kg_error(KG_ERR_FORMAT, "%s: OpenLM config has no norm_type", src);
  if (!strcmp(norm, "gain_only_lp_layer_norm") || !strcmp(norm, "gain_only_layer_norm")) c->norm = KG_NORM_LAYER_GAIN;
  else if (!strcmp(norm, "rms_norm")) c->norm = KG_NORM_RMS;
  else return kg_error(KG_ERR_UNSUPPORTED, "%s: OpenLM norm_type '%s' is not supported (gain-only or RMS norms)", src, norm);
  if (strcmp(ffn, "swiglu") != 0 && strcmp(ffn, "swiglu_torch") != 0)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: OpenLM ffn_type '%s' is not supported (swiglu, swiglu_torch)", src, ffn);
  if (strcmp(pos, "rotary") != 0)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: OpenLM positional_embedding_type '%s' is not supported (rotary)", src, pos);
  if (post) return kg_error(KG_ERR_UNSUPPORTED, "%s: OpenLM post_embed_norm is not supported", src);
  if (moe) return kg_error(KG_ERR_UNSUPPORTED, "%s: OpenLM mixture-of-experts layers are not supported", src);
  if (dim <= 0 || dim > (1 << 20) || layers <= 0 || layers > 4096 || heads <= 0 || heads > 4096 || dim % heads ||
      vocab <= 0 || vocab > (1 << 24) || ctx <= 0 || ctx > (1LL << 30))
    return kg_error(KG_ERR_FORMAT, "%s: model sizes out of range", src);
  c->arch = KG_ARCH_DCLM;
  c->dim = (int)dim;
  c->hidden_dim = kg_dclm_hidden_dim((int)dim);
  c->n_layers = (int)layers;
  c->n_heads = (int)heads;
  c->n_kv_heads = (int)heads; /* open_lm's CustomAttn is multi-head */
  c->head_dim = (int)(dim / heads);
  c->vocab_size = (int)vocab;
  c->max_seq_len = (int)ctx;
  c->norm_eps = (float)eps;
  c->qk_norm = qk;
  c->rope_theta = 10000.0f;
  c->tied_embeddings = tied;
  KG_TRY(token_id(root, "bos_token_id", src, &c->bos_id));
  KG_TRY(token_id(root, "eos_token_id", src, &c->eos_id));
  return KG_OK;
}

/* Picks the architecture from "architectures" (or "model_type"). */
static int parse_config(const cJSON *root, const char *src, kg_model_config *c) {
  if (!cJSON_IsObject(root)) return kg_error(KG_ERR_FORMAT, "%s: not a JSON object", src);
  const char *arch = NULL, *type = NULL;
  const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  if (cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
    arch = cJSON_GetArrayItem(archs, 0)->valuestring;
  KG_TRY(kg_json_opt_string(root, "model_type", src, &type));
  if ((arch && !strcmp(arch, "LlamaForCausalLM")) || (!arch && type && !strcmp(type, "llama")))
    return parse_llama_config(root, src, c);
  if ((arch && (!strcmp(arch, "OpenLMModel") || !strcmp(arch, "OpenLMForCausalLM"))) ||
      (!arch && type && !strcmp(type, "openlm")))
    return parse_dclm_config(root, src, c);
  return kg_error(KG_ERR_UNSUPPORTED, "%s: unsupported architecture '%s' (LlamaForCausalLM, OpenLM/DCLM)", src,
                  arch ? arch : type ? type : "(none given)");
}

/* ---- shards ---- */

typedef struct shard_set {
  kg_safetensors *files[MAX_SHARDS];
  char *names[MAX_SHARDS];
  size_t n;
} shard_set;

static int valid_shard_name(const char *s) {
  size_t n = strlen(s);
  return n > 12 && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\') && !strcmp(s + n - 12, ".safetensors");
}

static int shard_index(const shard_set *ss, const char *file) {
  for (size_t i = 0; i < ss->n; i++)
    if (!strcmp(ss->names[i], file)) return (int)i;
  return -1;
}

static int open_shard(kg_checkpoint *ck, shard_set *ss, const char *dir, const char *file) {
  char path[4096];
  if (ss->n == MAX_SHARDS) return kg_error(KG_ERR_FORMAT, "%s: more than %d shards", dir, MAX_SHARDS);
  KG_TRY(path_in(path, sizeof(path), dir, file));
  if (!(ss->names[ss->n] = kg_arena_strdup(ck->arena, file))) return kg_error(KG_ERR_NOMEM, "%s: out of memory", dir);
  KG_TRY(kg_safetensors_open(ck->arena, path, &ss->files[ss->n]));
  ss->n++;
  return KG_OK;
}

static int load_shards(kg_checkpoint *ck, const char *dir, shard_set *ss) {
  int rc = KG_OK;
  cJSON *index = NULL;
  char path[4096];
  KG_TRY(path_in(path, sizeof(path), dir, "model.safetensors.index.json"));
  if (!kg_path_exists(path)) {
    KG_TRY(path_in(path, sizeof(path), dir, "model.safetensors"));
    if (!kg_path_exists(path))
      return kg_error(KG_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
    return open_shard(ck, ss, dir, "model.safetensors");
  }
  if ((rc = kg_json_read_file(path, &index)) < 0) goto done;
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
  if (!cJSON_IsObject(map)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: no \"weight_map\" object", path);
    goto done;
  }
  const cJSON *e;
  cJSON_ArrayForEach(e, map) {
    if (!cJSON_IsString(e) || !valid_shard_name(e->valuestring)) {
      rc = kg_error(KG_ERR_FORMAT, "%s: tensor '%s' maps to an invalid shard file name", path, e->string);
      goto done;
    }
    if (shard_index(ss, e->valuestring) < 0 && (rc = open_shard(ck, ss, dir, e->valuestring)) < 0) goto done;
  }
  /* the index must tell the truth about where each tensor lives */
  cJSON_ArrayForEach(e, map) {
    int s = shard_index(ss, e->valuestring);
    if (!kg_safetensors_find(ss->files[s], e->string)) {
      rc = kg_error(KG_ERR_FORMAT, "%s: index places tensor '%s' in %s, which does not contain it", dir, e->string,
                    e->valuestring);
      goto done;
    }
  }
  if (ss->n == 0) rc = kg_error(KG_ERR_FORMAT, "%s: the index lists no tensors", path);
done:
  cJSON_Delete(index);
  return rc;
}

/* ---- tensor mapping ---- */

/* Adds rows [row0, row0 + rows) of a 1-D or 2-D safetensors tensor under a canonical name. */
static int add_rows(kg_checkpoint *ck, const char *name, const kg_st_tensor *t, const char *file, int64_t row0,
                    int64_t rows) {
  if (t->dtype != KG_DT_F32 && t->dtype != KG_DT_F16 && t->dtype != KG_DT_BF16)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; weights must be F32, F16 or BF16", file, t->name,
                    t->dtype_name);
  if (t->ndim < 1 || t->ndim > 2)
    return kg_error(KG_ERR_FORMAT, "%s: tensor %s has %d dimensions, expected 1 or 2", file, t->name, t->ndim);
  if (kg_checkpoint_find(ck, name))
    return kg_error(KG_ERR_FORMAT, "%s: tensor %s appears twice (as %s)", ck->path, name, t->name);
  int64_t cols = t->ndim == 2 ? t->shape[1] : 1;
  size_t es = kg_dtype_block_bytes(t->dtype);
  int64_t shape[2] = {rows, cols};
  return kg_checkpoint_add(ck, name, t->dtype, t->ndim, shape, t->data + (size_t)row0 * (size_t)cols * es,
                           (size_t)rows * (size_t)cols * es);
}

static int add_whole(kg_checkpoint *ck, const char *name, const kg_st_tensor *t, const char *file) {
  return add_rows(ck, name, t, file, 0, t->ndim >= 1 ? t->shape[0] : 0);
}

/* "layers.N.rest" -> N and rest; -1 when the name has another form. */
static int split_layer(const char *name, const char **rest) {
  if (strncmp(name, "layers.", 7) != 0) return -1;
  const char *p = name + 7;
  long v = 0;
  int digits = 0;
  while (*p >= '0' && *p <= '9' && digits < 7) v = v * 10 + (*p++ - '0'), digits++;
  if (!digits || *p != '.') return -1;
  *rest = p + 1;
  return (int)v;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

static int map_llama(kg_checkpoint *ck, const kg_st_tensor *t, const char *file) {
  const kg_model_config *c = &ck->config;
  const char *nm = t->name, *rest;
  if (ends_with(nm, ".inv_freq")) return KG_OK; /* rotary buffers of old exports */
  if (!strcmp(nm, "model.embed_tokens.weight") || !strcmp(nm, "model.norm.weight")) return add_whole(ck, nm, t, file);
  if (!strcmp(nm, "lm_head.weight")) return c->tied_embeddings ? KG_OK : add_whole(ck, nm, t, file);
  if (!strncmp(nm, "model.", 6)) {
    int layer = split_layer(nm + 6, &rest);
    static const char *known[] = {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                  "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                  "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                                  "mlp.down_proj.weight"};
    if (layer >= 0) {
      for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(rest, known[i]) != 0) continue;
        if (layer >= c->n_layers)
          return kg_error(KG_ERR_FORMAT, "%s: tensor %s is for layer %d, but the config has %d layers", file, nm,
                          layer, c->n_layers);
        return add_whole(ck, nm, t, file);
      }
    }
  }
  if (ends_with(nm, ".bias")) return kg_error(KG_ERR_UNSUPPORTED, "%s: bias tensor %s is not supported", file, nm);
  kg_warn("%s: ignoring unexpected tensor %s", file, nm);
  return KG_OK;
}

static int dclm_expect(const kg_st_tensor *t, const char *file, int64_t rows, int64_t cols) {
  int ok = t->ndim == (cols ? 2 : 1) && t->shape[0] == rows && (!cols || t->shape[1] == cols);
  if (ok) return KG_OK;
  return kg_error(KG_ERR_FORMAT, "%s: tensor %s has shape [%lld%s%lld], expected [%lld%s%lld]", file, t->name,
                  (long long)t->shape[0], t->ndim > 1 ? ", " : "", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                  (long long)rows, cols ? ", " : "", (long long)cols);
}

static int map_dclm(kg_checkpoint *ck, const kg_st_tensor *t, const char *file) {
  const kg_model_config *c = &ck->config;
  const char *nm = t->name, *rest;
  if (!strncmp(nm, "model.", 6)) nm += 6;
  if (ends_with(nm, ".inv_freq")) return KG_OK;
  if (!strcmp(nm, "tok_embeddings.weight")) return add_whole(ck, "model.embed_tokens.weight", t, file);
  if (!strcmp(nm, "norm.weight")) return add_whole(ck, "model.norm.weight", t, file);
  if (!strcmp(nm, "output.weight")) return c->tied_embeddings ? KG_OK : add_whole(ck, "lm_head.weight", t, file);
  int layer = split_layer(nm, &rest);
  if (layer >= 0 && layer >= c->n_layers)
    return kg_error(KG_ERR_FORMAT, "%s: tensor %s is for layer %d, but the config has %d layers", file, t->name, layer,
                    c->n_layers);
  char out[96];
#define CANON(suffix) (snprintf(out, sizeof(out), "model.layers.%d.%s.weight", layer, suffix), out)
  int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
  int64_t h = c->hidden_dim;
  if (layer >= 0) {
    if (!strcmp(rest, "attention.in_proj.weight")) {
      KG_TRY(dclm_expect(t, file, q + 2 * kv, d));
      KG_TRY(add_rows(ck, CANON("self_attn.q_proj"), t, file, 0, q));
      KG_TRY(add_rows(ck, CANON("self_attn.k_proj"), t, file, q, kv));
      return add_rows(ck, CANON("self_attn.v_proj"), t, file, q + kv, kv);
    }
    if (!strcmp(rest, "feed_forward.w12.weight")) {
      KG_TRY(dclm_expect(t, file, 2 * h, d));
      KG_TRY(add_rows(ck, CANON("mlp.gate_proj"), t, file, 0, h));
      return add_rows(ck, CANON("mlp.up_proj"), t, file, h, h);
    }
    if (!strcmp(rest, "feed_forward.w3.weight")) return add_whole(ck, CANON("mlp.down_proj"), t, file);
    if (!strcmp(rest, "attention.out_proj.weight")) return add_whole(ck, CANON("self_attn.o_proj"), t, file);
    if (!strcmp(rest, "attention_norm.weight")) return add_whole(ck, CANON("input_layernorm"), t, file);
    if (!strcmp(rest, "ffn_norm.weight")) return add_whole(ck, CANON("post_attention_layernorm"), t, file);
    if (!strcmp(rest, "attention.q_norm.weight") || !strcmp(rest, "attention.k_norm.weight")) {
      if (!c->qk_norm)
        return kg_error(KG_ERR_FORMAT, "%s: tensor %s present but the config does not apply qk-norm", file, t->name);
      return add_whole(ck, CANON(rest[10] == 'q' ? "self_attn.q_norm" : "self_attn.k_norm"), t, file);
    }
  }
#undef CANON
  if (ends_with(nm, ".bias"))
    return kg_error(KG_ERR_UNSUPPORTED, "%s: tensor %s is a bias; only gain-only norms and bias-free linears are supported",
                    file, t->name);
  kg_warn("%s: ignoring unexpected tensor %s", file, t->name);
  return KG_OK;
}

static void dir_label(const char *dir, char *out, size_t cap) {
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s", dir);
  size_t n = strlen(tmp);
  while (n > 1 && tmp[n - 1] == '/') tmp[--n] = '\0';
  const char *base = strrchr(tmp, '/');
  snprintf(out, cap, "%s", base ? base + 1 : tmp);
}

int kg_hf_open(const char *dir, kg_checkpoint **out) {
  int rc = KG_OK;
  kg_checkpoint *ck = NULL;
  cJSON *config = NULL;
  shard_set *ss = NULL;
  char path[4096];
  *out = NULL;
  if ((rc = kg_checkpoint_new(KG_CKPT_HF, dir, &ck)) < 0) goto done;
  if ((rc = path_in(path, sizeof(path), dir, "config.json")) < 0) goto done;
  if (!kg_path_exists(path)) {
    rc = kg_error(KG_ERR_NOT_FOUND, "%s: no config.json (not a Hugging Face model directory)", dir);
    goto done;
  }
  if ((rc = kg_json_read_file(path, &config)) < 0) goto done;
  if ((rc = parse_config(config, path, &ck->config)) < 0) goto done;
  dir_label(dir, ck->config.name, sizeof(ck->config.name));
  if ((rc = kg_model_config_validate(&ck->config, path)) < 0) goto done;
  if (!(ss = calloc(1, sizeof(*ss)))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", dir);
    goto done;
  }
  if ((rc = load_shards(ck, dir, ss)) < 0) goto done;
  for (size_t s = 0; s < ss->n; s++) {
    const kg_safetensors *st = ss->files[s];
    for (size_t i = 0; i < st->n_tensors; i++) {
      rc = ck->config.arch == KG_ARCH_DCLM ? map_dclm(ck, &st->tensors[i], st->path)
                                           : map_llama(ck, &st->tensors[i], st->path);
      if (rc < 0) goto done;
    }
  }
  /* tied DCLM checkpoints may keep only the output matrix */
  if (ck->config.arch == KG_ARCH_DCLM && ck->config.tied_embeddings && !kg_checkpoint_find(ck, "model.embed_tokens.weight")) {
    for (size_t s = 0; s < ss->n && rc == KG_OK; s++) {
      const kg_st_tensor *t = kg_safetensors_find(ss->files[s], "model.output.weight");
      if (!t) t = kg_safetensors_find(ss->files[s], "output.weight");
      if (t) {
        rc = add_whole(ck, "model.embed_tokens.weight", t, ss->files[s]->path);
        break;
      }
    }
    if (rc < 0) goto done;
  }
  ck->rope_interleaved = 0;
  if ((rc = kg_checkpoint_check_shapes(ck)) < 0) goto done;
  *out = ck;
  ck = NULL;
done:
  free(ss);
  cJSON_Delete(config);
  kg_checkpoint_close(ck);
  return rc;
}
