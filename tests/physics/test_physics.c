/* test_physics.c — the physics interface on every module: registry, options and their errors,
 * descriptions and ranges, gradients in x and derivatives in c against central finite
 * differences, batched against single-row calls, observables, import/export.
 *
 * Finite differences: step h = 1e-5 max(1, |x_k|) (h = 1e-6 c in c); the analytic value must
 * agree to 1e-6 (1 + |value|), i.e. ~1e-6 relative.  The largest error seen is printed. */
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

typedef struct {
  const char *name;
  const char *key, *value; /* one option or NULL */
} spec;

/* every module, some with non-default options */
static const spec SPECS[] = {
    {"double_well", NULL, NULL}, {"double_well", "dim", "4"}, {"multiwell", NULL, NULL},
    {"manywell", NULL, NULL},    {"gmm", NULL, NULL},         {"mueller_brown", NULL, NULL},
    {"mueller_brown", "scale", "0.37"}, {"dw4", NULL, NULL},  {"lj13", NULL, NULL},
    {"lj13", "pairs", "unordered"}};
enum { N_SPECS = sizeof SPECS / sizeof SPECS[0] };

static tf_physics *make(const spec *s) {
  tf_physics_opt o = {s->key, s->value};
  tf_physics *p = NULL;
  const int rc = tf_physics_create(s->name, s->key ? 1 : 0, s->key ? &o : NULL, &p);
  if (rc) print_error("create %s: %s\n", s->name, tf_errmsg());
  assert_int_equal(rc, TF_OK);
  assert_non_null(p);
  return p;
}

/* a "typical" random point of module p: near its MCMC start or in its populated box */
static void random_point(const tf_physics *p, tf_rng *r, double *x) {
  const char *n = tf_physics_name(p);
  const int d = tf_physics_dim(p);
  if (!strcmp(n, "gmm")) {
    x[0] = -5 + 11 * tf_rng_uniform(r);
    x[1] = -5 + 13 * tf_rng_uniform(r);
  } else if (!strcmp(n, "mueller_brown")) {
    x[0] = -1.5 + 2.5 * tf_rng_uniform(r);
    x[1] = -0.5 + 2.5 * tf_rng_uniform(r);
  } else if (!strcmp(n, "dw4") || !strcmp(n, "lj13")) {
    /* the module's MCMC start (square / icosahedron), perturbed */
    tf_mcmc_config c = tf_mcmc_defaults();
    c.chains = 1;
    c.n_per_chain = 1;
    c.burn_in = 0;
    c.step0 = 1e-12;
    tf_rng r2;
    tf_rng_init(&r2, 1, 0, TF_RNG_TEST, 99);
    assert_int_equal(tf_physics_mcmc(p, 1.0, &c, NULL, &r2, x, NULL), TF_OK);
    const double s = !strcmp(n, "dw4") ? 0.6 : 0.04;
    for (int k = 0; k < d; k++) x[k] += s * tf_rng_normal(r);
  } else {
    for (int k = 0; k < d; k++) x[k] = 1.3 * tf_rng_normal(r);
  }
}

static double log_q1(const tf_physics *p, const double *x, double c) {
  double l;
  assert_int_equal(tf_physics_log_q(p, 1, x, &c, &l, NULL, NULL), TF_OK);
  return l;
}

static void test_registry(void **state) {
  (void)state;
  assert_int_equal(tf_physics_module_count(), 9);
  static const char *const want[] = {"double_well", "multiwell", "manywell", "gmm",
                                     "mueller_brown", "dw4", "lj13", "phi4", "phi4_mass"};
  for (int i = 0; i < 9; i++) {
    assert_string_equal(tf_physics_module_name(i), want[i]);
    const char *h = tf_physics_module_help(i);
    assert_non_null(h);
    assert_non_null(strstr(h, want[i]));
  }
  assert_null(tf_physics_module_name(9));
  assert_null(tf_physics_module_name(-1));
  assert_null(tf_physics_module_help(9));
}

