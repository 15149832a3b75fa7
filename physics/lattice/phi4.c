/* phi4.c — scalar phi^4 theory on a periodic 2-D L x L lattice (DESIGN.md section 5).
 *
 * Exported (through the registry in physics.c): tf_phys_phi4 (hopping form, parameter kappa),
 * tf_phys_phi4_mass (mass form, parameter m2).
 *
 * Field layout: x[i * L + j] is phi at site (i, j), i the row (direction 0) and j the column
 * (direction 1), the same order the flows' checkerboard / periodic-convolution subnets use.
 *
 * Hopping form:  S = sum_x [ -2 kappa phi_x sum_mu phi_{x+mu} + (1 - 2 lambda) phi_x^2
 *                            + lambda phi_x^4 ],   mu over the two positive directions;
 *   dS/dphi_x = -2 kappa sum_{+-mu} phi_{x+-mu} + 2 (1 - 2 lambda) phi_x + 4 lambda phi_x^3,
 *   dS/dkappa = -2 sum_x phi_x sum_mu phi_{x+mu}   (= A of DESIGN.md section 4).
 * Mass form:     S = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m2 phi_x^2 + lambda phi_x^4 ]
 *   (no 1/2: the free field's covariance is (1/2)(-Laplacian + m2)^-1);
 *   dS/dphi_x = 2 (4 phi_x - sum_{+-mu} phi_{x+-mu}) + 2 m2 phi_x + 4 lambda phi_x^3,
 *   dS/dm2 = sum_x phi_x^2.
 * log q = -S exactly: nothing is dropped (log Z is that of exp(-S) d^V phi).
 *
 * Observables per configuration (V = L^2): energy = S(x, c), s = S / V, m = sum_x phi_x / V,
 * abs_m = |m|, m2 = m^2, m4 = m^4.  chi = V (<m2> - <abs_m>^2) and U_L = 1 - <m4> / (3 <m2>^2)
 * are functions of these means (the lattice analysis in include/tradeflow/lattice.h).
 *
 * Symmetries (data augmentation): the action is invariant under phi -> -phi, the L^2
 * translations and the 8 elements of the square's point group (rotations and reflections);
 * augment draws uniformly from their product (16 L^2 elements).
 *
 * Free field (lambda = 0): exact sampler and exact log Z through fourier.c.  The mass form is
 * the free field of lattice.h directly.  The hopping form with lambda = 0 is the same Gaussian
 * after a rescaling: S_hop(phi; kappa) = S_mass(sqrt(kappa) phi; m2 = (1 - 4 kappa) / kappa),
 * so phi = psi / sqrt(kappa) with psi a mass-form sample, and
 * log Z_hop = log Z_mass - (V/2) log kappa (the Jacobian of the rescaling).  The FFTW plans
 * are made once, in setup (so creating a lambda = 0 module calls the FFTW planner, which is not
 * thread-safe), and the sampler uses the instance's buffers: one sampling thread per instance.
 *
 * Reference MCMC (tf_physics_mcmc): HMC (hmc.c, tf_phys_lat_hmc_mcmc) for both forms.
 * Private, for hmc.c: tf_phys_lattice_get.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "physics-impl.h"
#include "tradeflow/error.h"

enum { OPT_L = 0, OPT_LAMBDA = 1 };

typedef struct {
  int L;
  double lambda;
  double *tmp;     /* V values: augmentation scratch */
  tf_lat_fft *fft; /* lambda = 0 only: the exact sampler's plans */
} phi4_state;

static const phi4_state *st(const tf_physics *p) { return (const phi4_state *)p->state; }

