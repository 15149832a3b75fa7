/* wells.c — the separable quartic toy targets: double_well, multiwell, manywell.
 *
 * Module descriptors: tf_phys_double_well, tf_phys_multiwell, tf_phys_manywell.
 *
 * All three are Boltzmann in the temperature T: log q(x | T) = -U(x) / T, with no constant
 * dropped (q is exactly exp(-U/T), so log Z(T) = log of its integral, energy units = those of
 * U, dimensionless).  Each factorises over one-dimensional quartics and Gaussians, so
 *   log Z = sum of 1-D log integrals (trapezoidal quadrature to ~1e-13, quad.c)
 * and exact samples come coordinate by coordinate: the quartic factors by rejection from an
 * analytic piecewise-Gaussian envelope (quad.c), the Gaussian factors N(0, T).
 *
 * double_well dim=D (D >= 1, default 2):
 *   U = x1^4 - 4 x1^2 + 1/2 sum_{i>=2} x_i^2; two modes x1 = +-sqrt(2), barrier 4.
 *   log Z(T) = log Z_1(T) + (D - 1)/2 log(2 pi T).  Observables: energy, x1, abs_x1.
 * multiwell dim=D (default 5):
 *   U = sum_i (x_i^4 - 4 x_i^2); 2^D modes.  log Z = D log Z_1(T).
 *   Observables: energy, mean_x (mean of the coordinates), n_pos (coordinates > 0).
 * manywell (ManyWell-32, no options): 16 copies of the pair (x, y), stored interleaved
 *   (x_1, y_1, x_2, y_2, ...): U = sum_k x_k^4 - 6 x_k^2 - 0.5 x_k + 1/2 y_k^2.
 *   log Z = 16 (log Z_x(T) + 1/2 log(2 pi T)); at T = 1, Z_x = 11784.50927.
 *   Observables: energy, mean_x (mean of the 16 x_k), n_pos (x_k > 0).
 * Valid T: [0.05, 100].  Default training ranges: [0.4, 1.1] (double_well, multiwell),
 * [0.5, 2] (manywell); boundary T0 = 1.
 */
#include <math.h>
#include <stdlib.h>

#include "physics-impl.h"
#include "tradeflow/error.h"

static const double LOG_2PI = 1.8378770664093454836;

/* the instance state: the quartic factor of each module */
typedef struct {
  tf_phys_quartic q;
} wells_state;

static const tf_phys_quartic *quartic(const tf_physics *p) {
  return &((const wells_state *)p->state)->q;
}

static int wells_setup(tf_physics *p, int dim, double a, double b, double cmin, double cmax) {
  wells_state *s = calloc(1, sizeof *s);
  if (!s) return tf_error(TF_ENOMEM, "physics module '%s': out of memory", p->m->name);
  p->state = s;
  const int rc = tf_phys_quartic_init(&s->q, a, b);
  if (rc) return rc;
  p->dim = dim;
  p->raw_dim = dim;
  p->lo = 0.05;
  p->hi = 100;
  p->cmin = cmin;
  p->cmax = cmax;
  p->c0 = 1;
  return TF_OK;
}

static void mode_start(const tf_physics *p, int64_t chain, double *x, int stride) {
  /* chains alternate between the two wells of the first quartic coordinate(s) */
  const tf_phys_quartic *q = quartic(p);
  for (int i = 0; i < p->dim; i++) x[i] = 0;
  for (int i = 0; i < p->dim; i += stride) x[i] = q->m[(chain + i / stride) % 2];
}

/* ---- double_well ---------------------------------------------------------------------------- */

static const tf_phys_opt dw_opts[] = {{"dim", TF_PHYS_OPT_INT, 2, 1, 1 << 20, NULL}};

static int dw_setup(tf_physics *p) { return wells_setup(p, (int)p->opt[0], -4, 0, 0.4, 1.1); }

static double dw_energy(const tf_physics *p, const double *x, double *g) {
  const double x1 = x[0], x2 = x1 * x1;
  double u = x2 * (x2 - 4), r = 0;
  for (int i = 1; i < p->dim; i++) r += x[i] * x[i];
  if (g) {
    g[0] = 4 * x1 * x2 - 8 * x1;
    for (int i = 1; i < p->dim; i++) g[i] = x[i];
  }
  return u + 0.5 * r;
}