static void expect_create_error(const char *name, const char *key, const char *value,
                                const char *needle1, const char *needle2) {
  tf_physics_opt o = {key, value};
  tf_physics *p = (tf_physics *)&o; /* must be reset to NULL */
  const int rc = tf_physics_create(name, key ? 1 : 0, key ? &o : NULL, &p);
  assert_int_equal(rc, TF_EINVAL);
  assert_null(p);
  const char *m = tf_errmsg();
  if (!strstr(m, needle1) || (needle2 && !strstr(m, needle2)))
    print_error("message '%s' lacks '%s' / '%s'\n", m, needle1, needle2 ? needle2 : "");
  assert_non_null(strstr(m, needle1));
  if (needle2) assert_non_null(strstr(m, needle2));
}

static void test_create_errors(void **state) {
  (void)state;
  expect_create_error("no_such_module", NULL, NULL, "no_such_module", "double_well");
  for (int i = 0; i < tf_physics_module_count(); i++)
    expect_create_error(tf_physics_module_name(i), "bogus_key", "1", "bogus_key",
                        tf_physics_module_name(i));
  expect_create_error("double_well", "dim", "0", "dim=0", "integer");
  expect_create_error("double_well", "dim", "abc", "dim=abc", "double_well");
  expect_create_error("multiwell", "dim", "2.5", "dim=2.5", "multiwell");
  expect_create_error("multiwell", "dim", "", "dim=", "multiwell");
  expect_create_error("mueller_brown", "scale", "-1", "scale=-1", "real");
  expect_create_error("mueller_brown", "scale", "nan", "scale=nan", "mueller_brown");
  expect_create_error("lj13", "pairs", "both", "pairs=both", "ordered|unordered");

  /* duplicate key, NULL key, NULL out, NULL name */
  tf_physics_opt two[2] = {{"dim", "2"}, {"dim", "3"}};
  tf_physics *p = NULL;
  assert_int_equal(tf_physics_create("double_well", 2, two, &p), TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "dim"));
  assert_null(p);
  tf_physics_opt nul = {NULL, "3"};
  assert_int_equal(tf_physics_create("double_well", 1, &nul, &p), TF_EINVAL);
  assert_int_equal(tf_physics_create("double_well", 0, NULL, NULL), TF_EINVAL);
  assert_int_equal(tf_physics_create(NULL, 0, NULL, &p), TF_EINVAL);
  assert_int_equal(tf_physics_create("double_well", 1, NULL, &p), TF_EINVAL);
  tf_physics_destroy(NULL);
}

static void test_describe_and_ranges(void **state) {
  (void)state;
  static const char *const want[N_SPECS] = {
      "double_well dim=2", "double_well dim=4", "multiwell dim=5", "manywell", "gmm",
      "mueller_brown scale=0.1", "mueller_brown scale=0.37", "dw4", "lj13 pairs=ordered",
      "lj13 pairs=unordered"};
  static const int dims[N_SPECS] = {2, 4, 5, 32, 2, 2, 2, 6, 36, 36};
  static const int64_t raw[N_SPECS] = {2, 4, 5, 32, 2, 2, 2, 8, 39, 39};
  for (int s = 0; s < N_SPECS; s++) {
    tf_physics *p = make(&SPECS[s]);
    assert_string_equal(tf_physics_describe(p), want[s]);
    assert_string_equal(tf_physics_name(p), SPECS[s].name);
    assert_int_equal(tf_physics_dim(p), dims[s]);
    assert_int_equal(tf_physics_export_dim(p), raw[s]);
    assert_string_equal(tf_physics_param(p), !strcmp(SPECS[s].name, "gmm") ? "beta" : "T");
    double lo, hi, cmin, cmax, c0;
    tf_physics_param_range(p, &lo, &hi);
    tf_physics_default_range(p, &cmin, &cmax, &c0);
    assert_true(0 < lo && lo <= cmin && cmin < c0 + 1e-15 && c0 <= cmax && cmax <= hi);
    assert_true(c0 == 1.0);
    assert_string_equal(tf_physics_obs_name(p, 0), "energy");
    assert_null(tf_physics_obs_name(p, tf_physics_n_obs(p)));
    /* the description re-creates the same module */
    char buf[256], *sp;
    snprintf(buf, sizeof buf, "%s", tf_physics_describe(p));
    sp = strchr(buf, ' ');
    if (sp) {
      *sp = '\0';
      char *eq = strchr(sp + 1, '=');
      *eq = '\0';
      tf_physics_opt o = {sp + 1, eq + 1};
      tf_physics *q = NULL;
      assert_int_equal(tf_physics_create(buf, 1, &o, &q), TF_OK);
      assert_string_equal(tf_physics_describe(q), want[s]);
      tf_physics_destroy(q);
    }
    tf_physics_destroy(p);
  }
  double d = 7;
  tf_physics_param_range(NULL, &d, NULL);
  assert_true(isnan(d));
  assert_int_equal(tf_physics_dim(NULL), 0);
}

