/* test_lattice.c — the lattice modules and include/tradeflow/lattice.h: phi^4 actions, forces
 * and d/dc against finite differences and against an action written here; symmetry
 * augmentation; the free field (exact G, chi, log Z against dense linear algebra; the exact
 * sampler's covariance in position and momentum space); HMC (reversibility, dH ~ eps^2,
 * <exp(-dH)> = 1, the free field's chi, G(x), xi with all four integrator / acceleration
 * variants, interacting phi^4 against a single-site Metropolis sampler written here, the
 * tf_physics_mcmc hook); the analysis (hand-computed values on small sets, weights, jackknife);
 * and every error path.
 *
 * Statistical comparisons: |estimate - exact| < 4 standard errors (or combined errors for two
 * estimates), the errors from independent samples or jackknife blocks much longer than
 * tau_int.  Where the largest |z| over all V = 64 values of G(x) of an HMC chain is checked,
 * the bound is 4.5 (family-wise: P(max > 4.5) < 64 x 7e-6 even for independent values, and
 * the jackknife error itself is uncertain by ~10% with 50 blocks).  Fixed seeds: the outcome
 * is deterministic.
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
#include "tradeflow/lattice.h"
#include "tradeflow/physics.h"
#include "tradeflow/rng.h"
#include "tradeflow/stats.h"

static const double PI = 3.14159265358979323846;

static tf_physics *make(const char *name, int L, double lambda) {
  char ls[16], lam[32];
  snprintf(ls, sizeof ls, "%d", L);
  snprintf(lam, sizeof lam, "%.17g", lambda);
  tf_physics_opt o[2] = {{"L", ls}, {"lambda", lam}};
  tf_physics *p = NULL;
  const int rc = tf_physics_create(name, 2, o, &p);
  if (rc) print_error("%s\n", tf_errmsg());
  assert_int_equal(rc, TF_OK);
  return p;
}

/* The actions of DESIGN.md section 5, written out site by site with explicit neighbours. */
static double ref_action(int hopping, int L, double lambda, double c, const double *x) {
  double s = 0;
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++) {
      const double f = x[i * L + j], f0 = x[((i + 1) % L) * L + j], f1 = x[i * L + (j + 1) % L];
      if (hopping)
        s += -2 * c * f * (f0 + f1) + (1 - 2 * lambda) * f * f + lambda * f * f * f * f;
      else
        s += (f0 - f) * (f0 - f) + (f1 - f) * (f1 - f) + c * f * f + lambda * f * f * f * f;
    }
  return s;
}

/* z-score of a against b with errors ea, eb */
static double zscore(double a, double ea, double b, double eb) {
  return (a - b) / sqrt(ea * ea + eb * eb);
}

/* ---- actions, forces, derivative in the coupling -------------------------------------------- */

static void test_forces(void **state) {
  (void)state;
  static const struct {
    const char *name;
    int L;
    double lambda, c[3];
  } cases[] = {{"phi4", 4, 0.02, {0.22, 0.27, 0.32}}, {"phi4", 3, 0.7, {0.05, 0.5, 3.1}},
               {"phi4", 5, 0, {0.01, 0.13, 0.2437}},  {"phi4_mass", 4, 0, {0.1, 0.5, 2.3}},
               {"phi4_mass", 3, 0.3, {1e-3, 0.7, 11}}, {"phi4", 2, 0.02, {0.25, 0.29, 0.3}}};
  tf_rng r;
  tf_rng_init(&r, 2385, 0, TF_RNG_TEST, 1);
  double x[25], g[25], xp[25], worst_x = 0, worst_c = 0, worst_s = 0;
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    tf_physics *p = make(cases[k].name, cases[k].L, cases[k].lambda);
    const int V = cases[k].L * cases[k].L, hop = !strcmp(cases[k].name, "phi4");
    assert_int_equal(tf_physics_dim(p), V);
    for (int pt = 0; pt < 3; pt++) {
      for (int s = 0; s < V; s++) x[s] = 1.3 * tf_rng_normal(&r) + 0.4;
      for (int ic = 0; ic < 3; ic++) {
        const double c = cases[k].c[ic];
        double lq, dc;
        assert_int_equal(tf_physics_log_q(p, 1, x, &c, &lq, g, &dc), TF_OK);
        const double sref = ref_action(hop, cases[k].L, cases[k].lambda, c, x);
        worst_s = fmax(worst_s, fabs(-lq - sref) / (1 + fabs(sref)));
        assert_true(fabs(-lq - sref) <= 1e-12 * (1 + fabs(sref)));
        for (int s = 0; s < V; s++) {
          const double h = 1e-5 * fmax(1, fabs(x[s]));
          double lp, lm;
          memcpy(xp, x, (size_t)V * sizeof *x);
          xp[s] = x[s] + h;
          assert_int_equal(tf_physics_log_q(p, 1, xp, &c, &lp, NULL, NULL), TF_OK);
          xp[s] = x[s] - h;
          assert_int_equal(tf_physics_log_q(p, 1, xp, &c, &lm, NULL, NULL), TF_OK);
          const double fd = (lp - lm) / (2 * h), e = fabs(fd - g[s]) / (1 + fabs(g[s]));
          worst_x = fmax(worst_x, e);
          assert_true(e < 1e-6);
        }
        const double h = 1e-6 * c, cp = c + h, cm = c - h;
        double lp, lm;
        assert_int_equal(tf_physics_log_q(p, 1, x, &cp, &lp, NULL, NULL), TF_OK);
        assert_int_equal(tf_physics_log_q(p, 1, x, &cm, &lm, NULL, NULL), TF_OK);
        const double e = fabs((lp - lm) / (2 * h) - dc) / (1 + fabs(dc));
        worst_c = fmax(worst_c, e);
        assert_true(e < 1e-6);
        /* DESIGN.md section 4: A = dS/dkappa = -2 sum_x phi_x sum_mu phi_{x+mu} */
        if (hop) {
          const double a = ref_action(1, cases[k].L, 0, 1, x) - ref_action(1, cases[k].L, 0, 0, x);
          assert_true(fabs(-dc - a) <= 1e-12 * (1 + fabs(a)));
        }
      }
    }
    tf_physics_destroy(p);
  }
  print_message("phi4 actions vs the reference: worst %.1e; force vs FD: worst %.1e; dS/dc vs "
                "FD: worst %.1e\n", worst_s, worst_x, worst_c);
}

/* ---- symmetry augmentation ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void test_augment(void **state) {
  (void)state;
  const int L = 6, V = 36, n = 400;
  tf_physics *p = make("phi4", L, 0.02);
  assert_non_null(tf_physics_augment_group(p));
  tf_rng r;
  tf_rng_init(&r, 11, 0, TF_RNG_TEST, 2);
  double x[36], sx[36], sy[36], *y = malloc((size_t)n * V * sizeof *y);
  for (int s = 0; s < V; s++) x[s] = tf_rng_normal(&r) + 0.3; /* distinct values, <m> != 0 */
  for (int i = 0; i < n; i++) memcpy(y + i * V, x, sizeof x);
  assert_int_equal(tf_physics_augment(p, n, y, &r), TF_OK);
  memcpy(sx, x, sizeof x);
  qsort(sx, V, sizeof *sx, cmp_double);
  int flipped = 0, moved = 0;
  const double ks[4] = {0.22, 0.25, 0.27, 0.32};
  for (int i = 0; i < n; i++) {
    const double *yi = y + i * V;
    /* the image is a permutation of the sites, up to a global sign (a bijection); the sign
     * is read off the sum, which a permutation keeps */
    double sum_x = 0, sum_y = 0;
    for (int s = 0; s < V; s++) sum_x += x[s], sum_y += yi[s];
    const int neg = sum_y * sum_x < 0;
    for (int s = 0; s < V; s++) sy[s] = neg ? -yi[s] : yi[s];
    qsort(sy, V, sizeof *sy, cmp_double);
    assert_memory_equal(sx, sy, sizeof sx);
    flipped += neg;
    moved += memcmp(yi, x, sizeof x) != 0;
    for (int k = 0; k < 4; k++) {
      double sa, sb;
      assert_int_equal(tf_physics_log_q(p, 1, x, &ks[k], &sa, NULL, NULL), TF_OK);
      assert_int_equal(tf_physics_log_q(p, 1, yi, &ks[k], &sb, NULL, NULL), TF_OK);
      assert_true(fabs(sa - sb) <= 1e-12 * (1 + fabs(sa)));
    }
  }
  /* sign flips half of the time (binomial sd 10), nearly every image differs from x */
  print_message("augment: %d of %d sign-flipped, %d moved\n", flipped, n, moved);
  assert_true(abs(flipped - n / 2) < 45);
  assert_true(moved > n - 5);
  free(y);
  tf_physics_destroy(p);
}

