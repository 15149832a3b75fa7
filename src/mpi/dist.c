/* dist.c — process groups, error agreement, deterministic reductions, replica checks.
 *
 * Exported: tf_dist_serial, tf_dist_from_comm, tf_dist_init, tf_dist_finalize,
 *           tf_dist_launched, tf_dist_agree,
 *           tf_dist_mean_work, tf_dist_mean, tf_dist_sum, tf_dist_bcast,
 *           tf_dist_check_replicas, tf_dist_hash, tf_dist_share.
 *
 * MPI errors keep the default handler (MPI_ERRORS_ARE_FATAL): a broken communicator aborts
 * the whole job, which is the one outcome worse than an error message but better than a hang.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tradeflow/dist.h"
#include "tradeflow/error.h"

#ifdef TF_DOUBLE
#define TF_MPI_REAL MPI_DOUBLE
#else
#define TF_MPI_REAL MPI_FLOAT
#endif

static int we_initialised;

tf_dist tf_dist_serial(void) {
  tf_dist d = {MPI_COMM_NULL, 0, 1};
  return d;
}

int tf_dist_from_comm(MPI_Comm comm, tf_dist *out) {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) return tf_error(TF_EMPI, "tf_dist_from_comm: MPI is not initialised");
  int rank, size;
  if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS)
    return tf_error(TF_EMPI, "tf_dist_from_comm: not a valid communicator");
  if (size == 1) {
    *out = tf_dist_serial();
    return TF_OK;
  }
  out->comm = comm;
  out->rank = rank;
  out->size = size;
  return TF_OK;
}

/* Started by a launcher?  Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE, PMIx-based launchers
 * (srun --mpi=pmix, prun) PMIX_RANK, PMI-1/2 launchers (srun --mpi=pmi2, MPICH) PMI_RANK. */
int tf_dist_launched(void) {
  const char *force = getenv("TRADEFLOW_MPI");
  if (force && *force) return strcmp(force, "0") != 0;
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ||
         getenv("PMI_SIZE");
}

int tf_dist_init(int *argc, char ***argv, tf_dist *out) {
  *out = tf_dist_serial();
  if (!tf_dist_launched()) return TF_OK;
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    if (MPI_Init(argc, argv) != MPI_SUCCESS)
      return tf_error(TF_EMPI, "MPI_Init failed (started by a launcher: OMPI_COMM_WORLD_SIZE, "
                      "PMIX_RANK or PMI_RANK is set; TRADEFLOW_MPI=0 runs without MPI)");
    we_initialised = 1;
  }
  return tf_dist_from_comm(MPI_COMM_WORLD, out);
}

void tf_dist_finalize(void) {
  if (!we_initialised) return;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
  we_initialised = 0;
}

int tf_dist_agree(const tf_dist *d, int rc) {
  if (d->size == 1) return rc;
  int mine = rc != TF_OK ? d->rank : d->size, first = d->size;
  if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, d->comm) != MPI_SUCCESS)
    return tf_error(TF_EMPI, "error agreement: MPI_Allreduce failed");
  if (first == d->size) return TF_OK;
  struct {
    int code;
    char msg[1000];
  } m;
  memset(&m, 0, sizeof m);
  if (d->rank == first) {
    m.code = rc;
    /* a message from a rank that already agreed on another failure keeps its prefix */
    if (!strncmp(tf_errmsg(), "rank ", 5))
      snprintf(m.msg, sizeof m.msg, "%s", tf_errmsg());
    else
      snprintf(m.msg, sizeof m.msg, "rank %d of %d: %s", d->rank, d->size, tf_errmsg());
  }
  if (MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, d->comm) != MPI_SUCCESS)
    return tf_error(TF_EMPI, "error agreement: MPI_Bcast failed");
  return tf_error(m.code ? m.code : TF_EMPI, "%s", m.msg);
}

int64_t tf_dist_mean_work(const tf_dist *d, int64_t n) {
  if (d->size == 1) return 0;
  const int64_t blk = (n + d->size - 1) / d->size;
  return blk * d->size + blk;
}

int tf_dist_mean(const tf_dist *d, tf_real *buf, int64_t n, tf_real *work) {
  if (d->size == 1) return TF_OK;
  const int64_t blk = (n + d->size - 1) / d->size;
  if (blk > INT32_MAX) return tf_error(TF_ERANGE, "tf_dist_mean: %lld values per rank exceed "
                                       "one MPI message", (long long)blk);
  tf_real *full = work, *mine = work + blk * d->size;
  memcpy(full, buf, (size_t)n * sizeof *buf);
  memset(full + n, 0, (size_t)(blk * d->size - n) * sizeof *buf);
  if (MPI_Reduce_scatter_block(full, mine, (int)blk, TF_MPI_REAL, MPI_SUM, d->comm) !=
      MPI_SUCCESS)
    return tf_error(TF_EMPI, "gradient mean: MPI_Reduce_scatter_block of %lld values failed",
                    (long long)n);
  const tf_real inv = (tf_real)(1.0 / d->size);
  for (int64_t i = 0; i < blk; i++) mine[i] *= inv;
  if (MPI_Allgather(mine, (int)blk, TF_MPI_REAL, full, (int)blk, TF_MPI_REAL, d->comm) !=
      MPI_SUCCESS)
    return tf_error(TF_EMPI, "gradient mean: MPI_Allgather of %lld values failed", (long long)n);
  memcpy(buf, full, (size_t)n * sizeof *buf);
  return TF_OK;
}

