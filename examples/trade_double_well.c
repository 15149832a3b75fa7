/* trade_double_well.c — tradeflow as a library: a conditional coupling flow p(x | T) for the
 * 2-D double well U = -4 x1^2 + x1^4 + x2^2 / 2, trained with TRADE over T in [0.4, 1.1] from
 * exact samples at T0 = 1 only, then sampled at three temperatures with the Kish ESS of the
 * importance weights q / p_theta.
 *
 * Build against an installed tradeflow:
 *   cc trade_double_well.c $(pkg-config --cflags --libs tradeflow) -o trade_double_well
 * or with CMake: find_package(tradeflow) and target_link_libraries(... tradeflow::tradeflow)
 * (examples/CMakeLists.txt).  Run: ./trade_double_well [STEPS]   (default 600, ~10 s on one core)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <tradeflow/error.h>
#include <tradeflow/flow.h>
#include <tradeflow/model.h>
#include <tradeflow/physics.h>
#include <tradeflow/rng.h>
#include <tradeflow/stats.h>
#include <tradeflow/train.h>

enum { NDATA = 20000, NSAMPLE = 20000 };

static int fail(const char *what) {
  fprintf(stderr, "trade_double_well: %s: %s\n", what, tf_errmsg());
  return 1;
}

int main(int argc, char **argv) {
  const long steps = argc > 1 ? strtol(argv[1], NULL, 10) : 600;
  if (steps < 1) {
    fprintf(stderr, "usage: trade_double_well [STEPS >= 1]\n");
    return 2;
  }
  /* the target family: q(x | T) = exp(-U(x) / T) */
  tf_physics *phys = NULL;
  const tf_physics_opt opt[] = {{"dim", "2"}};
  if (tf_physics_create("double_well", 1, opt, &phys) != TF_OK) return fail("physics");
  const double t_min = 0.4, t_max = 1.1, t0 = 1.0;

  /* boundary data: exact samples at T0 */
  double *x = malloc(2 * NDATA * sizeof *x);
  tf_rng rng;
  tf_rng_init(&rng, 7, 0, TF_RNG_USER, 0);
  if (!x || tf_physics_sample(phys, t0, NDATA, &rng, x) != TF_OK) return fail("exact samples");
  const tf_dataset data = {NDATA, 2, x, NULL, t0};

  /* the model: a spline coupling flow conditional on log T (any family of model.h would do) */
  tf_flow_config fc = tf_flow_defaults(2);
  fc.coupling = TF_COUPLING_SPLINE;
  fc.n_blocks = 6;
  fc.hidden = 64;
  fc.spline_bound = 4;
  tf_model *model = tf_flow_model_create(&fc);
  if (!model || tf_model_init(model) != TF_OK) return fail("model");

  /* TRADE: NLL at T0 plus the residual of d/dT log p = -dE/dT + <dE/dT> over the range */
  tf_train_config tc = tf_train_defaults();
  tc.steps = steps;
  tc.batch = 256;
  tc.log_every = steps / 5 > 0 ? steps / 5 : 1;
  tc.val_every = tc.log_every;
  tc.log = stdout;
  tc.loss = tf_loss_defaults();
  tc.loss.kind = TF_LOSS_TRADE;
  tc.loss.physics = phys;
  tc.loss.c_min = t_min;
  tc.loss.c_max = t_max;
  tc.loss.c0 = t0;
  tf_trainer *tr = tf_trainer_create(&tc, model, &data);
  if (!tr) return fail("trainer");
  /* the caller drives the loop (tf_trainer_run would do the same with checkpoints) */
  if (tf_trainer_set(tr) != TF_OK) return fail("set");
  while (tf_trainer_step(tr) < steps) {
    if (tf_trainer_iterate(tr) != TF_OK) return fail("step");
    tf_trainer_info in;
    tf_trainer_state(tr, &in);
    if (in.step % tc.log_every == 0) {
      char terms[160];
      tf_trainer_summary(tr, terms, sizeof terms);
      printf("step %5lld  loss %.4f  (%s)  val NLL %.4f\n", (long long)in.step, in.loss, terms,
             tf_trainer_validate(tr));
    }
  }
  tf_trainer_destroy(tr);

  /* samples at three temperatures and their importance weights against the target */
  tf_ctx *ctx = tf_ctx_create(0);
  double *xs = malloc(2 * NSAMPLE * sizeof *xs), *lp = malloc(NSAMPLE * sizeof *lp);
  double *lq = malloc(NSAMPLE * sizeof *lq), *cs = malloc(NSAMPLE * sizeof *cs);
  if (!ctx || !xs || !lp || !lq || !cs) return fail("allocation");
  const double temps[3] = {t_min, t0, t_max};
  int ok = 1;
  for (int k = 0; k < 3; k++) {
    tf_rng_init(&rng, 7, 0, TF_RNG_USER, 1 + (uint32_t)k);
    if (tf_model_draw(model, ctx, temps[k], NSAMPLE, 256, &rng, xs, lp) != TF_OK)
      return fail("sampling");
    for (int i = 0; i < NSAMPLE; i++) cs[i] = temps[k];
    if (tf_physics_log_q(phys, NSAMPLE, xs, cs, lq, NULL, NULL) != TF_OK) return fail("log q");
    for (int i = 0; i < NSAMPLE; i++) lq[i] -= lp[i]; /* log w = log q - log p_theta */
    double ess;
    if (tf_stats_ess(NSAMPLE, lq, &ess) != TF_OK) return fail("ESS");
    printf("T = %.2f: ESS/N = %.3f of %d flow samples\n", temps[k], ess, NSAMPLE);
    ok &= ess > 0.05;
  }
  free(xs);
  free(lp);
  free(lq);
  free(cs);
  free(x);
  tf_ctx_destroy(ctx);
  tf_model_destroy(model);
  tf_physics_destroy(phys);
  if (!ok) fprintf(stderr, "trade_double_well: an ESS/N below 0.05: train longer\n");
  return ok ? 0 : 1;
}
