/* Private interface of the tensor core: the context, tape nodes, op codes and the rule table.
 * Not installed; include only from src/. */
#ifndef TRADEFLOW_CORE_IMPL_H
#define TRADEFLOW_CORE_IMPL_H

#include "tradeflow/error.h"
#include "tradeflow/tensor.h"

typedef enum {
  TF_OP_MATMUL,
  TF_OP_LINEAR,    /* in = {x, W[, b]}: x W^T (+ b) */
  TF_OP_ADD,
  TF_OP_SUB,
  TF_OP_MUL,
  TF_OP_DIV,
  TF_OP_SCALE,
  TF_OP_SHIFT,
  TF_OP_UNARY,     /* f^(k)(x): ip[0] = fn, ip[1] = k */
  TF_OP_UNARY_MUL, /* g * f^(k)(x): in = {x, g} */
  TF_OP_SUM_TO,
  TF_OP_EXPAND,
  TF_OP_LSE,       /* ip[0] = axis */
  TF_OP_CONCAT,    /* nin inputs */
  TF_OP_SLICE,     /* lp[0] = start, lp[1] = len */
  TF_OP_PAD,       /* lp[0] = start, lp[1] = total */
  TF_OP_RESHAPE,
  TF_OP_GATHER,    /* ip[0] = axis, lp[0] = m, idx */
  TF_OP_SCATTER,   /* ip[0] = axis, lp[0] = m, lp[1] = size, idx */
  TF_OP_WHERE,     /* in = {mask, a, b}; a or b may be NULL */
  TF_OP_CONV,
  TF_OP_CONV_T,
  TF_OP_CONV_W,
  TF_OP_TRANSPOSE, /* swap the last two axes */
  TF_OP_COUNT
} tf_op;

/* One recorded application of a primitive.  Lives in the arena. */
typedef struct tf_node {
  tf_op op;
  int nin;
  tf_tensor **in;       /* nin inputs (entries may be NULL only for WHERE's a/b) */
  tf_tensor *out;
  int ip[2];            /* small integer parameters (see tf_op) */
  int64_t lp[2];        /* size parameters */
  double fp;            /* scalar parameter (SCALE, SHIFT) */
  const int64_t *idx;   /* GATHER / SCATTER indices */
} tf_node;

struct tf_ctx {
  tf_arena *arena;
  tf_node **nodes;      /* the tape, in execution order; capacity kept across resets */
  size_t n_nodes, cap_nodes;
  uint32_t epoch;       /* bumped at every reset: invalidates ids and tangents */
  uint32_t next_id;     /* ids of tensors that require grad in this epoch */
  int grad_on;          /* recording enabled */
  int fwd_on;           /* tangent propagation enabled */
  int status;           /* sticky error */
  void *scratch;        /* matmul packing buffer (64-byte aligned), kept across resets */
  size_t scratch_bytes;
  void *conv_scratch;   /* periodic convolutions' im2col buffers, kept across resets */
  size_t conv_scratch_bytes;
};

/* Rule table (rules.c).  Reverse: given the output cotangent gy, write gin[i] for every input
 * with need[i] set.  Tangent: return the output tangent given input tangents tin[i] (NULL =
 * zero), or NULL if it is zero. */
typedef void (*tf_vjp_fn)(tf_ctx *ctx, const tf_node *nd, tf_tensor *gy, const int *need,
                          tf_tensor **gin);
typedef tf_tensor *(*tf_jvp_fn)(tf_ctx *ctx, const tf_node *nd, tf_tensor *const *tin);
typedef struct {
  const char *name;
  tf_vjp_fn vjp;
  tf_jvp_fn jvp;
} tf_op_rules;
extern const tf_op_rules tf_rules[TF_OP_COUNT];

/* ops.c internals used by rules.c and tape.c */
int tf__fail(tf_ctx *ctx, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
tf_tensor *tf__alloc(tf_ctx *ctx, int ndim, const int64_t *shape);
tf_tensor *tf__header(tf_ctx *ctx, tf_real *data, int ndim, const int64_t *shape);
tf_tensor *tf__finish(tf_ctx *ctx, tf_node *nd);
int tf__requires(const tf_ctx *ctx, const tf_tensor *t);
uint32_t tf__id(tf_ctx *ctx, tf_tensor *t);
/* in-place a += b (equal shapes), not recorded: used to accumulate gradients */
void tf__acc(tf_tensor *a, const tf_tensor *b);

/* Elementwise function kernels (kernels.c). */
void tf__unary_kernel(tf_fn fn, int k, const tf_real *x, const tf_real *g, tf_real *y, int64_t n);
const char *tf__fn_name(tf_fn fn);

#endif
