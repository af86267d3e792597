/* The sequential layer-wise compression pipeline (see compress.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/compress.h"
#include "compress/compress_internal.h"
#include "compress/owl.h"
#include "compress/stats.h"
#include "io/error.h"
#include "io/log.h"

/* The reference's true-sequential groups; without it, one group of all seven. */
static const kg_linear_id all_linears[] = {KG_LIN_Q, KG_LIN_K, KG_LIN_V, KG_LIN_O, KG_LIN_GATE, KG_LIN_UP, KG_LIN_DOWN};
static const kg_linear_id seq_attn_in[] = {KG_LIN_K, KG_LIN_V, KG_LIN_Q};
static const kg_linear_id seq_attn_out[] = {KG_LIN_O};
static const kg_linear_id seq_mlp_in[] = {KG_LIN_UP, KG_LIN_GATE};
static const kg_linear_id seq_mlp_hidden[] = {KG_LIN_DOWN};

typedef struct linear_group {
  const kg_linear_id *ids;
  int n;
} linear_group;

typedef struct pipeline {
  kg_model *m;
  const kg_compress_opts *o;
  const kg_calib_set *calib;
  kg_compress_report *rep;
  int rank, size;
  int s0, s1;            /* this rank's calibration samples [s0, s1) */
  int T;
  size_t sample_floats;  /* T * dim */
  float *inps, *outs;    /* backend memory [s1 - s0, T, dim] */
  float *xs;             /* backend memory [T, dim]: one sample for statistics passes */
  float *host_x;         /* host copy of a hook input when the backend is not the CPU */
  size_t host_x_cap;
  int want[KG_INPUT_COUNT];
  int last_wanted;       /* the pass may stop after this input */
  int stop_early;
  int with_gram;         /* main statistics carry the Gram matrix (Hessian methods) */
  kg_linear_stats stats[KG_INPUT_COUNT];
  kg_linear_stats recon[KG_INPUT_COUNT]; /* Gram on the first samples, for Hessian-free methods */
  int recon_local;       /* samples of this shard feeding `recon` */
  int sample;            /* shard index of the sample being run */
  double stats_seconds;
  double forward_seconds;
  double solve_seconds;
} pipeline;

static int is_cpu(const kg_backend *be) { return !strcmp(be->ops->name, "cpu"); }

static int team_error(int mpi_rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(mpi_rc, msg, &len);
  return kg_error(KG_ERR_COMM, "%s failed: %s", what, msg);
}

/* Gives every rank the same verdict: a failure anywhere fails all, so no
 * rank waits forever in a collective the failed rank never reaches. */
static int team_agree(const pipeline *p, int rc) {
  if (p->o->team == MPI_COMM_NULL) return rc;
  int worst = rc < 0 ? rc : 0, all = 0;
  int mrc = MPI_Allreduce(&worst, &all, 1, MPI_INT, MPI_MIN, p->o->team);
  if (mrc != MPI_SUCCESS) return team_error(mrc, "MPI_Allreduce");
  if (all < 0 && rc >= 0) return kg_error(all, "another rank of the team failed");
  return rc;
}

static int collect(void *ctx, int layer, kg_linear_input which, const float *x, int64_t n_rows, int cols) {
  pipeline *p = ctx;
  if (!p->want[which]) return 0;
  const double t0 = kg_now();
  const float *hx = x;
  if (!is_cpu(p->m->be)) {
    size_t bytes = (size_t)n_rows * cols * sizeof(float);
    if (bytes > p->host_x_cap) {
      float *grown = realloc(p->host_x, bytes);
      if (!grown) return kg_error(KG_ERR_NOMEM, "out of memory copying activations");
      p->host_x = grown;
      p->host_x_cap = bytes;
    }
    KG_TRY(p->m->be->ops->to_host(p->m->be, p->host_x, x, bytes));
    hx = p->host_x;
  }
  KG_TRY(kg_stats_accumulate(&p->stats[which], hx, n_rows, 1));
  if (p->recon[which].d && p->sample < p->recon_local) KG_TRY(kg_stats_accumulate(&p->recon[which], hx, n_rows, 1));
  p->stats_seconds += kg_now() - t0;
  return p->stop_early && (int)which == p->last_wanted ? KG_HOOK_STOP : 0;
}

