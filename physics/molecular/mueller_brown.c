/* mueller_brown.c — the Mueller-Brown potential (Mueller & Brown, Theor. Chim. Acta 53, 1979).
 *
 * Module descriptor: tf_phys_mueller_brown.
 *
 * U_MB(x, y) = sum_{k=1..4} A_k exp(a_k (x - x0_k)^2 + b_k (x - x0_k)(y - y0_k)
 *                                   + c_k (y - y0_k)^2)
 * with A = (-200, -100, -170, 15), a = (-1, -1, -6.5, 0.7), b = (0, 0, 11, 0.6),
 * c = (-10, -10, -6.5, 0.7), x0 = (1, 0, -0.5, -1), y0 = (0, 0.5, 1.5, 1).
 * Minima of U_MB: -146.70 at (-0.558, 1.442), -108.17 at (0.623, 0.028), -80.77 at
 * (-0.050, 0.467); saddles about -40.7 and -72.2, so barriers are 10 to 100 units.
 *
 * The module's energy is U = scale * U_MB (option scale, default 0.1, so barriers are 1 to
 * 10 units and T ~ 1 is the interesting regime), and log q(x | T) = -U / T (nothing dropped).
 * scale is accepted in [1e-3, 1]: the quadrature grid resolves the wells, whose width shrinks
 * like sqrt(T / scale), and scale = 1 at T = 0.05 already needs ~3e7 points (~1 s).
 * The fourth term grows like exp(+0.4 r^2), so q is normalisable at every T > 0.  Valid T:
 * [0.05, 100]; training range [0.5, 2], T0 = 1 (for scale = 0.1: the deepest well holds ~99%
 * at T = 0.5, all three wells are populated at T = 2).  log Z(T) by the tensor-grid trapezoidal
 * rule (quad.c) on a box outside which U/T exceeds its minimum by > 46, step from the stiffest
 * curvature of U_MB (4068 at the deepest minimum).  No exact sampler: the reference is MALA.
 * Observables: energy, x, y.
 */
#include <math.h>

#include "physics-impl.h"
#include "tradeflow/error.h"

static const double A[4] = {-200, -100, -170, 15}, AA[4] = {-1, -1, -6.5, 0.7},
                    BB[4] = {0, 0, 11, 0.6}, CC[4] = {-10, -10, -6.5, 0.7},
                    X0[4] = {1, 0, -0.5, -1}, Y0[4] = {0, 0.5, 1.5, 1};
static const double U_MB_MIN = -146.6995172099540, HESS_MAX = 4068.2;

static const tf_phys_opt mb_opts[] = {{"scale", TF_PHYS_OPT_REAL, 0.1, 1e-3, 1, NULL}};

static int mb_setup(tf_physics *p) {
  p->dim = 2;
  p->raw_dim = 2;
  p->lo = 0.05;
  p->hi = 100;
  p->cmin = 0.5;
  p->cmax = 2;
  p->c0 = 1;
  return TF_OK;
}

static double u_mb(double x, double y, double *gx, double *gy) {
  double u = 0, ax = 0, ay = 0;
  for (int k = 0; k < 4; k++) {
    const double dx = x - X0[k], dy = y - Y0[k];
    const double e = A[k] * exp(AA[k] * dx * dx + BB[k] * dx * dy + CC[k] * dy * dy);
    u += e;
    ax += e * (2 * AA[k] * dx + BB[k] * dy);
    ay += e * (BB[k] * dx + 2 * CC[k] * dy);
  }
  if (gx) {
    *gx = ax;
    *gy = ay;
  }
  return u;
}

static double mb_energy(const tf_physics *p, const double *x, double *g) {
  const double s = p->opt[0];
  double gx, gy;
  const double u = u_mb(x[0], x[1], &gx, &gy);
  if (g) {
    g[0] = s * gx;
    g[1] = s * gy;
  }
  return s * u;
}

typedef struct {
  double f; /* scale / T */
} mb_ctx;

static double mb_log_integrand(double x, double y, const void *vctx) {
  const mb_ctx *c = vctx;
  return -c->f * (u_mb(x, y, NULL, NULL) - U_MB_MIN);
}

static int mb_log_z(const tf_physics *p, double T, double *log_z) {
  const double f = p->opt[0] / T;
  /* U_MB >= 15 exp(q4) - 470 with q4 >= 0.4 r^2 about (-1, 1) (smallest eigenvalue of the
   * fourth quadratic form): beyond r, f (U_MB - U_min) > 46. */
  const double need = (46 / f + 470 + U_MB_MIN) / 15;
  const double r = sqrt(log(fmax(need, 1.0)) / 0.4) + 0.5;
  const mb_ctx ctx = {f};
  const double h0 = fmin(0.1, 1 / sqrt(f * HESS_MAX)) / 1.5;
  double lz = 0;
  const int rc = tf_phys_quad_log2d(mb_log_integrand, &ctx, -1 - r, -1 + r, 1 - r, 1 + r, h0,
                                    1e-10, &lz);
  if (rc) return rc;
  *log_z = lz - f * U_MB_MIN;
  return TF_OK;
}

static const char *const mb_obs[] = {"energy", "x", "y"};

static void mb_observables(const tf_physics *p, const double *x, double u, double *obs) {
  obs[1] = x[0];
  obs[2] = x[1];
}

static void mb_start(const tf_physics *p, int64_t chain, double *x) {
  static const double minima[3][2] = {{-0.558, 1.442}, {0.623, 0.028}, {-0.050, 0.467}};
  x[0] = minima[chain % 3][0];
  x[1] = minima[chain % 3][1];
}

const tf_phys_module tf_phys_mueller_brown = {
    .name = "mueller_brown",
    .help = "mueller_brown: the standard four-term Mueller-Brown potential U_MB in 2-D, energy "
            "U = scale * U_MB, log q = -U/T (nothing dropped). Parameter T in [0.05, 100], "
            "training range [0.5, 2], T0 = 1 (for the default scale). Options: scale (real in "
            "[0.001, 1], default 0.1). Exact log Z (2-D quadrature); no exact sampler (MALA "
            "reference). "
            "Observables: energy, x, y.",
    .param = "T",
    .form = TF_PHYS_TEMPERATURE,
    .n_opts = 1,
    .opts = mb_opts,
    .setup = mb_setup,
    .energy = mb_energy,
    .log_z = mb_log_z,
    .n_obs = 3,
    .obs_names = mb_obs,
    .observables = mb_observables,
    .start = mb_start,
    .mala_step = 0.02,
};
