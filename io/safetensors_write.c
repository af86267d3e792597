/* Writing Hugging Face directories (see kg_hf_write in io/checkpoint.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/json_util.h"
#include "io/log.h"
#include "io/paths.h"

#define CONVERT_ELEMS ((int64_t)1 << 20) /* a whole number of every block size */
#define IO_BUFFER ((size_t)8 << 20)

/* One tensor of the output file: canonical parts stacked along rows. */
typedef struct out_entry {
  char name[112];
  int ndim;
  int64_t shape[2];
  const kg_tensor_ref *parts[3];
  int n_parts;
  size_t nbytes; /* in the output dtype */
  int shard;
} out_entry;

typedef struct out_file {
  int fd;
  char tmp[4200];
  char final[4200];
  unsigned char *buf;
  size_t used;
} out_file;

static const char *st_dtype_name(kg_dtype t) {
  return t == KG_DT_F32 ? "F32" : t == KG_DT_F16 ? "F16" : "BF16";
}

static const char *torch_dtype_name(kg_dtype t) {
  return t == KG_DT_F32 ? "float32" : t == KG_DT_F16 ? "float16" : "bfloat16";
}

static int write_all(out_file *f, const void *data, size_t n) {
  const unsigned char *p = data;
  while (n) {
    ssize_t w = write(f->fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return kg_error(KG_ERR_IO, "%s: write failed: %s", f->final, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return KG_OK;
}

static int flush_buf(out_file *f) {
  int rc = write_all(f, f->buf, f->used);
  f->used = 0;
  return rc;
}

static int put(out_file *f, const void *data, size_t n) {
  if (n >= IO_BUFFER) {
    KG_TRY(flush_buf(f));
    return write_all(f, data, n);
  }
  if (f->used + n > IO_BUFFER) KG_TRY(flush_buf(f));
  memcpy(f->buf + f->used, data, n);
  f->used += n;
  return KG_OK;
}

static int file_begin(out_file *f, const char *dir, const char *name) {
  f->fd = -1;
  f->used = 0;
  if (snprintf(f->final, sizeof(f->final), "%s/%s", dir, name) >= (int)sizeof(f->final) ||
      snprintf(f->tmp, sizeof(f->tmp), "%s.tmp.%ld", f->final, (long)getpid()) >= (int)sizeof(f->tmp))
    return kg_error(KG_ERR_ARG, "%s: path too long", dir);
  f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f->fd < 0) return kg_error(KG_ERR_IO, "%s: cannot create: %s", f->tmp, strerror(errno));
  return KG_OK;
}

/* Flushes, fsyncs and renames into place; on failure (or when `ok` is 0) the temporary file is removed. */
static int file_end(out_file *f, int ok) {
  int rc = KG_OK;
  if (f->fd < 0) return KG_OK;
  if (ok && (rc = flush_buf(f)) == KG_OK && fsync(f->fd) != 0)
    rc = kg_error(KG_ERR_IO, "%s: fsync failed: %s", f->final, strerror(errno));
  if (close(f->fd) != 0 && ok && rc == KG_OK) rc = kg_error(KG_ERR_IO, "%s: close failed: %s", f->final, strerror(errno));
  f->fd = -1;
  if (ok && rc == KG_OK && rename(f->tmp, f->final) != 0)
    rc = kg_error(KG_ERR_IO, "%s: rename failed: %s", f->final, strerror(errno));
  if (!ok || rc < 0) unlink(f->tmp);
  return rc;
}

static int write_text_file(const char *dir, const char *name, const char *text, unsigned char *buf) {
  out_file f = {.buf = buf};
  int rc = file_begin(&f, dir, name);
  if (rc == KG_OK) rc = put(&f, text, strlen(text));
  int rc2 = file_end(&f, rc == KG_OK);
  return rc < 0 ? rc : rc2;
}

/* Writes one tensor's values in out_dtype, converting through float32 when needed. */
static int write_part(out_file *f, const kg_tensor_ref *t, kg_dtype out, float *scratch, unsigned char *conv) {
  if (t->dtype == out) return put(f, t->data, t->nbytes);
  int64_t elems = kg_tensor_elems(t);
  size_t es = kg_dtype_block_bytes(out);
  for (int64_t i = 0; i < elems; i += CONVERT_ELEMS) {
    int64_t n = elems - i < CONVERT_ELEMS ? elems - i : CONVERT_ELEMS;
    const unsigned char *src = (const unsigned char *)t->data + kg_dtype_row_bytes(t->dtype, i);
    KG_TRY(kg_dequantize(t->dtype, src, scratch, n));
    KG_TRY(kg_convert_from_f32(out, scratch, conv, n));
    KG_TRY(put(f, conv, (size_t)n * es));
  }
  return KG_OK;
}

/* ---- text builders ---- */

typedef struct sbuf {
  char *s;
  size_t len, cap;
  int failed;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
  if (b->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if (b->s && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap ? 2 * b->cap : 4096) + (size_t)n;
    char *grown = realloc(b->s, cap);
    if (!grown) {
      b->failed = 1;
      return;
    }
    b->s = grown;
    b->cap = cap;
  }
}

static void sb_quoted(sbuf *b, const char *s) {
  char small[256];
  size_t need = kg_json_quote(small, sizeof(small), s);
  if (need < sizeof(small)) {
    sb_add(b, "%s", small);
    return;
  }
  char *big = malloc(need + 1);
  if (!big) {
    b->failed = 1;
    return;
  }
  kg_json_quote(big, need + 1, s);
  sb_add(b, "%s", big);
  free(big);
}

static void add_token_id(cJSON *root, const char *key, int id) {
  if (id >= 0) cJSON_AddNumberToObject(root, key, id);
  else cJSON_AddNullToObject(root, key);
}

static char *config_json(const kg_model_config *c, kg_dtype out) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
  if (c->arch == KG_ARCH_DCLM) {
    /* the flat form of apple/DCLM-7B's config.json (open_lm Params) */
    cJSON_AddItemToArray(arch, cJSON_CreateString("OpenLMForCausalLM"));
    cJSON_AddStringToObject(root, "model_type", "openlm");
    cJSON_AddNumberToObject(root, "dim", c->dim);
    cJSON_AddNumberToObject(root, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(root, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddItemToObject(root, "norm_eps", kg_json_float(c->norm_eps));
    cJSON_AddNumberToObject(root, "seq_len", c->max_seq_len);
    cJSON_AddBoolToObject(root, "weight_tying", c->tied_embeddings);
    cJSON_AddBoolToObject(root, "apply_qk_norm", c->qk_norm);
    cJSON_AddBoolToObject(root, "qk_norm", c->qk_norm);
    cJSON_AddStringToObject(root, "norm_type", c->norm == KG_NORM_RMS ? "rms_norm" : "gain_only_lp_layer_norm");
    cJSON_AddStringToObject(root, "ffn_type", "swiglu_torch");
    cJSON_AddStringToObject(root, "positional_embedding_type", "rotary");
    cJSON_AddStringToObject(root, "attn_name", "torch_attn");
    cJSON_AddBoolToObject(root, "post_embed_norm", 0);
    cJSON_AddNumberToObject(root, "moe_freq", 0);
  } else {
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(root, "model_type", "llama");
    cJSON_AddNumberToObject(root, "hidden_size", c->dim);
    cJSON_AddNumberToObject(root, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(root, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(root, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(root, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "max_position_embeddings", c->max_seq_len);
    cJSON_AddItemToObject(root, "rms_norm_eps", kg_json_float(c->norm_eps));
    cJSON_AddItemToObject(root, "rope_theta", kg_json_float(c->rope_theta));
    if (c->rope_scaling == KG_ROPE_SCALING_LLAMA3) {
      cJSON *rs = cJSON_AddObjectToObject(root, "rope_scaling");
      cJSON_AddStringToObject(rs, "rope_type", "llama3");
      cJSON_AddItemToObject(rs, "factor", kg_json_float(c->rope_factor));
      cJSON_AddItemToObject(rs, "low_freq_factor", kg_json_float(c->rope_low_freq_factor));
      cJSON_AddItemToObject(rs, "high_freq_factor", kg_json_float(c->rope_high_freq_factor));
      cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_pos);
    } else if (c->rope_scaling == KG_ROPE_SCALING_LINEAR) {
      cJSON *rs = cJSON_AddObjectToObject(root, "rope_scaling");
      cJSON_AddStringToObject(rs, "rope_type", "linear");
      cJSON_AddItemToObject(rs, "factor", kg_json_float(c->rope_factor));
    } else {
      cJSON_AddNullToObject(root, "rope_scaling");
    }
    cJSON_AddBoolToObject(root, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    cJSON_AddBoolToObject(root, "attention_bias", 0);
    cJSON_AddNumberToObject(root, "attention_dropout", 0.0);
    cJSON_AddBoolToObject(root, "mlp_bias", 0);
    cJSON_AddNumberToObject(root, "initializer_range", 0.02);
    cJSON_AddNumberToObject(root, "pretraining_tp", 1);
    cJSON_AddBoolToObject(root, "use_cache", 1);
  }
  add_token_id(root, "bos_token_id", c->bos_id);
  add_token_id(root, "eos_token_id", c->eos_id);
  cJSON_AddStringToObject(root, "torch_dtype", torch_dtype_name(out));
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}

/* ---- output layout ---- */

static const kg_tensor_ref *find_in(const kg_tensor_ref *t, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (t[i].name && !strcmp(t[i].name, name)) return &t[i];
  return NULL;
}

static int dclm_name(const char *canon, int *part, char *out, size_t cap) {
  int layer = -1, used = 0;
  char rest[64];
  *part = 0;
  if (!strcmp(canon, "model.embed_tokens.weight")) return snprintf(out, cap, "model.tok_embeddings.weight"), 1;
  if (!strcmp(canon, "model.norm.weight")) return snprintf(out, cap, "model.norm.weight"), 1;
  if (!strcmp(canon, "lm_head.weight")) return snprintf(out, cap, "model.output.weight"), 1;
  if (sscanf(canon, "model.layers.%d.%63[a-z_.]%n", &layer, rest, &used) != 2 || canon[used]) return 0;
  static const struct { const char *canon, *openlm; int part; } map[] = {
      {"self_attn.q_proj.weight", "attention.in_proj.weight", 0},
      {"self_attn.k_proj.weight", "attention.in_proj.weight", 1},
      {"self_attn.v_proj.weight", "attention.in_proj.weight", 2},
      {"self_attn.o_proj.weight", "attention.out_proj.weight", 0},
      {"self_attn.q_norm.weight", "attention.q_norm.weight", 0},
      {"self_attn.k_norm.weight", "attention.k_norm.weight", 0},
      {"input_layernorm.weight", "attention_norm.weight", 0},
      {"post_attention_layernorm.weight", "ffn_norm.weight", 0},
      {"mlp.gate_proj.weight", "feed_forward.w12.weight", 0},
      {"mlp.up_proj.weight", "feed_forward.w12.weight", 1},
      {"mlp.down_proj.weight", "feed_forward.w3.weight", 0},
  };
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
    if (strcmp(rest, map[i].canon) != 0) continue;
    *part = map[i].part;
    return snprintf(out, cap, "model.layers.%d.%s", layer, map[i].openlm), 1;
  }
  return 0;
}

static int check_dclm_writable(const kg_model_config *c, const char *dir) {
  if (c->n_kv_heads != c->n_heads || c->head_dim * c->n_heads != c->dim || c->hidden_dim != kg_dclm_hidden_dim(c->dim) ||
      c->rope_theta != 10000.0f || c->rope_scaling != KG_ROPE_SCALING_NONE)
    return kg_error(KG_ERR_UNSUPPORTED,
                    "%s: an OpenLM config cannot express this DCLM model (it needs n_kv_heads == n_heads, head_dim = "
                    "dim/n_heads, hidden = %d, theta 10000)",
                    dir, kg_dclm_hidden_dim(c->dim));
  return KG_OK;
}

/* Builds the list of output tensors in canonical order, fusing DCLM parts. */
static int plan_entries(const char *dir, const kg_model_config *c, const kg_tensor_ref *tensors, size_t n,
                        kg_dtype out, out_entry **entries_out, size_t *n_out) {
  int rc = KG_OK;
  size_t ns = kg_checkpoint_expected_tensors(c, NULL);
  kg_tensor_spec *specs = malloc(ns * sizeof(*specs));
  out_entry *e = calloc(ns, sizeof(*e));
  size_t ne = 0;
  if (!specs || !e) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", dir);
    goto done;
  }
  kg_checkpoint_expected_tensors(c, specs);
  for (size_t i = 0; i < ns; i++) {
    const kg_tensor_ref *t = find_in(tensors, n, specs[i].name);
    if (!t) {
      rc = kg_error(KG_ERR_NOT_FOUND, "%s: cannot write: tensor %s is missing", dir, specs[i].name);
      goto done;
    }
    int same = t->ndim == specs[i].ndim && t->shape[0] == specs[i].shape[0] &&
               (t->ndim == 1 || t->shape[1] == specs[i].shape[1]);
    if (!same || !kg_dtype_is_float_convertible(t->dtype) || kg_dtype_row_bytes(t->dtype, kg_tensor_elems(t)) != t->nbytes) {
      rc = kg_error(KG_ERR_ARG, "%s: cannot write: tensor %s has the wrong shape or dtype for the config", dir, t->name);
      goto done;
    }
    char name[112];
    int part = 0;
    if (c->arch == KG_ARCH_DCLM) {
      if (!dclm_name(specs[i].name, &part, name, sizeof(name))) {
        rc = kg_error(KG_ERR_ARG, "%s: no OpenLM name for %s", dir, specs[i].name);
        goto done;
      }
    } else {
      snprintf(name, sizeof(name), "%s", specs[i].name);
    }
    out_entry *cur = part > 0 ? &e[ne - 1] : &e[ne++];
    if (part == 0) {
      snprintf(cur->name, sizeof(cur->name), "%s", name);
      cur->ndim = t->ndim;
      cur->shape[0] = 0;
      cur->shape[1] = t->ndim == 2 ? t->shape[1] : 0;
    }
    /* fused parts follow their first part directly in canonical order */
    KG_ASSERT(!strcmp(cur->name, name) && cur->n_parts == part);
    cur->parts[cur->n_parts++] = t;
    cur->shape[0] += t->shape[0];
    cur->nbytes += (size_t)kg_tensor_elems(t) * kg_dtype_block_bytes(out);
  }
  *entries_out = e;
  *n_out = ne;
  e = NULL;
done:
  free(specs);
  free(e);
  return rc;
}

static char *header_json(const out_entry *e, size_t n, int shard, kg_dtype out, size_t *len) {
  sbuf b = {0};
  uint64_t off = 0;
  sb_add(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
  for (size_t i = 0; i < n; i++) {
    if (e[i].shard != shard) continue;
    sb_add(&b, ",");
    sb_quoted(&b, e[i].name);
    sb_add(&b, ":{\"dtype\":\"%s\",\"shape\":[%lld", st_dtype_name(out), (long long)e[i].shape[0]);
    if (e[i].ndim == 2) sb_add(&b, ",%lld", (long long)e[i].shape[1]);
    sb_add(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + e[i].nbytes));
    off += e[i].nbytes;
  }
  sb_add(&b, "}");
  /* pad with spaces so the data section starts 8-byte aligned */
  while (!b.failed && (b.len + 8) % 8 != 0) sb_add(&b, " ");
  if (b.failed) {
    free(b.s);
    return NULL;
  }
  *len = b.len;
  return b.s;
}

static int write_shard(const char *dir, const char *fname, const out_entry *e, size_t n, int shard, kg_dtype out,
                       unsigned char *buf, float *scratch, unsigned char *conv) {
  int rc = KG_OK;
  size_t hlen = 0;
  char *header = header_json(e, n, shard, out, &hlen);
  out_file f = {.buf = buf, .fd = -1};
  if (!header) return kg_error(KG_ERR_NOMEM, "%s: out of memory building a header", dir);
  if ((rc = file_begin(&f, dir, fname)) < 0) goto done;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  if ((rc = put(&f, len8, 8)) < 0 || (rc = put(&f, header, hlen)) < 0) goto done;
  for (size_t i = 0; i < n; i++) {
    if (e[i].shard != shard) continue;
    for (int p = 0; p < e[i].n_parts; p++)
      if ((rc = write_part(&f, e[i].parts[p], out, scratch, conv)) < 0) goto done;
  }
done:
  rc = rc < 0 ? (file_end(&f, 0), rc) : file_end(&f, 1);
  free(header);
  return rc;
}

static char *index_json(const out_entry *e, size_t n, int n_shards) {
  sbuf b = {0};
  unsigned long long total = 0;
  for (size_t i = 0; i < n; i++) total += e[i].nbytes;
  sb_add(&b, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {", total);
  for (size_t i = 0; i < n; i++) {
    sb_add(&b, "%s\n    ", i ? "," : "");
    sb_quoted(&b, e[i].name);
    sb_add(&b, ": \"model-%05d-of-%05d.safetensors\"", e[i].shard + 1, n_shards);
  }
  sb_add(&b, "\n  }\n}\n");
  if (b.failed) {
    free(b.s);
    return NULL;
  }
  return b.s;
}

static void fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

int kg_hf_write(const char *dir, const kg_model_config *cfg, const kg_tensor_ref *tensors, size_t n,
                kg_dtype out_dtype, size_t max_shard_bytes) {
  int rc = KG_OK;
  out_entry *e = NULL;
  size_t ne = 0;
  unsigned char *buf = NULL, *conv = NULL;
  float *scratch = NULL;
  char *text = NULL;
  char path[4200];
  if (out_dtype != KG_DT_F32 && out_dtype != KG_DT_F16 && out_dtype != KG_DT_BF16)
    return kg_error(KG_ERR_ARG, "%s: output dtype must be f32, f16 or bf16, not %s", dir, kg_dtype_name(out_dtype));
  KG_TRY(kg_model_config_validate(cfg, dir));
  if (cfg->arch == KG_ARCH_DCLM) KG_TRY(check_dclm_writable(cfg, dir));
  KG_TRY(plan_entries(dir, cfg, tensors, n, out_dtype, &e, &ne));
  int n_shards = 1;
  size_t in_shard = 0;
  for (size_t i = 0; i < ne; i++) {
    if (max_shard_bytes && in_shard > 0 && in_shard + e[i].nbytes > max_shard_bytes) {
      n_shards++;
      in_shard = 0;
    }
    e[i].shard = n_shards - 1;
    in_shard += e[i].nbytes;
  }
  if ((rc = kg_mkdir_p(dir)) < 0) goto done;
  buf = malloc(IO_BUFFER);
  conv = malloc((size_t)CONVERT_ELEMS * 4);
  scratch = malloc((size_t)CONVERT_ELEMS * sizeof(float));
  if (!buf || !conv || !scratch) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", dir);
    goto done;
  }
  for (int s = 0; s < n_shards; s++) {
    char fname[64];
    if (n_shards == 1) snprintf(fname, sizeof(fname), "model.safetensors");
    else snprintf(fname, sizeof(fname), "model-%05d-of-%05d.safetensors", s + 1, n_shards);
    if ((rc = write_shard(dir, fname, e, ne, s, out_dtype, buf, scratch, conv)) < 0) goto done;
  }
  /* a leftover file of the other layout would shadow or contradict the new one */
  snprintf(path, sizeof(path), "%s/%s", dir, n_shards == 1 ? "model.safetensors.index.json" : "model.safetensors");
  if (unlink(path) != 0 && errno != ENOENT) {
    rc = kg_error(KG_ERR_IO, "%s: cannot remove stale %s: %s", dir, path, strerror(errno));
    goto done;
  }
  if (n_shards > 1) {
    if (!(text = index_json(e, ne, n_shards))) {
      rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", dir);
      goto done;
    }
    if ((rc = write_text_file(dir, "model.safetensors.index.json", text, buf)) < 0) goto done;
    free(text);
    text = NULL;
  }
  if (!(text = config_json(cfg, out_dtype))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", dir);
    goto done;
  }
  if ((rc = write_text_file(dir, "config.json", text, buf)) < 0) goto done;
  fsync_dir(dir);
done:
  free(text);
  free(e);
  free(buf);
  free(conv);
  free(scratch);
  return rc;
}
