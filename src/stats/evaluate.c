/* evaluate.c — the metrics of a flow against its physics target at one condition.
 *
 * Exported: tf_eval_defaults, tf_eval_condition, tf_eval_kl_method.
 * Not collective: one rank evaluates its conditions.  What is computed and from which random
 * streams: include/tradeflow/result.h.  The estimators are those of stats.h.
 *
 * Memory per condition: the N samples (N x D), their observables (N x M) and a few N-vectors,
 * allocated once per call; the KL grid (G^2 points) only for two-dimensional targets.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tradeflow/error.h"
#include "tradeflow/evaluate.h"
#include "tradeflow/stats.h"

enum { DEFAULT_CHUNK = 256, KL_WIDEN_MAX = 10 }; /* rows per flow pass: cache-sized */

static const double KL_SD = 8, KL_MASS = 1 - 1e-6, KL_WIDEN = 1.5;

tf_eval_config tf_eval_defaults(void) {
  return (tf_eval_config){20000, DEFAULT_CHUNK, 1, -1, 200, 400, 20000};
}

const char *tf_eval_kl_method(void) {
  return "KL(p_exact || p_flow) = sum over a G x G grid of cell centres of p (log p - log "
         "p_flow) times the cell area (midpoint rule), p = q / Z with the exact log Z; the box "
         "is the reweighted mean +- 8 sd per axis, widened 1.5x about its centre until the "
         "exact mass inside is >= 1 - 1e-6; kl_err = |KL(h) - KL(2h)| (every other point)";
}

/* Appends a formatted warning to note ("; "-separated). */
static void add_note(char *note, size_t len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void add_note(char *note, size_t len, const char *fmt, ...) {
  if (!note || !len) return;
  size_t used = strlen(note);
  if (used && used + 2 < len) {
    memcpy(note + used, "; ", 3);
    used += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  if (used < len) vsnprintf(note + used, len - used, fmt, ap);
  va_end(ap);
}

/* Moves the rows with a usable log-weight to the front (stable); returns how many. */
static int64_t keep_valid(int64_t n, int64_t D, double *x, double *log_p, double *log_w) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++) {
    int ok = isfinite(log_p[i]) && !isnan(log_w[i]) && log_w[i] != INFINITY;
    for (int64_t j = 0; ok && j < D; j++) ok = isfinite(x[i * D + j]);
    if (!ok) continue;
    if (m != i) {
      memmove(x + m * D, x + i * D, (size_t)D * sizeof *x);
      log_p[m] = log_p[i];
      log_w[m] = log_w[i];
    }
    m++;
  }
  return m;
}

/* ---- derived quantities (tf_physics_derived: chi, Binder cumulant...) -------------------------- */

enum { DERIVED_BLOCKS = 20 };

static void derived_cb(const double *means, void *arg, double *out) {
  tf_physics_derived((const tf_physics *)arg, means, out);
}

/* Whether derived quantity outputs depend on the mean of observable k: the derived map at
 * `means` against the same with mean k moved (1e-4 relative plus 1e-4). */
static int derived_uses(const tf_physics *p, const double *means, int k, double *buf) {
  const int M = tf_physics_n_obs(p), Md = tf_physics_n_derived(p);
  double *m1 = buf, *o0 = buf + M, *o1 = buf + M + Md;
  memcpy(m1, means, (size_t)M * sizeof *m1);
  tf_physics_derived(p, m1, o0);
  m1[k] = means[k] * (1 + 1e-4) + 1e-4;
  tf_physics_derived(p, m1, o1);
  for (int j = 0; j < Md; j++)
    if (o0[j] != o1[j] && !(isnan(o0[j]) && isnan(o1[j]))) return 1;
  return 0;
}

/* Columns M.. of table rows `tab` / `tab_err` (row stride Mt; columns 0..M hold the
 * observables' means): the derived quantities of the samples obs (n, M), weighted by log_w
 * (NULL: equal), with blocked-jackknife errors.  Blocks hold at least 4 tau_max samples, tau_max
 * the largest integrated autocorrelation time tau[k] (NULL: 0.5, independent samples) among
 * the observables the derived quantities depend on (a slowly mixing observable they do not use,
 * such as the signed magnetisation of chains that never tunnel, does not count), at most
 * DERIVED_BLOCKS of them; fewer than 2 such blocks leave NaN and a note. */