/* ---- free field: exact quantities ----------------------------------------------------------- */

/* In-place Cholesky of the SPD matrix a (n, n); returns log det. */
static double chol_logdet(int n, double *a) {
  double ld = 0;
  for (int j = 0; j < n; j++) {
    double d = a[j * n + j];
    for (int k = 0; k < j; k++) d -= a[j * n + k] * a[j * n + k];
    assert_true(d > 0);
    d = sqrt(d);
    a[j * n + j] = d;
    ld += 2 * log(d);
    for (int i = j + 1; i < n; i++) {
      double v = a[i * n + j];
      for (int k = 0; k < j; k++) v -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = v / d;
    }
  }
  return ld;
}

/* Gauss-Jordan inverse of a (n, n) into inv (a destroyed); SPD, no pivoting needed. */
static void invert(int n, double *a, double *inv) {
  for (int i = 0; i < n * n; i++) inv[i] = i % (n + 1) == 0;
  for (int c = 0; c < n; c++) {
    const double d = a[c * n + c];
    for (int k = 0; k < n; k++) a[c * n + k] /= d, inv[c * n + k] /= d;
    for (int i = 0; i < n; i++)
      if (i != c) {
        const double f = a[i * n + c];
        for (int k = 0; k < n; k++) {
          a[i * n + k] -= f * a[c * n + k];
          inv[i * n + k] -= f * inv[c * n + k];
        }
      }
  }
}

/* the matrix A of S = phi^T A phi (mass form: -Laplacian + m2; hopping form, lambda = 0:
 * 1 on the diagonal, -kappa per neighbour), dense (V, V) */
static void quad_matrix(int hopping, int L, double c, double *a) {
  const int V = L * L;
  memset(a, 0, (size_t)V * V * sizeof *a);
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++) {
      const int x = i * L + j;
      const int nb[4] = {((i + 1) % L) * L + j, ((i + L - 1) % L) * L + j, i * L + (j + 1) % L,
                         i * L + (j + L - 1) % L};
      a[x * V + x] += hopping ? 1 : 4 + c;
      for (int k = 0; k < 4; k++) a[x * V + nb[k]] -= hopping ? c : 1;
    }
}

static void test_free_exact(void **state) {
  (void)state;
  /* chi = sum_x G(x) = 1 / (2 m2), and G~ is the DFT of G */
  static const int Ls[5] = {2, 3, 4, 8, 16};
  static const double m2s[3] = {0.05, 0.3, 2.7};
  double g[256], gp[256];
  for (int il = 0; il < 5; il++) {
    const int L = Ls[il], V = L * L;
    tf_lat_fft *f = NULL;
    assert_int_equal(tf_lat_fft_create(L, &f), TF_OK);
    assert_int_equal(tf_lat_fft_L(f), L);
    for (int im = 0; im < 3; im++) {
      const double m2 = m2s[im];
      assert_int_equal(tf_lat_free_g(f, m2, g), TF_OK);
      assert_int_equal(tf_lat_free_gp(L, m2, gp), TF_OK);
      double sum = 0;
      for (int s = 0; s < V; s++) sum += g[s];
      assert_true(fabs(sum - tf_lat_free_chi(m2)) < 1e-12 * tf_lat_free_chi(m2));
      assert_true(fabs(gp[0] - tf_lat_free_chi(m2)) < 1e-15);
      for (int a = 0; a < L; a++)
        for (int b = 0; b < L; b++) {
          double re = 0, im_ = 0;
          for (int i = 0; i < L; i++)
            for (int j = 0; j < L; j++) {
              const double ph = -2 * PI * (double)(a * i + b * j) / L;
              re += cos(ph) * g[i * L + j];
              im_ += sin(ph) * g[i * L + j];
            }
          assert_true(fabs(re - gp[a * L + b]) < 1e-12 && fabs(im_) < 1e-12);
        }
    }
    tf_lat_fft_destroy(f);
  }
  assert_true(isnan(tf_lat_free_chi(0)));

  /* G against (1/2) A^-1 and log Z against the determinant, L = 4 (dense 16 x 16) */
  const int L = 4, V = 16;
  double a[256], inv[256];
  tf_lat_fft *f = NULL;
  assert_int_equal(tf_lat_fft_create(L, &f), TF_OK);
  const double m2 = 0.37;
  quad_matrix(0, L, m2, a);
  invert(V, a, inv);
  assert_int_equal(tf_lat_free_g(f, m2, g), TF_OK);
  for (int x = 0; x < V; x++)
    for (int y = 0; y < V; y++) {
      const int dx = ((y / L - x / L + L) % L) * L + (y % L - x % L + L) % L;
      assert_true(fabs(0.5 * inv[x * V + y] - g[dx]) < 1e-12);
    }
  quad_matrix(0, L, m2, a);
  const double lz_ref = 0.5 * V * log(PI) - 0.5 * chol_logdet(V, a);
  double lz;
  assert_int_equal(tf_lat_free_log_z(L, m2, &lz), TF_OK);
  assert_true(fabs(lz - lz_ref) < 1e-12 * fabs(lz_ref));
  /* the modules' log Z: mass form directly, hopping form (lambda = 0) by its own matrix */
  tf_physics *pm = make("phi4_mass", L, 0), *ph = make("phi4", L, 0);
  assert_int_equal(tf_physics_log_z(pm, m2, &lz), TF_OK);
  assert_true(fabs(lz - lz_ref) < 1e-12 * fabs(lz_ref));
  const double kappa = 0.2113;
  quad_matrix(1, L, kappa, a);
  const double lzh_ref = 0.5 * V * log(PI) - 0.5 * chol_logdet(V, a);
  assert_int_equal(tf_physics_log_z(ph, kappa, &lz), TF_OK);
  print_message("free log Z (L = 4): mass form %.15g, hopping form %.15g (dense: %.15g)\n",
                lz_ref, lz, lzh_ref);
  assert_true(fabs(lz - lzh_ref) < 1e-12 * fabs(lzh_ref));
  assert_int_equal(tf_physics_has_sampler(pm, m2), 1);
  assert_int_equal(tf_physics_has_sampler(ph, kappa), 1);
  tf_physics_destroy(pm);
  tf_physics_destroy(ph);
  /* interacting: no exact sampler, no log Z */
  tf_physics *pi = make("phi4", L, 0.02);
  assert_int_equal(tf_physics_has_sampler(pi, 0.25), 0);
  assert_int_equal(tf_physics_log_z(pi, 0.25, &lz), TF_EUNSUP);
  assert_non_null(strstr(tf_errmsg(), "lambda"));
  double xx[16];
  tf_rng r;
  tf_rng_init(&r, 1, 0, TF_RNG_TEST, 0);
  assert_int_equal(tf_physics_sample(pi, 0.25, 1, &r, xx), TF_EUNSUP);
  tf_physics_destroy(pi);
  tf_lat_fft_destroy(f);
}

