#include "io/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/error.h"
#include "io/gguf.h"

int kg_checkpoint_new(kg_ckpt_format format, const char *path, kg_checkpoint **out) {
  int rc = KG_OK;
  kg_arena *arena = NULL;
  kg_checkpoint *ck = NULL;
  *out = NULL;
  if (!(arena = kg_arena_create())) return kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
  if (!(ck = kg_arena_alloc(arena, sizeof(*ck))) || !(ck->path = kg_arena_strdup(arena, path))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  ck->format = format;
  ck->arena = arena;
  kg_model_config_defaults(&ck->config);
  *out = ck;
  arena = NULL;
done:
  kg_arena_destroy(arena);
  return rc;
}

void kg_checkpoint_close(kg_checkpoint *ck) {
  if (!ck) return;
  /* ck itself lives in the arena: take what is needed before destroying it */
  struct kg_gguf *gguf = ck->gguf;
  kg_arena_destroy(ck->arena);
  kg_gguf_free(gguf);
}

int kg_dclm_hidden_dim(int dim) {
  long long h = (8LL * dim) / 3; /* int(2 * 4 * dim / 3) in Python, exact for these sizes */
  return (int)(256 * ((h + 255) / 256));
}

int64_t kg_tensor_elems(const kg_tensor_ref *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
  return n;
}

int kg_checkpoint_add(kg_checkpoint *ck, const char *name, kg_dtype dtype, int ndim, const int64_t *shape,
                      const void *data, size_t nbytes) {
  if (ndim < 0 || ndim > 4) return kg_error(KG_ERR_FORMAT, "%s: tensor %s has %d dimensions", ck->path, name, ndim);
  int64_t elems = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0 || (shape[d] && elems > INT64_MAX / shape[d]))
      return kg_error(KG_ERR_FORMAT, "%s: tensor %s has an invalid shape", ck->path, name);
    elems *= shape[d];
  }
  if (kg_dtype_block_bytes(dtype) && kg_dtype_row_bytes(dtype, elems) != nbytes)
    return kg_error(KG_ERR_FORMAT, "%s: tensor %s holds %zu bytes, but %lld %s values need %zu", ck->path, name, nbytes,
                    (long long)elems, kg_dtype_name(dtype), kg_dtype_row_bytes(dtype, elems));
  if (ck->n_tensors == ck->tensors_cap) {
    /* the arena cannot grow an allocation: copy into one twice the size (the
     * old arrays are small next to the tensors and go with the arena) */
    size_t cap = ck->tensors_cap ? 2 * ck->tensors_cap : 64;
    kg_tensor_ref *grown = kg_arena_alloc(ck->arena, cap * sizeof(*grown));
    if (!grown) return kg_error(KG_ERR_NOMEM, "%s: out of memory for the tensor table", ck->path);
    if (ck->n_tensors) memcpy(grown, ck->tensors, ck->n_tensors * sizeof(*grown));
    ck->tensors = grown;
    ck->tensors_cap = cap;
  }
  kg_tensor_ref *t = &ck->tensors[ck->n_tensors];
  memset(t, 0, sizeof(*t));
  if (!(t->name = kg_arena_strdup(ck->arena, name))) return kg_error(KG_ERR_NOMEM, "%s: out of memory", ck->path);
  t->dtype = dtype;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  t->data = data;
  t->nbytes = nbytes;
  ck->n_tensors++;
  return KG_OK;
}

const kg_tensor_ref *kg_checkpoint_find(const kg_checkpoint *ck, const char *name) {
  for (size_t i = 0; i < ck->n_tensors; i++)
    if (strcmp(ck->tensors[i].name, name) == 0) return &ck->tensors[i];
  return NULL;
}

static void spec_set(kg_tensor_spec *s, const char *name, int64_t rows, int64_t cols) {
  snprintf(s->name, sizeof(s->name), "%s", name);
  s->ndim = cols ? 2 : 1;
  s->shape[0] = rows;
  s->shape[1] = cols;
  s->is_norm = cols == 0;
}

