/* measure.c — analysis of lattice configurations: magnetisation moments, <s>, chi, Binder
 * cumulant, connected two-point functions in position and momentum space, time-slice
 * correlator, effective mass and second-moment correlation length, with jackknife errors
 * (include/tradeflow/lattice.h; definitions in physics/lattice/README.md).
 *
 * Exported: tf_lat_meas_create, tf_lat_meas_destroy, tf_lat_meas_add, tf_lat_meas_result.
 *
 * What is accumulated.  Per block b (contiguous in the order of addition) the weighted sums
 *   W_b = sum w,  sum w m, sum w |m|, sum w m^2, sum w m^4, sum w s,  sum w |phi~(p)|^2
 * (the last on FFTW's half grid, one r2c FFT per configuration), plus per configuration |m|,
 * s and log w for tau_int and the effective sample size.  Every derived quantity is a function
 * of the block sums' totals; the jackknife sample j uses the totals minus block j, and
 *   err = sqrt((B - 1) / B sum_j (theta_j - mean_j theta_j)^2).
 * Position-space G(x) is the inverse FFT of G~(p) of each jackknife sample.
 *
 * Weights.  w = exp(log w - shift) with shift the largest log-weight so far; when a larger one
 * arrives every block sum is rescaled by exp(old shift - new shift), so no weight overflows
 * whatever the spread of log-weights.
 *
 * Memory: everything at create (O(n_total) scalars, O(n_blocks L^2) block sums); add and
 * result allocate nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "physics-impl.h"
#include "tradeflow/error.h"
#include "tradeflow/lattice.h"
#include "tradeflow/stats.h"

static const double PI = 3.14159265358979323846;

/* block-sum layout: W, then the weighted sums of these, then |phi~(p)|^2 on the half grid */
enum { S_W = 0, S_M, S_ABS, S_M2, S_M4, S_S, S_N };
/* derived-vector layout: these scalars, then g (V), gp (V), ct (L), meff (L), and the
 * |m|-subtracted gc (V), ctc (L), meffc (L) */
enum { D_M = 0, D_ABS, D_M2, D_M4, D_S, D_CHI, D_CHI2, D_BINDER, D_XI, D_XI_C, D_N };

struct tf_lat_meas {
  int L, V, hw, nh, nb;
  int64_t n_total, n_added;
  int has_action, has_w; /* -1 until the first add */
  double shift;          /* log-weight shift (0 without weights) */
  double *c_abs, *c_s, *c_lw; /* per configuration (n_total each) */
  double *blk;           /* (nb, stride) */
  int stride;            /* S_N + nh */
  double *tot, *cur;     /* (stride) */
  double *pw, *gph;      /* (nh): one configuration's power, a connected G~ on the half grid */
  int nd;                /* D_N + 3 V + 4 L */
  double *theta, *jmean, *jss, *val, *err; /* (nd) */
  tf_lat_fft *fft;
};

void tf_lat_meas_destroy(tf_lat_meas *a) {
  if (!a) return;
  tf_lat_fft_destroy(a->fft);
  free(a->c_abs);
  free(a->blk);
  free(a->tot);
  free(a);
}