static int setup_common(tf_physics *p, double lo, double hi, double cmin, double cmax,
                        double c0) {
  const int L = (int)p->opt[OPT_L];
  phi4_state *s = calloc(1, sizeof *s);
  if (!s) return tf_error(TF_ENOMEM, "physics module %s: out of memory", p->m->name);
  s->L = L;
  s->lambda = p->opt[OPT_LAMBDA];
  s->tmp = malloc((size_t)L * (size_t)L * sizeof *s->tmp);
  if (!s->tmp) {
    free(s);
    return tf_error(TF_ENOMEM, "physics module %s: out of memory for L = %d", p->m->name, L);
  }
  p->state = s;
  if (s->lambda == 0) {
    const int rc = tf_lat_fft_create(L, &s->fft);
    if (rc) return tf_error(rc, "physics module %s: %s", p->m->name, tf_errmsg());
  }
  p->dim = L * L;
  p->raw_dim = p->dim;
  p->lo = lo;
  p->hi = hi;
  p->cmin = cmin;
  p->cmax = cmax;
  p->c0 = c0;
  return TF_OK;
}

static void teardown(tf_physics *p) {
  phi4_state *s = p->state;
  if (s) {
    free(s->tmp);
    tf_lat_fft_destroy(s->fft);
  }
  free(s);
}

/* sum_x phi_x (phi_{x+e0} + phi_{x+e1}) and, when nb != NULL, nb[x] = sum of the 4 neighbours */
static double hop_sum(int L, const double *x, double *nb) {
  double h = 0;
  for (int i = 0; i < L; i++) {
    const double *row = x + i * L, *down = x + ((i + 1) % L) * L, *up = x + ((i + L - 1) % L) * L;
    for (int j = 0; j < L; j++) {
      const int jr = j + 1 == L ? 0 : j + 1, jl = j == 0 ? L - 1 : j - 1;
      h += row[j] * (down[j] + row[jr]);
      if (nb) nb[i * L + j] = down[j] + up[j] + row[jr] + row[jl];
    }
  }
  return h;
}

static double hopping_action(const tf_physics *p, const double *x, double kappa, double *g,
                             double *ds_dc) {
  const int L = st(p)->L, V = L * L;
  const double lam = st(p)->lambda, a = 1 - 2 * lam;
  const double h = hop_sum(L, x, g); /* g holds the neighbour sums for now */
  double local = 0;
  for (int k = 0; k < V; k++) {
    const double f = x[k], f2 = f * f;
    local += f2 * (a + lam * f2);
    if (g) g[k] = -2 * kappa * g[k] + 2 * a * f + 4 * lam * f * f2;
  }
  if (ds_dc) *ds_dc = -2 * h;
  return local - 2 * kappa * h;
}

static double mass_action(const tf_physics *p, const double *x, double m2, double *g,
                          double *ds_dc) {
  const int L = st(p)->L, V = L * L;
  const double lam = st(p)->lambda;
  /* sum_mu (phi_{x+mu} - phi_x)^2 = 2 * 2 sum phi^2 - 2 sum phi phi_{x+mu} summed over x */
  const double h = hop_sum(L, x, g);
  double sq = 0, quart = 0;
  for (int k = 0; k < V; k++) {
    const double f = x[k], f2 = f * f;
    sq += f2;
    quart += f2 * f2;
    if (g) g[k] = 2 * (4 * f - g[k]) + 2 * m2 * f + 4 * lam * f * f2;
  }
  if (ds_dc) *ds_dc = sq;
  return 4 * sq - 2 * h + m2 * sq + lam * quart;
}

/* ---- free field and lattice description ----------------------------------------------------- */

static int is_hopping(const tf_physics *p) { return p->m == &tf_phys_phi4; }

/* m2 of the mass-form free field that the module's Gaussian at c is a rescaling of */
static double free_m2(const tf_physics *p, double c) {
  return is_hopping(p) ? (1 - 4 * c) / c : c;
}

int tf_phys_lattice_get(const tf_physics *p, double c, tf_phys_lattice *out) {
  if (p->m != &tf_phys_phi4 && p->m != &tf_phys_phi4_mass)
    return tf_error(TF_EUNSUP, "physics module '%s' is not a lattice field theory (phi4, "
                    "phi4_mass)", p->m->name);
  const phi4_state *s = st(p);
  out->L = s->L;
  out->lambda = s->lambda;
  out->hopping = is_hopping(p);
  out->kin = out->hopping ? c : 1;
  out->m2_eff = out->hopping ? (1 - 2 * s->lambda - 4 * c) / c : c;
  return TF_OK;
}

