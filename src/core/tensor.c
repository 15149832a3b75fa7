/* tensor.c — the context, tensor construction and the recording machinery shared by all ops.
 *
 * Exported: tf_ctx_create/destroy/reset/mark_get/release/set_grad/grad_enabled/set_forward/
 *           status/arena/tape_length,
 *           tf_tensor_create/destroy, tf_new*, tf_zeros*, tf_full, tf_copy, tf_wrap, tf_scalar,
 *           tf_same_shape, tf_shape_str, tf_requires_grad, tf_set_tangent, tf_tangent,
 *           tf_dot, tf_all_finite.
 * Private: tf__fail, tf__alloc, tf__header, tf__finish, tf__requires, tf__id, tf__acc.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core-impl.h"

/* ---- context ----------------------------------------------------------------------------- */

tf_ctx *tf_ctx_create(size_t arena_bytes) {
  /* One MPI rank per core is the parallel model and our matrices are small: BLAS threads only
   * add synchronisation.  A user who wants them sets OPENBLAS_NUM_THREADS explicitly. */
  if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
  tf_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    tf_error(TF_ENOMEM, "tf_ctx_create: out of memory");
    return NULL;
  }
  ctx->arena = tf_arena_create(arena_bytes);
  ctx->cap_nodes = 1024;
  ctx->nodes = malloc(ctx->cap_nodes * sizeof *ctx->nodes);
  if (!ctx->arena || !ctx->nodes) {
    tf_arena_destroy(ctx->arena);
    free(ctx->nodes);
    free(ctx);
    tf_error(TF_ENOMEM, "tf_ctx_create: out of memory");
    return NULL;
  }
  ctx->epoch = 1;
  ctx->grad_on = 1;
  ctx->fwd_on = 1;
  return ctx;
}

void tf_ctx_destroy(tf_ctx *ctx) {
  if (!ctx) return;
  tf_arena_destroy(ctx->arena);
  free(ctx->nodes);
  free(ctx->scratch);
  free(ctx->conv_scratch);
  free(ctx);
}

void tf_ctx_reset(tf_ctx *ctx) {
  tf_arena_reset(ctx->arena);
  ctx->n_nodes = 0;
  ctx->next_id = 0;
  ctx->epoch++;
  /* epoch 0 never matches a live context: persistent tensors start with epoch 0 */
  if (ctx->epoch == 0) ctx->epoch = 1;
  ctx->status = TF_OK;
}

tf_ctx_mark tf_ctx_mark_get(const tf_ctx *ctx) {
  return (tf_ctx_mark){tf_arena_mark_get(ctx->arena), ctx->n_nodes};
}

int tf_ctx_release(tf_ctx *ctx, tf_ctx_mark m) {
  if (ctx->n_nodes != m.n_nodes) return 0;
  tf_arena_release(ctx->arena, m.arena);
  return 1;
}

int tf_ctx_set_grad(tf_ctx *ctx, int on) {
  int old = ctx->grad_on;
  ctx->grad_on = on != 0;
  return old;
}

int tf_ctx_grad_enabled(const tf_ctx *ctx) { return ctx->grad_on; }

int tf_ctx_set_forward(tf_ctx *ctx, int on) {
  int old = ctx->fwd_on;
  ctx->fwd_on = on != 0;
  return old;
}

int tf_ctx_status(const tf_ctx *ctx) { return ctx->status; }
tf_arena *tf_ctx_arena(tf_ctx *ctx) { return ctx->arena; }
size_t tf_ctx_tape_length(const tf_ctx *ctx) { return ctx->n_nodes; }

static int vfail(tf_ctx *ctx, int code, const char *fmt, va_list ap) {
  /* keep the first error: later ones are usually consequences */
  if (ctx->status != TF_OK) return ctx->status;
  char buf[768];
  vsnprintf(buf, sizeof buf, fmt, ap);
  ctx->status = code;
  tf_error(code, "%s", buf);
  return code;
}

int tf__fail(tf_ctx *ctx, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int st = vfail(ctx, code, fmt, ap);
  va_end(ap);
  return st;
}

/* the public name of tf__fail, for code outside the core */
int tf_ctx_fail(tf_ctx *ctx, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int st = vfail(ctx, code, fmt, ap);
  va_end(ap);
  return st;
}

/* ---- tensors ----------------------------------------------------------------------------- */

static int check_shape(int ndim, const int64_t *shape, int64_t *n) {
  if (ndim < 1 || ndim > TF_MAX_DIM) return 0;
  int64_t m = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 1 || shape[i] > ((int64_t)1 << 40)) return 0;
    m *= shape[i];
    if (m > ((int64_t)1 << 40)) return 0;
  }
  *n = m;
  return 1;
}

static void set_shape(tf_tensor *t, int ndim, const int64_t *shape, int64_t n) {
  memset(t, 0, sizeof *t);
  t->ndim = ndim;
  for (int i = 0; i < TF_MAX_DIM; i++) t->shape[i] = i < ndim ? shape[i] : 1;
  t->n = n;
}

