/* test_model.c — a model family plugs in without editing the trainer, the losses, the evaluator
 * or the command line.
 *
 * The families here are defined entirely in this file:
 *   toy_gauss  p(x | c) = prod_j N(x_j; a_j + b_j log c, exp(2 (s_j + t_j log c))), a
 *              conditional diagonal Gaussian, exact in log p and in d/dc log p;
 *   toy_nodc   the same maths, but declaring no d/dc capability (TRADE must refuse it);
 *   toy_disc   a logistic discriminator D(x) = sigmoid(w . [x, x^2] + b) whose training term
 *              is the BCE of data against samples of a generator model.
 * Built with TOY_CLI_MAIN this file is the executable `tradeflow_toy`: the tradeflow front end
 * (tf_cli_main) with these families registered, which the tests below run as a user would
 * run `tradeflow train`, `sample` and `eval`.  Without it, it is the cmocka suite: the CLI
 * end to end, the capability check of TRADE, and a loop over two networks with two trainers
 * (generator and discriminator) driven through the public trainer API.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/model.h"
#include "tradeflow/physics.h"
#include "tradeflow/rng.h"
#include "tradeflow/train.h"

/* ---- toy_gauss / toy_nodc ----------------------------------------------------------------- */

typedef struct {
  tf_model_common co;
  double init_log_sigma;
} toy_spec;

typedef struct {
  toy_spec spec;
  tf_tensor *a, *b, *s, *t; /* (1, D) each */
} toy_state;

static const tf_cfg_key toy_keys[] = {
    {"model", "init_log_sigma", TF_CFG_REAL, "0", -10, 10, NULL,
     "initial log standard deviation of every coordinate"},
};

static int toy_configure(const tf_config *cfg, const tf_model_common *co, void *spec) {
  toy_spec *s = spec;
  s->co = *co;
  s->init_log_sigma = tf_config_real(cfg, "model", "init_log_sigma");
  return TF_OK;
}

static int toy_create(tf_model *m, const void *spec) {
  toy_state *st = calloc(1, sizeof *st);
  if (!st) return tf_error(TF_ENOMEM, "toy: out of memory");
  st->spec = *(const toy_spec *)spec;
  tf_model_set_state(m, st); /* freed by the default destroy */
  const int64_t shape[2] = {1, st->spec.co.dim};
  tf_params *p = tf_model_params(m);
  st->a = tf_params_declare(p, "toy.a", 2, shape);
  st->b = tf_params_declare(p, "toy.b", 2, shape);
  st->s = tf_params_declare(p, "toy.s", 2, shape);
  st->t = tf_params_declare(p, "toy.t", 2, shape);
  if (!st->a || !st->b || !st->s || !st->t) return TF_EINVAL;
  tf_model_set_shape(m, (int)st->spec.co.dim, (int)st->spec.co.dim, st->spec.co.conditional);
  return TF_OK;
}

static int toy_init(tf_model *m) {
  toy_state *st = tf_model_state(m);
  for (int64_t j = 0; j < st->s->n; j++) st->s->data[j] = (tf_real)st->spec.init_log_sigma;
  return TF_OK;
}

/* mu and log sigma, (N, D) or (1, D) without a condition */
static void toy_moments(toy_state *st, tf_ctx *ctx, tf_tensor *c, tf_tensor **mu,
                        tf_tensor **ls) {
  if (!st->spec.co.conditional || !c) {
    *mu = st->a;
    *ls = st->s;
    return;
  }
  tf_tensor *lc = tf_log(ctx, c);
  *mu = tf_add(ctx, st->a, tf_mul(ctx, st->b, lc));
  *ls = tf_add(ctx, st->s, tf_mul(ctx, st->t, lc));
}

static tf_tensor *toy_log_prob(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  toy_state *st = tf_model_state(m);
  tf_tensor *mu, *ls;
  toy_moments(st, ctx, c, &mu, &ls);
  tf_tensor *z = tf_mul(ctx, tf_sub(ctx, x, mu), tf_exp(ctx, tf_neg(ctx, ls)));
  tf_tensor *e = tf_add(ctx, tf_scale(ctx, tf_square(ctx, z), -0.5), tf_neg(ctx, ls));
  return tf_shift(ctx, tf_sum(ctx, e, -1), -0.5 * (double)st->spec.co.dim * log(2 * 3.14159265358979323846));
}

