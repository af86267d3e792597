/* Master weights between host and device for the CUDA engine: pinned
 * transfers on helper threads, and a mask method's zeros applied to the
 * host master while the device goes on with the next linear. */
#include <pthread.h>
#include <stdlib.h>

#include "compress/cuda/engine_cuda.h"

static void *xfer_run(void *arg) {
  struct xfer_job *j = arg;
  j->err = j->upload ? cc_xfer_upload(j->x, j->dst, j->src, j->bytes) : cc_xfer_download(j->x, j->dst, j->src, j->bytes);
  return NULL;
}

/* Starts job on a helper thread (*started = 1), or runs it here when no
 * thread can be made. */
void cue_xfer_start(struct xfer_job *j, pthread_t *t, int *started) {
  *started = pthread_create(t, NULL, xfer_run, j) == 0;
  if (!*started) xfer_run(j);
}

int cue_xfer_finish(struct xfer_job *j, pthread_t t, int started, const char *what) {
  if (started) pthread_join(t, NULL);
  if (j->err != cudaSuccess) return kg_cc_cuda_fail(j->err, what, __FILE__, __LINE__);
  return KG_OK;
}

static void *mask_run(void *arg) {
  const struct mask_job *j = arg;
  float *w = j->w;
#pragma omp parallel for schedule(static) if (j->words >= 65536)
  for (int64_t i = 0; i < j->words; i++) {
    uint32_t b = j->bits[i];
    while (b) {
      const int64_t k = i * 32 + __builtin_ctz(b);
      if (w[k] != 0.0f) w[k] = 0.0f; /* keeps -0.0 as the device does */
      b &= b - 1;
    }
  }
  return NULL;
}

/* Waits for the zeros of the last mask to reach its host master. */
void cue_join_mask(cuda_engine *c) {
  if (!c->mask_active) return;
  pthread_join(c->mask_thread, NULL);
  c->mask_active = 0;
}

int cue_sync_masters(kg_engine *e) {
  cuda_engine *c = cu_of(e);
  cue_join_mask(c);
  return KG_OK;
}

/* Waits for the previous linear's download into its host master. */
int cue_join_download(cuda_engine *c) {
  if (!c->down_active) return KG_OK;
  c->down_active = 0;
  return cue_xfer_finish(&c->down_job, c->down_thread, 1, "download of solved weights");
}

int cue_copy_weights(cuda_engine *c, int upload, void *dst, const void *src, size_t bytes) {
  if (!c->have_xfer) return upload ? kg_cc_upload(c->cc, dst, src, bytes) : kg_cc_download(c->cc, dst, src, bytes);
  struct xfer_job j = {upload ? &c->up : &c->down, dst, src, bytes, upload, cudaSuccess};
  xfer_run(&j);
  return cue_xfer_finish(&j, 0, 0, upload ? "weight upload" : "weight download");
}

int cue_is_mask_method(kg_method_kind k) {
  return k == KG_METHOD_MAGNITUDE || k == KG_METHOD_WANDA || k == KG_METHOD_OWL_WANDA;
}

/* A mask method only zeroes weights: download the zero bitmask (32x less
 * traffic than the matrix), count it, and apply it to the host master on a
 * helper thread (joined by the next mask or sync_masters). */
int cue_download_mask(cuda_engine *c, kg_linear *lin, int64_t n, int64_t *zeros) {
  const int64_t words = (n + 31) / 32;
  if ((size_t)words > c->bits_cap) {
    kg_cc_free(c->dbits);
    c->dbits = NULL;
    c->bits_cap = 0;
    KG_TRY(kg_cc_alloc((void **)&c->dbits, (size_t)words * sizeof(uint32_t), "a mask bitmap"));
    c->bits_cap = (size_t)words;
  }
  /* The buffer alternates: the job two masks back, its last reader, has been joined. */
  const int k = c->hbits_next;
  if ((size_t)words > c->hbits_cap[k]) {
    if (c->mask_active && c->mask_job.bits == c->hbits[k]) cue_join_mask(c);
    free(c->hbits[k]);
    c->hbits_cap[k] = 0;
    if (!(c->hbits[k] = malloc((size_t)words * sizeof(uint32_t)))) return kg_error(KG_ERR_NOMEM, "out of memory");
    c->hbits_cap[k] = (size_t)words;
  }
  uint32_t *bits = c->hbits[k];
  KG_TRY(kg_cc_zero_bitmask(c->cc, c->dW, n, c->dbits));
  KG_TRY(kg_cc_download(c->cc, bits, c->dbits, (size_t)words * sizeof(uint32_t)));
  int64_t z = 0;
  for (int64_t i = 0; i < words; i++) z += __builtin_popcount(bits[i]);
  *zeros = z;
  cue_join_mask(c);
  c->mask_job = (struct mask_job){lin->w, bits, words};
  c->hbits_next ^= 1;
  if (pthread_create(&c->mask_thread, NULL, mask_run, &c->mask_job) == 0)
    c->mask_active = 1;
  else
    mask_run(&c->mask_job);
  return KG_OK;
}
