/* physics-impl.h — private: the module descriptor behind include/tradeflow/physics.h.
 *
 * A module is a const tf_phys_module (name, help, option table, function pointers) plus the
 * per-instance struct tf_physics below.  physics.c owns everything generic: the registry,
 * option parsing and the canonical description, argument and range checks, the parameter
 * form of log q, observables' first column, identity import/export; mcmc.c runs MALA on any
 * module.  A module supplies only its potential, optional extras, and its ranges.
 *
 * Parameter forms (tf_phys_form), with U(x) the module's energy (tf_physics_energy):
 *   TF_PHYS_TEMPERATURE  log q = -U / T,   grad_x log q = -grad U / T,  d/dT log q = U / T^2
 *   TF_PHYS_BETA         log q = -beta U,  grad_x log q = -beta grad U, d/dbeta log q = -U
 *   TF_PHYS_ACTION       log q = -S(x, c) from the module's `action` (lattice actions, where
 *                        the parameter is a coupling such as kappa or m^2).  The "energy"
 *                        observable is then S(x, c) and needs c; tf_physics_energy, which has
 *                        no c, is TF_EUNSUP for such modules.
 *
 * Symbols shared between the physics sources carry the prefix tf_phys_ (not public API).
 */
#ifndef TRADEFLOW_PHYSICS_IMPL_H
#define TRADEFLOW_PHYSICS_IMPL_H

#include <stdint.h>

#include "tradeflow/lattice.h"
#include "tradeflow/physics.h"
#include "tradeflow/rng.h"

enum { TF_PHYS_MAX_OPTS = 4, TF_PHYS_DESCRIBE_LEN = 256 };

typedef enum { TF_PHYS_OPT_INT, TF_PHYS_OPT_REAL, TF_PHYS_OPT_CHOICE } tf_phys_opt_kind;

/* One option: integers and reals must lie in [lo, hi]; a choice is an index into `choices`
 * ("ordered|unordered"), stored as a double in tf_physics.opt. */
typedef struct {
  const char *key;
  tf_phys_opt_kind kind;
  double def;
  double lo, hi;
  const char *choices;
} tf_phys_opt;

typedef enum { TF_PHYS_TEMPERATURE, TF_PHYS_BETA, TF_PHYS_ACTION } tf_phys_form;

typedef struct tf_phys_module tf_phys_module;

struct tf_physics {
  const tf_phys_module *m;
  double opt[TF_PHYS_MAX_OPTS]; /* option values in the order of m->opts */
  int dim;
  int64_t raw_dim;              /* external layout width (export_dim) */
  double lo, hi;                /* valid parameter interval */
  double cmin, cmax, c0;        /* default training range and boundary */
  void *state;                  /* module-owned, freed by m->teardown (or free() if NULL) */
  char describe[TF_PHYS_DESCRIBE_LEN];
};

struct tf_phys_module {
  const char *name;
  const char *help;
  const char *param; /* "T", "beta" */
  tf_phys_form form;
  int n_opts;
  const tf_phys_opt *opts;
  /* After the options are parsed: set dim, raw_dim, ranges and state.  Errors via tf_error. */
  int (*setup)(tf_physics *p);
  void (*teardown)(tf_physics *p); /* NULL: free(p->state) */
  /* U(x) of one row; grad_u (D) receives dU/dx when not NULL.  Never fails: non-finite x or
   * overlapping particles give non-finite values. */
  double (*energy)(const tf_physics *p, const double *x, double *grad_u);
  /* TF_PHYS_ACTION instead of energy: S(x, c) of one row; grad_s (D) receives dS/dx and
   * *ds_dc dS/dc when not NULL.  Never fails (non-finite x: non-finite values). */
  double (*action)(const tf_physics *p, const double *x, double c, double *grad_s,
                   double *ds_dc);
  /* Optional (NULL: TF_EUNSUP).  c is already checked against [lo, hi]. */
  int (*log_z)(const tf_physics *p, double c, double *log_z);
  int (*has_sampler)(const tf_physics *p, double c);
  int (*sample)(const tf_physics *p, double c, int64_t n, tf_rng *rng, double *x);
  /* Observables: names[0] is "energy", filled by physics.c; observables() fills obs[1..n_obs)
   * of one row given its energy u. */
  int n_obs;
  const char *const *obs_names;
  void (*observables)(const tf_physics *p, const double *x, double u, double *obs);
  /* Derived quantities: functions of the observables' expectations (e.g. chi = V (<m^2> -
   * <|m|>^2)); derived() maps the n_obs means to n_derived values. */
  int n_derived;
  const char *const *derived_names;
  void (*derived)(const tf_physics *p, const double *means, double *out);
  /* MCMC: default start of chain `chain` (D values) and the default MALA step at c0, scaled
   * by sqrt(T / c0) (temperature) or sqrt(c0 / beta) (beta) for other parameters. */
  void (*start)(const tf_physics *p, int64_t chain, double *x);
  double mala_step;
  /* Optional HMC reference sampler replacing MALA in tf_physics_mcmc (lattice fields;
   * tf_physics_mcmc_sampler then says "HMC"); called with validated arguments, same
   * contract as tf_physics_mcmc. */
  int (*mcmc)(const tf_physics *p, double c, const tf_mcmc_config *cfg, const double *x0,
              tf_rng *rng, double *x, tf_mcmc_stats *stats);
  /* External layout (raw_dim != dim).  NULL: only the identity (raw_dim == dim). */
  void (*import_raw)(const tf_physics *p, int64_t n, const double *raw, double *x);
  void (*export_raw)(const tf_physics *p, int64_t n, const double *x, double *raw);
  /* Optional: replace each row by its image under a random element of a symmetry group of U
   * (U and hence log q unchanged for every c), drawn uniformly (Haar) from rng. */
  void (*augment)(const tf_physics *p, int64_t n, double *x, tf_rng *rng);
  const char *augment_group; /* what augment draws from, for messages and the help text */
};

