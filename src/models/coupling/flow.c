/* flow.c — conditional coupling flows built from tensor ops.
 *
 * Exported: tf_flow_defaults, tf_flow_create, tf_flow_destroy, tf_flow_init,
 *           tf_flow_get_config, tf_flow_data_init, tf_flow_forward, tf_flow_inverse,
 *           tf_flow_base_log_prob, tf_flow_log_prob, tf_flow_sample.
 *
 * Everything is composed of differentiable ops, so gradients in the parameters, tangents in c
 * and their mixtures need no code here.  The only values computed outside the tape are the
 * spline's bin indices and tail masks, which are piecewise constant.
 *
 * State order between blocks: MLP flows leave x in the order of the last block's permutation
 * (the next permutation composes with it; the base is isotropic, so z's order is immaterial).
 * CONV flows return to lattice order after every block, since the next block's checkerboard
 * and convolutions address lattice sites.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../subnet.h"
#include "tradeflow/error.h"
#include "tradeflow/flow.h"

/* Spline minima (Durkan et al.'s defaults): keep bins and slopes away from 0. */
#define MIN_BIN 1e-3
#define MIN_DERIV 1e-3

typedef struct {
  int64_t *perm, *inv; /* D each: x_perm[j] = x[perm[j]]; passive = perm[0..da) */
  tf_tensor *an_loc, *an_logs; /* ActNorm (D) or NULL */
  tf_subnet *net;      /* theta = NN(passive, e(c)) (subnet.h) */
} block;

struct tf_flow {
  tf_flow_config cfg;
  const tf_subnet_type *sub; /* the kind of every block's subnet */
  int64_t da, db;  /* passive and active widths */
  int64_t edim;    /* width of e(c) fed to the subnets (0 if unconditional) */
  int64_t P;       /* coupling parameters per active feature: 2 (affine) or 3K - 1 */
  tf_tensor *eW[2], *eb[2];
  block *blocks;
  tf_params *params;
  tf_tensor *cum;  /* spline: (K, K + 1), cum[i][j] = 1 if i < j: knots = widths @ cum */
  tf_tensor *ends; /* spline: (K + 1), 1 at both ends: the boundary derivatives */
  int an_pending;  /* tf_flow_data_init in progress */
};

tf_flow_config tf_flow_defaults(int dim) {
  tf_flow_config c;
  memset(&c, 0, sizeof c);
  c.dim = dim;
  c.conditional = 1;
  c.embed_dim = 16;
  c.n_blocks = 8;
  c.hidden = 128;
  c.n_hidden = 2;
  c.clamp = 2.0;
  c.permute = 1;
  c.base_temperature = 0;
  c.subnet_condition = 1;
  c.base_inverse = 0;
  c.coupling = TF_COUPLING_AFFINE;
  c.spline_bins = 8;
  c.spline_bound = 5.0;
  c.actnorm = 0;
  c.subnet = TF_SUBNET_MLP;
  c.seed = 1;
  return c;
}

static tf_tensor *declare(tf_params *p, const char *name, int ndim, int64_t d0, int64_t d1) {
  const int64_t shape[2] = {d0, d1};
  return tf_params_declare(p, name, ndim, shape);
}

static int check_config(const tf_flow_config *cfg) {
  if (cfg->dim < 2 || cfg->n_blocks < 1 || cfg->hidden < 1 || cfg->n_hidden < 1 ||
      cfg->n_hidden > TF_SUBNET_MAX_LAYERS - 1 || cfg->embed_dim < 0)
    return tf_error(TF_ERANGE,
                    "flow: need dim >= 2, n_blocks >= 1, hidden >= 1, 1 <= n_hidden <= %d, "
                    "embed_dim >= 0 (got %d, %d, %d, %d, %d)",
                    TF_SUBNET_MAX_LAYERS - 1, cfg->dim, cfg->n_blocks, cfg->hidden, cfg->n_hidden,
                    cfg->embed_dim);
  if (cfg->coupling != TF_COUPLING_AFFINE && cfg->coupling != TF_COUPLING_SPLINE)
    return tf_error(TF_EINVAL, "flow: unknown coupling kind %d", cfg->coupling);
  if (cfg->coupling == TF_COUPLING_SPLINE &&
      (cfg->spline_bins < 2 || cfg->spline_bins > 64 || !(cfg->spline_bound > 0) ||
       !isfinite(cfg->spline_bound)))
    return tf_error(TF_ERANGE, "flow: spline needs 2 <= bins <= 64 and bound > 0 (got %d, %g)",
                    cfg->spline_bins, cfg->spline_bound);
  const tf_subnet_type *st = tf_subnet_type_at(cfg->subnet);
  if (!st) return tf_error(TF_EINVAL, "flow: unknown subnet kind %d", cfg->subnet);
  if (st->check(cfg->dim, cfg->lattice) != TF_OK) return TF_EINVAL;
  if (cfg->conditional && !cfg->subnet_condition && !cfg->base_temperature)
    return tf_error(TF_EINVAL, "flow: with subnet_condition = 0 the condition reaches the flow "
                    "only through base_temperature, which is off: c would have no effect");
  return TF_OK;
}

