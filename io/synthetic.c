#include "io/synthetic.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/error.h"
#include "io/log.h"
#include "io/mapfile.h"

/* ---- spec parsing ---- */

typedef struct preset {
  const char *name;
  kg_arch arch;
  int dim, hidden, layers, heads, kv_heads, vocab, ctx;
  float theta;
  int tied, bos, eos;
} preset;

static const preset presets[] = {
    {"llama-2-7b", KG_ARCH_LLAMA, 4096, 11008, 32, 32, 32, 32000, 4096, 1e4f, 0, 1, 2},
    {"llama-3-8b", KG_ARCH_LLAMA, 4096, 14336, 32, 32, 8, 128256, 8192, 5e5f, 0, 128000, 128001},
    {"llama-3.1-8b", KG_ARCH_LLAMA, 4096, 14336, 32, 32, 8, 128256, 131072, 5e5f, 0, 128000, 128001},
    /* apple/DCLM-7B: open_lm_7b Params with qk-norm, gain-only LayerNorm, swiglu_torch */
    {"dclm-7b", KG_ARCH_DCLM, 4096, 11008, 32, 32, 32, 50432, 2048, 1e4f, 0, -1, -1},
    {"smollm2-135m", KG_ARCH_LLAMA, 576, 1536, 30, 9, 3, 49152, 8192, 1e5f, 1, 1, 2},
    {"stories260k", KG_ARCH_LLAMA, 64, 172, 5, 8, 4, 512, 512, 1e4f, 1, 1, 2},
};

static void apply_preset(const preset *p, kg_model_config *c) {
  c->arch = p->arch;
  c->dim = p->dim;
  c->hidden_dim = p->hidden;
  c->n_layers = p->layers;
  c->n_heads = p->heads;
  c->n_kv_heads = p->kv_heads;
  c->vocab_size = p->vocab;
  c->max_seq_len = p->ctx;
  c->rope_theta = p->theta;
  c->tied_embeddings = p->tied;
  c->bos_id = p->bos;
  c->eos_id = p->eos;
  c->norm_eps = 1e-5f;
  if (p->arch == KG_ARCH_DCLM) {
    c->norm = KG_NORM_LAYER_GAIN;
    c->qk_norm = 1;
  }
  if (!strcmp(p->name, "llama-3.1-8b")) {
    c->rope_scaling = KG_ROPE_SCALING_LLAMA3;
    c->rope_factor = 8.0f;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f;
    c->rope_original_max_pos = 8192;
  }
}

static int parse_ll(const char *spec, const char *key, const char *v, long long lo, long long hi, long long *out) {
  char *end = NULL;
  long long x = strtoll(v, &end, 10);
  if (!*v || *end || x < lo || x > hi)
    return kg_error(KG_ERR_ARG, "synthetic spec '%s': %s expects an integer in [%lld, %lld], got '%s'", spec, key, lo,
                    hi, v);
  *out = x;
  return KG_OK;
}

static int parse_pos_double(const char *spec, const char *key, const char *v, double *out) {
  char *end = NULL;
  double x = strtod(v, &end);
  if (!*v || *end || !(x > 0) || !isfinite(x))
    return kg_error(KG_ERR_ARG, "synthetic spec '%s': %s expects a positive number, got '%s'", spec, key, v);
  *out = x;
  return KG_OK;
}

