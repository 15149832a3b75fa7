/* stats.c — estimators for importance-weighted samples and Markov chains.
 *
 * Exported: tf_stats_logsumexp, tf_stats_check_logw, tf_stats_ess, tf_stats_log_z,
 *           tf_stats_snis_mean, tf_stats_mean_se, tf_stats_bootstrap,
 *           tf_stats_bootstrap_work_size, tf_stats_is_bootstrap, tf_stats_imh,
 *           tf_stats_tau_int.
 * None is collective; none keeps state.  Definitions and conventions: include/tradeflow/stats.h.
 *
 * Every sum of weights is taken of exp(log w - max log w), so weights as large as e^700 or as
 * small as e^-700 (typical of a flow far from its target) neither overflow nor vanish.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tradeflow/error.h"
#include "tradeflow/stats.h"

/* ---- log-sum-exp and weights ----------------------------------------------------------------- */

/* Maximum of x; NaN if any is NaN. */
static double max_of(int64_t n, const double *x) {
  double m = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(x[i])) return NAN;
    if (x[i] > m) m = x[i];
  }
  return m;
}

double tf_stats_logsumexp(int64_t n, const double *x) {
  const double m = max_of(n, x);
  if (isnan(m) || m == INFINITY || m == -INFINITY) return m;
  /* Kahan: the shifted terms are in (0, 1] and their sum may have millions of them. */
  double s = 0, comp = 0;
  for (int64_t i = 0; i < n; i++) {
    const double y = exp(x[i] - m) - comp;
    const double t = s + y;
    comp = (t - s) - y;
    s = t;
  }
  return m + log(s);
}

int tf_stats_check_logw(int64_t n, const double *log_w, const char *what) {
  if (n < 1 || !log_w)
    return tf_error(TF_EINVAL, "%s: need at least one log-weight (got n = %lld)",
                    what ? what : "log-weights", (long long)n);
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++)
    if (isnan(log_w[i]) || log_w[i] == INFINITY) {
      if (first < 0) first = i;
      bad++;
    }
  if (bad)
    return tf_error(TF_ENUMERIC, "%s: %lld of %lld log-weights are NaN or +inf (first at index "
                    "%lld: %g); only finite values and -inf (weight 0) are allowed",
                    what ? what : "log-weights", (long long)bad, (long long)n, (long long)first,
                    log_w[first]);
  return TF_OK;
}

/* Sums of the shifted weights e_i = exp(log w_i - max) and their squares. */
static void weight_sums(int64_t n, const double *log_w, double m, double *s1, double *s2) {
  double a = 0, b = 0;
  for (int64_t i = 0; i < n; i++) {
    const double e = exp(log_w[i] - m);
    a += e;
    b += e * e;
  }
  *s1 = a;
  *s2 = b;
}

int tf_stats_ess(int64_t n, const double *log_w, double *ess_frac) {
  int st = tf_stats_check_logw(n, log_w, "ESS");
  if (st != TF_OK) return st;
  const double m = max_of(n, log_w);
  if (m == -INFINITY) {
    *ess_frac = 0;
    return TF_OK;
  }
  double s1, s2;
  weight_sums(n, log_w, m, &s1, &s2);
  /* exp(2 LSE(log w) - LSE(2 log w)) = s1^2 / s2 with the common shift cancelled. */
  *ess_frac = s1 * s1 / s2 / (double)n;
  return TF_OK;
}

int tf_stats_log_z(int64_t n, const double *log_w, double *log_z, double *err) {
  int st = tf_stats_check_logw(n, log_w, "log Z");
  if (st != TF_OK) return st;
  const double m = max_of(n, log_w);
  if (m == -INFINITY) {
    *log_z = -INFINITY;
    if (err) *err = NAN;
    return TF_OK;
  }
  double s1, s2;
  weight_sums(n, log_w, m, &s1, &s2);
  *log_z = m + log(s1) - log((double)n);
  if (err) {
    if (n < 2) {
      *err = NAN;
    } else {
      /* sum (e - ebar)^2 = s2 - s1^2 / n; relative error of the mean of e = that of Zhat */
      const double ebar = s1 / (double)n;
      double ss = s2 - s1 * ebar;
      if (ss < 0) ss = 0;
      *err = sqrt(ss / ((double)n * (double)(n - 1))) / ebar;
    }
  }
  return TF_OK;
}