/* Block k's parameters: ActNorm, then its subnet's (the checkpoint names and order). */
static int declare_block(tf_flow *f, int k, block *bl) {
  const tf_flow_config *cfg = &f->cfg;
  char name[64];
  if (cfg->actnorm) {
    snprintf(name, sizeof name, "block%d.actnorm.loc", k);
    bl->an_loc = declare(f->params, name, 1, cfg->dim, 0);
    snprintf(name, sizeof name, "block%d.actnorm.log_scale", k);
    bl->an_logs = declare(f->params, name, 1, cfg->dim, 0);
    if (!bl->an_loc || !bl->an_logs) return TF_EINVAL;
  }
  const tf_subnet_shape sh = {cfg->dim, f->da, f->db, f->P, cfg->coupling == TF_COUPLING_AFFINE,
                              f->edim, cfg->hidden, cfg->n_hidden,
                              {cfg->lattice[0], cfg->lattice[1]}, bl->perm};
  snprintf(name, sizeof name, "block%d", k);
  bl->net = f->sub->create(&sh, f->params, name);
  return bl->net ? TF_OK : TF_EINVAL;
}

tf_flow *tf_flow_create(const tf_flow_config *cfg, tf_params *params) {
  if (check_config(cfg) != TF_OK) return NULL;
  tf_flow *f = calloc(1, sizeof *f);
  if (!f) goto oom;
  f->cfg = *cfg;
  f->sub = tf_subnet_type_at(cfg->subnet);
  f->params = params;
  f->da = cfg->dim / 2;
  f->db = cfg->dim - f->da;
  const int cond_sub = cfg->conditional && cfg->subnet_condition;
  f->edim = !cond_sub ? 0 : cfg->embed_dim > 0 ? cfg->embed_dim : 1;
  f->P = cfg->coupling == TF_COUPLING_SPLINE ? 3 * (int64_t)cfg->spline_bins - 1 : 2;
  if (cond_sub && cfg->embed_dim > 0) {
    const int64_t E = cfg->embed_dim;
    f->eW[0] = declare(params, "embed.W0", 2, E, 1);
    f->eb[0] = declare(params, "embed.b0", 1, E, 0);
    f->eW[1] = declare(params, "embed.W1", 2, E, E);
    f->eb[1] = declare(params, "embed.b1", 1, E, 0);
    if (!f->eW[0] || !f->eb[0] || !f->eW[1] || !f->eb[1]) goto fail;
  }
  if (cfg->coupling == TF_COUPLING_SPLINE) {
    const int64_t K = cfg->spline_bins;
    f->cum = tf_tensor_create(2, (int64_t[]){K, K + 1});
    f->ends = tf_tensor_create(1, (int64_t[]){K + 1});
    if (!f->cum || !f->ends) goto oom;
    for (int64_t i = 0; i < K; i++)
      for (int64_t j = 0; j <= K; j++) f->cum->data[i * (K + 1) + j] = i < j ? 1 : 0;
    f->ends->data[0] = f->ends->data[K] = 1;
  }
  f->blocks = calloc((size_t)cfg->n_blocks, sizeof *f->blocks);
  if (!f->blocks) goto oom;
  tf_rng r;
  tf_rng_init(&r, cfg->seed, 0, TF_RNG_INIT, 1); /* permutations: own stream */
  for (int k = 0; k < cfg->n_blocks; k++) {
    block *bl = &f->blocks[k];
    bl->perm = malloc(2 * (size_t)cfg->dim * sizeof *bl->perm);
    if (!bl->perm) goto oom;
    bl->inv = bl->perm + cfg->dim;
    f->sub->split(cfg->dim, cfg->lattice, cfg->permute, k, &r, bl->perm);
    for (int i = 0; i < cfg->dim; i++) bl->inv[bl->perm[i]] = i;
    if (declare_block(f, k, bl) != TF_OK) goto fail;
  }
  return f;
oom:
  tf_error(TF_ENOMEM, "flow: out of memory");
fail:
  tf_flow_destroy(f);
  return NULL;
}

void tf_flow_destroy(tf_flow *f) {
  if (!f) return;
  if (f->blocks)
    for (int k = 0; k < f->cfg.n_blocks; k++) {
      if (f->blocks[k].net) f->sub->destroy(f->blocks[k].net);
      free(f->blocks[k].perm);
    }
  free(f->blocks);
  tf_tensor_destroy(f->cum);
  tf_tensor_destroy(f->ends);
  free(f);
}

const tf_flow_config *tf_flow_get_config(const tf_flow *f) { return &f->cfg; }

/* torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b */
static void init_layer(tf_rng *r, tf_tensor *W, tf_tensor *b) {
  const double bound = 1.0 / sqrt((double)(W->n / W->shape[0]));
  tf_rng_fill_uniform(r, W, -bound, bound);
  tf_rng_fill_uniform(r, b, -bound, bound);
}

