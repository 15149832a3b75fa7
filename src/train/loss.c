/* loss.c — TRADE (grid and continuous), reverse KL and reweighting (DESIGN.md section 4).
 *
 * Exported: tf_loss_defaults and the private interface of loss.h.
 *
 * Precision: the flow runs in tf_real; energies, importance weights, <A>_c and the running
 * grid statistics are double.  The residual r = d/dc log p + (A - <A>_c) is formed by adding
 * the double constant (A - <A>_c), rounded once, to the forward-mode tangent.
 *
 * Random streams (rng.h), all keyed by the run seed and the step, so that a step's draws do
 * not depend on what ran before it:
 *   TF_RNG_USER + 1 + k   latent samples of grid point k at a refresh (rank 0's name on
 *                         whichever rank computes it: the estimates do not depend on P)
 *   TF_RNG_LATENT         evaluation points / reverse-KL samples of the step (this rank)
 *   TF_RNG_COND           grid indices and condition values of the step (this rank)
 *   TF_RNG_USER + 200     reverse-KL samples of the boundary term (this rank)
 *   TF_RNG_USER + 201     grid: which points are off-policy, and their sampling conditions
 *                         (this rank; not drawn at all when offpolicy = 0)
 *   TF_RNG_USER + 202     grid: the symmetry images, then the noise, of the evaluation points
 *                         (this rank; not drawn at all when augment = 0 and noise = 0)
 *
 * Over P ranks (DESIGN.md section 6) the condition range is stratified, and each rank's term
 * is an unbiased estimate of its stratum's share, so that the mean over ranks (what the
 * trainer's gradient mean computes) estimates the one-rank objective:
 *   grid        rank r owns the grid points k with k mod P = r (P > K: point r mod K, shared
 *               by m_k ranks); it draws its points from the causality weights restricted to
 *               its points (each divided by m_k) and scales its mean penalty by P M_r, M_r the
 *               restricted mass over the total.  The refresh of point k runs on rank k mod P
 *               and the K estimates are combined by a rank-ordered sum.
 *   continuous, reverse KL, reweighting: rank r draws its conditions log-uniformly from the
 *               r-th of P equal slices of the (current) log c range.
 * With P = 1 every draw and every value is the one-process one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "tradeflow/dist.h"
#include "tradeflow/error.h"
#include "tradeflow/physics.h"
#include "tradeflow/rng.h"
#include "tradeflow/stats.h"

enum {
  MAX_GRID = 64,
  RNG_REFRESH = TF_RNG_USER + 1,
  RNG_BOUNDARY = TF_RNG_USER + 200,
  RNG_OFFPOLICY = TF_RNG_USER + 201,
  RNG_SPREAD = TF_RNG_USER + 202
};
static const double PI = 3.14159265358979323846;

struct tf_loss_state {
  tf_loss_config cfg;
  tf_model *model;
  int D;
  uint64_t seed;
  tf_dist dist;
  double *sum_tmp;            /* scratch of the refresh's rank-ordered sum (P > 1) */
  int K, k0;                  /* grid size and the index of c0 */
  double grid[MAX_GRID + 1];
  double A[MAX_GRID + 1];     /* <A>_c estimates (exponentially averaged) */
  double L[MAX_GRID + 1];     /* mean residual penalty at the last refresh */
  double ess[MAX_GRID + 1];   /* Kish ESS / N at the last refresh */
  int have;                   /* the estimates exist */
  double ratio;               /* adaptive: running |g_b| / |g_e| (0: none yet) */
  double last_b, last_e, last_lambda;
  /* double scratch, grown as needed (outside the per-sample loops) */
  double *xd, *cd, *cs, *lq, *dq, *gx, *w;
  int64_t cap;
  int64_t *idx;
};

tf_loss_config tf_loss_defaults(void) {
  tf_loss_config c;
  memset(&c, 0, sizeof c);
  c.kind = TF_LOSS_NLL;
  c.boundary = TF_BOUNDARY_NLL;
  c.boundary_batch = 256;
  c.variant = TF_TRADE_GRID;
  c.grid_points = 16;
  c.grid_samples = 512;
  c.refresh = 10;
  c.ema = 0.9;
  c.causality = 1.0;
  c.points = 256;
  c.groups = 4;
  c.widen_steps = 1000;
  c.log_residual = 1;
  c.penalty = TF_PENALTY_SQUARE;
  c.huber_delta = 1.0;
  c.lambda = 1.0;
  c.lambda_warmup = 200;
  c.lambda_ramp = 500;
  return c;
}

int tf_loss_uses_data(const tf_loss_config *c) {
  switch (c->kind) {
  case TF_LOSS_NLL:
  case TF_LOSS_REWEIGHT: return 1;
  case TF_LOSS_TRADE:
    return c->boundary == TF_BOUNDARY_NLL ||
           (c->variant == TF_TRADE_CONTINUOUS && c->continuous_data);
  default: return 0;
  }
}

static const char *kind_name(int k) {
  static const char *const n[] = {"nll", "trade", "reverse_kl", "reweight"};
  return k >= 0 && k < 4 ? n[k] : "?";
}

/* What each loss asks of the model family: gradient training always; the densities and
 * samples the loss evaluates; TRADE also d/dc log p under a tangent on c. */
static unsigned needed_caps(const tf_loss_config *c) {
  unsigned caps = TF_MODEL_GRADIENT;
  if (c->kind != TF_LOSS_NLL) caps |= TF_MODEL_LOG_PROB;
  if (c->kind == TF_LOSS_REVERSE_KL) caps |= TF_MODEL_SAMPLE;
  if (c->kind == TF_LOSS_TRADE) caps |= TF_MODEL_DC | TF_MODEL_SAMPLE;
  return caps;
}

