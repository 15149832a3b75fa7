/* fourier.c — FFTW on the periodic L x L lattice: the free field, exactly, and momentum-space
 * two-point functions (include/tradeflow/lattice.h; conventions in physics/lattice/README.md).
 *
 * Exported: tf_lat_fft_create, tf_lat_fft_destroy, tf_lat_fft_L, tf_lat_free_sample,
 *   tf_lat_free_g, tf_lat_free_gp, tf_lat_free_chi, tf_lat_free_log_z, tf_lat_two_point_p.
 * Private, shared with hmc.c and measure.c (physics-impl.h): tf_phys_fft_filter,
 *   tf_phys_fft_power, tf_phys_fft_inverse_real, tf_phys_khat2.
 *
 * One tf_lat_fft holds a real-to-complex and a complex-to-real 2-D plan (double precision,
 * FFTW_ESTIMATE: no timing measurements, so the same plan and the same bits on every run) on
 * its own buffers; every transform copies into those buffers and executes.  The copy (V
 * doubles) is cheap next to the transform and frees callers from FFTW's alignment rules.
 * The half-complex layout is FFTW's: (L, L/2 + 1), p = (a, b) at a * (L/2 + 1) + b, b <= L/2;
 * the other half follows from phi~(-p) = conj(phi~(p)) for real phi.
 */
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "physics-impl.h"
#include "tradeflow/error.h"
#include "tradeflow/lattice.h"

static const double PI = 3.14159265358979323846;

struct tf_lat_fft {
  int L, V, nh;       /* nh = L (L/2 + 1) half-complex entries */
  double *r;          /* (L, L) real buffer */
  fftw_complex *c;    /* (L, L/2 + 1) */
  double *w1, *w2;    /* (L, L/2 + 1) real scratch: multipliers, running sums */
  fftw_plan fwd, bwd; /* r -> c, c -> r (bwd destroys c) */
};

int tf_lat_fft_create(int L, tf_lat_fft **out) {
  if (!out) return tf_error(TF_EINVAL, "tf_lat_fft_create: out is NULL");
  *out = NULL;
  if (L < 2 || L > 46340) /* V = L^2 must fit an int */
    return tf_error(TF_EINVAL, "tf_lat_fft_create: L = %d (need 2 <= L <= 46340)", L);
  tf_lat_fft *f = calloc(1, sizeof *f);
  if (!f) return tf_error(TF_ENOMEM, "tf_lat_fft_create: out of memory (L = %d)", L);
  f->L = L;
  f->V = L * L;
  f->nh = L * (L / 2 + 1);
  f->r = fftw_malloc((size_t)f->V * sizeof *f->r);
  f->c = fftw_malloc((size_t)f->nh * sizeof *f->c);
  f->w1 = malloc(2 * (size_t)f->nh * sizeof *f->w1);
  if (!f->r || !f->c || !f->w1) goto nomem;
  f->w2 = f->w1 + f->nh;
  f->fwd = fftw_plan_dft_r2c_2d(L, L, f->r, f->c, FFTW_ESTIMATE);
  f->bwd = fftw_plan_dft_c2r_2d(L, L, f->c, f->r, FFTW_ESTIMATE);
  if (!f->fwd || !f->bwd) goto nomem;
  *out = f;
  return TF_OK;
nomem:
  tf_lat_fft_destroy(f);
  return tf_error(TF_ENOMEM, "tf_lat_fft_create: out of memory for the FFTW plans (L = %d)", L);
}

void tf_lat_fft_destroy(tf_lat_fft *f) {
  if (!f) return;
  if (f->fwd) fftw_destroy_plan(f->fwd);
  if (f->bwd) fftw_destroy_plan(f->bwd);
  fftw_free(f->r);
  fftw_free(f->c);
  free(f->w1);
  free(f);
}

int tf_lat_fft_L(const tf_lat_fft *f) { return f ? f->L : 0; }

/* ---- private transforms --------------------------------------------------------------------- */

