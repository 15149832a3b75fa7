/* mcmc.c — the generic reference sampler: MALA on log q(x | c) with a tuned step.
 *
 * Exported: tf_mcmc_defaults, tf_physics_mcmc, tf_physics_mcmc_sampler, tf_physics_mcmc_target.
 *
 * Metropolis-adjusted Langevin: from x, propose
 *   y = x + (eps^2 / 2) grad log q(x) + eps xi,   xi ~ N(0, I),
 * and accept with min(1, q(y) K(x | y) / (q(x) K(y | x))), K(b | a) = N(b; a + eps^2/2 grad
 * log q(a), eps^2 I).  A proposal with non-finite log q is rejected.  All chains advance in
 * lock step so that each step is one batched tf_physics_log_q call, and share one step size.
 *
 * Step tuning (burn-in only): Robbins-Monro on log eps,
 *   log eps <- log eps + g_t (a_t - target),  g_t = (t + 10)^-0.6,
 * with a_t the mean over chains of the acceptance probability min(1, ratio) (less noisy than
 * the accept/reject indicator).  The frozen step is exp of the average of log eps over the
 * second half of burn-in (Polyak averaging removes the last iterations' noise).  With
 * burn_in = 0 the initial step is used unchanged.  Initial step: cfg->step0, or the module's
 * default scaled by sqrt(T / c0) (or sqrt(c0 / beta)).
 *
 * Memory: one allocation per call (work arrays for all chains); nothing in the loop.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "physics-impl.h"
#include "tradeflow/error.h"

const char *tf_physics_mcmc_sampler(const tf_physics *p) {
  return !p ? NULL : p->m->mcmc ? "HMC" : "MALA";
}

double tf_physics_mcmc_target(const tf_physics *p) { return p && p->m->mcmc ? 0.8 : 0.6; }

tf_mcmc_config tf_mcmc_defaults(void) {
  tf_mcmc_config c = {.chains = 4,
                      .n_per_chain = 1000,
                      .burn_in = 1000,
                      .thin = 1,
                      .target_accept = 0.6,
                      .step0 = 0,
                      .fourier_accel = -1};
  return c;
}

static int check_config(const tf_physics *p, const tf_mcmc_config *c) {
  const char *bad = NULL;
  if (c->chains < 1) bad = "chains must be >= 1";
  else if (c->n_per_chain < 0) bad = "n_per_chain must be >= 0";
  else if (c->burn_in < 0) bad = "burn_in must be >= 0";
  else if (c->thin < 1) bad = "thin must be >= 1";
  else if (!(c->target_accept > 0 && c->target_accept < 1)) bad = "target_accept must be in (0, 1)";
  else if (!(c->step0 >= 0 && isfinite(c->step0))) bad = "step0 must be finite and >= 0";
  if (bad)
    return tf_error(TF_EINVAL,
                    "tf_physics_mcmc (%s): %s (chains %lld, n_per_chain %lld, burn_in %lld, "
                    "thin %lld, target_accept %g, step0 %g)",
                    p->m->name, bad, (long long)c->chains, (long long)c->n_per_chain,
                    (long long)c->burn_in, (long long)c->thin, c->target_accept, c->step0);
  return TF_OK;
}

int tf_physics_mcmc(const tf_physics *p, double c, const tf_mcmc_config *cfg, const double *x0,
                    tf_rng *rng, double *x, tf_mcmc_stats *stats) {
  if (!p || !cfg || !rng) return tf_error(TF_EINVAL, "tf_physics_mcmc: NULL argument");
  int rc = check_config(p, cfg);
  if (rc) return rc;
  if (cfg->n_per_chain > 0 && !x)
    return tf_error(TF_EINVAL, "tf_physics_mcmc (%s): x is NULL", p->m->name);
  rc = tf_phys_check_param(p, c);
  if (rc) return rc;
  if (p->m->mcmc) return p->m->mcmc(p, c, cfg, x0, rng, x, stats);

  const int64_t nc = cfg->chains, d = p->dim, nd = nc * d;
  /* cur, grad, prop, gprop, noise (nd each); lq, lqp, cvec (nc each) */
  double *buf = malloc((size_t)(5 * nd + 3 * nc) * sizeof *buf);
  if (!buf) return tf_error(TF_ENOMEM, "tf_physics_mcmc (%s): out of memory for %lld chains",
                            p->m->name, (long long)nc);
  double *cur = buf, *grad = cur + nd, *prop = grad + nd, *gprop = prop + nd, *noise = gprop + nd;
  double *lq = noise + nd, *lqp = lq + nc, *cvec = lqp + nc;
  for (int64_t k = 0; k < nc; k++) cvec[k] = c;
  if (x0)
    memcpy(cur, x0, (size_t)nd * sizeof *cur);
  else
    for (int64_t k = 0; k < nc; k++) p->m->start(p, k, cur + k * d);
  rc = tf_physics_log_q(p, nc, cur, cvec, lq, grad, NULL);
  for (int64_t k = 0; rc == TF_OK && k < nc; k++)
    if (!isfinite(lq[k]))
      rc = tf_error(TF_EINVAL, "tf_physics_mcmc (%s): chain %lld starts where log q = %g",
                    p->m->name, (long long)k, lq[k]);
  if (rc) {
    free(buf);
    return rc;
  }

  const double scale = p->m->form == TF_PHYS_TEMPERATURE ? sqrt(c / p->c0)
                       : p->m->form == TF_PHYS_BETA      ? sqrt(p->c0 / c)
                                                         : 1;
  double step = cfg->step0 > 0 ? cfg->step0 : p->m->mala_step * scale, log_eps = log(step);
  double avg_log_eps = 0;
  int64_t n_avg = 0, n_acc = 0, n_prop = 0;
  const int64_t total = cfg->burn_in + cfg->n_per_chain * cfg->thin;

  for (int64_t t = 0; t < total; t++) {
    const int tuning = t < cfg->burn_in;
    const double eps = tuning ? exp(log_eps) : step, h = 0.5 * eps * eps;
    tf_rng_fill_normal_d(rng, noise, nd);
    for (int64_t i = 0; i < nd; i++) prop[i] = cur[i] + h * grad[i] + eps * noise[i];
    rc = tf_physics_log_q(p, nc, prop, cvec, lqp, gprop, NULL);
    if (rc) break;
    double mean_acc = 0;
    for (int64_t k = 0; k < nc; k++) {
      const double *xk = cur + k * d, *yk = prop + k * d, *gy = gprop + k * d, *z = noise + k * d;
      double fwd = 0, rev = 0; /* -log K(y | x) * eps^2, -log K(x | y) * eps^2, up to constants */
      for (int64_t i = 0; i < d; i++) {
        const double r = xk[i] - yk[i] - h * gy[i];
        fwd += z[i] * z[i];
        rev += r * r;
      }
      double log_ratio = lqp[k] - lq[k] + 0.5 * fwd - rev / (2 * eps * eps);
      if (!isfinite(lqp[k]) || isnan(log_ratio)) log_ratio = -INFINITY;
      const double a = log_ratio >= 0 ? 1 : exp(log_ratio);
      mean_acc += a / (double)nc;
      if (log(tf_rng_uniform(rng)) < log_ratio) {
        memcpy(cur + k * d, yk, (size_t)d * sizeof *cur);
        memcpy(grad + k * d, gy, (size_t)d * sizeof *grad);
        lq[k] = lqp[k];
        if (!tuning) n_acc++;
      }
    }
    if (tuning) {
      log_eps += pow((double)t + 10, -0.6) * (mean_acc - cfg->target_accept);
      if (2 * t >= cfg->burn_in) {
        avg_log_eps += log_eps;
        n_avg++;
      }
      if (t == cfg->burn_in - 1) step = exp(n_avg > 0 ? avg_log_eps / (double)n_avg : log_eps);
      continue;
    }
    n_prop += nc;
    const int64_t s = t - cfg->burn_in + 1; /* steps since burn-in */
    if (s % cfg->thin == 0) {
      const int64_t j = s / cfg->thin - 1;
      for (int64_t k = 0; k < nc; k++)
        memcpy(x + (k * cfg->n_per_chain + j) * d, cur + k * d, (size_t)d * sizeof *x);
    }
  }
  free(buf);
  if (rc) return rc;
  if (stats) {
    stats->accept = n_prop > 0 ? (double)n_acc / (double)n_prop : NAN;
    stats->step = step;
  }
  return TF_OK;
}
