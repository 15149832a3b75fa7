/* test_molecular.c — exact log Z, exact samplers and the shared Boltzmann data sets.
 *
 * References are computed here independently of the library: composite Simpson rules on
 * fixed grids (1-D for the separable wells, 2-D for GMM and Mueller-Brown), i.e. a different
 * rule, grid and code path than the library's nested trapezoid.  The known constant of
 * DESIGN.md (ManyWell Z_x(1) = 11784.50927) and log Z_gmm(1) = 0 are checked directly.
 *
 * Samplers: moments of 2e5 exact samples must agree with quadrature within 4 standard errors.
 *
 * Symmetry augmentation (dw4, lj13): every image of one configuration has its energy, and the
 * images are uniform over the group: each particle's mean position is 0, its second moment
 * isotropic, and every particle lands in each slot with probability 1 / N.
 *
 * Data (skipped with a message when absent): configurational temperature
 *   kT = <|grad U|^2> / <laplacian U>
 * in module coordinates (centre of mass removed), the Laplacian by central differences of the
 * analytic gradient.  The data folder is TF_SHARED_DATA from the environment, else the
 * compile-time default (the project's ../shared/data).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tradeflow/error.h"
#include "tradeflow/h5io.h"
#include "tradeflow/physics.h"
#include "tradeflow/rng.h"

static const double LOG_2PI = 1.8378770664093454836;

static tf_physics *make(const char *name, const char *key, const char *value) {
  tf_physics_opt o = {key, value};
  tf_physics *p = NULL;
  const int rc = tf_physics_create(name, key ? 1 : 0, key ? &o : NULL, &p);
  if (rc) print_error("%s\n", tf_errmsg());
  assert_int_equal(rc, TF_OK);
  return p;
}

static double log_z(const tf_physics *p, double c) {
  double lz;
  const int rc = tf_physics_log_z(p, c, &lz);
  if (rc) print_error("%s\n", tf_errmsg());
  assert_int_equal(rc, TF_OK);
  return lz;
}

/* ---- independent 1-D quadrature of a quartic x^4 + a x^2 + b x ------------------------------ */

typedef struct {
  double lz, x1, x2, u; /* log Z, <x>, <x^2>, <u> */
} moments;

/* Simpson on [-L, L] with n (even) intervals, shifted by the minimum to avoid overflow */
static moments quartic_moments(double a, double b, double T) {
  const double L = 4 + 2 * pow(T, 0.25);
  const int n = 200000;
  const double h = 2 * L / n;
  double umin = 0;
  for (int i = 0; i <= n; i++) {
    const double x = -L + i * h, u = x * x * x * x + a * x * x + b * x;
    if (u < umin) umin = u;
  }
  double s0 = 0, s1 = 0, s2 = 0, su = 0;
  for (int i = 0; i <= n; i++) {
    const double x = -L + i * h, u = x * x * x * x + a * x * x + b * x;
    const double w = (i == 0 || i == n) ? 1 : (i % 2 ? 4 : 2), e = w * exp(-(u - umin) / T);
    s0 += e;
    s1 += e * x;
    s2 += e * x * x;
    su += e * u;
  }
  moments m = {log(s0 * h / 3) - umin / T, s1 / s0, s2 / s0, su / s0};
  return m;
}

static void test_log_z_wells(void **state) {
  (void)state;
  /* ManyWell-32 at T = 1: 16 (log 11784.50927 + 1/2 log 2 pi) */
  tf_physics *mw = make("manywell", NULL, NULL);
  const double want = 16 * (log(11784.50927) + 0.5 * LOG_2PI), got = log_z(mw, 1.0);
  print_message("manywell log Z(1) = %.12f (DESIGN.md: %.12f, rel. diff %.1e)\n", got, want,
                fabs(got / want - 1));
  assert_true(fabs(got / want - 1) < 1e-8);
  for (double T = 0.5; T <= 2; T *= 4) {
    const double ref = 16 * (quartic_moments(-6, -0.5, T).lz + 0.5 * (LOG_2PI + log(T)));
    const double lz = log_z(mw, T);
    print_message("manywell log Z(%g) = %.12f, Simpson %.12f\n", T, lz, ref);
    assert_true(fabs(lz / ref - 1) < 1e-10);
  }
  tf_physics_destroy(mw);

  /* double_well dim=3 and multiwell dim=5 at two temperatures and at the ends of the range */
  tf_physics *dw = make("double_well", "dim", "3"), *mu = make("multiwell", NULL, NULL);
  const double Ts[4] = {0.5, 1.0, 0.05, 100};
  for (int i = 0; i < 4; i++) {
    const double T = Ts[i], z1 = quartic_moments(-4, 0, T).lz;
    const double ref_dw = z1 + (LOG_2PI + log(T)), ref_mw = 5 * z1;
    const double a = log_z(dw, T), b = log_z(mu, T);
    print_message("T = %-5g double_well dim=3 log Z %.13f (Simpson %.13f); multiwell %.13f "
                  "(%.13f)\n", T, a, ref_dw, b, ref_mw);
    assert_true(fabs(a - ref_dw) < 1e-10 * fmax(1, fabs(ref_dw)));
    assert_true(fabs(b - ref_mw) < 1e-10 * fmax(1, fabs(ref_mw)));
  }
  tf_physics_destroy(dw);
  tf_physics_destroy(mu);
}

