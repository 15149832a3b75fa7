/* tradeflow — estimators for importance-weighted and Markov-chain samples (DESIGN.md section 4,
 * "Metrics").
 *
 * Everything is double precision, whatever the network precision.  Arrays are the caller's;
 * nothing here keeps state between calls.  Functions that can fail return TF_OK or a status of
 * error.h with a message naming the array and the index (tf_errmsg()).
 *
 * Log-weights
 *   log w_i = log q(x_i | c) - log p_theta(x_i | c) for x_i ~ p_theta.  A log-weight of -inf is
 *   a weight of exactly 0 (the target density vanishes there) and is an ordinary value: it
 *   counts in N, carries no weight, and is never accepted by the Metropolis chain unless the
 *   chain is itself on a zero-weight state.  NaN and +inf are errors (TF_ENUMERIC naming the
 *   first offending index and how many there are): a NaN weight has no meaning, and an
 *   infinite one would make every other sample irrelevant.  Callers that want to drop such
 *   samples filter them first (the eval command does, and reports the count).
 *
 * Strided observables
 *   An observable table obs (n, M) row-major is passed as (f = obs + k, stride = M) for column
 *   k; a plain vector has stride 1.
 *
 * Errors
 *   Statistical errors are one standard deviation.  Bootstrap errors resample the n samples
 *   with replacement B times (uniform indices from the caller's tf_rng, so a fixed seed gives
 *   fixed errors) and return the sample standard deviation (divisor B - 1) of the statistic
 *   over the resamples.
 */
#ifndef TRADEFLOW_STATS_H
#define TRADEFLOW_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "tradeflow/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- log-sum-exp and weights ----------------------------------------------------------------- */

/* log sum_i exp(x_i), shifted by the maximum so that no exp overflows or underflows to a sum
 * of zero: exact for values near +-1e308.  n == 0 or all -inf: -inf.  Any NaN: NaN.  Any +inf
 * (and no NaN): +inf.  Accumulated in double with compensated (Kahan) summation of the shifted
 * exponentials. */
double tf_stats_logsumexp(int64_t n, const double *x);

/* TF_OK if every log-weight is finite or -inf; TF_ENUMERIC naming `what`, the first bad index
 * and the count of NaN / +inf entries otherwise.  TF_EINVAL if n < 1. */
int tf_stats_check_logw(int64_t n, const double *log_w, const char *what);

/* Kish effective sample size per sample,
 *   ESS / N = exp(2 LSE(log w) - LSE(2 log w)) / N,  in [1/N, 1];
 * 0 when every weight is 0 (all log w = -inf).  Errors as tf_stats_check_logw. */
int tf_stats_ess(int64_t n, const double *log_w, double *ess_frac);

/* log Zhat = LSE(log w) - log N: the log of the importance-sampling estimate of
 * Z = integral q dx (the flow being normalised).  -inf when every weight is 0.  *err (may be
 * NULL) gets the delta-method standard error of log Zhat,
 *   sqrt( sum (w_i - wbar)^2 / (N (N - 1)) ) / wbar,   (NaN for n < 2 or all weights 0).
 * Unbiased for Z, not for log Z (Jensen: E log Zhat <= log Z). */
int tf_stats_log_z(int64_t n, const double *log_w, double *log_z, double *err);

/* Self-normalised importance-sampling mean of f,
 *   mean = sum_i w_i f_i / sum_i w_i,
 * and (err may be NULL) its delta-method standard error
 *   err = sqrt( sum_i wn_i^2 (f_i - mean)^2 ),  wn_i = w_i / sum_j w_j.
 * f_i is read at f[i * stride].  Samples of weight 0 are ignored even where f is not finite;
 * a non-finite f_i with positive weight makes the mean NaN (not an error: the observable
 * decides).  All weights 0: mean and err NaN. */
int tf_stats_snis_mean(int64_t n, const double *log_w, const double *f, int64_t stride,
                       double *mean, double *err);

/* Plain mean of f[i * stride] and its standard error sd / sqrt(n) (sd with divisor n - 1;
 * err NaN for n < 2).  err may be NULL. */
void tf_stats_mean_se(int64_t n, const double *f, int64_t stride, double *mean, double *err);

/* ---- bootstrap ------------------------------------------------------------------------------- */

/* A statistic of a resample: write n_stat values into out[0..n_stat) for the resample of size
 * n whose elements are the original samples idx[0..n) (with repetitions).  Return TF_OK, or an
 * error status to abort the bootstrap. */
typedef int (*tf_boot_fn)(int64_t n, const int64_t *idx, void *arg, double *out);

