/* test_trainer.c — the training loop: exact resumption (200 steps in one run against 100 +
 * resume + 100, bit for bit), the non-finite guard (skip, count, stop, checkpoint intact),
 * parameter averaging (resumed exactly, validated on the average), validation split, data
 * checks, that training lowers the NLL, and symmetry augmentation
 * (a flow trained on one DW4 configuration learns its whole orbit). */
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

enum { NROWS = 3000, D = 3 };

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(tmpdir, sizeof tmpdir, "%s/tf_trainer_XXXXXX", base);
  return mkdtemp(tmpdir) ? 0 : -1;
}

/* path of a file in this suite's temporary directory */
static void tmp_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", tmpdir, name);
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

/* A correlated, skewed 3-D data set with conditions in [0.5, 2] scaling its width. */
static void make_data(double *x, double *c) {
  tf_rng r;
  tf_rng_init(&r, 77, 0, TF_RNG_TEST, 0);
  for (int i = 0; i < NROWS; i++) {
    const double ci = 0.5 + 1.5 * tf_rng_uniform(&r), s = sqrt(ci);
    const double a = tf_rng_normal(&r), b = tf_rng_normal(&r), e = tf_rng_normal(&r);
    x[i * D + 0] = s * a;
    x[i * D + 1] = s * (0.5 * a * a + 0.3 * b);
    x[i * D + 2] = s * (0.8 * b - 0.2 * a + 0.1 * e);
    c[i] = ci;
  }
}

/* The data set the trainer tests share: make_data's rows in owned buffers. */
typedef struct {
  double *x, *c;
  tf_dataset ds;
} data;

static data data_make(void) {
  data d;
  d.x = malloc(NROWS * D * sizeof *d.x);
  d.c = malloc(NROWS * sizeof *d.c);
  assert_non_null(d.x);
  assert_non_null(d.c);
  make_data(d.x, d.c);
  d.ds = (tf_dataset){NROWS, D, d.x, d.c, 0};
  return d;
}

static void data_free(data *d) {
  free(d->x);
  free(d->c);
}

typedef struct {
  tf_model *m;   /* owns p and f */
  tf_params *p;
  tf_flow *f;
} model;

static model build(const tf_flow_config *fc) {
  model m;
  m.m = tf_flow_model_create(fc);
  m.p = tf_model_params(m.m);
  m.f = tf_flow_of(m.m);
  assert_non_null(m.f);
  assert_int_equal(tf_model_init(m.m), TF_OK);
  return m;
}

static model make_model(int actnorm) {
  tf_flow_config fc = tf_flow_defaults(D);
  fc.n_blocks = 3;
  fc.hidden = 24;
  fc.embed_dim = 4;
  fc.actnorm = actnorm;
  fc.coupling = actnorm ? TF_COUPLING_SPLINE : TF_COUPLING_AFFINE;
  fc.spline_bound = 4;
  return build(&fc);
}

static void drop(model *m) {
  tf_model_destroy(m->m);
}

static tf_train_config train_cfg(const char *ckpt, int64_t steps) {
  tf_train_config tc = tf_train_defaults();
  tc.steps = steps;
  tc.batch = 64;
  tc.val_every = 50;
  tc.log_every = 0;
  tc.ckpt_every = 70;
  tc.checkpoint = ckpt;
  tc.config_text = "[train]\nsteps = 200\n";
  tc.lr.kind = TF_LR_ONECYCLE; /* depends on the step and the total: a strict resume test */
  tc.lr.lr = 3e-3;
  tc.optim = tf_optim_defaults(TF_OPTIM_ADAMW);
  tc.optim.weight_decay = 1e-3;
  tc.optim.clip_norm = 5;
  tc.seed = 5;
  return tc;
}