static int free_has_sampler(const tf_physics *p, double c) {
  return st(p)->lambda == 0 && free_m2(p, c) > 0;
}

static int free_sample(const tf_physics *p, double c, int64_t n, tf_rng *rng, double *x) {
  const phi4_state *s = st(p);
  int rc = tf_lat_free_sample(s->fft, free_m2(p, c), n, rng, x);
  if (rc) return tf_error(rc, "physics module %s: %s", p->m->name, tf_errmsg());
  if (is_hopping(p)) {
    const double r = 1 / sqrt(c);
    for (int64_t k = 0; k < n * p->dim; k++) x[k] *= r;
  }
  return TF_OK;
}

static int free_log_z(const tf_physics *p, double c, double *log_z) {
  const phi4_state *s = st(p);
  if (s->lambda != 0)
    return tf_error(TF_EUNSUP, "physics module %s: exact log Z only for lambda = 0 (here "
                    "lambda = %g)", p->m->name, s->lambda);
  int rc = tf_lat_free_log_z(s->L, free_m2(p, c), log_z);
  if (rc) return tf_error(rc, "physics module %s: %s", p->m->name, tf_errmsg());
  if (is_hopping(p)) *log_z -= 0.5 * p->dim * log(c);
  return TF_OK;
}

static const char *const obs_names[] = {"energy", "s", "m", "abs_m", "m2", "m4"};

static void observables(const tf_physics *p, const double *x, double u, double *obs) {
  const int V = p->dim;
  double m = 0;
  for (int k = 0; k < V; k++) m += x[k];
  m /= V;
  obs[1] = u / V;
  obs[2] = m;
  obs[3] = fabs(m);
  obs[4] = m * m;
  obs[5] = m * m * m * m;
}

static const char *const derived_names[] = {"chi", "binder"};

/* chi = V (<m2> - <abs_m>^2) (DESIGN.md section 5), U_L = 1 - <m4> / (3 <m2>^2) */
static void derived(const tf_physics *p, const double *mean, double *out) {
  out[0] = p->dim * (mean[4] - mean[3] * mean[3]);
  out[1] = 1 - mean[5] / (3 * mean[4] * mean[4]);
}

/* A cold start: chains begin at phi = 0, from which both phases are reached in a few
 * trajectories (the symmetric start does not prefer a sign of m). */
static void start(const tf_physics *p, int64_t chain, double *x) {
  memset(x, 0, (size_t)p->dim * sizeof *x);
}

/* g = (sign, shift (a, b), point-group element e in 0..7): the image is
 * y[i][j] = sign * x[T_e(i, j) + (a, b)], T_e = optional transpose, then optional reflections
 * of each axis; all 16 L^2 group elements equally likely. */
static void augment(const tf_physics *p, int64_t n, double *x, tf_rng *rng) {
  const int L = st(p)->L, V = L * L;
  double *t = ((phi4_state *)p->state)->tmp;
  for (int64_t r = 0; r < n; r++) {
    double *xr = x + r * V;
    const uint64_t u = tf_rng_below(rng, 16);
    const double sign = (u & 1) ? -1.0 : 1.0;
    const int e = (int)(u >> 1);
    const int a = (int)tf_rng_below(rng, (uint64_t)L), b = (int)tf_rng_below(rng, (uint64_t)L);
    memcpy(t, xr, (size_t)V * sizeof *t);
    for (int i = 0; i < L; i++)
      for (int j = 0; j < L; j++) {
        int si = (e & 1) ? j : i, sj = (e & 1) ? i : j;
        if (e & 2) si = L - 1 - si;
        if (e & 4) sj = L - 1 - sj;
        xr[i * L + j] = sign * t[((si + a) % L) * L + (sj + b) % L];
      }
  }
}

