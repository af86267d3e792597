/* Large host<->device copies for the CUDA engine: the caller's pageable
 * buffer is copied by all OpenMP threads into one of two pinned chunks while
 * the copy engine moves the other, on the transfer's own stream. A context
 * may be used from a helper thread (each call sets its device), one call at
 * a time. Calls return CUDA errors rather than raising kg errors, so a helper
 * thread never touches the error state; the caller reports them. */
#ifndef KG_COMPRESS_CUDA_CC_XFER_H
#define KG_COMPRESS_CUDA_CC_XFER_H

#include <cuda_runtime.h>
#include <stddef.h>

typedef struct cc_xfer {
  int device;
  cudaStream_t stream;   /* owned */
  void *pinned[2];       /* owned; NULL when pinned memory was refused (pageable copies then) */
  cudaEvent_t moved[2];  /* the last DMA through pinned[i] */
  int threads;           /* copying threads per transfer */
  double seconds, bytes; /* totals over the calls, for the engine's timing report */
} cc_xfer;

cudaError_t cc_xfer_init(cc_xfer *x, int device);
void cc_xfer_destroy(cc_xfer *x);
/* Complete on return (the data is on the device / in host memory). */
cudaError_t cc_xfer_upload(cc_xfer *x, void *dev, const void *host, size_t bytes);
cudaError_t cc_xfer_download(cc_xfer *x, void *host, const void *dev, size_t bytes);

#endif