/* ---- 2-D targets ----------------------------------------------------------------------------- */

/* Simpson on a box of the module's -U * f (f = beta or 1/T), shifted by the grid maximum */
static double simpson2d_log(const tf_physics *p, double c, double ax, double bx, double ay,
                            double by, int n) {
  const double hx = (bx - ax) / n, hy = (by - ay) / n;
  double *v = malloc((size_t)(n + 1) * (n + 1) * sizeof *v);
  double *xy = malloc(2 * (size_t)(n + 1) * sizeof *xy);
  double *cc = malloc((size_t)(n + 1) * sizeof *cc), vmax = -INFINITY;
  for (int j = 0; j <= n; j++) cc[j] = c;
  for (int i = 0; i <= n; i++) {
    for (int j = 0; j <= n; j++) xy[2 * j] = ax + i * hx, xy[2 * j + 1] = ay + j * hy;
    double *vi = v + (size_t)i * (n + 1);
    assert_int_equal(tf_physics_log_q(p, n + 1, xy, cc, vi, NULL, NULL), TF_OK);
    for (int j = 0; j <= n; j++) vmax = fmax(vmax, v[(size_t)i * (n + 1) + j]);
  }
  double s = 0;
  for (int i = 0; i <= n; i++) {
    const double wi = (i == 0 || i == n) ? 1 : (i % 2 ? 4 : 2);
    for (int j = 0; j <= n; j++) {
      const double wj = (j == 0 || j == n) ? 1 : (j % 2 ? 4 : 2);
      s += wi * wj * exp(v[(size_t)i * (n + 1) + j] - vmax);
    }
  }
  free(v), free(xy), free(cc);
  return vmax + log(s * hx * hy / 9);
}

static void test_log_z_2d(void **state) {
  (void)state;
  tf_physics *g = make("gmm", NULL, NULL);
  const double z1 = log_z(g, 1.0);
  print_message("gmm log Z(1) = %.3e (exact 0)\n", z1);
  assert_true(fabs(z1) < 1e-8);
  const double betas[3] = {0.16, 0.5, 6.2};
  for (int i = 0; i < 3; i++) {
    /* box: every component to beyond e^-45 of its peak; step below the narrowest width/3 */
    const double b = betas[i], L = 1.25 * sqrt(90 / b) + 8;
    const int n = b < 0.3 ? 4000 : 2000;
    const double ref = simpson2d_log(g, b, -L, L + 1, -L, L + 3, n), lz = log_z(g, b);
    print_message("gmm log Z(%g) = %.12f, Simpson %.12f\n", b, lz, ref);
    assert_true(fabs(lz - ref) < 1e-8 * fmax(1, fabs(ref)));
  }
  tf_physics_destroy(g);

  tf_physics *mb = make("mueller_brown", NULL, NULL);
  for (double T = 0.5; T <= 2; T *= 2) {
    const double ref = simpson2d_log(mb, T, -4.5, 2.5, -2.5, 4.5, 3000), lz = log_z(mb, T);
    print_message("mueller_brown log Z(%g) = %.12f, Simpson %.12f\n", T, lz, ref);
    assert_true(fabs(lz - ref) < 1e-8 * fmax(1, fabs(ref)));
  }
  tf_physics_destroy(mb);
}

/* ---- exact samplers -------------------------------------------------------------------------- */

typedef struct {
  double mean, se;
} est;

static est column_mean(const double *v, int64_t n, int stride) {
  double m = 0, m2 = 0;
  for (int64_t i = 0; i < n; i++) m += v[i * stride] / (double)n;
  for (int64_t i = 0; i < n; i++) m2 += (v[i * stride] - m) * (v[i * stride] - m);
  est e = {m, sqrt(m2 / (double)(n - 1) / (double)n)};
  return e;
}

