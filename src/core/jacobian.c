/* jacobian.c — brute-force per-sample Jacobians by forward mode, and log|det| by LU.
 * Exported: tf_jacobian, tf_logabsdet. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"
#include "tradeflow/jacobian.h"

int tf_jacobian(tf_ctx *ctx, tf_map_fn f, void *userdata, tf_tensor *x, int64_t dout,
                double *jac) {
  if (ctx->status != TF_OK) return ctx->status;
  if (!x || x->ndim != 2) return tf__fail(ctx, TF_EINVAL, "tf_jacobian: x must be (N, D)");
  const int64_t N = x->shape[0], din = x->shape[1];
  tf_tensor *saved = tf_tangent(ctx, x);
  const int old_fwd = tf_ctx_set_forward(ctx, 1);
  const int old_grad = tf_ctx_set_grad(ctx, 0); /* values only: keep the tape short */
  int st = TF_OK;
  for (int64_t b = 0; b < din && st == TF_OK; b++) {
    tf_tensor *e = tf_zeros(ctx, 2, x->shape);
    if (!e) {
      st = ctx->status;
      break;
    }
    for (int64_t n = 0; n < N; n++) e->data[n * din + b] = 1;
    tf_set_tangent(ctx, x, e);
    tf_tensor *y = f(ctx, x, userdata);
    if (!y) {
      st = ctx->status ? ctx->status : tf__fail(ctx, TF_EINVAL, "tf_jacobian: map failed");
      break;
    }
    if (y->ndim != 2 || y->shape[0] != N || y->shape[1] != dout) {
      st = tf__fail(ctx, TF_EINVAL, "tf_jacobian: map output is not (%lld, %lld)",
                    (long long)N, (long long)dout);
      break;
    }
    tf_tensor *t = tf_tangent(ctx, y);
    for (int64_t n = 0; n < N; n++)
      for (int64_t a = 0; a < dout; a++)
        jac[(n * dout + a) * din + b] = t ? (double)t->data[n * dout + a] : 0.0;
  }
  tf_set_tangent(ctx, x, saved);
  tf_ctx_set_grad(ctx, old_grad);
  tf_ctx_set_forward(ctx, old_fwd);
  return st;
}

double tf_logabsdet(const double *a, int d, int *sign) {
  double *lu = malloc((size_t)d * (size_t)d * sizeof *lu);
  if (!lu) {
    tf_error(TF_ENOMEM, "tf_logabsdet: out of memory for %d x %d", d, d);
    *sign = 0;
    return NAN;
  }
  memcpy(lu, a, (size_t)d * (size_t)d * sizeof *lu);
  int s = 1;
  double logdet = 0;
  for (int k = 0; k < d; k++) {
    int p = k;
    for (int i = k + 1; i < d; i++)
      if (fabs(lu[i * d + k]) > fabs(lu[p * d + k])) p = i;
    if (lu[p * d + k] == 0) {
      free(lu);
      *sign = 0;
      return -INFINITY;
    }
    if (p != k) {
      for (int j = 0; j < d; j++) {
        double t = lu[k * d + j];
        lu[k * d + j] = lu[p * d + j];
        lu[p * d + j] = t;
      }
      s = -s;
    }
    const double piv = lu[k * d + k];
    if (piv < 0) s = -s;
    logdet += log(fabs(piv));
    for (int i = k + 1; i < d; i++) {
      const double f = lu[i * d + k] / piv;
      for (int j = k + 1; j < d; j++) lu[i * d + j] -= f * lu[k * d + j];
    }
  }
  free(lu);
  *sign = s;
  return logdet;
}
