/* The sequential layer-wise compression pipeline (see compress.h). What runs
 * where is decided here; the heavy work (activations, statistics, solves) is
 * done by an engine (engine.h): the host engine, or the CUDA engine when the
 * model lives on the CUDA backend. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/compress.h"
#include "compress/compress_internal.h"
#include "compress/engine.h"
#include "compress/owl.h"
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
  kg_engine *eng;
  int rank, size;
  int s0, s1;            /* this rank's calibration samples [s0, s1) */
  int T;
  int batch;             /* samples per block forward */
  int batch_n;           /* samples in the forward running now */
  int use16;             /* statistics hook on the 16-bit activation path */
  float *xs;             /* backend memory [batch * T, dim]: the samples a pass is running */
  int want[KG_INPUT_COUNT];
  int last_wanted;       /* the pass may stop after this input */
  int stop_early;
  int with_gram;         /* main statistics carry the Gram matrix (Hessian methods) */
  int recon_local;       /* samples of this shard feeding the recon Gram */
  int sample;            /* shard index of the first sample being run */
  int64_t *zeros;        /* [n_layers * KG_LIN_COUNT] zeros per linear after compression, -1 = untouched */
  double forward_seconds;
  double solve_seconds;
} pipeline;

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

/* The hooks hand a batch to the engine in runs of samples on the same side
 * of recon_local: statistics count samples, and only the first recon_local
 * feed the recon Gram. Fewer, larger calls keep the device's Gram GEMMs long. */
static int collect(void *ctx, int layer, kg_linear_input which, const float *x, int64_t n_rows, int cols) {
  pipeline *p = ctx;
  if (!p->want[which]) return 0;
  const int64_t rows = n_rows / p->batch_n;
  for (int i = 0; i < p->batch_n;) {
    const int recon = p->sample + i < p->recon_local;
    int j = i + 1;
    while (j < p->batch_n && (p->sample + j < p->recon_local) == recon) j++;
    KG_TRY(p->eng->ops->stats_add(p->eng, which, x + i * rows * cols, (j - i) * rows, j - i, recon));
    i = j;
  }
  return p->stop_early && (int)which == p->last_wanted ? KG_HOOK_STOP : 0;
}

static int collect16(void *ctx, int layer, kg_linear_input which, const void *x, kg_dtype dtype, int64_t n_rows,
                     int cols) {
  pipeline *p = ctx;
  if (!p->want[which]) return 0;
  const int64_t rows = n_rows / p->batch_n;
  const char *bytes = x;
  for (int i = 0; i < p->batch_n;) {
    const int recon = p->sample + i < p->recon_local;
    int j = i + 1;
    while (j < p->batch_n && (p->sample + j < p->recon_local) == recon) j++;
    KG_TRY(p->eng->ops->stats_add16(p->eng, which, bytes + i * rows * cols * 2, dtype, (j - i) * rows, j - i, recon));
    i = j;
  }
  return p->stop_early && (int)which == p->last_wanted ? KG_HOOK_STOP : 0;
}

/* Samples [s, s + n) of a set into / from p->xs. */
static int load_batch(pipeline *p, int set, int s, int n) {
  const size_t sample = (size_t)p->T * p->m->cfg.dim;
  for (int i = 0; i < n; i++) KG_TRY(p->eng->ops->acts_load(p->eng, set, s + i, p->xs + i * sample));
  return KG_OK;
}