int tf_stats_snis_mean(int64_t n, const double *log_w, const double *f, int64_t stride,
                       double *mean, double *err) {
  int st = tf_stats_check_logw(n, log_w, "reweighted mean");
  if (st != TF_OK) return st;
  const double m = max_of(n, log_w);
  if (m == -INFINITY) {
    *mean = NAN;
    if (err) *err = NAN;
    return TF_OK;
  }
  double s1 = 0, sf = 0;
  for (int64_t i = 0; i < n; i++) {
    const double e = exp(log_w[i] - m);
    if (e == 0) continue;
    s1 += e;
    sf += e * f[i * stride];
  }
  const double mu = sf / s1;
  *mean = mu;
  if (err) {
    double v = 0;
    for (int64_t i = 0; i < n; i++) {
      const double e = exp(log_w[i] - m);
      if (e == 0) continue;
      const double wn = e / s1, d = f[i * stride] - mu;
      v += wn * wn * d * d;
    }
    *err = sqrt(v);
  }
  return TF_OK;
}

void tf_stats_mean_se(int64_t n, const double *f, int64_t stride, double *mean, double *err) {
  /* Welford: stable for observables with a large mean and a small spread (energies). */
  double mu = 0, m2 = 0;
  for (int64_t i = 0; i < n; i++) {
    const double x = f[i * stride], d = x - mu;
    mu += d / (double)(i + 1);
    m2 += d * (x - mu);
  }
  *mean = n > 0 ? mu : NAN;
  if (err) *err = n > 1 ? sqrt(m2 / (double)(n - 1) / (double)n) : NAN;
}

/* ---- bootstrap ------------------------------------------------------------------------------- */

size_t tf_stats_bootstrap_work_size(int64_t n, int n_stat) {
  return (size_t)n * sizeof(int64_t) + 2 * (size_t)n_stat * sizeof(double);
}

int tf_stats_bootstrap(int64_t n, int64_t B, tf_rng *rng, int n_stat, tf_boot_fn fn,
                       void *arg, void *work, double *sd) {
  if (n < 1 || B < 2 || n_stat < 1 || !fn || !rng || !sd)
    return tf_error(TF_EINVAL, "bootstrap: need n >= 1 samples, B >= 2 resamples, a statistic "
                    "and outputs (got n = %lld, B = %lld, n_stat = %d)", (long long)n,
                    (long long)B, n_stat);
  void *own = NULL;
  if (!work) {
    own = work = malloc(tf_stats_bootstrap_work_size(n, n_stat));
    if (!own) return tf_error(TF_ENOMEM, "bootstrap: out of memory for %lld indices", (long long)n);
  }
  int64_t *idx = work;
  double *acc = (double *)(idx + n); /* per statistic: running mean, then M2 (Welford) */
  double *mu = acc, *m2 = acc + n_stat;
  /* the statistic writes its values into sd[] (the caller's output doubles as scratch) */
  for (int k = 0; k < n_stat; k++) mu[k] = m2[k] = 0;
  int st = TF_OK;
  for (int64_t b = 0; b < B && st == TF_OK; b++) {
    for (int64_t i = 0; i < n; i++) idx[i] = (int64_t)tf_rng_below(rng, (uint64_t)n);
    st = fn(n, idx, arg, sd);
    for (int k = 0; k < n_stat && st == TF_OK; k++) {
      const double d = sd[k] - mu[k];
      mu[k] += d / (double)(b + 1);
      m2[k] += d * (sd[k] - mu[k]); /* a non-finite value poisons M2: sd NaN, as documented */
    }
  }
  if (st == TF_OK)
    for (int k = 0; k < n_stat; k++) {
      const double v = m2[k] / (double)(B - 1);
      sd[k] = isfinite(v) ? sqrt(v > 0 ? v : 0) : NAN;
    }
  free(own);
  return st;
}

typedef struct {
  const double *log_w;
  const double *obs;
  int m;
  double *sums; /* m weighted observable sums of one resample */
} is_boot_arg;

