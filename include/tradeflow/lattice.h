/* tradeflow — 2-D lattice field theory: free field through FFTW, momentum-space two-point
 * functions, the HMC reference sampler of the phi^4 modules, and the lattice analysis
 * (DESIGN.md section 5; definitions, normalisations and algorithms: physics/lattice/README.md).
 *
 * Lattice and layout.  A periodic L x L lattice, V = L^2 sites; a field configuration is V
 * doubles, x[i * L + j] = phi at site (i, j) (i: direction 0, "time"; j: direction 1), the
 * layout of the physics modules "phi4" and "phi4_mass".  Batches are (n, V) row-major.
 * Momenta p = (2 pi a / L, 2 pi b / L), a, b in 0..L-1; momentum-space arrays are (L, L) with
 * p = (a, b) at a * L + b.  Lattice momentum: khat^2(p) = 4 sin^2(p_0 / 2) + 4 sin^2(p_1 / 2).
 *
 * Fourier convention (unnormalised forward transform, FFTW's):
 *   phi~(p) = sum_x exp(-i p.x) phi_x,   phi_x = (1/V) sum_p exp(i p.x) phi~(p).
 * The momentum-space two-point function is G~(p) = <|phi~(p)|^2> / V, so that
 *   G~(p) = sum_x exp(-i p.x) G(x),   G(x) = (1/V) sum_y <phi_y phi_{y+x}>.
 *
 * Free field (mass form, lambda = 0, m2 > 0): S = phi^T (-Laplacian + m2) phi (no 1/2), so
 * exp(-S) is Gaussian with covariance (1/2)(-Laplacian + m2)^-1:
 *   G~(p) = 1 / (2 lambda_p),  lambda_p = m2 + khat^2(p);   chi = sum_x G(x) = 1 / (2 m2);
 *   log Z = (V/2) log pi - (1/2) sum_p log lambda_p;  second-moment xi = 1 / sqrt(m2) exactly.
 *
 * Errors: functions that can fail return TF_OK or a status of error.h with a message
 * (tf_errmsg()) naming the argument and the value.  Threading: a tf_lat_fft, tf_lat_hmc or
 * tf_lat_meas object must not be used by two threads at once (they own scratch buffers); the
 * *_create functions make FFTW plans, and the FFTW planner is not thread-safe: create objects
 * from one thread.  Nothing here is collective (no MPI).  Precision: double throughout.
 */
#ifndef TRADEFLOW_LATTICE_H
#define TRADEFLOW_LATTICE_H

#include <stdint.h>

#include "tradeflow/physics.h"
#include "tradeflow/rng.h"
#include "tradeflow/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- FFT workspace (physics/lattice/fourier.c) ---------------------------------------------- */

/* FFTW plans (r2c and c2r, FFTW_ESTIMATE: deterministic) and buffers for one L.  Plans are made
 * once here and only executed afterwards.  L >= 2, else TF_EINVAL. */
typedef struct tf_lat_fft tf_lat_fft;
int tf_lat_fft_create(int L, tf_lat_fft **out);
void tf_lat_fft_destroy(tf_lat_fft *f); /* NULL is harmless */
int tf_lat_fft_L(const tf_lat_fft *f);

/* ---- free field (exact) --------------------------------------------------------------------- */

/* n independent exact samples of exp(-S), S = phi^T (-Laplacian + m2) phi, into x (n, V):
 *   phi = F^-1[ (2 lambda_p)^(-1/2) F[xi] ],  xi ~ N(0, I) (V normals per sample from rng).
 * TF_ERANGE when m2 is not finite and > 0. */
int tf_lat_free_sample(tf_lat_fft *f, double m2, int64_t n, tf_rng *rng, double *x);
/* Exact G(x) = <phi_0 phi_x> (L, L) at x = (i, j), by an inverse FFT of 1 / (2 lambda_p). */
int tf_lat_free_g(tf_lat_fft *f, double m2, double *g);
/* Exact G~(p) = 1 / (2 lambda_p), (L, L).  No FFT needed. */
int tf_lat_free_gp(int L, double m2, double *gp);
/* chi = sum_x G(x) = 1 / (2 m2) (NaN unless m2 > 0). */
double tf_lat_free_chi(double m2);
/* log Z = log of the integral of exp(-S) d^V phi = (V/2) log pi - (1/2) sum_p log lambda_p. */
int tf_lat_free_log_z(int L, double m2, double *log_z);