static void expect_within(const char *what, est e, double ref) {
  const double z = (e.mean - ref) / e.se;
  print_message("  %-28s %.6f +- %.6f   reference %.6f   (%+.2f sd)\n", what, e.mean, e.se, ref, z);
  assert_true(fabs(z) < 4);
}

enum { NS = 200000 };

static void test_samplers_wells(void **state) {
  (void)state;
  double *x = malloc((size_t)NS * 32 * sizeof *x), *v = malloc((size_t)NS * 3 * sizeof *v);
  tf_rng r;
  /* double_well dim=2 at T = 0.5, 1 (and the range ends with fewer samples) */
  tf_physics *p = make("double_well", NULL, NULL);
  const double Ts[4] = {0.5, 1.0, 0.05, 100};
  for (int it = 0; it < 4; it++) {
    const double T = Ts[it];
    const int64_t n = it < 2 ? NS : NS / 4;
    tf_rng_init(&r, 31, 0, TF_RNG_TEST, (uint32_t)it);
    assert_int_equal(tf_physics_has_sampler(p, T), 1);
    assert_int_equal(tf_physics_sample(p, T, n, &r, x), TF_OK);
    const moments m = quartic_moments(-4, 0, T);
    for (int64_t i = 0; i < n; i++) v[i] = x[2 * i] * x[2 * i];
    print_message("double_well T = %g\n", T);
    expect_within("<x1^2>", column_mean(v, n, 1), m.x2);
    for (int64_t i = 0; i < n; i++) v[n + i] = x[2 * i + 1] * x[2 * i + 1];
    expect_within("<x2^2>", column_mean(v + n, n, 1), T);
    assert_int_equal(tf_physics_energy(p, n, x, v), TF_OK);
    expect_within("<U>", column_mean(v, n, 1), m.u + 0.5 * T);
  }
  tf_physics_destroy(p);

  /* multiwell dim=5 at T = 0.5, 1: <U> = 5 <u>, coordinate signs balanced */
  p = make("multiwell", NULL, NULL);
  for (int it = 0; it < 2; it++) {
    const double T = 0.5 * (it + 1);
    tf_rng_init(&r, 32, 0, TF_RNG_TEST, (uint32_t)it);
    assert_int_equal(tf_physics_sample(p, T, NS, &r, x), TF_OK);
    const moments m = quartic_moments(-4, 0, T);
    print_message("multiwell T = %g\n", T);
    assert_int_equal(tf_physics_observables(p, NS, x, NULL, v), TF_OK);
    expect_within("<U>", column_mean(v, NS, 3), 5 * m.u);
    expect_within("<n_pos>", column_mean(v + 2, NS, 3), 2.5);
    for (int64_t i = 0; i < NS; i++) v[i] = x[5 * i + 3] * x[5 * i + 3];
    expect_within("<x4^2>", column_mean(v, NS, 1), m.x2);
  }
  tf_physics_destroy(p);

  /* manywell at T = 1, 2: the asymmetric well */
  p = make("manywell", NULL, NULL);
  const int64_t nm = NS / 4;
  for (int it = 0; it < 2; it++) {
    const double T = 1.0 + it;
    tf_rng_init(&r, 33, 0, TF_RNG_TEST, (uint32_t)it);
    assert_int_equal(tf_physics_sample(p, T, nm, &r, x), TF_OK);
    const moments m = quartic_moments(-6, -0.5, T);
    print_message("manywell T = %g\n", T);
    assert_int_equal(tf_physics_observables(p, nm, x, NULL, v), TF_OK);
    expect_within("<U>", column_mean(v, nm, 3), 16 * (m.u + 0.5 * T));
    expect_within("<mean_x>", column_mean(v + 1, nm, 3), m.x1);
    for (int64_t i = 0; i < nm; i++) v[i] = x[32 * i + 6] * x[32 * i + 6];
    expect_within("<x_4^2>", column_mean(v, nm, 1), m.x2);
    for (int64_t i = 0; i < nm; i++) v[i] = x[32 * i + 7] * x[32 * i + 7];
    expect_within("<y_4^2>", column_mean(v, nm, 1), T);
  }
  tf_physics_destroy(p);
  free(x);
  free(v);
}