tf_tensor *tf_tensor_create(int ndim, const int64_t *shape) {
  int64_t n;
  if (!check_shape(ndim, shape, &n)) {
    tf_error(TF_EINVAL, "tf_tensor_create: invalid shape (ndim %d)", ndim);
    return NULL;
  }
  tf_tensor *t = malloc(sizeof *t);
  tf_real *d = calloc((size_t)n, sizeof *d);
  if (!t || !d) {
    free(t);
    free(d);
    tf_error(TF_ENOMEM, "tf_tensor_create: cannot allocate %lld elements", (long long)n);
    return NULL;
  }
  set_shape(t, ndim, shape, n);
  t->data = d;
  t->flags = TF_TENSOR_PERSISTENT;
  return t;
}

void tf_tensor_destroy(tf_tensor *t) {
  if (!t) return;
  if (t->flags & TF_TENSOR_PERSISTENT) free(t->data);
  free(t);
}

tf_tensor *tf__header(tf_ctx *ctx, tf_real *data, int ndim, const int64_t *shape) {
  int64_t n;
  if (!check_shape(ndim, shape, &n)) {
    tf__fail(ctx, TF_EINVAL, "tensor: invalid shape (ndim %d)", ndim);
    return NULL;
  }
  tf_tensor *t = tf_arena_alloc(ctx->arena, sizeof *t);
  if (!t) {
    tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
    return NULL;
  }
  set_shape(t, ndim, shape, n);
  t->data = data;
  return t;
}

tf_tensor *tf__alloc(tf_ctx *ctx, int ndim, const int64_t *shape) {
  if (ctx->status != TF_OK) return NULL;
  tf_tensor *t = tf__header(ctx, NULL, ndim, shape);
  if (!t) return NULL;
  t->data = tf_arena_alloc(ctx->arena, (size_t)t->n * sizeof(tf_real));
  if (!t->data) {
    tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
    return NULL;
  }
  return t;
}

tf_tensor *tf_new(tf_ctx *ctx, int ndim, const int64_t *shape) {
  return tf__alloc(ctx, ndim, shape);
}

tf_tensor *tf_full(tf_ctx *ctx, int ndim, const int64_t *shape, double value) {
  tf_tensor *t = tf__alloc(ctx, ndim, shape);
  if (!t) return NULL;
  for (int64_t i = 0; i < t->n; i++) t->data[i] = (tf_real)value;
  return t;
}

tf_tensor *tf_zeros(tf_ctx *ctx, int ndim, const int64_t *shape) {
  tf_tensor *t = tf__alloc(ctx, ndim, shape);
  if (t) memset(t->data, 0, (size_t)t->n * sizeof(tf_real));
  return t;
}

tf_tensor *tf_zeros_like(tf_ctx *ctx, const tf_tensor *x) {
  return x ? tf_zeros(ctx, x->ndim, x->shape) : NULL;
}

tf_tensor *tf_copy(tf_ctx *ctx, const tf_tensor *x) {
  if (!x) return NULL;
  tf_tensor *t = tf__alloc(ctx, x->ndim, x->shape);
  if (t) memcpy(t->data, x->data, (size_t)x->n * sizeof(tf_real));
  return t;
}

tf_tensor *tf_wrap(tf_ctx *ctx, tf_real *data, int ndim, const int64_t *shape) {
  if (ctx->status != TF_OK) return NULL;
  tf_tensor *t = tf__header(ctx, data, ndim, shape);
  if (t) t->flags = TF_TENSOR_EXTERNAL;
  return t;
}

tf_tensor *tf_scalar(tf_ctx *ctx, double value) {
  const int64_t one = 1;
  return tf_full(ctx, 1, &one, value);
}

tf_tensor *tf_new1(tf_ctx *ctx, int64_t n0) { return tf_new(ctx, 1, (int64_t[]){n0}); }
tf_tensor *tf_new2(tf_ctx *ctx, int64_t n0, int64_t n1) {
  return tf_new(ctx, 2, (int64_t[]){n0, n1});
}
tf_tensor *tf_new3(tf_ctx *ctx, int64_t n0, int64_t n1, int64_t n2) {
  return tf_new(ctx, 3, (int64_t[]){n0, n1, n2});
}
tf_tensor *tf_new4(tf_ctx *ctx, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
  return tf_new(ctx, 4, (int64_t[]){n0, n1, n2, n3});
}

