/* test_trade_mpi.c — TRADE on 2 ranks learns what it learns on 1 (run with 2 ranks).
 *
 * Multi-well in 2D (U = sum -4 x^2 + x^4), exact samples at T0 = 1, TRADE over T in
 * [0.5, 1.1], grid and continuous variants, a small spline flow.  The one-rank runs take the global batch (2 B
 * rows, 2 n evaluation points) that the two-rank runs split, so both estimate the same
 * gradient and differ only by their random draws.  Training noise is larger than the
 * sampling error of one ESS, so each configuration is trained with SEEDS seeds, and the mean
 * ESS at T = 0.5 and T = 1 must agree within three standard errors of the difference (from
 * the seeds' spread), and be high in absolute terms on both sides.
 * The one-rank runs of different seeds run on the two ranks at once (split communicators).
 */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define TF_TEST_MPI
#include "testutil.h"

#include "tradeflow/dist.h"
#include "tradeflow/error.h"
#include "tradeflow/physics.h"
#include "tradeflow/stats.h"
#include "tradeflow/flow.h"
#include "tradeflow/train.h"

enum { NROWS = 20000, D = 2, SEEDS = 4, NESS = 4000, STEPS = 1200 };
static const double TS[2] = {0.5, 1.0};

static tf_dist world;
static double *data_x;
static tf_physics *phys;

static int setup(void **state) {
  (void)state;
  if (tf_dist_from_comm(MPI_COMM_WORLD, &world) != TF_OK || world.size != 2) {
    fprintf(stderr, "test_trade_mpi runs on exactly 2 ranks\n");
    return -1;
  }
  tf_physics_opt o = {"dim", "2"};
  if (tf_physics_create("multiwell", 1, &o, &phys) != TF_OK) return -1;
  data_x = malloc(sizeof(double) * NROWS * D);
  tf_rng r;
  tf_rng_init(&r, 5, 0, TF_RNG_TEST, 0);
  return data_x && tf_physics_sample(phys, 1.0, NROWS, &r, data_x) == TF_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  free(data_x);
  tf_physics_destroy(phys);
  return 0;
}

/* Kish ESS / N at T of NESS flow samples against the multi-well at T. */
static double ess_at(tf_flow *f, double T) {
  tf_ctx *ctx = tf_ctx_create(0);
  tf_ctx_set_grad(ctx, 0);
  tf_rng r;
  tf_rng_init(&r, 99, 0, TF_RNG_TEST, (uint32_t)(T * 1000));
  tf_tensor *c = tf_full(ctx, 2, (int64_t[]){NESS, 1}, T), *lp = NULL;
  tf_tensor *x = tf_flow_sample(f, ctx, c, NESS, &r, &lp);
  assert_non_null(x);
  double *xd = malloc(sizeof(double) * NESS * D), *cd = malloc(sizeof(double) * NESS);
  double *lq = malloc(sizeof(double) * NESS);
  assert_true(xd && cd && lq);
  for (int i = 0; i < NESS * D; i++) xd[i] = (double)x->data[i];
  for (int i = 0; i < NESS; i++) cd[i] = T;
  assert_int_equal(tf_physics_log_q(phys, NESS, xd, cd, lq, NULL, NULL), TF_OK);
  for (int i = 0; i < NESS; i++) lq[i] -= (double)lp->data[i];
  double ess;
  assert_int_equal(tf_stats_ess(NESS, lq, &ess), TF_OK);
  free(xd), free(cd), free(lq);
  tf_ctx_destroy(ctx);
  return ess;
}

