/* hmc.c — Hybrid Monte Carlo for the lattice modules "phi4" and "phi4_mass"
 * (include/tradeflow/lattice.h; algorithm and conventions in physics/lattice/README.md).
 *
 * Exported: tf_lat_hmc_defaults, tf_lat_hmc_create, tf_lat_hmc_destroy, tf_lat_hmc_reset,
 *   tf_lat_hmc_thermalise, tf_lat_hmc_trajectory, tf_lat_hmc_run, tf_lat_hmc_stats_get,
 *   tf_lat_hmc_field, tf_lat_hmc_integrate.
 * Private (physics-impl.h): tf_phys_lat_hmc_mcmc, the modules' `mcmc` hook, i.e. what
 *   tf_physics_mcmc runs for them.
 *
 * H(phi, pi) = K(pi) + S(phi, c), K = pi^T M^-1 pi / 2.  The action and its gradient come from
 * the module's own `action` (the same code as tf_physics_log_q, without the per-call argument
 * checks).  M = I, or with Fourier acceleration the diagonal M_p = 2 kin (khat^2(p) + M_fa^2)
 * applied through FFTW: pi = F^-1[ sqrt(M_p) F[xi] ] has covariance M, and the velocity
 * dphi/dt = M^-1 pi = F^-1[ F[pi] / M_p ].  K is computed with that same velocity, so H is
 * exactly the Hamiltonian that the integrator conserves approximately; the Metropolis step on
 * the total dH makes every trajectory exact whatever the step.
 *
 * Integrators (both symmetric, hence reversible, and symplectic):
 *   leapfrog  pi -= eps/2 dS; n times { phi += eps v; pi -= eps dS (eps/2 at the end) }
 *   Omelyan   per step: pi -= l eps dS; phi += eps/2 v; pi -= (1 - 2 l) eps dS; phi += eps/2 v;
 *             pi -= l eps dS, with l = 0.1931833 (2nd-order minimum norm); adjacent kicks of
 *             consecutive steps are merged, so two forces per step.
 *
 * Step tuning (thermalisation only): Robbins-Monro on log eps with gain (t + 10)^-0.6 towards
 * target_accept, driven by the acceptance probability min(1, exp(-dH)); each tuning trajectory
 * uses n = ceil(tau / eps) steps of eps, so its length n eps lies in [tau, tau + eps).  The
 * frozen step is exp of the mean of log eps over the second half of thermalisation, with n_md =
 * ceil(tau / eps); eps may grow to 4 tau (one step, a longer trajectory) where a single step of
 * tau is still accepted more often than the target.  The step stays continuous: rounding it to tau / n_md would leave only a few
 * acceptances reachable on small lattices (n_md = 1-3; with Omelyan at L = 8 the next integer
 * above the target gives ~0.99 instead of 0.8).
 *
 * Memory: tf_lat_hmc_create allocates every buffer (fields, momenta, the run history of
 * cfg->n_traj trajectories, the FFT plans); the trajectory loop allocates nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "physics-impl.h"
#include "tradeflow/error.h"
#include "tradeflow/lattice.h"
#include "tradeflow/stats.h"

enum { N_MD_MAX = 1 << 16 };
static const double OMELYAN_LAMBDA = 0.1931833;

/* internal history columns: the public ones, then |m|, s = S / V, exp(-dH) */
enum { H_ABS_M = TF_LAT_HMC_NCOL, H_S, H_EXP, H_NCOL };

struct tf_lat_hmc {
  const tf_physics *p;
  tf_lat_hmc_config cfg;
  double c;
  tf_phys_lattice lat;
  int V;
  tf_lat_fft *fft;    /* Fourier acceleration only */
  double *msq, *minv; /* FA: sqrt(M_p) and 1 / M_p on the half grid (L, L/2 + 1) */
  /* V each: the state and its gradient, their copies before a trajectory, momenta,
   * velocities, and the gradient scratch of tf_lat_hmc_integrate */
  double *phi, *grad, *phi0, *grad0, *mom, *vel, *gtmp;
  double S;           /* S(phi) */
  double eps;
  int n_md;
  int thermalised;
  double *hist;       /* (cfg.n_traj, H_NCOL) */
  int64_t n_run;
  double sec;
};

