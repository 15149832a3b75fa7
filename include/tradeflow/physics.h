/* tradeflow — the physics interface: unnormalized target densities q(x | c).
 *
 * A physics module describes a family of targets indexed by one external parameter c > 0
 * (a temperature T, an inverse temperature beta, a hopping parameter kappa...):
 *   log q(x | c) = -E(x, c)      (unnormalized, nats; the module's header comment and
 *                                  tf_physics_describe() state which constant is dropped)
 * and supplies, batched over rows of x (n, D) row-major in double precision:
 *   - log q(x | c), its gradient in x, and d/dc log q(x | c) = -A(x, c) (DESIGN.md section 4);
 *   - optionally an exact sampler, the exact log Z(c), a reference MCMC sampler;
 *   - named observables per sample (their expectations are what evaluation reports);
 *   - a conversion from the layout of external data files (e.g. Cartesian coordinates with the
 *     centre of mass still in) to the module's coordinates.
 * Boltzmann targets with temperature T: E = U(x) / T, so d/dT log q = U / T^2; with an inverse
 * temperature beta: E = beta U, d/dbeta log q = -U.
 *
 * Modules are created by name with "key=value" options (tf_physics_create); the registry lists
 * what exists.  Options a module does not know, and an option given twice, are errors naming
 * the key.  Module definitions and normalisations: physics/molecular/README.md.
 *
 * Precision: everything here is double.  Threading: an instance may be used by several
 * threads only for the const calls (log_q, observables); samplers take the caller's rng.
 * Ownership: the caller owns every array; the instance owns only its own state.
 */
#ifndef TRADEFLOW_PHYSICS_H
#define TRADEFLOW_PHYSICS_H

#include <stdint.h>

#include "tradeflow/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tf_physics tf_physics;

typedef struct {
  const char *key;
  const char *value;
} tf_physics_opt;

/* ---- registry ---------------------------------------------------------------------------- */

int tf_physics_module_count(void);
const char *tf_physics_module_name(int i);   /* "double_well", "gmm", ... */
const char *tf_physics_module_help(int i);   /* one paragraph: definition, parameter, options */

/* Create module `name` with options opt[0..n_opt).  TF_OK and *out, or an error naming the
 * module, the option key and value and what is accepted (unknown name, unknown key, bad value). */
int tf_physics_create(const char *name, int n_opt, const tf_physics_opt *opt, tf_physics **out);
void tf_physics_destroy(tf_physics *p); /* NULL is harmless */

/* ---- description ------------------------------------------------------------------------- */

const char *tf_physics_name(const tf_physics *p);
/* Canonical description with every option, e.g. "double_well dim=2", for file attributes. */
const char *tf_physics_describe(const tf_physics *p);
int tf_physics_dim(const tf_physics *p);
/* Name of the parameter c ("T", "beta", "kappa"). */
const char *tf_physics_param(const tf_physics *p);
/* Valid parameter interval [lo, hi] (where log q is defined and the module is meant to be
 * used) and the suggested training range and boundary value c0 (DESIGN.md section 5). */
void tf_physics_param_range(const tf_physics *p, double *lo, double *hi);
void tf_physics_default_range(const tf_physics *p, double *c_min, double *c_max, double *c0);

/* ---- density ----------------------------------------------------------------------------- */

/* For rows i < n of x (n, D) with parameters c[i]:
 *   log_q[i]          = log q(x_i | c_i)
 *   grad_x[i, :]      = d/dx log q(x_i | c_i)           (NULL: not wanted)
 *   dlogq_dc[i]       = d/dc log q(x_i | c_i) at fixed x (NULL: not wanted)
 * log_q may be NULL when only derivatives are wanted.  Returns TF_OK, or TF_ERANGE when a
 * c[i] lies outside the valid interval.  Non-finite x gives non-finite outputs, not an error. */
int tf_physics_log_q(const tf_physics *p, int64_t n, const double *x, const double *c,
                     double *log_q, double *grad_x, double *dlogq_dc);

/* The potential-like quantity whose expectation is reported as "energy" (U for Boltzmann
 * targets, -log g for the GMM), per row, independent of c.  TF_EUNSUP for lattice modules,
 * whose action depends on the coupling: their "energy" observable is S(x, c). */
int tf_physics_energy(const tf_physics *p, int64_t n, const double *x, double *u);

/* log Z(c) = log of the integral of q(x | c) dx, exactly or by quadrature to ~1e-10.
 * TF_EUNSUP when the module has none. */
int tf_physics_log_z(const tf_physics *p, double c, double *log_z);

/* ---- samplers ---------------------------------------------------------------------------- */