double tf_phys_khat2(int L, int a, int b) {
  const double sa = sin(PI * a / L), sb = sin(PI * b / L);
  return 4 * (sa * sa + sb * sb);
}

void tf_phys_fft_filter(tf_lat_fft *f, const double *k, const double *x, double *y) {
  memcpy(f->r, x, (size_t)f->V * sizeof *x);
  fftw_execute(f->fwd);
  for (int q = 0; q < f->nh; q++) {
    f->c[q][0] *= k[q];
    f->c[q][1] *= k[q];
  }
  fftw_execute(f->bwd);
  const double inv = 1.0 / f->V;
  for (int s = 0; s < f->V; s++) y[s] = f->r[s] * inv;
}

void tf_phys_fft_power(tf_lat_fft *f, const double *x, double *pw) {
  memcpy(f->r, x, (size_t)f->V * sizeof *x);
  fftw_execute(f->fwd);
  for (int q = 0; q < f->nh; q++) pw[q] = f->c[q][0] * f->c[q][0] + f->c[q][1] * f->c[q][1];
}

void tf_phys_fft_inverse_real(tf_lat_fft *f, const double *k, double *y) {
  for (int q = 0; q < f->nh; q++) {
    f->c[q][0] = k[q];
    f->c[q][1] = 0;
  }
  fftw_execute(f->bwd);
  const double inv = 1.0 / f->V;
  for (int s = 0; s < f->V; s++) y[s] = f->r[s] * inv;
}

/* ---- free field ----------------------------------------------------------------------------- */

static int check_m2(const char *fn, double m2) {
  if (!(m2 > 0) || !isfinite(m2))
    return tf_error(TF_ERANGE, "%s: free-field mass m2 = %g (need a finite m2 > 0: the "
                    "Gaussian exp(-S) is normalisable only then)", fn, m2);
  return TF_OK;
}

int tf_lat_free_sample(tf_lat_fft *f, double m2, int64_t n, tf_rng *rng, double *x) {
  if (!f || !rng || (n > 0 && !x))
    return tf_error(TF_EINVAL, "tf_lat_free_sample: NULL argument");
  if (n < 0) return tf_error(TF_EINVAL, "tf_lat_free_sample: n = %lld < 0", (long long)n);
  int rc = check_m2("tf_lat_free_sample", m2);
  if (rc) return rc;
  const int L = f->L, V = f->V, hw = L / 2 + 1;
  double *k = f->w1; /* the multiplier (2 lambda_p)^(-1/2) on the half grid */
  for (int a = 0; a < L; a++)
    for (int b = 0; b < hw; b++) k[a * hw + b] = 1.0 / sqrt(2 * (m2 + tf_phys_khat2(L, a, b)));
  for (int64_t i = 0; i < n; i++) {
    double *xi = x + i * V;
    tf_rng_fill_normal_d(rng, f->r, V);
    fftw_execute(f->fwd);
    for (int q = 0; q < f->nh; q++) {
      f->c[q][0] *= k[q];
      f->c[q][1] *= k[q];
    }
    fftw_execute(f->bwd);
    for (int s = 0; s < V; s++) xi[s] = f->r[s] / V;
  }
  return TF_OK;
}

int tf_lat_free_gp(int L, double m2, double *gp) {
  if (!gp) return tf_error(TF_EINVAL, "tf_lat_free_gp: gp is NULL");
  if (L < 2 || L > 46340) return tf_error(TF_EINVAL, "tf_lat_free_gp: L = %d (need >= 2)", L);
  int rc = check_m2("tf_lat_free_gp", m2);
  if (rc) return rc;
  for (int a = 0; a < L; a++)
    for (int b = 0; b < L; b++) gp[a * L + b] = 0.5 / (m2 + tf_phys_khat2(L, a, b));
  return TF_OK;
}