static const tf_phys_opt phi4_opts[] = {
    {"L", TF_PHYS_OPT_INT, 8, 2, 1024, NULL},
    {"lambda", TF_PHYS_OPT_REAL, 0.02, 0, 100, NULL},
};

static int hopping_setup(tf_physics *p) {
  if (p->opt[OPT_LAMBDA] == 0)
    /* a Gaussian: normalisable only for kappa < 1/4 */
    return setup_common(p, 1e-6, 0.2499, 0.05, 0.24, 0.2);
  return setup_common(p, 1e-6, 10, 0.22, 0.32, 0.25);
}

const tf_phys_module tf_phys_phi4 = {
    .name = "phi4",
    .help = "phi4: scalar phi^4 on a periodic L x L lattice, hopping form S = sum_x [-2 kappa "
            "phi_x sum_mu phi_{x+mu} + (1 - 2 lambda) phi_x^2 + lambda phi_x^4], log q = -S "
            "(exact, nothing dropped), x[i L + j] = phi(i, j). Parameter kappa in [1e-6, 10] "
            "(lambda = 0: below 1/4), training range [0.22, 0.32], kappa0 = 0.25. Options: L "
            "(integer >= 2, default 8), lambda (default 0.02). Reference sampler: HMC. "
            "lambda = 0: exact sampler and log Z (a rescaled free field). "
            "Observables: energy (= S), s = S/V, m, abs_m, m2, m4 (m = mean field). Symmetry "
            "augmentation: sign flip x translations x rotations/reflections.",
    .param = "kappa",
    .form = TF_PHYS_ACTION,
    .n_opts = 2,
    .opts = phi4_opts,
    .setup = hopping_setup,
    .teardown = teardown,
    .action = hopping_action,
    .log_z = free_log_z,
    .has_sampler = free_has_sampler,
    .sample = free_sample,
    .n_obs = 6,
    .obs_names = obs_names,
    .observables = observables,
    .n_derived = 2,
    .derived_names = derived_names,
    .derived = derived,
    .start = start,
    .mala_step = 0.3,
    .mcmc = tf_phys_lat_hmc_mcmc,
    .augment = augment,
    .augment_group = "phi -> -phi x translations x rotations and reflections of the square",
};

static const tf_phys_opt mass_opts[] = {
    {"L", TF_PHYS_OPT_INT, 8, 2, 1024, NULL},
    {"lambda", TF_PHYS_OPT_REAL, 0, 0, 100, NULL},
};

static int mass_setup(tf_physics *p) { return setup_common(p, 1e-6, 1e4, 0.1, 1, 0.5); }

const tf_phys_module tf_phys_phi4_mass = {
    .name = "phi4_mass",
    .help = "phi4_mass: scalar phi^4 on a periodic L x L lattice, mass form S = sum_x "
            "[sum_mu (phi_{x+mu} - phi_x)^2 + m2 phi_x^2 + lambda phi_x^4] (no 1/2), log q = -S "
            "(exact). lambda = 0 (the default) is the free field, covariance "
            "(1/2)(-Laplacian + m2)^-1, chi = 1/(2 m2), exact sampler (FFTW) and log Z. Reference "
            "sampler: HMC. Parameter m2 in [1e-6, 1e4], training "
            "range [0.1, 1], m2_0 = 0.5. Options: L (default 8), lambda (default 0). "
            "Observables as phi4. Symmetry augmentation as phi4.",
    .param = "m2",
    .form = TF_PHYS_ACTION,
    .n_opts = 2,
    .opts = mass_opts,
    .setup = mass_setup,
    .teardown = teardown,
    .action = mass_action,
    .log_z = free_log_z,
    .has_sampler = free_has_sampler,
    .sample = free_sample,
    .n_obs = 6,
    .obs_names = obs_names,
    .observables = observables,
    .n_derived = 2,
    .derived_names = derived_names,
    .derived = derived,
    .start = start,
    .mala_step = 0.3,
    .mcmc = tf_phys_lat_hmc_mcmc,
    .augment = augment,
    .augment_group = "phi -> -phi x translations x rotations and reflections of the square",
};