/* ---- free field: the exact sampler ---------------------------------------------------------- */

/* per configuration: c(x) = (1/V) sum_y phi_y phi_{y+x}, directly */
static void corr_direct(int L, const double *phi, double *c) {
  const int V = L * L;
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++) {
      double s = 0;
      for (int yi = 0; yi < L; yi++)
        for (int yj = 0; yj < L; yj++)
          s += phi[yi * L + yj] * phi[((yi + i) % L) * L + (yj + j) % L];
      c[i * L + j] = s / V;
    }
}

static void test_free_sampler(void **state) {
  (void)state;
  const int L = 8, V = 64, n = 20000;
  const double m2 = 0.3;
  tf_lat_fft *f = NULL;
  assert_int_equal(tf_lat_fft_create(L, &f), TF_OK);
  double *x = malloc((size_t)n * V * sizeof *x), *cx = malloc((size_t)n * V * sizeof *cx);
  double *chi = malloc((size_t)n * sizeof *chi);
  tf_rng r;
  tf_rng_init(&r, 12, 0, TF_RNG_TEST, 3);
  assert_int_equal(tf_lat_free_sample(f, m2, n, &r, x), TF_OK);
  double g[64], gp[64], gpe[64], gpx[64];
  assert_int_equal(tf_lat_free_g(f, m2, g), TF_OK);
  assert_int_equal(tf_lat_free_gp(L, m2, gpx), TF_OK);
  for (int i = 0; i < n; i++) {
    corr_direct(L, x + i * V, cx + i * V);
    double m = 0;
    for (int s = 0; s < V; s++) m += x[i * V + s];
    chi[i] = m * m / V; /* V m^2 */
  }
  double worst = 0;
  for (int s = 0; s < V; s++) {
    double mean, se;
    tf_stats_mean_se(n, cx + s, V, &mean, &se);
    const double z = (mean - g[s]) / se;
    worst = fmax(worst, fabs(z));
    assert_true(fabs(z) < 4);
  }
  double mchi, sechi;
  tf_stats_mean_se(n, chi, 1, &mchi, &sechi);
  print_message("free sampler L = 8, m2 = 0.3, %d samples: G(x) worst %.2f sd; chi = V<m^2> = "
                "%.4f +- %.4f (exact %.4f)\n", n, worst, mchi, sechi, tf_lat_free_chi(m2));
  assert_true(fabs(mchi - tf_lat_free_chi(m2)) < 4 * sechi);
  /* momentum space: G~(p) = 1 / (2 lambda_p) */
  assert_int_equal(tf_lat_two_point_p(f, n, V, x, gp, gpe), TF_OK);
  worst = 0;
  for (int q = 0; q < V; q++) {
    const double z = (gp[q] - gpx[q]) / gpe[q];
    worst = fmax(worst, fabs(z));
    assert_true(fabs(z) < 4);
    /* |phi~(p)|^2 / V is exponential with mean G~(p) (p != -p) or chi-square(1) scaled */
    assert_true(gpe[q] > 0.5 * gpx[q] / sqrt(n) && gpe[q] < 2 * gpx[q] / sqrt(n));
  }
  print_message("  G~(p) worst %.2f sd\n", worst);
  /* the analysis on independent samples: chi2, chi, <|m|>, U_L, xi, <s> all exact */
  tf_lat_meas *a = NULL;
  assert_int_equal(tf_lat_meas_create(L, n, 0, &a), TF_OK);
  double *S = chi; /* reuse: actions */
  const double cc = m2;
  tf_physics *pm = make("phi4_mass", L, 0);
  for (int i = 0; i < n; i++)
    assert_int_equal(tf_physics_log_q(pm, 1, x + i * V, &cc, S + i, NULL, NULL), TF_OK);
  for (int i = 0; i < n; i++) S[i] = -S[i];
  assert_int_equal(tf_lat_meas_add(a, n, V, x, S, NULL), TF_OK);
  tf_lat_result res;
  assert_int_equal(tf_lat_meas_result(a, &res), TF_OK);
  const double sig2 = tf_lat_free_chi(m2) / V;
  const double want_abs = sqrt(2 / PI * sig2), want_chi = V * sig2 * (1 - 2 / PI);
  print_message("  analysis: chi2 %.4f(%.4f) chi %.4f(%.4f, exact %.4f) |m| %.5f(%.5f, exact "
                "%.5f) U %.4f(%.4f) xi %.4f(%.4f, exact %.4f) s %.5f(%.5f)\n",
                res.chi2.val, res.chi2.err, res.chi.val, res.chi.err, want_chi, res.abs_m.val,
                res.abs_m.err, want_abs, res.binder.val, res.binder.err, res.xi.val, res.xi.err,
                1 / sqrt(m2), res.s.val, res.s.err);
  assert_true(fabs(res.chi2.val - tf_lat_free_chi(m2)) < 4 * res.chi2.err);
  assert_true(fabs(res.chi.val - want_chi) < 4 * res.chi.err);
  assert_true(fabs(res.abs_m.val - want_abs) < 4 * res.abs_m.err);
  assert_true(fabs(res.binder.val) < 4 * res.binder.err);
  assert_true(fabs(res.xi.val - 1 / sqrt(m2)) < 4 * res.xi.err);
  assert_true(fabs(res.s.val - 0.5) < 4 * res.s.err);
  assert_true(res.blocks_ok);
  assert_true(res.tau_abs_m.tau < 0.6 && res.ess == n);
  for (int s = 0; s < V; s++) assert_true(fabs(res.g[s] - g[s]) < 4 * res.g_err[s]);
  tf_lat_meas_destroy(a);

  /* the modules' samplers: <s> = 1/2 (equipartition), chi2 exact */
  tf_physics *ph = make("phi4", L, 0);
  const int n2 = 4000;
  const double kappa = 0.2;
  assert_int_equal(tf_physics_sample(ph, kappa, n2, &r, x), TF_OK);
  double *obs = malloc((size_t)n2 * 6 * sizeof *obs);
  double *cv = malloc((size_t)n2 * sizeof *cv);
  for (int i = 0; i < n2; i++) cv[i] = kappa;
  assert_int_equal(tf_physics_observables(ph, n2, x, cv, obs), TF_OK);
  double ms, ses, mm2, sem2;
  tf_stats_mean_se(n2, obs + 1, 6, &ms, &ses);
  tf_stats_mean_se(n2, obs + 4, 6, &mm2, &sem2);
  /* phi = psi / sqrt(kappa), psi free with m2 = (1 - 4 kappa) / kappa:
   * V <m^2> = 1 / (2 (1 - 4 kappa)) */
  print_message("  phi4 lambda = 0, kappa = 0.2: <s> %.4f(%.4f), V<m^2> %.4f(%.4f) (exact 2.5)\n",
                ms, ses, V * mm2, V * sem2);
  assert_true(fabs(ms - 0.5) < 4 * ses);
  assert_true(fabs(V * mm2 - 0.5 / (1 - 4 * kappa)) < 4 * V * sem2);
  assert_int_equal(tf_physics_sample(pm, m2, n2, &r, x), TF_OK);
  for (int i = 0; i < n2; i++) cv[i] = m2;
  assert_int_equal(tf_physics_observables(pm, n2, x, cv, obs), TF_OK);
  tf_stats_mean_se(n2, obs + 1, 6, &ms, &ses);
  assert_true(fabs(ms - 0.5) < 4 * ses);
  free(obs);
  free(cv);
  tf_physics_destroy(ph);
  tf_physics_destroy(pm);
  free(x);
  free(cx);
  free(chi);
  tf_lat_fft_destroy(f);
}