static void stats_free_all(pipeline *p) {
  for (int i = 0; i < KG_INPUT_COUNT; i++) {
    kg_stats_free(&p->stats[i]);
    kg_stats_free(&p->recon[i]);
    memset(&p->stats[i], 0, sizeof(p->stats[i]));
    memset(&p->recon[i], 0, sizeof(p->recon[i]));
  }
}

static int input_width(const kg_model *m, kg_linear_input in) {
  switch (in) {
  case KG_INPUT_ATTN:
  case KG_INPUT_MLP: return m->cfg.dim;
  case KG_INPUT_ATTN_OUT: return m->cfg.n_heads * m->cfg.head_dim;
  default: return m->cfg.hidden_dim;
  }
}

/* Sets up accumulators for the inputs of `g`. */
static int stats_begin(pipeline *p, const linear_group *g, int need_recon) {
  stats_free_all(p);
  memset(p->want, 0, sizeof(p->want));
  p->last_wanted = -1;
  for (int i = 0; i < g->n; i++) {
    kg_linear_input in = kg_linear_input_of(g->ids[i]);
    p->want[in] = 1;
    if ((int)in > p->last_wanted) p->last_wanted = in;
  }
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    if (!p->want[in]) continue;
    KG_TRY(kg_stats_init(&p->stats[in], input_width(p->m, in), p->with_gram));
    if (need_recon && !p->with_gram) KG_TRY(kg_stats_init(&p->recon[in], input_width(p->m, in), 1));
  }
  return KG_OK;
}

static int stats_allreduce(pipeline *p) {
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    if (!p->want[in]) continue;
    KG_TRY(kg_stats_allreduce(&p->stats[in], p->o->team));
    if (p->recon[in].d) KG_TRY(kg_stats_allreduce(&p->recon[in], p->o->team));
  }
  return KG_OK;
}

/* Runs every sample of the shard through block `layer` with the statistics
 * hook. With dense_outs the full block output of each sample is kept in outs
 * (propagate = dense); otherwise a scratch buffer is used and the pass may
 * stop after the last input it needs. */
static int statistics_pass(pipeline *p, int layer, int dense_outs) {
  kg_backend *be = p->m->be;
  const size_t bytes = p->sample_floats * sizeof(float);
  const double t0 = kg_now();
  p->stop_early = !dense_outs;
  for (int s = 0; s < p->s1 - p->s0; s++) {
    p->sample = s;
    float *x = dense_outs ? p->outs + (size_t)s * p->sample_floats : p->xs;
    KG_TRY(be->ops->copy(be, x, p->inps + (size_t)s * p->sample_floats, bytes));
    int rc = kg_model_block_forward(p->m, layer, x, 1, p->T, collect, p);
    if (rc < 0) return rc;
  }
  p->forward_seconds += kg_now() - t0;
  return KG_OK;
}

/* outs = block(inps) with the block's current weights. */
static int propagate_pass(pipeline *p, int layer) {
  kg_backend *be = p->m->be;
  const size_t bytes = p->sample_floats * sizeof(float);
  const double t0 = kg_now();
  for (int s = 0; s < p->s1 - p->s0; s++) {
    float *x = p->outs + (size_t)s * p->sample_floats;
    KG_TRY(be->ops->copy(be, x, p->inps + (size_t)s * p->sample_floats, bytes));
    KG_TRY(kg_model_block_forward(p->m, layer, x, 1, p->T, NULL, NULL));
  }
  p->forward_seconds += kg_now() - t0;
  return KG_OK;
}

static int64_t count_zeros(const float *w, int64_t n) {
  int64_t z = 0;
  for (int64_t i = 0; i < n; i++) z += w[i] == 0.0f;
  return z;
}

