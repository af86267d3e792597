/* The CPU reference backend: float32 everywhere, OpenBLAS for matrix
 * products, OpenMP for the element-wise and row-wise operations. Device
 * memory is host memory, and uploaded weights alias the caller's host array
 * (no copy), so edits to a model's master weights are seen at once. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "model/backend.h"

/* Query rows per attention tile: large enough for efficient GEMMs, small
 * enough that the score tile [tile, kv_len] stays in cache-friendly sizes. */
#define ATTN_TILE 128
/* Below this many scalar operations a parallel region costs more than it
 * saves (thread wake-up is microseconds; on a loaded or oversubscribed node,
 * much more). */
#define PAR_MIN_WORK 32768

typedef struct cpu_state {
  float *scores;   /* [ATTN_TILE * max_kv] scratch for attention */
  size_t scores_cap;
} cpu_state;

static void cpu_destroy(kg_backend *be) {
  cpu_state *st = be->impl;
  if (st) free(st->scores);
  free(st);
  free(be);
}

static void *cpu_alloc(kg_backend *be, size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
    kg_error(KG_ERR_NOMEM, "out of host memory allocating %.1f MiB", (double)bytes / (1 << 20));
    return NULL;
  }
  return p;
}

static void cpu_release(kg_backend *be, void *ptr) { free(ptr); }

static int cpu_memcpy(kg_backend *be, void *dst, const void *src, size_t bytes) {
  if (bytes) memmove(dst, src, bytes);
  return KG_OK;
}

static int cpu_synchronize(kg_backend *be) { return KG_OK; }

static int cpu_weight_upload(kg_backend *be, kg_weight *w, const float *host, int rows, int cols) {
  w->rows = rows;
  w->cols = cols;
  w->dtype = KG_DT_F32;
  w->data = (void *)host;
  w->exact = 1;
  return KG_OK;
}

static void cpu_weight_release(kg_backend *be, kg_weight *w) { w->data = NULL; }

static int cpu_embed(kg_backend *be, const kg_weight *table, const int32_t *tokens, int64_t n, float *out) {
  const float *t = table->data;
  const size_t d = (size_t)table->cols;
#pragma omp parallel for schedule(static) if ((size_t)n * d > PAR_MIN_WORK)
  for (int64_t i = 0; i < n; i++) memcpy(out + (size_t)i * d, t + (size_t)tokens[i] * d, d * sizeof(float));
  return KG_OK;
}

static int cpu_linear(kg_backend *be, const kg_weight *w, const float *x, int64_t n, float *y) {
  if (n <= 0) return KG_OK;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, w->rows, w->cols, 1.0f, x, w->cols,
              (const float *)w->data, w->cols, 0.0f, y, w->rows);
  return KG_OK;
}