/* ---- HMC: molecular dynamics ---------------------------------------------------------------- */

static void test_hmc_md(void **state) {
  (void)state;
  const int L = 8, V = 64;
  tf_physics *p = make("phi4", L, 0.02);
  tf_rng r;
  tf_rng_init(&r, 13, 0, TF_RNG_TEST, 4);
  double phi0[64], mom0[64], phi[64], mom[64];
  double dh_mean[2][2] = {{0}};
  for (int integ = 0; integ < 2; integ++)
    for (int fa = 0; fa < 2; fa++) {
      tf_lat_hmc_config cfg = tf_lat_hmc_defaults();
      cfg.integrator = integ ? TF_LAT_OMELYAN : TF_LAT_LEAPFROG;
      cfg.fourier_accel = fa;
      cfg.n_traj = 0;
      tf_lat_hmc *h = NULL;
      assert_int_equal(tf_lat_hmc_create(p, 0.27, &cfg, &h), TF_OK);
      /* reversibility: forward, flip the momenta, forward again, flip: back at the start */
      double worst = 0, dsum = 0;
      for (int t = 0; t < 3; t++) {
        for (int s = 0; s < V; s++) phi0[s] = 1.5 * tf_rng_normal(&r), mom0[s] = tf_rng_normal(&r);
        memcpy(phi, phi0, sizeof phi);
        memcpy(mom, mom0, sizeof mom);
        double d1, d2;
        assert_int_equal(tf_lat_hmc_integrate(h, 25, 0.08, phi, mom, &d1), TF_OK);
        for (int s = 0; s < V; s++) mom[s] = -mom[s];
        assert_int_equal(tf_lat_hmc_integrate(h, 25, 0.08, phi, mom, &d2), TF_OK);
        for (int s = 0; s < V; s++)
          worst = fmax(worst, fmax(fabs(phi[s] - phi0[s]), fabs(-mom[s] - mom0[s])));
        dsum = fmax(dsum, fabs(d1 + d2));
      }
      /* dH ~ eps^2 at fixed trajectory length: halving eps divides <|dH|> by ~4 */
      double a1 = 0, a2 = 0;
      for (int t = 0; t < 8; t++) {
        for (int s = 0; s < V; s++) phi0[s] = 1.5 * tf_rng_normal(&r), mom0[s] = tf_rng_normal(&r);
        double d;
        memcpy(phi, phi0, sizeof phi);
        memcpy(mom, mom0, sizeof mom);
        assert_int_equal(tf_lat_hmc_integrate(h, 16, 1.0 / 16, phi, mom, &d), TF_OK);
        a1 += fabs(d) / 8;
        memcpy(phi, phi0, sizeof phi);
        memcpy(mom, mom0, sizeof mom);
        assert_int_equal(tf_lat_hmc_integrate(h, 32, 1.0 / 32, phi, mom, &d), TF_OK);
        a2 += fabs(d) / 8;
      }
      dh_mean[integ][fa] = a1;
      print_message("MD %s%s: reversibility %.1e (dH sum %.1e); <|dH|> eps = 1/16: %.3e, 1/32: "
                    "%.3e, ratio %.2f\n", integ ? "Omelyan" : "leapfrog", fa ? " + FA" : "",
                    worst, dsum, a1, a2, a1 / a2);
      assert_true(worst < 1e-10);
      assert_true(dsum < 1e-9);
      assert_true(a1 / a2 > 3.2 && a1 / a2 < 4.8);
      tf_lat_hmc_destroy(h);
    }
  /* the minimum-norm scheme: much smaller errors at equal eps */
  assert_true(dh_mean[1][0] < 0.3 * dh_mean[0][0]);
  assert_true(dh_mean[1][1] < 0.3 * dh_mean[0][1]);
  tf_physics_destroy(p);
}

/* ---- HMC on the free field ------------------------------------------------------------------ */

static void test_hmc_free(void **state) {
  (void)state;
  const int L = 8, V = 64, n = 30000;
  const double m2 = 0.25;
  tf_physics *p = make("phi4_mass", L, 0);
  tf_lat_fft *f = NULL;
  assert_int_equal(tf_lat_fft_create(L, &f), TF_OK);
  double g[64];
  assert_int_equal(tf_lat_free_g(f, m2, g), TF_OK);
  const double chi2 = tf_lat_free_chi(m2), sig2 = chi2 / V;
  double *x = malloc((size_t)n * V * sizeof *x), *obs = malloc((size_t)n * 4 * sizeof *obs);
  double *S = malloc((size_t)n * sizeof *S);
  for (int integ = 0; integ < 2; integ++)
    for (int fa = 0; fa < 2; fa++) {
      tf_lat_hmc_config cfg = tf_lat_hmc_defaults();
      cfg.integrator = integ ? TF_LAT_OMELYAN : TF_LAT_LEAPFROG;
      cfg.fourier_accel = fa;
      cfg.n_traj = n;
      cfg.n_therm = 1000;
      tf_lat_hmc *h = NULL;
      assert_int_equal(tf_lat_hmc_create(p, m2, &cfg, &h), TF_OK);
      tf_rng r;
      tf_rng_init(&r, 14, 0, TF_RNG_MCMC, (uint32_t)(2 * integ + fa));
      tf_lat_hmc_stats st;
      assert_int_equal(tf_lat_hmc_run(h, &r, x, obs, &st), TF_OK);
      for (int t = 0; t < n; t++) S[t] = obs[t * 4 + TF_LAT_HMC_S];
      tf_lat_meas *a = NULL;
      assert_int_equal(tf_lat_meas_create(L, n, 50, &a), TF_OK);
      assert_int_equal(tf_lat_meas_add(a, n, V, x, S, NULL), TF_OK);
      tf_lat_result res;
      assert_int_equal(tf_lat_meas_result(a, &res), TF_OK);
      double worst = 0;
      for (int s = 0; s < V; s++) worst = fmax(worst, fabs(res.g[s] - g[s]) / res.g_err[s]);
      print_message("HMC free field %s%s: accept %.3f, n_md %d, <exp(-dH)> %.4f(%.4f), tau |m| "
                    "%.2f, tau s %.2f; chi2 %.4f(%.4f) (exact %.4f), G(x) worst %.2f sd, chi "
                    "%.4f(%.4f), xi %.3f(%.3f), s %.4f(%.4f)\n",
                    integ ? "Omelyan" : "leapfrog", fa ? " + FA" : "", st.accept, st.n_md,
                    st.exp_mdh, st.exp_mdh_err, st.tau_abs_m.tau, st.tau_s.tau, res.chi2.val,
                    res.chi2.err, chi2, worst, res.chi.val, res.chi.err, res.xi.val, res.xi.err,
                    res.s.val, res.s.err);
      /* the tuned step reaches the default target 0.8 (the step is continuous, not tau / n) */
      assert_true(st.accept > 0.75 && st.accept < 0.85);
      assert_true(fabs(st.exp_mdh - 1) < 4 * st.exp_mdh_err + 1e-12);
      assert_true(res.blocks_ok);
      assert_true(worst < 4.5); /* the largest of 64 correlated |z|: see the file comment */
      assert_true(fabs(res.chi2.val - chi2) < 4 * res.chi2.err);
      assert_true(fabs(res.chi.val - V * sig2 * (1 - 2 / PI)) < 4 * res.chi.err);
      assert_true(fabs(res.abs_m.val - sqrt(2 / PI * sig2)) < 4 * res.abs_m.err);
      assert_true(fabs(res.binder.val) < 4 * res.binder.err);
      assert_true(fabs(res.xi.val - 1 / sqrt(m2)) < 4 * res.xi.err);
      assert_true(fabs(res.s.val - 0.5) < 4 * res.s.err);
      tf_lat_meas_destroy(a);
      tf_lat_hmc_destroy(h);
    }
  free(x);
  free(obs);
  free(S);
  tf_lat_fft_destroy(f);
  tf_physics_destroy(p);
}

