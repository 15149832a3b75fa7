/* gmm.c — the 2-D Gaussian mixture family GMM^beta (DESIGN.md section 5).
 *
 * Module descriptor: tf_phys_gmm.
 *
 * g(x) = (1/6) sum_k N(x; mu_k, Sigma_k), a normalised density; the module's energy is
 * U = -log g (computed by log-sum-exp in double), and
 *   log q(x | beta) = beta log g(x) = -beta U(x)      (nothing dropped)
 * so log Z(1) = 0 exactly, d/dbeta log q = log g.  Valid beta: [0.05, 20]; training range
 * [0.16, 6.2], boundary beta0 = 1.  Exact sampler only at beta = 1 (|beta - 1| <= 1e-12).
 * log Z(beta) by the trapezoidal rule on a tensor grid (quad.c) whose box holds every
 * component out to e^-40 of its peak and whose step is half the narrowest component width
 * sqrt(lambda_min / max(beta, 1)), halved until two levels agree to 1e-10 (the returned finer
 * level is then good to ~1e-12; the tests find log Z(1) = 0 to ~1e-15).  Cost: 0.1-0.5 s for
 * beta in [0.16, 20], ~6 s at beta = 0.05 (the box grows like 1/sqrt(beta) per axis).
 * Observables: energy, x, y.
 */
#include <math.h>
#include <stdlib.h>

#include "physics-impl.h"
#include "tradeflow/error.h"

enum { K = 6 };

static const double MU[K][2] = {{-1, 2}, {3, 7}, {-4, 2}, {-2, -4}, {0, 4}, {5, -2}};
static const double SIG[K][3] = {/* s_xx, s_xy, s_yy */
                                 {.2778, .4797, .8615}, {.8958, -.0249, .1001},
                                 {1.3074, .9223, .7744}, {.0305, .0142, .4409},
                                 {.0463, .0294, .3441}, {.15, .0294, 1.5}};

typedef struct {
  double prec[K][3]; /* Sigma^-1 as (p_xx, p_xy, p_yy) */
  double chol[K][3]; /* Sigma = L L^T: (l11, l21, l22) */
  double logc[K];    /* log(1/6) - log(2 pi) - 1/2 log det Sigma */
  double lam_min;    /* smallest eigenvalue over all Sigma_k */
} gmm_state;

static int gmm_setup(tf_physics *p) {
  gmm_state *s = calloc(1, sizeof *s);
  if (!s) return tf_error(TF_ENOMEM, "physics module 'gmm': out of memory");
  p->state = s;
  s->lam_min = INFINITY;
  for (int k = 0; k < K; k++) {
    const double a = SIG[k][0], b = SIG[k][1], c = SIG[k][2], det = a * c - b * b;
    s->prec[k][0] = c / det;
    s->prec[k][1] = -b / det;
    s->prec[k][2] = a / det;
    s->chol[k][0] = sqrt(a);
    s->chol[k][1] = b / sqrt(a);
    s->chol[k][2] = sqrt(c - b * b / a);
    s->logc[k] = -log((double)K) - 1.8378770664093454836 - 0.5 * log(det);
    const double tr = a + c, lmin = 0.5 * tr - sqrt(0.25 * tr * tr - det);
    if (lmin < s->lam_min) s->lam_min = lmin;
  }
  p->dim = 2;
  p->raw_dim = 2;
  p->lo = 0.05;
  p->hi = 20;
  p->cmin = 0.16;
  p->cmax = 6.2;
  p->c0 = 1;
  return TF_OK;
}

/* log g(x, y) and (optionally) its gradient */
static double log_g(const gmm_state *s, double x, double y, double *gx, double *gy) {
  double lp[K], m = -INFINITY;
  for (int k = 0; k < K; k++) {
    const double dx = x - MU[k][0], dy = y - MU[k][1];
    const double q =
        s->prec[k][0] * dx * dx + 2 * s->prec[k][1] * dx * dy + s->prec[k][2] * dy * dy;
    lp[k] = s->logc[k] - 0.5 * q;
    if (lp[k] > m) m = lp[k];
  }
  if (!isfinite(m) || isnan(x + y)) { /* non-finite input: NaN or -inf out, NaN gradient */
    if (gx) *gx = *gy = NAN;
    return isnan(x + y) ? NAN : m;
  }
  double sum = 0, ax = 0, ay = 0;
  for (int k = 0; k < K; k++) {
    const double w = exp(lp[k] - m);
    sum += w;
    if (gx) {
      const double dx = x - MU[k][0], dy = y - MU[k][1];
      ax -= w * (s->prec[k][0] * dx + s->prec[k][1] * dy);
      ay -= w * (s->prec[k][1] * dx + s->prec[k][2] * dy);
    }
  }
  if (gx) {
    *gx = ax / sum;
    *gy = ay / sum;
  }
  return m + log(sum);
}