/* grad_x and d/dc against central differences, at 4 points x 3 parameter values per module */
static void test_gradients(void **state) {
  (void)state;
  tf_rng r;
  tf_rng_init(&r, 2385, 0, TF_RNG_TEST, 1);
  for (int s = 0; s < N_SPECS; s++) {
    tf_physics *p = make(&SPECS[s]);
    const int d = tf_physics_dim(p);
    double lo, hi, cmin, cmax, c0;
    tf_physics_param_range(p, &lo, &hi);
    tf_physics_default_range(p, &cmin, &cmax, &c0);
    const double cs[3] = {cmin * 1.0137, c0 * 0.9173, cmax * 0.9871};
    double x[64], g[64], xp[64], worst_x = 0, worst_c = 0;
    for (int pt = 0; pt < 4; pt++) {
      random_point(p, &r, x);
      for (int ic = 0; ic < 3; ic++) {
        const double c = cs[ic];
        double l, dc;
        assert_int_equal(tf_physics_log_q(p, 1, x, &c, &l, g, &dc), TF_OK);
        assert_true(isfinite(l));
        for (int k = 0; k < d; k++) {
          const double h = 1e-5 * fmax(1, fabs(x[k]));
          memcpy(xp, x, (size_t)d * sizeof *x);
          xp[k] = x[k] + h;
          const double up = log_q1(p, xp, c);
          xp[k] = x[k] - h;
          const double dn = log_q1(p, xp, c);
          const double fd = (up - dn) / (2 * h), err = fabs(fd - g[k]) / (1 + fabs(g[k]));
          if (err > worst_x) worst_x = err;
          if (err > 1e-6)
            print_error("%s: d/dx_%d at c = %g: analytic %.10g, fd %.10g\n",
                        tf_physics_describe(p), k, c, g[k], fd);
          assert_true(err <= 1e-6);
        }
        const double h = 1e-6 * c;
        const double fd = (log_q1(p, x, c + h) - log_q1(p, x, c - h)) / (2 * h);
        const double err = fabs(fd - dc) / (1 + fabs(dc));
        if (err > worst_c) worst_c = err;
        assert_true(err <= 1e-6);
        /* Boltzmann identities: log q = -U/T or -beta U */
        double u;
        assert_int_equal(tf_physics_energy(p, 1, x, &u), TF_OK);
        const double want = !strcmp(tf_physics_param(p), "beta") ? -c * u : -u / c;
        assert_true(fabs(l - want) <= 1e-14 * (1 + fabs(l)));
      }
    }
    print_message("%-26s max rel. error  grad_x %.2e  d/dc %.2e\n", tf_physics_describe(p),
                  worst_x, worst_c);
    tf_physics_destroy(p);
  }
}