static tf_tensor *toy_sample(tf_model *m, tf_ctx *ctx, tf_tensor *c, int64_t n, tf_rng *rng,
                             tf_tensor **log_p) {
  toy_state *st = tf_model_state(m);
  tf_tensor *eps = tf_new2(ctx, n, st->spec.co.dim);
  if (!eps) return NULL;
  tf_rng_fill_normal(rng, eps, 0, 1);
  tf_tensor *mu, *ls;
  toy_moments(st, ctx, c, &mu, &ls);
  tf_tensor *x = tf_add(ctx, mu, tf_mul(ctx, tf_exp(ctx, ls), eps));
  if (log_p) *log_p = toy_log_prob(m, ctx, x, c);
  return x;
}

static void toy_describe(const tf_model *m, char *buf, size_t len) {
  snprintf(buf, len, "diagonal Gaussian (toy), D = %d", tf_model_dim(m));
}

static const tf_model_type toy_gauss = {
    .name = "toy_gauss",
    .help = "test family: a conditional diagonal Gaussian",
    .keys = toy_keys,
    .n_keys = 1,
    .caps = TF_MODEL_LOG_PROB | TF_MODEL_DC | TF_MODEL_SAMPLE | TF_MODEL_GRADIENT,
    .spec_size = sizeof(toy_spec),
    .configure = toy_configure,
    .create = toy_create,
    .init = toy_init,
    .log_prob = toy_log_prob,
    .sample = toy_sample,
    .describe = toy_describe,
};

/* toy_gauss without the d/dc capability (filled in by register_toys) */
static tf_model_type toy_nodc;

/* ---- toy_disc ----------------------------------------------------------------------------- */

typedef struct {
  tf_model_common co;
  tf_model *gen; /* borrowed: the generator whose samples are the negatives */
} disc_spec;

typedef struct {
  disc_spec spec;
  tf_tensor *w, *b; /* w (1, 2D) over the features [x, x^2]; b (1) */
} disc_state;

static int disc_create(tf_model *m, const void *spec) {
  disc_state *st = calloc(1, sizeof *st);
  if (!st) return tf_error(TF_ENOMEM, "disc: out of memory");
  st->spec = *(const disc_spec *)spec;
  tf_model_set_state(m, st);
  st->w = tf_params_declare(tf_model_params(m), "disc.w", 2,
                            (int64_t[]){1, 2 * st->spec.co.dim});
  st->b = tf_params_declare(tf_model_params(m), "disc.b", 1, (int64_t[]){1});
  if (!st->w || !st->b) return TF_EINVAL;
  tf_model_set_shape(m, (int)st->spec.co.dim, 1, st->spec.co.conditional);
  return TF_OK;
}

static int disc_init(tf_model *m) {
  (void)m; /* zeros: D = 1/2 everywhere */
  return TF_OK;
}

/* logits (N, 1) */
static tf_tensor *disc_logit(disc_state *st, tf_ctx *ctx, tf_tensor *x) {
  tf_tensor *feat = tf_concat(ctx, 2, (tf_tensor *const[]){x, tf_square(ctx, x)});
  return tf_linear(ctx, feat, st->w, st->b);
}

/* BCE: data labelled 1, generator samples (drawn without recording: the generator is
 * another network with its own trainer) labelled 0 */
static tf_tensor *disc_term(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c,
                            const tf_model_step *s) {
  disc_state *st = tf_model_state(m);
  tf_rng r;
  tf_rng_init(&r, s->seed, (uint32_t)s->rank, TF_RNG_MODEL, (uint32_t)s->step);
  const int grad = tf_ctx_set_grad(ctx, 0);
  tf_tensor *g = tf_model_sample(st->spec.gen, ctx, c, x->shape[0], &r, NULL);
  tf_ctx_set_grad(ctx, grad);
  if (!g) return NULL;
  tf_tensor *ld = disc_logit(st, ctx, x), *lg = disc_logit(st, ctx, g);
  return tf_add(ctx, tf_mean_all(ctx, tf_softplus(ctx, tf_neg(ctx, ld))),
                tf_mean_all(ctx, tf_softplus(ctx, lg)));
}