int tf_lat_meas_create(int L, int64_t n_total, int n_blocks, tf_lat_meas **out) {
  if (!out) return tf_error(TF_EINVAL, "tf_lat_meas_create: out is NULL");
  *out = NULL;
  if (L < 2 || L > 46340) return tf_error(TF_EINVAL, "tf_lat_meas_create: L = %d (need >= 2)", L);
  if (n_total < 2)
    return tf_error(TF_EINVAL, "tf_lat_meas_create: n_total = %lld configurations (need >= 2 "
                    "for an error)", (long long)n_total);
  if (n_blocks == 0) n_blocks = n_total < 100 ? (int)n_total : 100;
  if (n_blocks < 2 || n_blocks > n_total)
    return tf_error(TF_EINVAL, "tf_lat_meas_create: n_blocks = %d (need 2 <= n_blocks <= "
                    "n_total = %lld, or 0)", n_blocks, (long long)n_total);
  tf_lat_meas *a = calloc(1, sizeof *a);
  if (!a) return tf_error(TF_ENOMEM, "tf_lat_meas_create: out of memory");
  a->L = L;
  a->V = L * L;
  a->hw = L / 2 + 1;
  a->nh = L * a->hw;
  a->nb = n_blocks;
  a->n_total = n_total;
  a->has_action = a->has_w = -1;
  a->stride = S_N + a->nh;
  a->nd = D_N + 3 * a->V + 4 * L;
  a->c_abs = malloc(3 * (size_t)n_total * sizeof *a->c_abs);
  a->blk = calloc((size_t)n_blocks * (size_t)a->stride, sizeof *a->blk);
  a->tot = malloc((2 * (size_t)a->stride + 2 * (size_t)a->nh + 5 * (size_t)a->nd) *
                  sizeof *a->tot);
  int rc = TF_OK;
  if (a->c_abs && a->blk && a->tot) rc = tf_lat_fft_create(L, &a->fft);
  if (!a->c_abs || !a->blk || !a->tot || rc) {
    tf_lat_meas_destroy(a);
    return tf_error(TF_ENOMEM, "tf_lat_meas_create: out of memory (L = %d, %lld "
                    "configurations, %d blocks)", L, (long long)n_total, n_blocks);
  }
  a->c_s = a->c_abs + n_total;
  a->c_lw = a->c_s + n_total;
  a->cur = a->tot + a->stride;
  a->pw = a->cur + a->stride;
  a->gph = a->pw + a->nh;
  a->theta = a->gph + a->nh;
  a->jmean = a->theta + a->nd;
  a->jss = a->jmean + a->nd;
  a->val = a->jss + a->nd;
  a->err = a->val + a->nd;
  *out = a;
  return TF_OK;
}

int tf_lat_meas_add(tf_lat_meas *a, int64_t n, int64_t dim, const double *x, const double *action,
                    const double *log_w) {
  if (!a) return tf_error(TF_EINVAL, "tf_lat_meas_add: accumulator is NULL");
  if (n < 0 || (n > 0 && !x))
    return tf_error(TF_EINVAL, "tf_lat_meas_add: n = %lld, x = %p", (long long)n,
                    (const void *)x);
  const int V = a->V;
  if (dim != V)
    return tf_error(TF_EINVAL, "tf_lat_meas_add: configurations of %lld values, but the "
                    "accumulator is for L = %d (L^2 = %d values)", (long long)dim, a->L, V);
  if (n > a->n_total - a->n_added)
    return tf_error(TF_EINVAL, "tf_lat_meas_add: %lld more configurations, but only %lld of "
                    "n_total = %lld remain", (long long)n, (long long)(a->n_total - a->n_added),
                    (long long)a->n_total);
  if (n == 0) return TF_OK;
  const int ha = action != NULL, hw = log_w != NULL;
  if (a->has_action >= 0 && a->has_action != ha)
    return tf_error(TF_EINVAL, "tf_lat_meas_add: actions %s in this call but %s in earlier ones "
                    "(give them in every call or in none)", ha ? "given" : "missing",
                    ha ? "missing" : "given");
  if (a->has_w >= 0 && a->has_w != hw)
    return tf_error(TF_EINVAL, "tf_lat_meas_add: log-weights %s in this call but %s in earlier "
                    "ones (give them in every call or in none)", hw ? "given" : "missing",
                    hw ? "missing" : "given");
  /* validate everything first, so that an error adds nothing */
  for (int64_t i = 0; i < n; i++) {
    const double *xi = x + i * V;
    for (int s = 0; s < V; s++)
      if (!isfinite(xi[s]))
        return tf_error(TF_ENUMERIC, "tf_lat_meas_add: configuration %lld (of this call), site "
                        "%d (%d, %d) is %g", (long long)i, s, s / a->L, s % a->L, xi[s]);
    if (ha && !isfinite(action[i]))
      return tf_error(TF_ENUMERIC, "tf_lat_meas_add: action of configuration %lld is %g",
                      (long long)i, action[i]);
    if (hw && (isnan(log_w[i]) || log_w[i] == INFINITY))
      return tf_error(TF_ENUMERIC, "tf_lat_meas_add: log-weight of configuration %lld is %g "
                      "(finite or -inf needed)", (long long)i, log_w[i]);
  }
  if (a->has_action < 0) {
    a->has_action = ha;
    a->has_w = hw;
    a->shift = hw ? -INFINITY : 0;
  }

  for (int64_t i = 0; i < n; i++) {
    const int64_t k = a->n_added + i;
    const double *xi = x + i * V;
    const double lw = hw ? log_w[i] : 0;
    if (hw && lw > a->shift) {
      /* a new largest weight: rescale what has been summed (zero while shift = -inf) */
      const double r = exp(a->shift - lw);
      const size_t len = (size_t)a->nb * (size_t)a->stride;
      for (size_t q = 0; q < len; q++) a->blk[q] *= r;
      a->shift = lw;
    }
    double m = 0;
    for (int s = 0; s < V; s++) m += xi[s];
    m /= V;
    const double sv = ha ? action[i] / V : NAN;
    a->c_abs[k] = fabs(m);
    a->c_s[k] = sv;
    a->c_lw[k] = lw;
    const double w = exp(lw - a->shift);
    if (w == 0) continue;
    double *b = a->blk + (size_t)(k * a->nb / a->n_total) * (size_t)a->stride;
    const double m2 = m * m;
    b[S_W] += w;
    b[S_M] += w * m;
    b[S_ABS] += w * fabs(m);
    b[S_M2] += w * m2;
    b[S_M4] += w * m2 * m2;
    if (ha) b[S_S] += w * sv;
    tf_phys_fft_power(a->fft, xi, a->pw);
    for (int q = 0; q < a->nh; q++) b[S_N + q] += w * a->pw[q];
  }
  a->n_added += n;
  return TF_OK;
}

