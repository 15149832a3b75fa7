/* rules.c — reverse (VJP) and tangent (JVP) rules of every primitive, one pair per op.
 *
 * Exported (private): tf_rules.
 *
 * All rules are written with the public ops, never with raw loops: when tf_grad runs with
 * create_graph = 1, or when a tangent is computed while gradient recording is on, the rule's
 * ops are themselves recorded, which is what makes reverse-over-reverse and reverse-over-forward
 * work with no extra code.  A tangent rule receives NULL for a zero input tangent and returns
 * NULL for a zero output tangent.
 */
#include "core-impl.h"

static tf_tensor *sum_like(tf_ctx *ctx, tf_tensor *g, const tf_tensor *x) {
  return tf_sum_to(ctx, g, x->ndim, x->shape);
}

static tf_tensor *expand_like(tf_ctx *ctx, tf_tensor *g, const tf_tensor *y) {
  return tf_expand(ctx, g, y->ndim, y->shape);
}

/* a + b with NULL as zero */
static tf_tensor *add0(tf_ctx *ctx, tf_tensor *a, tf_tensor *b) {
  if (!a) return b;
  if (!b) return a;
  return tf_add(ctx, a, b);
}

/* ---- matmul: C = op(A) op(B) ------------------------------------------------------------- */

static void matmul_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                       tf_tensor **gin) {
  tf_tensor *a = nd->in[0], *b = nd->in[1];
  const int ta = nd->ip[0], tb = nd->ip[1];
  if (need[0]) {
    if (!ta) gin[0] = tb ? tf_matmul(ctx, g, b, 0, 0) : tf_matmul(ctx, g, b, 0, 1);
    else gin[0] = tb ? tf_matmul(ctx, b, g, 1, 1) : tf_matmul(ctx, b, g, 0, 1);
  }
  if (need[1]) {
    if (!tb) gin[1] = ta ? tf_matmul(ctx, a, g, 0, 0) : tf_matmul(ctx, a, g, 1, 0);
    else gin[1] = ta ? tf_matmul(ctx, g, a, 1, 1) : tf_matmul(ctx, g, a, 1, 0);
  }
}

static tf_tensor *matmul_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  const int ta = nd->ip[0], tb = nd->ip[1];
  tf_tensor *r = t[0] ? tf_matmul(ctx, t[0], nd->in[1], ta, tb) : NULL;
  return add0(ctx, r, t[1] ? tf_matmul(ctx, nd->in[0], t[1], ta, tb) : NULL);
}

/* ---- linear: y = x W^T + b --------------------------------------------------------------- */

static void linear_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                       tf_tensor **gin) {
  if (need[0]) gin[0] = tf_matmul(ctx, g, nd->in[1], 0, 0);
  if (need[1]) gin[1] = tf_matmul(ctx, g, nd->in[0], 1, 0);
  if (nd->nin > 2 && need[2])
    gin[2] = tf_reshape(ctx, tf_sum(ctx, g, 0), nd->in[2]->ndim, nd->in[2]->shape);
}

static tf_tensor *linear_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  tf_tensor *tb = nd->nin > 2 ? t[2] : NULL;
  if (tb) tb = tf_reshape(ctx, tb, 1, (int64_t[]){tb->n});
  /* t_x W^T + t_b in one op when both are there */
  tf_tensor *r = t[0] ? tf_linear(ctx, t[0], nd->in[1], tb) : NULL;
  if (t[0]) tb = NULL;
  r = add0(ctx, r, t[1] ? tf_linear(ctx, nd->in[0], t[1], tb) : NULL);
  if (t[1]) tb = NULL;
  return tb ? add0(ctx, r, expand_like(ctx, tb, nd->out)) : r;
}

/* ---- broadcasting arithmetic ------------------------------------------------------------- */

static void add_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                    tf_tensor **gin) {
  if (need[0]) gin[0] = sum_like(ctx, g, nd->in[0]);
  if (need[1]) gin[1] = sum_like(ctx, g, nd->in[1]);
}

static tf_tensor *add_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  if (t[0] && t[1]) return tf_add(ctx, t[0], t[1]);
  return expand_like(ctx, t[0] ? t[0] : t[1], nd->out);
}