/* Compresses the linears of `g` in block `layer`: each is solved by one rank
 * of the team (round robin) and broadcast to the others. */
static int compress_group(pipeline *p, int layer, const linear_group *g, double sparsity) {
  int rc = KG_OK;
  kg_block *b = &p->m->blocks[layer];
  double *H[KG_INPUT_COUNT] = {0}, *scaler[KG_INPUT_COUNT] = {0}, *G[KG_INPUT_COUNT] = {0};
  float *before = NULL, *zeros = NULL;
  const double t0 = kg_now();
  for (int i = 0; i < g->n && rc >= 0; i++) {
    const kg_linear_id id = g->ids[i];
    const kg_linear_input in = kg_linear_input_of(id);
    kg_linear *lin = &b->lin[id];
    const int64_t rows = lin->rows, cols = lin->cols;
    kg_linear_report *lr = p->rep ? &p->rep->linears[layer * KG_LIN_COUNT + id] : NULL;
    kg_linear_report local = {0};
    if (!lr) lr = &local;
    lr->layer = layer;
    lr->linear = id;
    lr->rows = rows;
    lr->cols = cols;
    lr->target_sparsity = kg_method_is_quantization(p->o->method) ? 0.0
                          : p->o->prune_n > 0                  ? (double)p->o->prune_n / p->o->prune_m
                                                               : sparsity;
    lr->recon_error = lr->recon_relative = NAN;
    const int owner = i % p->size;
    double info[5] = {0};
    if (p->rank == owner) {
      const double tl = kg_now();
      const int have_stats = p->stats[in].d > 0;
      if (have_stats && !scaler[in]) {
        if (!(scaler[in] = malloc((size_t)cols * sizeof(double)))) { rc = kg_error(KG_ERR_NOMEM, "out of memory"); break; }
        if ((rc = kg_stats_scaler_row(&p->stats[in], scaler[in])) < 0) break;
      }
      if (have_stats && p->with_gram && !H[in]) {
        if (!(H[in] = malloc((size_t)cols * cols * sizeof(double)))) { rc = kg_error(KG_ERR_NOMEM, "out of memory for a %lldx%lld Hessian", (long long)cols, (long long)cols); break; }
        if ((rc = kg_stats_hessian(&p->stats[in], H[in])) < 0) break;
      }
      const kg_linear_stats *gram_src = p->with_gram ? &p->stats[in] : p->recon[in].d ? &p->recon[in] : NULL;
      if (gram_src && gram_src->n_samples > 0 && !G[in]) {
        if (!(G[in] = malloc((size_t)cols * cols * sizeof(double)))) { rc = kg_error(KG_ERR_NOMEM, "out of memory"); break; }
        if ((rc = kg_stats_gram(gram_src, G[in])) < 0) break;
      }
      if (G[in]) {
        if (!(before = realloc(before, (size_t)rows * cols * sizeof(float))) ||
            !(zeros = realloc(zeros, (size_t)rows * cols * sizeof(float)))) {
          rc = kg_error(KG_ERR_NOMEM, "out of memory");
          break;
        }
        memcpy(before, lin->w, (size_t)rows * cols * sizeof(float));
        memset(zeros, 0, (size_t)rows * cols * sizeof(float));
      }
      rc = kg_compress_linear(p->o, sparsity, lin->w, rows, cols, scaler[in], H[in], lr);
      if (rc < 0) {
        kg_error_context("layer %d %s: ", layer, kg_linear_name(id));
        break;
      }
      double err = NAN, base = NAN;
      if (G[in]) {
        if ((rc = kg_recon_error(before, lin->w, rows, cols, G[in], &err)) < 0) break;
        if ((rc = kg_recon_error(before, zeros, rows, cols, G[in], &base)) < 0) break;
      }
      info[0] = err;
      info[1] = base > 0 ? err / base : NAN;
      info[2] = lr->percdamp;
      info[3] = lr->damp_retries;
      info[4] = kg_now() - tl;
    }
    rc = team_agree(p, rc);
    if (rc < 0) break;
    if (p->o->team != MPI_COMM_NULL) {
      int mrc = MPI_Bcast(lin->w, (int)(rows * cols), MPI_FLOAT, owner, p->o->team);
      if (mrc == MPI_SUCCESS) mrc = MPI_Bcast(info, 5, MPI_DOUBLE, owner, p->o->team);
      if (mrc != MPI_SUCCESS) {
        rc = team_error(mrc, "MPI_Bcast of compressed weights");
        break;
      }
    }
    lr->recon_error = info[0];
    lr->recon_relative = info[1];
    lr->percdamp = info[2];
    lr->damp_retries = (int)info[3];
    lr->seconds = info[4];
    lr->sparsity = (double)count_zeros(lin->w, rows * cols) / (double)(rows * cols);
  }
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    free(H[in]);
    free(scaler[in]);
    free(G[in]);
  }
  free(before);
  free(zeros);
  p->solve_seconds += kg_now() - t0;
  if (rc < 0) return rc;
  return kg_model_sync(p->m, layer);
}