int tf_flow_init(tf_flow *f) {
  if (!tf_params_values(f->params))
    return tf_error(TF_EINVAL, "flow: tf_flow_init before tf_params_finalize");
  tf_rng r;
  tf_rng_init(&r, f->cfg.seed, 0, TF_RNG_INIT, 0);
  if (f->eW[0]) {
    init_layer(&r, f->eW[0], f->eb[0]);
    init_layer(&r, f->eW[1], f->eb[1]);
  }
  for (int k = 0; k < f->cfg.n_blocks; k++) {
    block *bl = &f->blocks[k];
    f->sub->init(bl->net, &r);
    if (bl->an_loc) {
      memset(bl->an_loc->data, 0, (size_t)bl->an_loc->n * sizeof(tf_real));
      memset(bl->an_logs->data, 0, (size_t)bl->an_logs->n * sizeof(tf_real));
    }
  }
  return TF_OK;
}

/* e(c), (N, edim); NULL for an unconditional flow */
static tf_tensor *embed(tf_flow *f, tf_ctx *ctx, tf_tensor *c) {
  if (!f->edim) return NULL;
  tf_tensor *lc = tf_log(ctx, c);
  if (!f->eW[0]) return lc;
  return tf_linear(ctx, tf_silu(ctx, tf_linear(ctx, lc, f->eW[0], f->eb[0])), f->eW[1], f->eb[1]);
}

/* ---- rational-quadratic spline --------------------------------------------------------- */

/* One-hot row selectors for the bins of v (M, 1) among knots (M, K + 1): sel0 picks knot j,
 * sel1 knot j + 1, with j the bin holding v (v inside [knot_0, knot_K]).  Not recorded. */
static void bin_select(tf_ctx *ctx, const tf_tensor *v, const tf_tensor *knots,
                       tf_tensor **sel0, tf_tensor **sel1) {
  const int64_t M = v->shape[0], K1 = knots->shape[1];
  *sel0 = tf_zeros(ctx, 2, (int64_t[]){M, K1});
  *sel1 = tf_zeros(ctx, 2, (int64_t[]){M, K1});
  if (!*sel0 || !*sel1) return;
  for (int64_t m = 0; m < M; m++) {
    const tf_real *kn = knots->data + m * K1, x = v->data[m];
    int64_t lo = 0, hi = K1 - 2; /* largest j in [0, K - 1] with kn[j] <= x */
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (kn[mid] <= x) lo = mid;
      else hi = mid - 1;
    }
    (*sel0)->data[m * K1 + lo] = 1;
    (*sel1)->data[m * K1 + lo + 1] = 1;
  }
}

static tf_tensor *pick(tf_ctx *ctx, tf_tensor *v, tf_tensor *sel) {
  return tf_sum(ctx, tf_mul(ctx, v, sel), -1);
}

/* log dy/dx of the bin's rational quadratic at xi in [0, 1] (Durkan et al. eq. 5) */
static tf_tensor *rq_logderiv(tf_ctx *ctx, tf_tensor *xi, tf_tensor *s, tf_tensor *dk,
                              tf_tensor *dk1, tf_tensor *den) {
  tf_tensor *omx = tf_shift(ctx, tf_neg(ctx, xi), 1.0);
  tf_tensor *t = tf_mul(ctx, xi, omx);
  tf_tensor *q = tf_add(ctx, tf_add(ctx, tf_mul(ctx, dk1, tf_square(ctx, xi)),
                                    tf_scale(ctx, tf_mul(ctx, s, t), 2.0)),
                        tf_mul(ctx, dk, tf_square(ctx, omx)));
  return tf_sub(ctx, tf_add(ctx, tf_scale(ctx, tf_log(ctx, s), 2.0), tf_log(ctx, q)),
                tf_scale(ctx, tf_log(ctx, den), 2.0));
}

/* v (M, 1) through the spline with parameters theta (M, 3K - 1); inverse if `inv`.
 * *ld (M, 1) gets log|dy/dv|. */
