/* test_trade.c — TRADE through the trainer, on a family whose conditional density is known.
 *
 * Energy-free TRADE with c a temperature: the target at T is q(x | T) = p(x | T0)^(T0 / T).
 * With data N(0, I) at T0 = 1, the exact family is N(0, T I), so after training
 *   d/dT log p(x | T) = -D / (2T) + |x|^2 / (2 T^2)
 * and samples at T = 0.5 and 2 must be near-perfect importance samples of N(0, T I).  The
 * flow's base is N(0, I) and its subnets see T: everything about T is learned through the
 * TRADE residual (the NLL term only ever sees T0).  Also: exact resumption with the grid state
 * in the checkpoint (with noisy evaluation points, and with their symmetry images on a small
 * phi^4 lattice), and the loss checks.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tradeflow/h5io.h"
#include "tradeflow/physics.h"
#include "tradeflow/flow.h"
#include "tradeflow/train.h"

enum { NROWS = 20000, D = 2 };

static char tmpdir[256];
static double *data_x;

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(tmpdir, sizeof tmpdir, "%s/tf_trade_XXXXXX", base);
  data_x = malloc(sizeof(double) * NROWS * D);
  tf_rng r;
  tf_rng_init(&r, 5, 0, TF_RNG_TEST, 0);
  tf_rng_fill_normal_d(&r, data_x, NROWS * D);
  return mkdtemp(tmpdir) && data_x ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  free(data_x);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

typedef struct {
  tf_model *m;   /* owns p and f */
  tf_params *p;
  tf_flow *f;
} model;

static model make_model_d(int dim) {
  model m;
  tf_flow_config fc = tf_flow_defaults(dim);
  fc.n_blocks = 4;
  fc.hidden = 32;
  fc.embed_dim = 8;
  m.m = tf_flow_model_create(&fc);
  m.p = tf_model_params(m.m);
  m.f = tf_flow_of(m.m);
  assert_non_null(m.f);
  assert_int_equal(tf_model_init(m.m), TF_OK);
  return m;
}

static model make_model(void) { return make_model_d(D); }

static void drop(model *m) {
  tf_model_destroy(m->m);
}

static tf_train_config trade_cfg(int64_t steps, const char *ckpt) {
  tf_train_config tc = tf_train_defaults();
  tc.steps = steps;
  tc.batch = 256;
  tc.val_fraction = 0.05;
  tc.val_every = 0;
  tc.log_every = 0;
  tc.ckpt_every = 0;
  tc.lr.lr = 3e-3;
  tc.lr.lr_min = 1e-4;
  tc.seed = 11;
  tc.checkpoint = ckpt;
  tc.loss = tf_loss_defaults();
  tc.loss.kind = TF_LOSS_TRADE;
  tc.loss.energy_free = 1;
  tc.loss.c_min = 0.5;
  tc.loss.c_max = 2.0;
  tc.loss.c0 = 1.0;
  tc.loss.grid_points = 8;
  tc.loss.grid_samples = 256;
  tc.loss.points = 256;
  tc.loss.lambda_warmup = 100;
  tc.loss.lambda_ramp = 200;
  return tc;
}

static const tf_dataset *dataset(void) {
  static tf_dataset d;
  d = (tf_dataset){NROWS, D, data_x, NULL, 1.0};
  return &d;
}

/* The learned d/dT log p(x | T) against the exact family N(0, T I), and the Kish ESS of flow
 * samples against it. */