static double gmm_energy(const tf_physics *p, const double *x, double *g) {
  double gx, gy;
  const double l = log_g(p->state, x[0], x[1], g ? &gx : NULL, &gy);
  if (g) {
    g[0] = -gx;
    g[1] = -gy;
  }
  return -l;
}

typedef struct {
  const gmm_state *s;
  double beta;
} gmm_ctx;

static double gmm_log_integrand(double x, double y, const void *vctx) {
  const gmm_ctx *c = vctx;
  return c->beta * log_g(c->s, x, y, NULL, NULL);
}

static int gmm_log_z(const tf_physics *p, double beta, double *log_z) {
  const gmm_state *s = p->state;
  /* Outside component k's box every term is below e^{-L/beta} of its peak, so g^beta is below
   * 6^beta e^-L of the largest peak: L = 40 + beta log 6 leaves e^-40 at the box edge (the
   * mass outside is ~ (1 + L) e^-L ~ 1e-16 of the total). */
  const double L = 40 + beta * log((double)K), r = sqrt(2 * L / beta);
  double ax = INFINITY, bx = -INFINITY, ay = INFINITY, by = -INFINITY;
  for (int k = 0; k < K; k++) {
    const double ex = r * sqrt(SIG[k][0]), ey = r * sqrt(SIG[k][2]);
    ax = fmin(ax, MU[k][0] - ex);
    bx = fmax(bx, MU[k][0] + ex);
    ay = fmin(ay, MU[k][1] - ey);
    by = fmax(by, MU[k][1] + ey);
  }
  const gmm_ctx ctx = {s, beta};
  /* For beta < 1 the far field, where the dominant component changes, has structure finer
   * than the components' own width sqrt(lam / beta): keep the beta = 1 step there. */
  const double h0 = sqrt(s->lam_min / fmax(beta, 1.0)) / 2;
  return tf_phys_quad_log2d(gmm_log_integrand, &ctx, ax, bx, ay, by, h0, 1e-10, log_z);
}

static int gmm_has_sampler(const tf_physics *p, double beta) { return fabs(beta - 1) <= 1e-12; }

static int gmm_sample(const tf_physics *p, double beta, int64_t n, tf_rng *rng, double *x) {
  const gmm_state *s = p->state;
  for (int64_t i = 0; i < n; i++) {
    const int k = (int)tf_rng_below(rng, K);
    const double z1 = tf_rng_normal(rng), z2 = tf_rng_normal(rng);
    x[2 * i] = MU[k][0] + s->chol[k][0] * z1;
    x[2 * i + 1] = MU[k][1] + s->chol[k][1] * z1 + s->chol[k][2] * z2;
  }
  return TF_OK;
}

static const char *const gmm_obs[] = {"energy", "x", "y"};

static void gmm_observables(const tf_physics *p, const double *x, double u, double *obs) {
  obs[1] = x[0];
  obs[2] = x[1];
}

static void gmm_start(const tf_physics *p, int64_t chain, double *x) {
  x[0] = MU[chain % K][0];
  x[1] = MU[chain % K][1];
}

const tf_phys_module tf_phys_gmm = {
    .name = "gmm",
    .help = "gmm: 2-D mixture g = (1/6) sum_k N(mu_k, Sigma_k) (DESIGN.md section 5), "
            "log q = beta log g (g normalised: log Z(1) = 0), energy U = -log g. Parameter "
            "beta in [0.05, 20], training range [0.16, 6.2], beta0 = 1. No options. Exact log Z "
            "(2-D quadrature) at every beta; exact sampler only at beta = 1. Observables: "
            "energy, x, y.",
    .param = "beta",
    .form = TF_PHYS_BETA,
    .setup = gmm_setup,
    .energy = gmm_energy,
    .log_z = gmm_log_z,
    .has_sampler = gmm_has_sampler,
    .sample = gmm_sample,
    .n_obs = 3,
    .obs_names = gmm_obs,
    .observables = gmm_observables,
    .start = gmm_start,
    .mala_step = 0.1,
};