/* ---- HMC on interacting phi^4 against single-site Metropolis -------------------------------- */

/* Metropolis sweeps of the hopping-form action, written independently of phi4.c: the local
 * action of site x is -2 kappa phi_x (sum of its 4 neighbours) + (1 - 2 lambda) phi_x^2 +
 * lambda phi_x^4. */
static void metropolis_sweep(int L, double kappa, double lambda, double delta, double *phi,
                             tf_rng *r, int64_t *acc) {
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++) {
      const double nb = phi[((i + 1) % L) * L + j] + phi[((i + L - 1) % L) * L + j] +
                        phi[i * L + (j + 1) % L] + phi[i * L + (j + L - 1) % L];
      const double f = phi[i * L + j], g = f + delta * (2 * tf_rng_uniform(r) - 1);
      const double ds = -2 * kappa * (g - f) * nb + (1 - 2 * lambda) * (g * g - f * f) +
                        lambda * (g * g * g * g - f * f * f * f);
      if (ds <= 0 || tf_rng_uniform(r) < exp(-ds)) {
        phi[i * L + j] = g;
        (*acc)++;
      }
    }
}

static tf_lat_result measure_chain(tf_lat_meas **a, int L, int64_t n, const double *x,
                                   const double *S) {
  assert_int_equal(tf_lat_meas_create(L, n, 50, a), TF_OK);
  assert_int_equal(tf_lat_meas_add(*a, n, L * L, x, S, NULL), TF_OK);
  tf_lat_result res;
  assert_int_equal(tf_lat_meas_result(*a, &res), TF_OK);
  return res;
}

static void test_hmc_interacting(void **state) {
  (void)state;
  const int L = 8, V = 64;
  const double kappa = 0.25, lambda = 0.02;
  tf_physics *p = make("phi4", L, lambda);
  const int64_t n = 40000;
  double *x = malloc((size_t)n * V * sizeof *x), *obs = malloc((size_t)n * 4 * sizeof *obs);
  double *S = malloc((size_t)n * sizeof *S);
  tf_lat_result res[3];
  tf_lat_meas *a[3] = {NULL, NULL, NULL};
  for (int v = 0; v < 2; v++) {
    tf_lat_hmc_config cfg = tf_lat_hmc_defaults();
    cfg.integrator = v ? TF_LAT_OMELYAN : TF_LAT_LEAPFROG;
    cfg.fourier_accel = v;
    cfg.n_traj = n;
    tf_lat_hmc *h = NULL;
    assert_int_equal(tf_lat_hmc_create(p, kappa, &cfg, &h), TF_OK);
    tf_rng r;
    tf_rng_init(&r, 15, 0, TF_RNG_MCMC, (uint32_t)v);
    tf_lat_hmc_stats st;
    assert_int_equal(tf_lat_hmc_run(h, &r, x, obs, &st), TF_OK);
    for (int64_t t = 0; t < n; t++) S[t] = obs[t * 4 + TF_LAT_HMC_S];
    res[v] = measure_chain(&a[v], L, n, x, S);
    print_message("HMC phi4 kappa 0.25 %s: accept %.3f n_md %d, tau |m| %.2f, <exp(-dH)> "
                  "%.4f(%.4f)\n", v ? "Omelyan + FA" : "leapfrog", st.accept, st.n_md,
                  st.tau_abs_m.tau, st.exp_mdh, st.exp_mdh_err);
    assert_true(fabs(st.exp_mdh - 1) < 4 * st.exp_mdh_err + 1e-12);
    assert_true(st.accept > 0.7 && st.accept < 0.9);
    tf_lat_hmc_destroy(h);
  }
  /* single-site Metropolis, 5 x 40000 sweeps, every fifth recorded */
  tf_rng r;
  tf_rng_init(&r, 16, 0, TF_RNG_MCMC, 9);
  double phi[64] = {0};
  int64_t acc = 0;
  for (int t = 0; t < 2000; t++) metropolis_sweep(L, kappa, lambda, 1.6, phi, &r, &acc);
  acc = 0;
  for (int64_t t = 0; t < n; t++) {
    for (int k = 0; k < 5; k++) metropolis_sweep(L, kappa, lambda, 1.6, phi, &r, &acc);
    memcpy(x + t * V, phi, sizeof phi);
    S[t] = ref_action(1, L, lambda, kappa, phi);
  }
  res[2] = measure_chain(&a[2], L, n, x, S);
  print_message("Metropolis: acceptance %.3f, tau |m| %.2f (x 5 sweeps)\n",
                (double)acc / (5.0 * n * V), res[2].tau_abs_m.tau);
  static const char *const names[3] = {"HMC leapfrog", "HMC Omelyan + FA", "Metropolis"};
  for (int v = 0; v < 3; v++)
    print_message("  %-17s <m^2> %.5f(%.5f) <|m|> %.5f(%.5f) <s> %.5f(%.5f) chi %.4f(%.4f) "
                  "U %.4f(%.4f) xi %.3f(%.3f) blocks_ok %d\n",
                  names[v], res[v].m2.val, res[v].m2.err, res[v].abs_m.val, res[v].abs_m.err,
                  res[v].s.val, res[v].s.err, res[v].chi.val, res[v].chi.err, res[v].binder.val,
                  res[v].binder.err, res[v].xi.val, res[v].xi.err, res[v].blocks_ok);
  for (int v = 0; v < 3; v++) {
    assert_true(res[v].blocks_ok);
    const int w = (v + 1) % 3;
    assert_true(fabs(zscore(res[v].m2.val, res[v].m2.err, res[w].m2.val, res[w].m2.err)) < 4);
    assert_true(fabs(zscore(res[v].s.val, res[v].s.err, res[w].s.val, res[w].s.err)) < 4);
    assert_true(fabs(zscore(res[v].abs_m.val, res[v].abs_m.err, res[w].abs_m.val,
                            res[w].abs_m.err)) < 4);
    assert_true(fabs(zscore(res[v].chi.val, res[v].chi.err, res[w].chi.val, res[w].chi.err)) <
                4);
    assert_true(fabs(zscore(res[v].binder.val, res[v].binder.err, res[w].binder.val,
                            res[w].binder.err)) < 4);
    tf_lat_meas_destroy(a[v]);
  }
  free(x);
  free(obs);
  free(S);
  tf_physics_destroy(p);
}

/* ---- tf_physics_mcmc runs HMC for the lattice modules --------------------------------------- */