static void check_family(model *m, double T, double *rel_err, double *ess) {
  enum { N = 2000 };
  tf_ctx *ctx = tf_ctx_create(0);
  tf_rng r;
  tf_rng_init(&r, 99, 0, TF_RNG_TEST, (uint32_t)(T * 1000));
  /* derivative at exact samples of N(0, T I) */
  tf_tensor *x = tf_new2(ctx, N, D), *c = tf_full(ctx, 2, (int64_t[]){N, 1}, T);
  tf_rng_fill_normal(&r, x, 0, sqrt(T));
  tf_ctx_set_grad(ctx, 0);
  assert_int_equal(tf_set_tangent(ctx, c, tf_full(ctx, 2, (int64_t[]){N, 1}, 1.0)), TF_OK);
  tf_tensor *lp = tf_flow_log_prob(m->f, ctx, x, c);
  assert_non_null(lp);
  tf_tensor *dlp = tf_tangent(ctx, lp);
  assert_non_null(dlp);
  double se = 0, s2 = 0;
  for (int i = 0; i < N; i++) {
    double r2 = 0;
    for (int j = 0; j < D; j++) r2 += (double)x->data[i * D + j] * x->data[i * D + j];
    const double exact = -D / (2 * T) + r2 / (2 * T * T);
    se += (dlp->data[i] - exact) * (dlp->data[i] - exact);
    s2 += exact * exact;
  }
  *rel_err = sqrt(se / s2);
  /* Kish ESS of flow samples at T against N(0, T I) */
  tf_ctx_reset(ctx);
  c = tf_full(ctx, 2, (int64_t[]){N, 1}, T);
  tf_tensor *lq = NULL;
  tf_tensor *y = tf_flow_sample(m->f, ctx, c, N, &r, &lq);
  assert_non_null(y);
  double lw[N], mx = -INFINITY;
  for (int i = 0; i < N; i++) {
    double r2 = 0;
    for (int j = 0; j < D; j++) r2 += (double)y->data[i * D + j] * y->data[i * D + j];
    lw[i] = -r2 / (2 * T) - 0.5 * D * log(2 * 3.14159265358979323846 * T) - lq->data[i];
    if (lw[i] > mx) mx = lw[i];
  }
  double s1 = 0, sq = 0;
  for (int i = 0; i < N; i++) {
    const double w = exp(lw[i] - mx);
    s1 += w;
    sq += w * w;
  }
  *ess = s1 * s1 / sq / N;
  tf_ctx_destroy(ctx);
}

static void learn_family(int variant, int penalty, int adaptive, double offpolicy, double noise) {
  model m = make_model();
  tf_train_config tc = trade_cfg(1500, NULL);
  tc.loss.variant = variant;
  tc.loss.penalty = penalty;
  tc.loss.adaptive = adaptive;
  tc.loss.offpolicy = offpolicy;
  tc.loss.noise = noise;
  tc.loss.widen_steps = 500;
  tf_trainer *t = tf_trainer_create(&tc, m.m, dataset());
  assert_non_null(t);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  assert_int_equal(tf_trainer_skipped(t), 0);
  tf_trainer_destroy(t);
  const double Ts[3] = {0.5, 1.0, 2.0};
  for (int k = 0; k < 3; k++) {
    double err, ess;
    check_family(&m, Ts[k], &err, &ess);
    printf("%s%s%s%s%s: T = %.2f: relative RMS error of d/dT log p %.4f, Kish ESS %.4f\n",
           variant == TF_TRADE_GRID ? "grid" : "continuous",
           penalty == TF_PENALTY_HUBER ? ", huber" : "", adaptive ? ", adaptive" : "",
           offpolicy > 0 ? ", off-policy points" : "", noise > 0 ? ", noisy points" : "",
           Ts[k], err, ess);
    assert_true(err < 0.15);
    assert_true(ess > 0.9);
  }
  drop(&m);
}

static void test_grid_learns_the_gaussian_family(void **state) {
  (void)state;
  learn_family(TF_TRADE_GRID, TF_PENALTY_SQUARE, 0, 0, 0);
}

/* Half the evaluation points sampled at another grid point: the same family, so the target
 * A and <A> must be those of the point's own condition, not of where x came from. */
static void test_grid_offpolicy_learns_the_gaussian_family(void **state) {
  (void)state;
  learn_family(TF_TRADE_GRID, TF_PENALTY_SQUARE, 0, 0.5, 0);
}

/* Evaluation points moved by N(0, 0.5^2) noise (sd 0.7 to 1.4 of the family over the range):
 * the residual must be taken at the moved point, flow and target alike. */
static void test_grid_noise_learns_the_gaussian_family(void **state) {
  (void)state;
  learn_family(TF_TRADE_GRID, TF_PENALTY_SQUARE, 0, 0, 0.5);
}

static void test_continuous_learns_the_gaussian_family(void **state) {
  (void)state;
  learn_family(TF_TRADE_CONTINUOUS, TF_PENALTY_HUBER, 1, 0, 0);
}

/* The untrained flow at T != T0 is N(0, I): the checks above can fail. */
static void test_untrained_flow_fails_the_check(void **state) {
  (void)state;
  model m = make_model();
  double err, ess;
  check_family(&m, 0.5, &err, &ess);
  assert_true(err > 0.5);
  assert_true(ess < 0.9);
  drop(&m);
}