static int dw_log_z(const tf_physics *p, double T, double *log_z) {
  double lz1;
  const int rc = tf_phys_quartic_log_z(quartic(p), T, &lz1);
  if (rc) return rc;
  *log_z = lz1 + 0.5 * (p->dim - 1) * (LOG_2PI + log(T));
  return TF_OK;
}

static int always(const tf_physics *p, double c) { return 1; }

static int dw_sample(const tf_physics *p, double T, int64_t n, tf_rng *rng, double *x) {
  tf_phys_quartic_env e;
  tf_phys_quartic_env_init(quartic(p), T, &e);
  const double sd = sqrt(T);
  for (int64_t i = 0; i < n; i++) {
    double *xi = x + i * p->dim;
    xi[0] = tf_phys_quartic_draw(quartic(p), &e, rng);
    for (int k = 1; k < p->dim; k++) xi[k] = sd * tf_rng_normal(rng);
  }
  return TF_OK;
}

static const char *const dw_obs[] = {"energy", "x1", "abs_x1"};

static void dw_observables(const tf_physics *p, const double *x, double u, double *obs) {
  obs[1] = x[0];
  obs[2] = fabs(x[0]);
}

static void dw_start(const tf_physics *p, int64_t chain, double *x) {
  mode_start(p, chain, x, p->dim);
}

const tf_phys_module tf_phys_double_well = {
    .name = "double_well",
    .help = "double_well: U = x1^4 - 4 x1^2 + 1/2 sum_{i>=2} x_i^2, log q = -U/T (exact, "
            "nothing dropped). Parameter T in [0.05, 100], training range [0.4, 1.1], T0 = 1. "
            "Options: dim (integer >= 1, default 2). Exact log Z (1-D quadrature) and exact "
            "sampler (rejection for x1, Gaussian for the rest) at every T. Observables: "
            "energy, x1, abs_x1.",
    .param = "T",
    .form = TF_PHYS_TEMPERATURE,
    .n_opts = 1,
    .opts = dw_opts,
    .setup = dw_setup,
    .energy = dw_energy,
    .log_z = dw_log_z,
    .has_sampler = always,
    .sample = dw_sample,
    .n_obs = 3,
    .obs_names = dw_obs,
    .observables = dw_observables,
    .start = dw_start,
    .mala_step = 0.6,
};

/* ---- multiwell ------------------------------------------------------------------------------ */

static const tf_phys_opt mw_opts[] = {{"dim", TF_PHYS_OPT_INT, 5, 1, 1 << 20, NULL}};

static int mw_setup(tf_physics *p) { return wells_setup(p, (int)p->opt[0], -4, 0, 0.4, 1.1); }

static double mw_energy(const tf_physics *p, const double *x, double *g) {
  double u = 0;
  for (int i = 0; i < p->dim; i++) {
    const double xi = x[i], x2 = xi * xi;
    u += x2 * (x2 - 4);
    if (g) g[i] = 4 * xi * x2 - 8 * xi;
  }
  return u;
}

static int mw_log_z(const tf_physics *p, double T, double *log_z) {
  double lz1;
  const int rc = tf_phys_quartic_log_z(quartic(p), T, &lz1);
  if (rc) return rc;
  *log_z = p->dim * lz1;
  return TF_OK;
}

static int mw_sample(const tf_physics *p, double T, int64_t n, tf_rng *rng, double *x) {
  tf_phys_quartic_env e;
  tf_phys_quartic_env_init(quartic(p), T, &e);
  for (int64_t i = 0; i < n * p->dim; i++) x[i] = tf_phys_quartic_draw(quartic(p), &e, rng);
  return TF_OK;
}

static const char *const mw_obs[] = {"energy", "mean_x", "n_pos"};

/* mean and sign count over coordinates first, first + stride, ... (n of them) */
static void mean_and_pos(const double *x, int n, int stride, double *obs) {
  double s = 0, npos = 0;
  for (int i = 0; i < n; i++) {
    s += x[i * stride];
    npos += x[i * stride] > 0;
  }
  obs[1] = s / n;
  obs[2] = npos;
}

