/* test_stats.c — the estimators of stats.h against cases with known answers: log-sum-exp at
 * the ends of the double range, Kish ESS of given weights, bootstrap errors against 1/sqrt(N),
 * tau_int of AR(1) chains against (1 + rho) / (2 (1 - rho)), independence Metropolis and
 * reweighting from N(0, 1) to N(0, 0.8^2), log Z of a Gaussian, and every error path. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tradeflow/error.h"
#include "tradeflow/rng.h"
#include "tradeflow/stats.h"

static const double PI = 3.14159265358979323846;

#define assert_close(a, b, tol)                                                                \
  do {                                                                                         \
    const double a_ = (a), b_ = (b), t_ = (tol);                                               \
    if (!(fabs(a_ - b_) <= t_)) fail_msg("%s = %.12g, expected %.12g +- %.3g", #a, a_, b_, t_); \
  } while (0)

static double *normals(uint64_t seed, int64_t n) {
  double *x = malloc((size_t)n * sizeof *x);
  assert_non_null(x);
  tf_rng r;
  tf_rng_init(&r, seed, 0, TF_RNG_TEST, 0);
  tf_rng_fill_normal_d(&r, x, n);
  return x;
}

static void test_logsumexp(void **state) {
  (void)state;
  const double two[2] = {1000, 1000};
  assert_close(tf_stats_logsumexp(2, two), 1000 + log(2.0), 1e-12);
  const double tiny[3] = {-1000, -1000.5, -1001};
  assert_close(tf_stats_logsumexp(3, tiny), -1000 + log(1 + exp(-0.5) + exp(-1.0)), 1e-12);
  const double big[2] = {710, 709};  /* exp(710) overflows a double */
  assert_close(tf_stats_logsumexp(2, big), 710 + log1p(exp(-1.0)), 1e-12);
  const double ends[3] = {1e308, -1e308, -INFINITY};
  assert_true(tf_stats_logsumexp(3, ends) == 1e308);
  const double mixed[3] = {-INFINITY, 2.385, -INFINITY};
  assert_close(tf_stats_logsumexp(3, mixed), 2.385, 1e-15);
  const double none[2] = {-INFINITY, -INFINITY};
  assert_true(tf_stats_logsumexp(2, none) == -INFINITY);
  assert_true(tf_stats_logsumexp(0, NULL) == -INFINITY);
  const double nan[3] = {1, NAN, INFINITY};
  assert_true(isnan(tf_stats_logsumexp(3, nan)));
  const double inf[2] = {1, INFINITY};
  assert_true(tf_stats_logsumexp(2, inf) == INFINITY);
  /* many equal terms: log(n) + x with compensated summation */
  const int64_t n = 1000003;
  double *x = malloc((size_t)n * sizeof *x);
  for (int64_t i = 0; i < n; i++) x[i] = -3.7;
  assert_close(tf_stats_logsumexp(n, x), -3.7 + log((double)n), 1e-12);
  free(x);
}

static void test_ess_known_weights(void **state) {
  (void)state;
  double lw[5];
  double ess;
  for (int i = 0; i < 5; i++) lw[i] = 2.385;
  assert_int_equal(tf_stats_ess(5, lw, &ess), TF_OK);
  assert_close(ess, 1.0, 1e-15);
  /* weights 1, 2, 3, 4 shifted by e^700: (10)^2 / 30 / 4 */
  for (int i = 0; i < 4; i++) lw[i] = 700 + log(i + 1.0);
  assert_int_equal(tf_stats_ess(4, lw, &ess), TF_OK);
  assert_close(ess, 100.0 / 120.0, 1e-13);
  for (int i = 0; i < 4; i++) lw[i] = -800 + log(i + 1.0);
  assert_int_equal(tf_stats_ess(4, lw, &ess), TF_OK);
  assert_close(ess, 100.0 / 120.0, 1e-13);
  /* a zero weight counts in N only: (1 + 1)^2 / 2 / 3 */
  const double z[3] = {0.3, 0.3, -INFINITY};
  assert_int_equal(tf_stats_ess(3, z, &ess), TF_OK);
  assert_close(ess, 2.0 / 3.0, 1e-15);
  /* one dominant weight: ESS = 1 sample */
  const double dom[4] = {0, -1000, -1000, -1000};
  assert_int_equal(tf_stats_ess(4, dom, &ess), TF_OK);
  assert_close(ess, 0.25, 1e-15);
  const double none[2] = {-INFINITY, -INFINITY};
  assert_int_equal(tf_stats_ess(2, none, &ess), TF_OK);
  assert_true(ess == 0);
}