static int store_batch(pipeline *p, int set, int s, int n) {
  const size_t sample = (size_t)p->T * p->m->cfg.dim;
  for (int i = 0; i < n; i++) KG_TRY(p->eng->ops->acts_store(p->eng, set, s + i, p->xs + i * sample));
  return KG_OK;
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
  kg_stats_plan plan;
  memset(&plan, 0, sizeof(plan));
  memset(p->want, 0, sizeof(p->want));
  p->last_wanted = -1;
  for (int i = 0; i < g->n; i++) {
    kg_linear_input in = kg_linear_input_of(g->ids[i]);
    p->want[in] = 1;
    if ((int)in > p->last_wanted) p->last_wanted = in;
  }
  for (int in = 0; in < KG_INPUT_COUNT; in++) {
    plan.want[in] = p->want[in];
    plan.width[in] = input_width(p->m, in);
  }
  plan.with_gram = p->with_gram;
  plan.with_recon = need_recon && !p->with_gram;
  return p->eng->ops->stats_begin(p->eng, &plan);
}

/* Runs every sample of the shard through block `layer` with the statistics
 * hook. With dense_outs the full block output of each sample is kept in outs
 * (propagate = dense); otherwise the pass may stop after the last input it
 * needs. */
static int statistics_pass(pipeline *p, int layer, int dense_outs) {
  kg_engine *e = p->eng;
  const double t0 = kg_now();
  const int count = p->s1 - p->s0;
  p->stop_early = !dense_outs;
  for (int s = 0; s < count; s += p->batch) {
    const int nb = count - s < p->batch ? count - s : p->batch;
    p->sample = s;
    p->batch_n = nb;
    KG_TRY(load_batch(p, KG_ACTS_INPS, s, nb));
    int rc = p->use16 ? kg_model_block_forward16(p->m, layer, p->xs, nb, p->T, collect16, p)
                      : kg_model_block_forward(p->m, layer, p->xs, nb, p->T, collect, p);
    if (rc < 0) return rc;
    if (dense_outs) KG_TRY(store_batch(p, KG_ACTS_OUTS, s, nb));
  }
  KG_TRY(e->ops->stats_finish(e));
  p->forward_seconds += kg_now() - t0;
  return KG_OK;
}

/* outs = block(inps) with the block's current weights. */
static int propagate_pass(pipeline *p, int layer) {
  const double t0 = kg_now();
  const int count = p->s1 - p->s0;
  for (int s = 0; s < count; s += p->batch) {
    const int nb = count - s < p->batch ? count - s : p->batch;
    KG_TRY(load_batch(p, KG_ACTS_INPS, s, nb));
    KG_TRY(kg_model_block_forward(p->m, layer, p->xs, nb, p->T, NULL, NULL));
    KG_TRY(store_batch(p, KG_ACTS_OUTS, s, nb));
  }
  KG_TRY(p->m->be->ops->synchronize(p->m->be));
  p->forward_seconds += kg_now() - t0;
  return KG_OK;
}

static double target_sparsity(const kg_compress_opts *o, double sparsity) {
  return kg_method_is_quantization(o->method) ? 0.0 : o->prune_n > 0 ? (double)o->prune_n / o->prune_m : sparsity;
}

static int sync_masters(pipeline *p) { return p->eng->ops->sync_masters ? p->eng->ops->sync_masters(p->eng) : KG_OK; }

/* Compresses the linears of `g` in block `layer`. Each is solved by one rank
 * of the team (round robin); all ranks solve their share first, then every
 * result is broadcast from its owner, so the team's ranks work at once. */