static void test_resume_bit_identical(void **state) {
  (void)state;
  data dd = data_make();
  tf_dataset ds = dd.ds;
  char pa[300], pb[300];
  tmp_path(pa, sizeof pa, "a.h5");
  tmp_path(pb, sizeof pb, "b.h5");
  for (int actnorm = 0; actnorm <= 1; actnorm++) {
    /* A: 200 steps in one go */
    model a = make_model(actnorm);
    tf_train_config tc = train_cfg(pa, 200);
    tf_trainer *ta = tf_trainer_create(&tc, a.m, &ds);
    assert_non_null(ta);
    assert_int_equal(tf_trainer_run(ta), TF_OK);
    assert_int_equal(tf_trainer_step(ta), 200);
    /* B: 100 steps, stop, a fresh process-like rebuild, resume, 100 more */
    model b = make_model(actnorm);
    tf_train_config tb = train_cfg(pb, 200);
    tb.max_steps_per_run = 100;
    tf_trainer *t1 = tf_trainer_create(&tb, b.m, &ds);
    assert_int_equal(tf_trainer_run(t1), TF_OK);
    assert_int_equal(tf_trainer_stopped(t1), 1);
    assert_int_equal(tf_trainer_step(t1), 100);
    tf_trainer_destroy(t1);
    drop(&b);
    b = make_model(actnorm);
    tf_trainer *t2 = tf_trainer_create(&tb, b.m, &ds);
    assert_int_equal(tf_trainer_resume(t2, pb), TF_OK);
    assert_int_equal(tf_trainer_step(t2), 100);
    assert_int_equal(tf_trainer_run(t2), TF_OK);
    assert_int_equal(tf_trainer_step(t2), 200);
    const int64_t n = tf_params_size(a.p);
    assert_int_equal(n, tf_params_size(b.p));
    assert_memory_equal(tf_params_values(a.p), tf_params_values(b.p), (size_t)n * sizeof(tf_real));
    /* and the training moved the parameters (the comparison is not of two initial states) */
    model fresh = make_model(actnorm);
    assert_memory_not_equal(tf_params_values(a.p), tf_params_values(fresh.p),
                            (size_t)n * sizeof(tf_real));
    drop(&fresh);
    /* the final checkpoints agree too, moments included */
    model ra = make_model(actnorm), rb = make_model(actnorm);
    tf_optim *oa = tf_optim_create(&tc.optim, n), *ob = tf_optim_create(&tc.optim, n);
    assert_int_equal(tf_checkpoint_load(pa, ra.p, oa, NULL), TF_OK);
    assert_int_equal(tf_checkpoint_load(pb, rb.p, ob, NULL), TF_OK);
    assert_memory_equal(tf_optim_m(oa), tf_optim_m(ob), (size_t)n * sizeof(double));
    assert_memory_equal(tf_optim_v(oa), tf_optim_v(ob), (size_t)n * sizeof(double));
    assert_int_equal(tf_optim_steps(oa), tf_optim_steps(ob));
    assert_memory_equal(tf_params_values(ra.p), tf_params_values(a.p), (size_t)n * sizeof(tf_real));
    tf_optim_destroy(oa);
    tf_optim_destroy(ob);
    drop(&ra);
    drop(&rb);
    tf_trainer_destroy(ta);
    tf_trainer_destroy(t2);
    drop(&a);
    drop(&b);
  }
  data_free(&dd);
}

/* Parameter averaging: a resumed run continues the average bit for bit, the validation loss
 * is that of the average (what the checkpoint gives to tf_checkpoint_load_averaged), and the
 * average differs from the raw parameters it was built from. */