static void sub_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                    tf_tensor **gin) {
  if (need[0]) gin[0] = sum_like(ctx, g, nd->in[0]);
  if (need[1]) gin[1] = tf_neg(ctx, sum_like(ctx, g, nd->in[1]));
}

static tf_tensor *sub_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  if (t[0] && t[1]) return tf_sub(ctx, t[0], t[1]);
  if (t[0]) return expand_like(ctx, t[0], nd->out);
  return tf_neg(ctx, expand_like(ctx, t[1], nd->out));
}

static void mul_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                    tf_tensor **gin) {
  if (need[0]) gin[0] = sum_like(ctx, tf_mul(ctx, g, nd->in[1]), nd->in[0]);
  if (need[1]) gin[1] = sum_like(ctx, tf_mul(ctx, g, nd->in[0]), nd->in[1]);
}

static tf_tensor *mul_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  tf_tensor *r = t[0] ? tf_mul(ctx, t[0], nd->in[1]) : NULL;
  r = add0(ctx, r, t[1] ? tf_mul(ctx, nd->in[0], t[1]) : NULL);
  return expand_like(ctx, r, nd->out); /* e.g. (D) * (1): a tangent on the scalar only */
}

/* y = a / b:  da = g / b,  db = -g y / b */
static void div_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                    tf_tensor **gin) {
  tf_tensor *b = nd->in[1];
  if (need[0]) gin[0] = sum_like(ctx, tf_div(ctx, g, b), nd->in[0]);
  if (need[1]) gin[1] = tf_neg(ctx, sum_like(ctx, tf_div(ctx, tf_mul(ctx, g, nd->out), b), b));
}

static tf_tensor *div_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  tf_tensor *b = nd->in[1];
  tf_tensor *r = t[0] ? tf_div(ctx, t[0], b) : NULL;
  if (t[1]) {
    tf_tensor *q = tf_div(ctx, tf_mul(ctx, nd->out, t[1]), b);
    r = r ? tf_sub(ctx, r, q) : tf_neg(ctx, q);
  }
  return expand_like(ctx, r, nd->out);
}

static void scale_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                      tf_tensor **gin) {
  if (need[0]) gin[0] = tf_scale(ctx, g, nd->fp);
}

static tf_tensor *scale_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return tf_scale(ctx, t[0], nd->fp);
}

static void shift_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                      tf_tensor **gin) {
  (void)ctx;
  (void)nd;
  if (need[0]) gin[0] = g;
}

static tf_tensor *shift_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  (void)ctx;
  (void)nd;
  return t[0];
}

/* ---- unary families: (f^(k))' = f^(k+1) -------------------------------------------------- */

static void unary_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                      tf_tensor **gin) {
  if (need[0]) gin[0] = tf_unary_mul(ctx, (tf_fn)nd->ip[0], nd->ip[1] + 1, nd->in[0], g);
}

static tf_tensor *unary_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return tf_unary_mul(ctx, (tf_fn)nd->ip[0], nd->ip[1] + 1, nd->in[0], t[0]);
}

/* y = g f^(k)(x):  dx = gy g f^(k+1)(x),  dg = gy f^(k)(x) */
static void unary_mul_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *gy, const int *need,
                          tf_tensor **gin) {
  const tf_fn fn = (tf_fn)nd->ip[0];
  const int k = nd->ip[1];
  tf_tensor *x = nd->in[0], *g = nd->in[1];
  if (need[0]) gin[0] = tf_unary_mul(ctx, fn, k + 1, x, tf_mul(ctx, gy, g));
  if (need[1]) gin[1] = tf_unary_mul(ctx, fn, k, x, gy);
}

static tf_tensor *unary_mul_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  const tf_fn fn = (tf_fn)nd->ip[0];
  const int k = nd->ip[1];
  tf_tensor *x = nd->in[0], *g = nd->in[1];
  tf_tensor *r = t[0] ? tf_unary_mul(ctx, fn, k + 1, x, tf_mul(ctx, g, t[0])) : NULL;
  return add0(ctx, r, t[1] ? tf_unary_mul(ctx, fn, k, x, t[1]) : NULL);
}

/* ---- reductions -------------------------------------------------------------------------- */

static void sum_to_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                       tf_tensor **gin) {
  if (need[0]) gin[0] = expand_like(ctx, g, nd->in[0]);
}

static tf_tensor *sum_to_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return sum_like(ctx, t[0], nd->out);
}