static void test_bad_log_weights(void **state) {
  (void)state;
  double lw[6] = {0, 1, NAN, 2, INFINITY, NAN}, v = 123, e;
  assert_int_equal(tf_stats_ess(6, lw, &v), TF_ENUMERIC);
  assert_non_null(strstr(tf_errmsg(), "3 of 6"));
  assert_non_null(strstr(tf_errmsg(), "index 2"));
  assert_true(v == 123); /* outputs untouched on error */
  assert_int_equal(tf_stats_log_z(6, lw, &v, &e), TF_ENUMERIC);
  assert_int_equal(tf_stats_snis_mean(6, lw, lw, 1, &v, &e), TF_ENUMERIC);
  int64_t chain[6];
  tf_rng r;
  tf_rng_init(&r, 1, 0, TF_RNG_TEST, 0);
  assert_int_equal(tf_stats_imh(6, lw, &r, chain, &v), TF_ENUMERIC);
  assert_int_equal(tf_stats_ess(0, lw, &v), TF_EINVAL);
  double err[3];
  assert_int_equal(tf_stats_is_bootstrap(6, lw, 1, lw, 10, &r, err), TF_ENUMERIC);
  tf_tau_result t;
  assert_int_equal(tf_stats_tau_int(1, lw, 1, 6, &t), TF_EINVAL);
  assert_int_equal(tf_stats_tau_int(6, lw, 1, 6, &t), TF_ENUMERIC);
  assert_non_null(strstr(tf_errmsg(), "value 2"));
}

static int mean_stat(int64_t n, const int64_t *idx, void *arg, double *out) {
  const double *x = arg;
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; i++) {
    s += x[idx[i]];
    s2 += x[idx[i]] * x[idx[i]];
  }
  out[0] = s / (double)n;
  out[1] = s2 / (double)n;
  return TF_OK;
}

static int failing_stat(int64_t n, const int64_t *idx, void *arg, double *out) {
  (void)n, (void)idx, (void)arg, (void)out;
  return tf_error(TF_EIO, "statistic failed on purpose");
}

static void test_bootstrap_mean(void **state) {
  (void)state;
  const int64_t n = 2000;
  double *x = normals(11, n);
  tf_rng r;
  tf_rng_init(&r, 5, 0, TF_RNG_TEST, 1);
  double sd[2];
  assert_int_equal(tf_stats_bootstrap(n, 400, &r, 2, mean_stat, x, NULL, sd), TF_OK);
  /* error of a mean of N(0, 1) samples: 1/sqrt(N); of the mean of x^2: sqrt(2/N) */
  assert_close(sd[0], 1 / sqrt((double)n), 0.15 / sqrt((double)n));
  assert_close(sd[1], sqrt(2.0 / (double)n), 0.15 * sqrt(2.0 / (double)n));
  /* a fixed stream gives fixed errors, with or without a caller's workspace */
  void *work = malloc(tf_stats_bootstrap_work_size(n, 2));
  double sd2[2];
  tf_rng_init(&r, 5, 0, TF_RNG_TEST, 1);
  assert_int_equal(tf_stats_bootstrap(n, 400, &r, 2, mean_stat, x, work, sd2), TF_OK);
  assert_true(sd[0] == sd2[0] && sd[1] == sd2[1]);
  assert_int_equal(tf_stats_bootstrap(n, 1, &r, 2, mean_stat, x, work, sd2), TF_EINVAL);
  assert_int_equal(tf_stats_bootstrap(n, 10, &r, 1, failing_stat, x, work, sd2), TF_EIO);
  assert_non_null(strstr(tf_errmsg(), "on purpose"));
  double m, se;
  tf_stats_mean_se(n, x, 1, &m, &se);
  assert_close(se, 1 / sqrt((double)n), 0.05 / sqrt((double)n));
  assert_close(m, 0, 4 * se);
  free(work);
  free(x);
}

/* AR(1) x_t = rho x_{t-1} + sqrt(1 - rho^2) eps_t, started in equilibrium. */
static double *ar1(uint64_t seed, int64_t n, double rho) {
  double *x = normals(seed, n);
  const double s = sqrt(1 - rho * rho);
  for (int64_t t = 1; t < n; t++) x[t] = rho * x[t - 1] + s * x[t];
  return x;
}