static int cpu_norm(kg_backend *be, kg_norm_kind kind, const float *x, const float *gain, int64_t n, int d,
                    float eps, float *y) {
#pragma omp parallel for schedule(static) if (n * d > PAR_MIN_WORK)
  for (int64_t r = 0; r < n; r++) {
    const float *xr = x + (size_t)r * d;
    float *yr = y + (size_t)r * d;
    /* Accumulate in double: the reference normalizes in float32 but summation
     * order differs anyway, and double keeps us closer to the exact value. */
    if (kind == KG_NORM_RMS) {
      double ss = 0.0;
      for (int i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
      float inv = (float)(1.0 / sqrt(ss / d + (double)eps));
      for (int i = 0; i < d; i++) yr[i] = xr[i] * inv * gain[i];
    } else {
      double mean = 0.0, var = 0.0;
      for (int i = 0; i < d; i++) mean += xr[i];
      mean /= d;
      for (int i = 0; i < d; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
      var /= d;
      float inv = (float)(1.0 / sqrt(var + (double)eps));
      float m = (float)mean;
      for (int i = 0; i < d; i++) yr[i] = (xr[i] - m) * inv * gain[i];
    }
  }
  return KG_OK;
}

static int cpu_rope(kg_backend *be, float *x, int n_seq, int T, int pos0, int n_heads, int head_dim,
                    const float *inv_freq) {
  const int half = head_dim / 2;
  const int width = n_heads * head_dim;
#pragma omp parallel for schedule(static) if ((int64_t)T * n_seq * width > PAR_MIN_WORK)
  for (int t = 0; t < T; t++) {
    float cs[512], sn[512]; /* head_dim <= 1024 is validated at load */
    const double pos = (double)(pos0 + t);
    for (int i = 0; i < half; i++) {
      /* HF computes the angle in float32 (pos * inv_freq); do the same so
       * long positions round identically. */
      float angle = (float)pos * inv_freq[i];
      cs[i] = cosf(angle);
      sn[i] = sinf(angle);
    }
    for (int s = 0; s < n_seq; s++) {
      float *row = x + ((size_t)s * T + t) * width;
      for (int h = 0; h < n_heads; h++) {
        float *v = row + h * head_dim;
        for (int i = 0; i < half; i++) {
          float a = v[i], b = v[i + half];
          v[i] = a * cs[i] - b * sn[i];
          v[i + half] = b * cs[i] + a * sn[i];
        }
      }
    }
  }
  return KG_OK;
}

static int cpu_cache_store(kg_backend *be, float *cache, const float *x, int n_seq, int T, int pos0,
                           int kv_stride, int width) {
  for (int s = 0; s < n_seq; s++)
    memcpy(cache + ((size_t)s * kv_stride + pos0) * width, x + (size_t)s * T * width,
           (size_t)T * width * sizeof(float));
  return KG_OK;
}

static int cpu_attention(kg_backend *be, const kg_attention_args *a) {
  cpu_state *st = be->impl;
  const int hd = a->head_dim;
  const int q_width = a->n_heads * hd;
  const int kv_width = a->n_kv_heads * hd;
  const int group = a->n_heads / a->n_kv_heads;
  const int kv_total = a->pos0 + a->T;
  const float scale = 1.0f / sqrtf((float)hd);
  size_t need = (size_t)ATTN_TILE * kv_total;
  if (need > st->scores_cap) {
    float *grown = realloc(st->scores, need * sizeof(float));
    if (!grown) return kg_error(KG_ERR_NOMEM, "out of memory for attention scores (%d keys)", kv_total);
    st->scores = grown;
    st->scores_cap = need;
  }
  float *S = st->scores;
  for (int s = 0; s < a->n_seq; s++) {
    const float *K = a->k_cache + (size_t)s * a->kv_stride * kv_width;
    const float *V = a->v_cache + (size_t)s * a->kv_stride * kv_width;
    for (int h = 0; h < a->n_heads; h++) {
      const int kvh = h / group;
      for (int t0 = 0; t0 < a->T; t0 += ATTN_TILE) {
        const int rows = a->T - t0 < ATTN_TILE ? a->T - t0 : ATTN_TILE;
        const int keys = a->pos0 + t0 + rows; /* causal: the tile's last row sees this many */
        const float *Q = a->q + ((size_t)s * a->T + t0) * q_width + (size_t)h * hd;
        float *O = a->out + ((size_t)s * a->T + t0) * q_width + (size_t)h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, hd, scale, Q, q_width,
                    K + (size_t)kvh * hd, kv_width, 0.0f, S, keys);
#pragma omp parallel for schedule(static) if ((int64_t)rows * keys > PAR_MIN_WORK)
        for (int r = 0; r < rows; r++) {
          float *sr = S + (size_t)r * keys;
          const int visible = a->pos0 + t0 + r + 1;
          float mx = -INFINITY;
          for (int j = 0; j < visible; j++) mx = sr[j] > mx ? sr[j] : mx;
          double sum = 0.0;
          for (int j = 0; j < visible; j++) {
            sr[j] = expf(sr[j] - mx);
            sum += sr[j];
          }
          const float inv = (float)(1.0 / sum);
          for (int j = 0; j < visible; j++) sr[j] *= inv;
          for (int j = visible; j < keys; j++) sr[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, keys, 1.0f, S, keys,
                    V + (size_t)kvh * hd, kv_width, 0.0f, O, q_width);
      }
    }
  }
  return KG_OK;
}

static int cpu_swiglu(kg_backend *be, const float *gate, const float *up, int64_t n, float *out) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN_WORK)
  for (int64_t i = 0; i < n; i++) {
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
  return KG_OK;
}

static int cpu_add(kg_backend *be, float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN_WORK)
  for (int64_t i = 0; i < n; i++) y[i] += x[i];
  return KG_OK;
}