size_t kg_checkpoint_expected_tensors(const kg_model_config *c, kg_tensor_spec *specs) {
  size_t n = 0;
  char name[96];
  int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
#define ADD(nm, r, k)                                                                                                  \
  do {                                                                                                                 \
    if (specs) spec_set(&specs[n], (nm), (r), (k));                                                                    \
    n++;                                                                                                               \
  } while (0)
  ADD("model.embed_tokens.weight", c->vocab_size, c->dim);
  for (int l = 0; l < c->n_layers; l++) {
    static const char *fmt = "model.layers.%d.%s.weight";
    snprintf(name, sizeof(name), fmt, l, "input_layernorm");
    ADD(name, c->dim, 0);
    snprintf(name, sizeof(name), fmt, l, "self_attn.q_proj");
    ADD(name, q, c->dim);
    snprintf(name, sizeof(name), fmt, l, "self_attn.k_proj");
    ADD(name, kv, c->dim);
    snprintf(name, sizeof(name), fmt, l, "self_attn.v_proj");
    ADD(name, kv, c->dim);
    snprintf(name, sizeof(name), fmt, l, "self_attn.o_proj");
    ADD(name, c->dim, q);
    if (c->qk_norm) {
      snprintf(name, sizeof(name), fmt, l, "self_attn.q_norm");
      ADD(name, q, 0);
      snprintf(name, sizeof(name), fmt, l, "self_attn.k_norm");
      ADD(name, kv, 0);
    }
    snprintf(name, sizeof(name), fmt, l, "post_attention_layernorm");
    ADD(name, c->dim, 0);
    snprintf(name, sizeof(name), fmt, l, "mlp.gate_proj");
    ADD(name, c->hidden_dim, c->dim);
    snprintf(name, sizeof(name), fmt, l, "mlp.up_proj");
    ADD(name, c->hidden_dim, c->dim);
    snprintf(name, sizeof(name), fmt, l, "mlp.down_proj");
    ADD(name, c->dim, c->hidden_dim);
  }
  ADD("model.norm.weight", c->dim, 0);
  if (!c->tied_embeddings) ADD("lm_head.weight", c->vocab_size, c->dim);
#undef ADD
  return n;
}

static void format_shape(char *out, size_t cap, int ndim, const int64_t *shape) {
  size_t n = (size_t)snprintf(out, cap, "[");
  for (int d = 0; d < ndim && n < cap; d++)
    n += (size_t)snprintf(out + n, cap - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
  if (n < cap) snprintf(out + n, cap - n, "]");
}

int kg_checkpoint_check_shapes(const kg_checkpoint *ck) {
  int rc = KG_OK;
  KG_TRY(kg_model_config_validate(&ck->config, ck->path));
  size_t n = kg_checkpoint_expected_tensors(&ck->config, NULL);
  kg_tensor_spec *specs = malloc(n * sizeof(*specs));
  if (!specs) return kg_error(KG_ERR_NOMEM, "%s: out of memory", ck->path);
  kg_checkpoint_expected_tensors(&ck->config, specs);
  for (size_t i = 0; i < n; i++) {
    const kg_tensor_spec *s = &specs[i];
    const kg_tensor_ref *t = kg_checkpoint_find(ck, s->name);
    if (!t) {
      rc = kg_error(KG_ERR_NOT_FOUND, "%s: missing tensor %s", ck->path, s->name);
      goto done;
    }
    int same = t->ndim == s->ndim;
    for (int d = 0; same && d < s->ndim; d++) same = t->shape[d] == s->shape[d];
    if (!same) {
      char got[96], want[96];
      format_shape(got, sizeof(got), t->ndim, t->shape);
      format_shape(want, sizeof(want), s->ndim, s->shape);
      rc = kg_error(KG_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s", ck->path, s->name, got, want);
      goto done;
    }
    if (!kg_dtype_is_float_convertible(t->dtype)) {
      rc = kg_error(KG_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s, which cannot be converted to float", ck->path,
                    s->name, kg_dtype_name(t->dtype));
      goto done;
    }
    if (kg_dtype_row_bytes(t->dtype, kg_tensor_elems(t)) != t->nbytes || (t->nbytes && !t->data)) {
      rc = kg_error(KG_ERR_FORMAT, "%s: tensor %s holds %zu bytes, which does not match its shape and dtype", ck->path,
                    s->name, t->nbytes);
      goto done;
    }
  }
done:
  free(specs);
  return rc;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A path naming a file inside a Hugging Face directory opens the directory. */
static int open_hf_parent(const char *path, kg_checkpoint **out) {
  char dir[4096];
  if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
    return kg_error(KG_ERR_ARG, "%s: path too long", path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof(dir), ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  return kg_hf_open(dir, out);
}

int kg_checkpoint_open(const char *path, kg_checkpoint **out) {
  struct stat st;
  *out = NULL;
  if (stat(path, &st) != 0)
    return kg_error(errno == ENOENT ? KG_ERR_NOT_FOUND : KG_ERR_IO, "%s: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode)) return kg_hf_open(path, out);
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (ends_with(path, ".safetensors") || !strcmp(base, "config.json") || !strcmp(base, "model.safetensors.index.json"))
    return open_hf_parent(path, out);
  unsigned char magic[4] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kg_error(KG_ERR_IO, "%s: %s", path, strerror(errno));
  ssize_t got = read(fd, magic, sizeof(magic));
  close(fd);
  if (got < 0) return kg_error(KG_ERR_IO, "%s: %s", path, strerror(errno));
  if (got == 4 && memcmp(magic, "GGUF", 4) == 0) return kg_gguf_checkpoint_open(path, out);
  if (ends_with(path, ".gguf")) {
    char shown[9] = {0};
    for (int i = 0; i < got; i++) sprintf(shown + 2 * i, "%02x", magic[i]);
    return kg_error(KG_ERR_FORMAT, "%s: bad magic 0x%s (expected \"GGUF\")", path, got ? shown : "");
  }
  return kg_llama2c_open(path, out);
}
