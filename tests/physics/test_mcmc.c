/* test_mcmc.c — the MALA reference sampler (physics/mcmc.c).
 *
 * Chain averages are compared with exact values within 4 standard errors, the error computed
 * with the integrated autocorrelation time tau_int (Sokal's automatic window: the smallest W
 * with W >= 5 tau_int(W)), from the autocorrelation function averaged over chains:
 *   se = sqrt(var * 2 tau_int / N_total).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tradeflow/error.h"
#include "tradeflow/physics.h"
#include "tradeflow/rng.h"

static tf_physics *make(const char *name, const char *key, const char *value) {
  tf_physics_opt o = {key, value};
  tf_physics *p = NULL;
  const int rc = tf_physics_create(name, key ? 1 : 0, key ? &o : NULL, &p);
  if (rc) print_error("%s\n", tf_errmsg());
  assert_int_equal(rc, TF_OK);
  return p;
}

/* mean, tau_int and standard error of v (chains, n) chain-major */
typedef struct {
  double mean, var, tau, se;
} chain_est;

static chain_est chain_stats(const double *v, int64_t chains, int64_t n) {
  chain_est e = {0, 0, 0.5, 0};
  const int64_t N = chains * n;
  for (int64_t i = 0; i < N; i++) e.mean += v[i] / (double)N;
  for (int64_t i = 0; i < N; i++) e.var += (v[i] - e.mean) * (v[i] - e.mean) / (double)N;
  for (int64_t t = 1; t < n / 2; t++) {
    double c = 0;
    for (int64_t k = 0; k < chains; k++)
      for (int64_t i = 0; i + t < n; i++)
        c += (v[k * n + i] - e.mean) * (v[k * n + i + t] - e.mean);
    e.tau += c / ((double)chains * (double)(n - t) * e.var);
    if (t >= 5 * e.tau) break;
  }
  e.se = sqrt(e.var * 2 * e.tau / (double)N);
  return e;
}

/* <U> of double_well dim=2 at T: Simpson for the x1 factor, + T/2 for x2 */
static double double_well_mean_u(double T) {
  const int n = 100000;
  const double L = 5, h = 2 * L / n;
  double s0 = 0, su = 0;
  for (int i = 0; i <= n; i++) {
    const double x = -L + i * h, u = x * x * x * x - 4 * x * x;
    const double w = (i == 0 || i == n) ? 1 : (i % 2 ? 4 : 2), e = w * exp(-(u + 4) / T);
    s0 += e;
    su += e * u;
  }
  return su / s0 + 0.5 * T;
}

static void test_mala_double_well(void **state) {
  (void)state;
  tf_physics *p = make("double_well", NULL, NULL);
  tf_mcmc_config cfg = tf_mcmc_defaults();
  cfg.chains = 16;
  cfg.n_per_chain = 10000;
  cfg.burn_in = 2000;
  cfg.thin = 2;
  cfg.target_accept = 0.6;
  const double Ts[2] = {1.0, 0.5};
  for (int it = 0; it < 2; it++) {
    const double T = Ts[it];
    const int64_t N = cfg.chains * cfg.n_per_chain;
    double *x = malloc((size_t)N * 2 * sizeof *x), *u = malloc((size_t)N * sizeof *u);
    tf_rng r;
    tf_rng_init(&r, 5, 0, TF_RNG_MCMC, (uint32_t)it);
    tf_mcmc_stats st;
    const int rc = tf_physics_mcmc(p, T, &cfg, NULL, &r, x, &st);
    if (rc) print_error("%s\n", tf_errmsg());
    assert_int_equal(rc, TF_OK);
    assert_int_equal(tf_physics_energy(p, N, x, u), TF_OK);
    const chain_est e = chain_stats(u, cfg.chains, cfg.n_per_chain);
    const double ref = double_well_mean_u(T), z = (e.mean - ref) / e.se;
    print_message("MALA double_well T = %g: accept %.3f, step %.3f; <U> = %.5f +- %.5f "
                  "(tau_int %.2f), exact %.5f (%+.2f sd)\n",
                  T, st.accept, st.step, e.mean, e.se, e.tau, ref, z);
    assert_true(fabs(st.accept - cfg.target_accept) < 0.05);
    assert_true(st.step > 0 && isfinite(st.step));
    assert_true(fabs(z) < 4);
    free(x);
    free(u);
  }
  tf_physics_destroy(p);
}