int tf_loss_check(const tf_loss_config *c, const tf_model *model, int have_data) {
  if (c->kind < TF_LOSS_NLL || c->kind > TF_LOSS_REWEIGHT)
    return tf_error(TF_EINVAL, "loss: unknown kind %d", c->kind);
  const char *k = kind_name(c->kind);
  char who[32];
  snprintf(who, sizeof who, "loss %s", k);
  if (tf_model_require(model, needed_caps(c), who) != TF_OK) return TF_EUNSUP;
  if (c->kind == TF_LOSS_NLL) return have_data ? TF_OK : tf_error(TF_EINVAL, "loss nll: no data");
  if (!tf_model_conditional(model))
    return tf_error(TF_EINVAL, "loss %s: the flow must be conditional (model.conditional = "
                    "true): this loss learns p(x | c) across a range of c", k);
  if (!(c->c_min > 0 && c->c_min <= c->c0 && c->c0 <= c->c_max && isfinite(c->c_max)))
    return tf_error(TF_ERANGE, "loss %s: need 0 < c_min <= c0 <= c_max, got c_min = %g, "
                    "c0 = %g, c_max = %g", k, c->c_min, c->c0, c->c_max);
  const int needs_physics = !(c->kind == TF_LOSS_TRADE && c->energy_free &&
                              c->boundary == TF_BOUNDARY_NLL);
  if (needs_physics && !c->physics)
    return tf_error(TF_EINVAL, "loss %s: needs a physics module (physics.name)%s", k,
                    c->kind == TF_LOSS_TRADE ? " or energy_free TRADE with an NLL boundary" : "");
  if (c->physics) {
    double lo, hi;
    tf_physics_param_range(c->physics, &lo, &hi);
    if (c->c_min < lo || c->c_max > hi)
      return tf_error(TF_ERANGE, "loss %s: the range [%g, %g] leaves the valid range [%g, %g] "
                      "of %s in module %s", k, c->c_min, c->c_max, lo, hi,
                      tf_physics_param(c->physics), tf_physics_name(c->physics));
    if (tf_physics_dim(c->physics) != tf_model_dim(model))
      return tf_error(TF_EINVAL, "loss %s: module %s has dimension %d, the flow %d", k,
                      tf_physics_describe(c->physics), tf_physics_dim(c->physics),
                      tf_model_dim(model));
  }
  const int grid = c->kind == TF_LOSS_TRADE && c->variant == TF_TRADE_GRID;
  if (c->offpolicy != 0 && !grid)
    return tf_error(TF_EINVAL, "loss %s: offpolicy = %g applies to the grid variant of TRADE "
                    "only (the continuous variant reweights its points from c0)", k, c->offpolicy);
  if ((c->noise != 0 || c->augment) && !grid)
    return tf_error(TF_EINVAL, "loss %s: noise = %g and augment = %d apply to the grid variant "
                    "of TRADE only (the continuous variant reweights its points from c0)", k,
                    c->noise, c->augment);
  if (c->augment && (!c->physics || c->energy_free))
    return tf_error(TF_EUNSUP, "loss %s: augment = 1 needs a physics module with a symmetry "
                    "group (energy-free TRADE uses none)", k);
  if (c->augment && !tf_physics_augment_group(c->physics))
    return tf_error(TF_EUNSUP, "loss %s: augment = 1 needs a physics module with a symmetry "
                    "group (module %s has none)", k, tf_physics_name(c->physics));
  if (tf_loss_uses_data(c) && !have_data)
    return tf_error(TF_EINVAL, "loss %s: this configuration trains on data at c0 (NLL boundary, "
                    "reweighting or data-sourced evaluation points) but there is no data", k);
  if (c->grid_points < 2 || c->grid_points > MAX_GRID || c->grid_samples < 2 || c->refresh < 1 ||
      !(c->ema >= 0 && c->ema < 1) || !(c->causality >= 0) ||
      !(c->offpolicy >= 0 && c->offpolicy <= 1) || !(c->noise >= 0 && isfinite(c->noise)) ||
      c->points < 1 || c->groups < 1 ||
      c->points < c->groups || c->widen_steps < 0 || !(c->huber_delta > 0) ||
      !(c->lambda >= 0) || c->lambda_warmup < 0 || c->lambda_ramp < 0 || c->boundary_batch < 1)
    return tf_error(TF_ERANGE, "loss %s: need 2 <= grid_points <= %d, grid_samples >= 2, "
                    "refresh >= 1, 0 <= ema < 1, causality >= 0, 0 <= offpolicy <= 1, finite "
                    "noise >= 0, points >= groups >= 1, huber_delta > 0, lambda >= 0, "
                    "non-negative step counts", k, MAX_GRID);
  return TF_OK;
}

static int grow(tf_loss_state *ls, int64_t n) {
  if (n <= ls->cap) return TF_OK;
  const int64_t D = ls->D;
  free(ls->xd), free(ls->cd), free(ls->cs), free(ls->lq), free(ls->dq), free(ls->gx), free(ls->w);
  free(ls->idx);
  ls->xd = malloc((size_t)(n * D) * sizeof(double));
  ls->gx = malloc((size_t)(n * D) * sizeof(double));
  ls->cd = malloc((size_t)n * sizeof(double));
  ls->cs = malloc((size_t)n * sizeof(double));
  ls->lq = malloc((size_t)n * sizeof(double));
  ls->dq = malloc((size_t)n * sizeof(double));
  ls->w = malloc((size_t)n * sizeof(double));
  ls->idx = malloc((size_t)n * sizeof(int64_t));
  ls->cap = n;
  if (!ls->xd || !ls->gx || !ls->cd || !ls->cs || !ls->lq || !ls->dq || !ls->w || !ls->idx) {
    ls->cap = 0;
    return tf_error(TF_ENOMEM, "loss: out of memory for %lld samples", (long long)n);
  }
  return TF_OK;
}

