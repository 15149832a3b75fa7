/* rng.c — Philox4x32-10 streams named by (seed, rank, purpose, step).
 * Exported: tf_rng_init, tf_rng_u32, tf_rng_u64, tf_rng_uniform, tf_rng_normal, tf_rng_below,
 *           tf_rng_fill_uniform, tf_rng_fill_normal, tf_rng_fill_normal_d, tf_rng_permutation. */
#include <math.h>

#include <Random123/philox.h>

#include "tradeflow/rng.h"

void tf_rng_init(tf_rng *r, uint64_t seed, uint32_t rank, uint32_t purpose, uint32_t step) {
  r->key[0] = (uint32_t)seed;
  r->key[1] = (uint32_t)(seed >> 32);
  r->ctr[0] = 0;
  r->ctr[1] = step;
  r->ctr[2] = rank;
  r->ctr[3] = purpose;
  r->used = 4;
  r->have_spare = 0;
  r->spare = 0;
}

uint32_t tf_rng_u32(tf_rng *r) {
  if (r->used == 4) {
    philox4x32_ctr_t c = {{r->ctr[0], r->ctr[1], r->ctr[2], r->ctr[3]}};
    philox4x32_key_t k = {{r->key[0], r->key[1]}};
    philox4x32_ctr_t o = philox4x32(c, k);
    for (int i = 0; i < 4; i++) r->buf[i] = o.v[i];
    r->ctr[0]++; /* block counter within the stream */
    r->used = 0;
  }
  return r->buf[r->used++];
}

uint64_t tf_rng_u64(tf_rng *r) {
  uint64_t hi = tf_rng_u32(r);
  return (hi << 32) | tf_rng_u32(r);
}

double tf_rng_uniform(tf_rng *r) {
  /* (k + 1/2) 2^-52 with k < 2^52: strictly inside (0, 1) and exactly representable */
  return ((double)(tf_rng_u64(r) >> 12) + 0.5) * 0x1p-52;
}

double tf_rng_normal(tf_rng *r) {
  if (r->have_spare) {
    r->have_spare = 0;
    return r->spare;
  }
  const double u1 = tf_rng_uniform(r), u2 = tf_rng_uniform(r);
  const double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
  r->spare = rad * sin(th);
  r->have_spare = 1;
  return rad * cos(th);
}

uint64_t tf_rng_below(tf_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  const uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the partial last bucket */
  uint64_t u;
  do u = tf_rng_u64(r);
  while (u >= lim);
  return u % n;
}

void tf_rng_fill_uniform(tf_rng *r, tf_tensor *t, double lo, double hi) {
  for (int64_t i = 0; i < t->n; i++) t->data[i] = (tf_real)(lo + (hi - lo) * tf_rng_uniform(r));
}

void tf_rng_fill_normal(tf_rng *r, tf_tensor *t, double mean, double sd) {
  for (int64_t i = 0; i < t->n; i++) t->data[i] = (tf_real)(mean + sd * tf_rng_normal(r));
}

void tf_rng_fill_normal_d(tf_rng *r, double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = tf_rng_normal(r);
}

void tf_rng_permutation(tf_rng *r, int64_t *perm, int64_t n) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)tf_rng_below(r, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}