static void test_mcmc_hook(void **state) {
  (void)state;
  tf_physics *p = make("phi4_mass", 8, 0);
  tf_mcmc_config cfg = tf_mcmc_defaults();
  cfg.chains = 4;
  cfg.n_per_chain = 5000;
  cfg.burn_in = 500;
  cfg.thin = 2;
  cfg.target_accept = 0.8;
  const int64_t N = cfg.chains * cfg.n_per_chain;
  const int V = 64;
  double *x = malloc((size_t)N * V * sizeof *x), *x2 = malloc((size_t)N * V * sizeof *x2);
  double *obs = malloc((size_t)N * 6 * sizeof *obs), *cv = malloc((size_t)N * sizeof *cv);
  tf_rng r;
  tf_rng_init(&r, 17, 0, TF_RNG_MCMC, 0);
  tf_mcmc_stats st, st2;
  const double m2 = 0.5;
  assert_int_equal(tf_physics_mcmc(p, m2, &cfg, NULL, &r, x, &st), TF_OK);
  for (int64_t i = 0; i < N; i++) cv[i] = m2;
  assert_int_equal(tf_physics_observables(p, N, x, cv, obs), TF_OK);
  /* <s> = 1/2 and V <m^2> = 1 / (2 m2), errors from tau_int of the first chain x chains */
  double ms = 0, mm2 = 0, es = 0, em2 = 0;
  for (int64_t k = 0; k < cfg.chains; k++) {
    tf_tau_result ts, tm;
    assert_int_equal(tf_stats_tau_int(cfg.n_per_chain, obs + k * cfg.n_per_chain * 6 + 1, 6, 0,
                                      &ts), TF_OK);
    assert_int_equal(tf_stats_tau_int(cfg.n_per_chain, obs + k * cfg.n_per_chain * 6 + 4, 6, 0,
                                      &tm), TF_OK);
    ms += ts.mean / cfg.chains;
    mm2 += tm.mean / cfg.chains;
    es += ts.err * ts.err / (cfg.chains * cfg.chains);
    em2 += tm.err * tm.err / (cfg.chains * cfg.chains);
  }
  print_message("tf_physics_mcmc (HMC) free field m2 = 0.5: accept %.3f step %.3f, <s> "
                "%.4f(%.4f), V<m^2> %.4f(%.4f) (exact 1)\n", st.accept, st.step, ms, sqrt(es),
                V * mm2, V * sqrt(em2));
  assert_true(st.accept > 0.6 && st.accept <= 1 && st.step > 0);
  assert_true(fabs(ms - 0.5) < 4 * sqrt(es));
  assert_true(fabs(V * mm2 - 1) < 4 * V * sqrt(em2));
  /* chains differ from each other; same seed, same chains */
  assert_true(memcmp(x, x + cfg.n_per_chain * V, V * sizeof *x) != 0);
  tf_rng_init(&r, 17, 0, TF_RNG_MCMC, 0);
  assert_int_equal(tf_physics_mcmc(p, m2, &cfg, NULL, &r, x2, &st2), TF_OK);
  assert_memory_equal(x, x2, (size_t)N * V * sizeof *x);
  assert_true(st.accept == st2.accept && st.step == st2.step);
  /* explicit starts; a start with NaN is refused as MALA refuses it */
  cfg.n_per_chain = 3;
  cfg.chains = 2;
  cfg.burn_in = 0;
  cfg.step0 = 0.25;
  assert_int_equal(tf_physics_mcmc(p, m2, &cfg, x, &r, x2, &st2), TF_OK);
  assert_true(st2.step == 0.25);
  x[3] = NAN;
  assert_int_equal(tf_physics_mcmc(p, m2, &cfg, x, &r, x2, NULL), TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "chain 0"));
  free(x);
  free(x2);
  free(obs);
  free(cv);
  tf_physics_destroy(p);
}

/* ---- the analysis on small hand-checked sets ------------------------------------------------ */

typedef struct {
  double m, am, m2, m4, s, chi, chi2, binder, xi, xi_c;
  double g[16], gp[16], ct[4], meff[4], gc[16], ctc[4], meffc[4];
} ref_obs;

/* Everything from definitions, weights w (NULL: 1), directly in position space. */
static void ref_analysis(int L, int n, const double *x, const double *S, const double *w,
                         ref_obs *o) {
  const int V = L * L;
  memset(o, 0, sizeof *o);
  double W = 0, c[16];
  for (int i = 0; i < n; i++) {
    const double wi = w ? w[i] : 1;
    double m = 0;
    for (int s = 0; s < V; s++) m += x[i * V + s];
    m /= V;
    W += wi;
    o->m += wi * m;
    o->am += wi * fabs(m);
    o->m2 += wi * m * m;
    o->m4 += wi * m * m * m * m;
    o->s += wi * S[i] / V;
    corr_direct(L, x + i * V, c);
    for (int s = 0; s < V; s++) o->g[s] += wi * c[s];
  }
  o->m /= W, o->am /= W, o->m2 /= W, o->m4 /= W, o->s /= W;
  for (int s = 0; s < V; s++) o->g[s] /= W, o->gc[s] = o->g[s] - o->am * o->am;
  o->chi = V * (o->m2 - o->am * o->am);
  o->chi2 = V * o->m2;
  o->binder = 1 - o->m4 / (3 * o->m2 * o->m2);
  for (int a = 0; a < L; a++)
    for (int b = 0; b < L; b++) {
      double re = 0;
      for (int i = 0; i < L; i++)
        for (int j = 0; j < L; j++)
          re += cos(2 * PI * (double)(a * i + b * j) / L) * o->g[i * L + j];
      o->gp[a * L + b] = re;
    }
  const double g1 = 0.5 * (o->gp[1] + o->gp[L]), sp = 2 * sin(PI / L);
  o->xi = sqrt(o->gp[0] / g1 - 1) / sp;
  o->xi_c = o->gp[0] - V * o->am * o->am >= g1 ? sqrt((o->gp[0] - V * o->am * o->am) / g1 - 1) / sp
                                               : NAN;
  for (int t = 0; t < L; t++)
    for (int j = 0; j < L; j++) {
      o->ct[t] += 0.5 * (o->g[t * L + j] + o->g[j * L + t]);
      o->ctc[t] += 0.5 * (o->gc[t * L + j] + o->gc[j * L + t]);
    }
  for (int t = 0; t < L; t++) {
    const double a1 = (o->ct[(t + L - 1) % L] + o->ct[(t + 1) % L]) / (2 * o->ct[t]);
    const double a2 = (o->ctc[(t + L - 1) % L] + o->ctc[(t + 1) % L]) / (2 * o->ctc[t]);
    o->meff[t] = o->ct[t] > 0 && a1 >= 1 ? acosh(a1) : NAN;
    o->meffc[t] = o->ctc[t] > 0 && a2 >= 1 ? acosh(a2) : NAN;
  }
}

static void close_to(double got, double want, double tol) {
  if (isnan(want)) {
    assert_true(isnan(got));
    return;
  }
  if (!(fabs(got - want) <= tol * (1 + fabs(want))))
    print_error("got %.17g want %.17g\n", got, want);
  assert_true(fabs(got - want) <= tol * (1 + fabs(want)));
}

static void check_result(const tf_lat_result *r, const ref_obs *o, int L) {
  const double tol = 1e-12;
  close_to(r->m.val, o->m, tol);
  close_to(r->abs_m.val, o->am, tol);
  close_to(r->m2.val, o->m2, tol);
  close_to(r->m4.val, o->m4, tol);
  close_to(r->s.val, o->s, tol);
  close_to(r->chi.val, o->chi, tol);
  close_to(r->chi2.val, o->chi2, tol);
  close_to(r->binder.val, o->binder, tol);
  close_to(r->xi.val, o->xi, 1e-10);
  close_to(r->xi_c.val, o->xi_c, 1e-10);
  for (int s = 0; s < L * L; s++) {
    close_to(r->g[s], o->g[s], tol);
    close_to(r->gp[s], o->gp[s], tol);
    close_to(r->gc[s], o->gc[s], tol);
  }
  for (int t = 0; t < L; t++) {
    close_to(r->ct[t], o->ct[t], tol);
    close_to(r->ctc[t], o->ctc[t], tol);
    close_to(r->meff[t], o->meff[t], 1e-9);
    close_to(r->meffc[t], o->meffc[t], 1e-9);
  }
}

