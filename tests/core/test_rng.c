/* test_rng.c — Philox streams: reproducibility, separation by name, distribution moments, and
 * the batched fills against scalar calls and libm. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

static void test_same_key_same_stream(void **state) {
  (void)state;
  tf_rng a, b;
  tf_rng_init(&a, 0x1234567890abcdefULL, 3, TF_RNG_LATENT, 17);
  tf_rng_init(&b, 0x1234567890abcdefULL, 3, TF_RNG_LATENT, 17);
  for (int i = 0; i < 10000; i++) assert_int_equal(tf_rng_u32(&a), tf_rng_u32(&b));
  /* a copied state continues identically (state is a value type) */
  tf_rng c = a;
  for (int i = 0; i < 100; i++) assert_true(tf_rng_normal(&a) == tf_rng_normal(&c));
}

/* Streams differing in one name component share no 32-bit block among the first words. */
static int count_equal(tf_rng *a, tf_rng *b, int n) {
  int eq = 0;
  for (int i = 0; i < n; i++) eq += tf_rng_u32(a) == tf_rng_u32(b);
  return eq;
}

static void test_names_separate_streams(void **state) {
  (void)state;
  tf_rng a, b;
  const uint64_t seed = 42;
  tf_rng_init(&a, seed, 0, TF_RNG_DATA, 5);
  tf_rng_init(&b, seed, 1, TF_RNG_DATA, 5); /* other rank */
  assert_true(count_equal(&a, &b, 4096) <= 2); /* chance collisions only: expected 1e-6 */
  tf_rng_init(&a, seed, 0, TF_RNG_DATA, 5);
  tf_rng_init(&b, seed, 0, TF_RNG_LATENT, 5); /* other purpose */
  assert_true(count_equal(&a, &b, 4096) <= 2);
  tf_rng_init(&a, seed, 0, TF_RNG_DATA, 5);
  tf_rng_init(&b, seed, 0, TF_RNG_DATA, 6); /* other step */
  assert_true(count_equal(&a, &b, 4096) <= 2);
  tf_rng_init(&a, seed, 0, TF_RNG_DATA, 5);
  tf_rng_init(&b, seed + 1, 0, TF_RNG_DATA, 5); /* other seed */
  assert_true(count_equal(&a, &b, 4096) <= 2);
  /* step s+1 is not the continuation of step s (counters are disjoint by construction) */
  tf_rng_init(&a, seed, 0, TF_RNG_DATA, 5);
  for (int i = 0; i < 4 * 1000; i++) tf_rng_u32(&a);
  tf_rng_init(&b, seed, 0, TF_RNG_DATA, 6);
  assert_true(count_equal(&a, &b, 4096) <= 2);
}

static void test_uniform_range_and_moments(void **state) {
  (void)state;
  tf_rng r;
  tf_rng_init(&r, 2024, 0, TF_RNG_TEST, 0);
  const int n = 400000;
  double s = 0, s2 = 0;
  for (int i = 0; i < n; i++) {
    double u = tf_rng_uniform(&r);
    assert_true(u > 0 && u < 1);
    s += u;
    s2 += u * u;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  /* standard errors: sqrt(1/12/n) = 4.6e-4 for the mean; 5 sigma */
  assert_true(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / n));
  assert_true(fabs(var - 1.0 / 12) < 5 * sqrt(1.0 / 180 / n));
}

static void test_normal_moments(void **state) {
  (void)state;
  tf_rng r;
  tf_rng_init(&r, 99, 1, TF_RNG_TEST, 0);
  const int n = 1000000;
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  for (int i = 0; i < n; i++) {
    const double z = tf_rng_normal(&r);
    m1 += z;
    m2 += z * z;
    m3 += z * z * z;
    m4 += z * z * z * z;
  }
  m1 /= n;
  m2 /= n;
  m3 /= n;
  m4 /= n;
  /* standard errors of the sample moments of N(0,1): sqrt(Var z^k / n) with Var z = 1,
   * Var z^2 = 2, Var z^3 = 15, Var z^4 = 96; 5 sigma */
  assert_true(fabs(m1) < 5 * sqrt(1.0 / n));
  assert_true(fabs(m2 - 1) < 5 * sqrt(2.0 / n));
  assert_true(fabs(m3) < 5 * sqrt(15.0 / n));
  assert_true(fabs(m4 - 3) < 5 * sqrt(96.0 / n));
}

static void test_below_and_permutation(void **state) {
  (void)state;
  tf_rng r;
  tf_rng_init(&r, 5, 0, TF_RNG_TEST, 1);
  int counts[7] = {0};
  const int n = 70000;
  for (int i = 0; i < n; i++) {
    uint64_t k = tf_rng_below(&r, 7);
    assert_true(k < 7);
    counts[k]++;
  }
  double chi2 = 0;
  for (int k = 0; k < 7; k++) chi2 += (counts[k] - n / 7.0) * (counts[k] - n / 7.0) / (n / 7.0);
  assert_true(chi2 < 22.46); /* chi^2 with 6 dof, p = 0.001 */
  int64_t perm[100];
  int seen[100] = {0};
  tf_rng_permutation(&r, perm, 100);
  for (int i = 0; i < 100; i++) {
    assert_true(perm[i] >= 0 && perm[i] < 100);
    seen[perm[i]]++;
  }
  for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
}

/* The fills are batched; they must give exactly the values of the same number of scalar calls
 * and leave the stream where those calls would, whatever the split into calls, the parity of
 * the lengths, a pending spare normal or a partly used Philox block. */