static void read_state(const char *path, tf_params *p, tf_optim *o) {
  assert_int_equal(tf_checkpoint_load(path, p, o, NULL), TF_OK);
}

/* tc.steps steps in one run against 47 + resume, for a flow of dimension dim: the final
 * parameters must agree bit for bit; they are copied to out (size of the flow's parameters)
 * when out is not NULL. */
static void resume_is_bit_identical(tf_train_config tc, int dim, const tf_dataset *ds,
                                    tf_real *out) {
  char full[320], part[320];
  snprintf(full, sizeof full, "%s/full.h5", tmpdir);
  snprintf(part, sizeof part, "%s/part.h5", tmpdir);
  model a = make_model_d(dim);
  tc.checkpoint = full;
  tf_trainer *t = tf_trainer_create(&tc, a.m, ds);
  assert_non_null(t);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_trainer_destroy(t);

  model b = make_model_d(dim);
  tc.checkpoint = part;
  tc.max_steps_per_run = 47;
  t = tf_trainer_create(&tc, b.m, ds);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  assert_true(tf_trainer_stopped(t));
  tf_trainer_destroy(t);
  drop(&b);
  b = make_model_d(dim);
  tc.max_steps_per_run = 0;
  t = tf_trainer_create(&tc, b.m, ds);
  assert_int_equal(tf_trainer_resume(t, part), TF_OK);
  assert_int_equal(tf_trainer_step(t), 47);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_trainer_destroy(t);

  tf_optim_config oc = tf_optim_defaults(TF_OPTIM_ADAM);
  model ra = make_model_d(dim), rb = make_model_d(dim);
  tf_optim *oa = tf_optim_create(&oc, tf_params_size(ra.p));
  tf_optim *ob = tf_optim_create(&oc, tf_params_size(rb.p));
  read_state(full, ra.p, oa);
  read_state(part, rb.p, ob);
  const size_t bytes = (size_t)tf_params_size(ra.p) * sizeof(tf_real);
  assert_memory_equal(tf_params_values(ra.p), tf_params_values(rb.p), bytes);
  assert_memory_equal(tf_params_values(a.p), tf_params_values(rb.p), bytes);
  if (out) memcpy(out, tf_params_values(a.p), bytes);
  tf_optim_destroy(oa);
  tf_optim_destroy(ob);
  drop(&a);
  drop(&b);
  drop(&ra);
  drop(&rb);
}

/* Steps cross the warm-up, a ramp and several refreshes (refresh 10; stop at 47); with
 * noise, the evaluation points' noise is drawn from the step's stream too. */
static void test_resume_is_bit_identical(void **state) {
  (void)state;
  tf_train_config tc = trade_cfg(120, NULL);
  tc.loss.lambda_warmup = 20;
  tc.loss.lambda_ramp = 40;
  tc.loss.adaptive = 1;
  resume_is_bit_identical(tc, D, dataset(), NULL);
  tc.loss.noise = 0.3;
  resume_is_bit_identical(tc, D, dataset(), NULL);
}

/* Symmetry images of the evaluation points (phi^4 on a 4 x 4 lattice: sign flip x
 * translations x D4), with noise, reverse-KL boundary: resumption is exact, so the images
 * are drawn from the step's stream, and the option is live (other parameters without it). */