tf_loss_state *tf_loss_create(const tf_loss_config *cfg, tf_model *model, uint64_t seed,
                              const tf_dist *dist) {
  tf_loss_state *ls = calloc(1, sizeof *ls);
  if (!ls) {
    tf_error(TF_ENOMEM, "loss: out of memory");
    return NULL;
  }
  ls->cfg = *cfg;
  ls->model = model;
  ls->D = tf_model_dim(model);
  ls->seed = seed;
  ls->dist = dist ? *dist : tf_dist_serial();
  if (ls->dist.size > 1) {
    ls->sum_tmp = malloc(sizeof(double) * 3 * (MAX_GRID + 1) * (size_t)ls->dist.size);
    if (!ls->sum_tmp) {
      tf_error(TF_ENOMEM, "loss: out of memory");
      free(ls);
      return NULL;
    }
  }
  ls->last_b = ls->last_e = ls->last_lambda = NAN;
  /* grid: K log-spaced points over [c_min, c_max], c0 inserted unless it is one of them */
  const int K = cfg->grid_points;
  const double a = log(cfg->c_min), b = log(cfg->c_max);
  int n = 0, have_c0 = 0;
  for (int k = 0; k < K; k++) {
    const double ck = K > 1 ? exp(a + (b - a) * k / (K - 1)) : cfg->c0;
    if (fabs(ck - cfg->c0) <= 1e-12 * cfg->c0) have_c0 = 1;
    ls->grid[n++] = fabs(ck - cfg->c0) <= 1e-12 * cfg->c0 ? cfg->c0 : ck;
  }
  if (!have_c0) {
    int pos = 0;
    while (pos < n && ls->grid[pos] < cfg->c0) pos++;
    memmove(ls->grid + pos + 1, ls->grid + pos, (size_t)(n - pos) * sizeof(double));
    ls->grid[pos] = cfg->c0;
    n++;
  }
  ls->K = n;
  for (int k = 0; k < n; k++)
    if (ls->grid[k] == cfg->c0) ls->k0 = k;
  for (int k = 0; k < n; k++) ls->ess[k] = ls->A[k] = ls->L[k] = NAN;
  const int64_t need = cfg->grid_samples > cfg->points ? cfg->grid_samples : cfg->points;
  if (grow(ls, need > cfg->boundary_batch ? need : cfg->boundary_batch) != TF_OK) {
    tf_loss_destroy(ls);
    return NULL;
  }
  return ls;
}

void tf_loss_destroy(tf_loss_state *ls) {
  if (!ls) return;
  free(ls->xd), free(ls->cd), free(ls->cs), free(ls->lq), free(ls->dq), free(ls->gx), free(ls->w);
  free(ls->idx);
  free(ls->sum_tmp);
  free(ls);
}

/* ---- small helpers --------------------------------------------------------------------- */

static tf_tensor *cond_tensor(tf_ctx *ctx, int64_t n, const double *c) {
  tf_tensor *t = tf_new2(ctx, n, 1);
  if (t)
    for (int64_t i = 0; i < n; i++) t->data[i] = (tf_real)c[i];
  return t;
}

static void to_double(const tf_tensor *t, double *out) {
  for (int64_t i = 0; i < t->n; i++) out[i] = (double)t->data[i];
}

/* Self-normalised weights from log-weights lw[0..n) into w (NaN -> 0 weight). */
static void normalise(const double *lw, int64_t n, double *w) {
  double m = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    if (lw[i] > m) m = lw[i];
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    w[i] = isfinite(m) && !isnan(lw[i]) ? exp(lw[i] - m) : 0;
    s += w[i];
  }
  for (int64_t i = 0; i < n; i++) w[i] = s > 0 ? w[i] / s : 1.0 / (double)n;
}

static int status_of(tf_ctx *ctx, const char *what) {
  const int st = tf_ctx_status(ctx);
  return tf_error(st ? st : TF_EINVAL, "%s: %s", what, tf_errmsg());
}

/* log p(x | c0) of the flow, detached (energy-free targets). */
static tf_tensor *logp_c0(tf_loss_state *ls, tf_ctx *ctx, tf_tensor *x) {
  const int g = tf_ctx_set_grad(ctx, 0), f = tf_ctx_set_forward(ctx, 0);
  tf_tensor *c0 = tf_full(ctx, 2, (int64_t[]){x->shape[0], 1}, ls->cfg.c0);
  tf_tensor *lp = tf_model_log_prob(ls->model, ctx, x, c0);
  tf_ctx_set_grad(ctx, g);
  tf_ctx_set_forward(ctx, f);
  return lp;
}

/* log q(x_i | c_i) into lq and A(x_i, c_i) = -d/dc log q into dq for the rows of x (n, D)
 * (ls->xd holds them in double, ls->cd the conditions); grad_x log q into ls->gx if wanted. */
static int energies(tf_loss_state *ls, tf_ctx *ctx, tf_tensor *x, int64_t n, int want_grad) {
  if (ls->cfg.physics && !ls->cfg.energy_free) {
    int rc = tf_physics_log_q(ls->cfg.physics, n, ls->xd, ls->cd, ls->lq,
                              want_grad ? ls->gx : NULL, ls->dq);
    if (rc != TF_OK) return rc;
    for (int64_t i = 0; i < n; i++) ls->dq[i] = -ls->dq[i];
    return TF_OK;
  }
  /* energy-free: the flow at c0 tempered to c */
  tf_tensor *lp0 = logp_c0(ls, ctx, x);
  if (!lp0) return status_of(ctx, "energy-free target");
  const double c0 = ls->cfg.c0;
  for (int64_t i = 0; i < n; i++) {
    const double l = (double)lp0->data[i], c = ls->cd[i];
    if (ls->cfg.energy_free_inverse) { /* q = p0^(c / c0) */
      ls->lq[i] = c / c0 * l;
      ls->dq[i] = -l / c0;
    } else { /* q = p0^(c0 / c) */
      ls->lq[i] = c0 / c * l;
      ls->dq[i] = c0 / (c * c) * l;
    }
  }
  return TF_OK;
}

