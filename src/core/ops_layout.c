/* ops_layout.c — data-layout primitives beyond the last-axis ones of ops.c.
 *
 * Exported: tf_transpose.  Its rules (transpose is its own adjoint and is linear) are in
 * rules.c.
 */
#include <string.h>

#include "core-impl.h"

/* Cache blocking: a plain double loop strides through one side by B elements per store;
 * 32 x 32 tiles keep both sides in L1 for the channel-by-site shapes the conv flows use. */
enum { TILE = 32 };

tf_tensor *tf_transpose(tf_ctx *ctx, tf_tensor *x) {
  if (!x || ctx->status != TF_OK) return NULL;
  if (x->ndim < 2) {
    char s1[64];
    tf__fail(ctx, TF_EINVAL, "transpose: %s has fewer than 2 axes", tf_shape_str(x, s1, 64));
    return NULL;
  }
  int64_t s[TF_MAX_DIM];
  memcpy(s, x->shape, sizeof s);
  const int64_t A = s[x->ndim - 2], B = s[x->ndim - 1], outer = x->n / (A * B);
  s[x->ndim - 2] = B;
  s[x->ndim - 1] = A;
  tf_tensor *y = tf__alloc(ctx, x->ndim, s);
  if (!y) return NULL;
  for (int64_t o = 0; o < outer; o++) {
    const tf_real *xs = x->data + o * A * B;
    tf_real *ys = y->data + o * A * B;
    for (int64_t i0 = 0; i0 < A; i0 += TILE)
      for (int64_t j0 = 0; j0 < B; j0 += TILE) {
        const int64_t i1 = i0 + TILE < A ? i0 + TILE : A, j1 = j0 + TILE < B ? j0 + TILE : B;
        for (int64_t i = i0; i < i1; i++)
          for (int64_t j = j0; j < j1; j++) ys[j * A + i] = xs[i * B + j];
      }
  }
  tf_tensor *in[1] = {x};
  tf_node nd;
  memset(&nd, 0, sizeof nd);
  nd.op = TF_OP_TRANSPOSE;
  nd.nin = 1;
  nd.in = in;
  nd.out = y;
  return tf__finish(ctx, &nd);
}