tf_lat_hmc_config tf_lat_hmc_defaults(void) {
  tf_lat_hmc_config c = {.integrator = TF_LAT_OMELYAN,
                         .tau = 1,
                         .n_md = 10,
                         .target_accept = 0.8,
                         .tune = 1,
                         .n_therm = 1000,
                         .n_traj = 10000,
                         .meas_every = 1,
                         .fourier_accel = 1,
                         .fa_mass = 0};
  return c;
}

static int check_config(const tf_lat_hmc_config *c) {
  const char *bad = NULL;
  if (c->integrator != TF_LAT_LEAPFROG && c->integrator != TF_LAT_OMELYAN)
    bad = "integrator must be TF_LAT_LEAPFROG or TF_LAT_OMELYAN";
  else if (!(c->tau > 0) || !isfinite(c->tau)) bad = "tau must be finite and > 0";
  else if (c->n_md < 1 || c->n_md > N_MD_MAX) bad = "n_md must be in [1, 65536]";
  else if (!(c->target_accept > 0 && c->target_accept < 1)) bad = "target_accept must be in (0, 1)";
  else if (c->tune != 0 && c->tune != 1) bad = "tune must be 0 or 1";
  else if (c->n_therm < 0) bad = "n_therm must be >= 0";
  else if (c->n_traj < 0) bad = "n_traj must be >= 0";
  else if (c->meas_every < 1) bad = "meas_every must be >= 1";
  else if (c->fourier_accel != 0 && c->fourier_accel != 1) bad = "fourier_accel must be 0 or 1";
  else if (!(c->fa_mass >= 0) || !isfinite(c->fa_mass)) bad = "fa_mass must be finite and >= 0";
  if (bad)
    return tf_error(TF_EINVAL, "HMC configuration: %s (integrator %d, tau %g, n_md %d, "
                    "target_accept %g, tune %d, n_therm %lld, n_traj %lld, meas_every %lld, "
                    "fourier_accel %d, fa_mass %g)", bad, (int)c->integrator, c->tau, c->n_md,
                    c->target_accept, c->tune, (long long)c->n_therm, (long long)c->n_traj,
                    (long long)c->meas_every, c->fourier_accel, c->fa_mass);
  return TF_OK;
}

void tf_lat_hmc_destroy(tf_lat_hmc *h) {
  if (!h) return;
  tf_lat_fft_destroy(h->fft);
  free(h->msq);
  free(h->phi);
  free(h->hist);
  free(h);
}