/* penalty(r) elementwise, r (n, 1) */
static tf_tensor *penalty(const tf_loss_state *ls, tf_ctx *ctx, tf_tensor *r) {
  if (!r) return NULL;
  if (ls->cfg.penalty == TF_PENALTY_SQUARE) return tf_square(ctx, r);
  const double d = ls->cfg.huber_delta;
  tf_tensor *mask = tf_new2(ctx, r->shape[0], r->shape[1]);
  if (!mask) return NULL;
  for (int64_t i = 0; i < r->n; i++) mask->data[i] = fabs((double)r->data[i]) < d;
  tf_tensor *quad = tf_scale(ctx, tf_square(ctx, r), 0.5);
  tf_tensor *lin = tf_shift(ctx, tf_scale(ctx, tf_abs(ctx, r), d), -0.5 * d * d);
  return tf_where(ctx, mask, quad, lin);
}

static double penalty_d(const tf_loss_state *ls, double r) {
  if (ls->cfg.penalty == TF_PENALTY_SQUARE) return r * r;
  const double d = ls->cfg.huber_delta;
  return fabs(r) < d ? 0.5 * r * r : d * (fabs(r) - 0.5 * d);
}

/* The penalised residual: dlp + off, times c (a constant copy) with log_residual. */
static tf_tensor *residual(const tf_loss_state *ls, tf_ctx *ctx, tf_tensor *dlp, tf_tensor *off,
                           tf_tensor *c) {
  tf_tensor *r = tf_add(ctx, dlp, off);
  return ls->cfg.log_residual ? tf_mul(ctx, r, tf_copy(ctx, c)) : r;
}

/* d/dc log p(x | c) at fixed x for conditions c (n, 1): log p is returned, its tangent in *dlp.
 * Recorded when gradient recording is on. */
static tf_tensor *logp_and_dc(tf_loss_state *ls, tf_ctx *ctx, tf_tensor *x, tf_tensor *c,
                              tf_tensor **dlp) {
  tf_tensor *one = tf_full(ctx, 2, (int64_t[]){c->shape[0], 1}, 1.0);
  if (!one || tf_set_tangent(ctx, c, one) != TF_OK) return NULL;
  const int f = tf_ctx_set_forward(ctx, 1);
  tf_tensor *lp = tf_model_log_prob(ls->model, ctx, x, c);
  tf_ctx_set_forward(ctx, f);
  *dlp = lp ? tf_tangent(ctx, lp) : NULL;
  if (lp && !*dlp) *dlp = tf_zeros(ctx, 2, (int64_t[]){c->shape[0], 1}); /* c unused */
  return lp;
}

/* Detached flow samples at conditions c (n, 1), rows also copied to ls->xd (double). */
static tf_tensor *sample_detached(tf_loss_state *ls, tf_ctx *ctx, tf_tensor *c, int64_t n,
                                  tf_rng *r, tf_tensor **lp) {
  const int g = tf_ctx_set_grad(ctx, 0), f = tf_ctx_set_forward(ctx, 0);
  tf_tensor *x = tf_model_sample(ls->model, ctx, c, n, r, lp);
  tf_ctx_set_grad(ctx, g);
  tf_ctx_set_forward(ctx, f);
  if (x) to_double(x, ls->xd);
  return x;
}

/* ---- the grid refresh ------------------------------------------------------------------ */

