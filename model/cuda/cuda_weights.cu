/* Weights on the CUDA backend: 16-bit storage converted on the device from
 * the host float32 master (round to nearest even), and block streaming for
 * models over the memory budget: streamed weights keep a pinned 16-bit host
 * copy and are staged block by block into one of two device slots on a copy
 * stream, so block i+1 uploads while block i computes. Events order the two
 * streams: a slot's `ready` (upload done) gates the compute stream, its
 * `done` (recorded when compute moves to the other slot) gates the next
 * upload into it. */
#include <stdlib.h>
#include <string.h>

#include "model/cuda/cuda_internal.h"

/* float32 staging for uploads: 16 MiB of fp32 per chunk. */
#define UPLOAD_CHUNK_ELEMS ((size_t)4 << 20)
/* Device memory left aside when no budget is set (context, cuBLAS, fragmentation). */
#define UNBUDGETED_MARGIN ((size_t)768 << 20)

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

int kg_cuda_streaming_init(kg_cuda_impl *c) {
  for (int s = 0; s < KG_CUDA_SLOTS; s++) {
    KG_CUDA(cudaEventCreateWithFlags(&c->slots[s].ready, cudaEventDisableTiming));
    KG_CUDA(cudaEventCreateWithFlags(&c->slots[s].done, cudaEventDisableTiming));
  }
  return KG_OK;
}

/* The slot's weights are no longer staged. */
static void slot_drop(kg_cuda_impl *c, int s) {
  kg_cuda_slot *slot = &c->slots[s];
  for (int i = 0; i < slot->n_held; i++) {
    slot->held[i]->data = NULL;
    slot->held[i]->slot = 0;
  }
  slot->n_held = 0;
  if (c->current_slot == s) {
    /* Work queued so far may still read it: the next upload waits for that. */
    cudaEventRecord(slot->done, c->ctx.stream);
    c->current_slot = -1;
  }
}

void kg_cuda_streaming_destroy(kg_cuda_impl *c) {
  if (c->copy_stream) cudaStreamSynchronize(c->copy_stream);
  for (int s = 0; s < KG_CUDA_SLOTS; s++) {
    kg_cuda_slot *slot = &c->slots[s];
    slot_drop(c, s);
    kg_cuda_dev_free(c, slot->dev);
    slot->dev = NULL;
    if (slot->ready) cudaEventDestroy(slot->ready);
    if (slot->done) cudaEventDestroy(slot->done);
  }
}

/* Converts `elems` host floats into 16-bit device memory dst (chunks through
 * a float32 staging buffer); with host16, the 16-bit chunks go on to a pinned
 * host array instead. */
static int convert_upload(kg_cuda_impl *c, const float *host, size_t elems, void *dst, void *host16) {
  const size_t chunk = elems < UPLOAD_CHUNK_ELEMS ? elems : UPLOAD_CHUNK_ELEMS;
  if (dst) KG_CUDA(cudaMemsetAsync(c->inexact, 0, sizeof(int), c->ctx.stream));
  KG_TRY(kg_cuda_scratch_reserve(c, &c->stage32, chunk * sizeof(float), "weight upload staging"));
  if (host16) KG_TRY(kg_cuda_scratch_reserve(c, &c->stage16, chunk * 2, "weight conversion staging"));
  for (size_t off = 0; off < elems; off += chunk) {
    const size_t n = elems - off < chunk ? elems - off : chunk;
    /* From pageable memory the copy is staged before the call returns, so
     * the next chunk may reuse stage32 in stream order. */
    KG_CUDA(cudaMemcpyAsync(c->stage32.ptr, host + off, n * sizeof(float), cudaMemcpyHostToDevice, c->ctx.stream));
    if (host16) {
      KG_TRY(kg_cuda_f32_to_16(c, (const float *)c->stage32.ptr, c->stage16.ptr, n));
      KG_CUDA(cudaMemcpyAsync((char *)host16 + off * 2, c->stage16.ptr, n * 2, cudaMemcpyDeviceToHost, c->ctx.stream));
    } else {
      KG_TRY(kg_cuda_f32_to_16(c, (const float *)c->stage32.ptr, (char *)dst + off * 2, n));
      KG_TRY(kg_cuda_check_exact16(c, (const float *)c->stage32.ptr, (char *)dst + off * 2, n, c->inexact));
    }
  }
  if (host16) KG_CUDA(cudaStreamSynchronize(c->ctx.stream));
  return KG_OK;
}

void kg_cuda_weight_release(kg_backend *be, kg_weight *w) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  cudaSetDevice(c->ctx.device);
  if (w->host) {
    /* A queued upload may still read the pinned copy. */
    cudaStreamSynchronize(c->copy_stream);
    if (w->slot) slot_drop(c, w->slot - 1);
    cudaFreeHost(w->host);
    w->host = NULL;
  } else if (w->data) {
    kg_cuda_dev_free(c, w->data);
  }
  w->data = NULL;
  w->slot = 0;
}