static int eval_derived(const tf_physics *p, int64_t n, const double *log_w, const double *obs,
                        const double *tau, double *tab, double *tab_err, const char *what,
                        char *note, size_t note_len) {
  const int M = tf_physics_n_obs(p), Md = tf_physics_n_derived(p);
  if (Md == 0) return TF_OK;
  double tau_max = 0.5;
  if (tau) {
    double *buf = malloc((size_t)(M + 2 * Md) * sizeof *buf);
    if (!buf) return tf_error(TF_ENOMEM, "out of memory");
    for (int k = 0; k < M; k++)
      if (isfinite(tau[k]) && tau[k] > tau_max && derived_uses(p, tab, k, buf)) tau_max = tau[k];
    free(buf);
  }
  const double len = ceil(4 * tau_max);
  int64_t B = isfinite(len) ? (int64_t)((double)n / len) : 0;
  if (B > DERIVED_BLOCKS) B = DERIVED_BLOCKS;
  if (B < 2) {
    add_note(note, note_len, "%s: %lld samples are too few for jackknife blocks of %g "
             "(4 tau_int): no %s", what, (long long)n, len, tf_physics_derived_name(p, 0));
    return TF_OK;
  }
  return tf_stats_jackknife(n, log_w, obs, M, (int)B, derived_cb, (void *)p, Md, tab + M,
                            tab_err + M);
}

/* ---- reference samples ----------------------------------------------------------------------- */

static int eval_reference(tf_model *model, tf_ctx *ctx, const tf_physics *p, double c,
                          int64_t n, const double *x, int from_file, double *cvec, double *obs,
                          tf_eval_result *r, int64_t row, char *note, size_t note_len) {
  const int64_t D = tf_physics_dim(p);
  const int M = tf_physics_n_obs(p), Mt = M + tf_physics_n_derived(p);
  double *lp = malloc((size_t)n * sizeof *lp);
  if (!lp) return tf_error(TF_ENOMEM, "out of memory for %lld reference samples", (long long)n);
  tf_dataset ds = {n, D, x, NULL, c};
  int st = tf_dataset_log_prob(model, ctx, &ds, NULL, n, lp);
  if (st != TF_OK) {
    free(lp);
    return tf_error(st, "flow density on the reference samples at c = %g: %s", c, tf_errmsg());
  }
  for (int64_t i = 0; i < n; i++) lp[i] = -lp[i];
  tf_stats_mean_se(n, lp, 1, &r->col[TF_EV_NLL_REF][row], &r->col[TF_EV_NLL_REF_ERR][row]);
  if (!isfinite(r->col[TF_EV_NLL_REF][row]))
    add_note(note, note_len, "the flow gives a non-finite density to some reference samples");
  free(lp);
  r->col[TF_EV_N_REF][row] = (double)n;
  r->col[TF_EV_REF_SOURCE][row] = from_file ? 2 : 1;
  st = tf_physics_observables(p, n, x, cvec, obs);
  if (st != TF_OK) return tf_error(st, "observables of the reference samples: %s", tf_errmsg());
  double *tau = malloc((size_t)(M > 0 ? M : 1) * sizeof *tau);
  if (!tau) return tf_error(TF_ENOMEM, "out of memory");
  for (int k = 0; k < M; k++) {
    double *mean = &r->tab[TF_EV_OBS_REF][row * Mt + k];
    double *err = &r->tab[TF_EV_OBS_REF_ERR][row * Mt + k];
    tf_stats_mean_se(n, obs + k, M, mean, err);
    tf_tau_result t;
    tau[k] = 0.5;
    /* file rows may be a Markov chain: the error then needs its autocorrelation time */
    if (from_file && n >= 2 && tf_stats_tau_int(n, obs + k, M, 6, &t) == TF_OK && t.tau > 0.5) {
      *err = t.err;
      tau[k] = t.tau;
    }
  }
  /* blocks in file order: contiguous stretches of the chains */
  st = eval_derived(p, n, NULL, obs, tau, &r->tab[TF_EV_OBS_REF][row * Mt],
                    &r->tab[TF_EV_OBS_REF_ERR][row * Mt], "reference", note, note_len);
  free(tau);
  return st;
}