static void test_tau_int_ar1(void **state) {
  (void)state;
  const int64_t n = 400000;
  const double rho = 0.9, exact = (1 + rho) / (2 * (1 - rho)); /* 9.5 */
  double *x = ar1(21, n, rho);
  tf_tau_result t;
  assert_int_equal(tf_stats_tau_int(n, x, 1, 6, &t), TF_OK);
  print_message("AR(1) rho = 0.9: tau_int = %.3f +- %.3f (exact %.2f), W = %lld\n", t.tau,
                t.tau_err, exact, (long long)t.window);
  assert_true(t.converged);
  assert_close(t.tau, exact, 0.1 * exact);
  assert_close(t.tau, exact, 4 * t.tau_err);
  assert_true(t.window >= 6 * t.tau && t.window < 6 * t.tau + 2);
  /* error of the mean: sd sqrt(2 tau / N) with sd = 1 */
  assert_close(t.err, sqrt(2 * exact / (double)n), 0.1 * sqrt(2 * exact / (double)n));
  assert_close(t.mean, 0, 4 * t.err);
  /* strided access reads the same chain */
  double *y = malloc(2 * (size_t)n * sizeof *y);
  for (int64_t i = 0; i < n; i++) y[2 * i + 1] = x[i], y[2 * i] = NAN;
  tf_tau_result t2;
  assert_int_equal(tf_stats_tau_int(n, y + 1, 2, 6, &t2), TF_OK);
  assert_true(t2.tau == t.tau && t2.window == t.window);
  free(y);
  free(x);
  /* independent samples: tau = 1/2 */
  x = normals(22, 100000);
  assert_int_equal(tf_stats_tau_int(100000, x, 1, 0, &t), TF_OK);
  assert_close(t.tau, 0.5, 0.05);
  free(x);
  /* a constant chain, and one far too short to reach the window condition */
  double cst[10] = {2.385, 2.385, 2.385, 2.385, 2.385, 2.385, 2.385, 2.385, 2.385, 2.385};
  assert_int_equal(tf_stats_tau_int(10, cst, 1, 6, &t), TF_OK);
  assert_true(t.tau == 0.5 && t.err == 0 && t.converged);
  x = ar1(23, 40, 0.99);
  assert_int_equal(tf_stats_tau_int(40, x, 1, 6, &t), TF_OK);
  assert_false(t.converged);
  assert_true(t.window == 10);
  free(x);
}

/* Proposal p = N(0, 1), target q(x) = exp(-x^2 / (2 s^2)) with s = 0.8:
 * log w = -x^2 / (2 s^2) + x^2 / 2 + log sqrt(2 pi);  Z = s sqrt(2 pi). */
static double *gauss_logw(const double *x, int64_t n, double s) {
  double *lw = malloc((size_t)n * sizeof *lw);
  for (int64_t i = 0; i < n; i++)
    lw[i] = -x[i] * x[i] / (2 * s * s) + x[i] * x[i] / 2 + 0.5 * log(2 * PI);
  return lw;
}

static void test_imh_equal_weights(void **state) {
  (void)state;
  const int64_t n = 1000;
  double *lw = malloc(n * sizeof *lw);
  int64_t *chain = malloc(n * sizeof *chain);
  for (int64_t i = 0; i < n; i++) lw[i] = -2.385;
  tf_rng r;
  tf_rng_init(&r, 3, 0, TF_RNG_MCMC, 0);
  double acc;
  assert_int_equal(tf_stats_imh(n, lw, &r, chain, &acc), TF_OK);
  assert_true(acc == 1.0);
  for (int64_t i = 0; i < n; i++) assert_int_equal(chain[i], i);
  /* a zero-weight start is left at once; zero-weight proposals are never taken */
  const double z[5] = {-INFINITY, 0.5, -INFINITY, -INFINITY, 0.5};
  int64_t c5[5];
  assert_int_equal(tf_stats_imh(5, z, &r, c5, &acc), TF_OK);
  const int64_t want[5] = {0, 1, 1, 1, 4};
  for (int i = 0; i < 5; i++) assert_int_equal(c5[i], want[i]);
  assert_close(acc, 0.5, 1e-15);
  free(lw);
  free(chain);
}

