/* tradeflow — model parameters in contiguous slabs.
 *
 * Every parameter of a model is a view into one slab of values; gradients live in a second
 * slab of the same layout.  The gradient allreduce is therefore one MPI call and a checkpoint
 * one dataset per slab (llm.c's layout).
 *
 * Life cycle (plan, then execute, as in FFTW):
 *   p = tf_params_create();
 *   W = tf_params_declare(p, "block0.W", 2, shape);   ...layers declare what they need
 *   tf_params_finalize(p);                              ...slabs allocated, zeroed; views valid
 *   ...initialise through the views, train...
 *   tf_params_destroy(p);                               ...frees slabs and views
 * Declared tensors are owned by the tf_params object; they require grad.  Their `data` is NULL
 * until finalize.
 */
#ifndef TRADEFLOW_PARAMS_H
#define TRADEFLOW_PARAMS_H

#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tf_params tf_params;

tf_params *tf_params_create(void);
void tf_params_destroy(tf_params *p); /* NULL is harmless */

/* Declare a parameter (name copied, at most 63 characters, unique).  NULL on error (after
 * finalize, duplicate name, bad shape), message in tf_errmsg(). */
tf_tensor *tf_params_declare(tf_params *p, const char *name, int ndim, const int64_t *shape);

/* Allocate the value and gradient slabs (zeroed, 64-byte aligned, each tensor's data aligned
 * to 16 elements) and point the views into them. */
int tf_params_finalize(tf_params *p);

int tf_params_count(const tf_params *p);          /* number of parameter tensors */
int64_t tf_params_size(const tf_params *p);       /* number of scalars (slab length) */
tf_tensor *tf_params_tensor(const tf_params *p, int i);
const char *tf_params_name(const tf_params *p, int i);
int64_t tf_params_offset(const tf_params *p, int i); /* element offset of tensor i in the slab */
tf_tensor *tf_params_find(const tf_params *p, const char *name);

tf_real *tf_params_values(tf_params *p);          /* slab of tf_params_size() values */
tf_real *tf_params_grads(tf_params *p);           /* slab of gradients, same layout */

/* Gradients of the scalar `loss` (shape [1]) with respect to every parameter, written into the
 * gradient slab (overwriting it).  Returns TF_OK or the context's error. */
int tf_params_backward(tf_params *p, tf_ctx *ctx, tf_tensor *loss);

/* sqrt(sum g^2) over the gradient slab, in double; NaN if any gradient is not finite. */
double tf_params_grad_norm(const tf_params *p);

#ifdef __cplusplus
}
#endif
#endif