/* ---- KL by quadrature ------------------------------------------------------------------------ */

/* log q at the G x G cell centres of [lo, hi] into lq (G^2, row i = axis 0) and the grid
 * points into xg (G^2, 2); returns the exact mass sum exp(lq - log_z) dA in *mass. */
static int kl_grid_logq(const tf_physics *p, double c, int G, const double *lo,
                        const double *hi, double log_z, double *xg, double *cg, double *lq,
                        double *mass) {
  const double h0 = (hi[0] - lo[0]) / G, h1 = (hi[1] - lo[1]) / G;
  const int64_t n = (int64_t)G * G;
  for (int i = 0; i < G; i++)
    for (int j = 0; j < G; j++) {
      xg[2 * ((int64_t)i * G + j)] = lo[0] + (i + 0.5) * h0;
      xg[2 * ((int64_t)i * G + j) + 1] = lo[1] + (j + 0.5) * h1;
    }
  for (int64_t i = 0; i < n; i++) cg[i] = c;
  const int st = tf_physics_log_q(p, n, xg, cg, lq, NULL, NULL);
  if (st != TF_OK) return st;
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += exp(lq[i] - log_z);
  *mass = s * h0 * h1;
  return TF_OK;
}

static int eval_kl(tf_model *model, tf_ctx *ctx, const tf_physics *p, double c, int G,
                   double log_z, int64_t n, const double *x, const double *log_w,
                   tf_eval_result *r, int64_t row, char *note, size_t note_len) {
  /* the box from the reweighted moments (the target's, if the weights are any good) */
  double lo[2], hi[2];
  double *xx = malloc((size_t)n * sizeof *xx);
  if (!xx) return tf_error(TF_ENOMEM, "out of memory");
  for (int a = 0; a < 2; a++) {
    double mu, m2;
    for (int64_t i = 0; i < n; i++) xx[i] = x[2 * i + a] * x[2 * i + a];
    tf_stats_snis_mean(n, log_w, x + a, 2, &mu, NULL);
    tf_stats_snis_mean(n, log_w, xx, 1, &m2, NULL);
    double sd = sqrt(fmax(m2 - mu * mu, 0));
    if (!isfinite(mu) || !(sd > 0) || !isfinite(sd)) { /* degenerate weights: the flow's own */
      double e;
      tf_stats_mean_se(n, x + a, 2, &mu, &e);
      sd = e * sqrt((double)n);
    }
    if (!(sd > 0) || !isfinite(sd)) sd = 1;
    lo[a] = mu - KL_SD * sd;
    hi[a] = mu + KL_SD * sd;
  }
  free(xx);
  const int64_t ng = (int64_t)G * G;
  double *xg = malloc((size_t)(2 * ng) * sizeof *xg), *cg = malloc((size_t)ng * sizeof *cg);
  double *lq = malloc((size_t)ng * sizeof *lq), *lp = malloc((size_t)ng * sizeof *lp);
  int st = xg && cg && lq && lp ? TF_OK : tf_error(TF_ENOMEM, "out of memory for the KL grid");
  double mass = 0;
  for (int w = 0; st == TF_OK; w++) {
    st = kl_grid_logq(p, c, G, lo, hi, log_z, xg, cg, lq, &mass);
    if (st != TF_OK || mass >= KL_MASS) break;
    if (w == KL_WIDEN_MAX) {
      add_note(note, note_len, "KL: exact mass in the widest box only %.8f", mass);
      break;
    }
    for (int a = 0; a < 2; a++) {
      const double mid = 0.5 * (lo[a] + hi[a]), half = 0.5 * (hi[a] - lo[a]) * KL_WIDEN;
      lo[a] = mid - half;
      hi[a] = mid + half;
    }
  }
  if (st == TF_OK && fabs(mass - 1) > 1e-3)
    add_note(note, note_len, "KL: the %d x %d grid integrates the exact density to %.6f; "
             "raise --kl-grid", G, G, mass);
  if (st == TF_OK) {
    tf_dataset ds = {ng, 2, xg, NULL, c};
    st = tf_dataset_log_prob(model, ctx, &ds, NULL, ng, lp);
    if (st != TF_OK) tf_error(st, "flow density on the KL grid: %s", tf_errmsg());
  }
  if (st == TF_OK) {
    const double dA = (hi[0] - lo[0]) / G * (hi[1] - lo[1]) / G;
    double kl_h = 0, kl_2h = 0;
    for (int i = 0; i < G; i++)
      for (int j = 0; j < G; j++) {
        const int64_t q = (int64_t)i * G + j;
        const double lpx = lq[q] - log_z, px = exp(lpx);
        if (px == 0) continue;
        const double t = px * (lpx - lp[q]);
        kl_h += t;
        if (i % 2 == 0 && j % 2 == 0) kl_2h += t;
      }
    kl_h *= dA;
    kl_2h *= 4 * dA;
    r->col[TF_EV_KL][row] = kl_h;
    r->col[TF_EV_KL_ERR][row] = fabs(kl_h - kl_2h);
  } else if (st != TF_OK) {
    st = tf_error(st, "KL at c = %g: %s", c, tf_errmsg());
  }
  free(xg);
  free(cg);
  free(lq);
  free(lp);
  return st;
}