static int set_key(const char *spec, const char *key, const char *val, kg_synthetic_spec *s, unsigned *seen) {
  kg_model_config *c = &s->config;
  long long v = 0;
  double d = 0;
  static const char *int_keys[] = {"dim", "hidden", "layers", "heads", "kv_heads", "vocab", "head_dim", "ctx"};
  int *int_fields[] = {&c->dim, &c->hidden_dim, &c->n_layers, &c->n_heads, &c->n_kv_heads, &c->vocab_size,
                       &c->head_dim, &c->max_seq_len};
  for (int i = 0; i < 8; i++) {
    if (strcmp(key, int_keys[i]) != 0) continue;
    KG_TRY(parse_ll(spec, key, val, 1, 1LL << 30, &v));
    *int_fields[i] = (int)v;
    *seen |= 1u << i;
    return KG_OK;
  }
  if (!strcmp(key, "seed")) {
    char *end = NULL;
    unsigned long long x = strtoull(val, &end, 10);
    if (!*val || *end || val[0] == '-')
      return kg_error(KG_ERR_ARG, "synthetic spec '%s': seed expects a non-negative integer, got '%s'", spec, val);
    s->seed = x;
  } else if (!strcmp(key, "theta")) {
    KG_TRY(parse_pos_double(spec, key, val, &d));
    c->rope_theta = (float)d;
  } else if (!strcmp(key, "eps")) {
    KG_TRY(parse_pos_double(spec, key, val, &d));
    c->norm_eps = (float)d;
  } else if (!strcmp(key, "tied")) {
    KG_TRY(parse_ll(spec, key, val, 0, 1, &v));
    c->tied_embeddings = (int)v;
  } else if (!strcmp(key, "dtype")) {
    kg_dtype t;
    if (kg_dtype_from_name(val, &t) < 0 || (t != KG_DT_F32 && t != KG_DT_BF16 && t != KG_DT_F16))
      return kg_error(KG_ERR_ARG, "synthetic spec '%s': dtype must be f32, bf16 or f16, got '%s'", spec, val);
    s->dtype = t;
  } else {
    return kg_error(KG_ERR_ARG, "synthetic spec '%s': unknown key '%s'", spec, key);
  }
  return KG_OK;
}

int kg_synthetic_spec_parse(const char *spec, kg_synthetic_spec *out) {
  memset(out, 0, sizeof(*out));
  kg_model_config_defaults(&out->config);
  out->dtype = KG_DT_BF16;
  if (!strncmp(spec, "synthetic:", 10)) spec += 10;
  char buf[512];
  if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
    return kg_error(KG_ERR_ARG, "synthetic spec is too long");
  kg_model_config *c = &out->config;
  c->n_kv_heads = 0;
  c->vocab_size = 32000;
  unsigned seen = 0;
  int have_preset = 0, first = 1, preset_mha = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save), first = 0) {
    while (*tok == ' ') tok++;
    char *eq = strchr(tok, '=');
    if (!eq) {
      const preset *p = NULL;
      for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
        if (!strcasecmp(tok, presets[i].name)) p = &presets[i];
      if (!first || !p)
        return kg_error(KG_ERR_ARG,
                        "synthetic spec '%s': '%s' is not a preset (llama-2-7b, llama-3-8b, llama-3.1-8b, dclm-7b, "
                        "smollm2-135m, stories260k) or key=value",
                        spec, tok);
      apply_preset(p, c);
      have_preset = 1;
      preset_mha = p->heads == p->kv_heads;
      continue;
    }
    *eq = '\0';
    KG_TRY(set_key(spec, tok, eq + 1, out, &seen));
  }
  if (!have_preset) {
    const unsigned required = 0xf; /* dim, hidden, layers, heads */
    if ((seen & required) != required)
      return kg_error(KG_ERR_ARG, "synthetic spec '%s': dim, hidden, layers and heads are required without a preset",
                      spec);
  }
  /* heads overridden without kv_heads: multi-head presets stay multi-head */
  if (have_preset && (seen & 8u) && !(seen & 16u) && preset_mha) c->n_kv_heads = c->n_heads;
  if (!c->n_kv_heads) c->n_kv_heads = c->n_heads;
  /* a preset's special token ids do not survive a smaller vocabulary */
  if (c->bos_id >= c->vocab_size) c->bos_id = -1;
  if (c->eos_id >= c->vocab_size) c->eos_id = -1;
  if (!(seen & (1u << 6)) && c->n_heads > 0) c->head_dim = c->dim / c->n_heads;
  if (c->arch == KG_ARCH_DCLM && (seen & 1u) && !(seen & 2u)) c->hidden_dim = kg_dclm_hidden_dim(c->dim);
  snprintf(c->name, sizeof(c->name), "%s", spec);
  return kg_model_config_validate(c, "synthetic spec");
}

/* ---- generation ---- */

#define CHUNK_ELEMS ((int64_t)1 << 16) /* unit of work handed to a thread */
#define BATCH 1024                       /* floats generated before one conversion call */

