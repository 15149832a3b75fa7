/* tradeflow — the training loop: minibatches, validation, checkpoints, resumption.
 *
 * A trainer drives one flow over a data set of samples x_i with conditions c_i:
 *   - validation split: a fixed random fraction of the rows (seeded, independent of the step),
 *     the rest is the training set;
 *   - minibatches: epoch e visits the training rows in the order of a permutation drawn from
 *     the stream (seed, rank, TF_RNG_DATA, e); a step's batch is therefore a function of the
 *     step number alone, which is what makes resumption exact;
 *   - loss: NLL = -mean log p(x | c) (nats per sample);
 *   - optimizer step with the configured learning-rate schedule; a step whose loss or gradient
 *     is not finite changes nothing, is counted, and `max_nonfinite` of them in a row stop the
 *     run (TF_ENUMERIC) without writing a checkpoint, so the last good one stays intact;
 *   - validation NLL every `val_every` steps and at the end; the best is remembered;
 *   - checkpoints (h5io.h) every `ckpt_every` steps and at the end, written atomically;
 *   - a stop request (SIGTERM or SIGINT, e.g. a SLURM time limit, or `max_steps_per_run`)
 *     ends the run at the next step boundary with a checkpoint.
 * Resumption: tf_trainer_resume() loads parameters, Adam moments, the step and the counters;
 * the continued run is bit-identical to one that never stopped (same build, same data).
 *
 * Progress goes to `log` (one line per `log_every` steps: step, loss, validation loss,
 * learning rate, gradient norm, throughput, ETA); when `log` is a terminal, a live bar is
 * drawn on it between those lines.
 *
 * Ownership: the trainer borrows the flow, its params and the data set (they must outlive it)
 * and owns its optimizer, context and scratch.
 */
#ifndef TRADEFLOW_TRAIN_H
#define TRADEFLOW_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "tradeflow/flow.h"
#include "tradeflow/optim.h"
#include "tradeflow/params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Samples in memory: x (n, d) row-major and their conditions c (n), or the one condition c0
 * for all rows when c is NULL (ignored by an unconditional flow). */
typedef struct {
  int64_t n, d;
  const double *x;
  const double *c;
  double c0;
} tf_dataset;

/* log p(x_i | c_i) (nats) of rows[0..n) of a data set (rows NULL: rows 0..n-1) into
 * log_p[0..n), evaluated in chunks with recording off; resets ctx.  A non-finite density is
 * returned as is (the caller decides); TF_OK or the context's error. */
int tf_dataset_log_prob(tf_flow *flow, tf_ctx *ctx, const tf_dataset *data, const int64_t *rows,
                        int64_t n, double *log_p);

typedef struct {
  int64_t steps;            /* total optimizer steps of the run (resumes count from the file) */
  int64_t batch;            /* minibatch size */
  double val_fraction;      /* fraction of rows held out, [0, 0.9]; 0: no validation */
  int64_t val_every;        /* validation NLL every this many steps; 0: only at the end */
  int64_t log_every;        /* progress line every this many steps; 0: none */
  int64_t ckpt_every;       /* checkpoint every this many steps; 0: only at the end */
  int64_t max_nonfinite;    /* consecutive non-finite steps that stop the run (>= 1) */
  int64_t max_steps_per_run;/* stop (with a checkpoint) after this many steps; 0: no limit */
  tf_optim_config optim;
  tf_lr_schedule lr;
  uint64_t seed;            /* data split and batch order */
  const char *checkpoint;   /* checkpoint path, or NULL for none */
  const char *config_text;  /* stored in checkpoints (NULL: "") */
  const char *model_name;   /* stored in checkpoints (NULL: "flow") */
  FILE *log;                /* progress (NULL: silent) */
} tf_train_config;

/* Defaults: 1000 steps, batch 256, 10% validation, Adam lr 1e-3 cosine to 1e-5, clip 10,
 * validation every 200 steps, log every 100, checkpoint every 1000, stop after 20
 * consecutive non-finite steps. */
tf_train_config tf_train_defaults(void);

typedef struct tf_trainer tf_trainer;

/* Checks the data against the flow (dimension, finite values, positive conditions for a
 * conditional flow, enough rows for one batch) and sets up the split.  NULL on error. */
tf_trainer *tf_trainer_create(const tf_train_config *cfg, tf_flow *flow, tf_params *params,
                              const tf_dataset *data);
void tf_trainer_destroy(tf_trainer *t); /* NULL is harmless */

/* Continue from a checkpoint of the same architecture (parameters, moments, step, counters,
 * best validation loss).  Without it, a run starts at step 0 with ActNorm data
 * initialisation on the first batch. */
int tf_trainer_resume(tf_trainer *t, const char *checkpoint);

/* Train until cfg.steps (or a stop request).  TF_OK when the run ended normally or was asked
 * to stop (tf_trainer_stopped tells which); TF_ENUMERIC after max_nonfinite bad steps in a
 * row; other codes for I/O errors. */
int tf_trainer_run(tf_trainer *t);

/* Mean NLL (nats per sample) of the validation rows (or of all rows without a split). */
double tf_trainer_val_nll(tf_trainer *t);

int64_t tf_trainer_step(const tf_trainer *t);
int64_t tf_trainer_skipped(const tf_trainer *t);  /* non-finite steps in total */
int tf_trainer_stopped(const tf_trainer *t);      /* 1 if the last run ended on a stop request */
double tf_trainer_last_loss(const tf_trainer *t); /* training loss of the last good step */

/* Ask every running trainer to stop at the next step boundary (async-signal-safe: this is
 * what the SIGTERM/SIGINT handler calls).  tf_train_install_signals() installs that handler. */
void tf_train_request_stop(void);
void tf_train_install_signals(void);

#ifdef __cplusplus
}
#endif
#endif