int tf_lat_hmc_create(const tf_physics *p, double c, const tf_lat_hmc_config *cfg,
                      tf_lat_hmc **out) {
  if (!out) return tf_error(TF_EINVAL, "tf_lat_hmc_create: out is NULL");
  *out = NULL;
  if (!p || !cfg) return tf_error(TF_EINVAL, "tf_lat_hmc_create: NULL argument");
  tf_phys_lattice lat;
  int rc = tf_phys_lattice_get(p, c, &lat);
  if (rc) return tf_error(rc, "tf_lat_hmc_create: %s", tf_errmsg());
  if ((rc = tf_phys_check_param(p, c)) != TF_OK)
    return tf_error(rc, "tf_lat_hmc_create: %s", tf_errmsg());
  if ((rc = check_config(cfg)) != TF_OK) return rc;

  tf_lat_hmc *h = calloc(1, sizeof *h);
  if (!h) return tf_error(TF_ENOMEM, "tf_lat_hmc_create: out of memory");
  h->p = p;
  h->cfg = *cfg;
  h->c = c;
  h->lat = lat;
  const int L = lat.L, V = L * L;
  h->V = V;
  h->phi = malloc(7 * (size_t)V * sizeof *h->phi);
  h->hist = malloc((size_t)(cfg->n_traj > 0 ? cfg->n_traj : 1) * H_NCOL * sizeof *h->hist);
  if (!h->phi || !h->hist) {
    tf_lat_hmc_destroy(h);
    return tf_error(TF_ENOMEM, "tf_lat_hmc_create: out of memory (V = %d, history of %lld "
                    "trajectories)", V, (long long)cfg->n_traj);
  }
  h->grad = h->phi + V;
  h->phi0 = h->grad + V;
  h->grad0 = h->phi0 + V;
  h->mom = h->grad0 + V;
  h->vel = h->mom + V;
  h->gtmp = h->vel + V;
  if (cfg->fourier_accel) {
    const int hw = L / 2 + 1, nh = L * hw;
    double mfa2 = cfg->fa_mass * cfg->fa_mass;
    if (cfg->fa_mass == 0) {
      const double kmin = tf_phys_khat2(L, 1, 0);
      mfa2 = lat.m2_eff > kmin ? lat.m2_eff : kmin;
    }
    rc = tf_lat_fft_create(L, &h->fft);
    h->msq = malloc(2 * (size_t)nh * sizeof *h->msq);
    if (rc || !h->msq) {
      tf_lat_hmc_destroy(h);
      return tf_error(TF_ENOMEM, "tf_lat_hmc_create: out of memory for Fourier acceleration "
                      "(L = %d)", L);
    }
    h->minv = h->msq + nh;
    for (int a = 0; a < L; a++)
      for (int b = 0; b < hw; b++) {
        const double m = 2 * lat.kin * (tf_phys_khat2(L, a, b) + mfa2);
        h->msq[a * hw + b] = sqrt(m);
        h->minv[a * hw + b] = 1 / m;
      }
  }
  rc = tf_lat_hmc_reset(h, NULL);
  if (rc) {
    tf_lat_hmc_destroy(h);
    return rc;
  }
  *out = h;
  return TF_OK;
}

static double action(const tf_lat_hmc *h, const double *phi, double *grad) {
  return h->p->m->action(h->p, phi, h->c, grad, NULL);
}

int tf_lat_hmc_reset(tf_lat_hmc *h, const double *x0) {
  if (!h) return tf_error(TF_EINVAL, "tf_lat_hmc_reset: h is NULL");
  if (x0)
    memcpy(h->phi, x0, (size_t)h->V * sizeof *x0);
  else
    h->p->m->start(h->p, 0, h->phi);
  h->S = action(h, h->phi, h->grad);
  if (!isfinite(h->S))
    return tf_error(TF_ENUMERIC, "tf_lat_hmc_reset (%s): the start has action S = %g",
                    h->p->m->name, h->S);
  h->n_md = h->cfg.n_md;
  h->eps = h->cfg.tau / h->n_md;
  h->thermalised = 0;
  h->n_run = 0;
  h->sec = 0;
  return TF_OK;
}

const double *tf_lat_hmc_field(const tf_lat_hmc *h) { return h ? h->phi : NULL; }

/* ---- molecular dynamics --------------------------------------------------------------------- */

/* v = M^-1 mom (v may be h->vel; with M = I the momenta themselves) */
static const double *velocity(tf_lat_hmc *h, const double *mom) {
  if (!h->fft) return mom;
  tf_phys_fft_filter(h->fft, h->minv, mom, h->vel);
  return h->vel;
}

static double kinetic(tf_lat_hmc *h, const double *mom) {
  const double *v = velocity(h, mom);
  double k = 0;
  for (int s = 0; s < h->V; s++) k += mom[s] * v[s];
  return 0.5 * k;
}

static void drift(tf_lat_hmc *h, double *phi, const double *mom, double eps) {
  const double *v = velocity(h, mom);
  for (int s = 0; s < h->V; s++) phi[s] += eps * v[s];
}

static void kick(int V, double *mom, const double *grad, double eps) {
  for (int s = 0; s < V; s++) mom[s] -= eps * grad[s];
}

