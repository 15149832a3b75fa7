/* optim.c — Adam / AdamW with global-norm clipping, and learning-rate schedules.
 * Exported: tf_optim_defaults, tf_optim_create/destroy/step/size/steps/m/v/set_steps,
 *           tf_optim_ema, tf_optim_ema_reset, tf_lr_at. */
#include <math.h>
#include <stdlib.h>

#include "tradeflow/error.h"
#include "tradeflow/optim.h"

struct tf_optim {
  tf_optim_config cfg;
  int64_t n, t;
  double *m, *v;
  double *ema; /* NULL: no averaging */
};

tf_optim_config tf_optim_defaults(tf_optim_kind kind) {
  tf_optim_config c = {kind, 0.9, 0.999, 1e-8, kind == TF_OPTIM_ADAMW ? 0.01 : 0.0, 0.0, 0.0};
  return c;
}

tf_optim *tf_optim_create(const tf_optim_config *cfg, int64_t n) {
  if (!(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1) ||
      !(cfg->eps > 0) || !(cfg->weight_decay >= 0) ||
      !(cfg->ema_decay >= 0 && cfg->ema_decay < 1) || n < 0) {
    tf_error(TF_ERANGE,
             "optimizer: need 0 <= beta1, beta2 < 1, eps > 0, weight_decay >= 0, "
             "0 <= ema_decay < 1 (got %g, %g, %g, %g, %g)",
             cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, cfg->ema_decay);
    return NULL;
  }
  tf_optim *o = calloc(1, sizeof *o);
  if (o) {
    o->m = calloc((size_t)(n ? n : 1), sizeof *o->m);
    o->v = calloc((size_t)(n ? n : 1), sizeof *o->v);
    if (cfg->ema_decay > 0) o->ema = calloc((size_t)(n ? n : 1), sizeof *o->ema);
  }
  if (!o || !o->m || !o->v || (cfg->ema_decay > 0 && !o->ema)) {
    tf_optim_destroy(o);
    tf_error(TF_ENOMEM, "optimizer: cannot allocate moments for %lld parameters", (long long)n);
    return NULL;
  }
  o->cfg = *cfg;
  o->n = n;
  return o;
}

void tf_optim_destroy(tf_optim *o) {
  if (!o) return;
  free(o->m);
  free(o->v);
  free(o->ema);
  free(o);
}

int tf_optim_step(tf_optim *o, tf_real *param, const tf_real *grad, double lr,
                  double *grad_norm) {
  double ss = 0;
  for (int64_t i = 0; i < o->n; i++) ss += (double)grad[i] * (double)grad[i];
  const double gn = sqrt(ss);
  if (grad_norm) *grad_norm = gn;
  if (!isfinite(gn))
    return tf_error(TF_ENUMERIC, "optimizer: gradient norm is %g; step refused", gn);
  /* torch.nn.utils.clip_grad_norm_'s convention, so that settings carry over */
  double scale = o->cfg.clip_norm > 0 ? o->cfg.clip_norm / (gn + 1e-6) : 1.0;
  if (scale > 1.0) scale = 1.0;
  o->t++;
  const double b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
  const double c1 = 1 - pow(b1, (double)o->t), c2 = 1 - pow(b2, (double)o->t);
  const double decay = o->cfg.kind == TF_OPTIM_ADAMW ? lr * o->cfg.weight_decay : 0.0;
  double *restrict m = o->m, *restrict v = o->v;
  for (int64_t i = 0; i < o->n; i++) {
    const double g = scale * (double)grad[i];
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    double th = (double)param[i];
    th -= decay * th;
    th -= lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps);
    param[i] = (tf_real)th;
  }
  if (o->ema) {
    /* d_1 = 0: the average starts at the first updated parameters */
    const double warm = (1.0 + (double)o->t) / (10.0 + (double)o->t);
    const double d = o->t == 1 ? 0.0 : warm < o->cfg.ema_decay ? warm : o->cfg.ema_decay;
    double *restrict e = o->ema;
    for (int64_t i = 0; i < o->n; i++) e[i] = d * e[i] + (1 - d) * (double)param[i];
  }
  return TF_OK;
}

int64_t tf_optim_size(const tf_optim *o) { return o->n; }
int64_t tf_optim_steps(const tf_optim *o) { return o->t; }
double *tf_optim_m(tf_optim *o) { return o->m; }
double *tf_optim_v(tf_optim *o) { return o->v; }
void tf_optim_set_steps(tf_optim *o, int64_t t) { o->t = t; }
double *tf_optim_ema(tf_optim *o) { return o->ema; }

void tf_optim_ema_reset(tf_optim *o, const tf_real *param) {
  for (int64_t i = 0; o->ema && i < o->n; i++) o->ema[i] = (double)param[i];
}

double tf_lr_at(const tf_lr_schedule *s, int64_t step, int64_t total) {
  const double pi = 3.141592653589793;
  if (total < 1) total = 1;
  if (step < 0) step = 0;
  if (step >= total) step = total - 1;
  switch (s->kind) {
    case TF_LR_CONSTANT:
      if (s->warmup > 0 && step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
      return s->lr;
    case TF_LR_COSINE: {
      if (s->warmup > 0 && step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
      const int64_t span = total - s->warmup;
      const double f = span > 1 ? (double)(step - s->warmup) / (double)(span - 1) : 1.0;
      return s->lr_min + (s->lr - s->lr_min) * 0.5 * (1 + cos(pi * f));
    }
    case TF_LR_ONECYCLE: {
      /* cosine rise from lr/div to lr over pct_start of the run, cosine fall to lr_min */
      const double pct = s->pct_start > 0 && s->pct_start < 1 ? s->pct_start : 0.3;
      const double div = s->div_factor > 0 ? s->div_factor : 25.0;
      const double lo = s->lr / div;
      const double rise = pct * (double)(total - 1);
      const double x = (double)step;
      if (x <= rise && rise > 0) return lo + (s->lr - lo) * 0.5 * (1 - cos(pi * x / rise));
      const double fall = (double)(total - 1) - rise;
      const double f = fall > 0 ? (x - rise) / fall : 1.0;
      return s->lr_min + (s->lr - s->lr_min) * 0.5 * (1 + cos(pi * f));
    }
  }
  return s->lr;
}
