/* cmd_profile.c — `tradeflow profile`: the free-energy profile along one coordinate.
 *
 *   F(s) / kT = -log p(s),  p the marginal density of coordinate s at condition c,
 * estimated from flow samples reweighted to the target (self-normalised importance weights
 * w = q / p_theta) as a weighted histogram, and — for 2-D modules — computed exactly by
 * integrating q over the other coordinate numerically.  Both are normalised over the chosen
 * interval, so the profiles are compared without a free constant.  Errors of the flow profile
 * are bootstrap standard deviations over the samples (fixed seed).
 *
 * --proposal C1,...,CK draws the samples in equal shares from the flow at K conditions and
 * weights them against the mixture, w = q(x | c) / ((1/K) sum_k p_theta(x | C_k)) (multiple
 * importance sampling with the balance heuristic).  Why: at low temperature the barrier and
 * the walls of a double well lie ~10 kT above the wells, where samples drawn at c itself are
 * rare and the profile is limited by their count, not by the flow; a conditional flow trained
 * across temperatures also samples the hotter conditions, which put orders of magnitude more
 * samples there, and the mixture weights stay bounded wherever any component is good.  The
 * bootstrap resamples the pooled samples, which ignores the fixed share per component and
 * so overstates the error slightly (stratified sampling has at most the mixture's variance).
 *
 * Output: a whitespace table (gnuplot-ready) with one row per bin:
 *   s  F_flow  F_flow_err  F_exact  F_flow-F_exact  n_eff
 * (n_eff the Kish effective sample count of the weights in the bin)
 * and a summary line on stdout with the largest |F_flow - F_exact| over bins whose flow error
 * is finite.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/rng.h"
#include "tradeflow/stats.h"

enum { CHUNK = 4096, N_BOOT = 100, QUAD = 4001, SUB = 32, MAX_PROP = 64 };

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow profile CHECKPOINT --condition C --out FILE.dat\n"
          "                         [--coord K] [--range A,B] [--bins M] [--n N] [--seed S]\n"
          "                         [--proposal C1,C2,...]\n"
          "\n"
          "Free-energy profile F(s)/kT = -log p(s) of coordinate K (default 0) at condition C\n"
          "from N (default 200000) flow samples reweighted to the target of the checkpoint's\n"
          "physics module, over M (default 40) bins on [A, B] (default -2,2); for 2-D modules\n"
          "also the exact profile by numerical integration over the other coordinate.  Both\n"
          "are normalised on [A, B].  Errors: bootstrap over samples (%d resamples).\n"
          "--proposal draws the samples in equal shares from the flow at the listed conditions\n"
          "(default: C alone) and weights them by q(x | C) over the mixture of those flow\n"
          "densities: hotter conditions put many more samples on barriers and walls.\n",
          N_BOOT);
}

/* Weighted histogram of the samples i = idx[j] (j < n; idx NULL: i = j), normalised to a
 * density on [a, b]. */
static void histogram(const double *s, const double *w, const int64_t *idx, int64_t n, double a,
                      double b, int M, double *dens) {
  for (int k = 0; k < M; k++) dens[k] = 0;
  double tot = 0;
  const double h = (b - a) / M;
  for (int64_t j = 0; j < n; j++) {
    const int64_t i = idx ? idx[j] : j;
    if (!(w[i] > 0) || s[i] < a || s[i] >= b) continue;
    const int k = (int)((s[i] - a) / h);
    dens[k < M ? k : M - 1] += w[i];
    tot += w[i];
  }
  for (int k = 0; k < M; k++) dens[k] = tot > 0 ? dens[k] / (tot * h) : 0;
}

typedef struct {
  const double *s, *w;
  double a, b;
  int M;
} boot_arg;

/* The bootstrap statistic: the profile -log p per bin (+inf where a resample leaves a bin
 * empty, which makes that bin's error NaN). */
static int boot_profile(int64_t n, const int64_t *idx, void *arg, double *out) {
  const boot_arg *ba = arg;
  histogram(ba->s, ba->w, idx, n, ba->a, ba->b, ba->M, out);
  for (int k = 0; k < ba->M; k++) out[k] = out[k] > 0 ? -log(out[k]) : INFINITY;
  return TF_OK;
}

/* Exact marginal of coordinate K of a 2-D module averaged over each bin, normalised on [a, b]:
 * p(s) ∝ ∫ q(s, t) dt by the trapezoidal rule over t in [t_lo, t_hi], the interval found from
 * where q is non-negligible. */