static void test_parameter_average(void **state) {
  (void)state;
  data dd = data_make();
  tf_dataset ds = dd.ds;
  char pa[300], pb[300];
  tmp_path(pa, sizeof pa, "ema_a.h5");
  tmp_path(pb, sizeof pb, "ema_b.h5");
  model a = make_model(0), b = make_model(0);
  tf_train_config tc = train_cfg(pa, 120), tb = train_cfg(pb, 120);
  tc.optim.ema_decay = tb.optim.ema_decay = 0.95;
  tc.val_every = tb.val_every = 0; /* the final validation only: best = last */
  tf_trainer *ta = tf_trainer_create(&tc, a.m, &ds);
  assert_int_equal(tf_trainer_run(ta), TF_OK);
  tb.max_steps_per_run = 50;
  tf_trainer *t1 = tf_trainer_create(&tb, b.m, &ds);
  assert_int_equal(tf_trainer_run(t1), TF_OK);
  tf_trainer_destroy(t1);
  drop(&b);
  b = make_model(0);
  tb.max_steps_per_run = 0;
  tf_trainer *t2 = tf_trainer_create(&tb, b.m, &ds);
  assert_int_equal(tf_trainer_resume(t2, pb), TF_OK);
  assert_int_equal(tf_trainer_step(t2), 50);
  assert_int_equal(tf_trainer_run(t2), TF_OK);
  assert_int_equal(tf_trainer_step(t2), 120);
  const int64_t n = tf_params_size(a.p);
  tf_optim *oa = tf_optim_create(&tc.optim, n), *ob = tf_optim_create(&tb.optim, n);
  model ra = make_model(0), rb = make_model(0);
  tf_checkpoint_meta ma;
  tf_checkpoint_meta_init(&ma);
  assert_int_equal(tf_checkpoint_load(pa, ra.p, oa, &ma), TF_OK);
  assert_int_equal(tf_checkpoint_load(pb, rb.p, ob, NULL), TF_OK);
  assert_memory_equal(tf_optim_ema(oa), tf_optim_ema(ob), (size_t)n * sizeof(double));
  assert_memory_equal(tf_params_values(a.p), tf_params_values(b.p), (size_t)n * sizeof(tf_real));
  /* the trainer left the raw parameters in the model (validation swapped them back) */
  assert_memory_equal(tf_params_values(ra.p), tf_params_values(a.p), (size_t)n * sizeof(tf_real));
  /* the recorded validation loss is the averaged model's */
  model avg = make_model(0);
  int averaged = 0;
  assert_int_equal(tf_checkpoint_load_averaged(pa, avg.p, &averaged, NULL), TF_OK);
  assert_int_equal(averaged, 1);
  tf_train_config te = train_cfg(NULL, 1);
  tf_trainer *tv = tf_trainer_create(&te, avg.m, &ds);
  tf_trainer *tr = tf_trainer_create(&te, ra.m, &ds);
  const double nll_avg = tf_trainer_val_nll(tv), nll_raw = tf_trainer_val_nll(tr);
  assert_true(isfinite(nll_avg) && nll_avg == ma.best_val_loss);
  assert_true(nll_raw != nll_avg);
  double diff = 0;
  for (int64_t i = 0; i < n; i++)
    diff = fmax(diff, fabs((double)tf_params_values(avg.p)[i] - (double)tf_params_values(ra.p)[i]));
  assert_true(diff > 1e-4);
  /* a run with no accepted step averages nothing: the average is the parameters */
  char p0[300];
  tmp_path(p0, sizeof p0, "ema_0.h5");
  model z = make_model(0);
  tf_train_config t0 = train_cfg(p0, 0);
  t0.optim.ema_decay = 0.95;
  tf_trainer *tz = tf_trainer_create(&t0, z.m, &ds);
  assert_int_equal(tf_trainer_run(tz), TF_OK);
  model zl = make_model(0);
  assert_int_equal(tf_checkpoint_load_averaged(p0, zl.p, &averaged, NULL), TF_OK);
  assert_int_equal(averaged, 1);
  assert_memory_equal(tf_params_values(zl.p), tf_params_values(z.p), (size_t)n * sizeof(tf_real));
  tf_trainer_destroy(tz);
  drop(&z);
  drop(&zl);
  tf_checkpoint_meta_clear(&ma);
  tf_trainer_destroy(tv);
  tf_trainer_destroy(tr);
  tf_trainer_destroy(ta);
  tf_trainer_destroy(t2);
  tf_optim_destroy(oa);
  tf_optim_destroy(ob);
  drop(&a);
  drop(&b);
  drop(&ra);
  drop(&rb);
  drop(&avg);
  data_free(&dd);
}