/* DW4 has no exact reference, but a Boltzmann sample at T has configurational temperature T */
static void test_mala_dw4_config_temperature(void **state) {
  (void)state;
  tf_physics *p = make("dw4", NULL, NULL);
  tf_mcmc_config cfg = tf_mcmc_defaults();
  cfg.chains = 8;
  cfg.n_per_chain = 4000;
  cfg.burn_in = 2000;
  cfg.thin = 5;
  const double T = 1.3;
  const int64_t N = cfg.chains * cfg.n_per_chain, d = 6;
  double *x = malloc((size_t)N * d * sizeof *x);
  tf_rng r;
  tf_rng_init(&r, 6, 0, TF_RNG_MCMC, 0);
  tf_mcmc_stats st;
  assert_int_equal(tf_physics_mcmc(p, T, &cfg, NULL, &r, x, &st), TF_OK);
  /* per sample: |grad U|^2 and laplacian U (central differences of the gradient) */
  double rows[13 * 6], g[13 * 6], c[13], num = 0, den = 0, h = 1e-4;
  for (int k = 0; k < 13; k++) c[k] = 1.0;
  for (int64_t i = 0; i < N; i++) {
    for (int k = 0; k < 13; k++) memcpy(rows + k * d, x + i * d, d * sizeof *rows);
    for (int k = 0; k < d; k++) rows[(1 + 2 * k) * d + k] += h, rows[(2 + 2 * k) * d + k] -= h;
    assert_int_equal(tf_physics_log_q(p, 13, rows, c, NULL, g, NULL), TF_OK);
    for (int k = 0; k < d; k++) {
      num += g[k] * g[k];
      den -= (g[(1 + 2 * k) * d + k] - g[(2 + 2 * k) * d + k]) / (2 * h);
    }
  }
  const double kt = num / den;
  print_message("MALA dw4 T = %g: accept %.3f, step %.3f, configurational kT = %.4f\n", T,
                st.accept, st.step, kt);
  assert_true(fabs(kt / T - 1) < 0.03);
  free(x);
  tf_physics_destroy(p);
}

static void test_mala_reproducible_and_errors(void **state) {
  (void)state;
  tf_physics *p = make("lj13", NULL, NULL);
  tf_mcmc_config cfg = tf_mcmc_defaults();
  cfg.chains = 2;
  cfg.n_per_chain = 20;
  cfg.burn_in = 50;
  cfg.thin = 3;
  double a[2 * 20 * 36], b[2 * 20 * 36];
  tf_rng r;
  tf_mcmc_stats s1, s2;
  tf_rng_init(&r, 9, 0, TF_RNG_MCMC, 0);
  assert_int_equal(tf_physics_mcmc(p, 1.0, &cfg, NULL, &r, a, &s1), TF_OK);
  tf_rng_init(&r, 9, 0, TF_RNG_MCMC, 0);
  assert_int_equal(tf_physics_mcmc(p, 1.0, &cfg, NULL, &r, b, &s2), TF_OK);
  assert_memory_equal(a, b, sizeof a);
  assert_true(s1.step == s2.step && s1.accept == s2.accept);
  for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) assert_true(isfinite(a[i]));

  /* burn_in = 0 keeps step0; explicit start */
  cfg.burn_in = 0;
  cfg.step0 = 0.0123;
  assert_int_equal(tf_physics_mcmc(p, 1.0, &cfg, a + 36 * 19, &r, b, &s2), TF_OK);
  assert_true(s2.step == 0.0123);

  tf_mcmc_config bad = cfg;
  bad.chains = 0;
  assert_int_equal(tf_physics_mcmc(p, 1.0, &bad, NULL, &r, a, NULL), TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "chains"));
  bad = cfg;
  bad.thin = 0;
  assert_int_equal(tf_physics_mcmc(p, 1.0, &bad, NULL, &r, a, NULL), TF_EINVAL);
  bad = cfg;
  bad.target_accept = 1.5;
  assert_int_equal(tf_physics_mcmc(p, 1.0, &bad, NULL, &r, a, NULL), TF_EINVAL);
  assert_int_equal(tf_physics_mcmc(p, 1e4, &cfg, NULL, &r, a, NULL), TF_ERANGE);
  assert_non_null(strstr(tf_errmsg(), "lj13"));
  assert_int_equal(tf_physics_mcmc(p, 1.0, &cfg, NULL, NULL, a, NULL), TF_EINVAL);
  assert_int_equal(tf_physics_mcmc(p, 1.0, &cfg, NULL, &r, NULL, NULL), TF_EINVAL);
  /* a start with overlapping particles has no density */
  double x0[72] = {0};
  assert_int_equal(tf_physics_mcmc(p, 1.0, &cfg, x0, &r, a, NULL), TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "chain 0"));
  tf_physics_destroy(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_mala_double_well),
                                     cmocka_unit_test(test_mala_dw4_config_temperature),
                                     cmocka_unit_test(test_mala_reproducible_and_errors)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