static void expand_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                       tf_tensor **gin) {
  if (need[0]) gin[0] = sum_like(ctx, g, nd->in[0]);
}

static tf_tensor *expand_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return expand_like(ctx, t[0], nd->out);
}

/* y = lse(x):  dx = g softmax(x).  softmax is recomputed from x (max-shifted) rather than
 * taken as exp(x - y): y has lost the low bits of log(sum) when |x| is large. */
static void lse_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                    tf_tensor **gin) {
  if (need[0]) gin[0] = tf_mul(ctx, tf_softmax(ctx, nd->in[0], nd->ip[0]), g);
}

static tf_tensor *lse_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  tf_tensor *p = tf_softmax(ctx, nd->in[0], nd->ip[0]);
  return tf_sum(ctx, tf_mul(ctx, p, t[0]), nd->ip[0]);
}

/* ---- structure --------------------------------------------------------------------------- */

static void concat_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                       tf_tensor **gin) {
  int64_t off = 0;
  for (int i = 0; i < nd->nin; i++) {
    const tf_tensor *x = nd->in[i];
    const int64_t w = x->shape[x->ndim - 1];
    if (need[i]) gin[i] = tf_slice(ctx, g, off, w);
    off += w;
  }
}

static tf_tensor *concat_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  tf_tensor **parts = tf_arena_alloc(tf_ctx_arena(ctx), (size_t)nd->nin * sizeof *parts);
  if (!parts) {
    tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
    return NULL;
  }
  for (int i = 0; i < nd->nin; i++) parts[i] = t[i] ? t[i] : tf_zeros_like(ctx, nd->in[i]);
  return tf_concat(ctx, nd->nin, parts);
}

static void slice_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                      tf_tensor **gin) {
  const tf_tensor *x = nd->in[0];
  if (need[0]) gin[0] = tf_pad(ctx, g, nd->lp[0], x->shape[x->ndim - 1]);
}

static tf_tensor *slice_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return tf_slice(ctx, t[0], nd->lp[0], nd->lp[1]);
}

static void pad_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                    tf_tensor **gin) {
  const tf_tensor *x = nd->in[0];
  if (need[0]) gin[0] = tf_slice(ctx, g, nd->lp[0], x->shape[x->ndim - 1]);
}

static tf_tensor *pad_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return tf_pad(ctx, t[0], nd->lp[0], nd->lp[1]);
}

static void reshape_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                        tf_tensor **gin) {
  const tf_tensor *x = nd->in[0];
  if (need[0]) gin[0] = tf_reshape(ctx, g, x->ndim, x->shape);
}

static tf_tensor *reshape_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return tf_reshape(ctx, t[0], nd->out->ndim, nd->out->shape);
}

static void transpose_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                          tf_tensor **gin) {
  if (need[0]) gin[0] = tf_transpose(ctx, g);
}

static tf_tensor *transpose_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return tf_transpose(ctx, t[0]);
}

static void gather_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                       tf_tensor **gin) {
  if (need[0]) gin[0] = tf_scatter_add(ctx, g, nd->ip[0], nd->idx, nd->lp[0], nd->lp[1]);
}

static tf_tensor *gather_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return tf_gather(ctx, t[0], nd->ip[0], nd->idx, nd->lp[0]);
}

static void scatter_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                        tf_tensor **gin) {
  if (need[0]) gin[0] = tf_gather(ctx, g, nd->ip[0], nd->idx, nd->lp[0]);
}

static tf_tensor *scatter_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  return tf_scatter_add(ctx, t[0], nd->ip[0], nd->idx, nd->lp[0], nd->lp[1]);
}

/* in = {mask, a, b}; the mask gets no gradient */
static void where_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                      tf_tensor **gin) {
  if (need[1]) gin[1] = tf_where(ctx, nd->in[0], g, NULL);
  if (need[2]) gin[2] = tf_where(ctx, nd->in[0], NULL, g);
}

static tf_tensor *where_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  if (!t[1] && !t[2]) return NULL;
  return tf_where(ctx, nd->in[0], t[1], t[2]);
}

/* ---- convolution: T(x, w, g) = <conv(x,w), g> = <x, conv_t(g,w)> = <w, conv_w(x,g)> ------- */

