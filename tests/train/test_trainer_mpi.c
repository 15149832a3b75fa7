/* test_trainer_mpi.c — data-parallel training over the ranks of MPI_COMM_WORLD (run with 1, 2
 * and 4 ranks): every loss keeps the replicas bit-identical and is bit-identical when
 * repeated; a resumed run equals an uninterrupted one on the same rank count and a checkpoint
 * resumes on another rank count; a failure on one rank (bad input, a NaN storm, an I/O error)
 * ends the run on every rank with that rank's message.
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
#include <unistd.h>

#include <cmocka.h>

#define TF_TEST_MPI
#include "testutil.h"

#include "tradeflow/dist.h"
#include "tradeflow/error.h"
#include "tradeflow/physics.h"
#include "tradeflow/flow.h"
#include "tradeflow/train.h"

enum { NROWS = 8192, D = 2 };

static tf_dist world;
static char tmpdir[256];
static double *data_x;
static tf_physics *phys;

static int setup(void **state) {
  (void)state;
  if (tf_dist_from_comm(MPI_COMM_WORLD, &world) != TF_OK) return -1;
  if (world.rank == 0) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/tf_mpi_XXXXXX", base);
    if (!mkdtemp(tmpdir)) tmpdir[0] = 0;
  }
  MPI_Bcast(tmpdir, sizeof tmpdir, MPI_CHAR, 0, MPI_COMM_WORLD);
  tf_physics_opt o = {"dim", "2"};
  if (!tmpdir[0] || tf_physics_create("multiwell", 1, &o, &phys) != TF_OK) return -1;
  /* exact samples at T0 = 1, the same on every rank */
  data_x = malloc(sizeof(double) * NROWS * D);
  tf_rng r;
  tf_rng_init(&r, 5, 0, TF_RNG_TEST, 0);
  return data_x && tf_physics_sample(phys, 1.0, NROWS, &r, data_x) == TF_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  free(data_x);
  tf_physics_destroy(phys);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world.rank == 0) tf_test_rm_rf(tmpdir);
  return 0;
}

typedef struct {
  tf_model *m;   /* owns p and f */
  tf_params *p;
  tf_flow *f;
} model;

static model make_model(void) {
  model m;
  tf_flow_config fc = tf_flow_defaults(D);
  fc.n_blocks = 3;
  fc.hidden = 24;
  fc.embed_dim = 8;
  m.m = tf_flow_model_create(&fc);
  m.p = tf_model_params(m.m);
  m.f = tf_flow_of(m.m);
  assert_non_null(m.f);
  assert_int_equal(tf_model_init(m.m), TF_OK);
  return m;
}

static void drop(model *m) {
  tf_model_destroy(m->m);
}

enum { NLL, GRID, CONT, RKL, REWEIGHT, NKIND };
static const char *const kind_names[NKIND] = {"nll", "trade grid", "trade continuous (adaptive, "
                                              "huber)", "reverse kl", "reweight"};

static tf_train_config cfg_of(int kind, int64_t steps, const char *ckpt, const tf_dist *d) {
  tf_train_config tc = tf_train_defaults();
  tc.steps = steps;
  tc.batch = 128;
  tc.val_fraction = 0.05;
  tc.val_every = 10;
  tc.log_every = 0;
  tc.ckpt_every = 0;
  tc.check_every = 5;
  tc.lr.lr = 2e-3;
  tc.optim.ema_decay = 0.9; /* the average is part of every replica and of the checkpoint */
  tc.seed = 17;
  tc.checkpoint = ckpt;
  tc.dist = d;
  tc.loss = tf_loss_defaults();
  tc.loss.physics = phys;
  tc.loss.c_min = 0.5;
  tc.loss.c_max = 1.1;
  tc.loss.c0 = 1.0;
  tc.loss.grid_points = 6;
  tc.loss.grid_samples = 128;
  tc.loss.refresh = 4;
  tc.loss.points = 64;
  tc.loss.groups = 4;
  tc.loss.widen_steps = 10;
  tc.loss.lambda_warmup = 3;
  tc.loss.lambda_ramp = 5;
  switch (kind) {
  case GRID: tc.loss.kind = TF_LOSS_TRADE; break;
  case CONT:
    tc.loss.kind = TF_LOSS_TRADE;
    tc.loss.variant = TF_TRADE_CONTINUOUS;
    tc.loss.adaptive = 1;
    tc.loss.penalty = TF_PENALTY_HUBER;
    break;
  case RKL: tc.loss.kind = TF_LOSS_REVERSE_KL; break;
  case REWEIGHT: tc.loss.kind = TF_LOSS_REWEIGHT; break;
  default: tc.loss.physics = NULL; break;
  }
  return tc;
}