static int exact_profile(const tf_physics *p, double c, int K, double a, double b, int M,
                         double *dens) {
  const double h = (b - a) / M;
  double *x = malloc(sizeof(double) * 2 * QUAD), *lq = malloc(sizeof(double) * QUAD);
  double *cc = malloc(sizeof(double) * QUAD), *lm = malloc(sizeof(double) * (size_t)M);
  if (!x || !lq || !cc || !lm) {
    free(x), free(lq), free(cc), free(lm);
    return tf_error(TF_ENOMEM, "out of memory");
  }
  for (int i = 0; i < QUAD; i++) cc[i] = c;
  /* the other coordinate over [-L, L]; L grows until the ends carry no mass */
  double L = 8;
  int rc = TF_OK;
  for (int pass = 0; pass < 6; pass++, L *= 2) {
    double edge = -INFINITY, peak = -INFINITY;
    for (int k = 0; k < M && rc == TF_OK; k++) {
      /* the histogram estimates the bin average of p, so the exact profile is averaged over
       * the bin too (SUB midpoints): at the steep walls of a well the value at the bin centre
       * differs from the bin average by several kT */
      double ls[SUB];
      for (int j = 0; j < SUB && rc == TF_OK; j++) {
        const double s = a + (k + (j + 0.5) / SUB) * h, dt = 2 * L / (QUAD - 1);
        for (int i = 0; i < QUAD; i++) {
          x[2 * i + K] = s;
          x[2 * i + 1 - K] = -L + i * dt;
        }
        rc = tf_physics_log_q(p, QUAD, x, cc, lq, NULL, NULL);
        double m = -INFINITY;
        for (int i = 0; i < QUAD; i++) m = fmax(m, lq[i]);
        double sum = 0;
        for (int i = 0; i < QUAD; i++) sum += (i == 0 || i == QUAD - 1 ? 0.5 : 1) * exp(lq[i] - m);
        ls[j] = m + log(sum * dt);
        peak = fmax(peak, m);
        edge = fmax(edge, fmax(lq[0], lq[QUAD - 1]));
      }
      double m = -INFINITY, sum = 0;
      for (int j = 0; j < SUB; j++) m = fmax(m, ls[j]);
      for (int j = 0; j < SUB; j++) sum += exp(ls[j] - m);
      lm[k] = m + log(sum / SUB);
    }
    if (rc != TF_OK || edge < peak - 40) break;
  }
  double m = -INFINITY, tot = 0;
  for (int k = 0; k < M; k++) m = fmax(m, lm[k]);
  for (int k = 0; k < M; k++) tot += exp(lm[k] - m) * h;
  for (int k = 0; k < M; k++) dens[k] = exp(lm[k] - m) / tot;
  free(x), free(lq), free(cc), free(lm);
  return rc;
}

