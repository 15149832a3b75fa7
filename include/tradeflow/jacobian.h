/* tradeflow — brute-force Jacobians for small dimensions (tests of log-determinants).
 *
 * The Jacobian of a batched map f: (N, Din) -> (N, Dout), applied row by row, is built from
 * Din forward-mode passes: the tangent e_i on every row gives column i of all N Jacobians at
 * once.  Cost: Din evaluations of f.  Meant for D up to a few hundred.
 */
#ifndef TRADEFLOW_JACOBIAN_H
#define TRADEFLOW_JACOBIAN_H

#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A batched map built from ops; returns its output (N, Dout) or NULL on error. */
typedef tf_tensor *(*tf_map_fn)(tf_ctx *ctx, tf_tensor *x, void *userdata);

/* J[n * Dout * Din + a * Din + b] = d f(x)_{n,a} / d x_{n,b}, in double.  x is (N, Din);
 * `jac` must hold N * Dout * Din doubles.  Rows must not interact (a per-sample map).
 * Arena tensors made on the way stay until the caller's next reset. */
int tf_jacobian(tf_ctx *ctx, tf_map_fn f, void *userdata, tf_tensor *x, int64_t dout,
                double *jac);

/* log|det A| for a D x D row-major matrix, by LU with partial pivoting in double; *sign gets
 * +1, -1, or 0 for a singular matrix (then the result is -inf).  A is not modified. */
double tf_logabsdet(const double *a, int d, int *sign);

#ifdef __cplusplus
}
#endif
#endif