/* ---- momentum-space two-point function of configurations ------------------------------------ */

/* For configurations x (n, dim), dim == L^2 of f (else TF_EINVAL naming both): gp (L, L) =
 * (1/n) sum_i |phi~_i(p)|^2 / V (one r2c FFT per configuration) and, when gp_err != NULL, its
 * standard error sd / sqrt(n) treating the configurations as independent (NaN for n == 1).
 * Not connected: G~(0) = V <m^2>.  TF_EINVAL for n < 1, TF_ENUMERIC for a non-finite value. */
int tf_lat_two_point_p(tf_lat_fft *f, int64_t n, int64_t dim, const double *x, double *gp,
                       double *gp_err);

/* ---- HMC reference sampler (physics/lattice/hmc.c) ------------------------------------------ */

/* H(phi, pi) = pi^T M^-1 pi / 2 + S(phi, c) with S the module's action ("phi4": hopping form,
 * c = kappa; "phi4_mass": mass form, c = m2), integrated with n_md steps of eps (untuned: eps =
 * tau / n_md; tuned: n_md = ceil(tau / eps), a trajectory of length n_md eps in [tau, tau +
 * eps), eps <= 4 tau), then Metropolis accept/reject on the total dH (exact for any eps).
 *   M = I, or with Fourier acceleration M_p = 2 a (khat^2(p) + M_fa^2) with a the coefficient
 *   of the kinetic term in S (1 in the mass form, kappa in the hopping form): the momenta are
 *   drawn with covariance M and dphi/dt = M^-1 pi, both through FFTW.  With lambda = 0 and
 *   M_fa^2 = m2 every mode of the free field then has frequency 1 (tau = pi/2 decorrelates it
 *   in one trajectory).
 * Integrators: leapfrog (one force per step), or Omelyan's 2nd-order minimum-norm scheme
 *   (lambda = 0.1931833, two forces per step, far smaller dH at equal eps).
 * Step tuning: during thermalisation only (Robbins-Monro on log eps towards target_accept,
 *   Polyak average over its second half), then eps and n_md = ceil(tau / eps) are frozen, so the chain
 *   after thermalisation is a time-homogeneous Markov chain. */
typedef enum { TF_LAT_LEAPFROG = 0, TF_LAT_OMELYAN = 1 } tf_lat_integrator;

typedef struct {
  tf_lat_integrator integrator; /* default TF_LAT_OMELYAN */
  double tau;                   /* trajectory length, default 1 */
  int n_md;                     /* MD steps: initial guess when tuning, else fixed (default 10) */
  double target_accept;         /* in (0, 1), default 0.8 (0.7-0.9 is efficient) */
  int tune;                     /* 1 (default): tune eps during thermalisation */
  int64_t n_therm;              /* thermalisation trajectories, default 1000 */
  int64_t n_traj;               /* trajectories of tf_lat_hmc_run, default 10000 */
  int64_t meas_every;           /* record the field every k trajectories (default 1) */
  int fourier_accel;            /* 1 (default) or 0 */
  double fa_mass;               /* M_fa (> 0), or 0: sqrt(max(m2_eff, 4 sin^2(pi / L)))
                                   with m2_eff = m2 (mass form) or (1 - 2 lambda - 4 kappa) /
                                   kappa (hopping form) */
} tf_lat_hmc_config;

tf_lat_hmc_config tf_lat_hmc_defaults(void);

