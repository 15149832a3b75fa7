/* run.c — the training loop of `tradeflow train`, a caller of the trainer's public API.
 *
 * Exported: tf_trainer_run.  Collective with several ranks (every rank calls it).
 *
 * Everything here goes through train.h: the trainer steps, this file decides when to check
 * the replicas, validate, log and checkpoint.  Another driver (a test, a loop over two
 * networks) can make other choices without touching trainer.c.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tradeflow/dist.h"
#include "tradeflow/error.h"
#include "tradeflow/train.h"

typedef struct {
  tf_trainer *t;
  const tf_train_config *cfg;
  FILE *log;
  int tty;
  double t_start, t_last_log, t_last_bar;
  int64_t step_last_log;
} progress;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_duration(double s, char *buf, size_t len) {
  if (!isfinite(s) || s < 0) {
    snprintf(buf, len, "--:--:--");
    return;
  }
  const long v = (long)(s + 0.5);
  snprintf(buf, len, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
}

static void clear_bar(progress *p) {
  if (p->tty) fputs("\r\033[K", p->log);
}

static void log_line(progress *p) {
  FILE *f = p->log;
  if (!f) return;
  tf_trainer_info in;
  tf_trainer_state(p->t, &in);
  const double now = now_s(), dt = now - p->t_last_log;
  const double rate = dt > 0 ? (double)(in.step - p->step_last_log) * (double)in.global_batch / dt
                             : 0;
  const double per_step = in.run_steps > 0 ? (now - p->t_start) / (double)in.run_steps : NAN;
  char eta[32];
  fmt_duration(per_step * (double)(in.steps - in.step), eta, sizeof eta);
  char val[32] = "-", terms[160] = "";
  if (!isnan(in.val)) snprintf(val, sizeof val, "%.5f", in.val);
  tf_trainer_summary(p->t, terms + 1, sizeof terms - 3);
  if (terms[1]) {
    terms[0] = '(';
    strcat(terms, ") ");
  }
  clear_bar(p);
  fprintf(f, "step %*lld/%lld  loss %.5f %s val %s  lr %.2e  |g| %.3g  %.3g samples/s  "
          "skipped %lld  ETA %s\n",
          (int)snprintf(NULL, 0, "%lld", (long long)in.steps), (long long)in.step,
          (long long)in.steps, in.loss, terms, val, in.lr, in.grad_norm, rate,
          (long long)in.skipped, eta);
  fflush(f);
  p->t_last_log = now;
  p->step_last_log = in.step;
}

/* The live bar: only on a terminal, at most 4 times a second. */
static void bar(progress *p) {
  if (!p->tty) return;
  const double now = now_s();
  if (now - p->t_last_bar < 0.25) return;
  p->t_last_bar = now;
  tf_trainer_info in;
  tf_trainer_state(p->t, &in);
  const int W = 30;
  const double frac = in.steps ? (double)in.step / (double)in.steps : 1;
  char b[64];
  int k = (int)(frac * W);
  for (int i = 0; i < W; i++) b[i] = i < k ? '#' : '.';
  b[W] = 0;
  const double per_step = (now - p->t_start) / (double)(in.run_steps ? in.run_steps : 1);
  char eta[32];
  fmt_duration(per_step * (double)(in.steps - in.step), eta, sizeof eta);
  fprintf(p->log, "\r[%s] %5.1f%%  step %lld  loss %.4f  ETA %s", b, 100 * frac,
          (long long)in.step, in.loss, eta);
  fflush(p->log);
}

static void closing_line(progress *p) {
  const tf_train_config *cfg = p->cfg;
  tf_trainer_info in;
  tf_trainer_state(p->t, &in);
  clear_bar(p);
  if (tf_trainer_stopped(p->t))
    fprintf(p->log, "stopped at step %lld of %lld%s%s; continue with --resume\n",
            (long long)in.step, (long long)in.steps, cfg->checkpoint ? ", checkpoint " : "",
            cfg->checkpoint ? cfg->checkpoint : "");
  else if (in.has_data)
    fprintf(p->log, "done: %lld steps, final validation NLL %.5f nats (best %.5f)%s, "
            "%lld non-finite steps skipped\n", (long long)in.step, in.val, in.best_val,
            in.averaged ? " of the averaged parameters" : "", (long long)in.skipped);
  else
    fprintf(p->log, "done: %lld steps, final loss %.5f (no data, no validation NLL), "
            "%lld non-finite steps skipped\n", (long long)in.step, in.loss,
            (long long)in.skipped);
  fflush(p->log);
}

static int loop(progress *p) {
  tf_trainer *t = p->t;
  const tf_train_config *cfg = p->cfg;
  int rc = tf_trainer_set(t);
  if (rc != TF_OK) return rc;
  tf_trainer_info in;
  tf_trainer_state(t, &in);
  while (in.step < cfg->steps && !tf_trainer_should_stop(t)) {
    rc = tf_trainer_iterate(t);
    if (rc != TF_OK) {
      clear_bar(p);
      return rc;
    }
    tf_trainer_state(t, &in);
    const int64_t s = in.step;
    if (cfg->check_every && s % cfg->check_every == 0 &&
        (rc = tf_trainer_check(t, "step")) != TF_OK)
      return rc;
    if (cfg->val_every && s % cfg->val_every == 0) tf_trainer_validate(t);
    if (cfg->log_every && s % cfg->log_every == 0)
      log_line(p);
    else
      bar(p);
    if (cfg->ckpt_every && s % cfg->ckpt_every == 0 && s < cfg->steps &&
        (rc = tf_trainer_save(t)) != TF_OK)
      return rc;
  }
  const int stopped = tf_trainer_stopped(t);
  tf_trainer_state(t, &in);
  if (!stopped || in.run_steps > 0) {
    if ((rc = tf_trainer_check(t, "the end, step")) != TF_OK) return rc;
    if (!stopped) tf_trainer_validate(t);
    /* A finished run resumed again changed nothing: its checkpoint is left untouched, so
     * that outputs derived from it stay newer than it (run.sh's skip rule) */
    if (in.run_steps > 0 || in.saved_step != in.step) rc = tf_trainer_save(t);
    if (rc != TF_OK) return rc;
  }
  if (p->log) closing_line(p);
  return TF_OK;
}

int tf_trainer_run(tf_trainer *t) {
  progress p;
  memset(&p, 0, sizeof p);
  p.t = t;
  p.cfg = tf_trainer_config(t);
  p.log = p.cfg->log;
  p.tty = p.log && isatty(fileno(p.log)) && !tf_dist_launched();
  p.t_start = p.t_last_log = p.t_last_bar = now_s();
  p.step_last_log = tf_trainer_step(t);
  const int rc = loop(&p);
  tf_train_clear_stop();
  return rc;
}