/* C(t) = sum_j (g(t, j) + g(j, t)) / 2 and meff(t) from it */
static void slices(int L, const double *g, double *ct, double *meff) {
  for (int i = 0; i < L; i++) {
    double c = 0;
    for (int j = 0; j < L; j++) c += g[i * L + j] + g[j * L + i];
    ct[i] = 0.5 * c;
  }
  for (int i = 0; i < L; i++) {
    const double arg = (ct[(i + L - 1) % L] + ct[(i + 1) % L]) / (2 * ct[i]);
    meff[i] = ct[i] > 0 && arg >= 1 ? acosh(arg) : NAN;
  }
}

/* second-moment xi from G~(0) and the mean of G~ at the two smallest non-zero momenta */
static double xi2(int L, double g0, double g1) {
  const double r = g0 / g1 - 1, sp = sin(PI / L);
  return r >= 0 ? sqrt(r) / (2 * sp) : NAN;
}

/* theta = every derived quantity of the sums t (layouts above); NaN where undefined */
static void derive(tf_lat_meas *a, const double *t, double *th) {
  const int L = a->L, V = a->V, hw = a->hw;
  const double W = t[S_W];
  const double m = t[S_M] / W, am = t[S_ABS] / W, m2 = t[S_M2] / W, m4 = t[S_M4] / W;
  th[D_M] = m;
  th[D_ABS] = am;
  th[D_M2] = m2;
  th[D_M4] = m4;
  th[D_S] = a->has_action ? t[S_S] / W : NAN;
  th[D_CHI] = V * (m2 - am * am);
  th[D_CHI2] = V * m2;
  th[D_BINDER] = 1 - m4 / (3 * m2 * m2);
  /* G~(p) = <|phi~(p)|^2> / V; subtracting <|m|>^2 from G(x) changes only G~(0), by V <|m|>^2 */
  for (int q = 0; q < a->nh; q++) a->gph[q] = t[S_N + q] / W / V;
  const double g1 = 0.5 * (a->gph[hw] + a->gph[1]);
  th[D_XI] = xi2(L, a->gph[0], g1);
  th[D_XI_C] = xi2(L, a->gph[0] - V * am * am, g1);
  double *g = th + D_N, *gp = g + V, *ct = gp + V, *meff = ct + L;
  double *gc = meff + L, *ctc = gc + V, *meffc = ctc + L;
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++)
      gp[i * L + j] = a->gph[j < hw ? i * hw + j : ((L - i) % L) * hw + (L - j)];
  tf_phys_fft_inverse_real(a->fft, a->gph, g);
  for (int s = 0; s < V; s++) gc[s] = g[s] - am * am;
  slices(L, g, ct, meff);
  slices(L, gc, ctc, meffc);
}