static const tf_dataset *dataset(const double *x) {
  static tf_dataset ds;
  ds = (tf_dataset){NROWS, D, x, NULL, 1.0};
  return &ds;
}

/* Train a fresh model; its parameters into out (n values). */
static int train(int kind, int64_t steps, const tf_dist *d, tf_real *out, int64_t *n) {
  model m = make_model();
  tf_train_config tc = cfg_of(kind, steps, NULL, d);
  tf_trainer *t = tf_trainer_create(&tc, m.m, kind == RKL ? NULL : dataset(data_x));
  assert_non_null(t);
  const int rc = tf_trainer_run(t);
  *n = tf_params_size(m.p);
  memcpy(out, tf_params_values(m.p), (size_t)*n * sizeof *out);
  tf_trainer_destroy(t);
  drop(&m);
  return rc;
}

/* The gradient mean itself: for lengths that do not divide into P slices (and shorter than
 * P), every rank gets the exact mean (integer-valued inputs: the sums are exact in float)
 * and the same bits. */
static void test_dist_mean_ring(void **state) {
  (void)state;
  static const int64_t lens[] = {0, 1, 2, 3, 5, 7, 1000, 4099};
  for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++) {
    const int64_t n = lens[t];
    tf_real *buf = malloc(sizeof *buf * (size_t)(n + 1));
    tf_real *work = malloc(sizeof *work * (size_t)(tf_dist_mean_work(&world, n) + 1));
    assert_non_null(buf);
    assert_non_null(work);
    for (int64_t i = 0; i < n; i++) buf[i] = (tf_real)((i % 13) * (world.rank + 1));
    assert_int_equal(tf_dist_mean(&world, buf, n, work), TF_OK);
    const double P = world.size, f = (P + 1) / 2; /* mean of 1..P */
    for (int64_t i = 0; i < n; i++) assert_true(buf[i] == (tf_real)((double)(i % 13) * f));
    uint64_t h = tf_dist_hash(buf, (size_t)n * sizeof *buf, 0), h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    assert_true(h == h0);
    free(buf);
    free(work);
  }
}

/* Every loss: replicas identical on all ranks, two runs identical. */
static void test_replicas_identical_and_runs_repeatable(void **state) {
  (void)state;
  enum { MAXP = 20000 };
  tf_real *a = malloc(sizeof *a * MAXP), *b = malloc(sizeof *b * MAXP);
  tf_real *all = malloc(sizeof *all * MAXP * (size_t)world.size);
  assert_true(a && b && all);
  for (int kind = 0; kind < NKIND; kind++) {
    int64_t n, n2;
    assert_int_equal(train(kind, 24, &world, a, &n), TF_OK);
    assert_true(n <= MAXP);
    assert_int_equal(train(kind, 24, &world, b, &n2), TF_OK);
    assert_int_equal(n, n2);
    int moved = 0;
    for (int64_t i = 0; i < n; i++) assert_true(isfinite((double)a[i]));
    assert_memory_equal(a, b, (size_t)n * sizeof *a);
    MPI_Allgather(a, (int)n * (int)sizeof *a, MPI_BYTE, all, (int)n * (int)sizeof *a, MPI_BYTE,
                  MPI_COMM_WORLD);
    for (int q = 1; q < world.size; q++)
      assert_memory_equal(all, all + (size_t)q * (size_t)n, (size_t)n * sizeof *a);
    /* and training did something: a fresh model differs */
    model m = make_model();
    for (int64_t i = 0; i < n; i++) moved += tf_params_values(m.p)[i] != a[i];
    drop(&m);
    assert_true(moved > n / 2);
    if (world.rank == 0)
      printf("%s: %d ranks, %lld parameters identical on every rank and in a repeated run\n",
             kind_names[kind], world.size, (long long)n);
  }
  free(a);
  free(b);
  free(all);
}