/* Summary of the trajectories of the last tf_lat_hmc_run (after thermalisation). */
typedef struct {
  int64_t n_traj;
  double accept;               /* accepted / n_traj */
  double eps;                  /* frozen step */
  int n_md;                    /* frozen steps per trajectory */
  double dh_mean, dh_err;      /* <dH> (>= 0, ~ <dH^2>/2 for small dH) */
  double exp_mdh, exp_mdh_err; /* <exp(-dH)>: 1 for an exact, area-preserving integrator;
                                  error with its tau_int */
  tf_tau_result tau_abs_m;     /* of |m| per trajectory (units: trajectories) */
  tf_tau_result tau_s;         /* of s = S / V per trajectory */
  double sec_per_traj;         /* wall clock of tf_lat_hmc_run / n_traj */
} tf_lat_hmc_stats;

/* Columns of the per-trajectory table of tf_lat_hmc_run (after the trajectory). */
enum { TF_LAT_HMC_M = 0, TF_LAT_HMC_S = 1, TF_LAT_HMC_DH = 2, TF_LAT_HMC_ACC = 3,
       TF_LAT_HMC_NCOL = 4 };

typedef struct tf_lat_hmc tf_lat_hmc;

/* An HMC sampler of module p ("phi4" or "phi4_mass", else TF_EUNSUP) at coupling c (checked
 * against the module's range), state phi = 0 (the module's cold start).  p must outlive h.
 * Allocates everything the sampler needs (history of cfg->n_traj trajectories, FFT plans
 * when fourier_accel); nothing is allocated afterwards. */
int tf_lat_hmc_create(const tf_physics *p, double c, const tf_lat_hmc_config *cfg,
                      tf_lat_hmc **out);
void tf_lat_hmc_destroy(tf_lat_hmc *h); /* NULL is harmless */
/* Restart: field x0 (V values; NULL: cold start), step back to its initial value (unfrozen),
 * statistics cleared.  TF_ENUMERIC when S(x0) is not finite. */
int tf_lat_hmc_reset(tf_lat_hmc *h, const double *x0);
/* cfg->n_therm trajectories, tuning the step when cfg->tune; then freezes n_md and eps. */
int tf_lat_hmc_thermalise(tf_lat_hmc *h, tf_rng *rng);
/* One trajectory at the current step (frozen, or cfg->n_md before thermalisation).  dh and
 * accepted may be NULL.  Not recorded in the run statistics. */
int tf_lat_hmc_trajectory(tf_lat_hmc *h, tf_rng *rng, double *dh, int *accepted);
/* cfg->n_traj trajectories (thermalises first if that has not happened since create / reset).
 *   x   (cfg->n_traj / cfg->meas_every, V): the field after trajectories k, 2k, ... (NULL: not
 *       wanted);
 *   obs (cfg->n_traj, TF_LAT_HMC_NCOL): m, S, dH, accepted of every trajectory (NULL: not
 *       wanted);
 *   st  the summary (NULL: not wanted; also available from tf_lat_hmc_stats). */
int tf_lat_hmc_run(tf_lat_hmc *h, tf_rng *rng, double *x, double *obs, tf_lat_hmc_stats *st);
/* Summary of the last run; TF_EINVAL before any run (or with n_traj < 2). */
int tf_lat_hmc_stats_get(const tf_lat_hmc *h, tf_lat_hmc_stats *st);
/* The current field (V values, owned by h, valid until its next call). */
const double *tf_lat_hmc_field(const tf_lat_hmc *h);
/* Molecular dynamics only (no accept/reject, h's field untouched): integrate (phi, mom) in
 * place over n_md steps of size eps with h's integrator and kinetic term; *dh (may be NULL)
 * = H(end) - H(start).  The integrators are time-reversible: integrating again with -mom
 * returns to the start.  For force tests and step-size studies. */
int tf_lat_hmc_integrate(tf_lat_hmc *h, int n_md, double eps, double *phi, double *mom,
                         double *dh);

/* ---- analysis of configurations (physics/lattice/measure.c) --------------------------------- */

/* An estimate and its standard error. */
typedef struct {
  double val, err;
} tf_lat_est;

