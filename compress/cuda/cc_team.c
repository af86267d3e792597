/* NCCL communicators for compression teams (see cc.h): one per (MPI team
 * communicator, device), built collectively on first use and cached for the
 * life of the process, since building one costs a bootstrap round. */
#include <stdlib.h>
#include <string.h>

#include "compress/cuda/cc.h"
#include "io/log.h"

#ifdef KG_HAVE_NCCL
#include <nccl.h>

#define TEAM_CACHE 8

struct kg_cc_team {
  MPI_Comm comm;
  int device, rank, size;
  ncclComm_t nccl;
};

static struct kg_cc_team *cache[TEAM_CACHE];

static int nccl_fail(ncclResult_t r, const char *what) {
  return kg_error(KG_ERR_COMM, "NCCL: %s failed: %s", what, ncclGetErrorString(r));
}

int kg_cc_team_get(MPI_Comm comm, int device, kg_cc_team **out) {
  int rc = KG_OK, rank = 0, size = 0, slot = -1;
  struct kg_cc_team *t = NULL;
  ncclUniqueId id;
  *out = NULL;
  if (comm == MPI_COMM_NULL) return kg_error(KG_ERR_ARG, "NCCL team: no MPI communicator");
  if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS)
    return kg_error(KG_ERR_COMM, "NCCL team: bad MPI communicator");
  for (int i = 0; i < TEAM_CACHE; i++) {
    if (cache[i] && cache[i]->comm == comm && cache[i]->device == device && cache[i]->rank == rank &&
        cache[i]->size == size) {
      *out = cache[i];
      return KG_OK;
    }
    if (!cache[i] && slot < 0) slot = i;
  }
  if (slot < 0) return kg_error(KG_ERR_UNSUPPORTED, "NCCL team: more than %d team communicators", TEAM_CACHE);
  /* NVLink SHARP (multicast) objects can take a shared host's GPUs out of
   * service; keep it off unless the operator said otherwise. */
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  memset(&id, 0, sizeof(id));
  ncclResult_t nr = ncclSuccess;
  if (rank == 0) nr = ncclGetUniqueId(&id);
  /* every rank learns whether rank 0 got an id before anyone waits in init */
  int ok = nr == ncclSuccess, all_ok = 0;
  if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS)
    return kg_error(KG_ERR_COMM, "NCCL team: MPI_Allreduce failed");
  if (!all_ok) return rank == 0 ? nccl_fail(nr, "ncclGetUniqueId") : kg_error(KG_ERR_COMM, "NCCL team: rank 0 has no id");
  if (MPI_Bcast(&id, (int)sizeof(id), MPI_BYTE, 0, comm) != MPI_SUCCESS)
    return kg_error(KG_ERR_COMM, "NCCL team: MPI_Bcast of the unique id failed");
  if (!(t = calloc(1, sizeof(*t)))) return kg_error(KG_ERR_NOMEM, "out of memory");
  t->comm = comm;
  t->device = device;
  t->rank = rank;
  t->size = size;
  if (cudaSetDevice(device) != cudaSuccess) {
    rc = kg_error(KG_ERR_DEVICE, "NCCL team: cudaSetDevice(%d) failed", device);
    goto done;
  }
  if ((nr = ncclCommInitRank(&t->nccl, size, id, rank)) != ncclSuccess) {
    rc = nccl_fail(nr, "ncclCommInitRank");
    goto done;
  }
  kg_debug("NCCL team: rank %d of %d on device %d", rank, size, device);
  cache[slot] = t;
  *out = t;
  t = NULL;
done:
  free(t);
  return rc;
}

int kg_cc_team_size(const kg_cc_team *t) { return t->size; }

static int team_sum(kg_cc_team *t, kg_cc *cc, void *buf, size_t n, ncclDataType_t type) {
  if (!n) return KG_OK;
  ncclResult_t nr = ncclAllReduce(buf, buf, n, type, ncclSum, t->nccl, cc->stream);
  if (nr != ncclSuccess) return nccl_fail(nr, "ncclAllReduce");
  return KG_OK;
}

int kg_cc_team_sum_f32(kg_cc_team *t, kg_cc *cc, float *buf, size_t n) { return team_sum(t, cc, buf, n, ncclFloat32); }

int kg_cc_team_sum_f64(kg_cc_team *t, kg_cc *cc, double *buf, size_t n) { return team_sum(t, cc, buf, n, ncclFloat64); }

int kg_cc_team_sum_stats(kg_cc_team *t, kg_cc *cc, MPI_Comm comm, kg_cc_stats *st) {
  /* Shapes must agree, or NCCL would read past the smaller buffers. */
  int64_t shape[4] = {st->d, -st->d, st->with_gram, -(int64_t)st->with_gram};
  if (MPI_Allreduce(MPI_IN_PLACE, shape, 4, MPI_INT64_T, MPI_MAX, comm) != MPI_SUCCESS)
    return kg_error(KG_ERR_COMM, "device stats allreduce: shape check failed");
  if (shape[0] != -shape[1] || shape[2] != -shape[3])
    return kg_error(KG_ERR_ARG, "device stats allreduce: ranks disagree on width or Gram (d %lld..%lld)",
                    (long long)-shape[1], (long long)shape[0]);
  int64_t counts[2] = {st->n_samples, st->n_tokens};
  if (MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, comm) != MPI_SUCCESS)
    return kg_error(KG_ERR_COMM, "device stats allreduce: count reduction failed");
  KG_TRY(kg_cc_team_sum_f64(t, cc, st->sqnorm, (size_t)st->d));
  if (st->with_gram) KG_TRY(kg_cc_team_sum_f32(t, cc, st->gram, (size_t)st->d * (size_t)st->d));
  st->n_samples = counts[0];
  st->n_tokens = counts[1];
  return KG_OK;
}

void kg_cc_team_release_all(void) {
  for (int i = 0; i < TEAM_CACHE; i++) {
    if (!cache[i]) continue;
    ncclCommDestroy(cache[i]->nccl);
    free(cache[i]);
    cache[i] = NULL;
  }
}

#else /* no NCCL in this build: teams of one work without it */

int kg_cc_team_get(MPI_Comm comm, int device, kg_cc_team **out) {
  *out = NULL;
  return kg_error(KG_ERR_UNSUPPORTED, "this build has no NCCL: device statistics cannot be summed over a team");
}
int kg_cc_team_size(const kg_cc_team *t) { return 1; }
int kg_cc_team_sum_f32(kg_cc_team *t, kg_cc *cc, float *buf, size_t n) { return KG_ERR_UNSUPPORTED; }
int kg_cc_team_sum_f64(kg_cc_team *t, kg_cc *cc, double *buf, size_t n) { return KG_ERR_UNSUPPORTED; }
int kg_cc_team_sum_stats(kg_cc_team *t, kg_cc *cc, MPI_Comm comm, kg_cc_stats *st) { return KG_ERR_UNSUPPORTED; }
void kg_cc_team_release_all(void) {}

#endif