static inline uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* The k-th output of a splitmix64 stream started at `key`, computed directly
 * (counter mode) so that any element can be generated on its own. */
static inline uint64_t splitmix64_at(uint64_t key, uint64_t k) {
  uint64_t x = key + k * 0x9e3779b97f4a7c15ULL;
  return splitmix64(&x);
}

static uint64_t name_key(uint64_t seed, const char *name) {
  uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
  uint64_t x = seed ^ h;
  return splitmix64(&x);
}

static inline uint32_t sum16x4(uint64_t r) {
  return (uint32_t)(r & 0xffff) + (uint32_t)((r >> 16) & 0xffff) + (uint32_t)((r >> 32) & 0xffff) +
         (uint32_t)(r >> 48);
}

/* Element i of a tensor: the centred sum of eight 16-bit uniforms taken from
 * stream outputs 2i and 2i+1, times `scale`. Only integer arithmetic and one
 * correctly rounded multiplication: identical results on every machine and
 * for every vector width. With GCC on x86-64 an AVX-512 clone is selected at
 * run time (64-bit multiplies vectorize there; about 2.5x faster). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "default"), optimize("O3")))
#endif
static void normal_batch(uint64_t key, int64_t first, int n, float scale, float *out) {
  for (int i = 0; i < n; i++) {
    uint64_t k = 2 * (uint64_t)(first + i);
    uint32_t s = sum16x4(splitmix64_at(key, k)) + sum16x4(splitmix64_at(key, k + 1));
    /* 8 * 32767.5 is the mean; the difference is an exact small integer */
    out[i] = (float)((int32_t)s - 262140) * scale;
  }
}

typedef struct gen_tensor {
  const kg_tensor_spec *spec;
  unsigned char *data;
  int64_t elems;
  int64_t first_chunk;
  uint64_t key;
} gen_tensor;

typedef struct gen_job {
  gen_tensor *tensors;
  size_t n;
  int64_t total_chunks;
  int64_t next; /* atomic work counter */
  kg_dtype dtype;
  float scale;
} gen_job;

static void gen_chunk(const gen_job *job, const gen_tensor *t, int64_t chunk) {
  int64_t begin = chunk * CHUNK_ELEMS;
  int64_t end = begin + CHUNK_ELEMS < t->elems ? begin + CHUNK_ELEMS : t->elems;
  size_t es = kg_dtype_block_bytes(job->dtype);
  float buf[BATCH];
  for (int64_t i = begin; i < end; i += BATCH) {
    int n = (int)(end - i < BATCH ? end - i : BATCH);
    if (t->spec->is_norm) {
      for (int k = 0; k < n; k++) buf[k] = 1.0f;
    } else {
      normal_batch(t->key, i, n, job->scale, buf);
    }
    kg_convert_from_f32(job->dtype, buf, t->data + (size_t)i * es, n);
  }
}

static void *gen_worker(void *arg) {
  gen_job *job = arg;
  for (;;) {
    int64_t c = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
    if (c >= job->total_chunks) break;
    size_t lo = 0, hi = job->n; /* last tensor whose first_chunk <= c */
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (job->tensors[mid].first_chunk <= c) lo = mid;
      else hi = mid;
    }
    gen_chunk(job, &job->tensors[lo], c - job->tensors[lo].first_chunk);
  }
  return NULL;
}

static int thread_count(int64_t chunks) {
  const char *env = getenv("KG_THREADS");
  if (!env || !*env) env = getenv("OMP_NUM_THREADS");
  long n = env && *env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > 256) n = 256;
  if (n > chunks) n = chunks > 0 ? (long)chunks : 1;
  return (int)n;
}

static _Thread_local double last_seconds, last_bytes;

void kg_synthetic_last_timing(double *seconds, double *bytes) {
  *seconds = last_seconds;
  *bytes = last_bytes;
}

/* One anonymous mapping holds every tensor: the kernel hands out zero pages
 * lazily, so the workers touch (and fault in) their own chunks in parallel
 * instead of one thread clearing gigabytes first. */
