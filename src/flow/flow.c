/* flow.c — conditional affine-coupling flows built from tensor ops.
 *
 * Exported: tf_flow_defaults, tf_flow_create, tf_flow_destroy, tf_flow_init,
 *           tf_flow_get_config, tf_flow_forward, tf_flow_inverse, tf_flow_base_log_prob,
 *           tf_flow_log_prob, tf_flow_sample.
 *
 * Everything is composed of differentiable ops, so gradients in the parameters, tangents in c
 * and their mixtures need no code here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tradeflow/error.h"
#include "tradeflow/flow.h"

enum { MAX_LAYERS = 16 };

typedef struct {
  int64_t *perm, *inv; /* D each */
  int n_layers;
  tf_tensor *W[MAX_LAYERS], *b[MAX_LAYERS]; /* subnet, W (out, in) as torch.nn.Linear */
} block;

struct tf_flow {
  tf_flow_config cfg;
  int64_t da, db; /* passive and active widths */
  int64_t edim;   /* width of e(c) fed to the subnets (0 if unconditional) */
  tf_tensor *eW[2], *eb[2];
  block *blocks;
  tf_params *params;
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
  c.seed = 1;
  return c;
}

static tf_tensor *declare(tf_params *p, const char *fmt, int i, int ndim, int64_t d0, int64_t d1) {
  char name[64];
  snprintf(name, sizeof name, fmt, i);
  const int64_t shape[2] = {d0, d1};
  return tf_params_declare(p, name, ndim, shape);
}