static void mw_observables(const tf_physics *p, const double *x, double u, double *obs) {
  mean_and_pos(x, p->dim, 1, obs);
}

static void mw_start(const tf_physics *p, int64_t chain, double *x) { mode_start(p, chain, x, 1); }

const tf_phys_module tf_phys_multiwell = {
    .name = "multiwell",
    .help = "multiwell: U = sum_i (x_i^4 - 4 x_i^2), 2^dim modes, log q = -U/T (exact, nothing "
            "dropped). Parameter T in [0.05, 100], training range [0.4, 1.1], T0 = 1. Options: "
            "dim (integer >= 1, default 5). Exact log Z (dim times a 1-D quadrature) and exact "
            "sampler at every T. Observables: energy, mean_x, n_pos.",
    .param = "T",
    .form = TF_PHYS_TEMPERATURE,
    .n_opts = 1,
    .opts = mw_opts,
    .setup = mw_setup,
    .energy = mw_energy,
    .log_z = mw_log_z,
    .has_sampler = always,
    .sample = mw_sample,
    .n_obs = 3,
    .obs_names = mw_obs,
    .observables = mw_observables,
    .start = mw_start,
    .mala_step = 0.6,
};

/* ---- manywell ------------------------------------------------------------------------------- */

enum { MANY_COPIES = 16 };

static int many_setup(tf_physics *p) {
  return wells_setup(p, 2 * MANY_COPIES, -6, -0.5, 0.5, 2);
}

static double many_energy(const tf_physics *p, const double *x, double *g) {
  double u = 0;
  for (int k = 0; k < MANY_COPIES; k++) {
    const double a = x[2 * k], b = x[2 * k + 1], a2 = a * a;
    u += a2 * (a2 - 6) - 0.5 * a + 0.5 * b * b;
    if (g) {
      g[2 * k] = 4 * a * a2 - 12 * a - 0.5;
      g[2 * k + 1] = b;
    }
  }
  return u;
}

static int many_log_z(const tf_physics *p, double T, double *log_z) {
  double lzx;
  const int rc = tf_phys_quartic_log_z(quartic(p), T, &lzx);
  if (rc) return rc;
  *log_z = MANY_COPIES * (lzx + 0.5 * (LOG_2PI + log(T)));
  return TF_OK;
}

static int many_sample(const tf_physics *p, double T, int64_t n, tf_rng *rng, double *x) {
  tf_phys_quartic_env e;
  tf_phys_quartic_env_init(quartic(p), T, &e);
  const double sd = sqrt(T);
  for (int64_t i = 0; i < n * MANY_COPIES; i++) {
    x[2 * i] = tf_phys_quartic_draw(quartic(p), &e, rng);
    x[2 * i + 1] = sd * tf_rng_normal(rng);
  }
  return TF_OK;
}

static void many_observables(const tf_physics *p, const double *x, double u, double *obs) {
  mean_and_pos(x, MANY_COPIES, 2, obs);
}

static void many_start(const tf_physics *p, int64_t chain, double *x) {
  mode_start(p, chain, x, 2);
}

const tf_phys_module tf_phys_manywell = {
    .name = "manywell",
    .help = "manywell: ManyWell-32, 16 copies of (x, y) stored interleaved, U = sum_k x_k^4 - "
            "6 x_k^2 - 0.5 x_k + 1/2 y_k^2, log q = -U/T (exact, nothing dropped; at T = 1 "
            "Z = (11784.50927 sqrt(2 pi))^16). Parameter T in [0.05, 100], training range "
            "[0.5, 2], T0 = 1. No options. Exact log Z (1-D quadrature) and exact sampler at "
            "every T. Observables: energy, mean_x, n_pos.",
    .param = "T",
    .form = TF_PHYS_TEMPERATURE,
    .setup = many_setup,
    .energy = many_energy,
    .log_z = many_log_z,
    .has_sampler = always,
    .sample = many_sample,
    .n_obs = 3,
    .obs_names = mw_obs,
    .observables = many_observables,
    .start = many_start,
    .mala_step = 0.4,
};
