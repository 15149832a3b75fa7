/* tape.c — reverse-mode differentiation over the recorded tape.
 * Exported: tf_grad.
 *
 * The walk visits the tape backwards from its current end, so nodes that the rules record
 * (create_graph = 1) are appended behind it and never revisited in the same call.  Only inputs
 * that depend on one of the requested tensors receive gradients ("dep", one forward scan), so
 * e.g. the gradient with respect to a data batch is never formed when only parameter gradients
 * are asked for.
 */
#include <string.h>

#include "core-impl.h"

/* 1 if gin[i] is a tensor the rule made for this input alone: not the cotangent gy passed
 * through (or a reshape of it: views share the data pointer), not a forward value, not another
 * input's gradient, not caller-owned.  Accumulating into it in place is then safe: nothing else
 * refers to it until this input's own rule runs, after every contribution has arrived. */
static int fresh_grad(const tf_node *nd, const tf_tensor *gy, tf_tensor *const *gin, int i) {
  const tf_tensor *g = gin[i];
  if (g->flags & (TF_TENSOR_PERSISTENT | TF_TENSOR_EXTERNAL)) return 0;
  if (g->data == gy->data || g->data == nd->out->data) return 0;
  for (int j = 0; j < nd->nin; j++) {
    if (nd->in[j] && nd->in[j]->data == g->data) return 0;
    if (j != i && gin[j] && gin[j]->data == g->data) return 0;
  }
  return 1;
}

static int accumulate(tf_ctx *ctx, tf_tensor **grads, unsigned char *owned, uint32_t id,
                      tf_tensor *g, int fresh, int create_graph) {
  if (!grads[id]) {
    /* a fresh first contribution takes the later ones in place: no extra tensor */
    grads[id] = g;
    owned[id] = (unsigned char)(fresh && !create_graph);
    return TF_OK;
  }
  if (create_graph) {
    grads[id] = tf_add(ctx, grads[id], g);
  } else if (owned[id]) {
    tf__acc(grads[id], g);
  } else if (fresh) {
    tf__acc(g, grads[id]); /* the other way round: the sum lands in the fresh tensor */
    grads[id] = g;
    owned[id] = 1;
  } else {
    /* the first contribution may be shared with another input (e.g. both sides of an add):
     * sum into a fresh tensor (one pass, where a copy and an in-place add take two) */
    tf_tensor *c = tf__alloc(ctx, g->ndim, g->shape);
    if (!c) return ctx->status;
    const tf_real *restrict a = grads[id]->data, *restrict b = g->data;
    tf_real *restrict y = c->data;
    for (int64_t i = 0; i < c->n; i++) y[i] = a[i] + b[i];
    grads[id] = c;
    owned[id] = 1;
  }
  return ctx->status;
}

int tf_grad(tf_ctx *ctx, tf_tensor *y, tf_tensor *seed, int n, tf_tensor *const *wrt,
            tf_tensor **out, int create_graph) {
  if (ctx->status != TF_OK) return ctx->status;
  if (!y) return tf__fail(ctx, TF_EINVAL, "tf_grad: output is NULL");
  if (seed && !tf_same_shape(seed, y)) {
    char s1[64], s2[64];
    return tf__fail(ctx, TF_EINVAL, "tf_grad: seed shape %s differs from output shape %s",
                    tf_shape_str(seed, s1, sizeof s1), tf_shape_str(y, s2, sizeof s2));
  }
  for (int i = 0; i < n; i++) {
    out[i] = NULL;
    if (!wrt[i]) return tf__fail(ctx, TF_EINVAL, "tf_grad: wrt[%d] is NULL", i);
  }
  const size_t n_nodes = ctx->n_nodes;
  const uint32_t n_ids = ctx->next_id;
  const int live_y = tf__requires(ctx, y) && y->epoch == ctx->epoch;

  tf_tensor **grads = NULL;
  if (live_y && n_ids > 0) {
    unsigned char *dep = tf_arena_alloc(ctx->arena, n_ids);
    unsigned char *owned = tf_arena_alloc(ctx->arena, n_ids);
    grads = tf_arena_alloc(ctx->arena, n_ids * sizeof *grads);
    if (!dep || !owned || !grads) return tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
    memset(dep, 0, n_ids);
    memset(owned, 0, n_ids);
    memset(grads, 0, n_ids * sizeof *grads);
    for (int i = 0; i < n; i++)
      if (tf__requires(ctx, wrt[i]) && wrt[i]->epoch == ctx->epoch) dep[wrt[i]->id] = 1;
    for (size_t k = 0; k < n_nodes; k++) {
      const tf_node *nd = ctx->nodes[k];
      for (int i = 0; i < nd->nin; i++) {
        const tf_tensor *x = nd->in[i];
        if (x && tf__requires(ctx, x) && x->epoch == ctx->epoch && dep[x->id]) {
          dep[nd->out->id] = 1;
          break;
        }
      }
    }
    if (dep[y->id]) {
      tf_tensor *g0 = seed ? seed : tf_full(ctx, y->ndim, y->shape, 1.0);
      if (!g0) return ctx->status;
      grads[y->id] = g0;
      const int old_grad = ctx->grad_on, old_fwd = ctx->fwd_on;
      ctx->grad_on = create_graph != 0;
      ctx->fwd_on = 0;
      for (size_t k = n_nodes; k-- > 0;) {
        const tf_node *nd = ctx->nodes[k];
        tf_tensor *gy = grads[nd->out->id];
        if (!gy) continue;
        int need_stack[8], *need = need_stack, any = 0;
        tf_tensor *gin_stack[8], **gin = gin_stack;
        if (nd->nin > 8) {
          need = tf_arena_alloc(ctx->arena, (size_t)nd->nin * sizeof *need);
          gin = tf_arena_alloc(ctx->arena, (size_t)nd->nin * sizeof *gin);
          if (!need || !gin) {
            tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
            break;
          }
        }
        for (int i = 0; i < nd->nin; i++) {
          const tf_tensor *x = nd->in[i];
          need[i] = x && tf__requires(ctx, x) && x->epoch == ctx->epoch && dep[x->id];
          any |= need[i];
          gin[i] = NULL;
        }
        if (!any) continue;
        tf_rules[nd->op].vjp(ctx, nd, gy, need, gin);
        if (ctx->status != TF_OK) break;
        for (int i = 0; i < nd->nin; i++)
          if (need[i] && gin[i])
            if (accumulate(ctx, grads, owned, nd->in[i]->id, gin[i], fresh_grad(nd, gy, gin, i),
                           create_graph))
              break;
        if (ctx->status != TF_OK) break;
      }
      ctx->grad_on = old_grad;
      ctx->fwd_on = old_fwd;
      if (ctx->status != TF_OK) return ctx->status;
    }
  }
  for (int i = 0; i < n; i++) {
    tf_tensor *w = wrt[i];
    tf_tensor *g = NULL;
    if (grads && tf__requires(ctx, w) && w->epoch == ctx->epoch && w->id < n_ids)
      g = grads[w->id];
    out[i] = g ? g : tf_zeros_like(ctx, w);
    if (!out[i]) return ctx->status;
  }
  return TF_OK;
}
