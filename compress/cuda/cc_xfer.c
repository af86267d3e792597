/* Host<->device copies of float32 master weights through a pinned double
 * buffer (see cc_xfer.h). Pageable cudaMemcpy runs at about 10 GB/s up and
 * 17 GB/s down on an H100 host (one driver thread stages through its own
 * pinned buffer); here all cores fill or drain one pinned chunk while the
 * copy engine moves the other at pinned speed (about 55 GB/s). */
#include "compress/cuda/cc_xfer.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

/* 32 MiB chunks: large enough that one DMA runs at full speed, small enough
 * that the first and last chunk (not overlapped) cost little. */
#define XFER_CHUNK ((size_t)32 << 20)
/* Pieces of one chunk that the threads copy. */
#define XFER_PIECE ((size_t)1 << 20)

static void parallel_copy(int threads, void *dst, const void *src, size_t bytes) {
  const int64_t pieces = (int64_t)((bytes + XFER_PIECE - 1) / XFER_PIECE);
#pragma omp parallel for schedule(static) num_threads(threads) if (pieces > 1)
  for (int64_t p = 0; p < pieces; p++) {
    const size_t off = (size_t)p * XFER_PIECE, n = bytes - off < XFER_PIECE ? bytes - off : XFER_PIECE;
    memcpy((char *)dst + off, (const char *)src + off, n);
  }
}

cudaError_t cc_xfer_init(cc_xfer *x, int device) {
  memset(x, 0, sizeof(*x));
  x->device = device;
  /* Not the OpenMP default: a helper thread would inherit OMP_NUM_THREADS,
   * which batch systems often set to 1. Two transfers may run at once. */
  x->threads = omp_get_num_procs() / 2;
  if (x->threads < 1) x->threads = 1;
  cudaError_t e = cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking);
  for (int i = 0; i < 2 && e == cudaSuccess; i++) e = cudaEventCreateWithFlags(&x->moved[i], cudaEventDisableTiming);
  if (e != cudaSuccess) {
    cc_xfer_destroy(x);
    return e;
  }
  /* Without pinned memory the copies fall back to pageable transfers. */
  for (int i = 0; i < 2; i++) {
    if (cudaMallocHost(&x->pinned[i], XFER_CHUNK) != cudaSuccess) {
      (void)cudaGetLastError();
      x->pinned[i] = NULL;
    }
  }
  if (!x->pinned[0] || !x->pinned[1]) {
    for (int i = 0; i < 2; i++) cudaFreeHost(x->pinned[i]);
    x->pinned[0] = x->pinned[1] = NULL;
  }
  return cudaSuccess;
}

void cc_xfer_destroy(cc_xfer *x) {
  if (x->stream) cudaStreamSynchronize(x->stream);
  for (int i = 0; i < 2; i++) {
    if (x->pinned[i]) cudaFreeHost(x->pinned[i]);
    if (x->moved[i]) cudaEventDestroy(x->moved[i]);
  }
  if (x->stream) cudaStreamDestroy(x->stream);
  memset(x, 0, sizeof(*x));
}

static cudaError_t xfer_upload(cc_xfer *x, void *dev, const void *host, size_t bytes);
static cudaError_t xfer_download(cc_xfer *x, void *host, const void *dev, size_t bytes);

/* Adds one call's bytes and time to the totals. */
static cudaError_t counted(cc_xfer *x, double t0, size_t bytes, cudaError_t e) {
  x->seconds += omp_get_wtime() - t0;
  x->bytes += (double)bytes;
  return e;
}

cudaError_t cc_xfer_upload(cc_xfer *x, void *dev, const void *host, size_t bytes) {
  const double t0 = omp_get_wtime();
  return counted(x, t0, bytes, xfer_upload(x, dev, host, bytes));
}

cudaError_t cc_xfer_download(cc_xfer *x, void *host, const void *dev, size_t bytes) {
  const double t0 = omp_get_wtime();
  return counted(x, t0, bytes, xfer_download(x, host, dev, bytes));
}

static cudaError_t xfer_upload(cc_xfer *x, void *dev, const void *host, size_t bytes) {
  cudaError_t e = cudaSetDevice(x->device);
  if (e != cudaSuccess || !bytes) return e;
  if (!x->pinned[0]) {
    e = cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, x->stream);
    return e != cudaSuccess ? e : cudaStreamSynchronize(x->stream);
  }
  for (size_t off = 0, k = 0; off < bytes; off += XFER_CHUNK, k++) {
    const size_t n = bytes - off < XFER_CHUNK ? bytes - off : XFER_CHUNK;
    void *buf = x->pinned[k & 1];
    /* The DMA that last read this buffer (two chunks ago) must be done. */
    if (k >= 2 && (e = cudaEventSynchronize(x->moved[k & 1])) != cudaSuccess) return e;
    parallel_copy(x->threads, buf, (const char *)host + off, n);
    if ((e = cudaMemcpyAsync((char *)dev + off, buf, n, cudaMemcpyHostToDevice, x->stream)) != cudaSuccess) return e;
    if ((e = cudaEventRecord(x->moved[k & 1], x->stream)) != cudaSuccess) return e;
  }
  return cudaStreamSynchronize(x->stream);
}

static cudaError_t xfer_download(cc_xfer *x, void *host, const void *dev, size_t bytes) {
  cudaError_t e = cudaSetDevice(x->device);
  if (e != cudaSuccess || !bytes) return e;
  if (!x->pinned[0]) {
    e = cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, x->stream);
    return e != cudaSuccess ? e : cudaStreamSynchronize(x->stream);
  }
  const size_t chunks = (bytes + XFER_CHUNK - 1) / XFER_CHUNK;
  /* Chunk k+1 moves into one buffer while the threads drain chunk k from the other. */
  for (size_t k = 0; k <= chunks; k++) {
    if (k < chunks) {
      const size_t off = k * XFER_CHUNK, n = bytes - off < XFER_CHUNK ? bytes - off : XFER_CHUNK;
      if ((e = cudaMemcpyAsync(x->pinned[k & 1], (const char *)dev + off, n, cudaMemcpyDeviceToHost, x->stream)) !=
          cudaSuccess)
        return e;
      if ((e = cudaEventRecord(x->moved[k & 1], x->stream)) != cudaSuccess) return e;
    }
    if (k == 0) continue;
    const size_t j = k - 1, off = j * XFER_CHUNK, n = bytes - off < XFER_CHUNK ? bytes - off : XFER_CHUNK;
    if ((e = cudaEventSynchronize(x->moved[j & 1])) != cudaSuccess) return e;
    parallel_copy(x->threads, (char *)host + off, x->pinned[j & 1], n);
  }
  return cudaSuccess;
}