int tf_cli_profile(int argc, char **argv) {
  const char *ckpt = NULL, *out = NULL;
  double cond = NAN, a = -2, b = 2;
  int64_t n = 200000, seed = 1, K = 0, M = 40;
  double prop[MAX_PROP];
  int np = 0;
  const char *range = NULL;
  const double I64 = (double)INT64_MAX;
  const tf_cli_arg args[] = {
      {"condition", TF_ARG_F64, &cond, 1e-300, 1e300, 0, NULL, NULL},
      {"out", TF_ARG_STR, &out, 0, 0, 0, NULL, NULL},
      {"coord", TF_ARG_I64, &K, 0, 1 << 20, 0, NULL, NULL},
      {"bins", TF_ARG_I64, &M, 2, 100000, 0, NULL, NULL},
      {"n", TF_ARG_I64, &n, 100, (double)((int64_t)1 << 32), 0, NULL, NULL},
      {"seed", TF_ARG_I64, &seed, 0, I64, 0, NULL, NULL},
      {"proposal", TF_ARG_F64_LIST, prop, 1e-300, 1e300, MAX_PROP, &np, NULL},
      {"range", TF_ARG_STR, &range, 0, 0, 0, NULL, NULL},
  };
  int npos;
  const int rc = tf_cli_args("profile", argc, argv, args, sizeof args / sizeof args[0], &ckpt,
                             1, &npos, usage);
  if (rc >= 0) return rc;
  if (range) {
    char *end;
    a = strtod(range, &end);
    if (*end != ',' || !isfinite(a) || (b = strtod(end + 1, &end), *end) || !isfinite(b) ||
        !(a < b)) {
      fprintf(stderr, "tradeflow profile: --range expects A,B with A < B, got '%s'\n", range);
      return TF_EXIT_USAGE;
    }
  }
  if (!ckpt || !out || isnan(cond)) {
    fprintf(stderr, "tradeflow profile: CHECKPOINT, --condition and --out are required\n\n");
    usage(stderr);
    return TF_EXIT_USAGE;
  }
  tf_cli_model m;
  if (tf_cli_model_open(&m, ckpt) != TF_OK) {
    fprintf(stderr, "tradeflow profile: %s\n", tf_errmsg());
    return TF_EXIT_USAGE;
  }
  tf_physics *phys = NULL;
  tf_config *pc = NULL;
  int status = TF_EXIT_USAGE;
  double *s = NULL, *w = NULL, *xd = NULL, *cd = NULL, *lq = NULL, *mix = NULL, *comp = NULL,
         *fl = NULL, *ex = NULL;
  tf_ctx *ctx = NULL;
  tf_cli_afile af = {NULL, "", ""};
  FILE *f = NULL;
  if (tf_cli_model_physics(&m, ckpt, "profiles need the target density", cond, &pc, &phys,
                           NULL) != TF_OK)
    goto fail;
  const int64_t D = tf_model_dim(m.model);
  if (K >= D) {
    tf_error(TF_EINVAL, "--coord %lld: the model has dimension %lld", (long long)K, (long long)D);
    goto fail;
  }
  if (np == 0) prop[np++] = cond;
  double lo, hi;
  tf_physics_param_range(phys, &lo, &hi);
  for (int j = 0; j < np; j++)
    if (!(prop[j] >= lo && prop[j] <= hi)) {
      tf_error(TF_ERANGE, "--proposal %g: outside the module's range [%g, %g] of %s", prop[j], lo,
               hi, tf_physics_param(phys));
      goto fail;
    }
  status = TF_EXIT_FAIL;
  s = malloc(sizeof(double) * (size_t)n);
  w = malloc(sizeof(double) * (size_t)n);
  xd = malloc(sizeof(double) * (size_t)(CHUNK * D));
  cd = malloc(sizeof(double) * CHUNK);
  lq = malloc(sizeof(double) * CHUNK);
  mix = malloc(sizeof(double) * CHUNK);
  comp = malloc(sizeof(double) * CHUNK * (size_t)np);
  fl = malloc(sizeof(double) * (size_t)M * 5);
  ex = fl + 2 * M;
  ctx = tf_ctx_create(0);
  if (!s || !w || !xd || !cd || !lq || !mix || !comp || !fl || !ctx) {
    tf_error(TF_ENOMEM, "out of memory");
    goto fail;
  }
  tf_ctx_set_grad(ctx, 0);
  double lmax = -INFINITY;
  /* component j supplies samples [n j / np, n (j + 1) / np); the chunk counter numbers the
   * latent streams, so one proposal reproduces the single-condition sampling exactly */
  for (int j = 0, chunk = 0; j < np; j++) {
    const int64_t end = n * (j + 1) / np;
    for (int64_t i0 = n * j / np; i0 < end; i0 += CHUNK, chunk++) {
      const int64_t k = end - i0 < CHUNK ? end - i0 : CHUNK;
      tf_ctx_reset(ctx);
      tf_rng r;
      tf_rng_init(&r, (uint64_t)seed, 0, TF_RNG_LATENT, (uint32_t)chunk);
      tf_tensor *c = tf_full(ctx, 2, (int64_t[]){k, 1}, prop[j]), *lp = NULL;
      tf_tensor *x = tf_model_sample(m.model, ctx, c, k, &r, &lp);
      if (!x || !lp) goto fail;
      /* log of the mixture density: log-sum-exp over the components, in double; comp holds
       * log p_theta(x_i | C_l) at [i * np + l] */
      for (int l = 0; l < np; l++) {
        tf_tensor *ll = lp;
        if (l != j) {
          tf_tensor *cl = tf_full(ctx, 2, (int64_t[]){k, 1}, prop[l]);
          ll = cl ? tf_model_log_prob(m.model, ctx, x, cl) : NULL;
        }
        if (!ll) goto fail;
        for (int64_t i = 0; i < k; i++) comp[i * np + l] = (double)ll->data[i];
      }
      for (int64_t i = 0; i < k; i++)
        mix[i] = tf_stats_logsumexp(np, comp + i * np) - log((double)np);
      for (int64_t i = 0; i < k * D; i++) xd[i] = (double)x->data[i];
      for (int64_t i = 0; i < k; i++) cd[i] = cond;
      if (tf_physics_log_q(phys, k, xd, cd, lq, NULL, NULL) != TF_OK) goto fail;
      for (int64_t i = 0; i < k; i++) {
        s[i0 + i] = xd[i * D + K];
        w[i0 + i] = lq[i] - mix[i];
        if (w[i0 + i] > lmax) lmax = w[i0 + i];
      }
    }
  }
  for (int64_t i = 0; i < n; i++) w[i] = isfinite(w[i]) ? exp(w[i] - lmax) : 0;
  double *flow = fl, *err = fl + M;
  histogram(s, w, NULL, n, a, b, (int)M, flow);
  tf_rng br;
  tf_rng_init(&br, 12345, 0, TF_RNG_USER + 400, 0);
  boot_arg ba = {s, w, a, b, (int)M};
  if (tf_stats_bootstrap(n, N_BOOT, &br, (int)M, boot_profile, &ba, NULL, err) != TF_OK)
    goto fail;
  /* Kish n_eff per bin: (sum w)^2 / sum w^2 over the bin's samples */
  double *sw = fl + 3 * M, *sw2 = fl + 4 * M;
  for (int k = 0; k < M; k++) sw[k] = sw2[k] = 0;
  for (int64_t i = 0; i < n; i++)
    if (w[i] > 0 && s[i] >= a && s[i] < b) {
      int k = (int)((s[i] - a) / ((b - a) / M));
      k = k < M ? k : (int)M - 1;
      sw[k] += w[i], sw2[k] += w[i] * w[i];
    }
  const int have_exact = D == 2;
  if (have_exact && exact_profile(phys, cond, (int)K, a, b, (int)M, ex) != TF_OK) goto fail;
  if (tf_cli_afile_open(&af, out) != TF_OK) {
    status = TF_EXIT_USAGE;
    goto fail;
  }
  f = af.f;
  fprintf(f, "# tradeflow profile: F/kT = -log p(s), s = x[%lld], %s = %g, %s, checkpoint %s\n"
          "# %lld flow samples reweighted to the target (seed %lld), drawn in equal shares at "
          "%s =",
          (long long)K, tf_physics_param(phys), cond, tf_physics_describe(phys), ckpt,
          (long long)n, (long long)seed, tf_physics_param(phys));
  for (int j = 0; j < np; j++) fprintf(f, "%s%g", j ? "," : " ", prop[j]);
  fprintf(f, "%s; both profiles normalised on [%g, %g]; error: bootstrap (%d)\n"
          "# s F_flow F_flow_err F_exact F_flow-F_exact n_eff\n",
          np > 1 ? " (weights against their mixture)" : "", a, b, N_BOOT);
  double worst = 0, chi2 = 0;
  int nb = 0;
  for (int k = 0; k < M; k++) {
    const double sc = a + (k + 0.5) * (b - a) / M;
    const double F = flow[k] > 0 ? -log(flow[k]) : NAN, E = have_exact ? -log(ex[k]) : NAN;
    fprintf(f, "%.6g %.6g %.6g %.6g %.6g %.6g\n", sc, F, err[k], E, F - E,
            sw2[k] > 0 ? sw[k] * sw[k] / sw2[k] : 0);
    if (have_exact && isfinite(F) && isfinite(err[k])) {
      worst = fmax(worst, fabs(F - E));
      chi2 += (F - E) * (F - E) / (err[k] * err[k] + 1e-300);
      nb++;
    }
  }
  f = NULL;
  if (tf_cli_afile_commit(&af) != TF_OK) goto fail;
  if (have_exact)
    printf("tradeflow profile: %s = %g, s = x[%lld] on [%g, %g]: max |F_flow - F_exact| = "
           "%.4f kT over %d bins (chi2/bins %.2f); table in %s\n",
           tf_physics_param(phys), cond, (long long)K, a, b, worst, nb, nb ? chi2 / nb : NAN,
           out);
  else
    printf("tradeflow profile: table in %s (no exact profile: module is not 2-D)\n", out);
  status = TF_EXIT_OK;
  goto done;
fail:
  fprintf(stderr, "tradeflow profile: %s\n", tf_errmsg());
done:
  tf_cli_afile_abort(&af);
  free(s), free(w), free(xd), free(cd), free(lq), free(mix), free(comp), free(fl);
  tf_ctx_destroy(ctx);
  tf_config_destroy(pc);
  tf_physics_destroy(phys);
  tf_cli_model_close(&m);
  return status;
}