int tf_loss_prepare(tf_loss_state *ls, tf_ctx *ctx, int64_t step, int monitor) {
  const tf_loss_config *cfg = &ls->cfg;
  const int grid_trade = cfg->kind == TF_LOSS_TRADE && cfg->variant == TF_TRADE_GRID;
  const int due = grid_trade && (step % cfg->refresh == 0 || !ls->have);
  if (!due && !monitor) return TF_OK;
  if (!cfg->physics && !cfg->energy_free) return TF_OK;
  const int64_t N = cfg->grid_samples;
  const int K = ls->K, P = ls->dist.size;
  /* this rank's new A_k, L_k, ESS_k for the points it refreshes, 0 for the others: the
   * rank-ordered sum then hands every rank the owner's values exactly */
  double st[3 * (MAX_GRID + 1)];
  memset(st, 0, sizeof st);
  const int g = tf_ctx_set_grad(ctx, 0);
  int rc = TF_OK;
  for (int k = ls->dist.rank; k < K && rc == TF_OK; k += P) {
    double *nA = st + k, *nL = st + K + k, *nE = st + 2 * K + k;
    *nA = ls->A[k];
    *nL = ls->L[k];
    tf_ctx_reset(ctx);
    tf_rng r;
    tf_rng_init(&r, ls->seed, 0, RNG_REFRESH + (uint32_t)k, (uint32_t)step);
    for (int64_t i = 0; i < N; i++) ls->cd[i] = ls->grid[k];
    tf_tensor *c = cond_tensor(ctx, N, ls->cd);
    tf_tensor *x = c ? sample_detached(ls, ctx, c, N, &r, NULL) : NULL;
    tf_tensor *dlp = NULL;
    tf_tensor *lp = x ? logp_and_dc(ls, ctx, x, c, &dlp) : NULL;
    if (!lp || !dlp) {
      rc = status_of(ctx, "TRADE grid refresh");
      break;
    }
    rc = energies(ls, ctx, x, N, 0);
    if (rc != TF_OK) break;
    /* log w = log q - log p; <A>_c by self-normalised importance sampling */
    for (int64_t i = 0; i < N; i++) ls->w[i] = ls->lq[i] - (double)lp->data[i];
    if (tf_stats_ess(N, ls->w, nE) != TF_OK) *nE = 0; /* NaN weights */
    normalise(ls->w, N, ls->w);
    double Ahat = 0;
    for (int64_t i = 0; i < N; i++) Ahat += ls->w[i] * ls->dq[i];
    if (!isfinite(Ahat)) continue; /* keep the old estimate; counted by the step's checks */
    if (due) *nA = ls->have && isfinite(ls->A[k]) ? cfg->ema * ls->A[k] + (1 - cfg->ema) * Ahat
                                                   : Ahat;
    /* the running losses steer the grid's causality weights: only scheduled refreshes may
     * change them, so that training does not depend on how often progress is printed */
    if (grid_trade && !due) continue;
    const double Ak = grid_trade ? *nA : Ahat;
    double L = 0;
    for (int64_t i = 0; i < N; i++)
      L += penalty_d(ls, ((double)dlp->data[i] + ls->dq[i] - Ak) *
                             (cfg->log_residual ? ls->grid[k] : 1.0));
    *nL = L / (double)N;
  }
  tf_ctx_reset(ctx);
  tf_ctx_set_grad(ctx, g);
  rc = tf_dist_agree(&ls->dist, rc);
  if (rc == TF_OK) rc = tf_dist_sum(&ls->dist, st, 3 * K, ls->sum_tmp);
  if (rc != TF_OK) return rc;
  for (int k = 0; k < K; k++) {
    ls->A[k] = st[k];
    ls->L[k] = st[K + k];
    ls->ess[k] = st[2 * K + k];
  }
  if (due) ls->have = 1;
  return TF_OK;
}

/* ---- the terms of a step --------------------------------------------------------------- */

static double lambda_at(const tf_loss_config *c, int64_t step) {
  if (step < c->lambda_warmup) return 0;
  if (c->lambda_ramp == 0) return c->lambda;
  const double s = (double)(step - c->lambda_warmup) / (double)c->lambda_ramp;
  return s >= 1 ? c->lambda : c->lambda * 0.5 * (1 - cos(PI * s));
}

/* A log-uniform condition in this rank's slice of [exp(a), exp(b)] (u uniform in (0, 1)). */
static double slice_draw(const tf_loss_state *ls, double a, double b, double u) {
  return exp(a + (b - a) / ls->dist.size * (ls->dist.rank + u));
}

/* The index k <= last that u in [0, sum w) falls into, by cumulative weight; zero weights are
 * never chosen. */
static int pick_weighted(const double *w, int last, double u) {
  int k = 0;
  while (k < last && (w[k] == 0 || u >= w[k])) u -= w[k++];
  return k;
}

/* Spread the n evaluation points of x (ls->xd in double) beyond where the flow puts its mass:
 * each is replaced by a random symmetry image (augment) and then moved by N(0, noise^2) per
 * coordinate.  The identity behind the residual holds at every x, so the fixed point is the
 * same; what changes is where the residual is enforced, and points the flow would never draw
 * (the tails it wrongly leaves empty) are penalised too.  x and ls->xd stay equal. */
static int spread(tf_loss_state *ls, tf_tensor *x, int64_t n, int64_t step) {
  const tf_loss_config *cfg = &ls->cfg;
  if (!cfg->augment && cfg->noise == 0) return TF_OK;
  const int64_t m = n * ls->D;
  tf_rng r;
  tf_rng_init(&r, ls->seed, (uint32_t)ls->dist.rank, RNG_SPREAD, (uint32_t)step);
  if (cfg->augment) {
    const int rc = tf_physics_augment(cfg->physics, n, ls->xd, &r);
    if (rc != TF_OK) return rc;
  }
  for (int64_t i = 0; i < m; i++) {
    const double v = ls->xd[i] + (cfg->noise > 0 ? cfg->noise * tf_rng_normal(&r) : 0);
    x->data[i] = (tf_real)v;
    ls->xd[i] = (double)x->data[i];
  }
  return TF_OK;
}