/* ---- the registry (physics/molecular/..., physics/lattice/...) ------------------------------ */

extern const tf_phys_module tf_phys_double_well;
extern const tf_phys_module tf_phys_multiwell;
extern const tf_phys_module tf_phys_manywell;
extern const tf_phys_module tf_phys_gmm;
extern const tf_phys_module tf_phys_mueller_brown;
extern const tf_phys_module tf_phys_dw4;
extern const tf_phys_module tf_phys_lj13;
extern const tf_phys_module tf_phys_phi4;      /* physics/lattice/phi4.c */
extern const tf_phys_module tf_phys_phi4_mass;

/* ---- helpers shared by modules (physics.c, molecular/quad.c) -------------------------------- */

/* TF_ERANGE naming module, parameter and value when c is not finite or outside [lo, hi]. */
int tf_phys_check_param(const tf_physics *p, double c);

/* log of the integral over [a, b] of exp(f(x)), by the trapezoidal rule on a grid of step h0
 * halved until two successive values of the log differ by at most rtol (at least one halving,
 * at most 14).  The integrand must be negligible at both ends (the rule is then spectrally
 * accurate for smooth f).  The sum is kept as a running log-sum-exp, so f may be large.
 * TF_ENUMERIC when no convergence or the integral is 0 / not finite. */
int tf_phys_quad_log1d(double (*f)(double x, const void *ctx), const void *ctx, double a,
                       double b, double h0, double rtol, double *log_int);
/* The same on the box [ax, bx] x [ay, by] with a square grid of step h0 (at most 3 halvings:
 * h0 must already be close to resolving the integrand). */
int tf_phys_quad_log2d(double (*f)(double x, double y, const void *ctx), const void *ctx,
                       double ax, double bx, double ay, double by, double h0, double rtol,
                       double *log_int);

/* The quartic double well U(x) = x^4 + a x^2 + b x with two minima (a < 0, |b| small). */
typedef struct {
  double a, b;
  double m[2];  /* minima, m[0] < 0 < m[1] */
  double um[2]; /* U(m[i]) */
} tf_phys_quartic;

/* Fills q; TF_EINVAL when U has not two minima on either side of 0. */
int tf_phys_quartic_init(tf_phys_quartic *q, double a, double b);
double tf_phys_quartic_u(const tf_phys_quartic *q, double x);
/* log of the integral of exp(-U(x) / T) over the real line (quadrature, ~1e-13 relative). */
int tf_phys_quartic_log_z(const tf_phys_quartic *q, double T, double *log_z);

/* Exact sampler of exp(-U(x) / T): rejection from a piecewise-Gaussian envelope.  On each
 * half-line the Gaussian centred at that side's minimum with variance T / (2 (3 m^2 + a)) lies
 * above exp(-(U(x) - U(m)) / T) (because U(x) - U(m) = (x - m)^2 (x^2 + 2 m x + 3 m^2 + a) and
 * the second factor is smallest at x = 0 on the half-line), so the bound is analytic. */
typedef struct {
  double T;
  double s[2];   /* envelope standard deviations */
  double p_pos;  /* probability of proposing on the positive side */
} tf_phys_quartic_env;

void tf_phys_quartic_env_init(const tf_phys_quartic *q, double T, tf_phys_quartic_env *e);
double tf_phys_quartic_draw(const tf_phys_quartic *q, const tf_phys_quartic_env *e,
                            tf_rng *rng);

/* ---- lattice (physics/lattice/: phi4.c, fourier.c, hmc.c, measure.c) ------------------------ */

/* What HMC and the samplers need to know of a lattice module at coupling c.  The quadratic
 * part of S in momentum space is sum_p |phi~(p)|^2 / V (kin khat^2(p) + kin m2_eff). */
typedef struct {
  int L;
  double lambda;
  int hopping;   /* 1: hopping form (c = kappa), 0: mass form (c = m2) */
  double kin;    /* coefficient of the gradient term: kappa (hopping) or 1 (mass) */
  double m2_eff; /* (1 - 2 lambda - 4 kappa) / kappa (hopping) or m2 (mass) */
} tf_phys_lattice;

/* TF_OK and *out for "phi4" and "phi4_mass" (phi4.c); TF_EUNSUP naming the module otherwise. */
int tf_phys_lattice_get(const tf_physics *p, double c, tf_phys_lattice *out);

/* khat^2(p) = 4 sin^2(pi a / L) + 4 sin^2(pi b / L) for p = 2 pi (a, b) / L. */
double tf_phys_khat2(int L, int a, int b);
/* Transforms on f's buffers (fourier.c); half-grid arrays are (L, L/2 + 1), FFTW's layout.
 *   filter:       y = F^-1[ k F[x] ] for a real multiplier k even in p (x == y allowed);
 *   power:        pw = |F[x]|^2 (unnormalised);
 *   inverse_real: y = (1/V) sum_p k(p) exp(i p.x) for a real k even in p. */
void tf_phys_fft_filter(tf_lat_fft *f, const double *k, const double *x, double *y);
void tf_phys_fft_power(tf_lat_fft *f, const double *x, double *pw);
void tf_phys_fft_inverse_real(tf_lat_fft *f, const double *k, double *y);

/* The `mcmc` hook of the lattice modules: HMC (hmc.c), contract of tf_physics_mcmc. */
int tf_phys_lat_hmc_mcmc(const tf_physics *p, double c, const tf_mcmc_config *cfg,
                         const double *x0, tf_rng *rng, double *x, tf_mcmc_stats *stats);

#endif