/* sd[k] = standard deviation of statistic k over B >= 2 resamples of n >= 1 samples.
 *   rng:  the resampling stream (advanced by B n draws);
 *   work: NULL (allocated once here), or a caller's buffer of n indices plus 2 n_stat doubles
 *         laid out as (int64_t[n]) then (double[2 n_stat]) — see tf_stats_bootstrap_work_size;
 *   sd:   n_stat outputs.  A statistic that is not finite in some resample gets sd NaN.
 * Resample b draws its n indices before the statistic is evaluated, so the sequence of
 * resamples depends only on rng, n and B. */
int tf_stats_bootstrap(int64_t n, int64_t B, tf_rng *rng, int n_stat, tf_boot_fn fn,
                       void *arg, void *work, double *sd);
/* Bytes of the work buffer of tf_stats_bootstrap. */
size_t tf_stats_bootstrap_work_size(int64_t n, int n_stat);

/* Bootstrap errors of the importance-sampling summaries in one pass over B resamples:
 *   err[0] = sd of ESS/N, err[1] = sd of log Zhat, err[2 + k] = sd of the SNIS mean of
 *   observable k (k < m; obs is (n, m) row-major, NULL when m == 0).
 * err has 2 + m entries.  Errors as tf_stats_check_logw. */
int tf_stats_is_bootstrap(int64_t n, const double *log_w, int m, const double *obs,
                          int64_t B, tf_rng *rng, double *err);

/* ---- jackknife of functions of means ---------------------------------------------------------- */

/* f maps the m (weighted) means of the observables to n_out values. */
typedef void (*tf_means_fn)(const double *means, void *arg, double *out);

/* value = f(weighted means of obs (n, m) row-major), weights w_i = exp(log_w_i) (log_w NULL:
 * equal weights), and err = the blocked jackknife error over n_blocks contiguous blocks:
 *   err^2 = (B - 1) / B sum_b (f_(b) - mean_b f_(b))^2,
 * f_(b) from all samples outside block b.  Valid for independent samples and for Markov
 * chains whose blocks are much longer than the autocorrelation time (the caller's choice of
 * B).  value / err NaN where f is not finite.  TF_EINVAL for n < 2 B or B < 2; TF_ENUMERIC
 * when all weights are 0.  One allocation of B (m + 1) + 2 m + 1 + (B + 2) n_out doubles. */
int tf_stats_jackknife(int64_t n, const double *log_w, const double *obs, int m, int n_blocks,
                       tf_means_fn f, void *arg, int n_out, double *value, double *err);

/* ---- independence Metropolis ----------------------------------------------------------------- */

/* Independence Metropolis-Hastings over the proposals in order: state 0 is proposal 0; at step
 * t = 1..n-1 proposal t is accepted with probability min(1, w_t / w_current) (one uniform from
 * rng per step), else the current state is repeated.  Since the proposals are drawn from the
 * flow and w = q / p_theta, the chain's stationary law is the target.
 *   chain[t] = index of the state at step t (n entries); *accept = accepted / (n - 1)
 *   (NaN for n == 1).  A zero-weight current state accepts anything; a zero-weight proposal is
 *   otherwise rejected.  Errors as tf_stats_check_logw. */
int tf_stats_imh(int64_t n, const double *log_w, tf_rng *rng, int64_t *chain, double *accept);

/* ---- autocorrelation ------------------------------------------------------------------------- */

typedef struct {
  double mean;     /* chain mean */
  double var;      /* variance Gamma(0) (divisor n) */
  double tau;      /* integrated autocorrelation time, tau = 1/2 + sum_{t=1}^{W} rho(t) */
  double tau_err;  /* Madras-Sokal: tau sqrt(2 (2 W + 1) / n) */
  double err;      /* error of the mean: sqrt(var 2 tau / n) */
  int64_t window;  /* W */
  int converged;   /* 1 if W >= c tau(W) was reached before W = n / 4 */
} tf_tau_result;

/* Integrated autocorrelation time of the chain f[t * stride], t < n, with Sokal's automatic
 * window: the smallest W >= 1 with W >= c tau(W) (c = 6 is the usual choice; c <= 0 means 6).
 * rho(t) = Gamma(t) / Gamma(0) with Gamma(t) = 1/n sum_{s < n - t} (f_s - mean)(f_{s+t} - mean).
 * When the condition is not met before W = n / 4 the chain is too short: the result at
 * W = n / 4 is returned with converged = 0.  A constant chain (var 0) has tau = 1/2 and
 * err = 0.  Cost O(n W).  TF_EINVAL for n < 2; TF_ENUMERIC (naming the index) for a
 * non-finite value. */
int tf_stats_tau_int(int64_t n, const double *f, int64_t stride, double c, tf_tau_result *out);

#ifdef __cplusplus
}
#endif
#endif
