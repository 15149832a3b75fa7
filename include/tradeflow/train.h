/* tradeflow — training: minibatches, validation, checkpoints, resumption.
 *
 * The trainer has the shape of GSL's iterative solvers: create, set (or resume), iterate,
 * state, destroy.  The caller drives the loop and owns logging, validation and checkpoints
 * (tf_trainer_validate, tf_trainer_save are there for it to call), so a command line, a test,
 * an MPI job or a loop over two networks with two trainers can each drive it their way.
 * tf_trainer_run is one such caller: the loop of `tradeflow train` (progress lines,
 * validation every val_every steps, checkpoints every ckpt_every, stop requests), written
 * with the public calls below only.
 *
 * A trainer drives one model (model.h, any family) over a data set of samples x_i with
 * conditions c_i:
 *   - validation split: a fixed random fraction of the rows (seeded, independent of the step),
 *     the rest is the training set;
 *   - minibatches: epoch e visits the training rows in the order of a permutation drawn from
 *     the stream (seed, rank, TF_RNG_DATA, e); a step's batch is therefore a function of the
 *     step number alone, which is what makes resumption exact;
 *   - loss: the model family's training term (tf_model_train_term: NLL = -mean log p(x | c),
 *     nats per sample, for a family without its own), or one of the losses below;
 *   - optimizer step with the configured learning-rate schedule; a step whose loss or gradient
 *     is not finite changes nothing, is counted, and `max_nonfinite` of them in a row stop the
 *     run (TF_ENUMERIC) without writing a checkpoint, so the last good one stays intact;
 *   - validation NLL every `val_every` steps and at the end; the best is remembered; with
 *     parameter averaging (cfg.optim.ema_decay, optim.h) it is the NLL of the average, the
 *     weights the CLI's inference commands use, while training continues from the raw ones;
 *   - checkpoints (h5io.h) every `ckpt_every` steps and at the end, written atomically;
 *   - a stop request (SIGTERM or SIGINT, e.g. a SLURM time limit, or `max_steps_per_run`)
 *     ends the run at the next step boundary with a checkpoint.
 * Resumption: tf_trainer_resume() loads parameters, Adam moments, the step and the counters;
 * the continued run is bit-identical to one that never stopped (same build, same data).
 *
 * Several ranks (cfg.dist, DESIGN.md section 6; docs/MPI.md): every rank holds a full replica
 * of flow, parameters and optimizer and the same data set; a step's global batch is P blocks
 * of `batch` rows, one per rank, its conditions are stratified over the ranks (loss.c), and
 * the gradients are averaged (bit-identically on every rank) before the update.  Then
 * tf_trainer_create is local, but tf_trainer_resume, tf_trainer_run and tf_trainer_val_nll
 * are collective: every rank calls them, and an error on any rank is returned on all of them
 * with the failing rank's message.  Rank 0 writes the checkpoints; every rank reads one on
 * resume, which works on any rank count.  Give `log` on one rank only.
 * For a fixed seed and rank count two runs are bit-identical; with one rank a run is the
 * one-process run.
 *
 * Progress goes to `log` (one line per `log_every` steps: step, loss, validation loss,
 * learning rate, gradient norm, throughput, ETA); when `log` is a terminal, a live bar is
 * drawn on it between those lines.
 *
 * Ownership: the trainer borrows the model and the data set (they must outlive it) and owns
 * its optimizer, context and scratch.
 */