static int embed_samples(pipeline *p) {
  const int32_t *tokens = p->calib->tokens + (size_t)p->s0 * p->T;
  return kg_model_embed(p->m, tokens, (int64_t)(p->s1 - p->s0) * p->T, p->inps);
}

static void swap_buffers(pipeline *p) {
  float *t = p->inps;
  p->inps = p->outs;
  p->outs = t;
}

/* OWL's first pass: the dense model's per-block outlier ratios of the Wanda
 * metric, turned into per-block sparsities. */
static int owl_allocate(pipeline *p, double *layer_sparsity) {
  const int L = p->m->cfg.n_layers;
  double *ratio = calloc((size_t)L, sizeof(double));
  double *scalers[KG_INPUT_COUNT] = {0};
  int rc = KG_OK;
  if (!ratio) return kg_error(KG_ERR_NOMEM, "out of memory");
  const int saved_gram = p->with_gram;
  p->with_gram = 0;
  linear_group all = {all_linears, KG_LIN_COUNT};
  if ((rc = embed_samples(p)) < 0) goto done;
  for (int l = 0; l < L; l++) {
    if ((rc = stats_begin(p, &all, 0)) < 0) goto done;
    if ((rc = statistics_pass(p, l, 1)) < 0) goto done;
    if ((rc = stats_allreduce(p)) < 0) goto done;
    kg_owl_linear lins[KG_LIN_COUNT];
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      kg_linear_input in = kg_linear_input_of(id);
      kg_linear *lin = &p->m->blocks[l].lin[id];
      if (!scalers[in]) {
        if (!(scalers[in] = malloc((size_t)lin->cols * sizeof(double)))) { rc = kg_error(KG_ERR_NOMEM, "out of memory"); goto done; }
        if ((rc = kg_stats_scaler_row(&p->stats[in], scalers[in])) < 0) goto done;
      }
      lins[id] = (kg_owl_linear){lin->w, lin->rows, lin->cols, scalers[in]};
    }
    if ((rc = kg_owl_outlier_ratio(lins, KG_LIN_COUNT, p->o->owl_m, &ratio[l])) < 0) goto done;
    for (int in = 0; in < KG_INPUT_COUNT; in++) {
      free(scalers[in]);
      scalers[in] = NULL;
    }
    swap_buffers(p);
  }
  rc = kg_owl_allocate(ratio, L, p->o->sparsity, p->o->owl_lambda, layer_sparsity);
  if (rc >= 0)
    kg_debug("OWL outlier ratios: first %.3f%%, last %.3f%%; sparsity %.3f .. %.3f", ratio[0], ratio[L - 1],
             layer_sparsity[0], layer_sparsity[L - 1]);
done:
  for (int in = 0; in < KG_INPUT_COUNT; in++) free(scalers[in]);
  free(ratio);
  stats_free_all(p);
  p->with_gram = saved_gram;
  return rc;
}

