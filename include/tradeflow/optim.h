/* tradeflow — optimizers and learning-rate schedules over a parameter slab.
 *
 * Adam (Kingma & Ba 2015) with bias correction; AdamW (Loshchilov & Hutter 2019) adds decoupled
 * weight decay: theta -= lr * wd * theta before the Adam update.  Moments are kept in double:
 * they are small next to the activations, and double moments make a resumed run independent of
 * the network precision's rounding of the optimizer state.
 *
 * A step whose gradient is not finite is refused (TF_ENUMERIC) and changes nothing, so the
 * caller can skip and count it.
 *
 * Parameter averaging (Polyak & Juditsky 1992, in its exponential form): with ema_decay > 0 the
 * optimizer also keeps, in double, theta_avg <- d_t theta_avg + (1 - d_t) theta after every
 * accepted step t = 1, 2, ..., where d_t = min(ema_decay, (1 + t) / (10 + t)) (TensorFlow's
 * ExponentialMovingAverage with num_updates): d_1 = 0 starts the average at the first update,
 * and the warm-up keeps the early, far-from-converged parameters from lingering in it.  The
 * average is what a finished model is used with (checkpoints store it next to the moments;
 * h5io.h); the raw parameters are what training continues from.
 */
#ifndef TRADEFLOW_OPTIM_H
#define TRADEFLOW_OPTIM_H

#include <stdint.h>

#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TF_OPTIM_ADAM, TF_OPTIM_ADAMW } tf_optim_kind;

typedef struct {
  tf_optim_kind kind;
  double beta1, beta2, eps; /* defaults 0.9, 0.999, 1e-8 */
  double weight_decay;      /* AdamW only (decoupled); 0 for Adam */
  double clip_norm;         /* global gradient-norm clipping threshold; <= 0: off */
  double ema_decay;         /* parameter averaging: decay in (0, 1); 0: off (the default) */
} tf_optim_config;

/* The defaults above, for `kind`. */
tf_optim_config tf_optim_defaults(tf_optim_kind kind);

typedef struct tf_optim tf_optim;

/* Optimizer for a slab of n parameters.  NULL on failure or invalid config (message). */
tf_optim *tf_optim_create(const tf_optim_config *cfg, int64_t n);
void tf_optim_destroy(tf_optim *o);

/* One update of `param` (n values) from `grad` with learning rate lr, then of the average (if
 * on) from the updated, rounded parameters.  Clipping scales the gradient by
 * min(1, clip_norm / (||g|| + 1e-6)), PyTorch's clip_grad_norm_ convention.  *grad_norm (if
 * not NULL) receives ||g|| before clipping.  TF_ENUMERIC if ||g|| is not finite: nothing is
 * changed. */
int tf_optim_step(tf_optim *o, tf_real *param, const tf_real *grad, double lr,
                  double *grad_norm);

/* State for checkpoints: the moment arrays (n doubles each) and the step count. */
int64_t tf_optim_size(const tf_optim *o);
int64_t tf_optim_steps(const tf_optim *o);
double *tf_optim_m(tf_optim *o);
double *tf_optim_v(tf_optim *o);
void tf_optim_set_steps(tf_optim *o, int64_t t);
/* The parameter average (n doubles, owned by the optimizer), or NULL when averaging is off.
 * Before the first step it holds zeros: tf_optim_ema_reset fills it from `param` (what a run
 * resumed from a checkpoint without an average does). */
double *tf_optim_ema(tf_optim *o);
void tf_optim_ema_reset(tf_optim *o, const tf_real *param);

/* Learning-rate schedules.  step counts from 0; total = number of steps of the run. */
typedef enum { TF_LR_CONSTANT, TF_LR_COSINE, TF_LR_ONECYCLE } tf_lr_kind;
typedef struct {
  tf_lr_kind kind;
  double lr;          /* base (peak for one-cycle) learning rate */
  double lr_min;      /* cosine: final value; one-cycle: final value */
  int64_t warmup;     /* constant/cosine: linear warm-up steps from 0 */
  double pct_start;   /* one-cycle: fraction of the run spent rising (default 0.3) */
  double div_factor;  /* one-cycle: initial lr = lr / div_factor (default 25) */
} tf_lr_schedule;

double tf_lr_at(const tf_lr_schedule *s, int64_t step, int64_t total);

#ifdef __cplusplus
}
#endif
#endif