/* w->exact from the flag of the conversions just queued (waits for them). */
static int read_exact(kg_cuda_impl *c, kg_weight *w) {
  int inexact = 1;
  KG_CUDA(cudaMemcpyAsync(&inexact, c->inexact, sizeof(int), cudaMemcpyDeviceToHost, c->ctx.stream));
  KG_CUDA(cudaStreamSynchronize(c->ctx.stream));
  w->exact = !inexact;
  return KG_OK;
}

int kg_cuda_weight_upload(kg_backend *be, kg_weight *w, const float *host, int rows, int cols) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  KG_CUDA(cudaSetDevice(c->ctx.device));
  if (rows <= 0 || cols <= 0) return kg_error(KG_ERR_ARG, "weight upload of a %d x %d matrix", rows, cols);
  const size_t elems = (size_t)rows * cols, bytes = elems * 2;
  const int was_streamed = w->host != NULL;
  if ((w->data || w->host) && (w->rows != rows || w->cols != cols || w->dtype != c->wdtype || was_streamed != !!w->streamed))
    kg_cuda_weight_release(be, w);
  w->rows = rows;
  w->cols = cols;
  w->dtype = c->wdtype;
  if (!w->streamed) {
    if (!w->data && !(w->data = kg_cuda_dev_alloc(c, bytes, "weights"))) return kg_error_code();
    w->exact = 0;
    KG_TRY(convert_upload(c, host, elems, w->data, NULL));
    return read_exact(c, w);
  }
  w->exact = 0;
  /* Streamed: refresh the pinned copy. Queued uploads may read it, and a
   * staged device copy would be stale. */
  KG_CUDA(cudaStreamSynchronize(c->copy_stream));
  KG_CUDA(cudaStreamSynchronize(c->ctx.stream));
  if (w->slot) slot_drop(c, w->slot - 1);
  if (!w->host) {
    cudaError_t e = cudaHostAlloc(&w->host, bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) {
      cudaGetLastError();
      w->host = NULL;
      return kg_error(KG_ERR_NOMEM, "CUDA: cannot pin %.1f MiB of host memory for a streamed weight: %s",
                      (double)bytes / (1 << 20), cudaGetErrorString(e));
    }
  }
  return convert_upload(c, host, elems, NULL, w->host);
}

int kg_cuda_weight_refresh(kg_backend *be, kg_weight *w, const float *dev) {
  if (!kg_cuda_context_of(be)) return kg_error(KG_ERR_UNSUPPORTED, "weight refresh needs the CUDA backend");
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  if (w->streamed || w->host || !w->data || w->dtype != c->wdtype)
    return kg_error(KG_ERR_UNSUPPORTED, "weight refresh of a streamed or unloaded weight");
  KG_CUDA(cudaSetDevice(c->ctx.device));
  const size_t n = (size_t)w->rows * w->cols;
  w->exact = 0;
  KG_CUDA(cudaMemsetAsync(c->inexact, 0, sizeof(int), c->ctx.stream));
  KG_TRY(kg_cuda_f32_to_16(c, dev, w->data, n));
  KG_TRY(kg_cuda_check_exact16(c, dev, w->data, n, c->inexact));
  return read_exact(c, w);
}

int kg_cuda_weight_widen(kg_backend *be, const kg_weight *w, float *dev) {
  if (!kg_cuda_context_of(be)) return kg_error(KG_ERR_UNSUPPORTED, "weight widen needs the CUDA backend");
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  if (w->streamed || w->host || !w->data || !w->exact || w->dtype != c->wdtype)
    return kg_error(KG_ERR_UNSUPPORTED, "the device copy of this weight is not exact");
  KG_CUDA(cudaSetDevice(c->ctx.device));
  return kg_cuda_16_to_f32(c, w->data, dev, (size_t)w->rows * w->cols);
}

int kg_cuda_plan_weights(kg_backend *be, int n_blocks, int64_t block_elems, int64_t global_elems, size_t reserve_bytes,
                         int *n_resident) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  size_t avail;
  if (c->ctx.memory_budget_bytes) {
    avail = c->ctx.memory_budget_bytes > c->used ? c->ctx.memory_budget_bytes - c->used : 0;
  } else {
    size_t free_b = 0, total_b = 0;
    KG_CUDA(cudaMemGetInfo(&free_b, &total_b));
    avail = free_b > UNBUDGETED_MARGIN ? free_b - UNBUDGETED_MARGIN : 0;
  }
  /* the upload staging buffers come on top of the activations */
  reserve_bytes += UPLOAD_CHUNK_ELEMS * (sizeof(float) + 2);
  const double blk = (double)block_elems * 2, glob = (double)global_elems * 2;
  if (glob + blk * n_blocks + (double)reserve_bytes <= (double)avail) {
    *n_resident = n_blocks;
    return KG_OK;
  }
  /* Streaming: two staging slots, then as many leading blocks resident as fit. */
  const double room = (double)avail - glob - (double)reserve_bytes - 2 * blk;
  int k = room > 0 ? (int)(room / blk) : 0;
  *n_resident = k > n_blocks ? n_blocks : k;
  if (room < 0)
    kg_warn("CUDA memory budget: %.2f GiB free is short of the %.2f GiB that streaming needs (global weights, two "
            "blocks, activations); expect an allocation failure",
            (double)avail / (1 << 30), (glob + 2 * blk + (double)reserve_bytes) / (1 << 30));
  return KG_OK;
}