static void test_imh_and_reweighting_gaussian(void **state) {
  (void)state;
  const int64_t n = 200000;
  const double s = 0.8, v = s * s;
  double *x = normals(31, n);
  double *lw = gauss_logw(x, n, s);
  double *x2 = malloc((size_t)n * sizeof *x2), *chain_x2 = malloc((size_t)n * sizeof *chain_x2);
  int64_t *chain = malloc((size_t)n * sizeof *chain);
  for (int64_t i = 0; i < n; i++) x2[i] = x[i] * x[i];
  tf_rng r;
  tf_rng_init(&r, 4, 0, TF_RNG_MCMC, 0);
  double acc;
  assert_int_equal(tf_stats_imh(n, lw, &r, chain, &acc), TF_OK);
  for (int64_t t = 0; t < n; t++) chain_x2[t] = x2[chain[t]];
  tf_tau_result tr;
  assert_int_equal(tf_stats_tau_int(n, chain_x2, 1, 6, &tr), TF_OK);
  print_message("IMH N(0,1) -> N(0,0.64): accept %.3f, <x^2> = %.5f +- %.5f (tau %.2f)\n", acc,
                tr.mean, tr.err, tr.tau);
  assert_true(acc > 0.7 && acc < 0.98);
  assert_true(tr.tau > 0.5 && tr.converged);
  assert_close(tr.mean, v, 4 * tr.err);
  /* self-normalised reweighting of the same samples: delta-method and bootstrap errors agree */
  double m, e, ess;
  assert_int_equal(tf_stats_snis_mean(n, lw, x2, 1, &m, &e), TF_OK);
  assert_close(m, v, 4 * e);
  assert_int_equal(tf_stats_ess(n, lw, &ess), TF_OK);
  /* Kish ESS/N -> (int q)^2 / int (q^2 / p) = 2 pi v / (2 pi / sqrt(2 / v - 1)) */
  const double ess_exact = s * sqrt(2 - v);
  assert_close(ess, ess_exact, 0.01);
  double err[3], lz, lz_err;
  tf_rng_init(&r, 4, 0, TF_RNG_USER, 0);
  assert_int_equal(tf_stats_is_bootstrap(n, lw, 1, x2, 200, &r, err), TF_OK);
  assert_int_equal(tf_stats_log_z(n, lw, &lz, &lz_err), TF_OK);
  print_message("ESS/N %.4f (exact %.4f) +- %.4f; log Z +- %.5f (boot) %.5f (delta); "
                "<x^2> +- %.5f (boot) %.5f (delta)\n", ess, ess_exact, err[0], err[1], lz_err,
                err[2], e);
  assert_close(err[1], lz_err, 0.2 * lz_err);
  assert_close(err[2], e, 0.2 * e);
  assert_true(err[0] > 0 && err[0] < 0.01);
  assert_close(ess, ess_exact, 4 * err[0]);
  free(x);
  free(lw);
  free(x2);
  free(chain_x2);
  free(chain);
}

static void test_log_z_gaussian(void **state) {
  (void)state;
  const int64_t n = 100000;
  const double s = 0.8;
  double *x = normals(41, n);
  double *lw = gauss_logw(x, n, s);
  double lz, err;
  assert_int_equal(tf_stats_log_z(n, lw, &lz, &err), TF_OK);
  const double exact = log(s * sqrt(2 * PI));
  print_message("log Z = %.6f +- %.6f, exact %.6f\n", lz, err, exact);
  assert_close(lz, exact, 4 * err);
  assert_true(err > 0 && err < 0.01);
  /* an unnormalised target with a huge constant: log Z moves by exactly the constant */
  for (int64_t i = 0; i < n; i++) lw[i] += 800;
  double lz2, err2;
  assert_int_equal(tf_stats_log_z(n, lw, &lz2, &err2), TF_OK);
  assert_close(lz2 - 800, lz, 1e-9);
  assert_close(err2, err, 1e-12);
  const double none[2] = {-INFINITY, -INFINITY};
  assert_int_equal(tf_stats_log_z(2, none, &lz, &err), TF_OK);
  assert_true(lz == -INFINITY && isnan(err));
  free(x);
  free(lw);
}

