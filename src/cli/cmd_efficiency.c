/* cmd_efficiency.c — `tradeflow efficiency`: flow independence Metropolis against the physics
 * module's reference MCMC (HMC for lattice fields, MALA otherwise) at one condition, both
 * measured in the same process on the same core.
 *
 * Flow: N proposals x ~ p_theta(. | c) (tf_model_draw), their target log q, log w = log q -
 *   log p_theta, the observables of every proposal, and the independence-Metropolis chain over
 *   the proposals in order (tf_stats_imh); all of it is timed.
 * MCMC: tf_physics_mcmc, one chain, burn_in updates (the step is tuned there), then M states
 *   one update apart; the observables of every state.  Timed likewise; the burn-in alone is
 *   timed by a separate call with one recorded state and subtracted, so neither sampler is
 *   charged a one-off cost (the flow's training is not counted either: the output says how
 *   many independent samples repay a training time T).
 * For each chain: tau_int of the observable (Sokal window, c = 6; tf_stats_tau_int), the
 * effective independent samples n / (2 tau_int) and their rate per second, and the mean with
 * its error sqrt(var 2 tau / n), so the two means can be checked against each other.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/physics.h"
#include "tradeflow/rng.h"
#include "tradeflow/stats.h"
#include "tradeflow/train.h"

enum { CHUNK = 256 };

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow efficiency CHECKPOINT --condition C [--n N] [--mcmc-n M]\n"
          "                            [--burn-in B] [--observable NAME] [--seed S]\n"
          "                            [--fourier 0|1]\n"
          "\n"
          "Effective independent samples per second of flow independence Metropolis against\n"
          "the checkpoint's physics module's reference MCMC (HMC for lattice fields, MALA\n"
          "otherwise) at condition C, measured in this one run on one core:\n"
          "  flow:  N proposals (default 100000) from the flow with their target log q, the\n"
          "         observables and the independence-Metropolis chain over them (all timed);\n"
          "  MCMC:  B burn-in updates (default 1000; step tuned there; not timed), then M\n"
          "         states one update apart (default 100000) with their observables (timed).\n"
          "For each: acceptance, the integrated autocorrelation time tau_int of observable\n"
          "NAME (default abs_m where the module has it, else its first observable; Sokal\n"
          "window c = 6), n / (2 tau_int) effective samples, their rate per second, the mean\n"
          "with its error; then the ratio of the rates.  Training time is not counted.\n"
          "--fourier 0 runs lattice HMC without Fourier acceleration (plain momenta), the\n"
          "sampler that slows down most near a critical point (default 1).\n");
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
  const char *name;
  int64_t n;
  double accept, seconds;
  tf_tau_result tau;
} chain_result;

static void print_row(const chain_result *r) {
  const double neff = (double)r->n / (2 * r->tau.tau);
  printf("  %-10s %9lld  %6.3f  %9.3f  %9.3g  %10.4g  %10.4g  %.6g +- %.2g%s\n", r->name,
         (long long)r->n, r->accept, r->tau.tau, r->seconds, neff, neff / r->seconds,
         r->tau.mean, r->tau.err, r->tau.converged ? "" : "  (tau window not converged)");
}

int tf_cli_efficiency(int argc, char **argv) {
  const char *ckpt = NULL, *obs_name = NULL;
  double cond = NAN;
  int64_t n = 100000, mn = 100000, burn = 1000, seed = 1, fourier = 1;
  const double N40 = (double)((int64_t)1 << 40);
  const tf_cli_arg args[] = {
      {"condition", TF_ARG_F64, &cond, 1e-300, 1e300, 0, NULL, NULL},
      {"n", TF_ARG_I64, &n, 10, N40, 0, NULL, NULL},
      {"mcmc-n", TF_ARG_I64, &mn, 10, N40, 0, NULL, NULL},
      {"burn-in", TF_ARG_I64, &burn, 0, N40, 0, NULL, NULL},
      {"fourier", TF_ARG_I64, &fourier, 0, 1, 0, NULL, NULL},
      {"seed", TF_ARG_I64, &seed, 0, (double)((int64_t)1 << 53), 0, NULL, NULL},
      {"observable", TF_ARG_STR, &obs_name, 0, 0, 0, NULL, NULL},
  };
  int npos;
  const int rc = tf_cli_args("efficiency", argc, argv, args, sizeof args / sizeof args[0],
                             &ckpt, 1, &npos, usage);
  if (rc >= 0) return rc;
  if (!ckpt || isnan(cond)) {
    fprintf(stderr, "tradeflow efficiency: CHECKPOINT and --condition are required\n\n");
    usage(stderr);
    return TF_EXIT_USAGE;
  }
  tf_cli_model m;
  if (tf_cli_model_open(&m, ckpt) != TF_OK) {
    fprintf(stderr, "tradeflow efficiency: %s\n", tf_errmsg());
    return TF_EXIT_USAGE;
  }
  tf_physics *p = NULL;
  tf_config *pc = NULL;
  int status = TF_EXIT_USAGE;
  double *x = NULL, *lp = NULL, *lw = NULL, *cv = NULL, *obs = NULL, *f = NULL;
  int64_t *chain = NULL;
  tf_ctx *ctx = NULL;
  if (tf_cli_model_physics(&m, ckpt, "there is no target to sample", cond, &pc, &p, NULL) !=
      TF_OK)
    goto fail;
  const int64_t D = tf_physics_dim(p);
  const int K = tf_physics_n_obs(p);
  int j = -1;
  for (int k = 0; k < K; k++)
    if (!strcmp(tf_physics_obs_name(p, k), obs_name ? obs_name : "abs_m")) j = k;
  if (j < 0 && !obs_name && K > 0) j = 0;
  if (j < 0) {
    char list[512] = "";
    for (int k = 0; k < K; k++) {
      strncat(list, k ? ", " : "", sizeof list - strlen(list) - 1);
      strncat(list, tf_physics_obs_name(p, k), sizeof list - strlen(list) - 1);
    }
    tf_error(TF_EINVAL, "--observable '%s': module %s has %s%s", obs_name ? obs_name : "",
             tf_physics_name(p), K ? "the observables " : "no observables", list);
    goto fail;
  }
  const int64_t cap = n > mn ? n : mn;
  status = TF_EXIT_FAIL;
  x = malloc((size_t)(cap * D) * sizeof *x);
  lp = malloc((size_t)n * sizeof *lp);
  lw = malloc((size_t)n * sizeof *lw);
  cv = malloc((size_t)cap * sizeof *cv);
  obs = malloc((size_t)(cap * K) * sizeof *obs);
  f = malloc((size_t)cap * sizeof *f);
  chain = malloc((size_t)n * sizeof *chain);
  ctx = tf_ctx_create(0);
  if (!x || !lp || !lw || !cv || !obs || !f || !chain || !ctx) {
    tf_error(TF_ENOMEM, "out of memory for %lld states of dimension %lld", (long long)cap,
             (long long)D);
    goto fail;
  }
  for (int64_t i = 0; i < cap; i++) cv[i] = cond;
  const char *par = tf_physics_param(p), *oname = tf_physics_obs_name(p, j);
  fprintf(stderr, "tradeflow efficiency: %s at %s = %g, observable %s: %lld flow proposals, "
          "%s with %lld + %lld updates\n", tf_physics_describe(p), par, cond, oname,
          (long long)n, tf_physics_mcmc_sampler(p), (long long)burn, (long long)mn);

  /* ---- flow independence Metropolis ---- */
  chain_result fr = {.name = "flow-IMH", .n = n, .accept = NAN};
  tf_rng rng;
  tf_rng_init(&rng, (uint64_t)seed, 0, TF_RNG_LATENT, 0);
  double t0 = now();
  if (tf_model_draw(m.model, ctx, cond, n, CHUNK, &rng, x, lp) != TF_OK ||
      tf_physics_log_q(p, n, x, cv, lw, NULL, NULL) != TF_OK)
    goto fail;
  int64_t n_bad = 0; /* a proposal without a finite weight is never accepted */
  for (int64_t i = 0; i < n; i++) {
    lw[i] -= lp[i];
    if (isnan(lw[i])) lw[i] = -INFINITY, n_bad++;
  }
  if (n_bad)
    fprintf(stderr, "tradeflow efficiency: %lld of %lld proposals have no finite log-weight "
            "(weight 0)\n", (long long)n_bad, (long long)n);
  if (tf_physics_observables(p, n, x, cv, obs) != TF_OK) goto fail;
  tf_rng_init(&rng, (uint64_t)seed, 0, TF_RNG_MCMC, 0);
  if (tf_stats_imh(n, lw, &rng, chain, &fr.accept) != TF_OK) goto fail;
  for (int64_t t = 0; t < n; t++) f[t] = obs[chain[t] * K + j];
  fr.seconds = now() - t0;
  if (tf_stats_tau_int(n, f, 1, 6, &fr.tau) != TF_OK) goto fail;
  double ess = NAN;
  tf_stats_ess(n, lw, &ess);

  /* ---- reference MCMC ---- */
  /* lattice HMC says whether its momenta are Fourier-accelerated */
  const int is_hmc = !strcmp(tf_physics_mcmc_sampler(p), "HMC");
  chain_result mr = {.name = !is_hmc ? tf_physics_mcmc_sampler(p) : fourier ? "HMC-FA" : "HMC",
                     .n = mn, .accept = NAN};
  tf_mcmc_config mc = tf_mcmc_defaults();
  mc.chains = 1;
  mc.burn_in = burn;
  mc.thin = 1;
  mc.target_accept = tf_physics_mcmc_target(p);
  mc.fourier_accel = (int)fourier;
  tf_mcmc_stats ms;
  mc.n_per_chain = 1;
  tf_rng_init(&rng, (uint64_t)seed, 1, TF_RNG_MCMC, 0);
  t0 = now();
  if (tf_physics_mcmc(p, cond, &mc, NULL, &rng, x, &ms) != TF_OK) goto fail;
  const double t_burn = now() - t0;
  mc.n_per_chain = mn;
  tf_rng_init(&rng, (uint64_t)seed, 0, TF_RNG_MCMC, 1);
  t0 = now();
  if (tf_physics_mcmc(p, cond, &mc, NULL, &rng, x, &ms) != TF_OK ||
      tf_physics_observables(p, mn, x, cv, obs) != TF_OK)
    goto fail;
  mr.seconds = now() - t0 - t_burn;
  if (!(mr.seconds > 0)) mr.seconds = now() - t0; /* timer noise: charge the burn-in too */
  mr.accept = ms.accept;
  for (int64_t t = 0; t < mn; t++) f[t] = obs[t * K + j];
  if (tf_stats_tau_int(mn, f, 1, 6, &mr.tau) != TF_OK) goto fail;

  printf("tradeflow efficiency: %s, %s = %g, observable %s (checkpoint %s%s)\n",
         tf_physics_describe(p), par, cond, oname, ckpt, m.weights);
  printf("  %-10s %9s  %6s  %9s  %9s  %10s  %10s  %s\n", "sampler", "states", "accept",
         "tau_int", "seconds", "n_eff", "n_eff/s", "mean");
  print_row(&fr);
  print_row(&mr);
  const double rf = (double)fr.n / (2 * fr.tau.tau) / fr.seconds;
  const double rm = (double)mr.n / (2 * mr.tau.tau) / mr.seconds;
  const double dm = fr.tau.mean - mr.tau.mean, se = hypot(fr.tau.err, mr.tau.err);
  printf("  flow proposals: ESS/N %.4g; flow-IMH / %s effective samples per second: %.3g\n",
         ess, mr.name, rf / rm);
  printf("  means differ by %.2f combined standard errors; ", se > 0 ? dm / se : NAN);
  if (rf > rm)
    printf("a training time of T seconds is repaid after %.3g T independent samples\n",
           1 / (1 / rm - 1 / rf));
  else
    printf("the flow never repays its training here (it is the slower sampler)\n");
  status = TF_EXIT_OK;
  goto done;
fail:
  fprintf(stderr, "tradeflow efficiency: %s\n", tf_errmsg());
done:
  free(x), free(lp), free(lw), free(cv), free(obs), free(f), free(chain);
  tf_ctx_destroy(ctx);
  tf_config_destroy(pc);
  tf_physics_destroy(p);
  tf_cli_model_close(&m);
  return status;
}