static const tf_model_type toy_disc = {
    .name = "toy_disc",
    .help = "test family: a logistic discriminator against a generator model",
    .caps = TF_MODEL_GRADIENT,
    .spec_size = sizeof(disc_spec),
    .create = disc_create,
    .init = disc_init,
    .train_term = disc_term,
};

static void register_toys(void) {
  toy_nodc = toy_gauss;
  toy_nodc.name = "toy_nodc";
  toy_nodc.help = "test family: toy_gauss claiming no d/dc log p";
  toy_nodc.caps = TF_MODEL_LOG_PROB | TF_MODEL_SAMPLE | TF_MODEL_GRADIENT;
  toy_nodc.describe = NULL;
  if (tf_model_register(&toy_gauss) != TF_OK || tf_model_register(&toy_nodc) != TF_OK ||
      tf_model_register(&toy_disc) != TF_OK) {
    fprintf(stderr, "test_model: %s\n", tf_errmsg());
    exit(1);
  }
}

#ifdef TOY_CLI_MAIN

int main(int argc, char **argv) {
  register_toys();
  return tf_cli_main(argc, argv);
}

#else /* the cmocka suite */

#include "tradeflow/h5io.h"

#define CLI_OUT_SIZE (1 << 16)
#include "cli/cli_harness.h"

enum { NROWS = 6000, NTEST = 4000 };

/* the truth of the CLI tests: mu = 0.5 + 0.8 log c, log sigma = -0.2 + 0.3 log c, D = 2 */
static double true_mu(double c, int j) { return (j ? -0.3 : 0.5) + 0.8 * log(c); }
static double true_ls(double c, int j) { return (j ? 0.1 : -0.2) + 0.3 * log(c); }

static int write_truth(const char *name, int64_t n, uint32_t stream) {
  double *x = malloc(2 * (size_t)n * sizeof *x), *c = malloc((size_t)n * sizeof *c);
  double *lp = calloc((size_t)n, sizeof *lp);
  tf_rng r;
  tf_rng_init(&r, 11, 0, TF_RNG_TEST, stream);
  for (int64_t i = 0; i < n; i++) {
    c[i] = exp(log(0.5) + tf_rng_uniform(&r) * log(4.0)); /* log-uniform in [0.5, 2] */
    for (int j = 0; j < 2; j++)
      x[2 * i + j] = true_mu(c[i], j) + exp(true_ls(c[i], j)) * tf_rng_normal(&r);
  }
  tf_sample_attrs at = {"toy truth", "", "", "", 0};
  tf_sample_block blk = {n, x, c, lp, NULL, NULL};
  const int rc = tf_samples_write(path_of(name), 2, &at, &blk);
  free(x);
  free(c);
  free(lp);
  return rc;
}

static int setup(void **state) {
  (void)state;
  register_toys();
  if (cli_make_dir("tf_model") != 0) return -1;
  if (write_truth("data.h5", NROWS, 0) != TF_OK || write_truth("test.h5", NTEST, 1) != TF_OK)
    return -1;
  return 0;
}

#define TOY_CONFIG                                                                           \
  "[model]\nfamily = toy_gauss\ninit_log_sigma = 0.5\n"                                      \
  "[data]\nfile = data.h5\ncondition_dataset = c\n"                                          \
  "[train]\nsteps = 600\nbatch = 256\nlr = 0.05\nschedule = constant\nval_every = 200\n"     \
  "log_every = 200\n"