static tf_tensor *rq_spline(tf_flow *f, tf_ctx *ctx, tf_tensor *v, tf_tensor *theta, int inv,
                            tf_tensor **ld) {
  if (!v || !theta || tf_ctx_status(ctx)) return NULL;
  const int64_t K = f->cfg.spline_bins, M = v->shape[0];
  const double B = f->cfg.spline_bound;
  tf_tensor *wr = tf_slice(ctx, theta, 0, K), *hr = tf_slice(ctx, theta, K, K);
  tf_tensor *dr = tf_slice(ctx, theta, 2 * K, K - 1);
  const double span = 2 * B * (1 - MIN_BIN * (double)K), floor_ = 2 * B * MIN_BIN;
  tf_tensor *w = tf_shift(ctx, tf_scale(ctx, tf_softmax(ctx, wr, -1), span), floor_);
  tf_tensor *h = tf_shift(ctx, tf_scale(ctx, tf_softmax(ctx, hr, -1), span), floor_);
  tf_tensor *xk = tf_shift(ctx, tf_matmul(ctx, w, f->cum, 0, 0), -B); /* (M, K + 1) knots */
  tf_tensor *yk = tf_shift(ctx, tf_matmul(ctx, h, f->cum, 0, 0), -B);
  /* softplus(dr + off) + MIN_DERIV with off chosen so that dr = 0 gives derivative 1 */
  const double off = log(expm1(1.0 - MIN_DERIV));
  tf_tensor *d = tf_add(ctx, tf_pad(ctx, tf_shift(ctx, tf_softplus(ctx, tf_shift(ctx, dr, off)),
                                                  MIN_DERIV), 1, K + 1),
                        f->ends);
  if (tf_ctx_status(ctx)) return NULL;

  /* tails: the identity outside [-B, B]; inside, v as is (outside: 0, a harmless in-range
   * stand-in whose results the final select discards) */
  tf_tensor *inside = tf_new2(ctx, M, 1);
  if (!inside) return NULL;
  for (int64_t m = 0; m < M; m++) inside->data[m] = v->data[m] > -B && v->data[m] < B;
  tf_tensor *vin = tf_where(ctx, inside, v, NULL);
  if (!vin) return NULL;
  tf_tensor *sel0, *sel1;
  bin_select(ctx, vin, inv ? yk : xk, &sel0, &sel1);
  tf_tensor *x0 = pick(ctx, xk, sel0), *y0 = pick(ctx, yk, sel0);
  tf_tensor *wk = tf_sub(ctx, pick(ctx, xk, sel1), x0), *hk = tf_sub(ctx, pick(ctx, yk, sel1), y0);
  tf_tensor *dk = pick(ctx, d, sel0), *dk1 = pick(ctx, d, sel1);
  tf_tensor *s = tf_div(ctx, hk, wk);
  tf_tensor *c2 = tf_sub(ctx, tf_add(ctx, dk, dk1), tf_scale(ctx, s, 2.0)); /* dk + dk1 - 2s */
  tf_tensor *xi, *out;
  if (!inv) {
    xi = tf_div(ctx, tf_sub(ctx, vin, x0), wk);
    tf_tensor *t = tf_mul(ctx, xi, tf_shift(ctx, tf_neg(ctx, xi), 1.0));
    tf_tensor *num = tf_mul(ctx, hk, tf_add(ctx, tf_mul(ctx, s, tf_square(ctx, xi)),
                                            tf_mul(ctx, dk, t)));
    tf_tensor *den = tf_add(ctx, s, tf_mul(ctx, c2, t));
    out = tf_add(ctx, y0, tf_div(ctx, num, den));
    *ld = rq_logderiv(ctx, xi, s, dk, dk1, den);
  } else {
    /* a xi^2 + b xi + c = 0 with c <= 0 <= a + b + c; its root in [0, 1] is
     * 2c / (-b - sqrt(D)) for b >= 0 and (-b + sqrt(D)) / 2a for b < 0 (a > 0 then): each
     * form free of cancellation on its side.  Selecting numerator and denominator before the
     * one division keeps the unused form's 0/0 out of the gradients. */
    tf_tensor *dy = tf_sub(ctx, vin, y0);
    tf_tensor *dyc = tf_mul(ctx, dy, c2);
    tf_tensor *a = tf_add(ctx, tf_mul(ctx, hk, tf_sub(ctx, s, dk)), dyc);
    tf_tensor *b = tf_sub(ctx, tf_mul(ctx, hk, dk), dyc);
    tf_tensor *c = tf_neg(ctx, tf_mul(ctx, s, dy));
    tf_tensor *sq = tf_sqrt(ctx, tf_relu(ctx, tf_sub(ctx, tf_square(ctx, b),
                                                     tf_scale(ctx, tf_mul(ctx, a, c), 4.0))));
    tf_tensor *bpos = b ? tf_new2(ctx, M, 1) : NULL;
    if (!bpos) return NULL;
    for (int64_t m = 0; m < M; m++) bpos->data[m] = b->data[m] >= 0;
    tf_tensor *nb = tf_neg(ctx, b);
    tf_tensor *num = tf_where(ctx, bpos, tf_scale(ctx, c, 2.0), tf_add(ctx, nb, sq));
    tf_tensor *den = tf_where(ctx, bpos, tf_sub(ctx, nb, sq), tf_scale(ctx, a, 2.0));
    xi = tf_div(ctx, num, den);
    out = tf_add(ctx, tf_mul(ctx, xi, wk), x0);
    tf_tensor *t = tf_mul(ctx, xi, tf_shift(ctx, tf_neg(ctx, xi), 1.0));
    *ld = tf_neg(ctx, rq_logderiv(ctx, xi, s, dk, dk1, tf_add(ctx, s, tf_mul(ctx, c2, t))));
  }
  *ld = tf_where(ctx, inside, *ld, NULL);
  return tf_where(ctx, inside, out, v);
}