/* ---- independence Metropolis ----------------------------------------------------------------- */

static int eval_imh(int64_t n, const double *log_w, const double *obs, int M, tf_rng *rng,
                    tf_eval_result *r, int64_t row, char *note, size_t note_len,
                    const tf_physics *p) {
  const int Mt = M + tf_physics_n_derived(p);
  int64_t *chain = malloc((size_t)n * sizeof *chain);
  double *f = malloc((size_t)n * sizeof *f);
  int st = chain && f ? TF_OK : tf_error(TF_ENOMEM, "out of memory for an IMH chain of %lld",
                                         (long long)n);
  double acc = NAN;
  if (st == TF_OK) st = tf_stats_imh(n, log_w, rng, chain, &acc);
  if (st == TF_OK) r->col[TF_EV_IMH_ACCEPT][row] = acc;
  for (int k = 0; st == TF_OK && k < M; k++) {
    for (int64_t t = 0; t < n; t++) f[t] = obs[chain[t] * M + k];
    tf_tau_result tr;
    if (tf_stats_tau_int(n, f, 1, 6, &tr) != TF_OK) {
      add_note(note, note_len, "IMH: %s is not finite along the chain", tf_physics_obs_name(p, k));
      continue;
    }
    const int64_t q = row * Mt + k;
    r->tab[TF_EV_OBS_IMH][q] = tr.mean;
    r->tab[TF_EV_OBS_TAU][q] = tr.tau;
    r->tab[TF_EV_OBS_TAU_ERR][q] = tr.tau_err;
    /* a chain that never moved has no measurable error */
    r->tab[TF_EV_OBS_IMH_ERR][q] = acc > 0 ? tr.err : NAN;
    if (!tr.converged)
      add_note(note, note_len, "IMH: %s: tau_int window not reached (chain too short)",
               tf_physics_obs_name(p, k));
  }
  if (st == TF_OK && !(acc > 0)) add_note(note, note_len, "IMH: no proposal was accepted");
  if (st == TF_OK && Mt > M && acc > 0) {
    /* the chain's states, for the derived quantities' blocked jackknife */
    double *cs = malloc((size_t)(n * M) * sizeof *cs);
    if (!cs) st = tf_error(TF_ENOMEM, "out of memory for an IMH chain of %lld", (long long)n);
    for (int64_t t = 0; st == TF_OK && t < n; t++)
      memcpy(cs + t * M, obs + chain[t] * M, (size_t)M * sizeof *cs);
    if (st == TF_OK)
      st = eval_derived(p, n, NULL, cs, &r->tab[TF_EV_OBS_TAU][row * Mt],
                        &r->tab[TF_EV_OBS_IMH][row * Mt],
                        &r->tab[TF_EV_OBS_IMH_ERR][row * Mt], "IMH", note, note_len);
    free(cs);
  }
  free(chain);
  free(f);
  return st;
}