/* train -> sample -> eval of a family the front end was not compiled with */
static void test_cli_train_sample_eval(void **state) {
  (void)state;
  write_file("toy.ini", TOY_CONFIG "[output]\ndir = run\n");
  assert_int_equal(run("train toy.ini"), 0);
  assert_non_null(strstr(out, "diagonal Gaussian (toy), D = 2"));
  assert_non_null(strstr(out, "step 600/600"));
  assert_non_null(strstr(out, "done: 600 steps"));
  /* samples at c = 1.5 have the true moments (within the fit's and the sample's error) */
  assert_int_equal(run("sample run/checkpoint.h5 --n 4000 --condition 1.5 --out s.h5"), 0);
  tf_samples s;
  assert_int_equal(tf_samples_read(path_of("s.h5"), &s), TF_OK);
  assert_int_equal(s.n, 4000);
  assert_int_equal(s.d, 2);
  for (int j = 0; j < 2; j++) {
    double m1 = 0, m2 = 0;
    for (int64_t i = 0; i < s.n; i++) {
      m1 += s.x[2 * i + j] / (double)s.n;
      m2 += s.x[2 * i + j] * s.x[2 * i + j] / (double)s.n;
    }
    const double sd = sqrt(m2 - m1 * m1);
    print_message("coordinate %d at c = 1.5: mean %.4f (true %.4f), log sd %.4f (true %.4f)\n", j,
                  m1, true_mu(1.5, j), log(sd), true_ls(1.5, j));
    assert_true(fabs(m1 - true_mu(1.5, j)) < 0.08);
    assert_true(fabs(log(sd) - true_ls(1.5, j)) < 0.06);
  }
  assert_non_null(strstr(s.config_text, "family = toy_gauss"));
  tf_samples_free(&s);
  /* eval on held-out truth: the NLL is the true one up to the fit and the sample error */
  assert_int_equal(run("eval run/checkpoint.h5 --data test.h5"), 0);
  const char *p = strstr(out, "NLL ");
  assert_non_null(p);
  double nll, se;
  assert_int_equal(sscanf(p, "NLL %lf nats/sample  +- %lf", &nll, &se), 2);
  tf_samples t;
  assert_int_equal(tf_samples_read(path_of("test.h5"), &t), TF_OK);
  double exact = 0;
  for (int64_t i = 0; i < t.n; i++)
    for (int j = 0; j < 2; j++) {
      const double z = (t.x[2 * i + j] - true_mu(t.c[i], j)) / exp(true_ls(t.c[i], j));
      exact += (0.5 * z * z + true_ls(t.c[i], j) + 0.5 * log(2 * 3.14159265358979323846)) / (double)t.n;
    }
  tf_samples_free(&t);
  /* the same rows: the difference has a much smaller error than either; 0.02 nats is the
   * fit's error at 6000 training rows */
  print_message("held-out NLL %.4f +- %.4f, exact %.4f\n", nll, se, exact);
  assert_true(se > 0 && fabs(nll - exact) < 0.02);
  /* resuming the finished run changes nothing and says so */
  assert_int_equal(run("train toy.ini --resume"), 0);
}

static void test_cli_config_per_family(void **state) {
  (void)state;
  assert_int_equal(run("train --help-config"), 0);
  assert_non_null(strstr(out, "[model] keys of family toy_gauss"));
  assert_non_null(strstr(out, "init_log_sigma"));
  assert_non_null(strstr(out, "[model] keys of family coupling"));
  /* a coupling key is not a key of this family */
  write_file("bad1.ini", TOY_CONFIG "[output]\ndir = bad1\n");
  assert_int_equal(run("train bad1.ini --set model.coupling=spline"), 2);
  assert_non_null(strstr(out, "unknown key 'coupling' in section [model]"));
  /* an unknown family names the known ones */
  assert_int_equal(run("train bad1.ini --set model.family=nope"), 2);
  assert_non_null(strstr(out, "unknown model family 'nope'"));
  assert_non_null(strstr(out, "coupling, toy_gauss"));
  /* a resumed run cannot change family */
  write_file("fam.ini", TOY_CONFIG "[output]\ndir = fam\n");
  assert_int_equal(run("train fam.ini --set train.steps=5"), 0);
  assert_int_equal(run("train fam.ini --set train.steps=5 --set model.family=toy_nodc "
                       "--resume"), 2);
  assert_non_null(strstr(out, "model.family is 'toy_gauss'"));
}

/* TRADE asks the family for d/dc log p and refuses one without it, before any step */
static void test_trade_refuses_without_dc(void **state) {
  (void)state;
  write_file("trade.ini", "[model]\nfamily = toy_nodc\n[physics]\nname = gmm\n"
                          "[loss]\nkind = trade\nboundary = reverse_kl\n"
                          "[train]\nsteps = 5\n[output]\ndir = trade\n");
  assert_int_equal(run("train trade.ini"), 2);
  assert_non_null(strstr(out, "loss trade: model family 'toy_nodc' has no d/dc log p(x | c)"));
  assert_false(exists("trade/checkpoint.h5"));
  /* the same run with the family that has it starts */
  assert_int_equal(run("train trade.ini --set model.family=toy_gauss --set output.dir=trade2"),
                   0);
}