/* Active half through the coupling: xb (N, db) with theta from the subnet; *ld (N, 1). */
static tf_tensor *couple(tf_flow *f, tf_ctx *ctx, tf_tensor *xb, tf_tensor *theta, int inv,
                         tf_tensor **ld) {
  if (!xb || !theta) return NULL;
  const int64_t N = xb->shape[0], db = f->db;
  if (f->cfg.coupling == TF_COUPLING_AFFINE) {
    tf_tensor *sr = tf_slice(ctx, theta, 0, db), *t = tf_slice(ctx, theta, db, db);
    const double k = f->cfg.clamp;
    tf_tensor *s = k > 0 ? tf_scale(ctx, tf_tanh(ctx, tf_scale(ctx, sr, 1.0 / k)), k) : sr;
    if (!inv) {
      *ld = tf_sum(ctx, s, -1);
      return tf_add(ctx, tf_mul(ctx, xb, tf_exp(ctx, s)), t);
    }
    *ld = tf_neg(ctx, tf_sum(ctx, s, -1));
    return tf_mul(ctx, tf_sub(ctx, xb, t), tf_exp(ctx, tf_neg(ctx, s)));
  }
  tf_tensor *lde = NULL;
  tf_tensor *y = rq_spline(f, ctx, tf_reshape(ctx, xb, 2, (int64_t[]){N * db, 1}),
                           tf_reshape(ctx, theta, 2, (int64_t[]){N * db, f->P}), inv, &lde);
  *ld = tf_sum(ctx, tf_reshape(ctx, lde, 2, (int64_t[]){N, db}), -1);
  return tf_reshape(ctx, y, 2, (int64_t[]){N, db});
}

/* ---- ActNorm --------------------------------------------------------------------------- */

/* During tf_flow_data_init: set loc, log_scale from the incoming batch's moments. */
static void actnorm_set_from(const block *bl, const tf_tensor *x) {
  const int64_t N = x->shape[0], D = x->shape[1];
  for (int64_t j = 0; j < D; j++) {
    double s = 0, s2 = 0;
    for (int64_t n = 0; n < N; n++) s += x->data[n * D + j];
    const double mean = s / (double)N;
    for (int64_t n = 0; n < N; n++) {
      const double u = x->data[n * D + j] - mean;
      s2 += u * u;
    }
    const double sd = sqrt(s2 / (double)N);
    bl->an_loc->data[j] = (tf_real)-mean;
    bl->an_logs->data[j] = (tf_real)-log(sd + 1e-6);
  }
}

static tf_tensor *actnorm(tf_flow *f, tf_ctx *ctx, const block *bl, tf_tensor *x, int inv,
                          tf_tensor **ld) {
  if (!x) return NULL;
  if (f->an_pending && !inv) actnorm_set_from(bl, x);
  tf_tensor *lds = tf_reshape(ctx, tf_sum_all(ctx, bl->an_logs), 2, (int64_t[]){1, 1});
  if (!inv) {
    *ld = lds;
    return tf_mul(ctx, tf_add(ctx, x, bl->an_loc), tf_exp(ctx, bl->an_logs));
  }
  *ld = tf_neg(ctx, lds);
  return tf_sub(ctx, tf_mul(ctx, x, tf_exp(ctx, tf_neg(ctx, bl->an_logs))), bl->an_loc);
}

/* ---- the flow -------------------------------------------------------------------------- */

static int check_inputs(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c, const char *what) {
  if (!x || tf_ctx_status(ctx)) return 0;
  char buf[64];
  if (x->ndim != 2 || x->shape[1] != f->cfg.dim) {
    tf_error(TF_EINVAL, "flow %s: input %s is not (N, %d)", what, tf_shape_str(x, buf, sizeof buf),
             f->cfg.dim);
    return 0;
  }
  if (f->cfg.conditional &&
      (!c || c->ndim != 2 || c->shape[0] != x->shape[0] || c->shape[1] != 1)) {
    tf_error(TF_EINVAL, "flow %s: condition %s is not (%lld, 1)", what,
             tf_shape_str(c, buf, sizeof buf), (long long)x->shape[0]);
    return 0;
  }
  return 1;
}

static tf_tensor *acc(tf_ctx *ctx, tf_tensor *ld, tf_tensor *term) {
  return ld ? tf_add(ctx, ld, term) : term;
}

/* 1 if nothing downstream of t can need a derivative: not recorded, no tangent */
static int inert(tf_ctx *ctx, const tf_tensor *t) {
  return !t || (!(t->flags & TF_TENSOR_REQUIRES_GRAD) && !tf_tangent(ctx, t));
}