int tf_lat_free_g(tf_lat_fft *f, double m2, double *g) {
  if (!f || !g) return tf_error(TF_EINVAL, "tf_lat_free_g: NULL argument");
  int rc = check_m2("tf_lat_free_g", m2);
  if (rc) return rc;
  const int L = f->L, hw = L / 2 + 1;
  for (int a = 0; a < L; a++)
    for (int b = 0; b < hw; b++) {
      f->c[a * hw + b][0] = 0.5 / (m2 + tf_phys_khat2(L, a, b));
      f->c[a * hw + b][1] = 0;
    }
  fftw_execute(f->bwd);
  for (int s = 0; s < f->V; s++) g[s] = f->r[s] / f->V;
  return TF_OK;
}

double tf_lat_free_chi(double m2) { return m2 > 0 ? 0.5 / m2 : NAN; }

int tf_lat_free_log_z(int L, double m2, double *log_z) {
  if (!log_z) return tf_error(TF_EINVAL, "tf_lat_free_log_z: log_z is NULL");
  if (L < 2 || L > 46340) return tf_error(TF_EINVAL, "tf_lat_free_log_z: L = %d (need >= 2)", L);
  int rc = check_m2("tf_lat_free_log_z", m2);
  if (rc) return rc;
  /* integral of exp(-phi^T A phi) = pi^(V/2) det(A)^(-1/2); A's eigenvalues are lambda_p */
  double sum = 0;
  for (int a = 0; a < L; a++)
    for (int b = 0; b < L; b++) sum += log(m2 + tf_phys_khat2(L, a, b));
  *log_z = 0.5 * (double)L * L * log(PI) - 0.5 * sum;
  return TF_OK;
}

/* ---- two-point function of configurations --------------------------------------------------- */

int tf_lat_two_point_p(tf_lat_fft *f, int64_t n, int64_t dim, const double *x, double *gp,
                       double *gp_err) {
  if (!f || !x || !gp) return tf_error(TF_EINVAL, "tf_lat_two_point_p: NULL argument");
  if (n < 1)
    return tf_error(TF_EINVAL, "tf_lat_two_point_p: n = %lld configurations (need >= 1)",
                    (long long)n);
  const int L = f->L, V = f->V, hw = L / 2 + 1;
  if (dim != V)
    return tf_error(TF_EINVAL, "tf_lat_two_point_p: configurations of %lld values, but L = %d "
                    "needs L^2 = %d", (long long)dim, L, V);
  for (int64_t i = 0; i < n * V; i++)
    if (!isfinite(x[i]))
      return tf_error(TF_ENUMERIC, "tf_lat_two_point_p: configuration %lld, site %lld is %g",
                      (long long)(i / V), (long long)(i % V), x[i]);
  /* Welford per momentum on the half grid: mean in w1, sum of squared deviations in w2. */
  const int nh = f->nh;
  double *mean = f->w1, *ss = f->w2;
  for (int q = 0; q < nh; q++) mean[q] = ss[q] = 0;
  for (int64_t i = 0; i < n; i++) {
    memcpy(f->r, x + i * V, (size_t)V * sizeof *x);
    fftw_execute(f->fwd);
    for (int q = 0; q < nh; q++) {
      const double v = (f->c[q][0] * f->c[q][0] + f->c[q][1] * f->c[q][1]) / V;
      const double d = v - mean[q];
      mean[q] += d / (double)(i + 1);
      ss[q] += d * (v - mean[q]);
    }
  }
  /* the full grid: b > L/2 from |phi~(-p)| = |phi~(p)| */
  for (int a = 0; a < L; a++)
    for (int b = 0; b < L; b++) {
      const int q = b < hw ? a * hw + b : ((L - a) % L) * hw + (L - b);
      gp[a * L + b] = mean[q];
      if (gp_err) gp_err[a * L + b] = ss[q];
    }
  if (gp_err)
    for (int s = 0; s < V; s++)
      gp_err[s] = n > 1 ? sqrt(gp_err[s] / (double)(n - 1) / (double)n) : NAN;
  return TF_OK;
}