/* Grid variant: evaluation points at grid conditions drawn by causality weight. */
static tf_tensor *trade_grid(tf_loss_state *ls, tf_ctx *ctx, int64_t step) {
  const tf_loss_config *cfg = &ls->cfg;
  const int64_t n = cfg->points;
  double wk[MAX_GRID + 1], S = 0, tot = 0;
  /* S_k accumulates the running losses from c0 outwards, c_k itself excluded */
  for (int side = -1; side <= 1; side += 2) {
    S = 0;
    for (int k = ls->k0; k >= 0 && k < ls->K; k += side) {
      wk[k] = exp(-cfg->causality * S);
      S += isfinite(ls->L[k]) ? ls->L[k] : 0;
    }
  }
  for (int k = 0; k < ls->K; k++) tot += wk[k];
  /* this rank's stratum: its points' weights (shared points divided among their ranks) */
  const int P = ls->dist.size, rank = ls->dist.rank, K = ls->K;
  double wr[MAX_GRID + 1], mine = 0;
  int last = 0;
  for (int k = 0; k < K; k++) {
    const int owned = P <= K ? k % P == rank : rank % K == k;
    const int m = P <= K ? 1 : P / K + (k < P % K);
    wr[k] = owned ? wk[k] / m : 0;
    mine += wr[k];
    if (owned) last = k;
  }
  /* a stratum whose weights all underflowed contributes nothing (its points still run) */
  double scale = mine > 0 ? (double)P * (mine / tot) : 0;
  if (!(mine > 0)) {
    for (int k = 0; k < K; k++) mine += wr[k] = P <= K ? k % P == rank : rank % K == k;
  }
  tf_rng r;
  tf_rng_init(&r, ls->seed, (uint32_t)rank, TF_RNG_COND, (uint32_t)step);
  for (int64_t i = 0; i < n; i++) {
    const int k = pick_weighted(wr, last, tf_rng_uniform(&r) * mine);
    ls->idx[i] = k;
    ls->cd[i] = ls->cs[i] = ls->grid[k];
  }
  /* off-policy points: sampled at a grid point drawn from the full weights (not this rank's
   * stratum: where x comes from is not a share of the objective), evaluated at their own */
  if (cfg->offpolicy > 0) {
    tf_rng_init(&r, ls->seed, (uint32_t)rank, RNG_OFFPOLICY, (uint32_t)step);
    for (int64_t i = 0; i < n; i++) {
      const double v = tf_rng_uniform(&r), u0 = tf_rng_uniform(&r);
      if (v >= cfg->offpolicy) continue;
      ls->cs[i] = ls->grid[pick_weighted(wk, K - 1, u0 * tot)];
    }
  }
  tf_rng_init(&r, ls->seed, (uint32_t)rank, TF_RNG_LATENT, (uint32_t)step);
  tf_tensor *c = cond_tensor(ctx, n, ls->cd);
  tf_tensor *cs = cfg->offpolicy > 0 ? cond_tensor(ctx, n, ls->cs) : c;
  tf_tensor *x = c && cs ? sample_detached(ls, ctx, cs, n, &r, NULL) : NULL;
  if (!x || spread(ls, x, n, step) != TF_OK || energies(ls, ctx, x, n, 0) != TF_OK) return NULL;
  tf_tensor *off = tf_new2(ctx, n, 1); /* A - <A>_c */
  if (!off) return NULL;
  for (int64_t i = 0; i < n; i++) off->data[i] = (tf_real)(ls->dq[i] - ls->A[ls->idx[i]]);
  tf_tensor *dlp = NULL;
  if (!logp_and_dc(ls, ctx, x, c, &dlp)) return NULL;
  tf_tensor *m = tf_mean_all(ctx, penalty(ls, ctx, residual(ls, ctx, dlp, off, c)));
  return scale == 1 ? m : tf_scale(ctx, m, scale);
}

/* Continuous variant: conditions from a widening range, points at c0 reweighted to c. */
static tf_tensor *trade_continuous(tf_loss_state *ls, tf_ctx *ctx, int64_t step, tf_tensor *xd,
                                   tf_tensor *cdata) {
  const tf_loss_config *cfg = &ls->cfg;
  const int64_t G = cfg->groups;
  tf_rng r;
  tf_tensor *x, *lp0 = NULL;
  int64_t n;
  if (cfg->continuous_data) {
    x = xd;
    n = x->shape[0];
    to_double(x, ls->xd);
  } else {
    n = cfg->points;
    tf_rng_init(&r, ls->seed, (uint32_t)ls->dist.rank, TF_RNG_LATENT, (uint32_t)step);
    tf_tensor *c0 = tf_full(ctx, 2, (int64_t[]){n, 1}, cfg->c0);
    x = c0 ? sample_detached(ls, ctx, c0, n, &r, NULL) : NULL;
    if (!x) return NULL;
    lp0 = logp_c0(ls, ctx, x);
    if (!lp0) return NULL;
  }
  if (G > n) {
    tf_error(TF_EINVAL, "TRADE continuous: %lld groups need at least as many points (have "
             "%lld)", (long long)G, (long long)n);
    return NULL;
  }
  /* denominator of the weights: log p(x | c0) (flow points) or log q(x | c_i) (data) */
  double *den = ls->gx; /* free here: gradients are not needed */
  if (cfg->continuous_data) {
    for (int64_t i = 0; i < n; i++) ls->cd[i] = cdata ? (double)cdata->data[i] : cfg->c0;
    if (energies(ls, ctx, x, n, 0) != TF_OK) return NULL;
    memcpy(den, ls->lq, (size_t)n * sizeof(double));
  } else {
    for (int64_t i = 0; i < n; i++) den[i] = (double)lp0->data[i];
  }
  const double s = cfg->widen_steps ? fmin(1.0, (double)(step + 1) / (double)cfg->widen_steps) : 1;
  const double l0 = log(cfg->c0);
  const double lo = l0 + s * (log(cfg->c_min) - l0), hi = l0 + s * (log(cfg->c_max) - l0);
  tf_rng_init(&r, ls->seed, (uint32_t)ls->dist.rank, TF_RNG_COND, (uint32_t)step);
  for (int64_t g = 0; g < G; g++) {
    const double cg = slice_draw(ls, lo, hi, tf_rng_uniform(&r));
    for (int64_t i = g * n / G; i < (g + 1) * n / G; i++) ls->cd[i] = cg;
  }
  /* den is ls->gx: energies() must not write gradients below */
  if (energies(ls, ctx, x, n, 0) != TF_OK) return NULL;
  tf_tensor *off = tf_new2(ctx, n, 1), *wt = tf_new2(ctx, n, 1);
  if (!off || !wt) return NULL;
  for (int64_t g = 0; g < G; g++) {
    const int64_t a = g * n / G, b = (g + 1) * n / G;
    for (int64_t i = a; i < b; i++) ls->w[i] = ls->lq[i] - den[i];
    normalise(ls->w + a, b - a, ls->w + a);
    double Abar = 0;
    for (int64_t i = a; i < b; i++) Abar += ls->w[i] * ls->dq[i];
    for (int64_t i = a; i < b; i++) {
      off->data[i] = (tf_real)(ls->dq[i] - Abar);
      wt->data[i] = (tf_real)(ls->w[i] / (double)G);
    }
  }
  tf_tensor *c = cond_tensor(ctx, n, ls->cd);
  tf_tensor *dlp = NULL;
  if (!c || !logp_and_dc(ls, ctx, x, c, &dlp)) return NULL;
  return tf_sum_all(ctx, tf_mul(ctx, wt, penalty(ls, ctx, residual(ls, ctx, dlp, off, c))));
}