/* Block-scoped inference: when no derivative can be wanted (recording off, no tangent on the
 * input, the condition or a parameter), each block's intermediates are released once its
 * output is copied out (tf_ctx_release), so a pass keeps one block's tensors instead of all
 * of them: at D = 1024 with 32 channels that is ~15 MB instead of ~400 MB for 16 rows, which
 * stays in cache and touches no fresh pages.  The scope's state: */
typedef struct {
  int on;
  tf_ctx_mark mark;
  tf_tensor *buf[2], *ld; /* ping-pong block outputs, running log-det: made before the marks */
} scope;

static int scope_begin(tf_flow *f, tf_ctx *ctx, scope *sc, const tf_tensor *x,
                       const tf_tensor *e, tf_tensor **ld) {
  sc->on = 0;
  if (tf_ctx_grad_enabled(ctx) || !inert(ctx, x) || !inert(ctx, e)) return 1;
  for (int k = 0; k < f->cfg.n_blocks; k++) {
    const block *bl = &f->blocks[k];
    if (f->sub->has_tangent(bl->net, ctx)) return 1;
    if (bl->an_loc && (tf_tangent(ctx, bl->an_loc) || tf_tangent(ctx, bl->an_logs))) return 1;
  }
  const int64_t N = x->shape[0], D = x->shape[1];
  sc->buf[0] = tf_new2(ctx, N, D);
  sc->buf[1] = tf_new2(ctx, N, D);
  sc->ld = *ld = tf_zeros(ctx, 2, (int64_t[]){N, 1});
  sc->on = 1;
  return sc->buf[0] && sc->buf[1] && sc->ld;
}

/* Before block number k (any order): take the mark. */
static void scope_enter(tf_ctx *ctx, scope *sc) {
  if (sc->on) sc->mark = tf_ctx_mark_get(ctx);
}

/* After block number k: copy its output *x and log-det *ld into the scope's buffers and
 * release the block's intermediates; *x and *ld then point at the buffers. */
static void scope_leave(tf_ctx *ctx, scope *sc, int k, tf_tensor **x, tf_tensor **ld) {
  if (!sc->on || !*x || !*ld) return;
  tf_tensor *b = sc->buf[k & 1];
  memcpy(b->data, (*x)->data, (size_t)b->n * sizeof(tf_real));
  if (*ld != sc->ld) memcpy(sc->ld->data, (*ld)->data, (size_t)sc->ld->n * sizeof(tf_real));
  tf_ctx_release(ctx, sc->mark);
  *x = b;
  *ld = sc->ld;
}

tf_tensor *tf_flow_forward(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c,
                           tf_tensor **logdet) {
  if (!check_inputs(f, ctx, x, c, "forward")) return NULL;
  const int lat = f->sub->lattice_order;
  const int D = f->cfg.dim;
  tf_tensor *e = embed(f, ctx, c);
  tf_tensor *ld = NULL, *term;
  scope sc;
  if (!scope_begin(f, ctx, &sc, x, e, &ld)) return NULL;
  for (int k = 0; k < f->cfg.n_blocks; k++) {
    const block *bl = &f->blocks[k];
    scope_enter(ctx, &sc);
    if (bl->an_loc) {
      x = actnorm(f, ctx, bl, x, 0, &term);
      ld = acc(ctx, ld, term);
    }
    tf_tensor *xp = tf_gather(ctx, x, -1, bl->perm, D);
    tf_tensor *xa = tf_slice(ctx, xp, 0, f->da), *xb = tf_slice(ctx, xp, f->da, f->db);
    tf_tensor *theta = f->sub->apply(bl->net, ctx, xa, lat ? x : NULL, e);
    tf_tensor *yb = couple(f, ctx, xb, theta, 0, &term);
    x = tf_concat(ctx, 2, (tf_tensor *[]){xa, yb});
    if (lat) x = tf_gather(ctx, x, -1, bl->inv, D);
    ld = acc(ctx, ld, term);
    scope_leave(ctx, &sc, k, &x, &ld);
  }
  if (logdet) *logdet = ld;
  return x;
}

/* The fused inverse applies when recording is off and no input carries a tangent. */
static int fast_ok(tf_flow *f, tf_ctx *ctx, const block *bl, const tf_tensor *z,
                   const tf_tensor *e, const tf_tensor *ld) {
  if (!f->sub->apply_rows || f->sub->lattice_order || f->cfg.coupling != TF_COUPLING_AFFINE ||
      tf_ctx_grad_enabled(ctx) || !inert(ctx, z) || !inert(ctx, e) || !inert(ctx, ld))
    return 0;
  return !f->sub->has_tangent(bl->net, ctx);
}

/* The inverse of one affine MLP block when no derivative is wanted (sampling, evaluation):
 * the same arithmetic as the op chain of tf_flow_inverse (slice, concat, subnet, soft clamp,
 * exp, concat, gather) with the copies and the elementwise tail fused into two passes.
 * Only for blocks where no derivative can be wanted (fast_ok).  Returns the block's input
 * (N, D) and replaces *ld (N, 1) by *ld + the block's log-determinant; NULL on error. */