static void test_sampler_gmm(void **state) {
  (void)state;
  tf_physics *p = make("gmm", NULL, NULL);
  double *x = malloc((size_t)NS * 2 * sizeof *x);
  tf_rng r;
  tf_rng_init(&r, 34, 0, TF_RNG_TEST, 0);
  assert_int_equal(tf_physics_sample(p, 1.0, NS, &r, x), TF_OK);
  print_message("gmm beta = 1\n");
  expect_within("<x>", column_mean(x, NS, 2), 1.0 / 6);
  expect_within("<y>", column_mean(x + 1, NS, 2), 9.0 / 6);
  /* <x^2> = (1/6) sum (mu_x^2 + S_xx) */
  for (int64_t i = 0; i < NS; i++) x[2 * i] = x[2 * i] * x[2 * i];
  const double ex2 = (1 + 9 + 16 + 4 + 0 + 25 + .2778 + .8958 + 1.3074 + .0305 + .0463 + .15) / 6;
  expect_within("<x^2>", column_mean(x, NS, 2), ex2);
  tf_physics_destroy(p);
  free(x);
}

/* ---- shared data: configurational temperature ----------------------------------------------- */

static int data_path(const char *file, char *buf, size_t len) {
  const char *dir = getenv("TF_SHARED_DATA");
  if (!dir || !*dir) dir = TF_SHARED_DATA;
  snprintf(buf, len, "%s/molecular/%s", dir, file);
  return access(buf, R_OK) == 0;
}

/* kT = sum |grad U|^2 / sum laplacian U over the rows of x (n, D), at T = 1; *lap = <lap U> */
static double config_temperature(const tf_physics *p, int64_t n, const double *x, double *lap) {
  const int d = tf_physics_dim(p);
  double *rows = malloc((size_t)(2 * d + 1) * d * sizeof *rows);
  double *g = malloc((size_t)(2 * d + 1) * d * sizeof *g);
  double *c = malloc((size_t)(2 * d + 1) * sizeof *c);
  for (int k = 0; k < 2 * d + 1; k++) c[k] = 1.0;
  const double h = 1e-4;
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    const double *xi = x + i * d;
    for (int k = 0; k < 2 * d + 1; k++) memcpy(rows + k * d, xi, (size_t)d * sizeof *rows);
    for (int k = 0; k < d; k++) {
      rows[(1 + 2 * k) * d + k] += h;
      rows[(2 + 2 * k) * d + k] -= h;
    }
    /* grad log q at T = 1 is -grad U */
    assert_int_equal(tf_physics_log_q(p, 2 * d + 1, rows, c, NULL, g, NULL), TF_OK);
    for (int k = 0; k < d; k++) {
      num += g[k] * g[k];
      den -= (g[(1 + 2 * k) * d + k] - g[(2 + 2 * k) * d + k]) / (2 * h);
    }
  }
  free(rows), free(g), free(c);
  *lap = den / (double)n;
  return num / den;
}

static void check_data(const char *file, const char *module, const char *key, const char *value,
                       int64_t width, double want) {
  char path[1024];
  if (!data_path(file, path, sizeof path)) {
    print_message("SKIP: %s not found (set TF_SHARED_DATA to the shared data folder)\n", path);
    skip();
  }
  int64_t n, w;
  double *raw = NULL;
  const int rc = tf_h5_read_matrix(path, "val", TF_H5_FINITE, &n, &w, &raw);
  if (rc) print_error("%s\n", tf_errmsg());
  assert_int_equal(rc, TF_OK);
  assert_int_equal(w, width);
  tf_physics *p = make(module, key, value);
  double *x = malloc((size_t)n * tf_physics_dim(p) * sizeof *x);
  assert_int_equal(tf_physics_import(p, n, w, raw, x), TF_OK);
  double lap;
  const double kt = config_temperature(p, n, x, &lap);
  double *u = malloc((size_t)n * sizeof *u), mu = 0;
  assert_int_equal(tf_physics_energy(p, n, x, u), TF_OK);
  for (int64_t i = 0; i < n; i++) mu += u[i] / (double)n;
  print_message("%s val (%lld x %lld) with '%s': configurational kT = %.4f (expected %.3f), "
                "<U> = %.4f, <laplacian U> = %.2f\n", file, (long long)n, (long long)w,
                tf_physics_describe(p), kt, want, mu, lap);
  assert_true(fabs(kt / want - 1) < 0.02);
  free(u), free(x), free(raw);
  tf_physics_destroy(p);
}