static void test_snis_zero_weight_ignores_observable(void **state) {
  (void)state;
  const double lw[3] = {log(1.0), log(3.0), -INFINITY};
  const double f[6] = {2, 99, 6, 99, NAN, 99}; /* column 0 of a (3, 2) table */
  double m, e;
  assert_int_equal(tf_stats_snis_mean(3, lw, f, 2, &m, &e), TF_OK);
  assert_close(m, (2 + 3 * 6) / 4.0, 1e-15);
  /* wn = 1/4, 3/4; deviations -3, 1: sqrt(9/16 + 9/16) */
  assert_close(e, sqrt(18.0 / 16.0), 1e-15);
}

/* Jackknife: for f = the mean itself and equal blocks it is exactly the standard error of the
 * block means; weights enter as weighted means; a ratio (the Binder-like 1 - <a>/(3<b>^2))
 * gets the value of the full means; bad arguments are refused. */
static void f_mean_and_ratio(const double *m, void *arg, double *out) {
  (void)arg;
  out[0] = m[0];
  out[1] = 1 - m[1] / (3 * m[0] * m[0]);
}

static void test_jackknife(void **state) {
  (void)state;
  enum { N = 1000, B = 20, MO = 2 };
  double obs[N * MO], lw[N];
  tf_rng r;
  tf_rng_init(&r, 5, 0, TF_RNG_TEST, 0);
  for (int i = 0; i < N; i++) {
    obs[i * MO] = 1 + tf_rng_normal(&r);
    obs[i * MO + 1] = obs[i * MO] * obs[i * MO] * (1 + 0.1 * tf_rng_normal(&r));
    lw[i] = 0.3 * tf_rng_normal(&r);
  }
  double v[2], e[2];
  assert_int_equal(tf_stats_jackknife(N, NULL, obs, MO, B, f_mean_and_ratio, NULL, 2, v, e), TF_OK);
  double tot = 0, bm[B];
  for (int b = 0; b < B; b++) {
    bm[b] = 0;
    for (int i = b * (N / B); i < (b + 1) * (N / B); i++) bm[b] += obs[i * MO] / (N / B);
    tot += bm[b] / B;
  }
  double se2 = 0;
  for (int b = 0; b < B; b++) se2 += (bm[b] - tot) * (bm[b] - tot) / (B * (B - 1.0));
  assert_true(fabs(v[0] - tot) < 1e-12);
  assert_true(fabs(e[0] - sqrt(se2)) < 1e-12);
  double s0 = 0, s1 = 0;
  for (int i = 0; i < N; i++) s0 += obs[i * MO], s1 += obs[i * MO + 1];
  assert_true(fabs(v[1] - (1 - (s1 / N) / (3 * (s0 / N) * (s0 / N)))) < 1e-12);
  assert_true(e[1] > 0 && e[1] < 0.1);
  /* weighted: the value is the self-normalised mean */
  assert_int_equal(tf_stats_jackknife(N, lw, obs, MO, B, f_mean_and_ratio, NULL, 2, v, e), TF_OK);
  double sw = 0, swo = 0;
  for (int i = 0; i < N; i++) sw += exp(lw[i]), swo += exp(lw[i]) * obs[i * MO];
  assert_true(fabs(v[0] - swo / sw) < 1e-12);
  assert_true(e[0] > 0.5 * sqrt(se2) && e[0] < 2 * sqrt(se2));
  /* too few samples for the blocks, one block, all weights zero */
  assert_int_equal(tf_stats_jackknife(30, NULL, obs, MO, B, f_mean_and_ratio, NULL, 2, v, e), TF_EINVAL);
  assert_int_equal(tf_stats_jackknife(N, NULL, obs, MO, 1, f_mean_and_ratio, NULL, 2, v, e), TF_EINVAL);
  double lz[N];
  for (int i = 0; i < N; i++) lz[i] = -INFINITY;
  assert_int_equal(tf_stats_jackknife(N, lz, obs, MO, B, f_mean_and_ratio, NULL, 2, v, e), TF_ENUMERIC);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_logsumexp),
      cmocka_unit_test(test_jackknife),
      cmocka_unit_test(test_ess_known_weights),
      cmocka_unit_test(test_bad_log_weights),
      cmocka_unit_test(test_bootstrap_mean),
      cmocka_unit_test(test_tau_int_ar1),
      cmocka_unit_test(test_imh_equal_weights),
      cmocka_unit_test(test_imh_and_reweighting_gaussian),
      cmocka_unit_test(test_log_z_gaussian),
      cmocka_unit_test(test_snis_zero_weight_ignores_observable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
