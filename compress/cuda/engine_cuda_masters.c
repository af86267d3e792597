/* Master weights between host and device for the CUDA engine: pinned
 * transfers on helper threads, and a mask method's zeros applied to the
 * host master while the device goes on with the next linear. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

/* One zero bitmap on its way to a host master. */
typedef struct mask_job {
  float *w;
  uint32_t *bits; /* owned by the job */
  int64_t words;
  struct mask_job *next;
} mask_job;

/* Jobs in order, applied by one long-lived worker: its OpenMP team stays
 * warm, and the solves never wait for a mask unless sync_masters asks. */
struct cue_mask_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mask_job *head, *tail;
  int busy, stop;
  pthread_t thread;
};

static void apply_mask(const mask_job *j) {
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
}

static void *mask_worker(void *arg) {
  struct cue_mask_queue *q = arg;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->head && !q->stop) pthread_cond_wait(&q->cv, &q->mu);
    if (!q->head) break;
    mask_job *j = q->head;
    q->head = j->next;
    if (!q->head) q->tail = NULL;
    q->busy = 1;
    pthread_mutex_unlock(&q->mu);
    apply_mask(j);
    free(j->bits);
    free(j);
    pthread_mutex_lock(&q->mu);
    q->busy = 0;
    pthread_cond_broadcast(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

/* Hands j to the worker (started on first use), or applies it here when no
 * thread can be made. */
static void post_mask(cuda_engine *c, mask_job *j) {
  if (!c->masks) {
    struct cue_mask_queue *q = calloc(1, sizeof(*q));
    if (q) {
      pthread_mutex_init(&q->mu, NULL);
      pthread_cond_init(&q->cv, NULL);
      if (pthread_create(&q->thread, NULL, mask_worker, q) == 0) {
        c->masks = q;
      } else {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        free(q);
      }
    }
  }
  if (!c->masks) {
    apply_mask(j);
    free(j->bits);
    free(j);
    return;
  }
  struct cue_mask_queue *q = c->masks;
  pthread_mutex_lock(&q->mu);
  if (q->tail) q->tail->next = j;
  else q->head = j;
  q->tail = j;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

void cue_join_mask(cuda_engine *c) {
  struct cue_mask_queue *q = c->masks;
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  while (q->head || q->busy) pthread_cond_wait(&q->cv, &q->mu);
  pthread_mutex_unlock(&q->mu);
}

void cue_masks_destroy(cuda_engine *c) {
  struct cue_mask_queue *q = c->masks;
  if (!q) return;
  cue_join_mask(c);
  pthread_mutex_lock(&q->mu);
  q->stop = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  pthread_join(q->thread, NULL);
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  free(q);
  c->masks = NULL;
}

int cue_sync_masters(kg_engine *e) {
  cue_join_mask(cu_of(e));
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
 * traffic than the matrix) with its zero count, counted on the device, in
 * one copy, and queue the bitmask for the host master. */
int cue_download_mask(cuda_engine *c, kg_linear *lin, int64_t n, int64_t *zeros) {
  const int64_t words = (n + 31) / 32;
  /* the bitmask, padded to 8 bytes, then the 64-bit count */
  const int64_t padded = (words + 1) / 2 * 2, total = padded + 2;
  if ((size_t)total > c->bits_cap) {
    kg_cc_free(c->dbits);
    c->dbits = NULL;
    c->bits_cap = 0;
    KG_TRY(kg_cc_alloc((void **)&c->dbits, (size_t)total * sizeof(uint32_t), "a mask bitmap"));
    c->bits_cap = (size_t)total;
  }
  mask_job *j = calloc(1, sizeof(*j));
  uint32_t *bits = malloc((size_t)total * sizeof(uint32_t));
  if (!j || !bits) {
    free(j);
    free(bits);
    return kg_error(KG_ERR_NOMEM, "out of memory for a mask bitmap");
  }
  int rc = kg_cc_zero_bitmask(c->cc, c->dW, n, c->dbits, (unsigned long long *)(c->dbits + padded));
  if (rc >= 0) rc = kg_cc_download(c->cc, bits, c->dbits, (size_t)total * sizeof(uint32_t));
  if (rc < 0) {
    free(j);
    free(bits);
    return rc;
  }
  unsigned long long z = 0;
  memcpy(&z, bits + padded, sizeof(z));
  *zeros = (int64_t)z;
  *j = (mask_job){lin->w, bits, words, NULL};
  post_mask(c, j);
  return KG_OK;
}
