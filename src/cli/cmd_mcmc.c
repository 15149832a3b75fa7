/* cmd_mcmc.c — `tradeflow mcmc CONFIG [--set section.key=value ...]`: reference Markov chains.
 *
 * Runs the physics module's reference sampler (HMC for lattice fields, MALA otherwise;
 * tf_physics_mcmc) at every condition of mcmc.conditions and writes the chains, their log q
 * and observables and a per-condition summary to mcmc.out (layout: tradeflow-mcmc,
 * include/tradeflow/h5io.h and docs/FILES.md).  The file is what TRADE's boundary data
 * (data.file = it, data.condition_dataset = c) and `tradeflow eval --reference` read.
 *
 * Only the [physics] and [mcmc] sections of CONFIG are read, so one config file describes a
 * whole pipeline (mcmc -> train -> sample -> eval) and its [data] file need not exist yet; the
 * other sections are blanked, not removed, so that messages keep the file's line numbers.
 *
 * Errors of the means: each chain's mean has the error sqrt(var 2 tau_int / n) with tau_int
 * from Sokal's automatic window (tf_stats_tau_int); the chains are independent, so the error
 * of the mean over C chains of equal length is sqrt(sum_i err_i^2) / C.  The reported tau_int
 * is the average over the chains.
 *
 * Chain k at condition i draws from the Philox stream (mcmc.seed, 0, TF_RNG_MCMC, i): a given
 * config reproduces its file exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/result.h"
#include "tradeflow/stats.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow mcmc CONFIG [--set section.key=value ...]\n"
          "\n"
          "Runs the reference sampler of the config's physics module (HMC for lattice fields,\n"
          "MALA otherwise) at each of mcmc.conditions and writes the chains with log q and\n"
          "observables to mcmc.out, printing the observables with autocorrelation-corrected\n"
          "errors.  Reads only the [physics] and [mcmc] sections (keys: tradeflow train\n"
          "--help-config).  The file serves as training data (data.file, with\n"
          "data.condition_dataset = c) and as tradeflow eval --reference.\n");
}

/* Blank the lines of the other sections train knows ([model], [data], ...), keeping the line
 * structure; a header the schema does not know stays, so that the loader names it. */
static void keep_sections(char *text) {
  int keep = 1; /* lines before the first header: comments or errors the loader reports */
  for (char *p = text; *p;) {
    char *e = strchr(p, '\n');
    const size_t len = e ? (size_t)(e - p) : strlen(p);
    const char *q = p;
    while (q < p + len && (*q == ' ' || *q == '\t')) q++;
    if (*q == '[') {
      const char *r = q + 1;
      while (*r == ' ' || *r == '\t') r++;
      keep = strncmp(r, "model", 5) || !strchr("] \t", r[5]);
      for (int k = 0; k < tf_cli_run_n; k++) {
        const char *sec = tf_cli_run_keys[k].section;
        const size_t ls = strlen(sec);
        if (strcmp(sec, "physics") && strcmp(sec, "mcmc") && !strncmp(r, sec, ls) &&
            strchr("] \t", r[ls]))
          keep = 0;
      }
    }
    if (!keep) memset(p, ' ', len);
    p += len + (e ? 1 : 0);
  }
}

typedef struct {
  double mean, err, tau;
} obs_stat;

/* mean, error and tau of column j over `chains` chains of n rows each (chain-major) */
static void chain_stats(const double *obs, int M, int j, int64_t chains, int64_t n, obs_stat *s) {
  double sum = 0, e2 = 0, tau = 0;
  for (int64_t k = 0; k < chains; k++) {
    tf_tau_result t;
    /* a non-finite observable gives NaN statistics, not a lost run */
    if (n < 2 || tf_stats_tau_int(n, obs + (k * n) * M + j, M, 6, &t) != TF_OK) {
      t.mean = n == 1 ? obs[(k * n) * M + j] : NAN;
      t.err = NAN;
      t.tau = NAN;
    }
    sum += t.mean;
    e2 += t.err * t.err;
    tau += t.tau;
  }
  s->mean = sum / (double)chains;
  s->err = sqrt(e2) / (double)chains;
  s->tau = tau / (double)chains;
}

