/* trainer.c — the caller-driven trainer: optimizer steps with exact resumption.
 *
 * Exported: tf_train_defaults, tf_trainer_create, tf_trainer_destroy, tf_trainer_resume,
 *           tf_trainer_set, tf_trainer_iterate, tf_trainer_should_stop, tf_trainer_state,
 *           tf_trainer_summary, tf_trainer_config, tf_trainer_validate, tf_trainer_save,
 *           tf_trainer_check, tf_trainer_val_nll, tf_trainer_step, tf_trainer_skipped,
 *           tf_trainer_stopped, tf_trainer_last_loss, tf_trainer_comm_seconds,
 *           tf_train_request_stop, tf_train_install_signals.
 * Collective (with several ranks): resume, set, iterate, validate, save, check, val_nll.
 * The loop that `tradeflow train` runs over these is run.c.
 *
 * Exact resumption rests on three choices: the batch of a step is a function of the step
 * (epoch permutations from named Philox streams), everything else that evolves (parameters,
 * Adam moments and count, counters) is in the checkpoint, and nothing depends on wall time.
 *
 * Over P ranks (cfg.dist) every rank is a full replica.  A step: each rank computes its loss
 * terms and gradient on its own batch and conditions; one error agreement and one small
 * rank-ordered sum give every rank the same loss, skip decision and stop request; the
 * gradient mean (tf_dist_mean) makes the update identical everywhere.  There is no per-rank
 * state to save: the global batch of step s is rows [s P B, (s + 1) P B) of the epoch order,
 * rank r taking the r-th block of B, and every stream is named by (seed, rank, step), so a
 * checkpoint resumes on any rank count.  Rank 0 alone writes checkpoints.
 */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loss.h"
#include "tradeflow/dist.h"
#include "tradeflow/error.h"
#include "tradeflow/h5io.h"
#include "tradeflow/rng.h"
#include "tradeflow/train.h"

static volatile sig_atomic_t stop_requested;

void tf_train_request_stop(void) { stop_requested = 1; }
void tf_train_clear_stop(void) { stop_requested = 0; }

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

void tf_train_install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* SLURM's --signal=USR1@T warns a job step before its time limit */
  sigaction(SIGUSR1, &sa, NULL);
}

struct tf_trainer {
  tf_train_config cfg;
  tf_dist dist;      /* copy of *cfg.dist (serial when NULL) */
  tf_real *red_work; /* scratch of the gradient mean (P > 1) */
  tf_model *model;
  tf_params *params;
  tf_dataset data;
  int conditional;
  int have_data;
  tf_loss_state *ls; /* NULL for plain NLL */
  tf_real *gbuf;     /* adaptive weighting: the boundary term's gradient */
  tf_real *live;     /* parameter averaging: the raw parameters while validation uses the
                        average */
  double *aug;       /* augment: one batch of rows in double (batch, D) */
  tf_optim *optim;
  tf_ctx *ctx;
  int64_t *train_rows, n_train; /* row indices */
  int64_t *val_rows, n_val;
  int64_t *epoch_perm, epoch;   /* visiting order of train_rows in `epoch` (-1: none yet) */
  int64_t step, skipped, consecutive, run_steps;
  int last_bad;     /* the last iterate skipped its step */
  int stop_agreed;  /* some rank was asked to stop (agreed at the last step) */
  double *sum_tmp;  /* scratch of the step's small sum: 4 P doubles */
  double comm_s;    /* wall time in the step's collectives (agreement, sums, gradient mean) */
  double last_b, last_e; /* the step's loss terms (mean over ranks) */
  double best_val, last_loss, last_val, last_gnorm;
  int resumed, stopped;
  int64_t saved_step; /* the state at this step is in cfg.checkpoint (-1: none known) */
};