static void test_measure_small(void **state) {
  (void)state;
  tf_rng r;
  tf_rng_init(&r, 18, 0, TF_RNG_TEST, 5);
  for (int L = 2; L <= 4; L++) { /* odd L exercises the half-grid mirror */
    const int V = L * L, n = 7;
    double x[7 * 16], S[7], x2[14 * 16], S2[14];
    /* correlated, high-entropy fields: a common offset per configuration plus noise */
    for (int i = 0; i < n; i++) {
      const double off = 0.9 * tf_rng_normal(&r);
      for (int s = 0; s < V; s++)
        x[i * V + s] = off + 0.6 * tf_rng_normal(&r) + 0.2 * cos(2 * PI * (s / L) / L);
      S[i] = 3.7 * tf_rng_normal(&r);
    }
    ref_obs o;
    ref_analysis(L, n, x, S, NULL, &o);
    tf_lat_meas *a = NULL;
    assert_int_equal(tf_lat_meas_create(L, n, n, &a), TF_OK);
    /* in two calls */
    assert_int_equal(tf_lat_meas_add(a, 3, V, x, S, NULL), TF_OK);
    assert_int_equal(tf_lat_meas_add(a, n - 3, V, x + 3 * V, S + 3, NULL), TF_OK);
    tf_lat_result res;
    assert_int_equal(tf_lat_meas_result(a, &res), TF_OK);
    check_result(&res, &o, L);
    assert_int_equal(res.n, n);
    assert_int_equal(res.n_blocks, n);
    assert_int_equal(res.L, L);
    assert_true(res.ess == n);
    /* delete-1 jackknife of a mean is the standard error */
    double am[7], mean, se;
    for (int i = 0; i < n; i++) {
      double m = 0;
      for (int s = 0; s < V; s++) m += x[i * V + s];
      am[i] = fabs(m / V);
    }
    tf_stats_mean_se(n, am, 1, &mean, &se);
    close_to(res.abs_m.err, se, 1e-12);
    tf_stats_mean_se(n, S, 1, &mean, &se);
    close_to(res.s.err, se / V, 1e-12);
    double cx[7 * 16];
    for (int i = 0; i < n; i++) corr_direct(L, x + i * V, cx + i * V);
    for (int s = 0; s < V; s++) {
      tf_stats_mean_se(n, cx + s, V, &mean, &se);
      close_to(res.g_err[s], se, 1e-10);
    }
    /* the second call gives the same (the accumulator's state is not consumed) */
    tf_lat_result res2;
    assert_int_equal(tf_lat_meas_result(a, &res2), TF_OK);
    assert_true(res2.chi.val == res.chi.val && res2.g[0] == res.g[0]);
    tf_lat_meas_destroy(a);

    /* weights: integer weights equal duplicated configurations; a huge common offset of the
     * log-weights (rising, so the accumulator rescales) changes nothing */
    double w[7], lw[7];
    int m = 0;
    for (int i = 0; i < n; i++) {
      w[i] = 1 + i % 3;
      lw[i] = log(w[i]) + 650;
      for (int k = 0; k < (int)w[i]; k++) {
        memcpy(x2 + m * V, x + i * V, (size_t)V * sizeof *x);
        S2[m++] = S[i];
      }
    }
    assert_int_equal(m, 13);
    ref_obs ow, od;
    ref_analysis(L, n, x, S, w, &ow);
    ref_analysis(L, m, x2, S2, NULL, &od);
    close_to(ow.chi, od.chi, 1e-12);
    assert_int_equal(tf_lat_meas_create(L, n, 0, &a), TF_OK);
    for (int i = 0; i < n; i++)
      assert_int_equal(tf_lat_meas_add(a, 1, V, x + i * V, S + i, lw + i), TF_OK);
    assert_int_equal(tf_lat_meas_result(a, &res), TF_OK);
    check_result(&res, &ow, L);
    double sw = 0, sw2 = 0;
    for (int i = 0; i < n; i++) sw += w[i], sw2 += w[i] * w[i];
    close_to(res.ess, sw * sw / sw2, 1e-12);
    tf_lat_meas_destroy(a);
    /* a weight of 0 (log w = -inf) drops the configuration */
    lw[2] = -INFINITY;
    w[2] = 0;
    ref_analysis(L, n, x, S, w, &ow);
    assert_int_equal(tf_lat_meas_create(L, n, 0, &a), TF_OK);
    assert_int_equal(tf_lat_meas_add(a, n, V, x, S, lw), TF_OK);
    assert_int_equal(tf_lat_meas_result(a, &res), TF_OK);
    check_result(&res, &ow, L);
    tf_lat_meas_destroy(a);
  }

  /* blocks: 10 configurations in 3 blocks of sizes 4, 3, 3 (block floor(3 k / 10)); the
   * jackknife of a mean over unequal blocks, by hand */
  {
    const int L = 2, V = 4, n = 10;
    double x[40], S[10];
    for (int i = 0; i < n; i++) {
      for (int s = 0; s < V; s++) x[i * V + s] = 0.1 * i + 0.01 * s;
      S[i] = i * i;
    }
    tf_lat_meas *a = NULL;
    assert_int_equal(tf_lat_meas_create(L, n, 3, &a), TF_OK);
    assert_int_equal(tf_lat_meas_add(a, n, V, x, S, NULL), TF_OK);
    tf_lat_result res;
    assert_int_equal(tf_lat_meas_result(a, &res), TF_OK);
    const int start[4] = {0, 4, 7, 10};
    double tot = 0, th[3], mean = 0, ss = 0;
    for (int i = 0; i < n; i++) tot += S[i];
    for (int b = 0; b < 3; b++) {
      double sb = 0;
      for (int i = start[b]; i < start[b + 1]; i++) sb += S[i];
      th[b] = (tot - sb) / (n - (start[b + 1] - start[b])) / V;
      mean += th[b] / 3;
    }
    for (int b = 0; b < 3; b++) ss += (th[b] - mean) * (th[b] - mean);
    close_to(res.s.val, tot / n / V, 1e-14);
    close_to(res.s.err, sqrt(2.0 / 3.0 * ss), 1e-12);
    tf_lat_meas_destroy(a);
  }
}

/* ---- errors --------------------------------------------------------------------------------- */

static void expect(int rc, int want, const char *needle) {
  if (rc != want || (needle && !strstr(tf_errmsg(), needle)))
    print_error("rc %s (want %s), message '%s' (want '%s')\n", tf_strstatus(rc),
                tf_strstatus(want), tf_errmsg(), needle ? needle : "");
  assert_int_equal(rc, want);
  if (needle) assert_non_null(strstr(tf_errmsg(), needle));
}