static int compress_group(pipeline *p, int layer, const linear_group *g, double sparsity) {
  int rc = KG_OK;
  kg_block *b = &p->m->blocks[layer];
  kg_engine *e = p->eng;
  kg_solve_out outs[KG_LIN_COUNT];
  const double t0 = kg_now();
  memset(outs, 0, sizeof(outs));
  for (int i = 0; i < g->n && rc >= 0; i++) {
    if (i % p->size != p->rank) continue;
    const kg_linear_id id = g->ids[i];
    rc = e->ops->solve(e, &b->lin[id], kg_linear_input_of(id), sparsity, &outs[i]);
    if (rc < 0) kg_error_context("layer %d %s: ", layer, kg_linear_name(id));
  }
  const int end_rc = e->ops->solve_end(e);
  if (rc >= 0) rc = end_rc;
  rc = team_agree(p, rc);
  /* Engines that refresh the backend's weights themselves spare the upload. */
  int device_current = 1;
  if (rc >= 0 && p->o->team != MPI_COMM_NULL) rc = sync_masters(p);
  for (int i = 0; i < g->n && rc >= 0; i++) {
    const kg_linear_id id = g->ids[i];
    kg_linear *lin = &b->lin[id];
    const int owner = i % p->size;
    if (p->o->team != MPI_COMM_NULL) {
      double info[6] = {outs[i].recon_error, outs[i].recon_relative, outs[i].percdamp, outs[i].damp_retries,
                        (double)outs[i].zeros, outs[i].seconds};
      int mrc = MPI_Bcast(lin->w, (int)((int64_t)lin->rows * lin->cols), MPI_FLOAT, owner, p->o->team);
      if (mrc == MPI_SUCCESS) mrc = MPI_Bcast(info, 6, MPI_DOUBLE, owner, p->o->team);
      if (mrc != MPI_SUCCESS) {
        rc = team_error(mrc, "MPI_Bcast of compressed weights");
        break;
      }
      outs[i] = (kg_solve_out){info[0], info[1], info[2], (int)info[3], (int64_t)info[4], info[5], 0};
    }
    device_current &= outs[i].device_current;
    const int64_t total = (int64_t)lin->rows * lin->cols;
    p->zeros[layer * KG_LIN_COUNT + id] = outs[i].zeros;
    if (p->rep) {
      kg_linear_report *lr = &p->rep->linears[layer * KG_LIN_COUNT + id];
      lr->layer = layer;
      lr->linear = id;
      lr->rows = lin->rows;
      lr->cols = lin->cols;
      lr->target_sparsity = target_sparsity(p->o, sparsity);
      lr->recon_error = outs[i].recon_error;
      lr->recon_relative = outs[i].recon_relative;
      lr->percdamp = outs[i].percdamp;
      lr->damp_retries = outs[i].damp_retries;
      lr->seconds = outs[i].seconds;
      lr->sparsity = (double)outs[i].zeros / (double)total;
    }
  }
  p->solve_seconds += kg_now() - t0;
  if (rc < 0) return rc;
  if (device_current) return KG_OK;
  KG_TRY(sync_masters(p));
  return kg_model_sync(p->m, layer);
}

static int embed_samples(pipeline *p) {
  kg_engine *e = p->eng;
  for (int s = 0; s < p->s1 - p->s0; s++) {
    const int32_t *tokens = p->calib->tokens + (size_t)(p->s0 + s) * p->T;
    KG_TRY(kg_model_embed(p->m, tokens, p->T, p->xs));
    KG_TRY(e->ops->acts_store(e, KG_ACTS_INPS, s, p->xs));
  }
  return KG_OK;
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
    if ((rc = team_agree(p, statistics_pass(p, l, 1))) < 0) goto done;
    if ((rc = p->eng->ops->stats_allreduce(p->eng, p->o->team)) < 0) goto done;
    kg_owl_linear lins[KG_LIN_COUNT];
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      kg_linear_input in = kg_linear_input_of(id);
      kg_linear *lin = &p->m->blocks[l].lin[id];
      if (!scalers[in]) {
        if (!(scalers[in] = malloc((size_t)lin->cols * sizeof(double)))) { rc = kg_error(KG_ERR_NOMEM, "out of memory"); goto done; }
        if ((rc = p->eng->ops->scaler_row(p->eng, in, scalers[in])) < 0) goto done;
      }
      lins[id] = (kg_owl_linear){lin->w, lin->rows, lin->cols, scalers[in]};
    }
    if ((rc = kg_owl_outlier_ratio(lins, KG_LIN_COUNT, p->o->owl_m, &ratio[l])) < 0) goto done;
    for (int in = 0; in < KG_INPUT_COUNT; in++) {
      free(scalers[in]);
      scalers[in] = NULL;
    }
    p->eng->ops->acts_swap(p->eng);
  }
  rc = kg_owl_allocate(ratio, L, p->o->sparsity, p->o->owl_lambda, layer_sparsity);
  if (rc >= 0)
    kg_debug("OWL outlier ratios: first %.3f%%, last %.3f%%; sparsity %.3f .. %.3f", ratio[0], ratio[L - 1],
             layer_sparsity[0], layer_sparsity[L - 1]);