static int check_opts(const kg_model *m, const kg_calib_set *calib, const kg_compress_opts *o) {
  if (o->method < 0 || o->method >= KG_METHOD_COUNT) return kg_error(KG_ERR_ARG, "unknown method");
  if (kg_method_uses_calibration(o->method) && !calib)
    return kg_error(KG_ERR_ARG, "%s needs calibration data", kg_method_name(o->method));
  if (!kg_method_is_quantization(o->method) && o->method != KG_METHOD_DENSE) {
    if (o->prune_n > 0) {
      if (o->prune_m <= o->prune_n) return kg_error(KG_ERR_ARG, "bad N:M pattern %d:%d", o->prune_n, o->prune_m);
      if (o->method == KG_METHOD_OWL_WANDA || o->method == KG_METHOD_OWL_SPARSEGPT)
        return kg_error(KG_ERR_ARG, "OWL allocates unstructured sparsity per layer; it has no N:M form");
    } else if (!(o->sparsity >= 0.0 && o->sparsity < 1.0)) {
      return kg_error(KG_ERR_ARG, "sparsity %g is outside [0, 1)", o->sparsity);
    }
  }
  if (calib && calib->tokens) {
    for (size_t i = 0; i < (size_t)calib->nsamples * calib->seqlen; i++)
      if (calib->tokens[i] < 0 || calib->tokens[i] >= m->cfg.vocab_size)
        return kg_error(KG_ERR_ARG, "calibration token %d at index %zu is outside the vocabulary [0, %d)",
                        calib->tokens[i], i, m->cfg.vocab_size);
  }
  return KG_OK;
}

static double overall_sparsity(const kg_model *m) {
  double zeros = 0, total = 0;
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      const kg_linear *lin = &m->blocks[l].lin[id];
      zeros += (double)count_zeros(lin->w, (int64_t)lin->rows * lin->cols);
      total += (double)lin->rows * lin->cols;
    }
  return total > 0 ? zeros / total : 0.0;
}

/* Magnitude and RTN without calibration data: no passes at all. */
static int compress_without_data(pipeline *p) {
  for (int l = 0; l < p->m->cfg.n_layers; l++) {
    linear_group all = {all_linears, KG_LIN_COUNT};
    memset(p->stats, 0, sizeof(p->stats));
    KG_TRY(compress_group(p, l, &all, p->o->sparsity));
  }
  return KG_OK;
}

