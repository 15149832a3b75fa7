/* rng.c — Philox4x32-10 streams named by (seed, rank, purpose, step).
 * Exported: tf_rng_init, tf_rng_u32, tf_rng_u64, tf_rng_uniform, tf_rng_normal, tf_rng_below,
 *           tf_rng_fill_uniform, tf_rng_fill_normal, tf_rng_fill_normal_d, tf_rng_permutation.
 *
 * The fills produce exactly the values of the same number of scalar calls (tf_rng_uniform,
 * tf_rng_normal) and leave the state where those calls would, but work a block of draws at a
 * time: Philox rounds for many counters at once, then branch-free double-precision log and
 * sin/cos loops the compiler vectorises (libm's log and sincos do not, and they were most of
 * the cost of drawing a latent batch). */
#include <math.h>
#include <string.h>

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

/* ---- batched words ----------------------------------------------------------------------- */

enum { BATCH = 64 }; /* Philox blocks (= normal pairs) per batch; the scratch lives on the stack */

/* nb consecutive Philox4x32-10 blocks of r's stream from block counter ctr[0] on, words in
 * stream order; the same function as Random123's philox4x32, written over arrays of counters
 * (structure of arrays) so that the rounds vectorise. */
static void philox_blocks(const tf_rng *r, int nb, uint32_t *out) {
  uint32_t c0[BATCH], c1[BATCH], c2[BATCH], c3[BATCH];
  for (int b = 0; b < nb; b++) {
    c0[b] = r->ctr[0] + (uint32_t)b; /* wraps like tf_rng_u32's ctr[0]++ */
    c1[b] = r->ctr[1];
    c2[b] = r->ctr[2];
    c3[b] = r->ctr[3];
  }
  uint32_t k0 = r->key[0], k1 = r->key[1];
  for (int round = 0; round < 10; round++) {
    if (round) {
      k0 += PHILOX_W32_0;
      k1 += PHILOX_W32_1;
    }
    for (int b = 0; b < nb; b++) {
      const uint64_t p0 = (uint64_t)PHILOX_M4x32_0 * c0[b], p1 = (uint64_t)PHILOX_M4x32_1 * c2[b];
      const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[b] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[b] ^ k1;
      c0[b] = n0;
      c1[b] = (uint32_t)p1;
      c2[b] = n2;
      c3[b] = (uint32_t)p0;
    }
  }
  for (int b = 0; b < nb; b++) {
    out[4 * b] = c0[b];
    out[4 * b + 1] = c1[b];
    out[4 * b + 2] = c2[b];
    out[4 * b + 3] = c3[b];
  }
}

/* w[0..n) = the next n words of the stream, exactly as n calls of tf_rng_u32; n <= 4 BATCH */
static void rng_words(tf_rng *r, uint32_t *w, int n) {
  int i = 0;
  while (i < n && r->used < 4) w[i++] = r->buf[r->used++];
  const int nb = (n - i) / 4;
  if (nb > 0) {
    philox_blocks(r, nb, w + i);
    r->ctr[0] += (uint32_t)nb;
    i += 4 * nb;
  }
  while (i < n) w[i++] = tf_rng_u32(r); /* refills buf: the stream continues from here */
}

/* ---- uniforms and Box-Muller ------------------------------------------------------------- */

/* (k + 1/2) 2^-52 for the 52 high bits k of (hi, lo): strictly inside (0, 1) and exact */
static inline double uniform_of(uint32_t hi, uint32_t lo) {
  /* k < 2^52 placed in the mantissa of 2^52 gives 2^52 + k exactly (an integer conversion
   * that vectorises without AVX-512DQ); subtracting 2^52 - 1/2 is exact too */
  const uint64_t bits = ((((uint64_t)hi << 32) | lo) >> 12) | 0x4330000000000000ull;
  double d;
  memcpy(&d, &bits, sizeof d);
  return (d - (0x1p52 - 0.5)) * 0x1p-52;
}

/* log(u) for u in [2^-53, 1) (normal, positive: no special cases): fdlibm's e_log.c reduction
 * to [sqrt(2)/2, sqrt(2)) and its polynomial, < 1 ulp, without branches. */