/* n >= 1 steps of eps from (phi, mom) with grad = dS/dphi at phi; phi, grad, mom updated in
 * place; returns S at the end. */
static double md(tf_lat_hmc *h, int n, double eps, double *phi, double *grad, double *mom) {
  const int V = h->V;
  double S = NAN;
  if (h->cfg.integrator == TF_LAT_LEAPFROG) {
    kick(V, mom, grad, 0.5 * eps);
    for (int t = 0; t < n; t++) {
      drift(h, phi, mom, eps);
      S = action(h, phi, grad);
      kick(V, mom, grad, t + 1 < n ? eps : 0.5 * eps);
    }
  } else {
    const double l = OMELYAN_LAMBDA;
    kick(V, mom, grad, l * eps);
    for (int t = 0; t < n; t++) {
      drift(h, phi, mom, 0.5 * eps);
      S = action(h, phi, grad);
      kick(V, mom, grad, (1 - 2 * l) * eps);
      drift(h, phi, mom, 0.5 * eps);
      S = action(h, phi, grad);
      kick(V, mom, grad, (t + 1 < n ? 2 * l : l) * eps);
    }
  }
  return S;
}

int tf_lat_hmc_integrate(tf_lat_hmc *h, int n_md, double eps, double *phi, double *mom,
                         double *dh) {
  if (!h || !phi || !mom) return tf_error(TF_EINVAL, "tf_lat_hmc_integrate: NULL argument");
  if (n_md < 1 || !isfinite(eps))
    return tf_error(TF_EINVAL, "tf_lat_hmc_integrate: n_md = %d (need >= 1), eps = %g", n_md,
                    eps);
  const double s0 = action(h, phi, h->gtmp), k0 = kinetic(h, mom);
  const double s1 = md(h, n_md, eps, phi, h->gtmp, mom), k1 = kinetic(h, mom);
  if (dh) *dh = (s1 - s0) + (k1 - k0);
  return TF_OK;
}

/* One trajectory of n steps of eps with fresh momenta; Metropolis on dH. */
static void trajectory(tf_lat_hmc *h, tf_rng *rng, int n, double eps, double *dh_out,
                       int *acc_out) {
  const int V = h->V;
  tf_rng_fill_normal_d(rng, h->mom, V);
  if (h->fft) tf_phys_fft_filter(h->fft, h->msq, h->mom, h->mom);
  const double k0 = kinetic(h, h->mom), s0 = h->S;
  memcpy(h->phi0, h->phi, (size_t)V * sizeof *h->phi);
  memcpy(h->grad0, h->grad, (size_t)V * sizeof *h->grad);
  const double s1 = md(h, n, eps, h->phi, h->grad, h->mom);
  const double dh = (s1 - s0) + (kinetic(h, h->mom) - k0);
  /* one uniform per trajectory whatever dH, so the stream position depends only on the
   * number of trajectories; a non-finite dH (diverging integration) is a rejection */
  const double u = tf_rng_uniform(rng);
  const int acc = isfinite(dh) && (dh <= 0 || log(u) < -dh);
  if (acc) {
    h->S = s1;
  } else {
    memcpy(h->phi, h->phi0, (size_t)V * sizeof *h->phi);
    memcpy(h->grad, h->grad0, (size_t)V * sizeof *h->grad);
  }
  *dh_out = dh;
  *acc_out = acc;
}

int tf_lat_hmc_trajectory(tf_lat_hmc *h, tf_rng *rng, double *dh, int *accepted) {
  if (!h || !rng) return tf_error(TF_EINVAL, "tf_lat_hmc_trajectory: NULL argument");
  double d;
  int a;
  trajectory(h, rng, h->n_md, h->eps, &d, &a);
  if (dh) *dh = d;
  if (accepted) *accepted = a;
  return TF_OK;
}

static int steps_for(double tau, double eps) {
  const double n = ceil(tau / eps * (1 - 1e-12)); /* tau / eps integral up to rounding: n */
  return n < 1 ? 1 : n > N_MD_MAX ? N_MD_MAX : (int)n;
}