/* one call on n rows with different c equals n single-row calls, bit for bit */
static void test_batched(void **state) {
  (void)state;
  enum { N = 7 };
  tf_rng r;
  tf_rng_init(&r, 77, 0, TF_RNG_TEST, 2);
  for (int s = 0; s < N_SPECS; s++) {
    tf_physics *p = make(&SPECS[s]);
    const int d = tf_physics_dim(p), no = tf_physics_n_obs(p);
    double cmin, cmax, c0;
    tf_physics_default_range(p, &cmin, &cmax, &c0);
    double *x = malloc((size_t)N * d * sizeof *x), *g = malloc((size_t)N * d * sizeof *g);
    double *g1 = malloc((size_t)d * sizeof *g1), *obs = malloc((size_t)N * no * sizeof *obs);
    double *o1 = malloc((size_t)no * sizeof *o1);
    double c[N], l[N], dc[N], u[N];
    for (int i = 0; i < N; i++) {
      random_point(p, &r, x + i * d);
      c[i] = cmin + (cmax - cmin) * tf_rng_uniform(&r);
    }
    assert_int_equal(tf_physics_log_q(p, N, x, c, l, g, dc), TF_OK);
    assert_int_equal(tf_physics_energy(p, N, x, u), TF_OK);
    assert_int_equal(tf_physics_observables(p, N, x, c, obs), TF_OK);
    double g_only[64 * N];
    assert_int_equal(tf_physics_log_q(p, N, x, c, NULL, g_only, NULL), TF_OK);
    for (int i = 0; i < N; i++) {
      double l1, dc1;
      assert_int_equal(tf_physics_log_q(p, 1, x + i * d, c + i, &l1, g1, &dc1), TF_OK);
      assert_true(l1 == l[i] && dc1 == dc[i]);
      assert_memory_equal(g1, g + i * d, (size_t)d * sizeof *g1);
      assert_memory_equal(g_only + i * d, g + i * d, (size_t)d * sizeof *g1);
      assert_int_equal(tf_physics_observables(p, 1, x + i * d, NULL, o1), TF_OK);
      assert_memory_equal(o1, obs + i * no, (size_t)no * sizeof *o1);
      assert_true(obs[i * no] == u[i]);
    }
    assert_int_equal(tf_physics_log_q(p, 0, NULL, NULL, NULL, NULL, NULL), TF_OK);
    free(x), free(g), free(g1), free(obs), free(o1);
    tf_physics_destroy(p);
  }
}

static void test_argument_errors(void **state) {
  (void)state;
  tf_physics *p = make(&SPECS[0]);
  double x[4] = {0.3, -0.2, 1, 1}, l[2], c[2] = {1.0, 1e3};
  assert_int_equal(tf_physics_log_q(p, 2, x, c, l, NULL, NULL), TF_ERANGE);
  const char *m = tf_errmsg();
  assert_non_null(strstr(m, "double_well"));
  assert_non_null(strstr(m, "T = 1000"));
  assert_non_null(strstr(m, "row 1"));
  c[1] = NAN;
  assert_int_equal(tf_physics_log_q(p, 2, x, c, l, NULL, NULL), TF_ERANGE);
  assert_int_equal(tf_physics_log_q(p, -1, x, c, l, NULL, NULL), TF_EINVAL);
  assert_int_equal(tf_physics_log_q(p, 1, NULL, c, l, NULL, NULL), TF_EINVAL);
  assert_int_equal(tf_physics_log_q(p, 1, x, NULL, l, NULL, NULL), TF_EINVAL);
  assert_int_equal(tf_physics_log_q(NULL, 1, x, c, l, NULL, NULL), TF_EINVAL);
  assert_int_equal(tf_physics_energy(p, 1, x, NULL), TF_EINVAL);
  assert_int_equal(tf_physics_observables(p, 1, x, NULL, NULL), TF_EINVAL);
  double lz;
  assert_int_equal(tf_physics_log_z(p, 0.01, &lz), TF_ERANGE);
  assert_int_equal(tf_physics_log_z(p, 1.0, NULL), TF_EINVAL);
  tf_rng r;
  tf_rng_init(&r, 1, 0, TF_RNG_TEST, 3);
  assert_int_equal(tf_physics_sample(p, 200.0, 1, &r, x), TF_ERANGE);
  assert_int_equal(tf_physics_sample(p, 1.0, 1, NULL, x), TF_EINVAL);
  assert_int_equal(tf_physics_has_sampler(p, 500.0), 0);
  /* non-finite x is not an error */
  x[0] = NAN;
  assert_int_equal(tf_physics_log_q(p, 1, x, c, l, NULL, NULL), TF_OK);
  assert_true(isnan(l[0]));
  tf_physics_destroy(p);

  /* modules without log Z / sampler */
  tf_physics *q = make(&SPECS[7]); /* dw4 */
  double y[6] = {0};
  assert_int_equal(tf_physics_log_z(q, 1.0, &lz), TF_EUNSUP);
  assert_non_null(strstr(tf_errmsg(), "dw4"));
  assert_int_equal(tf_physics_has_sampler(q, 1.0), 0);
  assert_int_equal(tf_physics_sample(q, 1.0, 1, &r, y), TF_EUNSUP);
  tf_physics_destroy(q);
  q = make(&SPECS[4]); /* gmm: sampler at beta = 1 only */
  assert_int_equal(tf_physics_has_sampler(q, 1.0), 1);
  assert_int_equal(tf_physics_has_sampler(q, 1.5), 0);
  assert_int_equal(tf_physics_sample(q, 1.5, 1, &r, y), TF_EUNSUP);
  assert_non_null(strstr(tf_errmsg(), "beta"));
  tf_physics_destroy(q);
}