#ifndef TRADEFLOW_TRAIN_H
#define TRADEFLOW_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "tradeflow/dist.h"
#include "tradeflow/model.h"
#include "tradeflow/optim.h"
#include "tradeflow/params.h"
#include "tradeflow/physics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- losses (DESIGN.md section 4) ------------------------------------------------------------
 * Notation: E(x, c) = -log q(x | c) from the physics module, A = dE/dc.
 *   NLL          -mean log p(x | c) over the data (the boundary term of most losses).
 *   TRADE        boundary + lambda(step) * mean penalty(r), r(x, c) = d/dc log p(x | c) + A(x, c)
 *                - <A>_c, d/dc log p by forward mode at fixed x:
 *     grid       c on grid_points log-spaced values in [c_min, c_max] plus c0; every `refresh`
 *                steps, `grid_samples` flow samples per grid point give <A>_c by self-
 *                normalised importance sampling (exponentially averaged with weight `ema` on the
 *                old value), the Kish ESS and the running residual loss L_k of the point.  Each
 *                step draws `points` evaluation points x ~ p(.|c_k) (detached), the grid point k
 *                with probability ∝ exp(-causality * S_k), S_k = sum of L_j over the points
 *                between c0 and c_k (c0 included, c_k not).  With `offpolicy` f > 0 a
 *                fraction f of the points (each independently) is drawn instead at a second
 *                grid point k' from the same weights, x ~ p(.|c_k'), and still evaluated at
 *                c_k: the identity holds for every x, and on-policy points alone leave
 *                unpenalised the regions that p(.|c_k) wrongly leaves empty.  For the same
 *                reason `augment` replaces every point by a random symmetry image of the
 *                physics module (tf_physics_augment) and `noise` sigma then adds N(0, sigma^2)
 *                to each coordinate (units of x), as the reference implementation of TRADE
 *                does on the lattice (0.38 there);
 *     continuous `groups` conditions per step drawn log-uniformly from a range that widens
 *                linearly in log c from c0 to [c_min, c_max] over `widen_steps`; evaluation
 *                points (points / groups per condition) are flow samples at c0 (or data rows
 *                at c0) reweighted to c: weights ω ∝ q(x | c) / p(x | c0) (data: / q(x | c0)),
 *                <A>_c = sum ω A, loss = sum ω penalty(r).
 *     boundary   NLL on the data at c0, or reverse KL at c0 with `boundary_batch` samples.
 *     energy_free  no physics: q(x | c) = p(x | c0)^(c0 / c) (c a temperature) or
 *                p(x | c0)^(c / c0) (c an inverse temperature), p the flow itself, detached.
 *     lambda     0 for `lambda_warmup` steps, then a cosine ramp to `lambda` over `lambda_ramp`
 *                steps; `adaptive` multiplies it by a running average of |g_boundary|/|g_trade|.
 *   REVERSE_KL   mean[log p(x | c) + E(x, c)], x = g(z; c), c log-uniform in [c_min, c_max],
 *                `points` samples per step; no data.
 *   REWEIGHT     NLL at c0 plus, for `groups` conditions c log-uniform in [c_min, c_max], the
 *                NLL of the batch (split into groups) reweighted from its own c to c by
 *                self-normalised weights ∝ q(x | c) / q(x | c_i).
 * Penalties: SQUARE r^2; HUBER r^2 / 2 for |r| < delta, delta (|r| - delta / 2) beyond; with
 * log_residual (the default) they apply to c r, the residual of the identity in log c: the same
 * fixed point, but low-c points no longer dominate the loss by their 1/c^2 scale. */
typedef enum { TF_LOSS_NLL = 0, TF_LOSS_TRADE, TF_LOSS_REVERSE_KL, TF_LOSS_REWEIGHT } tf_loss_kind;
typedef enum { TF_TRADE_GRID = 0, TF_TRADE_CONTINUOUS = 1 } tf_trade_variant;
typedef enum { TF_BOUNDARY_NLL = 0, TF_BOUNDARY_RKL = 1 } tf_boundary_kind;
typedef enum { TF_PENALTY_SQUARE = 0, TF_PENALTY_HUBER = 1 } tf_penalty_kind;