static void conv_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *g, const int *need,
                     tf_tensor **gin) {
  if (need[0]) gin[0] = tf_conv2d_periodic_t(ctx, g, nd->in[1]);
  if (need[1]) gin[1] = tf_conv2d_periodic_w(ctx, nd->in[0], g);
}

static tf_tensor *conv_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  tf_tensor *r = t[0] ? tf_conv2d_periodic(ctx, t[0], nd->in[1]) : NULL;
  return add0(ctx, r, t[1] ? tf_conv2d_periodic(ctx, nd->in[0], t[1]) : NULL);
}

/* u = conv_t(g, w), cotangent h:  <u, h> = T(h, w, g) */
static void conv_t_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *h, const int *need,
                       tf_tensor **gin) {
  if (need[0]) gin[0] = tf_conv2d_periodic(ctx, h, nd->in[1]);
  if (need[1]) gin[1] = tf_conv2d_periodic_w(ctx, h, nd->in[0]);
}

static tf_tensor *conv_t_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  tf_tensor *r = t[0] ? tf_conv2d_periodic_t(ctx, t[0], nd->in[1]) : NULL;
  return add0(ctx, r, t[1] ? tf_conv2d_periodic_t(ctx, nd->in[0], t[1]) : NULL);
}

/* W = conv_w(x, g), cotangent H:  <W, H> = T(x, H, g) */
static void conv_w_vjp(tf_ctx *ctx, const tf_node *nd, tf_tensor *h, const int *need,
                       tf_tensor **gin) {
  if (need[0]) gin[0] = tf_conv2d_periodic_t(ctx, nd->in[1], h);
  if (need[1]) gin[1] = tf_conv2d_periodic(ctx, nd->in[0], h);
}

static tf_tensor *conv_w_jvp(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *t) {
  tf_tensor *r = t[0] ? tf_conv2d_periodic_w(ctx, t[0], nd->in[1]) : NULL;
  return add0(ctx, r, t[1] ? tf_conv2d_periodic_w(ctx, nd->in[0], t[1]) : NULL);
}

const tf_op_rules tf_rules[TF_OP_COUNT] = {
    [TF_OP_MATMUL] = {"matmul", matmul_vjp, matmul_jvp},
    [TF_OP_LINEAR] = {"linear", linear_vjp, linear_jvp},
    [TF_OP_ADD] = {"add", add_vjp, add_jvp},
    [TF_OP_SUB] = {"sub", sub_vjp, sub_jvp},
    [TF_OP_MUL] = {"mul", mul_vjp, mul_jvp},
    [TF_OP_DIV] = {"div", div_vjp, div_jvp},
    [TF_OP_SCALE] = {"scale", scale_vjp, scale_jvp},
    [TF_OP_SHIFT] = {"shift", shift_vjp, shift_jvp},
    [TF_OP_UNARY] = {"unary", unary_vjp, unary_jvp},
    [TF_OP_UNARY_MUL] = {"unary_mul", unary_mul_vjp, unary_mul_jvp},
    [TF_OP_SUM_TO] = {"sum_to", sum_to_vjp, sum_to_jvp},
    [TF_OP_EXPAND] = {"expand", expand_vjp, expand_jvp},
    [TF_OP_LSE] = {"logsumexp", lse_vjp, lse_jvp},
    [TF_OP_CONCAT] = {"concat", concat_vjp, concat_jvp},
    [TF_OP_SLICE] = {"slice", slice_vjp, slice_jvp},
    [TF_OP_PAD] = {"pad", pad_vjp, pad_jvp},
    [TF_OP_RESHAPE] = {"reshape", reshape_vjp, reshape_jvp},
    [TF_OP_GATHER] = {"gather", gather_vjp, gather_jvp},
    [TF_OP_SCATTER] = {"scatter_add", scatter_vjp, scatter_jvp},
    [TF_OP_WHERE] = {"where", where_vjp, where_jvp},
    [TF_OP_CONV] = {"conv2d_periodic", conv_vjp, conv_jvp},
    [TF_OP_CONV_T] = {"conv2d_periodic_t", conv_t_vjp, conv_t_jvp},
    [TF_OP_CONV_W] = {"conv2d_periodic_w", conv_w_vjp, conv_w_jvp},
    [TF_OP_TRANSPOSE] = {"transpose", transpose_vjp, transpose_jvp},
};