int tf_cli_mcmc(int argc, char **argv) {
  const char *path = NULL;
  int n_set = 0;
  const char **set = calloc((size_t)argc + 1, sizeof *set);
  if (!set) return TF_EXIT_FAIL;
  const tf_cli_arg args[] = {{"set", TF_ARG_MULTI, set, 0, 0, argc, &n_set, NULL}};
  int npos;
  const int pst = tf_cli_args("mcmc", argc, argv, args, 1, &path, 1, &npos, usage);
  if (pst >= 0) {
    free(set);
    return pst;
  }
  if (!path) {
    usage(stderr);
    free(set);
    return TF_EXIT_USAGE;
  }

  int status = TF_EXIT_USAGE;
  tf_config *cfg = NULL;
  tf_physics *p = NULL;
  double *x = NULL, *c = NULL, *lq = NULL, *obs = NULL, *sum = NULL;
  int64_t *chain = NULL;
  char **sum_names = NULL, *eff = NULL;
  int n_sum = 0;
  char *text = NULL;
  if (tf_config_read_text(path, &text) != TF_OK) goto fail;
  keep_sections(text);
  cfg = tf_config_load_string(text, path, tf_cli_run_keys,
                              tf_cli_physics_n() + tf_cli_mcmc_n(), n_set, set);
  tf_cli_range rg;
  if (!cfg || tf_cli_physics_create(cfg, &p, &rg) != TF_OK) goto fail;
  if (!p) {
    tf_error(TF_EINVAL, "%s: physics.name is empty: tradeflow mcmc samples a physics module",
             path);
    goto fail;
  }
  const char *out = tf_config_str(cfg, "mcmc", "out");
  if (!out[0]) {
    tf_error(TF_EINVAL, "%s: mcmc.out is not set: name the output file", path);
    goto fail;
  }
  const double *cl = NULL;
  int K = tf_config_real_list(cfg, "mcmc", "conditions", &cl);
  const double c0 = rg.c0;
  if (K == 0) {
    cl = &c0;
    K = 1;
  }
  double lo, hi;
  tf_physics_param_range(p, &lo, &hi);
  for (int i = 0; i < K; i++)
    if (!(cl[i] >= lo && cl[i] <= hi)) {
      tf_error(TF_ERANGE, "%s: mcmc.conditions: %s = %g is outside the valid range [%g, %g] of "
               "%s", tf_config_where(cfg, "mcmc", "conditions"), tf_physics_param(p), cl[i],
               lo, hi, tf_physics_describe(p));
      goto fail;
    }
  tf_mcmc_config mc = tf_mcmc_defaults();
  const char *sampler = tf_physics_mcmc_sampler(p);
  mc.chains = tf_config_int(cfg, "mcmc", "chains");
  mc.n_per_chain = (tf_config_int(cfg, "mcmc", "samples") + mc.chains - 1) / mc.chains;
  mc.burn_in = tf_config_int(cfg, "mcmc", "burn_in");
  mc.thin = tf_config_int(cfg, "mcmc", "thin");
  mc.target_accept = tf_config_real(cfg, "mcmc", "target_accept");
  if (mc.target_accept == 0) mc.target_accept = tf_physics_mcmc_target(p);
  mc.fourier_accel = tf_config_bool(cfg, "mcmc", "fourier_accel");
  const uint64_t seed = (uint64_t)tf_config_int(cfg, "mcmc", "seed");

  const int64_t D = tf_physics_dim(p), per = mc.chains * mc.n_per_chain, N = per * K;
  const int M = tf_physics_n_obs(p);
  if ((double)N * (double)D > 1e10) {
    tf_error(TF_ERANGE, "%s: %d conditions x %lld states x %lld dimensions is more than this "
             "command keeps in memory (1e10 values)", path, K, (long long)per, (long long)D);
    goto fail;
  }
  if (M > 256) {
    tf_error(TF_EUNSUP, "module %s has %d observables (at most 256)", tf_physics_name(p), M);
    goto fail;
  }
  /* an unwritable output is reported before the sampling, not after it */
  if (tf_eval_result_probe(out) != TF_OK) goto fail;
  status = TF_EXIT_FAIL;
  x = malloc((size_t)(N * D) * sizeof *x);
  c = malloc((size_t)N * sizeof *c);
  lq = malloc((size_t)N * sizeof *lq);
  obs = malloc((size_t)(N * (M > 0 ? M : 1)) * sizeof *obs);
  chain = malloc((size_t)N * sizeof *chain);
  n_sum = 4 + 3 * M;
  sum = malloc((size_t)(n_sum * K) * sizeof *sum);
  sum_names = calloc((size_t)n_sum, sizeof *sum_names);
  if (!x || !c || !lq || !obs || !chain || !sum || !sum_names) {
    tf_error(TF_ENOMEM, "out of memory for %lld states of dimension %lld", (long long)N,
             (long long)D);
    goto fail;
  }
  static const char *const fixed[4] = {"c", "accept", "step", "seconds"};
  for (int j = 0; j < 4; j++) sum_names[j] = strdup(fixed[j]);
  for (int j = 0; j < M; j++) {
    const char *nm = tf_physics_obs_name(p, j);
    const size_t l = strlen(nm) + 8;
    for (int v = 0; v < 3; v++) {
      sum_names[4 + 3 * j + v] = malloc(l);
      if (sum_names[4 + 3 * j + v])
        snprintf(sum_names[4 + 3 * j + v], l, "%s%s", nm, v == 0 ? "" : v == 1 ? "_err" : "_tau");
    }
  }
  for (int j = 0; j < n_sum; j++)
    if (!sum_names[j]) {
      tf_error(TF_ENOMEM, "out of memory");
      goto fail;
    }

  fprintf(stderr, "tradeflow mcmc: %s, %s, %d condition%s x %lld chains x %lld states "
          "(burn-in %lld, thin %lld, target acceptance %.2f)\n", tf_physics_describe(p), sampler,
          K, K == 1 ? "" : "s", (long long)mc.chains, (long long)mc.n_per_chain,
          (long long)mc.burn_in, (long long)mc.thin, mc.target_accept);
  for (int i = 0; i < K; i++) {
    double *xi = x + (int64_t)i * per * D, *ci = c + (int64_t)i * per, *li = lq + (int64_t)i * per;
    double *oi = obs + (int64_t)i * per * M;
    tf_rng rng;
    tf_rng_init(&rng, seed, 0, TF_RNG_MCMC, (uint32_t)i);
    tf_mcmc_stats ms;
    const double t0 = tf_cli_now();
    const int rc = tf_physics_mcmc(p, cl[i], &mc, NULL, &rng, xi, &ms);
    if (rc != TF_OK) {
      tf_error(rc, "%s = %g: %s", tf_physics_param(p), cl[i], tf_errmsg());
      goto fail;
    }
    const double secs = tf_cli_now() - t0;
    for (int64_t r = 0; r < per; r++) {
      ci[r] = cl[i];
      chain[(int64_t)i * per + r] = r / mc.n_per_chain;
    }
    if (tf_physics_log_q(p, per, xi, ci, li, NULL, NULL) != TF_OK ||
        tf_physics_observables(p, per, xi, ci, oi) != TF_OK)
      goto fail;
    double *row = sum; /* column j of condition i: sum[j * K + i] */
    row[0 * K + i] = cl[i];
    row[1 * K + i] = ms.accept;
    row[2 * K + i] = ms.step;
    row[3 * K + i] = secs;
    fprintf(stderr, "  [%d/%d] %s = %-8.5g acceptance %.3f  step %.4g  %.1f s\n", i + 1, K,
            tf_physics_param(p), cl[i], ms.accept, ms.step, secs);
    for (int j = 0; j < M; j++) {
      obs_stat s;
      chain_stats(oi, M, j, mc.chains, mc.n_per_chain, &s);
      row[(4 + 3 * j) * K + i] = s.mean;
      row[(5 + 3 * j) * K + i] = s.err;
      row[(6 + 3 * j) * K + i] = s.tau;
    }
  }

  /* the table: one row per condition, mean +- error [tau_int] per observable */
  printf("tradeflow mcmc: %s, %s, %lld chains x %lld states per condition\n",
         tf_physics_describe(p), sampler, (long long)mc.chains, (long long)mc.n_per_chain);
  printf("%-10s %7s", tf_physics_param(p), "accept");
  for (int j = 0; j < M; j++) printf("  %-30s", tf_physics_obs_name(p, j));
  printf("\n");
  for (int i = 0; i < K; i++) {
    printf("%-10.5g %7.3f", cl[i], sum[1 * K + i]);
    for (int j = 0; j < M; j++) {
      char cell[64];
      snprintf(cell, sizeof cell, "%.6g +- %.2g [%.1f]", sum[(4 + 3 * j) * K + i],
               sum[(5 + 3 * j) * K + i], sum[(6 + 3 * j) * K + i]);
      printf("  %-30s", cell);
    }
    printf("\n");
  }
  printf("(mean +- error [integrated autocorrelation time in recorded states])\n");

  eff = tf_config_text(cfg);
  if (!eff) {
    tf_error(TF_ENOMEM, "out of memory");
    goto fail;
  }
  const double *cols[4 + 3 * 256];
  for (int j = 0; j < n_sum; j++) cols[j] = sum + (int64_t)j * K;
  const char *onames[256];
  for (int j = 0; j < M && j < 256; j++) onames[j] = tf_physics_obs_name(p, j);
  tf_mcmc_file f = {.n = N, .d = D, .m = M, .x = x, .c = c, .log_q = lq, .chain = chain,
                    .obs = obs, .obs_names = onames, .k = K, .n_summary = n_sum,
                    .summary_names = (const char *const *)sum_names, .summary = cols,
                    .physics = tf_physics_name(p), .physics_params = tf_physics_describe(p),
                    .sampler = sampler, .config_text = eff, .chains = mc.chains,
                    .n_per_chain = mc.n_per_chain, .burn_in = mc.burn_in, .thin = mc.thin,
                    .seed = (int64_t)seed};
  if (tf_mcmc_file_write(out, &f) != TF_OK) goto fail;
  fprintf(stderr, "tradeflow mcmc: wrote %lld states to %s\n", (long long)N, out);
  status = TF_EXIT_OK;

fail:
  if (status != TF_EXIT_OK) fprintf(stderr, "tradeflow mcmc: %s\n", tf_errmsg());
  for (int j = 0; sum_names && j < n_sum; j++) free(sum_names[j]);
  free(sum_names);
  free(sum);
  free(chain);
  free(obs);
  free(lq);
  free(c);
  free(x);
  tf_physics_destroy(p);
  tf_config_destroy(cfg);
  free(eff);
  free(text);
  free(set);
  return status;
}