/* 40 steps straight = 20 + resume + 20 on the same ranks; the checkpoint also resumes on one
 * rank (a sub-communicator) and on all of them. */
static void test_resume(void **state) {
  (void)state;
  char c1[300], c2[300];
  snprintf(c1, sizeof c1, "%s/straight.h5", tmpdir);
  snprintf(c2, sizeof c2, "%s/split.h5", tmpdir);
  model a = make_model(), b = make_model();
  tf_train_config tc = cfg_of(GRID, 40, c1, &world);
  tf_trainer *t = tf_trainer_create(&tc, a.m, dataset(data_x));
  assert_non_null(t);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_trainer_destroy(t);

  tc = cfg_of(GRID, 40, c2, &world);
  tc.max_steps_per_run = 20;
  t = tf_trainer_create(&tc, b.m, dataset(data_x));
  assert_int_equal(tf_trainer_run(t), TF_OK);
  assert_true(tf_trainer_stopped(t));
  tf_trainer_destroy(t);
  drop(&b);
  b = make_model();
  tc.max_steps_per_run = 0;
  t = tf_trainer_create(&tc, b.m, dataset(data_x));
  assert_int_equal(tf_trainer_resume(t, c2), TF_OK);
  assert_int_equal(tf_trainer_step(t), 20);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_trainer_destroy(t);
  assert_memory_equal(tf_params_values(a.p), tf_params_values(b.p),
                      (size_t)tf_params_size(a.p) * sizeof(tf_real));
  drop(&b);

  /* the 40-step checkpoint continues to 60 on rank 0 alone while the others wait */
  MPI_Comm one;
  MPI_Comm_split(MPI_COMM_WORLD, world.rank == 0 ? 0 : MPI_UNDEFINED, 0, &one);
  if (world.rank == 0) {
    tf_dist d1;
    assert_int_equal(tf_dist_from_comm(one, &d1), TF_OK);
    assert_int_equal(d1.size, 1);
    model c = make_model();
    tf_train_config t1 = cfg_of(GRID, 60, NULL, &d1);
    t = tf_trainer_create(&t1, c.m, dataset(data_x));
    assert_int_equal(tf_trainer_resume(t, c1), TF_OK);
    assert_int_equal(tf_trainer_run(t), TF_OK);
    assert_int_equal(tf_trainer_step(t), 60);
    tf_trainer_destroy(t);
    drop(&c);
    MPI_Comm_free(&one);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  drop(&a);
}

/* Bad data on the last rank only: its trainer refuses them, and the agreement hands every
 * rank that rank's message (what `tradeflow train` does after its set-up). */
static void test_bad_input_on_one_rank(void **state) {
  (void)state;
  double *x = malloc(sizeof(double) * NROWS * D);
  assert_non_null(x);
  memcpy(x, data_x, sizeof(double) * NROWS * D);
  if (world.rank == world.size - 1) x[7 * D + 1] = NAN;
  model m = make_model();
  tf_train_config tc = cfg_of(NLL, 10, NULL, &world);
  tf_trainer *t = tf_trainer_create(&tc, m.m, dataset(x));
  const int rc = tf_dist_agree(&world, t ? TF_OK : TF_ENUMERIC);
  assert_int_equal(rc, TF_ENUMERIC);
  char want[64];
  snprintf(want, sizeof want, "rank %d of %d: ", world.size - 1, world.size);
  if (world.size > 1) assert_non_null(strstr(tf_errmsg(), want));
  assert_non_null(strstr(tf_errmsg(), "row 7, column 1"));
  tf_trainer_destroy(t);
  drop(&m);
  free(x);
}

/* Inputs that overflow on the last rank only: every rank skips the same steps and all stop
 * together after max_nonfinite of them. */
static void test_nan_storm_on_one_rank(void **state) {
  (void)state;
  if (world.size == 1) skip();
  double *x = malloc(sizeof(double) * NROWS * D);
  assert_non_null(x);
  memcpy(x, data_x, sizeof(double) * NROWS * D);
  if (world.rank == world.size - 1)
    for (int i = 0; i < NROWS * D; i++) x[i] *= 1e30;
  model m = make_model();
  tf_train_config tc = cfg_of(NLL, 50, NULL, &world);
  tc.max_nonfinite = 3;
  tf_trainer *t = tf_trainer_create(&tc, m.m, dataset(x));
  assert_non_null(t);
  assert_int_equal(tf_trainer_run(t), TF_ENUMERIC);
  assert_int_equal(tf_trainer_step(t), 3);
  assert_int_equal(tf_trainer_skipped(t), 3);
  assert_non_null(strstr(tf_errmsg(), "3 consecutive steps"));
  tf_trainer_destroy(t);
  drop(&m);
  free(x);
}

/* Rank 0 cannot write its checkpoint: every rank fails at that step with rank 0's message. */
static void test_io_failure_on_rank0(void **state) {
  (void)state;
  char bad[300];
  snprintf(bad, sizeof bad, "%s/no/such/dir/ckpt.h5", tmpdir);
  model m = make_model();
  tf_train_config tc = cfg_of(GRID, 30, bad, &world);
  tc.ckpt_every = 10;
  tf_trainer *t = tf_trainer_create(&tc, m.m, dataset(data_x));
  assert_non_null(t);
  assert_int_equal(tf_trainer_run(t), TF_EIO);
  assert_int_equal(tf_trainer_step(t), 10);
  assert_non_null(strstr(tf_errmsg(), "no/such/dir"));
  if (world.size > 1) assert_non_null(strstr(tf_errmsg(), "rank 0 of"));
  tf_trainer_destroy(t);
  drop(&m);
}

/* The replica check itself: a single changed bit on the last rank is found and named. */
static void test_replica_check_finds_a_bit(void **state) {
  (void)state;
  double v[64];
  for (int i = 0; i < 64; i++) v[i] = i * 0.25;
  const void *ptr[2] = {v, v + 32};
  const size_t len[2] = {32 * sizeof(double), 32 * sizeof(double)};
  const char *names[2] = {"first half", "second half"};
  assert_int_equal(tf_dist_check_replicas(&world, 2, ptr, len, names, "test"), TF_OK);
  if (world.size == 1) return;
  if (world.rank == world.size - 1) v[40] = nextafter(v[40], 1e9);
  assert_int_equal(tf_dist_check_replicas(&world, 2, ptr, len, names, "test"), TF_EMPI);
  char want[64];
  snprintf(want, sizeof want, "the second half of 1 rank(s) (%d)", world.size - 1);
  assert_non_null(strstr(tf_errmsg(), want));
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dist_mean_ring),
      cmocka_unit_test(test_replica_check_finds_a_bit),
      cmocka_unit_test(test_replicas_identical_and_runs_repeatable),
      cmocka_unit_test(test_resume),
      cmocka_unit_test(test_bad_input_on_one_rank),
      cmocka_unit_test(test_nan_storm_on_one_rank),
      cmocka_unit_test(test_io_failure_on_rank0),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  return tf_test_mpi_finish(rc);
}