typedef struct {
  int kind;                  /* tf_loss_kind */
  const tf_physics *physics; /* borrowed; needed except for NLL and energy-free TRADE */
  double c_min, c_max, c0;   /* condition range and boundary value, 0 < c_min <= c0 <= c_max */
  int boundary;              /* tf_boundary_kind (TRADE) */
  int64_t boundary_batch;    /* reverse-KL samples at c0 per step */
  int variant;               /* tf_trade_variant */
  int grid_points;           /* K >= 2 (c0 is added when it is not among them) */
  int64_t grid_samples;      /* flow samples per grid point and refresh */
  int64_t refresh;           /* steps between refreshes of <A>_c, ESS and L_k */
  double ema;                /* weight of the old <A>_c, [0, 1) */
  double causality;          /* epsilon >= 0 of the causality weights; 0: uniform */
  double offpolicy;          /* grid: fraction in [0, 1] of evaluation points sampled at
                                another grid point (0: all at their own, the default) */
  double noise;              /* grid: sd of Gaussian noise added to the evaluation points (0) */
  int augment;               /* grid: evaluation points replaced by symmetry images (0) */
  int64_t points;            /* TRADE evaluation points / reverse-KL samples per step */
  int64_t groups;            /* conditions per step (continuous, reweight) */
  int64_t widen_steps;       /* continuous: steps until the full range is reached */
  int continuous_data;       /* continuous: evaluation points from the data (1) or flow (0) */
  int log_residual;          /* 1: penalise c r = d/dlog c log p + c (A - <A>_c), the residual
                                of the same identity in log c (scale-free across the range) */
  int penalty;               /* tf_penalty_kind */
  double huber_delta;
  double lambda;
  int64_t lambda_warmup, lambda_ramp;
  int adaptive;
  int energy_free;
  int energy_free_inverse;   /* energy_free: c is an inverse temperature (1) or temperature */
} tf_loss_config;

/* NLL; TRADE settings: grid of 16 points, 512 samples, refresh 10, ema 0.9, causality 1,
 * offpolicy 0, noise 0, augment 0,
 * 256 points, 4 groups, widen over 1000 steps, squared penalty (Huber delta 1), lambda 1 after
 * 200 warm-up steps ramped over 500, reverse-KL boundary batch 256. */
tf_loss_config tf_loss_defaults(void);

/* 1 if the loss trains on data (NLL, NLL boundary, reweighting, data-sourced continuous). */
int tf_loss_uses_data(const tf_loss_config *cfg);

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
  tf_loss_config loss;      /* what is minimised (default: NLL on the data) */
  int augment;              /* 1: every training minibatch is replaced by random symmetry
                               images of its rows (tf_physics_augment of loss.physics, a
                               stream keyed by seed, rank and step); validation rows are not */
  const tf_dist *dist;      /* the ranks that train this model together (borrowed, copied at
                               create; NULL: this process alone).  batch is per rank */
  int64_t check_every;      /* with several ranks: verify every this many steps (and at the
                               end and after a resume) that all replicas hold bit-identical
                               parameters and moments; 0: only at the end and on resume */
} tf_train_config;

/* Defaults: 1000 steps, batch 256, 10% validation, Adam lr 1e-3 cosine to 1e-5, clip 10,
 * validation every 200 steps, log every 100, checkpoint every 1000, stop after 20
 * consecutive non-finite steps, replica check every 1000 steps, serial. */
tf_train_config tf_train_defaults(void);

typedef struct tf_trainer tf_trainer;

/* Checks the data against the model (dimension, finite values, positive conditions for a
 * conditional model, enough rows for one batch), the loss against the model's family
 * (tf_model_require: TRADE needs d/dc log p) and sets up the split.  `data` may be NULL for
 * losses that need none (reverse KL; TRADE with a reverse-KL boundary): there is then no
 * validation NLL.  NULL on error. */
tf_trainer *tf_trainer_create(const tf_train_config *cfg, tf_model *model,
                              const tf_dataset *data);
void tf_trainer_destroy(tf_trainer *t); /* NULL is harmless */

/* Continue from a checkpoint of the same architecture (parameters, moments, step, counters,
 * best validation loss).  Collective. */
int tf_trainer_resume(tf_trainer *t, const char *checkpoint);

/* Ready the trainer for a run of iterations (collective): on a fresh trainer at step 0 the
 * model's data-dependent initialisation on rank 0's first batch (ActNorm), and the parameter
 * average starts as the parameters; a resumed or already run trainer just continues.  Resets
 * the run's step count (tf_trainer_info.run_steps) and stop state. */
int tf_trainer_set(tf_trainer *t);

/* One optimizer step (collective): TF_OK when it was taken or skipped for a non-finite loss
 * or gradient on some rank (tf_trainer_info.last_skipped); TF_ENUMERIC once max_nonfinite
 * steps in a row were skipped (parameters are those of the last good step); other codes for
 * failures.  Also TF_EINVAL when the run is already at cfg.steps. */