static inline double log_unit(double u) {
  uint64_t ix;
  memcpy(&ix, &u, sizeof ix);
  ix += 0x3ff0000000000000ull - 0x3fe6a09e667f3bcdull;
  const double k = (double)((int32_t)(ix >> 52) - 0x3ff);
  ix = (ix & 0x000fffffffffffffull) + 0x3fe6a09e667f3bcdull;
  double m;
  memcpy(&m, &ix, sizeof m);
  const double f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s, w = z * z;
  const double t1 = w * (3.999999999940941908e-01 +
                         w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const double t2 = z * (6.666666666666735130e-01 +
                         w * (2.857142874366239149e-01 +
                              w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  return s * (hfsq + (t1 + t2)) + k * 1.90821492927058770002e-10 - hfsq + f +
         k * 6.93147180369123816490e-01;
}

/* (cos 2 pi u, sin 2 pi u) for u in (0, 1).  u - q/4 with q = round(4u) is exact (both are
 * multiples of 2^-53 and the difference is at most 1/8), so no argument-reduction error; then
 * Taylor series of cos and sin of 2 pi r on |r| <= 1/8 (truncation < 1e-16) and a quarter-turn
 * rotation by q. */
static inline void cossin_turn(double u, double *c, double *s) {
  const double t = 4.0 * u + 0x1.8p52;
  double qf = t - 0x1.8p52;
  uint64_t tb;
  memcpy(&tb, &t, sizeof tb);
  const int q = (int)(tb & 3);
  const double r = u - 0.25 * qf, z = r * r;
  double ps = -0.71812230177850051223;
  ps = ps * z + 3.8199525848482821277;
  ps = ps * z - 15.094642576822990392;
  ps = ps * z + 42.058693944897653145;
  ps = ps * z - 76.705859753061385842;
  ps = ps * z + 81.605249276075054203;
  ps = ps * z - 41.341702240399760234;
  ps = ps * z + 6.2831853071795864769;
  const double sn = r * ps;
  double pc = 0.28200596845579121507;
  pc = pc * z - 1.7143907110886720654;
  pc = pc * z + 7.9035363713184688042;
  pc = pc * z - 26.426256783374397453;
  pc = pc * z + 60.244641371876660363;
  pc = pc * z - 85.456817206693727736;
  pc = pc * z + 64.939394022668291491;
  pc = pc * z - 19.739208802178717238;
  const double cs = pc * z + 1.0;
  /* rotate by q quarter turns: (c, s) -> (-s, c) per turn */
  const double c1 = (q & 1) ? -sn : cs, s1 = (q & 1) ? cs : sn;
  *c = (q & 2) ? -c1 : c1;
  *s = (q & 2) ? -s1 : s1;
}

/* np normal pairs from 4 np words: z[2i] = rad cos(th), z[2i + 1] = rad sin(th) with
 * rad = sqrt(-2 log u1), th = 2 pi u2, u1 from words (4i, 4i+1), u2 from (4i+2, 4i+3). */
static void box_muller(const uint32_t *w, int np, double *z) {
  double rad2[BATCH], c[BATCH], s[BATCH];
  for (int i = 0; i < np; i++) {
    rad2[i] = -2.0 * log_unit(uniform_of(w[4 * i], w[4 * i + 1]));
    cossin_turn(uniform_of(w[4 * i + 2], w[4 * i + 3]), &c[i], &s[i]);
  }
  /* sqrt in its own loop: without -fno-math-errno it keeps a libm fallback call that would
   * stop the loop above from vectorising */
  for (int i = 0; i < np; i++) {
    const double rad = sqrt(rad2[i]);
    z[2 * i] = rad * c[i];
    z[2 * i + 1] = rad * s[i];
  }
}

double tf_rng_uniform(tf_rng *r) {
  /* (k + 1/2) 2^-52 with k < 2^52: strictly inside (0, 1) and exactly representable */
  const uint32_t hi = tf_rng_u32(r);
  return uniform_of(hi, tf_rng_u32(r));
}

double tf_rng_normal(tf_rng *r) {
  if (r->have_spare) {
    r->have_spare = 0;
    return r->spare;
  }
  uint32_t w[4];
  double z[2];
  rng_words(r, w, 4);
  box_muller(w, 1, z);
  r->spare = z[1];
  r->have_spare = 1;
  return z[0];
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
  uint32_t w[4 * BATCH];
  for (int64_t i = 0; i < t->n;) {
    const int m = t->n - i < 2 * BATCH ? (int)(t->n - i) : 2 * BATCH;
    rng_words(r, w, 2 * m);
    for (int j = 0; j < m; j++)
      t->data[i + j] = (tf_real)(lo + (hi - lo) * uniform_of(w[2 * j], w[2 * j + 1]));
    i += m;
  }
}

/* x[0..n) = n successive values of tf_rng_normal(r), spare included, in batches */
static void fill_normal_any(tf_rng *r, int64_t n, double mean, double sd, tf_real *xt,
                            double *xd) {
  int64_t i = 0;
  if (n > 0 && r->have_spare) {
    const double v = tf_rng_normal(r);
    if (xt) xt[0] = (tf_real)(mean + sd * v);
    else xd[0] = v;
    i = 1;
  }
  uint32_t w[4 * BATCH];
  double z[2 * BATCH];
  while (n - i >= 2) {
    const int np = (n - i) / 2 < BATCH ? (int)((n - i) / 2) : BATCH;
    rng_words(r, w, 4 * np);
    box_muller(w, np, z);
    if (xt) {
      for (int j = 0; j < 2 * np; j++) xt[i + j] = (tf_real)(mean + sd * z[j]);
    } else {
      memcpy(xd + i, z, (size_t)(2 * np) * sizeof *z);
    }
    i += 2 * np;
  }
  if (i < n) { /* an odd count: the pair's second value stays as the spare */
    const double v = tf_rng_normal(r);
    if (xt) xt[i] = (tf_real)(mean + sd * v);
    else xd[i] = v;
  }
}

void tf_rng_fill_normal(tf_rng *r, tf_tensor *t, double mean, double sd) {
  fill_normal_any(r, t->n, mean, sd, t->data, NULL);
}

void tf_rng_fill_normal_d(tf_rng *r, double *x, int64_t n) {
  fill_normal_any(r, n, 0, 1, NULL, x);
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