int tf_same_shape(const tf_tensor *a, const tf_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

const char *tf_shape_str(const tf_tensor *t, char *buf, size_t len) {
  if (!t) {
    snprintf(buf, len, "(null)");
    return buf;
  }
  size_t off = 0;
  off += (size_t)snprintf(buf + off, len - off, "(");
  for (int i = 0; i < t->ndim && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (off < len) snprintf(buf + off, len - off, ")");
  return buf;
}

void tf_requires_grad(tf_tensor *t, int on) {
  if (on)
    t->flags |= TF_TENSOR_REQUIRES_GRAD;
  else
    t->flags &= ~(uint32_t)TF_TENSOR_REQUIRES_GRAD;
}

int tf_set_tangent(tf_ctx *ctx, tf_tensor *x, tf_tensor *dx) {
  if (dx && !tf_same_shape(x, dx)) {
    char a[64], b[64];
    return tf_error(TF_EINVAL, "tf_set_tangent: tangent shape %s differs from tensor shape %s",
                    tf_shape_str(dx, b, sizeof b), tf_shape_str(x, a, sizeof a));
  }
  x->tan = dx;
  x->tan_epoch = dx ? ctx->epoch : 0;
  return TF_OK;
}

tf_tensor *tf_tangent(const tf_ctx *ctx, const tf_tensor *x) {
  return (x && x->tan && x->tan_epoch == ctx->epoch) ? x->tan : NULL;
}

double tf_dot(const tf_tensor *a, const tf_tensor *b) {
  double s = 0;
  for (int64_t i = 0; i < a->n; i++) s += (double)a->data[i] * (double)b->data[i];
  return s;
}

int tf_all_finite(const tf_tensor *t) {
  int ok = 1;
  for (int64_t i = 0; i < t->n; i++) ok &= isfinite(t->data[i]) != 0;
  return ok;
}

/* ---- recording --------------------------------------------------------------------------- */

int tf__requires(const tf_ctx *ctx, const tf_tensor *t) {
  (void)ctx;
  return t && (t->flags & TF_TENSOR_REQUIRES_GRAD);
}

uint32_t tf__id(tf_ctx *ctx, tf_tensor *t) {
  if (t->epoch != ctx->epoch) {
    t->epoch = ctx->epoch;
    t->id = ctx->next_id++;
  }
  return t->id;
}

void tf__acc(tf_tensor *a, const tf_tensor *b) {
  tf_real *restrict y = a->data;
  const tf_real *restrict x = b->data;
  for (int64_t i = 0; i < a->n; i++) y[i] += x[i];
}

static int push_node(tf_ctx *ctx, tf_node *nd) {
  if (ctx->n_nodes == ctx->cap_nodes) {
    /* grows only while the first steps find the tape's size; steady state allocates nothing */
    size_t cap = ctx->cap_nodes * 2;
    tf_node **p = realloc(ctx->nodes, cap * sizeof *p);
    if (!p) return tf__fail(ctx, TF_ENOMEM, "tape: cannot grow to %zu nodes", cap);
    ctx->nodes = p;
    ctx->cap_nodes = cap;
  }
  ctx->nodes[ctx->n_nodes++] = nd;
  return TF_OK;
}

/* Called by every op after its forward kernel: record the node if a gradient may be wanted,
 * and propagate tangents.  `nd` may live on the caller's stack; it is copied when recorded. */
tf_tensor *tf__finish(tf_ctx *ctx, tf_node *nd) {
  tf_tensor *y = nd->out;
  if (!y || ctx->status != TF_OK) return NULL;
  const tf_node *rules_nd = nd;
  if (ctx->grad_on) {
    int rec = 0;
    for (int i = 0; i < nd->nin; i++) rec |= tf__requires(ctx, nd->in[i]);
    if (rec) {
      tf_node *c = tf_arena_alloc(ctx->arena, sizeof *c);
      tf_tensor **in = tf_arena_alloc(ctx->arena, (size_t)nd->nin * sizeof *in);
      if (!c || !in) {
        tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
        return NULL;
      }
      *c = *nd;
      memcpy(in, nd->in, (size_t)nd->nin * sizeof *in);
      c->in = in;
      for (int i = 0; i < nd->nin; i++)
        if (tf__requires(ctx, in[i])) tf__id(ctx, in[i]);
      y->flags |= TF_TENSOR_REQUIRES_GRAD;
      tf__id(ctx, y);
      if (push_node(ctx, c) != TF_OK) return NULL;
      rules_nd = c;
    }
  }
  if (ctx->fwd_on) {
    tf_tensor *tin_stack[8];
    tf_tensor **tin = tin_stack;
    if (nd->nin > 8) {
      tin = tf_arena_alloc(ctx->arena, (size_t)nd->nin * sizeof *tin);
      if (!tin) {
        tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
        return NULL;
      }
    }
    int any = 0;
    for (int i = 0; i < nd->nin; i++) {
      tin[i] = tf_tangent(ctx, nd->in[i]);
      any |= tin[i] != NULL;
    }
    if (any) {
      /* one level of forward mode: the tangent computation itself carries no tangents */
      ctx->fwd_on = 0;
      tf_tensor *dy = tf_rules[nd->op].jvp(ctx, rules_nd, tin);
      ctx->fwd_on = 1;
      if (ctx->status != TF_OK) return NULL;
      if (dy) {
        y->tan = dy;
        y->tan_epoch = ctx->epoch;
      }
    }
  }
  return y;
}