static void check_augment(const char *name) {
  tf_physics *p = make(name, NULL, NULL);
  const int D = tf_physics_dim(p);
  const int64_t W = tf_physics_export_dim(p), n = 20000;
  const int d = W == 8 ? 2 : 3, np = (int)W / d;
  double *x = malloc((size_t)(n * D) * sizeof *x), *X = malloc((size_t)(n * W) * sizeof *X);
  double *u = malloc((size_t)n * sizeof *u), X0[39], r0[13];
  assert_non_null(x);
  assert_non_null(X);
  assert_non_null(u);
  tf_rng rng;
  tf_rng_init(&rng, 11, 0, TF_RNG_TEST, 0);
  tf_rng_fill_normal_d(&rng, x, D); /* a generic configuration: distinct radii */
  for (int j = 0; j < D; j++) x[j] *= 1.5;
  for (int64_t r = 1; r < n; r++) memcpy(x + r * D, x, (size_t)D * sizeof *x);
  double u0;
  assert_int_equal(tf_physics_energy(p, 1, x, &u0), TF_OK);
  assert_int_equal(tf_physics_export(p, 1, x, X0), TF_OK);
  double s2 = 0; /* sum_i |X_i|^2 */
  for (int i = 0; i < np; i++) {
    r0[i] = 0;
    for (int a = 0; a < d; a++) r0[i] += X0[i * d + a] * X0[i * d + a];
    s2 += r0[i];
  }
  assert_int_equal(tf_physics_augment(p, n, x, &rng), TF_OK);
  assert_int_equal(tf_physics_energy(p, n, x, u), TF_OK);
  double worst = 0;
  for (int64_t r = 0; r < n; r++) worst = fmax(worst, fabs(u[r] - u0) / (1 + fabs(u0)));
  print_message("  %s: augmented energies differ from U = %.6f by %.1e (relative) at most\n",
                name, u0, worst);
  assert_true(worst < 1e-10); /* round-off of two basis changes and a rotation */
  assert_int_equal(tf_physics_export(p, n, x, X), TF_OK);
  char what[64];
  for (int a = 0; a < d; a++) { /* particle 0: mean 0, covariance s2 / (N d) I */
    snprintf(what, sizeof what, "<X_0[%d]>", a);
    expect_within(what, column_mean(X + a, n, (int)W), 0);
    for (int b = a; b < d; b++) {
      for (int64_t r = 0; r < n; r++) u[r] = X[r * W + a] * X[r * W + b];
      snprintf(what, sizeof what, "<X_0[%d] X_0[%d]>", a, b);
      expect_within(what, column_mean(u, n, 1), a == b ? s2 / (np * d) : 0);
    }
  }
  for (int i = 0; i < np; i++) { /* slot 0 holds particle i (known by its radius) w.p. 1/N */
    for (int64_t r = 0; r < n; r++) {
      double rr = 0;
      for (int a = 0; a < d; a++) rr += X[r * W + a] * X[r * W + a];
      u[r] = fabs(rr - r0[i]) < 1e-9 * (1 + r0[i]);
    }
    snprintf(what, sizeof what, "P(slot 0 = particle %d)", i);
    expect_within(what, column_mean(u, n, 1), 1.0 / np);
  }
  free(x);
  free(X);
  free(u);
  tf_physics_destroy(p);
}

static void test_augment(void **state) {
  (void)state;
  check_augment("dw4");
  check_augment("lj13");
  tf_physics *p = make("double_well", NULL, NULL);
  double x[2] = {0, 0};
  tf_rng rng;
  tf_rng_init(&rng, 1, 0, TF_RNG_TEST, 0);
  assert_null(tf_physics_augment_group(p));
  assert_int_equal(tf_physics_augment(p, 1, x, &rng), TF_EUNSUP);
  tf_physics_destroy(p);
}

static void test_data_dw4(void **state) {
  (void)state;
  check_data("dw4.h5", "dw4", NULL, NULL, 8, 1.0);
}

static void test_data_lj13_ordered(void **state) {
  (void)state;
  check_data("lj13.h5", "lj13", "pairs", "ordered", 39, 1.0);
}

static void test_data_lj13_unordered(void **state) {
  (void)state;
  check_data("lj13.h5", "lj13", "pairs", "unordered", 39, 0.5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_z_wells),       cmocka_unit_test(test_log_z_2d),
      cmocka_unit_test(test_samplers_wells),    cmocka_unit_test(test_sampler_gmm),
      cmocka_unit_test(test_data_dw4),          cmocka_unit_test(test_data_lj13_ordered),
      cmocka_unit_test(test_data_lj13_unordered), cmocka_unit_test(test_augment)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