/* Results.  m = sum_x phi_x / V, s = S / V; <.> are (weighted) sample means.
 *   chi    = V (<m^2> - <|m|>^2)   (DESIGN.md's chi)
 *   chi2   = V <m^2> = sum_x G(x) = G~(0)   (the free field's 1 / (2 m2))
 *   binder = 1 - <m^4> / (3 <m^2>^2)
 * Two-point functions come in two variants.  Both are invariant under flipping the sign of
 * any configuration, so a chain stuck in one sign (the broken phase) and a sign-symmetrised
 * sample (a flow trained with augmentation) give the same numbers:
 *   G(x)   = (1/V) sum_y <phi_y phi_{y+x}>: connected in the symmetric phase, where <m> = 0 by
 *            the sign symmetry (not subtracting the sample's <m>^2 keeps G exact there, e.g.
 *            the free field's G, and keeps the sign invariance);
 *   Gc(x)  = G(x) - <|m|>^2: connected within one sign; sums to chi; for the broken phase.
 * and, for each,
 *   G~(p)  = sum_x exp(-i p.x) G(x) = <|phi~(p)|^2> / V  (Gc~ differs only at p = 0: chi)
 *   C(t)   = sum_j (G(t, j) + G(j, t)) / 2  (zero-momentum time-slice correlator, both axes)
 *   meff(t) = arccosh((C(t-1) + C(t+1)) / (2 C(t))), periodic in t; NaN where C(t) <= 0 or
 *            the argument is < 1
 *   xi     = sqrt(G~(0) / G~(p_min) - 1) / (2 sin(pi / L)), G~(p_min) the mean over the two
 *            axes (second-moment correlation length; NaN when the root is imaginary); xi_c the
 *            same with Gc~(0) = chi.  Free field: xi = 1 / sqrt(m2) exactly.
 * Errors: jackknife over n_blocks contiguous blocks (in the order the configurations were
 * added), ratio estimators for the weighted case.  Blocks must be longer than ~2 tau_int for
 * correlated chains: blocks_ok says whether block length >= 4 max(tau_abs_m, tau_s).
 * Arrays are owned by the accumulator and valid until its next result call or destroy. */
typedef struct {
  int L;
  int64_t n;
  int n_blocks;
  double ess;                     /* Kish effective sample size (n without weights) */
  tf_lat_est m, abs_m, m2, m4, s; /* s: NaN without actions */
  tf_lat_est chi, chi2, binder, xi, xi_c;
  tf_tau_result tau_abs_m, tau_s; /* unweighted, in the order added (tau_s zero without S) */
  int blocks_ok;
  const double *g, *g_err;        /* (L, L) at x = (i, j): i L + j */
  const double *gp, *gp_err;      /* (L, L) at p = 2 pi (a, b) / L: a L + b */
  const double *ct, *ct_err;      /* (L) */
  const double *meff, *meff_err;  /* (L) */
  const double *gc, *gc_err;      /* (L, L) */
  const double *ctc, *ctc_err;    /* (L) */
  const double *meffc, *meffc_err; /* (L) */
} tf_lat_result;

typedef struct tf_lat_meas tf_lat_meas;

/* An accumulator for exactly n_total >= 2 configurations of an L x L lattice, jackknife with
 * n_blocks in [2, n_total] (0: min(100, n_total)); configuration k (0-based, in the order
 * added) belongs to block floor(k n_blocks / n_total).  Allocates O(n_total + n_blocks L^2). */
int tf_lat_meas_create(int L, int64_t n_total, int n_blocks, tf_lat_meas **out);
void tf_lat_meas_destroy(tf_lat_meas *a); /* NULL is harmless */
/* Add n configurations x (n, dim) (dim must be L^2), with their actions S (n, or NULL) and
 * log importance weights (n, or NULL = equal weights; -inf allowed = weight 0).  Whether
 * actions / weights are given must be the same in every call.  Nothing is added when an
 * error is returned (TF_EINVAL: shape, too many configurations; TF_ENUMERIC: a NaN or inf,
 * naming the configuration and the site). */
int tf_lat_meas_add(tf_lat_meas *a, int64_t n, int64_t dim, const double *x, const double *action,
                    const double *log_w);
/* The analysis, once all n_total configurations are added (else TF_EINVAL).  TF_ENUMERIC
 * when every weight is 0. */
int tf_lat_meas_result(tf_lat_meas *a, tf_lat_result *r);

#ifdef __cplusplus
}
#endif
#endif