static void test_observables(void **state) {
  (void)state;
  tf_physics *p = make(&SPECS[1]); /* double_well dim=4 */
  assert_int_equal(tf_physics_n_obs(p), 3);
  assert_string_equal(tf_physics_obs_name(p, 1), "x1");
  const double x[4] = {-1.25, 0.5, 2, -1};
  double o[3];
  assert_int_equal(tf_physics_observables(p, 1, x, NULL, o), TF_OK);
  const double u = pow(1.25, 4) - 4 * 1.25 * 1.25 + 0.5 * (0.25 + 4 + 1);
  assert_true(fabs(o[0] - u) < 1e-14);
  assert_true(o[1] == -1.25 && o[2] == 1.25);
  tf_physics_destroy(p);

  p = make(&SPECS[3]); /* manywell: U at a hand-computed point */
  double y[32], v;
  for (int k = 0; k < 16; k++) y[2 * k] = k < 4 ? 1.5 : -1.0, y[2 * k + 1] = 0.5;
  assert_int_equal(tf_physics_energy(p, 1, y, &v), TF_OK);
  const double ua = pow(1.5, 4) - 6 * 2.25 - 0.75, ub = 1 - 6 + 0.5;
  assert_true(fabs(v - (4 * ua + 12 * ub + 16 * 0.125)) < 1e-12);
  double om[3];
  assert_int_equal(tf_physics_observables(p, 1, y, NULL, om), TF_OK);
  assert_true(om[2] == 4 && fabs(om[1] - (4 * 1.5 - 12) / 16) < 1e-15);
  tf_physics_destroy(p);

  p = make(&SPECS[5]); /* Mueller-Brown: the deepest minimum */
  const double mb[2] = {-0.5582236346330408, 1.4417258417981622};
  double g[2], one = 1;
  assert_int_equal(tf_physics_energy(p, 1, mb, &v), TF_OK);
  assert_true(fabs(v + 14.66995172099540) < 1e-10);
  assert_int_equal(tf_physics_log_q(p, 1, mb, &one, NULL, g, NULL), TF_OK);
  assert_true(fabs(g[0]) < 1e-6 && fabs(g[1]) < 1e-6);
  tf_physics_destroy(p);
}

/* independent Cartesian energies for the particle modules */
static double dw4_u(const double *X) {
  double u = 0;
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++) {
      const double e = hypot(X[2 * i] - X[2 * j], X[2 * i + 1] - X[2 * j + 1]) - 4;
      u += 0.9 * pow(e, 4) - 4 * e * e;
    }
  return u;
}

static double lj_u(const double *X, int ordered) {
  double u = 0, m[3] = {0, 0, 0};
  for (int i = 0; i < 13; i++)
    for (int j = 0; j < 13; j++) {
      if (i == j || (!ordered && j < i)) continue;
      const double r = sqrt(pow(X[3 * i] - X[3 * j], 2) + pow(X[3 * i + 1] - X[3 * j + 1], 2) +
                            pow(X[3 * i + 2] - X[3 * j + 2], 2));
      u += pow(r, -12) - 2 * pow(r, -6);
    }
  for (int i = 0; i < 13; i++)
    for (int a = 0; a < 3; a++) m[a] += X[3 * i + a] / 13;
  for (int i = 0; i < 13; i++)
    for (int a = 0; a < 3; a++) u += 0.5 * pow(X[3 * i + a] - m[a], 2);
  return u;
}