static int map_region(kg_checkpoint *ck, size_t bytes, unsigned char **out) {
  kg_mapped_file *f = calloc(1, sizeof(*f));
  if (!f || !(f->path = strdup("synthetic weights"))) {
    free(f);
    return kg_error(KG_ERR_NOMEM, "%s: out of memory", ck->path);
  }
  void *p = bytes ? mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) : NULL;
  if (p == MAP_FAILED) {
    kg_mapped_file_close(f);
    return kg_error(KG_ERR_NOMEM, "%s: cannot map %.2f GiB for synthetic weights", ck->path,
                    (double)bytes / (1 << 30));
  }
  f->data = p;
  f->size = bytes;
  int rc = kg_arena_adopt_mapping(ck->arena, f);
  if (rc < 0) {
    kg_mapped_file_close(f);
    return rc;
  }
  *out = p;
  return KG_OK;
}

int kg_synthetic_checkpoint(const kg_synthetic_spec *spec, kg_checkpoint **out) {
  int rc = KG_OK;
  kg_checkpoint *ck = NULL;
  kg_tensor_spec *specs = NULL;
  gen_tensor *gts = NULL;
  pthread_t *threads = NULL;
  char path[96];
  *out = NULL;
  if (spec->dtype != KG_DT_F32 && spec->dtype != KG_DT_BF16 && spec->dtype != KG_DT_F16)
    return kg_error(KG_ERR_ARG, "synthetic weights must be f32, bf16 or f16, not %s", kg_dtype_name(spec->dtype));
  KG_TRY(kg_model_config_validate(&spec->config, "synthetic spec"));
  snprintf(path, sizeof(path), "synthetic:%s", spec->config.name);
  double t0 = kg_now();
  if ((rc = kg_checkpoint_new(KG_CKPT_SYNTHETIC, path, &ck)) < 0) goto done;
  ck->config = spec->config;
  ck->rope_interleaved = 0;
  size_t n = kg_checkpoint_expected_tensors(&ck->config, NULL);
  if (!(specs = kg_arena_alloc(ck->arena, n * sizeof(*specs))) || !(gts = calloc(n, sizeof(*gts)))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  kg_checkpoint_expected_tensors(&ck->config, specs);
  size_t es = kg_dtype_block_bytes(spec->dtype), total = 0;
  int64_t chunks = 0;
  for (size_t i = 0; i < n; i++) {
    gts[i].spec = &specs[i];
    gts[i].elems = specs[i].shape[0] * (specs[i].ndim == 2 ? specs[i].shape[1] : 1);
    gts[i].first_chunk = chunks;
    gts[i].key = name_key(spec->seed, specs[i].name);
    chunks += (gts[i].elems + CHUNK_ELEMS - 1) / CHUNK_ELEMS;
    total += ((size_t)gts[i].elems * es + 63) & ~(size_t)63;
  }
  unsigned char *region = NULL;
  if ((rc = map_region(ck, total, &region)) < 0) goto done;
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    gts[i].data = region + off;
    size_t nb = (size_t)gts[i].elems * es;
    if ((rc = kg_checkpoint_add(ck, specs[i].name, spec->dtype, specs[i].ndim, specs[i].shape, gts[i].data, nb)) < 0)
      goto done;
    off += (nb + 63) & ~(size_t)63;
  }
  /* sd of the sum of eight uniforms on {0..65535} is sqrt(8 * (65536^2 - 1) / 12) */
  gen_job job = {gts, n, chunks, 0, spec->dtype, (float)(0.02 / sqrt(8.0 * (65536.0 * 65536.0 - 1.0) / 12.0))};
  int nt = thread_count(chunks);
  if (!(threads = calloc((size_t)nt, sizeof(*threads)))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  int started = 0;
  for (; started < nt - 1; started++)
    if (pthread_create(&threads[started], NULL, gen_worker, &job) != 0) break;
  gen_worker(&job); /* the calling thread works too; it finishes whatever failed to start */
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
  last_seconds = kg_now() - t0;
  last_bytes = (double)total;
  kg_debug("%s: generated %.2f GB in %.2f s (%.2f GB/s, %d threads)", path, total / 1e9, last_seconds,
           total / 1e9 / (last_seconds > 0 ? last_seconds : 1e-9), nt);
  *out = ck;
  ck = NULL;
done:
  free(threads);
  free(gts);
  kg_checkpoint_close(ck);
  return rc;
}