static tf_tensor *inverse_block_fast(tf_flow *f, tf_ctx *ctx, const block *bl, tf_tensor *z,
                                     tf_tensor *e, tf_tensor **ld) {
  const int64_t N = z->shape[0], D = f->cfg.dim, da = f->da, db = f->db;
  const int64_t E = e ? e->shape[1] : 0, W = da + E;
  tf_tensor *h = tf_new2(ctx, N, W);
  if (!h) return NULL;
  for (int64_t n = 0; n < N; n++) {
    memcpy(h->data + n * W, z->data + n * D, (size_t)da * sizeof(tf_real));
    if (E) memcpy(h->data + n * W + da, e->data + n * E, (size_t)E * sizeof(tf_real));
  }
  h = f->sub->apply_rows(bl->net, ctx, h);
  if (!h) return NULL;
  const double k = f->cfg.clamp;
  tf_tensor *u = tf_slice(ctx, h, 0, db); /* raw s, then tanh(s / k) */
  if (k > 0) u = tf_tanh(ctx, tf_scale(ctx, u, 1.0 / k));
  tf_tensor *ex = tf_exp(ctx, tf_scale(ctx, u, k > 0 ? -k : -1.0)); /* exp(-s) */
  tf_tensor *x = tf_new2(ctx, N, D);
  /* a fresh log-det tensor: *ld may be shared with the caller's other results */
  *ld = *ld ? tf_copy(ctx, *ld) : tf_zeros(ctx, 2, (int64_t[]){N, 1});
  if (!ex || !x || !*ld) return NULL;
  const double ks = k > 0 ? k : 1.0;
  for (int64_t n = 0; n < N; n++) {
    const tf_real *zr = z->data + n * D, *tr = h->data + n * 2 * db + db;
    const tf_real *ur = u->data + n * db, *er = ex->data + n * db;
    tf_real *xr = x->data + n * D;
    double s = 0;
    for (int64_t j = 0; j < da; j++) xr[bl->perm[j]] = zr[j];
    for (int64_t j = 0; j < db; j++) {
      xr[bl->perm[da + j]] = (zr[da + j] - tr[j]) * er[j];
      s += ur[j];
    }
    (*ld)->data[n] -= (tf_real)(ks * s);
  }
  return x;
}

tf_tensor *tf_flow_inverse(tf_flow *f, tf_ctx *ctx, tf_tensor *z, tf_tensor *c,
                           tf_tensor **logdet) {
  if (!check_inputs(f, ctx, z, c, "inverse")) return NULL;
  const int lat = f->sub->lattice_order;
  const int D = f->cfg.dim;
  tf_tensor *e = embed(f, ctx, c);
  tf_tensor *ld = NULL, *term;
  scope sc;
  if (!scope_begin(f, ctx, &sc, z, e, &ld)) return NULL;
  for (int k = f->cfg.n_blocks - 1; k >= 0; k--) {
    const block *bl = &f->blocks[k];
    scope_enter(ctx, &sc);
    if (fast_ok(f, ctx, bl, z, e, ld)) {
      z = inverse_block_fast(f, ctx, bl, z, e, &ld);
      if (!z) return NULL;
    } else {
      tf_tensor *zp = lat ? tf_gather(ctx, z, -1, bl->perm, D) : z;
      tf_tensor *za = tf_slice(ctx, zp, 0, f->da), *zb = tf_slice(ctx, zp, f->da, f->db);
      tf_tensor *theta = f->sub->apply(bl->net, ctx, za, lat ? z : NULL, e);
      tf_tensor *xb = couple(f, ctx, zb, theta, 1, &term);
      z = tf_gather(ctx, tf_concat(ctx, 2, (tf_tensor *[]){za, xb}), -1, bl->inv, D);
      ld = acc(ctx, ld, term);
    }
    if (bl->an_loc) {
      z = actnorm(f, ctx, bl, z, 1, &term);
      ld = acc(ctx, ld, term);
    }
    scope_leave(ctx, &sc, k, &z, &ld);
  }
  if (logdet) *logdet = ld;
  return z;
}

int tf_flow_data_init(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  if (!f->cfg.actnorm) return TF_OK;
  if (x && x->ndim == 2 && x->shape[0] < 2)
    return tf_error(TF_EINVAL, "flow data init: need a batch of at least 2 samples");
  const int grad = tf_ctx_set_grad(ctx, 0);
  f->an_pending = 1;
  tf_tensor *z = tf_flow_forward(f, ctx, x, c, NULL);
  f->an_pending = 0;
  tf_ctx_set_grad(ctx, grad);
  if (!z) return tf_ctx_status(ctx) ? tf_ctx_status(ctx) : TF_EINVAL;
  return TF_OK;
}