done:
  for (int in = 0; in < KG_INPUT_COUNT; in++) free(scalers[in]);
  free(ratio);
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

/* Over all linear weights; linears the run did not touch are counted on the host. */
static double overall_sparsity(const pipeline *p) {
  const kg_model *m = p->m;
  double zeros = 0, total = 0;
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      const kg_linear *lin = &m->blocks[l].lin[id];
      const int64_t n = (int64_t)lin->rows * lin->cols;
      int64_t z = p->zeros[l * KG_LIN_COUNT + id];
      if (z < 0) {
        z = 0;
        for (int64_t i = 0; i < n; i++) z += lin->w[i] == 0.0f;
      }
      zeros += (double)z;
      total += (double)n;
    }
  return total > 0 ? zeros / total : 0.0;
}

/* Magnitude and RTN without calibration data: no passes at all. */
static int compress_without_data(pipeline *p) {
  for (int l = 0; l < p->m->cfg.n_layers; l++) {
    linear_group all = {all_linears, KG_LIN_COUNT};
    KG_TRY(compress_group(p, l, &all, p->o->sparsity));
  }
  return KG_OK;
}

/* Samples, blocks, groups: the whole calibrated run. */
static int compress_with_data(pipeline *p, double *layer_sparsity) {
  const kg_compress_opts *o = p->o;
  const kg_calib_set *calib = p->calib;
  kg_backend *be = p->m->be;
  const int L = p->m->cfg.n_layers;
  p->T = calib->seqlen;
  /* Methods that ignore the data (magnitude, RTN) run passes only to measure
   * reconstruction errors: the first recon_samples samples are enough. */
  int used = calib->nsamples;
  if (!kg_method_uses_calibration(o->method) && o->recon_samples > 0 && o->recon_samples < used) used = o->recon_samples;
  p->s0 = (int)((int64_t)used * p->rank / p->size);
  p->s1 = (int)((int64_t)used * (p->rank + 1) / p->size);
  if (p->s1 <= p->s0)
    return kg_error(KG_ERR_ARG, "%d calibration samples cannot be split over a team of %d", used, p->size);
  {
    /* Each rank measures the reconstruction error on its share of the first recon_samples samples. */
    int global = o->recon_samples < calib->nsamples ? o->recon_samples : calib->nsamples;
    int lo = p->s0 < global ? p->s0 : global, hi = p->s1 < global ? p->s1 : global;
    p->recon_local = hi - lo;
  }
  p->batch = o->calib_batch > 0 ? o->calib_batch
             : p->eng->ops->preferred_batch ? p->eng->ops->preferred_batch(p->eng, p->T) : 1;
  if (p->batch > p->s1 - p->s0) p->batch = p->s1 - p->s0;
  if (p->batch < 1) p->batch = 1;
  p->batch_n = 1;
  /* KG_CALIB_ACT16=0 keeps the hooked passes on the float32 path (for comparisons). */
  const char *a16 = getenv("KG_CALIB_ACT16");
  p->use16 = p->eng->ops->stats_add16 && kg_model_has_act16(p->m) && !(a16 && !strcmp(a16, "0"));
  kg_debug("calibration passes: %d samples per forward, %s hook", p->batch, p->use16 ? "16-bit" : "float32");
  if (!(p->xs = be->ops->alloc(be, (size_t)p->batch * p->T * p->m->cfg.dim * sizeof(float))))
    return kg_error_context("calibration sample buffer (%d x %d tokens): ", p->batch, p->T);
  KG_TRY(p->eng->ops->acts_init(p->eng, p->s1 - p->s0, p->T, p->m->cfg.dim, o->propagate_dense ? 2 : 1));
  if (o->method == KG_METHOD_OWL_WANDA || o->method == KG_METHOD_OWL_SPARSEGPT) KG_TRY(owl_allocate(p, layer_sparsity));
  KG_TRY(embed_samples(p));
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
      KG_TRY(stats_begin(p, &groups[g], need_recon));
      /* The first pass of a block sees the dense block: its outputs are what
       * propagate = dense hands to the next block. */
      const int dense_outs = o->propagate_dense && g == 0 && l + 1 < L;
      KG_TRY(team_agree(p, statistics_pass(p, l, dense_outs)));
      KG_TRY(p->eng->ops->stats_allreduce(p->eng, o->team));
      KG_TRY(compress_group(p, l, &groups[g], layer_sparsity[l]));
    }
    /* The last block's outputs feed nothing: its propagate pass is skipped. */
    if (!o->propagate_dense && l + 1 < L) KG_TRY(team_agree(p, propagate_pass(p, l)));
    p->eng->ops->acts_swap(p->eng);
    kg_debug("block %d/%d compressed", l + 1, L);
  }
  return KG_OK;
}