static void test_symmetry_images_resume_exactly(void **state) {
  (void)state;
  tf_physics_opt o[2] = {{"L", "4"}, {"lambda", "0.02"}};
  tf_physics *ph = NULL;
  assert_int_equal(tf_physics_create("phi4", 2, o, &ph), TF_OK);
  tf_train_config tc = trade_cfg(80, NULL);
  tc.val_fraction = 0;
  tc.batch = 64;
  tc.loss.energy_free = 0;
  tc.loss.physics = ph;
  tc.loss.boundary = TF_BOUNDARY_RKL;
  tc.loss.boundary_batch = 64;
  tc.loss.c_min = 0.22;
  tc.loss.c_max = 0.32;
  tc.loss.c0 = 0.27;
  tc.loss.grid_samples = 64;
  tc.loss.points = 64;
  tc.loss.lambda_warmup = 20;
  tc.loss.lambda_ramp = 20;
  tc.loss.penalty = TF_PENALTY_HUBER;
  tc.loss.noise = 0.1;
  tc.loss.augment = 1;
  model m = make_model_d(16);
  const size_t n = (size_t)tf_params_size(m.p);
  drop(&m);
  tf_real *with = malloc(n * sizeof *with), *without = malloc(n * sizeof *without);
  assert_non_null(with);
  assert_non_null(without);
  resume_is_bit_identical(tc, 16, NULL, with);
  tc.loss.augment = 0;
  resume_is_bit_identical(tc, 16, NULL, without);
  assert_memory_not_equal(with, without, n * sizeof *with);
  /* the module's group is used: a module without one is refused */
  tf_physics *gm = NULL;
  assert_int_equal(tf_physics_create("gmm", 0, NULL, &gm), TF_OK);
  tc.loss.physics = gm;
  tc.loss.augment = 1;
  tc.loss.c_min = 0.5;
  tc.loss.c_max = 2;
  tc.loss.c0 = 1;
  m = make_model_d(2);
  assert_null(tf_trainer_create(&tc, m.m, NULL));
  assert_non_null(strstr(tf_errmsg(), "symmetry group (module gmm has none)"));
  drop(&m);
  tf_physics_destroy(gm);
  tf_physics_destroy(ph);
  free(with);
  free(without);
}

/* tc is refused at trainer creation with a message containing what */
static void refused(const tf_train_config *tc, model *m, const char *what) {
  assert_null(tf_trainer_create(tc, m->m, dataset()));
  if (!strstr(tf_errmsg(), what)) print_error("expected '%s' in: %s\n", what, tf_errmsg());
  assert_non_null(strstr(tf_errmsg(), what));
}

static void test_loss_checks(void **state) {
  (void)state;
  model m = make_model();
  /* TRADE with an NLL boundary but no data */
  tf_train_config tc = trade_cfg(10, NULL);
  assert_null(tf_trainer_create(&tc, m.m, NULL));
  assert_non_null(strstr(tf_errmsg(), "no data"));
  /* reverse KL without physics */
  tc.loss.kind = TF_LOSS_REVERSE_KL;
  refused(&tc, &m, "physics");
  /* a range that does not contain c0 */
  tc = trade_cfg(10, NULL);
  tc.loss.c0 = 3;
  refused(&tc, &m, "c0");
  tc = trade_cfg(10, NULL);
  tc.loss.grid_points = 1;
  refused(&tc, &m, "grid_points");
  tc = trade_cfg(10, NULL);
  tc.loss.offpolicy = 1.5;
  refused(&tc, &m, "0 <= offpolicy <= 1");
  tc.loss.offpolicy = 0.5;
  tc.loss.variant = TF_TRADE_CONTINUOUS;
  refused(&tc, &m, "offpolicy = 0.5 applies to the grid variant");
  tc = trade_cfg(10, NULL);
  tc.loss.noise = -0.1;
  refused(&tc, &m, "finite noise >= 0");
  tc.loss.noise = NAN;
  refused(&tc, &m, "finite noise >= 0");
  tc.loss.noise = 0.2;
  tc.loss.variant = TF_TRADE_CONTINUOUS;
  refused(&tc, &m, "noise = 0.2 and augment = 0 apply to the grid variant");
  /* symmetry images need a physics module that has a group */
  tc = trade_cfg(10, NULL);
  tc.loss.augment = 1;
  refused(&tc, &m, "symmetry group (energy-free TRADE uses none)");
  drop(&m);
  /* an unconditional flow cannot learn a family */
  tf_flow_config fc = tf_flow_defaults(D);
  fc.conditional = 0;
  tf_model *f = tf_flow_model_create(&fc);
  assert_non_null(f);
  tc = trade_cfg(10, NULL);
  assert_null(tf_trainer_create(&tc, f, dataset()));
  assert_non_null(strstr(tf_errmsg(), "conditional"));
  tf_model_destroy(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loss_checks),
      cmocka_unit_test(test_untrained_flow_fails_the_check),
      cmocka_unit_test(test_resume_is_bit_identical),
      cmocka_unit_test(test_symmetry_images_resume_exactly),
      cmocka_unit_test(test_grid_learns_the_gaussian_family),
      cmocka_unit_test(test_grid_offpolicy_learns_the_gaussian_family),
      cmocka_unit_test(test_grid_noise_learns_the_gaussian_family),
      cmocka_unit_test(test_continuous_learns_the_gaussian_family),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