static void test_fills_match_scalar_calls(void **state) {
  (void)state;
  enum { N = 1001 };
  static double ref[N], got[N];
  static const int64_t splits[][4] = {{N, 0, 0, 0}, {1, 1000, 0, 0}, {2, 333, 666, 0},
                                      {129, 128, 3, 741}, {0, 7, 0, 994}};
  for (int pre = 0; pre < 3; pre++) /* 0, 1 or 3 words consumed before the normals */
    for (size_t sp = 0; sp < sizeof splits / sizeof splits[0]; sp++) {
      tf_rng a, b;
      tf_rng_init(&a, 77, 2, TF_RNG_LATENT, 9);
      for (int w = 0; w < (pre == 2 ? 3 : pre); w++) tf_rng_u32(&a);
      b = a;
      for (int i = 0; i < N; i++) ref[i] = tf_rng_normal(&a);
      int64_t off = 0;
      for (int k = 0; k < 4; k++) {
        tf_rng_fill_normal_d(&b, got + off, splits[sp][k]);
        off += splits[sp][k];
      }
      assert_int_equal(off, N);
      for (int i = 0; i < N; i++) assert_true(got[i] == ref[i]);
      /* the streams continue identically: normals (spare state) and raw words */
      assert_true(tf_rng_normal(&a) == tf_rng_normal(&b));
      assert_true(tf_rng_normal(&a) == tf_rng_normal(&b));
      for (int i = 0; i < 9; i++) assert_int_equal(tf_rng_u32(&a), tf_rng_u32(&b));
    }
  /* tensor fills: float values of the same doubles, mean and sd applied in double */
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *t = tf_new1(ctx, 517), *u = tf_new1(ctx, 517);
  tf_rng a, b;
  tf_rng_init(&a, 5, 0, TF_RNG_TEST, 4);
  b = a;
  tf_rng_fill_normal(&b, t, 0.5, 2.0);
  tf_rng_fill_uniform(&b, u, -1.0, 3.0);
  for (int64_t i = 0; i < t->n; i++)
    assert_true(t->data[i] == (tf_real)(0.5 + 2.0 * tf_rng_normal(&a)));
  for (int64_t i = 0; i < u->n; i++)
    assert_true(u->data[i] == (tf_real)(-1.0 + 4.0 * tf_rng_uniform(&a)));
  assert_true(tf_rng_normal(&a) == tf_rng_normal(&b));
  tf_ctx_destroy(ctx);
}

/* Box-Muller with the vectorised log and cos/sin against libm in double, from the same words:
 * z = sqrt(-2 log u1) (cos, sin)(2 pi u2), u = ((w0 2^32 + w1) >> 12 + 1/2) 2^-52. */
static void test_normals_against_libm(void **state) {
  (void)state;
  enum { N = 200000 };
  static double z[N];
  tf_rng a, w;
  tf_rng_init(&a, 1234, 0, TF_RNG_TEST, 8);
  w = a;
  tf_rng_fill_normal_d(&a, z, N);
  double worst = 0;
  for (int i = 0; i < N; i += 2) {
    uint64_t h = tf_rng_u64(&w), l = tf_rng_u64(&w);
    const double u1 = ((double)(h >> 12) + 0.5) * 0x1p-52, u2 = ((double)(l >> 12) + 0.5) * 0x1p-52;
    const double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    /* th carries a rounding error of 2 pi u2 (up to 4e-16 absolute), hence the rad term */
    const double tol = 4e-16 * (1 + rad) + 1e-15 * rad;
    worst = fmax(worst, fmax(fabs(z[i] - rad * cos(th)), fabs(z[i + 1] - rad * sin(th))) / tol);
  }
  assert_true(worst <= 1);
  /* the largest possible radius is sqrt(-2 log 2^-53) = 8.57 */
  for (int i = 0; i < N; i++) assert_true(isfinite(z[i]) && fabs(z[i]) < 8.58);
}

static void test_fill_normal_moments(void **state) {
  (void)state;
  enum { N = 1 << 20 };
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *t = tf_new1(ctx, N);
  tf_rng r;
  tf_rng_init(&r, 4242, 3, TF_RNG_LATENT, 1);
  tf_rng_fill_normal(&r, t, 0, 1);
  double m[5] = {0};
  int64_t tail = 0;
  for (int64_t i = 0; i < N; i++) {
    const double v = t->data[i];
    m[1] += v;
    m[2] += v * v;
    m[3] += v * v * v;
    m[4] += v * v * v * v;
    tail += fabs(v) > 3;
  }
  for (int k = 1; k <= 4; k++) m[k] /= N;
  assert_true(fabs(m[1]) < 5 * sqrt(1.0 / N));
  assert_true(fabs(m[2] - 1) < 5 * sqrt(2.0 / N));
  assert_true(fabs(m[3]) < 5 * sqrt(15.0 / N));
  assert_true(fabs(m[4] - 3) < 5 * sqrt(96.0 / N));
  /* P(|z| > 3) = 0.0026998; binomial standard error, 5 sigma */
  const double p3 = 0.0026997960632601866;
  assert_true(fabs((double)tail / N - p3) < 5 * sqrt(p3 * (1 - p3) / N));
  /* determinism: the same name gives the same tensor */
  tf_tensor *t2 = tf_new1(ctx, N);
  tf_rng_init(&r, 4242, 3, TF_RNG_LATENT, 1);
  tf_rng_fill_normal(&r, t2, 0, 1);
  for (int64_t i = 0; i < N; i++) assert_true(t->data[i] == t2->data[i]);
  tf_ctx_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_key_same_stream),
      cmocka_unit_test(test_names_separate_streams),
      cmocka_unit_test(test_uniform_range_and_moments),
      cmocka_unit_test(test_normal_moments),
      cmocka_unit_test(test_below_and_permutation),
      cmocka_unit_test(test_fills_match_scalar_calls),
      cmocka_unit_test(test_normals_against_libm),
      cmocka_unit_test(test_fill_normal_moments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