/* ---- two networks, two trainers, one loop --------------------------------------------------- */

enum { D2 = 2, N2 = 8000, STEPS2 = 300, NACC = 4000 };

static double *two_data(void) {
  double *x = malloc(D2 * N2 * sizeof *x);
  tf_rng r;
  tf_rng_init(&r, 21, 0, TF_RNG_TEST, 7);
  for (int i = 0; i < N2; i++) {
    x[D2 * i] = 1.0 + 0.7 * tf_rng_normal(&r);
    x[D2 * i + 1] = -0.5 + 1.3 * tf_rng_normal(&r);
  }
  return x;
}

static tf_model *make_gen(void) {
  toy_spec gs = {{D2, 0, 1}, 0.0};
  tf_model *g = tf_model_create(&toy_gauss, &gs);
  assert_non_null(g);
  assert_int_equal(tf_model_init(g), TF_OK);
  return g;
}

static tf_train_config two_cfg(uint64_t seed) {
  tf_train_config tc = tf_train_defaults();
  tc.steps = 2 * STEPS2;
  tc.batch = 256;
  tc.val_every = 0;
  tc.log_every = 0;
  tc.lr.kind = TF_LR_CONSTANT;
  tc.lr.lr = 0.02;
  tc.seed = seed;
  return tc;
}

/* discriminator accuracy on fresh data and fresh generator samples */
static double accuracy(tf_model *disc, tf_model *gen) {
  disc_state *st = tf_model_state(disc);
  tf_ctx *ctx = tf_ctx_create(0);
  tf_ctx_set_grad(ctx, 0);
  tf_rng r;
  tf_rng_init(&r, 99, 0, TF_RNG_TEST, 8);
  tf_tensor *xd = tf_new2(ctx, NACC, D2);
  for (int i = 0; i < NACC; i++) {
    xd->data[D2 * i] = (tf_real)(1.0 + 0.7 * tf_rng_normal(&r));
    xd->data[D2 * i + 1] = (tf_real)(-0.5 + 1.3 * tf_rng_normal(&r));
  }
  tf_tensor *xg = tf_model_sample(gen, ctx, NULL, NACC, &r, NULL);
  tf_tensor *ld = disc_logit(st, ctx, xd), *lg = disc_logit(st, ctx, xg);
  assert_non_null(ld);
  assert_non_null(lg);
  double right = 0;
  for (int i = 0; i < NACC; i++) right += (ld->data[i] > 0) + (lg->data[i] < 0);
  tf_ctx_destroy(ctx);
  return right / (2.0 * NACC);
}