static int is_boot_stat(int64_t n, const int64_t *idx, void *p, double *out) {
  const is_boot_arg *a = p;
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    if (a->log_w[idx[i]] > mx) mx = a->log_w[idx[i]];
  if (mx == -INFINITY) { /* every resampled weight is 0 */
    out[0] = 0;
    out[1] = -INFINITY;
    for (int k = 0; k < a->m; k++) out[2 + k] = NAN;
    return TF_OK;
  }
  double s1 = 0, s2 = 0;
  for (int k = 0; k < a->m; k++) a->sums[k] = 0;
  for (int64_t i = 0; i < n; i++) {
    const double e = exp(a->log_w[idx[i]] - mx);
    if (e == 0) continue;
    s1 += e;
    s2 += e * e;
    const double *row = a->obs + idx[i] * a->m;
    for (int k = 0; k < a->m; k++) a->sums[k] += e * row[k];
  }
  out[0] = s1 * s1 / s2 / (double)n;
  out[1] = mx + log(s1) - log((double)n);
  for (int k = 0; k < a->m; k++) out[2 + k] = a->sums[k] / s1;
  return TF_OK;
}

int tf_stats_is_bootstrap(int64_t n, const double *log_w, int m, const double *obs,
                          int64_t B, tf_rng *rng, double *err) {
  int st = tf_stats_check_logw(n, log_w, "bootstrap");
  if (st != TF_OK) return st;
  if (m < 0 || (m > 0 && !obs))
    return tf_error(TF_EINVAL, "bootstrap: %d observables but no table", m);
  double *sums = malloc((size_t)(m > 0 ? m : 1) * sizeof *sums);
  if (!sums) return tf_error(TF_ENOMEM, "bootstrap: out of memory");
  is_boot_arg a = {log_w, obs, m, sums};
  st = tf_stats_bootstrap(n, B, rng, 2 + m, is_boot_stat, &a, NULL, err);
  free(sums);
  return st;
}

/* ---- independence Metropolis ----------------------------------------------------------------- */

int tf_stats_imh(int64_t n, const double *log_w, tf_rng *rng, int64_t *chain, double *accept) {
  int st = tf_stats_check_logw(n, log_w, "independence Metropolis");
  if (st != TF_OK) return st;
  int64_t cur = 0, acc = 0;
  chain[0] = 0;
  for (int64_t t = 1; t < n; t++) {
    /* one uniform per step whatever happens, so the stream position is a function of t */
    const double u = tf_rng_uniform(rng);
    const double lc = log_w[cur], lt = log_w[t];
    int yes;
    if (lc == -INFINITY)
      yes = 1; /* leave a zero-weight state at once */
    else if (lt == -INFINITY)
      yes = 0;
    else
      yes = lt >= lc || log(u) < lt - lc;
    if (yes) {
      cur = t;
      acc++;
    }
    chain[t] = cur;
  }
  *accept = n > 1 ? (double)acc / (double)(n - 1) : NAN;
  return TF_OK;
}

/* ---- autocorrelation ------------------------------------------------------------------------- */

/* Gamma(t) = 1/n sum_{s < n - t} (f_s - mu)(f_{s+t} - mu) */
static double autocov(int64_t n, const double *f, int64_t stride, double mu, int64_t t) {
  double g = 0;
  for (int64_t s = 0; s + t < n; s++) g += (f[s * stride] - mu) * (f[(s + t) * stride] - mu);
  return g / (double)n;
}

