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

/* Slice b of P near-equal slices of n values: [lo, lo + len). */
static void slice(int64_t n, int P, int b, int64_t *lo, int *len) {
  const int64_t blk = (n + P - 1) / P, l = blk * b;
  *lo = l < n ? l : n;
  *len = (int)(l + blk <= n ? blk : n - *lo);
}

int64_t tf_dist_mean_work(const tf_dist *d, int64_t n) {
  return d->size == 1 ? 0 : (n + d->size - 1) / d->size;
}

/* A ring (Patarasuk & Yuan's bandwidth-optimal allreduce) written out with MPI_Sendrecv
 * instead of MPI_Reduce_scatter_block + MPI_Allgather: Open MPI 4.1 routes the reduce-scatter
 * through rank 0 at small rank counts, which cost 3.5% of a 2-rank training step
 * (docs/MPI-scaling.md).  Each rank sends and receives 2 (P - 1) / P of the buffer.
 * Reduce-scatter: in step s = 0..P-2 rank r passes its partial sum of slice (r - s) mod P to
 * rank r + 1 and adds the partial sum of slice (r - s - 1) mod P arriving from rank r - 1
 * (received + own, a fixed order); after P - 1 steps rank r holds the full sum of slice
 * (r + 1) mod P, scales it by 1/P, and the ring all-gather passes the finished slices on in
 * place.  Every value is computed by one rank and copied to the others: bit-identical
 * replicas, and the same bits in every run of the same rank count. */
int tf_dist_mean(const tf_dist *d, tf_real *buf, int64_t n, tf_real *work) {
  const int P = d->size, r = d->rank;
  if (P == 1) return TF_OK;
  if ((n + P - 1) / P > INT32_MAX)
    return tf_error(TF_ERANGE, "tf_dist_mean: %lld values per rank exceed one MPI message",
                    (long long)((n + P - 1) / P));
  const int right = (r + 1) % P, left = (r + P - 1) % P, tag = 0x7f01;
  for (int s = 0; s < P - 1; s++) {
    int64_t so, ro;
    int sl, rl;
    slice(n, P, ((r - s) % P + P) % P, &so, &sl);
    slice(n, P, ((r - s - 1) % P + P) % P, &ro, &rl);
    if (MPI_Sendrecv(buf + so, sl, TF_MPI_REAL, right, tag, work, rl, TF_MPI_REAL, left, tag,
                     d->comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return tf_error(TF_EMPI, "gradient mean: ring reduce-scatter step %d of %lld values "
                      "failed", s, (long long)n);
    tf_real *dst = buf + ro;
    for (int i = 0; i < rl; i++) dst[i] = work[i] + dst[i];
  }
  int64_t o;
  int l;
  slice(n, P, right, &o, &l);
  const tf_real inv = (tf_real)(1.0 / P);
  for (int i = 0; i < l; i++) buf[o + i] *= inv;
  for (int s = 0; s < P - 1; s++) {
    int64_t so, ro;
    int sl, rl;
    slice(n, P, ((r + 1 - s) % P + P) % P, &so, &sl);
    slice(n, P, ((r - s) % P + P) % P, &ro, &rl);
    if (MPI_Sendrecv(buf + so, sl, TF_MPI_REAL, right, tag + 1, buf + ro, rl, TF_MPI_REAL,
                     left, tag + 1, d->comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return tf_error(TF_EMPI, "gradient mean: ring all-gather step %d of %lld values failed",
                      s, (long long)n);
  }
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