static long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static void test_nonfinite_stops_and_keeps_checkpoint(void **state) {
  (void)state;
  data dd = data_make();
  tf_dataset ds = dd.ds;
  double *x = dd.x;
  char p[300];
  tmp_path(p, sizeof p, "good.h5");
  model m = make_model(0);
  tf_train_config tc = train_cfg(p, 40);
  tf_trainer *t = tf_trainer_create(&tc, m.m, &ds);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_trainer_destroy(t);
  const long size0 = file_size(p);
  assert_true(size0 > 0);
  const int64_t n = tf_params_size(m.p);
  tf_real *before = malloc((size_t)n * sizeof *before);
  memcpy(before, tf_params_values(m.p), (size_t)n * sizeof *before);
  /* finite data whose squares overflow: every batch's loss is infinite */
  for (int i = 0; i < NROWS * D; i++) x[i] = i % 2 ? 1e200 : -1e200;
  tc.steps = 1000;
  tc.max_nonfinite = 7;
  t = tf_trainer_create(&tc, m.m, &ds);
  assert_int_equal(tf_trainer_resume(t, p), TF_OK);
  assert_int_equal(tf_trainer_run(t), TF_ENUMERIC);
  assert_non_null(strstr(tf_errmsg(), "7 consecutive steps with a non-finite"));
  assert_non_null(strstr(tf_errmsg(), p));
  assert_int_equal(tf_trainer_skipped(t), 7);
  assert_memory_equal(before, tf_params_values(m.p), (size_t)n * sizeof *before);
  assert_int_equal(file_size(p), size0);
  tf_checkpoint_meta meta;
  tf_checkpoint_meta_init(&meta);
  assert_int_equal(tf_checkpoint_read_meta(p, &meta), TF_OK);
  assert_int_equal(meta.step, 40);
  tf_checkpoint_meta_clear(&meta);
  tf_trainer_destroy(t);
  free(before);
  drop(&m);
  data_free(&dd);
}

/* A finite gradient with a non-finite update (here a learning rate of 1e300): the run stops at
 * that step naming the parameter, and the checkpoint on disk stays the last good one. */
static void test_nonfinite_update_keeps_checkpoint(void **state) {
  (void)state;
  data dd = data_make();
  char p[300];
  tmp_path(p, sizeof p, "update.h5");
  model m = make_model(0);
  tf_train_config tc = train_cfg(p, 40);
  tf_trainer *t = tf_trainer_create(&tc, m.m, &dd.ds);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_trainer_destroy(t);
  const long size0 = file_size(p);
  tc.steps = 100;
  tc.lr.kind = TF_LR_CONSTANT;
  tc.lr.lr = 1e300;
  t = tf_trainer_create(&tc, m.m, &dd.ds);
  assert_int_equal(tf_trainer_resume(t, p), TF_OK);
  assert_int_equal(tf_trainer_run(t), TF_ENUMERIC);
  assert_non_null(strstr(tf_errmsg(), "step 41: the update made parameter"));
  assert_non_null(strstr(tf_errmsg(), "the last one is intact"));
  assert_int_equal(file_size(p), size0);
  tf_checkpoint_meta meta;
  tf_checkpoint_meta_init(&meta);
  assert_int_equal(tf_checkpoint_read_meta(p, &meta), TF_OK);
  assert_int_equal(meta.step, 40);
  tf_checkpoint_meta_clear(&meta);
  tf_trainer_destroy(t);
  drop(&m);
  data_free(&dd);
}

