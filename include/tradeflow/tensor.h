/* tradeflow — tensors, the differentiation tape, and the primitive ops.
 *
 * Tensors
 *   Up to TF_MAX_DIM (4) dimensions, contiguous, row-major, elements of type tf_real (float by
 *   default, double when built with -DTF_DOUBLE=ON).  A scalar is a tensor of shape [1].
 *   Shapes are written next to arguments below as (N, D) etc.
 *   Tensors made by ops live in the context's arena and die at tf_ctx_reset().  Persistent
 *   tensors (parameters, data) are made with tf_tensor_create() and owned by the caller.
 *
 * Differentiation (see DESIGN.md section 2)
 *   Ops execute eagerly.  An op is recorded on the tape only when gradient recording is on
 *   (tf_ctx_set_grad) and one of its inputs "requires grad" (a leaf marked with
 *   tf_requires_grad, or the output of a recorded op).
 *
 *   Reverse mode: tf_grad(ctx, y, n, wrt, out, create_graph) returns d(sum y*seed)/d wrt[i].
 *   With create_graph = 1 the rules run as recorded ops, so the gradient can itself be
 *   differentiated again (reverse over reverse).
 *
 *   Forward mode: tf_set_tangent(x, dx) attaches a tangent to x; every op whose input carries a
 *   tangent computes its output's tangent (a JVP) with the same differentiable ops, and those
 *   ops are recorded like any other, so a loss built from tangents can be differentiated in
 *   reverse (reverse over forward — what TRADE needs for d/dc log p).  One level of forward
 *   mode is supported: tangents do not carry tangents of their own.
 *
 *   Every primitive has a forward kernel, a reverse rule and a tangent rule, gathered by op in
 *   src/core/rules.c; all rules are written with ops of this header.
 *
 * Errors
 *   Ops return NULL on error (bad shape, out of memory, unsupported derivative order) and
 *   leave a sticky status in the context (tf_ctx_status / tf_errmsg).  An op handed a NULL
 *   input returns NULL at once, so a chain of ops can be checked once at its end.
 *
 * Threading: a context is used by one thread at a time.
 */
#ifndef TRADEFLOW_TENSOR_H
#define TRADEFLOW_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "tradeflow/arena.h"
#include "tradeflow/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef TF_DOUBLE
typedef double tf_real;
#define TF_REAL_NAME "float64"
#else
typedef float tf_real;
#define TF_REAL_NAME "float32"
#endif

#define TF_MAX_DIM 4

/* Plain data; fields are read-only for users except the contents of `data`. */
typedef struct tf_tensor {
  tf_real *data;               /* n contiguous elements, row-major */
  int64_t shape[TF_MAX_DIM];   /* shape[ndim..3] == 1 */
  int64_t n;                   /* number of elements */
  int ndim;                    /* 1..4 */
  uint32_t flags;              /* TF_TENSOR_* below */
  uint32_t id, epoch;          /* tape identity, valid while epoch == context epoch */
  uint32_t tan_epoch;          /* `tan` is valid only while tan_epoch == context epoch */
  struct tf_tensor *tan;       /* forward-mode tangent (same shape) or NULL (zero tangent) */
} tf_tensor;

enum {
  TF_TENSOR_REQUIRES_GRAD = 1u << 0, /* leaf that gradients are wanted for / recorded output */
  TF_TENSOR_PERSISTENT = 1u << 1,    /* made by tf_tensor_create, owned by the caller */
  TF_TENSOR_EXTERNAL = 1u << 2       /* arena header over caller-owned data (tf_wrap) */
};

typedef struct tf_ctx tf_ctx;

/* ---- context ----------------------------------------------------------------------------- */

/* `arena_bytes`: initial arena block (0: 1 MiB); the arena grows as needed during the first
 * step and keeps its blocks across resets.  NULL on failure.
 * Unless OPENBLAS_NUM_THREADS is set, this pins OpenBLAS to one thread (process-wide): the
 * parallel model is one MPI rank per core. */
tf_ctx *tf_ctx_create(size_t arena_bytes);
void tf_ctx_destroy(tf_ctx *ctx); /* NULL is harmless */

/* Drop the tape, all arena tensors and all tangents; clears the sticky status.  Call once per
 * training step.  Persistent tensors keep their data and flags. */
void tf_ctx_reset(tf_ctx *ctx);

/* Gradient recording on/off (default on); returns the previous setting.  Off is the fast path
 * for sampling and evaluation. */
int tf_ctx_set_grad(tf_ctx *ctx, int on);
int tf_ctx_grad_enabled(const tf_ctx *ctx); /* the current setting */