/* Train with `ranks` ranks of global batch 256 on the group d; ESS at TS into ess[2]. */
static void train(const tf_dist *d, int variant, uint64_t seed, double ess[2]) {
  tf_flow_config fc = tf_flow_defaults(D);
  fc.n_blocks = 4;
  fc.hidden = 32;
  fc.embed_dim = 8;
  fc.coupling = TF_COUPLING_SPLINE; /* affine couplings cannot split the wells of a 2D model */
  fc.spline_bound = 4;
  tf_model *m = tf_flow_model_create(&fc);
  tf_flow *f = tf_flow_of(m);
  assert_non_null(f);
  assert_int_equal(tf_model_init(m), TF_OK);
  tf_train_config tc = tf_train_defaults();
  tc.steps = STEPS;
  tc.batch = 256 / d->size;
  tc.val_fraction = 0;
  tc.val_every = 0;
  tc.log_every = 0;
  tc.ckpt_every = 0;
  tc.lr.lr = 3e-3;
  tc.lr.lr_min = 1e-4;
  tc.seed = seed;
  tc.dist = d;
  tc.loss = tf_loss_defaults();
  tc.loss.kind = TF_LOSS_TRADE;
  tc.loss.variant = variant;
  tc.loss.physics = phys;
  tc.loss.c_min = 0.5;
  tc.loss.c_max = 1.1;
  tc.loss.c0 = 1.0;
  tc.loss.grid_points = 8;
  tc.loss.grid_samples = 256;
  tc.loss.points = 256 / d->size;
  tc.loss.groups = 4;
  tc.loss.widen_steps = 300;
  tc.loss.lambda_warmup = 100;
  tc.loss.lambda_ramp = 200;
  tf_dataset ds = {NROWS, D, data_x, NULL, 1.0};
  tf_trainer *t = tf_trainer_create(&tc, m, &ds);
  assert_non_null(t);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_trainer_destroy(t);
  for (int k = 0; k < 2; k++) ess[k] = ess_at(f, TS[k]);
  tf_model_destroy(m);
}

static void mean_se(const double *v, int n, double *m, double *se) {
  double s = 0, s2 = 0;
  for (int i = 0; i < n; i++) s += v[i];
  *m = s / n;
  for (int i = 0; i < n; i++) s2 += (v[i] - *m) * (v[i] - *m);
  *se = sqrt(s2 / (n - 1) / n);
}

static void compare(int variant) {
  /* one-rank runs: seeds 1, 3 on rank 0 and 2, 4 on rank 1, at the same time */
  MPI_Comm self;
  MPI_Comm_split(MPI_COMM_WORLD, world.rank, 0, &self);
  tf_dist one;
  assert_int_equal(tf_dist_from_comm(self, &one), TF_OK);
  double e1[SEEDS][2], e2[SEEDS][2];
  for (int s = world.rank; s < SEEDS; s += 2) train(&one, variant, (uint64_t)s + 1, e1[s]);
  for (int s = 0; s < SEEDS; s++) /* gather every seed's result everywhere */
    MPI_Bcast(e1[s], 2, MPI_DOUBLE, s % 2, MPI_COMM_WORLD);
  MPI_Comm_free(&self);
  for (int s = 0; s < SEEDS; s++) train(&world, variant, (uint64_t)s + 1, e2[s]);
  for (int k = 0; k < 2; k++) {
    double a[SEEDS], b[SEEDS], m1, s1, m2, s2;
    for (int s = 0; s < SEEDS; s++) a[s] = e1[s][k], b[s] = e2[s][k];
    mean_se(a, SEEDS, &m1, &s1);
    mean_se(b, SEEDS, &m2, &s2);
    const double tol = 3 * sqrt(s1 * s1 + s2 * s2) + 0.005;
    if (world.rank == 0)
      printf("%s, T = %.1f: ESS 1 rank %.4f +- %.4f, 2 ranks %.4f +- %.4f (%d seeds each); "
             "difference %.4f, allowed %.4f\n", variant == TF_TRADE_GRID ? "grid" : "continuous",
             TS[k], m1, s1, m2, s2, SEEDS, m2 - m1, tol);
    assert_true(fabs(m2 - m1) < tol);
    assert_true(m1 > 0.8 && m2 > 0.8);
  }
}

static void test_grid_one_vs_two_ranks(void **state) {
  (void)state;
  compare(TF_TRADE_GRID);
}

static void test_continuous_one_vs_two_ranks(void **state) {
  (void)state;
  compare(TF_TRADE_CONTINUOUS);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grid_one_vs_two_ranks),
      cmocka_unit_test(test_continuous_one_vs_two_ranks),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  return tf_test_mpi_finish(rc);
}