static void test_data_checks(void **state) {
  (void)state;
  data dd = data_make();
  double *x = dd.x, *c = dd.c;
  model m = make_model(0);
  tf_train_config tc = train_cfg(NULL, 10);
  tf_dataset ds = dd.ds;
  ds.d = D - 1;
  assert_null(tf_trainer_create(&tc, m.m, &ds));
  assert_non_null(strstr(tf_errmsg(), "2 columns, the flow has dimension 3"));
  ds.d = D;
  x[7 * D + 1] = NAN;
  assert_null(tf_trainer_create(&tc, m.m, &ds));
  assert_non_null(strstr(tf_errmsg(), "row 7, column 1"));
  x[7 * D + 1] = 0;
  c[11] = -1;
  assert_null(tf_trainer_create(&tc, m.m, &ds));
  assert_non_null(strstr(tf_errmsg(), "condition of row 11"));
  c[11] = 1;
  ds.n = 50;
  assert_null(tf_trainer_create(&tc, m.m, &ds));
  assert_non_null(strstr(tf_errmsg(), "fewer than one batch"));
  drop(&m);
  data_free(&dd);
}

/* Training must lower the validation NLL well below that of the initial (identity) flow. */
static void test_training_lowers_nll(void **state) {
  (void)state;
  data dd = data_make();
  tf_dataset ds = dd.ds;
  model m = make_model(1);
  tf_train_config tc = train_cfg(NULL, 400);
  tc.lr.kind = TF_LR_COSINE;
  tc.lr.lr = 3e-3;
  tf_trainer *t = tf_trainer_create(&tc, m.m, &ds);
  const double nll0 = tf_trainer_val_nll(t);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  const double nll1 = tf_trainer_val_nll(t);
  /* measured: 4.34 for the identity flow, 1.48 after 400 steps */
  assert_true(nll1 < nll0 - 2.0);
  tf_trainer_destroy(t);
  drop(&m);
  data_free(&dd);
}

/* One DW4 configuration repeated: without augmentation the flow can only learn a blob around
 * that point; with it the training set is the configuration's orbit under permutations,
 * rotations and reflections, so the flow must give its random images about the density of
 * the point itself.  The gap log p(x0) - <log p(g x0)> over 500 images measures which. */
static double orbit_gap(int augment, const tf_physics *ph, int64_t steps) {
  enum { N = 2048, DW = 6, NIMG = 500 };
  double *x = malloc(N * DW * sizeof *x), *img = malloc((NIMG + 1) * DW * sizeof *img);
  double lp[NIMG + 1];
  assert_non_null(x);
  assert_non_null(img);
  const double X0[8] = {-2.1, -1.7, 2.4, -2.0, 1.9, 2.3, -2.2, 1.8}; /* near the square */
  assert_int_equal(tf_physics_import(ph, 1, 8, X0, x), TF_OK);
  for (int i = 1; i < N; i++) memcpy(x + i * DW, x, DW * sizeof *x);
  memcpy(img, x, DW * sizeof *x);
  for (int i = 1; i <= NIMG; i++) memcpy(img + i * DW, x, DW * sizeof *x);
  tf_rng r;
  tf_rng_init(&r, 3, 0, TF_RNG_TEST, 0);
  assert_int_equal(tf_physics_augment(ph, NIMG, img + DW, &r), TF_OK);

  tf_flow_config fc = tf_flow_defaults(DW);
  fc.conditional = 0;
  fc.n_blocks = 4;
  fc.hidden = 32;
  model m = build(&fc);
  tf_dataset ds = {N, DW, x, NULL, 1};
  tf_train_config tc = train_cfg(NULL, steps);
  tc.lr.kind = TF_LR_COSINE;
  tc.lr.lr = 3e-3;
  tc.batch = 128;
  tc.augment = augment;
  tc.loss.physics = ph;
  tf_trainer *t = tf_trainer_create(&tc, m.m, &ds);
  assert_non_null(t);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_ctx *ctx = tf_ctx_create(0);
  tf_dataset di = {NIMG + 1, DW, img, NULL, 1};
  assert_int_equal(tf_dataset_log_prob(m.m, ctx, &di, NULL, NIMG + 1, lp), TF_OK);
  double mean = 0;
  for (int i = 1; i <= NIMG; i++) mean += lp[i] / NIMG;
  print_message("  augment = %d: log p(x0) = %.2f, mean log p over %d images = %.2f\n", augment,
                lp[0], NIMG, mean);
  tf_ctx_destroy(ctx);
  tf_trainer_destroy(t);
  drop(&m);
  free(x);
  free(img);
  return lp[0] - mean;
}