tf_flow *tf_flow_create(const tf_flow_config *cfg, tf_params *params) {
  if (cfg->dim < 2 || cfg->n_blocks < 1 || cfg->hidden < 1 || cfg->n_hidden < 1 ||
      cfg->n_hidden > MAX_LAYERS - 1 || cfg->embed_dim < 0) {
    tf_error(TF_ERANGE,
             "flow: need dim >= 2, n_blocks >= 1, hidden >= 1, 1 <= n_hidden <= %d, "
             "embed_dim >= 0 (got %d, %d, %d, %d, %d)",
             MAX_LAYERS - 1, cfg->dim, cfg->n_blocks, cfg->hidden, cfg->n_hidden, cfg->embed_dim);
    return NULL;
  }
  tf_flow *f = calloc(1, sizeof *f);
  if (!f) goto oom;
  f->cfg = *cfg;
  f->params = params;
  f->da = cfg->dim / 2;
  f->db = cfg->dim - f->da;
  f->edim = !cfg->conditional ? 0 : cfg->embed_dim > 0 ? cfg->embed_dim : 1;
  if (cfg->conditional && cfg->embed_dim > 0) {
    const int64_t E = cfg->embed_dim;
    f->eW[0] = declare(params, "embed.W%d", 0, 2, E, 1);
    f->eb[0] = declare(params, "embed.b%d", 0, 1, E, 0);
    f->eW[1] = declare(params, "embed.W%d", 1, 2, E, E);
    f->eb[1] = declare(params, "embed.b%d", 1, 1, E, 0);
    if (!f->eW[0] || !f->eb[0] || !f->eW[1] || !f->eb[1]) goto fail;
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
    if (cfg->permute) {
      tf_rng_permutation(&r, bl->perm, cfg->dim);
    } else {
      for (int i = 0; i < cfg->dim; i++) bl->perm[i] = cfg->dim - 1 - i;
    }
    for (int i = 0; i < cfg->dim; i++) bl->inv[bl->perm[i]] = i;
    bl->n_layers = cfg->n_hidden + 1;
    int64_t in = f->da + f->edim;
    for (int l = 0; l < bl->n_layers; l++) {
      const int64_t out = l + 1 < bl->n_layers ? cfg->hidden : 2 * f->db;
      char fmt[48];
      snprintf(fmt, sizeof fmt, "block%d.W%%d", k);
      bl->W[l] = declare(params, fmt, l, 2, out, in);
      snprintf(fmt, sizeof fmt, "block%d.b%%d", k);
      bl->b[l] = declare(params, fmt, l, 1, out, 0);
      if (!bl->W[l] || !bl->b[l]) goto fail;
      in = out;
    }
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
    for (int k = 0; k < f->cfg.n_blocks; k++) free(f->blocks[k].perm);
  free(f->blocks);
  free(f);
}

const tf_flow_config *tf_flow_get_config(const tf_flow *f) { return &f->cfg; }

/* torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b */
static void init_linear(tf_rng *r, tf_tensor *W, tf_tensor *b, int zero) {
  const double bound = zero ? 0.0 : 1.0 / sqrt((double)W->shape[1]);
  tf_rng_fill_uniform(r, W, -bound, bound);
  tf_rng_fill_uniform(r, b, -bound, bound);
}

int tf_flow_init(tf_flow *f) {
  if (!f->blocks[0].W[0]->data)
    return tf_error(TF_EINVAL, "flow: tf_flow_init before tf_params_finalize");
  tf_rng r;
  tf_rng_init(&r, f->cfg.seed, 0, TF_RNG_INIT, 0);
  if (f->eW[0]) {
    init_linear(&r, f->eW[0], f->eb[0], 0);
    init_linear(&r, f->eW[1], f->eb[1], 0);
  }
  for (int k = 0; k < f->cfg.n_blocks; k++) {
    block *bl = &f->blocks[k];
    for (int l = 0; l < bl->n_layers; l++) init_linear(&r, bl->W[l], bl->b[l], l + 1 == bl->n_layers);
  }
  return TF_OK;
}

static tf_tensor *linear(tf_ctx *ctx, tf_tensor *x, tf_tensor *W, tf_tensor *b) {
  return tf_add(ctx, tf_matmul(ctx, x, W, 0, 1), b);
}

/* e(c), (N, edim); NULL for an unconditional flow */
static tf_tensor *embed(tf_flow *f, tf_ctx *ctx, tf_tensor *c) {
  if (!f->cfg.conditional) return NULL;
  tf_tensor *lc = tf_log(ctx, c);
  if (!f->eW[0]) return lc;
  return linear(ctx, tf_silu(ctx, linear(ctx, lc, f->eW[0], f->eb[0])), f->eW[1], f->eb[1]);
}

/* (s, t) of block k from the passive half and the embedding */
static void subnet(tf_flow *f, tf_ctx *ctx, const block *bl, tf_tensor *xa, tf_tensor *e,
                   tf_tensor **s, tf_tensor **t) {
  tf_tensor *h = e ? tf_concat(ctx, 2, (tf_tensor *[]){xa, e}) : xa;
  for (int l = 0; l < bl->n_layers; l++) {
    h = linear(ctx, h, bl->W[l], bl->b[l]);
    if (l + 1 < bl->n_layers) h = tf_silu(ctx, h);
  }
  tf_tensor *sr = tf_slice(ctx, h, 0, f->db);
  const double k = f->cfg.clamp;
  *s = k > 0 ? tf_scale(ctx, tf_tanh(ctx, tf_scale(ctx, sr, 1.0 / k)), k) : sr;
  *t = tf_slice(ctx, h, f->db, f->db);
}

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

tf_tensor *tf_flow_forward(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c,
                           tf_tensor **logdet) {
  if (!check_inputs(f, ctx, x, c, "forward")) return NULL;
  tf_tensor *e = embed(f, ctx, c);
  tf_tensor *ld = NULL;
  for (int k = 0; k < f->cfg.n_blocks; k++) {
    const block *bl = &f->blocks[k];
    x = tf_gather(ctx, x, -1, bl->perm, f->cfg.dim);
    tf_tensor *xa = tf_slice(ctx, x, 0, f->da), *xb = tf_slice(ctx, x, f->da, f->db), *s, *t;
    subnet(f, ctx, bl, xa, e, &s, &t);
    tf_tensor *zb = tf_add(ctx, tf_mul(ctx, xb, tf_exp(ctx, s)), t);
    x = tf_concat(ctx, 2, (tf_tensor *[]){xa, zb});
    tf_tensor *lds = tf_sum(ctx, s, -1);
    ld = ld ? tf_add(ctx, ld, lds) : lds;
  }
  if (logdet) *logdet = ld;
  return x;
}

tf_tensor *tf_flow_inverse(tf_flow *f, tf_ctx *ctx, tf_tensor *z, tf_tensor *c,
                           tf_tensor **logdet) {
  if (!check_inputs(f, ctx, z, c, "inverse")) return NULL;
  tf_tensor *e = embed(f, ctx, c);
  tf_tensor *ld = NULL;
  for (int k = f->cfg.n_blocks - 1; k >= 0; k--) {
    const block *bl = &f->blocks[k];
    tf_tensor *xa = tf_slice(ctx, z, 0, f->da), *zb = tf_slice(ctx, z, f->da, f->db), *s, *t;
    subnet(f, ctx, bl, xa, e, &s, &t);
    tf_tensor *xb = tf_mul(ctx, tf_sub(ctx, zb, t), tf_exp(ctx, tf_neg(ctx, s)));
    z = tf_gather(ctx, tf_concat(ctx, 2, (tf_tensor *[]){xa, xb}), -1, bl->inv, f->cfg.dim);
    tf_tensor *lds = tf_neg(ctx, tf_sum(ctx, s, -1));
    ld = ld ? tf_add(ctx, ld, lds) : lds;
  }
  if (logdet) *logdet = ld;
  return z;
}

tf_tensor *tf_flow_base_log_prob(tf_flow *f, tf_ctx *ctx, tf_tensor *z, tf_tensor *c) {
  if (!check_inputs(f, ctx, z, c, "base_log_prob")) return NULL;
  const double D = f->cfg.dim, log2pi = 1.8378770664093453;
  tf_tensor *r2 = tf_sum(ctx, tf_square(ctx, z), -1);
  if (f->cfg.conditional && f->cfg.base_temperature) {
    /* N(0, c I): -|z|^2 / (2c) - D/2 log(2 pi c) */
    tf_tensor *q = tf_scale(ctx, tf_div(ctx, r2, c), -0.5);
    return tf_shift(ctx, tf_sub(ctx, q, tf_scale(ctx, tf_log(ctx, c), 0.5 * D)), -0.5 * D * log2pi);
  }
  return tf_shift(ctx, tf_scale(ctx, r2, -0.5), -0.5 * D * log2pi);
}

tf_tensor *tf_flow_log_prob(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  tf_tensor *ld = NULL;
  tf_tensor *z = tf_flow_forward(f, ctx, x, c, &ld);
  if (!z) return NULL;
  return tf_add(ctx, tf_flow_base_log_prob(f, ctx, z, c), ld);
}

tf_tensor *tf_flow_sample(tf_flow *f, tf_ctx *ctx, tf_tensor *c, int64_t n, tf_rng *rng,
                          tf_tensor **log_p) {
  if (tf_ctx_status(ctx)) return NULL;
  tf_tensor *z = tf_new2(ctx, n, f->cfg.dim);
  if (!z) return NULL;
  tf_rng_fill_normal(rng, z, 0, 1);
  if (f->cfg.conditional && f->cfg.base_temperature)
    z = tf_mul(ctx, z, tf_sqrt(ctx, c)); /* N(0, c I); differentiable in c */
  tf_tensor *ld = NULL;
  tf_tensor *x = tf_flow_inverse(f, ctx, z, c, &ld);
  if (x && log_p) *log_p = tf_sub(ctx, tf_flow_base_log_prob(f, ctx, z, c), ld);
  return x;
}