/* 1 if tf_physics_sample works at this c. */
int tf_physics_has_sampler(const tf_physics *p, double c);
/* n independent exact samples at c into x (n, D).  TF_EUNSUP without an exact sampler. */
int tf_physics_sample(const tf_physics *p, double c, int64_t n, tf_rng *rng, double *x);

/* Reference MCMC (MALA, or the module's own sampler): `chains` independent chains started
 * from x0 (chains, D) (NULL: the module's default start), each run `burn_in` steps and then
 * `n_per_chain` recorded states spaced `thin` steps apart, into x (chains * n_per_chain, D),
 * chain-major (all states of chain 0 first).  The step size is tuned during burn-in towards
 * acceptance `target_accept` and then frozen. */
typedef struct {
  int64_t chains;
  int64_t n_per_chain;
  int64_t burn_in;
  int64_t thin;
  double target_accept; /* e.g. 0.6 for MALA */
  double step0;         /* initial step size (0: module default) */
  int fourier_accel;    /* lattice HMC: Fourier acceleration, -1 module default (on), 0 off,
                           1 on; MALA ignores it */
} tf_mcmc_config;

typedef struct {
  double accept;    /* acceptance rate after burn-in (NaN when n_per_chain == 0) */
  double step;      /* frozen step size */
} tf_mcmc_stats;

tf_mcmc_config tf_mcmc_defaults(void);
/* "HMC" for modules with their own Hamiltonian Monte Carlo (lattice fields; burn_in and thin
 * then count trajectories, n_per_chain recorded fields), "MALA" otherwise. */
const char *tf_physics_mcmc_sampler(const tf_physics *p);
/* The acceptance that sampler is best tuned to: 0.8 for HMC, 0.6 for MALA. */
double tf_physics_mcmc_target(const tf_physics *p);
int tf_physics_mcmc(const tf_physics *p, double c, const tf_mcmc_config *cfg, const double *x0,
                    tf_rng *rng, double *x, tf_mcmc_stats *stats);

/* ---- observables ------------------------------------------------------------------------- */

int tf_physics_n_obs(const tf_physics *p);
const char *tf_physics_obs_name(const tf_physics *p, int k);
/* obs (n, n_obs) row-major: observable k of row i at parameter c[i].  The first observable of
 * every module is "energy": U (tf_physics_energy) for molecular modules, whose observables do
 * not depend on c (c may then be NULL); the action S(x, c) for lattice modules, which need c
 * (NULL: TF_EINVAL). */
int tf_physics_observables(const tf_physics *p, int64_t n, const double *x, const double *c,
                           double *obs);

/* Derived quantities: functions of the observables' expectations, such as the susceptibility
 * chi = V (<m^2> - <|m|>^2) and the Binder cumulant of lattice fields (0 for most modules).
 * tf_physics_derived maps means[0..n_obs) to out[0..n_derived) (NaN in, NaN out). */
int tf_physics_n_derived(const tf_physics *p);
const char *tf_physics_derived_name(const tf_physics *p, int k);
int tf_physics_derived(const tf_physics *p, const double *means, double *out);

/* ---- external data ----------------------------------------------------------------------- */

/* Convert rows of an external file with raw_dim columns into the module's coordinates
 * x (n, D).  Identity when raw_dim == D and the module has no other layout; e.g. DW4 and
 * LJ13 accept Cartesian coordinates (n, 8) / (n, 39), remove the centre of mass and express
 * the rest in the module's orthonormal internal basis.  TF_EINVAL (naming both widths) when
 * raw_dim is not a layout the module accepts. */
int tf_physics_import(const tf_physics *p, int64_t n, int64_t raw_dim, const double *raw,
                      double *x); /* raw == x (in place) is allowed */
/* Width of the external layout (Cartesian coordinates) and the conversion back, for writing
 * samples other programs read; raw_dim == D and the identity for most modules. */
int64_t tf_physics_export_dim(const tf_physics *p);
int tf_physics_export(const tf_physics *p, int64_t n, const double *x, double *raw);
/* (export refuses raw == x when the widths differ) */

/* ---- symmetries ---------------------------------------------------------------------------- */

/* Symmetry augmentation of training data: each row x (n, D) is replaced in place by g x with
 * g drawn uniformly (Haar measure) from a symmetry group of the energy, so that U(g x) = U(x)
 * and log q is unchanged at every c.  A flow trained on augmented data sees the symmetric
 * Boltzmann density even when the reference samples (MD, MCMC) do not visit every symmetric
 * copy.  tf_physics_augment_group names the group ("particle permutations x O(2)") or
 * returns NULL when the module has none; tf_physics_augment then fails with TF_EUNSUP. */
const char *tf_physics_augment_group(const tf_physics *p);
int tf_physics_augment(const tf_physics *p, int64_t n, double *x, tf_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