static void test_augmentation(void **state) {
  (void)state;
  tf_physics *ph = NULL;
  assert_int_equal(tf_physics_create("dw4", 0, NULL, &ph), TF_OK);
  const double plain = orbit_gap(0, ph, 300), aug = orbit_gap(1, ph, 300);
  /* measured: a gap of 1.1e4 nats without augmentation, 0.1 with it */
  assert_true(plain > 20);
  assert_true(aug < 5);
  /* a module without a symmetry group is refused at creation */
  tf_physics *gm = NULL;
  assert_int_equal(tf_physics_create("gmm", 0, NULL, &gm), TF_OK);
  double x[2 * 300] = {0};
  tf_dataset ds = {300, 2, x, NULL, 1};
  model m = make_model(0);
  tf_train_config tc = train_cfg(NULL, 1);
  tc.augment = 1;
  tc.loss.physics = gm;
  assert_null(tf_trainer_create(&tc, m.m, &ds));
  assert_non_null(strstr(tf_errmsg(), "gmm"));
  drop(&m);
  tf_physics_destroy(gm);
  tf_physics_destroy(ph);
}

/* tf_model_draw gives the same samples whatever the piece size, also where D is large enough
 * for the piece cap (16384 / D rows: 4 at D = 4096) to split the requested 13-row piece */
static void test_draw_independent_of_chunk(void **state) {
  (void)state;
  const int64_t dims[] = {3, 4096}, n = 13;
  for (int t = 0; t < 2; t++) {
    const int64_t d = dims[t];
    tf_flow_config fc = tf_flow_defaults(d);
    fc.n_blocks = 2;
    fc.hidden = 8;
    fc.embed_dim = 4;
    model m = build(&fc);
    tf_ctx *ctx = tf_ctx_create(0);
    double *x1 = malloc(sizeof(double) * (size_t)(2 * n * d)), *x2 = x1 + n * d, lp1[13], lp2[13];
    assert_non_null(x1);
    tf_rng r1, r2;
    tf_rng_init(&r1, 9, 0, TF_RNG_LATENT, 0);
    tf_rng_init(&r2, 9, 0, TF_RNG_LATENT, 0);
    assert_int_equal(tf_model_draw(m.m, ctx, 0.7, n, n, &r1, x1, lp1), TF_OK);
    assert_int_equal(tf_model_draw(m.m, ctx, 0.7, n, t ? 1 : 5, &r2, x2, lp2), TF_OK);
    assert_memory_equal(x1, x2, sizeof(double) * (size_t)(n * d));
    assert_memory_equal(lp1, lp2, sizeof lp1);
    for (int64_t i = 0; i < n; i++) assert_true(isfinite(lp1[i]));
    free(x1);
    tf_ctx_destroy(ctx);
    drop(&m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resume_bit_identical),
      cmocka_unit_test(test_parameter_average),
      cmocka_unit_test(test_nonfinite_stops_and_keeps_checkpoint),
      cmocka_unit_test(test_nonfinite_update_keeps_checkpoint),
      cmocka_unit_test(test_data_checks),
      cmocka_unit_test(test_training_lowers_nll),
      cmocka_unit_test(test_augmentation),
      cmocka_unit_test(test_draw_independent_of_chunk),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
