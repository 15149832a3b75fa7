/* quad.c — quadrature for exact log Z and the exact sampler of a quartic double well.
 *
 * Private (physics-impl.h): tf_phys_quad_log1d, tf_phys_quad_log2d, tf_phys_quartic_init,
 *   tf_phys_quartic_u, tf_phys_quartic_log_z, tf_phys_quartic_env_init, tf_phys_quartic_draw.
 *
 * Quadrature: the integrands here are exp(-E) with E smooth (entire, for the polynomial
 * wells) and negligible at the ends of the interval, so the plain trapezoidal rule converges
 * faster than any power of the step (for a Gaussian of width s the error is about
 * exp(-2 pi^2 s^2 / h^2)).  The rule is applied on nested grids, halving h, and stops when two
 * successive values agree; each level adds only the new points.  Sums are kept as
 * log-sum-exp so that exp(-E) may exceed the double range before normalisation.
 */
#include <math.h>

#include "physics-impl.h"
#include "tradeflow/error.h"

/* halvings: the 2-D grid grows 4x per level, so few levels are allowed (the caller's h0 must
 * already resolve the integrand) */
enum { MAX_LEVELS = 14, MAX_LEVELS_2D = 3 };

/* running log-sum-exp, value = m + log(s + comp), with Neumaier-compensated summation: the
 * grids have up to ~1e7 points, and plain summation would drift by ~1e-11 from level to
 * level, more than the convergence test allows */
typedef struct {
  double m, s, comp;
} lse_acc;

static void neumaier(lse_acc *a, double t) {
  const double sum = a->s + t;
  a->comp += fabs(a->s) >= fabs(t) ? (a->s - sum) + t : (t - sum) + a->s;
  a->s = sum;
}

static void lse_add(lse_acc *a, double v) {
  if (!(v > -INFINITY)) return; /* exp(-inf) = 0; NaN makes the final value NaN below */
  if (v <= a->m) {
    neumaier(a, exp(v - a->m));
  } else {
    const double f = exp(a->m - v);
    a->s *= f;
    a->comp *= f;
    a->m = v;
    neumaier(a, 1.0);
  }
}

static double lse_value(const lse_acc *a) { return a->m + log(a->s + a->comp); }

int tf_phys_quad_log1d(double (*f)(double x, const void *ctx), const void *ctx, double a,
                       double b, double h0, double rtol, double *log_int) {
  if (!(b > a) || !(h0 > 0))
    return tf_error(TF_EINVAL, "quadrature: bad interval [%g, %g] or step %g", a, b, h0);
  int64_t n = (int64_t)ceil((b - a) / h0);
  double h = (b - a) / (double)n;
  lse_acc acc = {-INFINITY, 0, 0};
  for (int64_t i = 0; i <= n; i++) lse_add(&acc, f(a + (double)i * h, ctx));
  double prev = lse_value(&acc) + log(h);
  for (int level = 1; level <= MAX_LEVELS; level++) {
    h *= 0.5;
    n *= 2;
    for (int64_t i = 1; i < n; i += 2) lse_add(&acc, f(a + (double)i * h, ctx));
    const double cur = lse_value(&acc) + log(h);
    if (!isfinite(cur))
      return tf_error(TF_ENUMERIC, "quadrature on [%g, %g]: integral is %g", a, b, cur);
    if (fabs(cur - prev) <= rtol) {
      *log_int = cur;
      return TF_OK;
    }
    prev = cur;
  }
  return tf_error(TF_ENUMERIC, "quadrature on [%g, %g]: no convergence to %g after %d halvings",
                  a, b, rtol, MAX_LEVELS);
}

