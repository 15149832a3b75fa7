/* test_rng.c — Philox streams: reproducibility, separation by name, distribution moments. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tradeflow/rng.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_key_same_stream),
      cmocka_unit_test(test_names_separate_streams),
      cmocka_unit_test(test_uniform_range_and_moments),
      cmocka_unit_test(test_normal_moments),
      cmocka_unit_test(test_below_and_permutation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