int tf_dist_sum(const tf_dist *d, double *v, int n, double *tmp) {
  if (d->size == 1 || n == 0) return TF_OK;
  double *all = tmp ? tmp : malloc((size_t)n * (size_t)d->size * sizeof *all);
  /* only an allocation here can fail before the collective: agree on it */
  int rc = tmp ? TF_OK
               : tf_dist_agree(d, all ? TF_OK : tf_error(TF_ENOMEM, "tf_dist_sum: out of memory"));
  if (rc != TF_OK) {
    if (!tmp) free(all);
    return rc;
  }
  if (MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, d->comm) != MPI_SUCCESS) {
    rc = tf_error(TF_EMPI, "tf_dist_sum: MPI_Allgather of %d values failed", n);
  } else {
    for (int i = 0; i < n; i++) {
      double s = 0;
      for (int q = 0; q < d->size; q++) s += all[(size_t)q * (size_t)n + (size_t)i];
      v[i] = s;
    }
  }
  if (!tmp) free(all);
  return rc;
}

int tf_dist_bcast(const tf_dist *d, void *buf, size_t bytes, int root) {
  if (d->size == 1 || bytes == 0) return TF_OK;
  if (bytes > INT32_MAX) return tf_error(TF_ERANGE, "tf_dist_bcast: %zu bytes", bytes);
  if (MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, d->comm) != MPI_SUCCESS)
    return tf_error(TF_EMPI, "MPI_Bcast of %zu bytes from rank %d failed", bytes, root);
  return TF_OK;
}

uint64_t tf_dist_hash(const void *p, size_t n, uint64_t h) {
  if (!p) return 1469598103934665603ull;
  /* FNV-1a over 8-byte words (then the tail): the order of every byte matters */
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    h ^= w;
    h *= 1099511628211ull;
  }
  for (; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

int tf_dist_check_replicas(const tf_dist *d, int n, const void *const *ptr, const size_t *len,
                           const char *const *names, const char *what) {
  if (d->size == 1) return TF_OK;
  enum { MAXR = 8 };
  if (n > MAXR) return tf_error(TF_EINVAL, "tf_dist_check_replicas: at most %d regions", MAXR);
  uint64_t h[MAXR];
  for (int i = 0; i < n; i++) h[i] = tf_dist_hash(ptr[i], len[i], tf_dist_hash(NULL, 0, 0));
  uint64_t *all = malloc(sizeof *all * (size_t)n * (size_t)d->size);
  int rc = tf_dist_agree(d, all ? TF_OK : tf_error(TF_ENOMEM, "replica check: out of memory"));
  if (rc != TF_OK) {
    free(all);
    return rc;
  }
  if (MPI_Allgather(h, n, MPI_UINT64_T, all, n, MPI_UINT64_T, d->comm) != MPI_SUCCESS) {
    free(all);
    return tf_error(TF_EMPI, "replica check: MPI_Allgather failed");
  }
  for (int i = 0; i < n; i++) {
    char ranks[200] = "";
    int nbad = 0;
    size_t k = 0;
    for (int q = 1; q < d->size; q++)
      if (all[(size_t)q * (size_t)n + (size_t)i] != all[i]) {
        if (nbad++ < 16 && k < sizeof ranks - 12)
          k += (size_t)snprintf(ranks + k, sizeof ranks - k, "%s%d", k ? ", " : "", q);
      }
    if (nbad) {
      const unsigned long long h0 = all[i];
      free(all);
      return tf_error(TF_EMPI, "replica check at %s: the %s of %d rank(s) (%s%s) differ from "
                      "rank 0's (hash %016llx); the replicas have diverged, which points to "
                      "non-deterministic arithmetic or a memory fault on those ranks",
                      what, names[i], nbad, ranks, nbad > 16 ? ", ..." : "", h0);
    }
  }
  free(all);
  return TF_OK;
}

void tf_dist_share(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
  const int64_t q = n / size, r = n % size;
  *lo = rank * q + (rank < r ? rank : r);
  *hi = *lo + q + (rank < r ? 1 : 0);
}