int tf_phys_quad_log2d(double (*f)(double x, double y, const void *ctx), const void *ctx,
                       double ax, double bx, double ay, double by, double h0, double rtol,
                       double *log_int) {
  if (!(bx > ax) || !(by > ay) || !(h0 > 0))
    return tf_error(TF_EINVAL, "quadrature: bad box [%g, %g] x [%g, %g] or step %g", ax, bx, ay,
                    by, h0);
  int64_t nx = (int64_t)ceil((bx - ax) / h0), ny = (int64_t)ceil((by - ay) / h0);
  double hx = (bx - ax) / (double)nx, hy = (by - ay) / (double)ny;
  lse_acc acc = {-INFINITY, 0, 0};
  for (int64_t i = 0; i <= nx; i++)
    for (int64_t j = 0; j <= ny; j++)
      lse_add(&acc, f(ax + (double)i * hx, ay + (double)j * hy, ctx));
  double prev = lse_value(&acc) + log(hx * hy);
  for (int level = 1; level <= MAX_LEVELS_2D; level++) {
    hx *= 0.5;
    hy *= 0.5;
    nx *= 2;
    ny *= 2;
    /* new points: odd i (every j), then even i with odd j */
    for (int64_t i = 1; i < nx; i += 2)
      for (int64_t j = 0; j <= ny; j++)
        lse_add(&acc, f(ax + (double)i * hx, ay + (double)j * hy, ctx));
    for (int64_t i = 0; i <= nx; i += 2)
      for (int64_t j = 1; j < ny; j += 2)
        lse_add(&acc, f(ax + (double)i * hx, ay + (double)j * hy, ctx));
    const double cur = lse_value(&acc) + log(hx * hy);
    if (!isfinite(cur))
      return tf_error(TF_ENUMERIC, "quadrature on [%g, %g] x [%g, %g]: integral is %g", ax, bx,
                      ay, by, cur);
    if (fabs(cur - prev) <= rtol) {
      *log_int = cur;
      return TF_OK;
    }
    prev = cur;
  }
  return tf_error(TF_ENUMERIC,
                  "quadrature on [%g, %g] x [%g, %g]: no convergence to %g after %d halvings",
                  ax, bx, ay, by, rtol, MAX_LEVELS_2D);
}

/* ---- the quartic double well U(x) = x^4 + a x^2 + b x ------------------------------------ */

int tf_phys_quartic_init(tf_phys_quartic *q, double a, double b) {
  /* U'(x) = 4 x^3 + 2 a x + b = 0, i.e. x^3 + p x + r = 0 with p = a/2, r = b/4: three real
   * roots when 4 p^3 + 27 r^2 < 0; the outer two are the minima.  Trigonometric form, then
   * Newton to polish (the closed form loses a few digits). */
  const double p = 0.5 * a, r = 0.25 * b;
  if (!(a < 0) || !(4 * p * p * p + 27 * r * r < 0) || !isfinite(b))
    return tf_error(TF_EINVAL, "quartic x^4 + %g x^2 + %g x has no two minima", a, b);
  const double rad = 2 * sqrt(-p / 3), th = acos(3 * r / (p * rad)) / 3;
  const double pi = 3.14159265358979323846;
  double root[3];
  for (int k = 0; k < 3; k++) {
    double x = rad * cos(th - 2 * pi * k / 3);
    for (int it = 0; it < 8; it++) {
      const double g = 4 * x * x * x + 2 * a * x + b, gp = 12 * x * x + 2 * a;
      if (gp == 0) break;
      x -= g / gp;
    }
    root[k] = x;
  }
  double lo = root[0], hi = root[0];
  for (int k = 1; k < 3; k++) {
    if (root[k] < lo) lo = root[k];
    if (root[k] > hi) hi = root[k];
  }
  if (!(lo < 0 && hi > 0 && 3 * lo * lo + a > 0 && 3 * hi * hi + a > 0))
    return tf_error(TF_EINVAL, "quartic x^4 + %g x^2 + %g x: minima %g, %g not on both sides",
                    a, b, lo, hi);
  q->a = a;
  q->b = b;
  q->m[0] = lo;
  q->m[1] = hi;
  q->um[0] = tf_phys_quartic_u(q, lo);
  q->um[1] = tf_phys_quartic_u(q, hi);
  return TF_OK;
}