static void test_errors(void **state) {
  (void)state;
  int sentinel; /* outputs must be reset to NULL on failure */
  tf_lat_fft *f = (tf_lat_fft *)&sentinel;
  expect(tf_lat_fft_create(1, &f), TF_EINVAL, "L = 1");
  assert_null(f);
  expect(tf_lat_fft_create(4, NULL), TF_EINVAL, NULL);
  tf_lat_fft_destroy(NULL);
  assert_int_equal(tf_lat_fft_create(4, &f), TF_OK);
  double x[2 * 16] = {0}, g[16], lz;
  tf_rng r;
  tf_rng_init(&r, 19, 0, TF_RNG_TEST, 6);
  expect(tf_lat_free_sample(f, 0, 1, &r, x), TF_ERANGE, "m2 = 0");
  expect(tf_lat_free_sample(f, NAN, 1, &r, x), TF_ERANGE, "m2 = nan");
  expect(tf_lat_free_sample(f, 1, -1, &r, x), TF_EINVAL, "n = -1");
  expect(tf_lat_free_g(f, -0.5, g), TF_ERANGE, "m2 = -0.5");
  expect(tf_lat_free_gp(4, INFINITY, g), TF_ERANGE, "m2 = inf");
  expect(tf_lat_free_log_z(1, 1, &lz), TF_EINVAL, "L = 1");
  expect(tf_lat_two_point_p(f, 1, 25, x, g, NULL), TF_EINVAL, "25");
  expect(tf_lat_two_point_p(f, 0, 16, x, g, NULL), TF_EINVAL, "n = 0");
  x[21] = NAN;
  expect(tf_lat_two_point_p(f, 2, 16, x, g, NULL), TF_ENUMERIC, "configuration 1, site 5");
  x[21] = 0;
  tf_lat_fft_destroy(f);

  /* analysis */
  tf_lat_meas *a = (tf_lat_meas *)&sentinel;
  expect(tf_lat_meas_create(4, 1, 0, &a), TF_EINVAL, "n_total = 1");
  assert_null(a);
  expect(tf_lat_meas_create(1, 10, 0, &a), TF_EINVAL, "L = 1");
  expect(tf_lat_meas_create(4, 10, 11, &a), TF_EINVAL, "n_blocks = 11");
  expect(tf_lat_meas_create(4, 10, 1, &a), TF_EINVAL, "n_blocks = 1");
  tf_lat_meas_destroy(NULL);
  assert_int_equal(tf_lat_meas_create(4, 2, 0, &a), TF_OK);
  double S[2] = {1, 2}, lw[2] = {0, 0};
  expect(tf_lat_meas_add(a, 2, 9, x, S, NULL), TF_EINVAL, "L = 4");
  assert_non_null(strstr(tf_errmsg(), "9 values"));
  expect(tf_lat_meas_add(a, 3, 16, x, S, NULL), TF_EINVAL, "n_total = 2");
  x[17] = NAN;
  expect(tf_lat_meas_add(a, 2, 16, x, S, NULL), TF_ENUMERIC, "configuration 1");
  assert_non_null(strstr(tf_errmsg(), "site 1"));
  x[17] = 0;
  S[1] = INFINITY;
  expect(tf_lat_meas_add(a, 2, 16, x, S, NULL), TF_ENUMERIC, "action of configuration 1");
  S[1] = 2;
  lw[0] = NAN;
  expect(tf_lat_meas_add(a, 2, 16, x, S, lw), TF_ENUMERIC, "log-weight of configuration 0");
  lw[0] = INFINITY;
  expect(tf_lat_meas_add(a, 2, 16, x, S, lw), TF_ENUMERIC, "log-weight");
  lw[0] = 0;
  /* nothing was added by the failed calls */
  expect(tf_lat_meas_result(a, NULL), TF_EINVAL, NULL);
  tf_lat_result res;
  expect(tf_lat_meas_result(a, &res), TF_EINVAL, "0 of n_total = 2");
  assert_int_equal(tf_lat_meas_add(a, 1, 16, x, S, NULL), TF_OK);
  expect(tf_lat_meas_add(a, 1, 16, x + 16, NULL, NULL), TF_EINVAL, "actions missing");
  expect(tf_lat_meas_add(a, 1, 16, x + 16, S + 1, lw), TF_EINVAL, "log-weights given");
  expect(tf_lat_meas_result(a, &res), TF_EINVAL, "1 of n_total = 2");
  for (int s = 0; s < 32; s++) x[s] = 0.1 * s;
  assert_int_equal(tf_lat_meas_add(a, 1, 16, x + 16, S + 1, NULL), TF_OK);
  assert_int_equal(tf_lat_meas_result(a, &res), TF_OK);
  expect(tf_lat_meas_add(a, 1, 16, x, S, NULL), TF_EINVAL, "0 of n_total = 2 remain");
  tf_lat_meas_destroy(a);
  /* every weight 0 */
  assert_int_equal(tf_lat_meas_create(4, 2, 0, &a), TF_OK);
  lw[0] = lw[1] = -INFINITY;
  assert_int_equal(tf_lat_meas_add(a, 2, 16, x, NULL, lw), TF_OK);
  expect(tf_lat_meas_result(a, &res), TF_ENUMERIC, "every importance weight is 0");
  tf_lat_meas_destroy(a);

  /* HMC */
  tf_physics *dw = NULL;
  assert_int_equal(tf_physics_create("double_well", 0, NULL, &dw), TF_OK);
  tf_lat_hmc_config cfg = tf_lat_hmc_defaults();
  tf_lat_hmc *h = (tf_lat_hmc *)&sentinel;
  expect(tf_lat_hmc_create(dw, 1.0, &cfg, &h), TF_EUNSUP, "double_well");
  assert_null(h);
  tf_physics_destroy(dw);
  tf_physics *p = make("phi4", 4, 0.02);
  expect(tf_lat_hmc_create(p, 20, &cfg, &h), TF_ERANGE, "kappa");
  tf_lat_hmc_config bad = cfg;
  bad.tau = 0;
  expect(tf_lat_hmc_create(p, 0.25, &bad, &h), TF_EINVAL, "tau");
  bad = cfg;
  bad.target_accept = 1.2;
  expect(tf_lat_hmc_create(p, 0.25, &bad, &h), TF_EINVAL, "target_accept");
  bad = cfg;
  bad.n_md = 0;
  expect(tf_lat_hmc_create(p, 0.25, &bad, &h), TF_EINVAL, "n_md");
  bad = cfg;
  bad.meas_every = 0;
  expect(tf_lat_hmc_create(p, 0.25, &bad, &h), TF_EINVAL, "meas_every");
  bad = cfg;
  bad.fa_mass = -1;
  expect(tf_lat_hmc_create(p, 0.25, &bad, &h), TF_EINVAL, "fa_mass");
  bad = cfg;
  bad.integrator = (tf_lat_integrator)7;
  expect(tf_lat_hmc_create(p, 0.25, &bad, &h), TF_EINVAL, "integrator");
  tf_lat_hmc_destroy(NULL);
  cfg.n_traj = 1;
  cfg.n_therm = 5;
  assert_int_equal(tf_lat_hmc_create(p, 0.25, &cfg, &h), TF_OK);
  tf_lat_hmc_stats st;
  expect(tf_lat_hmc_stats_get(h, &st), TF_EINVAL, "0 trajectories");
  assert_int_equal(tf_lat_hmc_run(h, &r, NULL, NULL, &st), TF_OK);
  assert_int_equal(st.n_traj, 1);
  expect(tf_lat_hmc_stats_get(h, &st), TF_EINVAL, "1 trajectories");
  x[3] = NAN;
  expect(tf_lat_hmc_reset(h, x), TF_ENUMERIC, "S = nan");
  x[3] = 0;
  assert_int_equal(tf_lat_hmc_reset(h, x), TF_OK);
  assert_memory_equal(tf_lat_hmc_field(h), x, 16 * sizeof *x);
  double dh;
  int acc;
  assert_int_equal(tf_lat_hmc_trajectory(h, &r, &dh, &acc), TF_OK);
  assert_true(isfinite(dh) && (acc == 0 || acc == 1));
  expect(tf_lat_hmc_integrate(h, 0, 0.1, x, x + 16, NULL), TF_EINVAL, "n_md = 0");
  tf_lat_hmc_destroy(h);
  tf_physics_destroy(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forces),          cmocka_unit_test(test_augment),
      cmocka_unit_test(test_free_exact),      cmocka_unit_test(test_free_sampler),
      cmocka_unit_test(test_hmc_md),          cmocka_unit_test(test_hmc_free),
      cmocka_unit_test(test_hmc_interacting), cmocka_unit_test(test_mcmc_hook),
      cmocka_unit_test(test_measure_small),   cmocka_unit_test(test_errors)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