int kg_compress_model(kg_model *m, const kg_calib_set *calib, const kg_compress_opts *o, kg_compress_report *rep) {
  int rc = KG_OK;
  pipeline p = {0};
  const double t_start = kg_now();
  const int L = m->cfg.n_layers;
  kg_backend *be = m->be;
  double *layer_sparsity = NULL;
  if (rep) memset(rep, 0, sizeof(*rep));
  if ((rc = check_opts(m, calib, o)) < 0) return rc;
  if (o->method == KG_METHOD_DENSE) return KG_OK;
  p.m = m;
  p.o = o;
  p.calib = calib;
  p.rep = rep;
  p.rank = 0;
  p.size = 1;
  if (o->team != MPI_COMM_NULL) {
    MPI_Comm_rank(o->team, &p.rank);
    MPI_Comm_size(o->team, &p.size);
  }
  layer_sparsity = malloc((size_t)L * sizeof(double));
  if (!layer_sparsity) return kg_error(KG_ERR_NOMEM, "out of memory");
  for (int l = 0; l < L; l++) layer_sparsity[l] = o->sparsity;
  if (rep) {
    rep->linears = calloc((size_t)L * KG_LIN_COUNT, sizeof(kg_linear_report));
    rep->n_linears = L * KG_LIN_COUNT;
    rep->n_layers = L;
    if (!rep->linears) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory");
      goto done;
    }
  }
  p.with_gram = kg_method_uses_hessian(o->method);
  if (!calib) {
    rc = compress_without_data(&p);
    goto finish;
  }
  p.T = calib->seqlen;
  p.sample_floats = (size_t)calib->seqlen * m->cfg.dim;
  p.s0 = (int)((int64_t)calib->nsamples * p.rank / p.size);
  p.s1 = (int)((int64_t)calib->nsamples * (p.rank + 1) / p.size);
  if (p.s1 <= p.s0) {
    rc = kg_error(KG_ERR_ARG, "%d calibration samples cannot be split over a team of %d", calib->nsamples, p.size);
    goto done;
  }
  {
    /* Each rank measures the reconstruction error on its share of the first recon_samples samples. */
    int global = o->recon_samples < calib->nsamples ? o->recon_samples : calib->nsamples;
    int lo = p.s0 < global ? p.s0 : global, hi = p.s1 < global ? p.s1 : global;
    p.recon_local = hi - lo;
  }
  const size_t shard_bytes = (size_t)(p.s1 - p.s0) * p.sample_floats * sizeof(float);
  if (!(p.inps = be->ops->alloc(be, shard_bytes)) || !(p.outs = be->ops->alloc(be, shard_bytes)) ||
      !(p.xs = be->ops->alloc(be, p.sample_floats * sizeof(float)))) {
    rc = kg_error_context("calibration activations (%d samples x %d tokens): ", p.s1 - p.s0, p.T);
    goto done;
  }
  if (o->method == KG_METHOD_OWL_WANDA || o->method == KG_METHOD_OWL_SPARSEGPT) {
    if ((rc = owl_allocate(&p, layer_sparsity)) < 0) goto done;
  }
  if ((rc = embed_samples(&p)) < 0) goto done;
  const int need_recon = o->recon_samples > 0;
  for (int l = 0; l < L; l++) {
    linear_group groups[4];
    int n_groups = 0;
    if (o->true_sequential) {
      groups[n_groups++] = (linear_group){seq_attn_in, 3};
      groups[n_groups++] = (linear_group){seq_attn_out, 1};
      groups[n_groups++] = (linear_group){seq_mlp_in, 2};
      groups[n_groups++] = (linear_group){seq_mlp_hidden, 1};
    } else {
      groups[n_groups++] = (linear_group){all_linears, KG_LIN_COUNT};
    }
    for (int g = 0; g < n_groups; g++) {
      if ((rc = stats_begin(&p, &groups[g], need_recon)) < 0) goto done;
      /* The first pass of a block sees the dense block: its outputs are what
       * propagate = dense hands to the next block. */
      const int dense_outs = o->propagate_dense && g == 0;
      if ((rc = team_agree(&p, statistics_pass(&p, l, dense_outs))) < 0) goto done;
      if ((rc = stats_allreduce(&p)) < 0) goto done;
      if ((rc = compress_group(&p, l, &groups[g], layer_sparsity[l])) < 0) goto done;
    }
    stats_free_all(&p);
    if (!o->propagate_dense && (rc = team_agree(&p, propagate_pass(&p, l))) < 0) goto done;
    swap_buffers(&p);
    kg_debug("block %d/%d compressed", l + 1, L);
  }
finish:
  if (rc >= 0 && rep) {
    rep->overall_sparsity = overall_sparsity(m);
    rep->layer_sparsity = layer_sparsity;
    layer_sparsity = NULL;
    rep->seconds = kg_now() - t_start;
    rep->calib_forward_seconds = p.forward_seconds;
    rep->stats_seconds = p.stats_seconds;
    rep->solve_seconds = p.solve_seconds;
    rep->recon_tokens = p.with_gram && calib ? (int64_t)calib->nsamples * calib->seqlen
                        : calib ? (int64_t)(o->recon_samples < calib->nsamples ? o->recon_samples : calib->nsamples) * calib->seqlen
                                : 0;
  }
done:
  stats_free_all(&p);
  if (p.inps) be->ops->release(be, p.inps);
  if (p.outs) be->ops->release(be, p.outs);
  if (p.xs) be->ops->release(be, p.xs);
  free(p.host_x);
  free(layer_sparsity);
  if (rc < 0 && rep) kg_compress_report_free(rep);
  return rc;
}