/* ---- one condition --------------------------------------------------------------------------- */

int tf_eval_condition(tf_model *model, tf_ctx *ctx, const tf_physics *p, double c, int64_t index,
                      const tf_eval_config *cfg, const tf_eval_ref *ref, tf_eval_result *r,
                      int64_t row, char *note, size_t note_len) {
  if (note && note_len) note[0] = '\0';
  const int64_t D = tf_physics_dim(p), N = cfg->n;
  const int M = tf_physics_n_obs(p), Mt = M + tf_physics_n_derived(p);
  if (tf_model_dim(model) != D)
    return tf_error(TF_EINVAL, "the flow has dimension %d, physics module %s has %lld",
                    tf_model_dim(model), tf_physics_describe(p), (long long)D);
  if (N < 2 || cfg->bootstrap < 2 || row < 0 || row >= r->k || r->m != Mt)
    return tf_error(TF_EINVAL, "evaluation: need N >= 2 (got %lld), B >= 2 (got %lld) and a "
                    "result with row %lld and %d observables", (long long)N,
                    (long long)cfg->bootstrap, (long long)row, Mt);
  r->col[TF_EV_C][row] = c;
  r->col[TF_EV_N_REF][row] = 0; /* counts, not missing values: set when references exist */
  r->col[TF_EV_REF_SOURCE][row] = 0;
  const int64_t nr = ref && ref->n > 0 ? ref->n : cfg->n_ref;
  const int64_t cap = N > nr ? N : nr;
  double *x = malloc((size_t)(N * D) * sizeof *x), *lp = malloc((size_t)N * sizeof *lp);
  double *lw = malloc((size_t)N * sizeof *lw), *cvec = malloc((size_t)cap * sizeof *cvec);
  double *obs = malloc((size_t)(cap * (M > 0 ? M : 1)) * sizeof *obs);
  double *err = malloc((size_t)(2 + M) * sizeof *err), *xr = NULL;
  int st = x && lp && lw && cvec && obs && err ? TF_OK : tf_error(TF_ENOMEM, "evaluation at c "
                                                       "= %g: out of memory for %lld samples",
                                                       c, (long long)N);
  for (int64_t i = 0; st == TF_OK && i < cap; i++) cvec[i] = c;
  tf_rng rng;
  tf_rng_init(&rng, cfg->seed, 0, TF_RNG_LATENT, (uint32_t)index);
  if (st == TF_OK) st = tf_model_draw(model, ctx, c, N, cfg->chunk > 0 ? cfg->chunk : DEFAULT_CHUNK, &rng, x, lp);
  if (st == TF_OK) st = tf_physics_log_q(p, N, x, cvec, lw, NULL, NULL);
  int64_t n = 0;
  if (st == TF_OK) {
    for (int64_t i = 0; i < N; i++) lw[i] -= lp[i];
    n = keep_valid(N, D, x, lp, lw);
    r->col[TF_EV_N_VALID][row] = (double)n;
    if (n < 2)
      st = tf_error(TF_ENUMERIC, "at c = %g only %lld of %lld flow samples have a finite "
                    "density and log-weight", c, (long long)n, (long long)N);
    else if (n < N)
      add_note(note, note_len, "%lld of %lld samples dropped (non-finite x, log p or log w)",
               (long long)(N - n), (long long)N);
  }
  if (st == TF_OK) st = tf_physics_observables(p, n, x, cvec, obs);
  /* importance sampling: point estimates, then errors from one set of resamples */
  if (st == TF_OK) st = tf_stats_ess(n, lw, &r->col[TF_EV_ESS][row]);
  /* Below this the error bars of both estimators rest on the few samples that carry the
   * weight, and a region the flow misses shows in neither the mean nor its error: in the phi^4
   * runs of docs/RESULTS-phi4.md every IMH pull above 3.1 sat at ESS/N <= 0.053. */
  const double ess_warn = 0.1;
  if (st == TF_OK && r->col[TF_EV_ESS][row] < ess_warn)
    add_note(note, note_len, "ESS/N = %.3g below %g: the reweighted and IMH error bars rest on "
             "few effective samples and may be too small", r->col[TF_EV_ESS][row], ess_warn);
  if (st == TF_OK) st = tf_stats_log_z(n, lw, &r->col[TF_EV_LOGZ][row], NULL);
  for (int k = 0; st == TF_OK && k < M; k++)
    st = tf_stats_snis_mean(n, lw, obs + k, M, &r->tab[TF_EV_OBS_RW][row * Mt + k], NULL);
  if (st == TF_OK) {
    tf_rng_init(&rng, cfg->seed, 0, TF_RNG_USER + 1, (uint32_t)index);
    st = tf_stats_is_bootstrap(n, lw, M, obs, cfg->bootstrap, &rng, err);
  }
  if (st == TF_OK) {
    r->col[TF_EV_ESS_ERR][row] = err[0];
    r->col[TF_EV_LOGZ_ERR][row] = err[1];
    for (int k = 0; k < M; k++) r->tab[TF_EV_OBS_RW_ERR][row * Mt + k] = err[2 + k];
  }
  if (st == TF_OK)
    st = eval_derived(p, n, lw, obs, NULL, &r->tab[TF_EV_OBS_RW][row * Mt],
                      &r->tab[TF_EV_OBS_RW_ERR][row * Mt], "reweighting", note, note_len);
  double log_z = NAN;
  const int zst = st == TF_OK ? tf_physics_log_z(p, c, &log_z) : TF_EUNSUP;
  if (zst == TF_OK && isfinite(log_z)) {
    r->col[TF_EV_LOGZ_EXACT][row] = log_z;
    r->col[TF_EV_LOGZ_DIFF][row] = r->col[TF_EV_LOGZ][row] - log_z;
  } else {
    /* no exact value is normal (TF_EUNSUP); a failing one is worth a word */
    if (zst == TF_OK)
      add_note(note, note_len, "the module's exact log Z is %g", log_z);
    else if (zst != TF_EUNSUP)
      add_note(note, note_len, "exact log Z unavailable: %s", tf_errmsg());
    log_z = NAN;
  }
  /* independence Metropolis over the first imh_n valid proposals */
  const int64_t n_imh = cfg->imh_n < 0 || cfg->imh_n > n ? n : cfg->imh_n;
  if (st == TF_OK && n_imh >= 2) {
    tf_rng_init(&rng, cfg->seed, 0, TF_RNG_MCMC, (uint32_t)index);
    st = eval_imh(n_imh, lw, obs, M, &rng, r, row, note, note_len, p);
  }
  if (st == TF_OK && D == 2 && cfg->kl_grid >= 2 && isfinite(log_z))
    st = eval_kl(model, ctx, p, c, cfg->kl_grid, log_z, n, x, lw, r, row, note, note_len);
  /* reference samples: the caller's rows at c, else the module's exact sampler */
  if (st == TF_OK && ref && ref->n > 0) {
    st = eval_reference(model, ctx, p, c, ref->n, ref->x, 1, cvec, obs, r, row, note, note_len);
  } else if (st == TF_OK && cfg->n_ref > 0 && tf_physics_has_sampler(p, c)) {
    xr = malloc((size_t)(cfg->n_ref * D) * sizeof *xr);
    if (!xr) st = tf_error(TF_ENOMEM, "out of memory for %lld reference samples",
                           (long long)cfg->n_ref);
    tf_rng_init(&rng, cfg->seed, 0, TF_RNG_USER + 2, (uint32_t)index);
    if (st == TF_OK && (st = tf_physics_sample(p, c, cfg->n_ref, &rng, xr)) != TF_OK)
      tf_error(st, "exact samples at c = %g: %s", c, tf_errmsg());
    if (st == TF_OK)
      st = eval_reference(model, ctx, p, c, cfg->n_ref, xr, 0, cvec, obs, r, row, note, note_len);
  }
  free(x);
  free(lp);
  free(lw);
  free(cvec);
  free(obs);
  free(err);
  free(xr);
  tf_ctx_reset(ctx);
  return st;
}