/* Staged set lookup: the slot holding every streamed weight of w, or -1. */
static int find_slot(kg_weight *const *w, int n) {
  int s = -1;
  for (int i = 0; i < n; i++) {
    if (!w[i]->host) continue;
    if (!w[i]->slot) return -1;
    if (s < 0) s = w[i]->slot - 1;
    else if (s != w[i]->slot - 1) return -1;
  }
  return s;
}

static int count_streamed(kg_weight *const *w, int n) {
  int k = 0;
  for (int i = 0; i < n; i++) k += w[i]->host != NULL;
  return k;
}

/* Enqueues the upload of w's streamed weights into slot s (copy stream). */
static int stage_into(kg_cuda_impl *c, int s, kg_weight *const *w, int n) {
  kg_cuda_slot *slot = &c->slots[s];
  size_t total = 0;
  for (int i = 0; i < n; i++)
    if (w[i]->host) total += align256((size_t)w[i]->rows * w[i]->cols * 2);
  slot_drop(c, s);
  if (slot->cap < total) {
    /* Either stream may still use the old buffer. */
    KG_CUDA(cudaStreamSynchronize(c->ctx.stream));
    KG_CUDA(cudaStreamSynchronize(c->copy_stream));
    kg_cuda_dev_free(c, slot->dev);
    slot->dev = NULL;
    slot->cap = 0;
    if (!(slot->dev = kg_cuda_dev_alloc(c, total, "a streaming slot"))) return kg_error_code();
    slot->cap = total;
  }
  KG_CUDA(cudaStreamWaitEvent(c->copy_stream, slot->done, 0));
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    kg_weight *x = w[i];
    if (!x->host) continue;
    const size_t bytes = (size_t)x->rows * x->cols * 2;
    KG_CUDA(cudaMemcpyAsync((char *)slot->dev + off, x->host, bytes, cudaMemcpyHostToDevice, c->copy_stream));
    x->slot = s + 1;
    slot->held[slot->n_held++] = x;
    off += align256(bytes);
  }
  KG_CUDA(cudaEventRecord(slot->ready, c->copy_stream));
  return KG_OK;
}

/* The device address of each held weight, valid from now on in stream order. */
static void slot_bind(kg_cuda_slot *slot, int bind) {
  size_t off = 0;
  for (int i = 0; i < slot->n_held; i++) {
    kg_weight *x = slot->held[i];
    x->data = bind ? (char *)slot->dev + off : NULL;
    off += align256((size_t)x->rows * x->cols * 2);
  }
}

int kg_cuda_weights_acquire(kg_backend *be, kg_weight *const *w, int n) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  const int k = count_streamed(w, n);
  if (!k) return KG_OK;
  if (k > KG_CUDA_SLOT_MAX_WEIGHTS) return kg_error(KG_ERR_ARG, "a streamed block of %d weights is too large", k);
  int s = find_slot(w, n);
  if (s < 0) {
    s = c->current_slot == 0 ? 1 : 0;
    KG_TRY(stage_into(c, s, w, n));
  }
  if (s != c->current_slot) {
    if (c->current_slot >= 0) {
      kg_cuda_slot *old = &c->slots[c->current_slot];
      /* Everything queued so far may read the old slot. */
      KG_CUDA(cudaEventRecord(old->done, c->ctx.stream));
      slot_bind(old, 0);
    }
    c->current_slot = s;
  }
  slot_bind(&c->slots[s], 1);
  KG_CUDA(cudaStreamWaitEvent(c->ctx.stream, c->slots[s].ready, 0));
  return KG_OK;
}

int kg_cuda_weights_prefetch(kg_backend *be, kg_weight *const *w, int n) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  const int k = count_streamed(w, n);
  if (!k || find_slot(w, n) >= 0) return KG_OK;
  if (k > KG_CUDA_SLOT_MAX_WEIGHTS) return kg_error(KG_ERR_ARG, "a streamed block of %d weights is too large", k);
  return stage_into(c, c->current_slot == 0 ? 1 : 0, w, n);
}