int tf_lat_meas_result(tf_lat_meas *a, tf_lat_result *r) {
  if (!a || !r) return tf_error(TF_EINVAL, "tf_lat_meas_result: NULL argument");
  if (a->n_added != a->n_total)
    return tf_error(TF_EINVAL, "tf_lat_meas_result: %lld of n_total = %lld configurations "
                    "added", (long long)a->n_added, (long long)a->n_total);
  const int nb = a->nb, st = a->stride, nd = a->nd;
  memset(a->tot, 0, (size_t)st * sizeof *a->tot);
  for (int b = 0; b < nb; b++)
    for (int q = 0; q < st; q++) a->tot[q] += a->blk[(size_t)b * st + q];
  if (!(a->tot[S_W] > 0))
    return tf_error(TF_ENUMERIC, "tf_lat_meas_result: every importance weight is 0");
  derive(a, a->tot, a->val);
  /* jackknife: Welford over the leave-one-block-out samples (NaN propagates into err) */
  for (int q = 0; q < nd; q++) a->jmean[q] = a->jss[q] = 0;
  for (int b = 0; b < nb; b++) {
    for (int q = 0; q < st; q++) a->cur[q] = a->tot[q] - a->blk[(size_t)b * st + q];
    if (!(a->cur[S_W] > 0)) { /* all weight in block b: this sample has no value */
      for (int q = 0; q < nd; q++) a->jss[q] = NAN;
      continue;
    }
    derive(a, a->cur, a->theta);
    for (int q = 0; q < nd; q++) {
      const double d = a->theta[q] - a->jmean[q];
      a->jmean[q] += d / (b + 1);
      a->jss[q] += d * (a->theta[q] - a->jmean[q]);
    }
  }
  for (int q = 0; q < nd; q++) a->err[q] = sqrt((double)(nb - 1) / nb * a->jss[q]);

  memset(r, 0, sizeof *r);
  const int64_t n = a->n_total;
  r->L = a->L;
  r->n = n;
  r->n_blocks = nb;
  if (a->has_w) {
    double f;
    int rc = tf_stats_ess(n, a->c_lw, &f);
    if (rc) return rc;
    r->ess = f * (double)n;
  } else {
    r->ess = (double)n;
  }
  tf_lat_est *e[D_N] = {&r->m,   &r->abs_m, &r->m2,     &r->m4, &r->s,
                        &r->chi, &r->chi2,  &r->binder, &r->xi, &r->xi_c};
  for (int q = 0; q < D_N; q++) {
    e[q]->val = a->val[q];
    e[q]->err = a->err[q];
  }
  int rc = tf_stats_tau_int(n, a->c_abs, 1, 0, &r->tau_abs_m);
  if (rc == TF_OK && a->has_action) rc = tf_stats_tau_int(n, a->c_s, 1, 0, &r->tau_s);
  if (rc) return tf_error(rc, "tf_lat_meas_result: %s", tf_errmsg());
  const double tmax = r->tau_abs_m.tau > r->tau_s.tau ? r->tau_abs_m.tau : r->tau_s.tau;
  r->blocks_ok = (double)(n / nb) >= 4 * tmax;
  const int V = a->V;
  r->g = a->val + D_N;
  r->g_err = a->err + D_N;
  r->gp = r->g + V;
  r->gp_err = r->g_err + V;
  r->ct = r->gp + V;
  r->ct_err = r->gp_err + V;
  r->meff = r->ct + a->L;
  r->meff_err = r->ct_err + a->L;
  r->gc = r->meff + a->L;
  r->gc_err = r->meff_err + a->L;
  r->ctc = r->gc + V;
  r->ctc_err = r->gc_err + V;
  r->meffc = r->ctc + a->L;
  r->meffc_err = r->ctc_err + a->L;
  return TF_OK;
}