/* Reverse KL mean[log p(x | c) + E(x, c)] over samples at conditions ls->cd[0..n); its value
 * is exact, its gradient that of the reparameterised objective: E enters through
 * sum(stop(grad_x E) * x), whose parameter gradient is grad_x E . dx/dtheta. */
static tf_tensor *reverse_kl(tf_loss_state *ls, tf_ctx *ctx, int64_t n, tf_rng *r) {
  tf_tensor *c = cond_tensor(ctx, n, ls->cd);
  tf_tensor *lp = NULL;
  const int f = tf_ctx_set_forward(ctx, 0);
  tf_tensor *x = c ? tf_model_sample(ls->model, ctx, c, n, r, &lp) : NULL;
  tf_ctx_set_forward(ctx, f);
  if (!x || !lp) return NULL;
  to_double(x, ls->xd);
  int rc = tf_physics_log_q(ls->cfg.physics, n, ls->xd, ls->cd, ls->lq, ls->gx, NULL);
  if (rc != TF_OK) return NULL;
  tf_tensor *G = tf_new2(ctx, n, ls->D);
  if (!G) return NULL;
  double shift = 0; /* mean(E - grad_x E . x): makes the value exact */
  for (int64_t i = 0; i < n; i++) {
    double gx = 0;
    for (int64_t j = 0; j < ls->D; j++) {
      const double gE = -ls->gx[i * ls->D + j];
      G->data[i * ls->D + j] = (tf_real)gE;
      gx += gE * (double)x->data[i * ls->D + j];
    }
    shift += -ls->lq[i] - gx;
  }
  tf_tensor *surrogate = tf_scale(ctx, tf_sum_all(ctx, tf_mul(ctx, G, x)), 1.0 / (double)n);
  return tf_shift(ctx, tf_add(ctx, tf_mean_all(ctx, lp), surrogate), shift / (double)n);
}

/* Reweighting: the batch split into groups, each reweighted from its rows' c to a c_g. */
static tf_tensor *reweight(tf_loss_state *ls, tf_ctx *ctx, int64_t step, tf_tensor *x,
                           tf_tensor *cdata) {
  const tf_loss_config *cfg = &ls->cfg;
  const int64_t n = x->shape[0], G = cfg->groups > n ? n : cfg->groups;
  to_double(x, ls->xd);
  for (int64_t i = 0; i < n; i++) ls->cd[i] = (double)cdata->data[i];
  if (energies(ls, ctx, x, n, 0) != TF_OK) return NULL;
  double *den = ls->gx;
  memcpy(den, ls->lq, (size_t)n * sizeof(double));
  tf_rng r;
  tf_rng_init(&r, ls->seed, (uint32_t)ls->dist.rank, TF_RNG_COND, (uint32_t)step);
  const double a = log(cfg->c_min), b = log(cfg->c_max);
  for (int64_t g = 0; g < G; g++) {
    const double cg = slice_draw(ls, a, b, tf_rng_uniform(&r));
    for (int64_t i = g * n / G; i < (g + 1) * n / G; i++) ls->cd[i] = cg;
  }
  if (energies(ls, ctx, x, n, 0) != TF_OK) return NULL;
  tf_tensor *wt = tf_new2(ctx, n, 1);
  if (!wt) return NULL;
  for (int64_t g = 0; g < G; g++) {
    const int64_t lo = g * n / G, hi = (g + 1) * n / G;
    for (int64_t i = lo; i < hi; i++) ls->w[i] = ls->lq[i] - den[i];
    normalise(ls->w + lo, hi - lo, ls->w + lo);
    for (int64_t i = lo; i < hi; i++) wt->data[i] = (tf_real)(-ls->w[i] / (double)G);
  }
  tf_tensor *c = cond_tensor(ctx, n, ls->cd);
  return tf_sum_all(ctx, tf_mul(ctx, wt, tf_model_log_prob(ls->model, ctx, x, c)));
}

