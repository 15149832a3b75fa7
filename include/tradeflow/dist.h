/* tradeflow — the group of processes that share one job (DESIGN.md section 6).
 *
 * A tf_dist is a value naming this process's place in a job: an MPI communicator with the
 * rank and size, or the serial group of one process.  Through the serial group no MPI
 * function is ever called, so a program started without mpirun needs no MPI at all and
 * behaves exactly as a one-rank MPI job (same random streams, same results).
 *
 * Collective calls (marked "collective") must be made by every rank of the group, in the
 * same order.  The library's distributed code keeps one rule that makes rank-local failures
 * safe: a rank that fails still reaches the next agreement point (tf_dist_agree), where every
 * rank learns the failure and returns it, so a failure on one rank ends the job with one
 * message on every rank instead of a hang.
 *
 * Reproducibility: every reduction here is deterministic for a fixed rank count, and every
 * rank receives bit-identical results (the sums are formed once, in a fixed order, and then
 * distributed), so replicas that start equal stay equal.
 */
#ifndef TRADEFLOW_DIST_H
#define TRADEFLOW_DIST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  MPI_Comm comm; /* MPI_COMM_NULL for the serial group */
  int rank, size;
} tf_dist;

/* The group of this process alone (rank 0 of 1); no MPI call is made through it. */
tf_dist tf_dist_serial(void);

/* The group of an MPI communicator (MPI must be initialised; the communicator is borrowed,
 * not duplicated).  A communicator of size 1 gives the serial group. */
int tf_dist_from_comm(MPI_Comm comm, tf_dist *out);

/* For programs: initialise MPI when this process was started by an MPI launcher (mpirun,
 * mpiexec, srun: recognised by the environment variables they set) or when TRADEFLOW_MPI=1,
 * and return MPI_COMM_WORLD's group; otherwise (or with TRADEFLOW_MPI=0) the serial group
 * without initialising MPI.  tf_dist_finalize() ends MPI if this initialised it. */
int tf_dist_init(int *argc, char ***argv, tf_dist *out);
void tf_dist_finalize(void);
/* 1 if this process runs under an MPI launcher (the rule of tf_dist_init).  Such launchers
 * hand their processes a pseudo-terminal, so isatty() says nothing about the user's view. */
int tf_dist_launched(void);

/* (collective) Error agreement.  rc is this rank's status.  Returns TF_OK on every rank when
 * every rank passed TF_OK; otherwise every rank returns the status of the lowest failing
 * rank and holds its message, prefixed "rank R of P: " when the group has several ranks. */
int tf_dist_agree(const tf_dist *d, int rc);

/* (collective) buf[0..n) <- the mean over ranks of buf, bit-identical on every rank: a ring
 * reduce-scatter sums each of P near-equal slices at one rank in a fixed order and a ring
 * all-gather copies the slices to every rank (2 (P - 1) messages per rank, each rank sending
 * 2 (P - 1) n / P values).  work: at least tf_dist_mean_work(d, n) elements of scratch
 * (none needed for the serial group).  Cost: docs/MPI-scaling.md. */
int64_t tf_dist_mean_work(const tf_dist *d, int64_t n);
int tf_dist_mean(const tf_dist *d, tf_real *buf, int64_t n, tf_real *work);

/* (collective) Small vectors: v[0..n) <- the sum over ranks, added in rank order on every
 * rank (an MPI_Allgather of P * n doubles; meant for n up to a few hundred).  tmp: n * P
 * doubles of scratch, or NULL to allocate.  An any-rank flag: pass 0/1 values and test > 0. */
int tf_dist_sum(const tf_dist *d, double *v, int n, double *tmp);

/* (collective) Broadcast `bytes` bytes of buf from rank `root`. */
int tf_dist_bcast(const tf_dist *d, void *buf, size_t bytes, int root);

/* (collective) Verify that every rank holds the same bytes in each of the n regions
 * (ptr[i], len[i]) (parameters, optimizer moments...): a 64-bit hash per rank, gathered.
 * TF_EMPI on every rank when they differ, naming the first region and the ranks that differ
 * from rank 0 and the `what` (e.g. "step 4000"). */
int tf_dist_check_replicas(const tf_dist *d, int n, const void *const *ptr, const size_t *len,
                           const char *const *names, const char *what);

/* 64-bit FNV-1a hash of bytes, continuing from h (start with tf_dist_hash(NULL, 0, 0)). */
uint64_t tf_dist_hash(const void *p, size_t n, uint64_t h);

/* Contiguous share [*lo, *hi) of `n` items for `rank` of `size`: the first n % size ranks get
 * one more. */
void tf_dist_share(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

#ifdef __cplusplus
}
#endif
#endif
