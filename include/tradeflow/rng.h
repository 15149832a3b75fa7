/* tradeflow — counter-based random numbers (Random123 Philox4x32-10).
 *
 * A stream is named by (seed, rank, purpose, step).  The 64-bit seed is the Philox key; the
 * 128-bit counter is (block, step, rank, purpose) with `block` advancing inside the stream.
 * Distinct names therefore address disjoint counter ranges of one bijection: streams never
 * overlap, and any stream can be re-created from its name alone (nothing to checkpoint but the
 * name and the position).  A stream holds 2^32 blocks of four 32-bit words.
 *
 * The state is a small value type: copy it, store it, no create/destroy.
 */
#ifndef TRADEFLOW_RNG_H
#define TRADEFLOW_RNG_H

#include <stdint.h>

#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Purposes used by the library; callers may use any value >= TF_RNG_USER. */
enum {
  TF_RNG_INIT = 1,    /* parameter initialisation */
  TF_RNG_DATA = 2,    /* minibatch selection, data shuffling */
  TF_RNG_LATENT = 3,  /* base-distribution samples */
  TF_RNG_COND = 4,    /* condition values */
  TF_RNG_MCMC = 5,    /* Metropolis / HMC */
  TF_RNG_TEST = 6,
  TF_RNG_AUGMENT = 7, /* symmetry augmentation of training batches */
  TF_RNG_MODEL = 8,   /* a model family's own draws inside a training term (tf_model_step) */
  TF_RNG_USER = 1000
};

typedef struct {
  uint32_t key[2];    /* seed */
  uint32_t ctr[4];    /* block, step, rank, purpose */
  uint32_t buf[4];    /* current output block */
  int used;           /* words of buf consumed (4: empty) */
  int have_spare;     /* Box-Muller produces normals in pairs */
  double spare;
} tf_rng;

void tf_rng_init(tf_rng *r, uint64_t seed, uint32_t rank, uint32_t purpose, uint32_t step);

uint32_t tf_rng_u32(tf_rng *r);
uint64_t tf_rng_u64(tf_rng *r);
double tf_rng_uniform(tf_rng *r);    /* in (0, 1), 53 random bits, never 0 or 1 */
/* N(0, 1), Box-Muller in double from two tf_rng_uniform draws u1, u2 (four words):
 * sqrt(-2 log u1) cos(2 pi u2), then sqrt(-2 log u1) sin(2 pi u2) on the next call.  log and
 * cos/sin are the library's own branch-free kernels, so that the fills below vectorise; the
 * normals agree with libm-based ones to about 3e-15 and do not depend on the build's tf_real. */
double tf_rng_normal(tf_rng *r);
uint64_t tf_rng_below(tf_rng *r, uint64_t n); /* uniform in [0, n), unbiased; n >= 1 */

/* The fills give exactly the values of t->n (n) successive scalar calls (tf_rng_uniform,
 * tf_rng_normal, a pending Box-Muller spare included) and leave the stream where those calls
 * would: splitting a fill into several calls changes nothing.  They are computed in batches. */
void tf_rng_fill_uniform(tf_rng *r, tf_tensor *t, double lo, double hi);
void tf_rng_fill_normal(tf_rng *r, tf_tensor *t, double mean, double sd);
void tf_rng_fill_normal_d(tf_rng *r, double *x, int64_t n); /* N(0, 1) doubles */
/* Uniform random permutation of 0..n-1 (Fisher-Yates). */
void tf_rng_permutation(tf_rng *r, int64_t *perm, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