int kg_compress_model(kg_model *m, const kg_calib_set *calib, const kg_compress_opts *o, kg_compress_report *rep) {
  int rc = KG_OK;
  pipeline p = {0};
  const double t_start = kg_now();
  const int L = m->cfg.n_layers;
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
  p.zeros = malloc((size_t)L * KG_LIN_COUNT * sizeof(int64_t));
  if (!layer_sparsity || !p.zeros) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int l = 0; l < L; l++) layer_sparsity[l] = o->sparsity;
  for (int i = 0; i < L * KG_LIN_COUNT; i++) p.zeros[i] = -1;
  if (rep) {
    rep->linears = calloc((size_t)L * KG_LIN_COUNT, sizeof(kg_linear_report));
    rep->n_linears = L * KG_LIN_COUNT;
    rep->n_layers = L;
    if (!rep->linears) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory");
      goto done;
    }
  }
  if ((rc = team_agree(&p, kg_engine_create(m, o, &p.eng))) < 0) goto done;
  kg_debug("compression engine: %s", p.eng->ops->name);
  p.with_gram = kg_method_uses_hessian(o->method);
  /* Magnitude and RTN read data only for reconstruction errors. */
  const int data_needed = calib && (kg_method_uses_calibration(o->method) || o->recon_samples > 0);
  rc = data_needed ? compress_with_data(&p, layer_sparsity) : compress_without_data(&p);
  if (rc >= 0) rc = sync_masters(&p);
  if (rc >= 0 && rep) {
    rep->overall_sparsity = overall_sparsity(&p);
    rep->layer_sparsity = layer_sparsity;
    layer_sparsity = NULL;
    rep->seconds = kg_now() - t_start;
    rep->calib_forward_seconds = p.forward_seconds;
    rep->stats_seconds = p.eng->ops->stats_seconds(p.eng);
    rep->solve_seconds = p.solve_seconds;
    rep->recon_tokens = !calib || o->recon_samples <= 0 ? 0
                        : p.with_gram ? (int64_t)calib->nsamples * calib->seqlen
                                      : (int64_t)(o->recon_samples < calib->nsamples ? o->recon_samples : calib->nsamples) *
                                            calib->seqlen;
  }
done:
  kg_engine_destroy(p.eng);
  if (p.xs) m->be->ops->release(m->be, p.xs);
  free(p.zeros);
  free(layer_sparsity);
  if (rc < 0 && rep) kg_compress_report_free(rep);
  return rc;
}