int tf_loss_terms(tf_loss_state *ls, tf_ctx *ctx, int64_t step, tf_tensor *x, tf_tensor *c,
                  tf_tensor **boundary, tf_tensor **extra, double *lambda) {
  const tf_loss_config *cfg = &ls->cfg;
  *boundary = *extra = NULL;
  *lambda = 1;
  tf_tensor *nll = NULL;
  if (x && (cfg->kind == TF_LOSS_REWEIGHT ||
            (cfg->kind == TF_LOSS_TRADE && cfg->boundary == TF_BOUNDARY_NLL)))
    nll = tf_scale(ctx, tf_mean_all(ctx, tf_model_log_prob(ls->model, ctx, x, c)), -1);
  tf_rng r;
  switch (cfg->kind) {
  case TF_LOSS_REVERSE_KL: {
    const double a = log(cfg->c_min), b = log(cfg->c_max);
    const uint32_t rank = (uint32_t)ls->dist.rank;
    tf_rng_init(&r, ls->seed, rank, TF_RNG_COND, (uint32_t)step);
    for (int64_t i = 0; i < cfg->points; i++) ls->cd[i] = slice_draw(ls, a, b, tf_rng_uniform(&r));
    tf_rng_init(&r, ls->seed, rank, TF_RNG_LATENT, (uint32_t)step);
    *boundary = reverse_kl(ls, ctx, cfg->points, &r);
    break;
  }
  case TF_LOSS_REWEIGHT:
    *boundary = nll;
    *extra = reweight(ls, ctx, step, x, c);
    break;
  case TF_LOSS_TRADE:
    if (cfg->boundary == TF_BOUNDARY_NLL) {
      *boundary = nll;
    } else {
      for (int64_t i = 0; i < cfg->boundary_batch; i++) ls->cd[i] = cfg->c0;
      tf_rng_init(&r, ls->seed, (uint32_t)ls->dist.rank, RNG_BOUNDARY, (uint32_t)step);
      *boundary = reverse_kl(ls, ctx, cfg->boundary_batch, &r);
    }
    *lambda = lambda_at(cfg, step);
    if (*lambda > 0 || cfg->adaptive)
      *extra = cfg->variant == TF_TRADE_GRID ? trade_grid(ls, ctx, step)
                                             : trade_continuous(ls, ctx, step, x, c);
    else
      *extra = NULL;
    if (*lambda > 0 && !*extra) return status_of(ctx, "TRADE term");
    break;
  default: return tf_error(TF_EINVAL, "loss: unknown kind %d", cfg->kind);
  }
  if (!*boundary || tf_ctx_status(ctx)) return status_of(ctx, "loss");
  return TF_OK;
}

void tf_loss_record(tf_loss_state *ls, double b, double e, double lambda_eff) {
  ls->last_b = b;
  ls->last_e = e;
  ls->last_lambda = lambda_eff;
}

double tf_loss_adapt(tf_loss_state *ls, double gb, double ge) {
  if (isfinite(gb) && isfinite(ge) && ge > 0) {
    const double q = gb / ge;
    ls->ratio = ls->ratio > 0 ? 0.9 * ls->ratio + 0.1 * q : q;
  }
  return ls->ratio > 0 ? ls->ratio : 1;
}

int tf_loss_save(const tf_loss_state *ls, tf_checkpoint_meta *m) {
  char key[48];
  int rc = tf_checkpoint_meta_set_i64(m, "loss.have", ls->have);
  if (rc == TF_OK) rc = tf_checkpoint_meta_set_f64(m, "loss.ratio", ls->ratio);
  if (rc == TF_OK) rc = tf_checkpoint_meta_set_i64(m, "loss.K", ls->K);
  for (int k = 0; k < ls->K && rc == TF_OK; k++) {
    snprintf(key, sizeof key, "loss.A%d", k);
    rc = tf_checkpoint_meta_set_f64(m, key, ls->A[k]);
    snprintf(key, sizeof key, "loss.L%d", k);
    if (rc == TF_OK) rc = tf_checkpoint_meta_set_f64(m, key, ls->L[k]);
    snprintf(key, sizeof key, "loss.ess%d", k);
    if (rc == TF_OK) rc = tf_checkpoint_meta_set_f64(m, key, ls->ess[k]);
  }
  return rc;
}

int tf_loss_load(tf_loss_state *ls, const tf_checkpoint_meta *m) {
  int64_t have, K;
  if (tf_checkpoint_meta_get_i64(m, "loss.have", &have) != TF_OK) return TF_OK; /* none saved */
  if (tf_checkpoint_meta_get_i64(m, "loss.K", &K) != TF_OK || K != ls->K)
    return tf_error(TF_EINVAL, "checkpoint: its loss grid has %lld points, this run %d; the "
                    "loss settings of a resumed run must not change", (long long)K, ls->K);
  char key[48];
  int rc = tf_checkpoint_meta_get_f64(m, "loss.ratio", &ls->ratio);
  for (int k = 0; k < ls->K && rc == TF_OK; k++) {
    snprintf(key, sizeof key, "loss.A%d", k);
    rc = tf_checkpoint_meta_get_f64(m, key, &ls->A[k]);
    snprintf(key, sizeof key, "loss.L%d", k);
    if (rc == TF_OK) rc = tf_checkpoint_meta_get_f64(m, key, &ls->L[k]);
    snprintf(key, sizeof key, "loss.ess%d", k);
    if (rc == TF_OK) rc = tf_checkpoint_meta_get_f64(m, key, &ls->ess[k]);
  }
  if (rc != TF_OK) return tf_error(rc, "checkpoint: incomplete loss state (%s)", tf_errmsg());
  ls->have = (int)have;
  return TF_OK;
}

void tf_loss_summary(const tf_loss_state *ls, char *buf, size_t len) {
  int k = snprintf(buf, len, "%s %.4g", ls->cfg.kind == TF_LOSS_REVERSE_KL ? "rkl" : "bnd",
                   ls->last_b);
  if (k < 0 || (size_t)k >= len) return;
  if (!isnan(ls->last_e))
    k += snprintf(buf + k, len - (size_t)k, "  %s %.4g x %.3g",
                  ls->cfg.kind == TF_LOSS_TRADE ? "trade" : "rw", ls->last_e, ls->last_lambda);
  if (k < 0 || (size_t)k >= len) return;
  const char *param = ls->cfg.physics ? tf_physics_param(ls->cfg.physics) : "c";
  if (!isnan(ls->ess[ls->k0]))
    snprintf(buf + k, len - (size_t)k, "  ess %.2f|%.2f|%.2f @%s=%.3g|%.3g|%.3g", ls->ess[0],
             ls->ess[ls->k0], ls->ess[ls->K - 1], param, ls->grid[0], ls->grid[ls->k0],
             ls->grid[ls->K - 1]);
}