static void test_two_networks(void **state) {
  (void)state;
  double *x = two_data();
  tf_dataset ds = {N2, D2, x, NULL, 1};
  tf_model *gen = make_gen(), *alone = make_gen();
  disc_spec dsp = {{D2, 0, 1}, gen};
  tf_model *disc = tf_model_create(&toy_disc, &dsp);
  assert_non_null(disc);
  assert_int_equal(tf_model_init(disc), TF_OK);
  const tf_train_config tg = two_cfg(3), td = two_cfg(4);
  tf_trainer *a = tf_trainer_create(&tg, gen, &ds), *b = tf_trainer_create(&td, disc, &ds);
  tf_trainer *ref = tf_trainer_create(&tg, alone, &ds);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(ref);
  assert_int_equal(tf_trainer_set(a), TF_OK);
  assert_int_equal(tf_trainer_set(b), TF_OK);
  assert_int_equal(tf_trainer_set(ref), TF_OK);
  /* alternate: a generator step, then a discriminator step on the generator's new state */
  for (int s = 0; s < STEPS2; s++) {
    assert_int_equal(tf_trainer_iterate(a), TF_OK);
    assert_int_equal(tf_trainer_iterate(b), TF_OK);
    assert_int_equal(tf_trainer_iterate(ref), TF_OK);
  }
  tf_trainer_info ia, ib;
  tf_trainer_state(a, &ia);
  tf_trainer_state(b, &ib);
  assert_int_equal(ia.step, STEPS2);
  assert_int_equal(ib.step, STEPS2);
  assert_int_equal(ib.skipped, 0);
  /* the discriminator's loop does not touch the generator: bit for bit the one trained alone */
  tf_params *pg = tf_model_params(gen), *pr = tf_model_params(alone);
  assert_memory_equal(tf_params_values(pg), tf_params_values(pr),
                      (size_t)tf_params_size(pg) * sizeof(tf_real));
  /* a generator that fits the data cannot be told from it (BCE near 2 log 2) ... */
  const double acc_fit = accuracy(disc, gen);
  print_message("fitted generator: BCE %.4f (2 log 2 = %.4f), accuracy %.3f\n", ib.loss,
                2 * log(2.0), acc_fit);
  assert_true(fabs(ib.loss - 2 * log(2.0)) < 0.05);
  assert_true(acc_fit < 0.56);
  /* ... a shifted one can: the discriminator alone trains on, the generator frozen */
  toy_state *gs = tf_model_state(gen);
  gs->a->data[0] += (tf_real)1.5;
  for (int s = 0; s < STEPS2; s++) assert_int_equal(tf_trainer_iterate(b), TF_OK);
  const double acc_shift = accuracy(disc, gen);
  print_message("shifted generator: accuracy %.3f\n", acc_shift);
  assert_true(acc_shift > 0.78); /* the Bayes rate for this shift is Phi(1.07) = 0.86 */
  tf_trainer_state(b, &ib);
  assert_true(ib.loss < 2 * log(2.0) - 0.3);
  tf_trainer_destroy(a);
  tf_trainer_destroy(b);
  tf_trainer_destroy(ref);
  tf_model_destroy(disc);
  tf_model_destroy(gen);
  tf_model_destroy(alone);
  free(x);
}

/* the registry's own checks */
static void test_registry(void **state) {
  (void)state;
  assert_non_null(tf_model_type_find("coupling"));
  assert_ptr_equal(tf_model_type_find("toy_gauss"), &toy_gauss);
  assert_int_equal(tf_model_register(&toy_gauss), TF_OK); /* twice: harmless */
  tf_model_type dup = toy_gauss;
  assert_int_equal(tf_model_register(&dup), TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "exists already"));
  tf_model_type clash = toy_gauss;
  clash.name = "toy_clash";
  static const tf_cfg_key bad_key[] = {{"model", "dim", TF_CFG_INT, "0", 1, 0, NULL, "x"}};
  clash.keys = bad_key;
  assert_int_equal(tf_model_register(&clash), TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "model.dim is common"));
  char fam[64];
  tf_model_family_of("[model]\nblocks = 2\n", 0, NULL, fam, sizeof fam);
  assert_string_equal(fam, "coupling");
  tf_model_family_of("[ model ]\nfamily = toy_gauss ; a comment\n", 0, NULL, fam, sizeof fam);
  assert_string_equal(fam, "toy_gauss");
  const char *set[] = {"train.steps=3", " model.family = toy_nodc "};
  tf_model_family_of("[model]\nfamily = toy_gauss\n", 2, set, fam, sizeof fam);
  assert_string_equal(fam, "toy_nodc");
  /* a family without a hook fails the context with the family named */
  disc_spec dsp = {{D2, 0, 1}, NULL};
  tf_model *disc = tf_model_create(&toy_disc, &dsp);
  tf_ctx *ctx = tf_ctx_create(0);
  assert_null(tf_model_log_prob(disc, ctx, tf_new2(ctx, 3, D2), NULL));
  assert_int_equal(tf_ctx_status(ctx), TF_EUNSUP);
  assert_non_null(strstr(tf_errmsg(), "toy_disc has no exact log-density"));
  assert_int_equal(tf_model_require(disc, TF_MODEL_LOG_PROB, "eval"), TF_EUNSUP);
  tf_ctx_destroy(ctx);
  tf_model_destroy(disc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_two_networks),
      cmocka_unit_test(test_cli_train_sample_eval),
      cmocka_unit_test(test_cli_config_per_family),
      cmocka_unit_test(test_trade_refuses_without_dc),
  };
  return cmocka_run_group_tests(tests, setup, cli_teardown);
}

#endif