int tf_stats_tau_int(int64_t n, const double *f, int64_t stride, double c, tf_tau_result *out) {
  if (n < 2 || !f || !out)
    return tf_error(TF_EINVAL, "autocorrelation time: need a chain of at least 2 values (got %lld)",
                    (long long)n);
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(f[i * stride]))
      return tf_error(TF_ENUMERIC, "autocorrelation time: chain value %lld is %g", (long long)i,
                      f[i * stride]);
  if (c <= 0) c = 6;
  double mu, se;
  tf_stats_mean_se(n, f, stride, &mu, &se);
  const double g0 = autocov(n, f, stride, mu, 0);
  memset(out, 0, sizeof *out);
  out->mean = mu;
  out->var = g0;
  if (!(g0 > 0)) { /* constant chain: nothing to correlate */
    out->tau = 0.5;
    out->converged = 1;
    return TF_OK;
  }
  int64_t w_max = n / 4;
  if (w_max < 1) w_max = 1;
  double tau = 0.5;
  int64_t w = 0;
  int conv = 0;
  while (w < w_max) {
    w++;
    tau += autocov(n, f, stride, mu, w) / g0;
    if ((double)w >= c * tau) {
      conv = 1;
      break;
    }
  }
  out->tau = tau;
  out->window = w;
  out->converged = conv;
  out->tau_err = tau * sqrt(2.0 * (2.0 * (double)w + 1.0) / (double)n);
  /* a negative estimate (anti-correlated noise) would make the error imaginary */
  out->err = sqrt(g0 * 2.0 * (tau > 0 ? tau : 0) / (double)n);
  return TF_OK;
}

/* ---- jackknife --------------------------------------------------------------------------------- */

int tf_stats_jackknife(int64_t n, const double *log_w, const double *obs, int m, int n_blocks,
                       tf_means_fn f, void *arg, int n_out, double *value, double *err) {
  const int B = n_blocks;
  if (B < 2 || n < 2 * (int64_t)B || m < 1 || !obs || !f || n_out < 1 || !value || !err)
    return tf_error(TF_EINVAL, "jackknife: need n >= 2 B, B >= 2, m >= 1 (n %lld, B %d, m %d)",
                    (long long)n, B, m);
  double lmax = 0;
  if (log_w) {
    lmax = -INFINITY;
    for (int64_t i = 0; i < n; i++)
      if (log_w[i] > lmax) lmax = log_w[i];
    if (!(lmax > -INFINITY) || !isfinite(lmax))
      return tf_error(TF_ENUMERIC, "jackknife: no finite positive weight (max log w %g)", lmax);
  }
  /* per block: sum w and sum w o_k (B rows of m + 1); the totals; one mean vector; then the
   * leave-one-block-out values (B rows of n_out), their average and variance */
  const size_t mb = (size_t)m + 1;
  double *buf = calloc((size_t)B * mb + mb + (size_t)m + (size_t)(B + 2) * (size_t)n_out,
                       sizeof *buf);
  if (!buf) return tf_error(TF_ENOMEM, "jackknife: out of memory");
  double *bs = buf, *tot = bs + (size_t)B * mb, *mean = tot + mb, *fbs = mean + m,
         *avg = fbs + (size_t)B * n_out, *var = avg + n_out;
  for (int64_t i = 0; i < n; i++) {
    const int b = (int)((i * B) / n);
    const double w = log_w ? exp(log_w[i] - lmax) : 1;
    if (w == 0) continue;
    double *r = bs + (size_t)b * mb;
    r[0] += w;
    for (int k = 0; k < m; k++) r[1 + k] += w * obs[i * m + k];
  }
  for (int b = 0; b < B; b++)
    for (int k = 0; k <= m; k++) tot[k] += bs[(size_t)b * mb + k];
  for (int k = 0; k < m; k++) mean[k] = tot[1 + k] / tot[0];
  f(mean, arg, value);
  /* leave-one-block-out values; the variance in a second pass (stable) */
  for (int b = 0; b < B; b++) {
    const double *r = bs + (size_t)b * mb;
    const double wb = tot[0] - r[0];
    for (int k = 0; k < m; k++) mean[k] = (tot[1 + k] - r[1 + k]) / wb;
    f(mean, arg, fbs + (size_t)b * n_out);
    for (int j = 0; j < n_out; j++) avg[j] += fbs[(size_t)b * n_out + j] / B;
  }
  for (int b = 0; b < B; b++)
    for (int j = 0; j < n_out; j++) {
      const double d = fbs[(size_t)b * n_out + j] - avg[j];
      var[j] += d * d;
    }
  for (int j = 0; j < n_out; j++) {
    err[j] = isfinite(var[j]) ? sqrt((B - 1.0) / B * var[j]) : NAN;
    if (!isfinite(value[j])) err[j] = NAN;
  }
  free(buf);
  return TF_OK;
}