int tf_trainer_iterate(tf_trainer *t);

/* 1 when the loop should stop before the next step: a stop request (tf_train_request_stop,
 * agreed over the ranks at the last step) or max_steps_per_run steps done since set.  The
 * answer is remembered: tf_trainer_stopped() is 1 until the next iterate. */
int tf_trainer_should_stop(tf_trainer *t);

typedef struct {
  int64_t step;        /* optimizer steps done (skipped ones included) */
  int64_t steps;       /* cfg.steps */
  int64_t run_steps;   /* steps since tf_trainer_set */
  int64_t skipped;     /* non-finite steps in total */
  int64_t consecutive; /* of them in a row, up to now */
  int last_skipped;    /* the last iterate skipped its step */
  double loss;         /* training loss of the last accepted step (mean over ranks) */
  double grad_norm;    /* its gradient norm before clipping */
  double lr;           /* learning rate of the last step (of step 0 before any) */
  double val, best_val;/* last and best validation NLL (NaN / inf before the first) */
  int64_t global_batch;/* rows per step over all ranks */
  int has_data;        /* a data set: validation exists */
  int averaged;        /* parameter averaging is on: validation and checkpoints' inference
                          weights are the average */
  int64_t saved_step;  /* step of the state known to be in cfg.checkpoint (-1: none) */
} tf_trainer_info;
void tf_trainer_state(const tf_trainer *t, tf_trainer_info *info);

/* The loss terms and the ESS of the last grid refresh, for a progress line ("" for NLL). */
void tf_trainer_summary(const tf_trainer *t, char *buf, size_t len);
const tf_train_config *tf_trainer_config(const tf_trainer *t);

/* Validation NLL now (collective): of the parameter average when averaging is on, the raw
 * parameters restored bit for bit afterwards; remembered as the last and, if lower, the best
 * value (stored in checkpoints).  Returns it (NaN without data). */
double tf_trainer_validate(tf_trainer *t);

/* Checkpoint of the current state to cfg.checkpoint (collective: rank 0 writes atomically,
 * every rank gets the outcome).  TF_OK without a checkpoint path. */
int tf_trainer_save(tf_trainer *t);

/* With several ranks: verify that every replica holds bit-identical parameters and moments
 * (collective); `when` completes the message ("step", "the end, step"). */
int tf_trainer_check(tf_trainer *t, const char *when);

/* The loop of `tradeflow train`: set, then iterate until cfg.steps or a stop, with a
 * replica check every check_every steps, validation every val_every, a progress line every
 * log_every (a live bar on a terminal), a checkpoint every ckpt_every and at the end, and the
 * closing line.  TF_OK when the run ended normally or was asked to stop (tf_trainer_stopped
 * tells which); TF_ENUMERIC after max_nonfinite bad steps in a row; other codes for I/O
 * errors. */
int tf_trainer_run(tf_trainer *t);

/* Mean NLL (nats per sample) of the validation rows (or of all rows without a split), of the
 * parameters as they are (collective). */
double tf_trainer_val_nll(tf_trainer *t);

int64_t tf_trainer_step(const tf_trainer *t);
int64_t tf_trainer_skipped(const tf_trainer *t);  /* non-finite steps in total */
int tf_trainer_stopped(const tf_trainer *t);      /* 1 if the last run ended on a stop request */
double tf_trainer_last_loss(const tf_trainer *t); /* training loss of the last good step */
/* Wall seconds this trainer's steps spent in their collectives (error agreement, loss sums,
 * gradient mean; waiting for slower ranks included), since create; 0 on one rank. */
double tf_trainer_comm_seconds(const tf_trainer *t);

/* Ask every running trainer to stop at the next step boundary (async-signal-safe: this is
 * what the SIGTERM/SIGINT/SIGUSR1 handler calls).  tf_train_install_signals() installs that
 * handler (SIGUSR1: SLURM's --signal=USR1@T warning before the time limit). */
void tf_train_request_stop(void);
/* Forget a stop request (what tf_trainer_run does when it returns). */
void tf_train_clear_stop(void);
void tf_train_install_signals(void);

#ifdef __cplusplus
}
#endif
#endif