tf_tensor *tf_flow_base_log_prob(tf_flow *f, tf_ctx *ctx, tf_tensor *z, tf_tensor *c) {
  if (!check_inputs(f, ctx, z, c, "base_log_prob")) return NULL;
  const double D = f->cfg.dim, log2pi = 1.8378770664093453;
  tf_tensor *r2 = tf_sum(ctx, tf_square(ctx, z), -1);
  if (f->cfg.conditional && f->cfg.base_temperature && f->cfg.base_inverse) {
    /* N(0, I / c): -c |z|^2 / 2 + D/2 log c - D/2 log(2 pi) */
    tf_tensor *q = tf_scale(ctx, tf_mul(ctx, r2, c), -0.5);
    return tf_shift(ctx, tf_add(ctx, q, tf_scale(ctx, tf_log(ctx, c), 0.5 * D)), -0.5 * D * log2pi);
  }
  if (f->cfg.conditional && f->cfg.base_temperature) {
    /* N(0, c I): -|z|^2 / (2c) - D/2 log(2 pi c) */
    tf_tensor *q = tf_scale(ctx, tf_div(ctx, r2, c), -0.5);
    return tf_shift(ctx, tf_sub(ctx, q, tf_scale(ctx, tf_log(ctx, c), 0.5 * D)), -0.5 * D * log2pi);
  }
  return tf_shift(ctx, tf_scale(ctx, r2, -0.5), -0.5 * D * log2pi);
}

/* log q(x | c) of the bijection alone (no symmetrisation). */
static tf_tensor *log_q(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  tf_tensor *ld = NULL;
  tf_tensor *z = tf_flow_forward(f, ctx, x, c, &ld);
  if (!z) return NULL;
  return tf_add(ctx, tf_flow_base_log_prob(f, ctx, z, c), ld);
}

/* log p(x) = log[(q(x) + q(-x)) / 2] for rows x (N, D), c (N, 1) or NULL; lq (N, 1), if not
 * NULL, is log q(x) already known (the sampling path), else both terms are evaluated in one
 * pass over the 2N rows [x_0, -x_0, x_1, -x_1, ...]. */
static tf_tensor *sign_mix(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c, tf_tensor *lq) {
  if (!x) return NULL;
  const int64_t n = x->shape[0], d = f->cfg.dim;
  tf_tensor *pair;
  if (lq) {
    pair = tf_concat(ctx, 2, (tf_tensor *const[]){lq, log_q(f, ctx, tf_neg(ctx, x), c)});
  } else {
    const int64_t s2[2] = {2 * n, d}, s1[2] = {2 * n, 1}, sp[2] = {n, 2};
    tf_tensor *xx = tf_reshape(ctx, tf_concat(ctx, 2, (tf_tensor *const[]){x, tf_neg(ctx, x)}),
                               2, s2);
    tf_tensor *cc = c ? tf_reshape(ctx, tf_concat(ctx, 2, (tf_tensor *const[]){c, c}), 2, s1)
                      : NULL;
    pair = tf_reshape(ctx, log_q(f, ctx, xx, cc), 2, sp);
  }
  return tf_shift(ctx, tf_logsumexp(ctx, pair, 1), -0.6931471805599453);
}

tf_tensor *tf_flow_log_prob(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  if (f->cfg.sign_symmetric) {
    if (!check_inputs(f, ctx, x, c, "log_prob")) return NULL;
    return sign_mix(f, ctx, x, c, NULL);
  }
  return log_q(f, ctx, x, c);
}

tf_tensor *tf_flow_sample(tf_flow *f, tf_ctx *ctx, tf_tensor *c, int64_t n, tf_rng *rng,
                          tf_tensor **log_p) {
  if (tf_ctx_status(ctx)) return NULL;
  tf_tensor *z = tf_new2(ctx, n, f->cfg.dim);
  if (!z) return NULL;
  tf_rng_fill_normal(rng, z, 0, 1);
  if (f->cfg.conditional && f->cfg.base_temperature) /* N(0, c I) or N(0, I / c) */
    z = f->cfg.base_inverse ? tf_div(ctx, z, tf_sqrt(ctx, c)) : tf_mul(ctx, z, tf_sqrt(ctx, c));
  tf_tensor *ld = NULL;
  tf_tensor *x = tf_flow_inverse(f, ctx, z, c, &ld);
  if (!x) return NULL;
  tf_tensor *lq = tf_sub(ctx, tf_flow_base_log_prob(f, ctx, z, c), ld);
  if (!f->cfg.sign_symmetric) {
    if (log_p) *log_p = lq;
    return x;
  }
  /* x ~ q, then a fair sign: a draw from (q(x) + q(-x)) / 2.  The signs come after the
   * normals so the latent stream of an unsymmetrised flow is unchanged. */
  tf_tensor *sgn = tf_new2(ctx, n, 1);
  if (!sgn) return NULL;
  tf_rng_fill_uniform(rng, sgn, 0, 1);
  for (int64_t i = 0; i < n; i++) sgn->data[i] = sgn->data[i] < (tf_real)0.5 ? -1 : 1;
  if (log_p) *log_p = sign_mix(f, ctx, x, c, lq);
  return tf_mul(ctx, x, sgn);
}