double tf_phys_quartic_u(const tf_phys_quartic *q, double x) {
  const double x2 = x * x;
  return x2 * (x2 + q->a) + q->b * x;
}

typedef struct {
  const tf_phys_quartic *q;
  double T, umin;
} quartic_ctx;

static double quartic_log_integrand(double x, const void *vctx) {
  const quartic_ctx *c = vctx;
  return -(tf_phys_quartic_u(c->q, x) - c->umin) / c->T;
}

int tf_phys_quartic_log_z(const tf_phys_quartic *q, double T, double *log_z) {
  const quartic_ctx ctx = {q, T, fmin(q->um[0], q->um[1])};
  /* Beyond the outer minima U grows monotonically: step out until exp(-(U - Umin)/T) is
   * below e^-60 (the neglected tails are then ~1e-26 of the total). */
  double xl = q->m[0], xr = q->m[1];
  const double step = 0.05 * (fabs(xl) + fabs(xr)) + 0.1 * pow(T, 0.25);
  while (quartic_log_integrand(xl, &ctx) > -60) xl -= step;
  while (quartic_log_integrand(xr, &ctx) > -60) xr += step;
  /* the narrowest feature: the wells' width sqrt(T / U''(m)), or T^(1/4) when T is large */
  double curv = fmax(12 * q->m[0] * q->m[0] + 2 * q->a, 12 * q->m[1] * q->m[1] + 2 * q->a);
  const double h0 = fmin(sqrt(T / curv), pow(T, 0.25)) / 1.5;
  double lz = 0;
  const int rc = tf_phys_quad_log1d(quartic_log_integrand, &ctx, xl, xr, h0, 1e-13, &lz);
  if (rc) return rc;
  *log_z = lz - ctx.umin / T;
  return TF_OK;
}

/* ---- exact sampler -------------------------------------------------------------------------- */

static double q0(const tf_phys_quartic *q, int side) {
  return 3 * q->m[side] * q->m[side] + q->a; /* x^2 + 2 m x + 3 m^2 + a at x = 0 */
}

void tf_phys_quartic_env_init(const tf_phys_quartic *q, double T, tf_phys_quartic_env *e) {
  const double umin = fmin(q->um[0], q->um[1]);
  double w[2];
  e->T = T;
  for (int k = 0; k < 2; k++) {
    /* 1 + 1e-9 keeps the bound strict against rounding in m and U */
    e->s[k] = sqrt(T / (2 * q0(q, k)) * (1 + 1e-9));
    /* envelope mass on its own half-line: exp(-(U(m) - Umin)/T) sqrt(2 pi) s Phi(|m| / s) */
    w[k] = exp(-(q->um[k] - umin) / T) * e->s[k] * 0.5 * erfc(-fabs(q->m[k]) / e->s[k] / sqrt(2.0));
  }
  e->p_pos = w[1] / (w[0] + w[1]);
}

double tf_phys_quartic_draw(const tf_phys_quartic *q, const tf_phys_quartic_env *e,
                            tf_rng *rng) {
  for (;;) {
    const int side = tf_rng_uniform(rng) < e->p_pos;
    const double m = q->m[side], s = e->s[side];
    double x, z;
    do { /* the envelope's Gaussian truncated to its half-line, by plain rejection */
      z = tf_rng_normal(rng);
      x = m + s * z;
    } while (side ? x < 0 : x >= 0);
    /* log(target / envelope) = z^2/2 - (U(x) - U(m))/T with U(x) - U(m) factored exactly */
    const double dx = x - m, qx = x * x + 2 * m * x + 3 * m * m + q->a;
    const double log_acc = 0.5 * z * z - dx * dx * qx / e->T;
    if (log(tf_rng_uniform(rng)) < log_acc) return x;
  }
}