int tf_lat_hmc_thermalise(tf_lat_hmc *h, tf_rng *rng) {
  if (!h || !rng) return tf_error(TF_EINVAL, "tf_lat_hmc_thermalise: NULL argument");
  const tf_lat_hmc_config *c = &h->cfg;
  const int64_t nt = c->n_therm;
  if (!c->tune || nt == 0) {
    for (int64_t t = 0; t < nt; t++) {
      double dh;
      int acc;
      trajectory(h, rng, h->n_md, h->eps, &dh, &acc);
    }
    h->thermalised = 1;
    return TF_OK;
  }
  const double lo = log(c->tau / N_MD_MAX), hi = log(4 * c->tau);
  double log_eps = log(h->eps), sum = 0;
  int64_t n_avg = 0;
  for (int64_t t = 0; t < nt; t++) {
    const double eps = exp(log_eps);
    const int n = steps_for(c->tau, eps);
    double dh;
    int acc;
    trajectory(h, rng, n, eps, &dh, &acc);
    const double a = !isfinite(dh) ? 0 : dh <= 0 ? 1 : exp(-dh);
    log_eps += pow((double)t + 10, -0.6) * (a - c->target_accept);
    log_eps = log_eps < lo ? lo : log_eps > hi ? hi : log_eps;
    if (2 * t >= nt) {
      sum += log_eps;
      n_avg++;
    }
  }
  h->eps = exp(sum / (double)n_avg);
  h->n_md = steps_for(c->tau, h->eps);
  h->thermalised = 1;
  return TF_OK;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tf_lat_hmc_run(tf_lat_hmc *h, tf_rng *rng, double *x, double *obs, tf_lat_hmc_stats *st) {
  if (!h || !rng) return tf_error(TF_EINVAL, "tf_lat_hmc_run: NULL argument");
  int rc;
  if (!h->thermalised && (rc = tf_lat_hmc_thermalise(h, rng)) != TF_OK) return rc;
  const tf_lat_hmc_config *c = &h->cfg;
  const int V = h->V;
  const double t0 = now();
  for (int64_t t = 0; t < c->n_traj; t++) {
    double dh;
    int acc;
    trajectory(h, rng, h->n_md, h->eps, &dh, &acc);
    double m = 0;
    for (int s = 0; s < V; s++) m += h->phi[s];
    m /= V;
    double *r = h->hist + t * H_NCOL;
    r[TF_LAT_HMC_M] = m;
    r[TF_LAT_HMC_S] = h->S;
    r[TF_LAT_HMC_DH] = dh;
    r[TF_LAT_HMC_ACC] = acc;
    r[H_ABS_M] = fabs(m);
    r[H_S] = h->S / V;
    /* exp(-dH) of a diverged trajectory: its weight exp(-H) relative to the start is 0 */
    r[H_EXP] = isfinite(dh) ? exp(-dh) : 0;
    if (x && (t + 1) % c->meas_every == 0)
      memcpy(x + ((t + 1) / c->meas_every - 1) * V, h->phi, (size_t)V * sizeof *x);
  }
  h->sec = now() - t0;
  h->n_run = c->n_traj;
  if (obs)
    for (int64_t t = 0; t < c->n_traj; t++)
      memcpy(obs + t * TF_LAT_HMC_NCOL, h->hist + t * H_NCOL, TF_LAT_HMC_NCOL * sizeof *obs);
  if (st && c->n_traj >= 2) return tf_lat_hmc_stats_get(h, st);
  if (st) {
    memset(st, 0, sizeof *st);
    st->n_traj = c->n_traj;
    st->eps = h->eps;
    st->n_md = h->n_md;
    st->accept = st->dh_mean = st->dh_err = st->exp_mdh = st->exp_mdh_err = NAN;
    st->sec_per_traj = c->n_traj > 0 ? h->sec / (double)c->n_traj : NAN;
  }
  return TF_OK;
}

int tf_lat_hmc_stats_get(const tf_lat_hmc *h, tf_lat_hmc_stats *st) {
  if (!h || !st) return tf_error(TF_EINVAL, "tf_lat_hmc_stats_get: NULL argument");
  const int64_t n = h->n_run;
  if (n < 2)
    return tf_error(TF_EINVAL, "tf_lat_hmc_stats_get: the last run had %lld trajectories "
                    "(need >= 2)", (long long)n);
  memset(st, 0, sizeof *st);
  st->n_traj = n;
  st->eps = h->eps;
  st->n_md = h->n_md;
  st->sec_per_traj = h->sec / (double)n;
  double acc;
  tf_stats_mean_se(n, h->hist + TF_LAT_HMC_ACC, H_NCOL, &acc, NULL);
  st->accept = acc;
  tf_tau_result t;
  int rc = tf_stats_tau_int(n, h->hist + TF_LAT_HMC_DH, H_NCOL, 0, &t);
  if (rc == TF_OK) {
    st->dh_mean = t.mean;
    st->dh_err = t.err;
    rc = tf_stats_tau_int(n, h->hist + H_EXP, H_NCOL, 0, &t);
  }
  if (rc == TF_OK) {
    st->exp_mdh = t.mean;
    st->exp_mdh_err = t.err;
    rc = tf_stats_tau_int(n, h->hist + H_ABS_M, H_NCOL, 0, &st->tau_abs_m);
  }
  if (rc == TF_OK) rc = tf_stats_tau_int(n, h->hist + H_S, H_NCOL, 0, &st->tau_s);
  if (rc) return tf_error(rc, "tf_lat_hmc_stats_get (%s): %s", h->p->m->name, tf_errmsg());
  return TF_OK;
}

/* ---- the modules' mcmc hook ----------------------------------------------------------------- */

int tf_phys_lat_hmc_mcmc(const tf_physics *p, double c, const tf_mcmc_config *mc,
                         const double *x0, tf_rng *rng, double *x, tf_mcmc_stats *stats) {
  tf_lat_hmc_config cfg = tf_lat_hmc_defaults();
  cfg.target_accept = mc->target_accept;
  cfg.n_therm = mc->burn_in;
  cfg.n_traj = mc->n_per_chain * mc->thin;
  cfg.meas_every = mc->thin;
  if (mc->step0 > 0) cfg.n_md = steps_for(cfg.tau, mc->step0);
  if (mc->fourier_accel >= 0) cfg.fourier_accel = mc->fourier_accel != 0;
  tf_lat_hmc *h = NULL;
  int rc = tf_lat_hmc_create(p, c, &cfg, &h);
  if (rc) return tf_error(rc, "tf_physics_mcmc: %s", tf_errmsg());
  const int64_t d = p->dim;
  double n_acc = 0, eps_sum = 0;
  for (int64_t k = 0; k < mc->chains && rc == TF_OK; k++) {
    rc = tf_lat_hmc_reset(h, x0 ? x0 + k * d : NULL);
    if (rc == TF_ENUMERIC) /* MALA's contract: a start without density is a bad argument */
      rc = tf_error(TF_EINVAL, "chain %lld starts where log q = %g", (long long)k, -h->S);
    if (rc == TF_OK) rc = tf_lat_hmc_run(h, rng, x ? x + k * mc->n_per_chain * d : NULL, NULL,
                                         NULL);
    for (int64_t t = 0; rc == TF_OK && t < cfg.n_traj; t++)
      n_acc += h->hist[t * H_NCOL + TF_LAT_HMC_ACC];
    eps_sum += h->eps;
  }
  if (rc == TF_OK && stats) {
    const double total = (double)mc->chains * (double)cfg.n_traj;
    stats->accept = total > 0 ? n_acc / total : NAN;
    stats->step = eps_sum / (double)mc->chains;
  }
  tf_lat_hmc_destroy(h);
  if (rc) return tf_error(rc, "tf_physics_mcmc (%s, HMC): %s", p->m->name, tf_errmsg());
  return TF_OK;
}