static void test_import_export(void **state) {
  (void)state;
  enum { N = 5 };
  tf_rng r;
  tf_rng_init(&r, 404, 0, TF_RNG_TEST, 4);
  for (int s = 7; s < N_SPECS; s++) { /* dw4, lj13 ordered, lj13 unordered */
    tf_physics *p = make(&SPECS[s]);
    const int d = tf_physics_dim(p), w = (int)tf_physics_export_dim(p);
    const int nd = w == 8 ? 2 : 3, np = w / nd;
    double x[N * 36], X[N * 39], back[N * 39], x2[N * 39], u[N];
    for (int i = 0; i < N; i++) {
      random_point(p, &r, x + i * d);
      assert_int_equal(tf_physics_export(p, 1, x + i * d, X + i * w), TF_OK);
      for (int a = 0; a < nd; a++) { /* a translation per row */
        const double t = 3 * tf_rng_normal(&r);
        for (int k = 0; k < np; k++) X[i * w + k * nd + a] += t;
      }
    }
    double xi[N * 36];
    assert_int_equal(tf_physics_import(p, N, w, X, xi), TF_OK);
    assert_int_equal(tf_physics_energy(p, N, xi, u), TF_OK);
    for (int i = 0; i < N * d; i++) assert_true(fabs(xi[i] - x[i]) < 1e-12);
    for (int i = 0; i < N; i++) {
      const double ref = w == 8 ? dw4_u(X + i * w) : lj_u(X + i * w, s == 8);
      assert_true(fabs(u[i] - ref) < 1e-10 * (1 + fabs(ref)));
    }
    /* export gives the centred rows; the norm is preserved (orthonormal basis) */
    assert_int_equal(tf_physics_export(p, N, xi, back), TF_OK);
    for (int i = 0; i < N; i++) {
      double n1 = 0, n2 = 0;
      for (int a = 0; a < nd; a++) {
        double m = 0;
        for (int k = 0; k < np; k++) m += X[i * w + k * nd + a] / np;
        double cm = 0;
        for (int k = 0; k < np; k++) {
          const double c = X[i * w + k * nd + a] - m;
          assert_true(fabs(back[i * w + k * nd + a] - c) < 1e-12);
          cm += back[i * w + k * nd + a];
          n1 += c * c;
        }
        assert_true(fabs(cm) < 1e-12);
      }
      for (int k = 0; k < d; k++) n2 += xi[i * d + k] * xi[i * d + k];
      assert_true(fabs(n1 - n2) < 1e-10 * n1);
    }
    /* in place, and module-width rows are copied */
    memcpy(x2, X, sizeof X);
    assert_int_equal(tf_physics_import(p, N, w, x2, x2), TF_OK);
    assert_memory_equal(x2, xi, (size_t)N * d * sizeof *xi);
    assert_int_equal(tf_physics_import(p, N, d, xi, x2), TF_OK);
    assert_memory_equal(x2, xi, (size_t)N * d * sizeof *xi);
    /* a wrong width names both accepted widths */
    assert_int_equal(tf_physics_import(p, N, w + 1, X, x2), TF_EINVAL);
    char want[32];
    snprintf(want, sizeof want, "%d", w);
    assert_non_null(strstr(tf_errmsg(), want));
    assert_int_equal(tf_physics_export(p, 1, x2, x2), TF_EINVAL);
    tf_physics_destroy(p);
  }
  /* the other modules: identity */
  tf_physics *p = make(&SPECS[4]);
  const double a[4] = {1, 2, 3, 4};
  double b[4];
  assert_int_equal(tf_physics_import(p, 2, 2, a, b), TF_OK);
  assert_memory_equal(a, b, sizeof a);
  assert_int_equal(tf_physics_export(p, 2, a, b), TF_OK);
  assert_memory_equal(a, b, sizeof a);
  assert_int_equal(tf_physics_import(p, 1, 3, a, b), TF_EINVAL);
  tf_physics_destroy(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),        cmocka_unit_test(test_create_errors),
      cmocka_unit_test(test_describe_and_ranges), cmocka_unit_test(test_gradients),
      cmocka_unit_test(test_batched),         cmocka_unit_test(test_argument_errors),
      cmocka_unit_test(test_observables),     cmocka_unit_test(test_import_export)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