tf_train_config tf_train_defaults(void) {
  tf_train_config c;
  memset(&c, 0, sizeof c);
  c.steps = 1000;
  c.batch = 256;
  c.val_fraction = 0.1;
  c.val_every = 200;
  c.log_every = 100;
  c.ckpt_every = 1000;
  c.max_nonfinite = 20;
  c.check_every = 1000;
  c.optim = tf_optim_defaults(TF_OPTIM_ADAM);
  c.optim.clip_norm = 10.0;
  c.lr.kind = TF_LR_COSINE;
  c.lr.lr = 1e-3;
  c.lr.lr_min = 1e-5;
  c.lr.pct_start = 0.3;
  c.lr.div_factor = 25;
  c.seed = 1;
  return c;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int check_config(const tf_train_config *c) {
  if (c->steps < 0 || c->batch < 1 || !(c->val_fraction >= 0 && c->val_fraction <= 0.9) ||
      c->val_every < 0 || c->log_every < 0 || c->ckpt_every < 0 || c->max_nonfinite < 1 ||
      c->max_steps_per_run < 0 || c->check_every < 0)
    return tf_error(TF_ERANGE,
                    "trainer: need steps >= 0, batch >= 1, 0 <= val_fraction <= 0.9, "
                    "val/log/checkpoint intervals >= 0, max_nonfinite >= 1, "
                    "max_steps_per_run >= 0, check_every >= 0");
  return TF_OK;
}

/* The data must suit the flow before any step runs: a NaN found at step 40000 is a lost job. */
static int check_data(const tf_trainer *t) {
  const tf_dataset *d = &t->data;
  const int D = tf_model_dim(t->model);
  if (d->d != D)
    return tf_error(TF_EINVAL, "trainer: the data have %lld columns, the flow has dimension %d",
                    (long long)d->d, D);
  for (int64_t i = 0; i < d->n * d->d; i++)
    if (!isfinite(d->x[i]))
      return tf_error(TF_ENUMERIC, "trainer: data row %lld, column %lld is %g",
                      (long long)(i / d->d), (long long)(i % d->d), d->x[i]);
  if (t->conditional) {
    if (!d->c && !(d->c0 > 0 && isfinite(d->c0)))
      return tf_error(TF_ERANGE, "trainer: the condition must be a finite c > 0, got %g", d->c0);
    for (int64_t i = 0; d->c && i < d->n; i++)
      if (!(d->c[i] > 0 && isfinite(d->c[i])))
        return tf_error(TF_ERANGE, "trainer: condition of row %lld is %g; conditions must be "
                        "finite and > 0 (they enter as log c)", (long long)i, d->c[i]);
  }
  return TF_OK;
}

tf_trainer *tf_trainer_create(const tf_train_config *cfg, tf_model *model,
                              const tf_dataset *data) {
  if (check_config(cfg) != TF_OK) return NULL;
  tf_params *params = tf_model_params(model);
  tf_trainer *t = calloc(1, sizeof *t);
  if (!t) {
    tf_error(TF_ENOMEM, "trainer: out of memory");
    return NULL;
  }
  t->cfg = *cfg;
  t->dist = cfg->dist ? *cfg->dist : tf_dist_serial();
  t->cfg.dist = &t->dist;
  t->model = model;
  t->params = params;
  t->have_data = data != NULL;
  if (data) t->data = *data;
  t->conditional = tf_model_conditional(model);
  t->epoch = -1;
  t->saved_step = -1;
  t->best_val = INFINITY;
  t->last_loss = t->last_val = t->last_gnorm = NAN;
  if (tf_loss_check(&cfg->loss, model, data != NULL) != TF_OK) goto fail;
  if (cfg->loss.kind != TF_LOSS_NLL) {
    t->ls = tf_loss_create(&cfg->loss, model, cfg->seed, &t->dist);
    t->gbuf = cfg->loss.adaptive ? malloc((size_t)tf_params_size(params) * sizeof(tf_real)) : NULL;
    if (!t->ls || (cfg->loss.adaptive && !t->gbuf)) {
      if (t->ls) tf_error(TF_ENOMEM, "trainer: out of memory");
      goto fail;
    }
  }
  if (cfg->augment) {
    const tf_physics *ph = cfg->loss.physics;
    if (!data) {
      tf_error(TF_EINVAL, "trainer: symmetry augmentation needs training data");
      goto fail;
    }
    if (!ph || !tf_physics_augment_group(ph)) {
      tf_error(TF_EUNSUP, "trainer: symmetry augmentation needs a physics module that has "
               "one; %s", ph ? tf_physics_name(ph) : "no physics module given");
      goto fail;
    }
    if (tf_physics_dim(ph) != data->d) {
      tf_error(TF_EINVAL, "trainer: the data have %lld columns, physics module %s has "
               "dimension %d", (long long)data->d, tf_physics_name(ph), tf_physics_dim(ph));
      goto fail;
    }
    t->aug = malloc((size_t)(cfg->batch * data->d) * sizeof *t->aug);
    if (!t->aug) {
      tf_error(TF_ENOMEM, "trainer: out of memory");
      goto fail;
    }
  }
  if (t->dist.size > 1) {
    const int64_t np = tf_params_size(params);
    t->red_work = malloc((size_t)tf_dist_mean_work(&t->dist, np) * sizeof(tf_real));
    t->sum_tmp = malloc((size_t)(4 * t->dist.size) * sizeof *t->sum_tmp);
    if (!t->red_work || !t->sum_tmp) {
      tf_error(TF_ENOMEM, "trainer: out of memory");
      goto fail;
    }
  }
  if (cfg->optim.ema_decay > 0 &&
      !(t->live = malloc((size_t)tf_params_size(params) * sizeof *t->live))) {
    tf_error(TF_ENOMEM, "trainer: out of memory");
    goto fail;
  }
  if (!data) {
    t->optim = tf_optim_create(&cfg->optim, tf_params_size(params));
    t->ctx = tf_ctx_create(0);
    if (!t->optim || !t->ctx) {
      if (t->optim) tf_error(TF_ENOMEM, "trainer: out of memory");
      goto fail;
    }
    return t;
  }
  if (check_data(t) != TF_OK) goto fail;
  const int64_t n = data->n;
  t->n_val = (int64_t)floor(cfg->val_fraction * (double)n);
  t->n_train = n - t->n_val;
  if (t->n_train < cfg->batch * t->dist.size) {
    tf_error(TF_EINVAL, "trainer: %lld training rows (of %lld, %.0f%% held out) are fewer than "
             "one batch of %lld%s", (long long)t->n_train, (long long)n, 100 * cfg->val_fraction,
             (long long)(cfg->batch * t->dist.size),
             t->dist.size > 1 ? " (the batch per rank times the number of ranks)" : "");
    goto fail;
  }
  int64_t *perm = malloc((size_t)n * sizeof *perm);
  t->epoch_perm = malloc((size_t)t->n_train * sizeof *t->epoch_perm);
  t->optim = tf_optim_create(&cfg->optim, tf_params_size(params));
  t->ctx = tf_ctx_create(0);
  if (!perm || !t->epoch_perm || !t->optim || !t->ctx) {
    free(perm);
    if (!t->optim) goto fail; /* its own message */
    tf_error(TF_ENOMEM, "trainer: out of memory");
    goto fail;
  }
  /* the split has its own stream (step UINT32_MAX), never met by an epoch */
  tf_rng r;
  tf_rng_init(&r, cfg->seed, 0, TF_RNG_DATA, UINT32_MAX);
  tf_rng_permutation(&r, perm, n);
  t->val_rows = perm;
  t->train_rows = perm + t->n_val;
  return t;
fail:
  tf_trainer_destroy(t);
  return NULL;
}

void tf_trainer_destroy(tf_trainer *t) {
  if (!t) return;
  free(t->val_rows);
  free(t->epoch_perm);
  tf_loss_destroy(t->ls);
  free(t->gbuf);
  free(t->live);
  free(t->aug);
  free(t->red_work);
  free(t->sum_tmp);
  tf_optim_destroy(t->optim);
  tf_ctx_destroy(t->ctx);
  free(t);
}

int64_t tf_trainer_step(const tf_trainer *t) { return t->step; }
int64_t tf_trainer_skipped(const tf_trainer *t) { return t->skipped; }
int tf_trainer_stopped(const tf_trainer *t) { return t->stopped; }
const tf_train_config *tf_trainer_config(const tf_trainer *t) { return &t->cfg; }
double tf_trainer_last_loss(const tf_trainer *t) { return t->last_loss; }
double tf_trainer_comm_seconds(const tf_trainer *t) { return t->comm_s; }

/* The replicas' parameters and optimizer moments must agree bit for bit (collective). */
int tf_trainer_check(tf_trainer *t, const char *when) {
  if (t->dist.size == 1) return TF_OK;
  const size_t np = (size_t)tf_params_size(t->params);
  const void *ptr[4] = {tf_params_values(t->params), tf_optim_m(t->optim), tf_optim_v(t->optim),
                        tf_optim_ema(t->optim)};
  const size_t len[4] = {np * sizeof(tf_real), np * sizeof(double), np * sizeof(double),
                         np * sizeof(double)};
  const char *names[4] = {"parameters", "Adam first moments", "Adam second moments",
                          "averaged parameters"};
  char what[64];
  snprintf(what, sizeof what, "%s %lld", when, (long long)t->step);
  return tf_dist_check_replicas(&t->dist, ptr[3] ? 4 : 3, ptr, len, names, what);
}

int tf_trainer_resume(tf_trainer *t, const char *checkpoint) {
  tf_checkpoint_meta m;
  tf_checkpoint_meta_init(&m);
  /* every rank reads the file (read-only opens share it); the replica check below confirms
   * that they all read the same state */
  int rc = tf_checkpoint_load(checkpoint, t->params, t->optim, &m);
  if (rc != TF_OK) goto out;
  if (m.rng_seed != t->cfg.seed) {
    rc = tf_error(TF_EINVAL, "%s: trained with seed %llu, but this run's seed is %llu; a "
                  "resumed run must keep the data split and batch order",
                  checkpoint, (unsigned long long)m.rng_seed, (unsigned long long)t->cfg.seed);
  } else if (m.step > t->cfg.steps) {
    rc = tf_error(TF_ERANGE, "%s: already at step %lld, beyond the %lld steps of this run",
                  checkpoint, (long long)m.step, (long long)t->cfg.steps);
  } else {
    t->step = m.step;
    t->skipped = m.skipped_steps;
    t->consecutive = m.consecutive_skips;
    t->best_val = m.best_val_loss;
    double v;
    if (tf_checkpoint_meta_get_f64(&m, "last_loss", &v) == TF_OK) t->last_loss = v;
    if (t->ls) rc = tf_loss_load(t->ls, &m);
    t->resumed = 1;
    /* the state on disk where this run writes is the loaded one (only if it is that file) */
    t->saved_step = t->cfg.checkpoint && !strcmp(checkpoint, t->cfg.checkpoint) ? m.step : -1;
    int64_t ranks;
    if (rc == TF_OK && t->cfg.log && tf_checkpoint_meta_get_i64(&m, "ranks", &ranks) == TF_OK &&
        ranks != t->dist.size)
      fprintf(t->cfg.log, "note: %s was written by a run on %lld rank(s), this run has %d: "
              "the global batch changes from %lld to %lld rows per step\n", checkpoint,
              (long long)ranks, t->dist.size, (long long)(ranks * t->cfg.batch),
              (long long)(t->dist.size * t->cfg.batch));
  }
out:
  tf_checkpoint_meta_clear(&m);
  rc = tf_dist_agree(&t->dist, rc);
  return rc == TF_OK ? tf_trainer_check(t, "resume at step") : rc;
}

/* Rank 0 writes, every rank learns the outcome. */
int tf_trainer_save(tf_trainer *t) {
  if (!t->cfg.checkpoint) return TF_OK;
  int rc = TF_OK;
  if (t->dist.rank == 0) {
    tf_checkpoint_meta m;
    tf_checkpoint_meta_init(&m);
    m.step = t->step;
    m.skipped_steps = t->skipped;
    m.consecutive_skips = t->consecutive;
    m.rng_seed = t->cfg.seed;
    m.best_val_loss = t->best_val;
    snprintf(m.model, sizeof m.model, "%s", t->cfg.model_name ? t->cfg.model_name : "flow");
    rc = tf_checkpoint_meta_set_config(&m, t->cfg.config_text);
    if (rc == TF_OK) rc = tf_checkpoint_meta_set_f64(&m, "last_loss", t->last_loss);
    if (rc == TF_OK) rc = tf_checkpoint_meta_set_i64(&m, "ranks", t->dist.size);
    if (rc == TF_OK && t->ls) rc = tf_loss_save(t->ls, &m);
    if (rc == TF_OK) rc = tf_checkpoint_save(t->cfg.checkpoint, t->params, t->optim, &m);
    tf_checkpoint_meta_clear(&m);
  }
  rc = tf_dist_agree(&t->dist, rc);
  if (rc == TF_OK) t->saved_step = t->step;
  return rc;
}

/* rows[0..B) of the training set for `step` on `rank`: block rank of the step's P blocks */
static const int64_t *batch_rows(tf_trainer *t, int64_t step, int rank) {
  const int64_t B = t->cfg.batch, P = t->dist.size, per_epoch = t->n_train / (B * P);
  const int64_t e = step / per_epoch, b = step % per_epoch;
  if (e != t->epoch) {
    tf_rng r;
    tf_rng_init(&r, t->cfg.seed, 0, TF_RNG_DATA, (uint32_t)e);
    tf_rng_permutation(&r, t->epoch_perm, t->n_train);
    for (int64_t i = 0; i < t->n_train; i++) t->epoch_perm[i] = t->train_rows[t->epoch_perm[i]];
    t->epoch = e;
  }
  return t->epoch_perm + (b * P + rank) * B;
}

/* Training batch of `step` with augmentation: the rows' random symmetry images, drawn in
 * double before the conversion to the network precision.  The stream depends only on the
 * seed, the rank and the step, so resumed runs see the same images. */
static int augment_batch(tf_trainer *t, const int64_t *rows, int64_t step, int rank,
                         tf_tensor *x) {
  const int64_t B = t->cfg.batch, D = t->data.d;
  for (int64_t i = 0; i < B; i++)
    memcpy(t->aug + i * D, t->data.x + rows[i] * D, (size_t)D * sizeof *t->aug);
  tf_rng r;
  tf_rng_init(&r, t->cfg.seed, (uint32_t)rank, TF_RNG_AUGMENT, (uint32_t)step);
  int rc = tf_physics_augment(t->cfg.loss.physics, B, t->aug, &r);
  if (rc != TF_OK) return rc;
  for (int64_t i = 0; i < B * D; i++) x->data[i] = (tf_real)t->aug[i];
  return TF_OK;
}

/* Collective over the ranks: each evaluates its share of the rows, the sums are combined. */
double tf_trainer_val_nll(tf_trainer *t) {
  if (!t->have_data) return NAN;
  const int64_t *rows = t->n_val ? t->val_rows : t->train_rows;
  const int64_t n = t->n_val ? t->n_val : t->n_train;
  int64_t lo, hi;
  tf_dist_share(n, t->dist.rank, t->dist.size, &lo, &hi);
  double *lp = malloc((size_t)(hi - lo + 1) * sizeof *lp);
  double v[2] = {0, 0}; /* sum of -log p, failures */
  if (!lp || tf_dataset_log_prob(t->model, t->ctx, &t->data, rows + lo, hi - lo, lp) != TF_OK)
    v[1] = 1;
  else
    for (int64_t i = 0; i < hi - lo; i++) v[0] -= lp[i];
  free(lp);
  if (tf_dist_sum(&t->dist, v, 2, NULL) != TF_OK || v[1] > 0) return NAN;
  return v[0] / (double)n;
}

/* With parameter averaging the validation loss is that of the average, the weights the
 * finished model is used with; the raw parameters go back afterwards, bit for bit. */
double tf_trainer_validate(tf_trainer *t) {
  const double *avg = tf_optim_ema(t->optim);
  tf_real *w = tf_params_values(t->params);
  const int64_t n = tf_params_size(t->params);
  if (avg) {
    memcpy(t->live, w, (size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = (tf_real)avg[i];
  }
  t->last_val = tf_trainer_val_nll(t);
  if (avg) memcpy(w, t->live, (size_t)n * sizeof *w);
  if (t->last_val < t->best_val) t->best_val = t->last_val;
  return t->last_val;
}

/* This rank's objective and its gradient in the parameter gradient slab: *L its value, *lb
 * and *le the terms (NaN when absent).  With adaptive weighting the slab holds the extra
 * term's gradient and t->gbuf the boundary term's; mix_adaptive() combines them once the
 * ranks' gradients are averaged.  Nothing here is collective. */
static int objective(tf_trainer *t, tf_tensor *x, tf_tensor *c, double *L, double *lb,
                     double *le, double *lam) {
  tf_ctx *ctx = t->ctx;
  *lb = *le = NAN;
  *lam = 1;
  if (!t->ls) {
    const tf_model_step st = {t->cfg.seed, t->dist.rank, t->step};
    tf_tensor *loss = tf_model_train_term(t->model, ctx, x, c, &st);
    if (!loss) return tf_error(tf_ctx_status(ctx), "step %lld: %s", (long long)t->step,
                               tf_errmsg());
    *L = (double)loss->data[0];
    return isfinite(*L) ? tf_params_backward(t->params, ctx, loss) : TF_OK;
  }
  tf_tensor *B, *E;
  int rc = tf_loss_terms(t->ls, ctx, t->step, x, c, &B, &E, lam);
  if (rc != TF_OK) return tf_error(rc, "step %lld: %s", (long long)t->step, tf_errmsg());
  *lb = (double)B->data[0];
  *le = E ? (double)E->data[0] : NAN;
  if (t->cfg.loss.adaptive && E) {
    /* two backward passes over the same tape: the terms' gradients, mixed later */
    *L = *lb + *lam * *le;
    if (!isfinite(*L)) return TF_OK;
    rc = tf_params_backward(t->params, ctx, B);
    if (rc != TF_OK) return rc;
    memcpy(t->gbuf, tf_params_grads(t->params),
           (size_t)tf_params_size(t->params) * sizeof *t->gbuf);
    return tf_params_backward(t->params, ctx, E);
  }
  tf_tensor *total = E && *lam > 0 ? tf_add(ctx, B, tf_scale(ctx, E, *lam)) : B;
  if (!total) return tf_error(tf_ctx_status(ctx), "step %lld: %s", (long long)t->step,
                              tf_errmsg());
  *L = (double)total->data[0];
  return isfinite(*L) ? tf_params_backward(t->params, ctx, total) : TF_OK;
}

/* Adaptive weighting after the gradient mean: g <- g_b + lambda_eff g_e, lambda_eff from the
 * ratio of the averaged terms' norms (the same on every rank). */
static double mix_adaptive(tf_trainer *t, double lam) {
  const int64_t n = tf_params_size(t->params);
  tf_real *g = tf_params_grads(t->params);
  double sb = 0;
  for (int64_t i = 0; i < n; i++) sb += (double)t->gbuf[i] * (double)t->gbuf[i];
  const double lam_eff = lam * tf_loss_adapt(t->ls, sqrt(sb), tf_params_grad_norm(t->params));
  for (int64_t i = 0; i < n; i++) g[i] = t->gbuf[i] + (tf_real)lam_eff * g[i];
  return lam_eff;
}

/* Every parameter finite after the step's update (the same on every rank: the update is). */
static int check_update(tf_trainer *t, double lr, double gnorm) {
  const tf_params *p = t->params;
  for (int i = 0; i < tf_params_count(p); i++) {
    const tf_tensor *w = tf_params_tensor(p, i);
    for (int64_t k = 0; k < w->n; k++)
      if (!isfinite(w->data[k]))
        return tf_error(TF_ENUMERIC, "step %lld: the update made parameter %s[%lld] = %g (learning "
                        "rate %.3g, gradient norm %.3g); stopping without writing a checkpoint%s%s",
                        (long long)t->step + 1, tf_params_name(p, i), (long long)k,
                        (double)w->data[k], lr, gnorm,
                        t->cfg.checkpoint ? "; the last one is intact: " : "",
                        t->cfg.checkpoint ? t->cfg.checkpoint : "");
  }
  return TF_OK;
}

/* One optimizer step (collective).  *bad = 1 when it was skipped for a non-finite loss or
 * gradient on any rank. */
static int train_step(tf_trainer *t, int *bad) {
  int rc = TF_OK;
  if (t->ls) {
    const int64_t le = t->cfg.log_every;
    rc = tf_loss_prepare(t->ls, t->ctx, t->step, le && (t->step + 1) % le == 0);
    if (rc != TF_OK) return tf_error(rc, "step %lld: %s", (long long)t->step, tf_errmsg());
  }
  tf_ctx_reset(t->ctx);
  tf_tensor *x = NULL, *c = NULL;
  if (t->have_data && (!t->ls || tf_loss_uses_data(&t->cfg.loss))) {
    const int64_t *rows = batch_rows(t, t->step, t->dist.rank);
    tf_dataset_gather(t->ctx, &t->data, t->conditional, rows, 0, t->cfg.batch, &x, &c);
    if (x && t->aug) rc = augment_batch(t, rows, t->step, t->dist.rank, x);
  }
  double L = NAN, lb = NAN, le = NAN, lam = 1;
  if (rc == TF_OK) rc = objective(t, x, c, &L, &lb, &le, &lam);
  /* the step's one agreement: errors, then the ranks' losses and stop requests */
  const double tc0 = now_s();
  rc = tf_dist_agree(&t->dist, rc);
  if (rc != TF_OK) return rc;
  double v[4] = {L, lb, le, stop_requested ? 1.0 : 0.0};
  rc = tf_dist_sum(&t->dist, v, 4, t->sum_tmp);
  if (rc != TF_OK) return rc;
  const double P = t->dist.size;
  L = v[0] / P;
  t->last_b = v[1] / P;
  t->last_e = v[2] / P;
  if (v[3] > 0) t->stop_agreed = 1;
  *bad = !isfinite(L);
  if (*bad) return TF_OK;
  tf_real *g = tf_params_grads(t->params);
  const int64_t np = tf_params_size(t->params);
  rc = tf_dist_mean(&t->dist, g, np, t->red_work);
  const int adaptive = t->ls && t->cfg.loss.adaptive && !isnan(t->last_e);
  if (rc == TF_OK && adaptive) rc = tf_dist_mean(&t->dist, t->gbuf, np, t->red_work);
  t->comm_s += now_s() - tc0;
  if (rc != TF_OK) return rc;
  if (t->ls) {
    const double lam_eff = adaptive ? mix_adaptive(t, lam) : lam;
    if (adaptive) L = t->last_b + lam_eff * t->last_e;
    tf_loss_record(t->ls, t->last_b, t->last_e, lam_eff);
  }
  const double lr = tf_lr_at(&t->cfg.lr, t->step, t->cfg.steps);
  double gn;
  rc = tf_optim_step(t->optim, tf_params_values(t->params), g, lr, &gn);
  if (rc == TF_ENUMERIC) {
    *bad = 1;
  } else if (rc != TF_OK) {
    return rc;
  } else {
    t->last_loss = L;
    t->last_gnorm = gn;
    /* A finite gradient can still give a non-finite update (a corrupt second moment, an
     * overflow): stop before such parameters reach a checkpoint. */
    rc = check_update(t, lr, gn);
    if (rc != TF_OK) return rc;
  }
  return TF_OK;
}

int tf_trainer_set(tf_trainer *t) {
  t->stopped = 0;
  t->run_steps = 0;
  t->stop_agreed = 0;
  if (!t->resumed && t->step == 0 && t->have_data &&
      tf_model_type_of(t->model)->data_init) {
    /* every replica initialises from rank 0's first batch, so they start equal */
    tf_ctx_reset(t->ctx);
    tf_tensor *x, *c;
    const int64_t *rows = batch_rows(t, 0, 0);
    tf_dataset_gather(t->ctx, &t->data, t->conditional, rows, 0, t->cfg.batch, &x, &c);
    int rc = x && t->aug ? augment_batch(t, rows, 0, 0, x) : TF_OK;
    if (rc == TF_OK) rc = tf_model_data_init(t->model, t->ctx, x, c);
    rc = tf_dist_agree(&t->dist, rc);
    if (rc != TF_OK) return rc;
  }
  t->resumed = 1; /* a second run continues */
  /* until a first step is accepted the average is the parameters (ActNorm-initialised), not
   * the zeros it was created with: a run of 0 steps, or whose steps were all skipped, saves
   * and validates those */
  if (tf_optim_steps(t->optim) == 0) tf_optim_ema_reset(t->optim, tf_params_values(t->params));
  return TF_OK;
}

int tf_trainer_should_stop(tf_trainer *t) {
  /* a signal reaches the ranks at different times: with several ranks only the request
   * agreed at the last step counts, so that all stop after the same step */
  const int stop = t->stop_agreed || (t->dist.size == 1 && stop_requested);
  const int64_t lim = t->cfg.max_steps_per_run;
  t->stopped = stop || (lim && t->run_steps >= lim);
  return t->stopped;
}

int tf_trainer_iterate(tf_trainer *t) {
  if (t->step >= t->cfg.steps)
    return tf_error(TF_EINVAL, "trainer: already at step %lld of %lld", (long long)t->step,
                    (long long)t->cfg.steps);
  t->stopped = 0;
  int bad = 0;
  int rc = train_step(t, &bad);
  if (rc != TF_OK) return rc;
  t->step++;
  t->run_steps++;
  t->last_bad = bad;
  if (!bad) {
    t->consecutive = 0;
    return TF_OK;
  }
  t->skipped++;
  if (++t->consecutive < t->cfg.max_nonfinite) return TF_OK;
  return tf_error(TF_ENUMERIC,
                  "stopping at step %lld: %lld consecutive steps with a non-finite loss or "
                  "gradient (%lld in total); parameters are those of the last good step; %s%s",
                  (long long)t->step, (long long)t->consecutive, (long long)t->skipped,
                  t->cfg.checkpoint ? "the last checkpoint is intact: " : "no checkpoint",
                  t->cfg.checkpoint ? t->cfg.checkpoint : "");
}

void tf_trainer_state(const tf_trainer *t, tf_trainer_info *info) {
  memset(info, 0, sizeof *info);
  info->step = t->step;
  info->steps = t->cfg.steps;
  info->run_steps = t->run_steps;
  info->skipped = t->skipped;
  info->consecutive = t->consecutive;
  info->last_skipped = t->last_bad;
  info->loss = t->last_loss;
  info->grad_norm = t->last_gnorm;
  info->lr = tf_lr_at(&t->cfg.lr, t->step > 0 ? t->step - 1 : 0, t->cfg.steps);
  info->val = t->last_val;
  info->best_val = t->best_val;
  info->global_batch = t->cfg.batch * t->dist.size;
  info->has_data = t->have_data;
  info->averaged = tf_optim_ema(t->optim) != NULL;
  info->saved_step = t->saved_step;
}

void tf_trainer_summary(const tf_trainer *t, char *buf, size_t len) {
  if (len) buf[0] = 0;
  if (t->ls) tf_loss_summary(t->ls, buf, len);
}