int tf_ctx_status(const tf_ctx *ctx);        /* TF_OK or the first error since reset */
/* Sets the sticky status (the first error since reset wins) and the message; returns the
 * status in effect.  For code built on the ops (model families) that finds an error of its
 * own in the middle of a chain of ops. */
int tf_ctx_fail(tf_ctx *ctx, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
tf_arena *tf_ctx_arena(tf_ctx *ctx);         /* the step arena (for the caller's scratch) */
size_t tf_ctx_tape_length(const tf_ctx *ctx); /* recorded nodes since reset */

/* Scoped scratch for loops whose intermediates die within one iteration (the blocks of a flow
 * in inference): tf_ctx_release frees every arena tensor made since the mark, so the loop's
 * working set stays that of one iteration (cache-resident) instead of growing with it.  The
 * caller guarantees that the mark was taken since the last reset, that marks are released
 * innermost first, and that nothing made since the mark is used afterwards (copy results into
 * tensors made before it).  Refused (returns 0, nothing freed) when the tape grew since the
 * mark, since recorded nodes refer to those tensors; 1 when released. */
typedef struct {
  tf_arena_mark arena;
  size_t n_nodes;
} tf_ctx_mark;
tf_ctx_mark tf_ctx_mark_get(const tf_ctx *ctx);
int tf_ctx_release(tf_ctx *ctx, tf_ctx_mark m);

/* ---- tensors ----------------------------------------------------------------------------- */

/* Persistent tensor, zero-initialised, owned by the caller; NULL on failure. */
tf_tensor *tf_tensor_create(int ndim, const int64_t *shape);
void tf_tensor_destroy(tf_tensor *t); /* NULL is harmless */

/* Arena tensors, valid until tf_ctx_reset. */
tf_tensor *tf_new(tf_ctx *ctx, int ndim, const int64_t *shape);   /* uninitialised */
tf_tensor *tf_zeros(tf_ctx *ctx, int ndim, const int64_t *shape);
tf_tensor *tf_full(tf_ctx *ctx, int ndim, const int64_t *shape, double value);
tf_tensor *tf_zeros_like(tf_ctx *ctx, const tf_tensor *x);
tf_tensor *tf_copy(tf_ctx *ctx, const tf_tensor *x);   /* data copy, not recorded, no tangent */
tf_tensor *tf_wrap(tf_ctx *ctx, tf_real *data, int ndim, const int64_t *shape); /* no copy */
tf_tensor *tf_scalar(tf_ctx *ctx, double value);       /* shape [1] */

/* Shape helpers: tf_new2(ctx, N, D) etc. */
tf_tensor *tf_new1(tf_ctx *ctx, int64_t n0);
tf_tensor *tf_new2(tf_ctx *ctx, int64_t n0, int64_t n1);
tf_tensor *tf_new3(tf_ctx *ctx, int64_t n0, int64_t n1, int64_t n2);
tf_tensor *tf_new4(tf_ctx *ctx, int64_t n0, int64_t n1, int64_t n2, int64_t n3);

int tf_same_shape(const tf_tensor *a, const tf_tensor *b);
/* "(2, 3)" into buf; returns buf. */
const char *tf_shape_str(const tf_tensor *t, char *buf, size_t len);

/* Mark a tensor (normally a persistent parameter) as a leaf that gradients are wanted for. */
void tf_requires_grad(tf_tensor *t, int on);

/* Forward mode: attach tangent `dx` (same shape as x; NULL removes it).  The tangent is
 * forgotten at tf_ctx_reset.  Returns TF_OK or TF_EINVAL on a shape mismatch. */
int tf_set_tangent(tf_ctx *ctx, tf_tensor *x, tf_tensor *dx);
/* The tangent of x (NULL means zero). */
tf_tensor *tf_tangent(const tf_ctx *ctx, const tf_tensor *x);
/* Forward-mode propagation on/off (default on); returns the previous setting. */
int tf_ctx_set_forward(tf_ctx *ctx, int on);

/* ---- reverse mode ------------------------------------------------------------------------ */

/* Gradients of L = sum(y * seed) (seed NULL: ones) with respect to wrt[0..n-1]; out[i] gets an
 * arena tensor of wrt[i]'s shape (zeros if L does not depend on it).  create_graph = 1 records
 * the backward pass so that out[] can be differentiated again.  Returns TF_OK or an error. */
int tf_grad(tf_ctx *ctx, tf_tensor *y, tf_tensor *seed, int n, tf_tensor *const *wrt,
            tf_tensor **out, int create_graph);

/* ---- primitive ops (all differentiable in reverse and forward mode) ----------------------- */

/* C = op(A) op(B), op = transpose if the flag is set.  A (M, K) or (K, M), B (K, N) or (N, K),
 * C (M, N).  float32 on AVX-512: our own register-blocked kernel (src/core/ops.c; tall-thin
 * shapes of flow layers run about twice as fast as OpenBLAS 0.3.21 there); otherwise, and in
 * float64, BLAS gemm. */
tf_tensor *tf_matmul(tf_ctx *ctx, tf_tensor *a, tf_tensor *b, int trans_a, int trans_b);
/* A dense layer, y = x W^T + b: x (N, K), W (M, K) (PyTorch's layout), b with M elements (any
 * shape, e.g. (M) or (1, M)) or NULL -> y (N, M).  The same values as
 * tf_add(tf_matmul(x, W, 0, 1), b), but the bias is added inside the GEMM (no pass over y). */
tf_tensor *tf_linear(tf_ctx *ctx, tf_tensor *x, tf_tensor *w, tf_tensor *b);

/* Elementwise with numpy broadcasting (shapes aligned at the trailing dimension). */
tf_tensor *tf_add(tf_ctx *ctx, tf_tensor *a, tf_tensor *b);
tf_tensor *tf_sub(tf_ctx *ctx, tf_tensor *a, tf_tensor *b);
tf_tensor *tf_mul(tf_ctx *ctx, tf_tensor *a, tf_tensor *b);
tf_tensor *tf_div(tf_ctx *ctx, tf_tensor *a, tf_tensor *b);
tf_tensor *tf_scale(tf_ctx *ctx, tf_tensor *x, double alpha); /* alpha * x */
tf_tensor *tf_shift(tf_ctx *ctx, tf_tensor *x, double beta);  /* x + beta */
tf_tensor *tf_neg(tf_ctx *ctx, tf_tensor *x);

/* Unary elementwise functions.  Each is the k = 0 member of a family f^(k) used by the rules;
 * derivatives are available to order TF_MAX_DERIV. */
typedef enum {
  TF_FN_EXP, TF_FN_LOG, TF_FN_TANH, TF_FN_SIGMOID, TF_FN_SOFTPLUS, TF_FN_SILU, TF_FN_RELU,
  TF_FN_SQUARE, TF_FN_SQRT, TF_FN_ABS, TF_FN_SIN, TF_FN_COS, TF_FN_COUNT
} tf_fn;
#define TF_MAX_DERIV 4

tf_tensor *tf_exp(tf_ctx *ctx, tf_tensor *x);
tf_tensor *tf_log(tf_ctx *ctx, tf_tensor *x);       /* x > 0 */
tf_tensor *tf_tanh(tf_ctx *ctx, tf_tensor *x);
tf_tensor *tf_sigmoid(tf_ctx *ctx, tf_tensor *x);
tf_tensor *tf_softplus(tf_ctx *ctx, tf_tensor *x);  /* log(1 + e^x), overflow-safe */
tf_tensor *tf_silu(tf_ctx *ctx, tf_tensor *x);      /* x * sigmoid(x) */
tf_tensor *tf_relu(tf_ctx *ctx, tf_tensor *x);      /* derivative at 0 taken as 0 */
tf_tensor *tf_square(tf_ctx *ctx, tf_tensor *x);
tf_tensor *tf_sqrt(tf_ctx *ctx, tf_tensor *x);      /* x >= 0; derivative infinite at 0 */
tf_tensor *tf_abs(tf_ctx *ctx, tf_tensor *x);       /* derivative sign(x), 0 at 0 */
tf_tensor *tf_sin(tf_ctx *ctx, tf_tensor *x);
tf_tensor *tf_cos(tf_ctx *ctx, tf_tensor *x);
/* f^(k)(x), the k-th derivative (k = 0..TF_MAX_DERIV). */
tf_tensor *tf_unary(tf_ctx *ctx, tf_fn fn, int k, tf_tensor *x);
/* g * f^(k)(x) fused in one pass (x and g of equal shape): the reverse rule of f^(k-1). */
tf_tensor *tf_unary_mul(tf_ctx *ctx, tf_fn fn, int k, tf_tensor *x, tf_tensor *g);
/* sqrt(x^2 + eps^2): an abs with a smooth derivative at 0 (composite). */
tf_tensor *tf_abs_smooth(tf_ctx *ctx, tf_tensor *x, double eps);
/* log(max(x, eps)) written as log(x) on x >= eps and a linear continuation below: finite
 * for every x (composite). */
tf_tensor *tf_log_safe(tf_ctx *ctx, tf_tensor *x, double eps);

/* Reductions.  axis < 0 counts from the end.  The reduced axis is kept with size 1. */
tf_tensor *tf_sum(tf_ctx *ctx, tf_tensor *x, int axis);
tf_tensor *tf_mean(tf_ctx *ctx, tf_tensor *x, int axis);
tf_tensor *tf_sum_all(tf_ctx *ctx, tf_tensor *x);   /* shape [1], accumulated in double */
tf_tensor *tf_mean_all(tf_ctx *ctx, tf_tensor *x);
/* Sum over broadcast dimensions so the result has `shape` (the adjoint of tf_expand). */
tf_tensor *tf_sum_to(tf_ctx *ctx, tf_tensor *x, int ndim, const int64_t *shape);
/* Broadcast x to `shape` (the adjoint of tf_sum_to). */
tf_tensor *tf_expand(tf_ctx *ctx, tf_tensor *x, int ndim, const int64_t *shape);
/* log sum exp over an axis (kept with size 1), max-shifted, accumulated in double. */
tf_tensor *tf_logsumexp(tf_ctx *ctx, tf_tensor *x, int axis);
tf_tensor *tf_softmax(tf_ctx *ctx, tf_tensor *x, int axis);
tf_tensor *tf_log_softmax(tf_ctx *ctx, tf_tensor *x, int axis);

/* Feature-axis (last axis) structure. */
tf_tensor *tf_concat(tf_ctx *ctx, int n, tf_tensor *const *xs);        /* along the last axis */
tf_tensor *tf_slice(tf_ctx *ctx, tf_tensor *x, int64_t start, int64_t len); /* last axis */
/* Embed x in zeros along the last axis: out[..., start + j] = x[..., j], last dim `total`. */
tf_tensor *tf_pad(tf_ctx *ctx, tf_tensor *x, int64_t start, int64_t total);
tf_tensor *tf_reshape(tf_ctx *ctx, tf_tensor *x, int ndim, const int64_t *shape); /* shares data */
/* Swap the last two axes: (..., A, B) -> (..., B, A), copied (e.g. per-site rows (N, S, P)
 * of a channels-last conv output to per-parameter rows (N, P, S)).  ndim >= 2. */
tf_tensor *tf_transpose(tf_ctx *ctx, tf_tensor *x);

/* Index ops along `axis` (x viewed as (outer, A, inner)).  `idx` has m entries in [0, A); it
 * must stay valid until tf_ctx_reset (copy it to the arena if in doubt).
 *   gather:      out[o, i, j]          = x[o, idx[i], j]       out axis size m
 *   scatter_add: out[o, idx[i], j]    += x[o, i, j]            out axis size `size`, zeros first
 * They are each other's adjoints. */
tf_tensor *tf_gather(tf_ctx *ctx, tf_tensor *x, int axis, const int64_t *idx, int64_t m);
tf_tensor *tf_scatter_add(tf_ctx *ctx, tf_tensor *x, int axis, const int64_t *idx, int64_t m,
                          int64_t size);

/* out = mask != 0 ? a : b, all three of one shape; a or b NULL means zeros.  The mask is
 * constant (no gradient flows into it). */
tf_tensor *tf_where(tf_ctx *ctx, tf_tensor *mask, tf_tensor *a, tf_tensor *b);

/* Periodic (circular) 3x3 convolution for L1 x L2 lattice fields, stride 1, "same" size, on
 * channels-last fields (a site's channels contiguous):
 *   y[n, i, j, o] = sum_{c, di, dj} w[o, c, di, dj] x[n, (i + di - 1) mod L1, (j + dj - 1) mod L2, c]
 * x (N, L1, L2, Cin), w (Cout, Cin, 3, 3) -> y (N, L1, L2, Cout).  (Cross-correlation, as in
 * PyTorch's Conv2d with padding_mode='circular', there on (N, C, L1, L2).)  The two adjoints
 * are exposed because the rules are written with them:
 *   conv_t: g (N, L1, L2, Cout), w (Cout, Cin, 3, 3) -> (N, L1, L2, Cin), adjoint in x
 *   conv_w: x (N, L1, L2, Cin), g (N, L1, L2, Cout) -> (Cout, Cin, 3, 3), adjoint in w */
tf_tensor *tf_conv2d_periodic(tf_ctx *ctx, tf_tensor *x, tf_tensor *w);
tf_tensor *tf_conv2d_periodic_t(tf_ctx *ctx, tf_tensor *g, tf_tensor *w);
tf_tensor *tf_conv2d_periodic_w(tf_ctx *ctx, tf_tensor *x, tf_tensor *g);

/* The same values, cut off from differentiation (no gradient, no tangent). */
tf_tensor *tf_stop_gradient(tf_ctx *ctx, tf_tensor *x);

/* ---- helpers ----------------------------------------------------------------------------- */

/* sum_i a_i b_i in double (no recording). */
double tf_dot(const tf_tensor *a, const tf_tensor *b);
/* 1 if every element is finite. */
int tf_all_finite(const tf_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