static int cpu_gram_accumulate(kg_backend *be, const float *x, int64_t n, int d, double *gram, double *colsq) {
  enum { CHUNK = 256 };
  double *xd = NULL;
  if (gram) {
    xd = malloc((size_t)CHUNK * d * sizeof(double));
    if (!xd) return kg_error(KG_ERR_NOMEM, "out of memory accumulating a %dx%d Gram matrix", d, d);
  }
  for (int64_t r0 = 0; r0 < n; r0 += CHUNK) {
    const int rows = (int)(n - r0 < CHUNK ? n - r0 : CHUNK);
    const float *xc = x + (size_t)r0 * d;
    if (colsq) {
#pragma omp parallel for schedule(static) if ((int64_t)rows * d > PAR_MIN_WORK)
      for (int j = 0; j < d; j++) {
        double acc = 0.0;
        for (int r = 0; r < rows; r++) acc += (double)xc[(size_t)r * d + j] * xc[(size_t)r * d + j];
        colsq[j] += acc;
      }
    }
    if (gram) {
      for (size_t i = 0; i < (size_t)rows * d; i++) xd[i] = xc[i];
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, rows, 1.0, xd, d, 1.0, gram, d);
    }
  }
  if (gram) {
    /* dsyrk filled the upper triangle; mirror it so callers see a full matrix. */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < d; i++)
      for (int j = 0; j < i; j++) gram[(size_t)i * d + j] = gram[(size_t)j * d + i];
  }
  free(xd);
  return KG_OK;
}

double kg_row_logsumexp(const float *x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int i = 0; i < n; i++) sum += exp((double)x[i] - (double)mx);
  return (double)mx + log(sum);
}

int32_t kg_row_argmax(const float *x, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

#define LN2 0.69314718055994530942

double kg_row_js_lse(const float *p, double lse_p, const float *q, double lse_q, int n) {
  double js = 0.0;
  for (int i = 0; i < n; i++) {
    const double lp = (double)p[i] - lse_p, lq = (double)q[i] - lse_q;
    if (lp == lq) continue; /* equal probabilities add exactly 0 */
    const double hi = lp > lq ? lp : lq, lo = lp > lq ? lq : lp;
    if (hi == -INFINITY || isnan(hi)) continue;
    /* log M = hi + log1p(e^(lo-hi)) - ln 2 stays finite when one probability
     * underflows; the larger side adds e^hi (ln2 - L), the smaller e^lo (lo - log M). */
    const double d = lo - hi, t = exp(d), L = log1p(t), e = exp(hi);
    double term = LN2 - L;
    if (t > 0.0) term += t * (d + LN2 - L);
    js += e * term;
  }
  js *= 0.5;
  return js < 0.0 ? 0.0 : js > LN2 ? LN2 : js;
}

static int cpu_row_nll(kg_backend *be, const float *logits, int64_t n, int vocab, const int32_t *targets,
                       double *nll) {
#pragma omp parallel for schedule(static) if (n * (int64_t)vocab > PAR_MIN_WORK)
  for (int64_t i = 0; i < n; i++) {
    const float *row = logits + (size_t)i * vocab;
    nll[i] = kg_row_logsumexp(row, vocab) - (double)row[targets[i]];
  }
  return KG_OK;
}

static int cpu_row_js(kg_backend *be, const float *p, const float *q, int64_t n, int vocab, double *js,
                      int32_t *argmax_p, int32_t *argmax_q) {
#pragma omp parallel for schedule(dynamic, 4) if (n * (int64_t)vocab > PAR_MIN_WORK)
  for (int64_t i = 0; i < n; i++) {
    const float *pr = p + (size_t)i * vocab, *qr = q + (size_t)i * vocab;
    js[i] = kg_row_js_lse(pr, kg_row_logsumexp(pr, vocab), qr, kg_row_logsumexp(qr, vocab), vocab);
    if (argmax_p) argmax_p[i] = kg_row_argmax(pr, vocab);
    if (argmax_q) argmax_q[i] = kg_row_argmax(qr, vocab);
  }
  return KG_OK;
}

static const kg_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .to_device = cpu_memcpy,
    .to_host = cpu_memcpy,
    .copy = cpu_memcpy,
    .synchronize = cpu_synchronize,
    .weight_upload = cpu_weight_upload,
    .weight_release = cpu_weight_release,
    .embed = cpu_embed,
    .linear = cpu_linear,
    .norm = cpu_norm,
    .rope = cpu_rope,
    .cache_store = cpu_cache_store,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .gram_accumulate = cpu_gram_accumulate,
    .row_nll = cpu_row_nll,
    .row_js = cpu_row_js,
};

int kg_cpu_backend_create(int n_threads, kg_backend **out) {
  *out = NULL;
  kg_backend *be = calloc(1, sizeof(*be));
  cpu_state *st = calloc(1, sizeof(*st));
  if (!be || !st) {
    free(be);
    free(st);
    return kg_error(KG_ERR_NOMEM, "out of memory creating the CPU backend");
  }
  if (n_threads > 0) {
    omp_set_num_threads(n_threads);
    openblas_set_num_threads(n_threads);
  }
  be->ops = &cpu_ops;
  be->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
  be->impl = st;
  be->act16 = KG_DT_BF16; /* unused: the CPU has no 16-bit path */
  *out = be;
  return KG_OK;
}
