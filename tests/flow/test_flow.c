/* test_flow.c — conditional coupling flows: round trip, log-determinant against the
 * brute-force Jacobian, d/dc log p against finite differences, parameter gradients, sampling,
 * identity at initialisation, ActNorm data initialisation.  Every property is checked for
 * every layer type (affine and spline couplings, MLP and periodic-conv subnets, ActNorm),
 * each alone in a one-block flow and stacked in a three-block flow.
 * Built twice: in float64 (tight tolerances, finite differences) and float32 (round trip and
 * log-det at float32 accuracy, as the issue asks). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tradeflow/flow.h"
#include "tradeflow/jacobian.h"

#ifdef TF_DOUBLE
#define RT_TOL 1e-12
#define LD_TOL 1e-10
#else
#define RT_TOL 1e-5
#define LD_TOL 1e-4
#endif

enum { N = 7, DMAX = 8 };

/* Layer variants: (coupling, subnet, actnorm, blocks).  The spline's bound is small enough
 * that the test inputs (sd 1.5) reach both tails. */
typedef struct {
  const char *name;
  int coupling, subnet, actnorm, n_blocks;
} variant;
static const variant VARIANTS[] = {
    {"affine mlp", TF_COUPLING_AFFINE, TF_SUBNET_MLP, 0, 3},
    {"affine mlp, 1 block", TF_COUPLING_AFFINE, TF_SUBNET_MLP, 0, 1},
    {"spline mlp", TF_COUPLING_SPLINE, TF_SUBNET_MLP, 0, 3},
    {"spline mlp, 1 block", TF_COUPLING_SPLINE, TF_SUBNET_MLP, 0, 1},
    {"affine conv", TF_COUPLING_AFFINE, TF_SUBNET_CONV, 0, 3},
    {"spline conv, 1 block", TF_COUPLING_SPLINE, TF_SUBNET_CONV, 0, 1},
    {"actnorm + affine mlp, 1 block", TF_COUPLING_AFFINE, TF_SUBNET_MLP, 1, 1},
    {"actnorm + spline conv", TF_COUPLING_SPLINE, TF_SUBNET_CONV, 1, 3},
};
enum { NV = sizeof VARIANTS / sizeof VARIANTS[0] };

static int D = 5; /* the current fixture's dimension: 5 for MLP, 2 x 4 lattice for conv */
static int SYM = 0; /* the sign-symmetric mixture (q(x) + q(-x)) / 2 in every fixture */

typedef struct {
  tf_params *p;
  tf_flow *f;
  tf_ctx *ctx;
} fixture;

static tf_flow_config variant_config(const variant *v, int conditional, int base_temperature,
                                     uint64_t seed) {
  const int conv = v->subnet == TF_SUBNET_CONV;
  D = conv ? 8 : 5;
  tf_flow_config cfg = tf_flow_defaults(D);
  cfg.conditional = conditional;
  cfg.base_temperature = base_temperature != 0; /* 1: N(0, c I), 2: N(0, I / c) */
  cfg.base_inverse = base_temperature == 2;
  cfg.n_blocks = v->n_blocks;
  cfg.hidden = conv ? 6 : 16;
  cfg.embed_dim = 4;
  cfg.coupling = v->coupling;
  cfg.spline_bins = 5;
  cfg.spline_bound = 2.5;
  cfg.subnet = v->subnet;
  cfg.lattice[0] = 2;
  cfg.lattice[1] = 4;
  cfg.actnorm = v->actnorm;
  cfg.sign_symmetric = SYM;
  cfg.seed = seed;
  return cfg;
}

/* A flow whose every parameter is random (a freshly initialised flow is the identity). */
static fixture make_v(const variant *v, int conditional, int base_temperature, uint64_t seed) {
  fixture fx;
  tf_flow_config cfg = variant_config(v, conditional, base_temperature, seed);
  fx.p = tf_params_create();
  fx.f = tf_flow_create(&cfg, fx.p);
  assert_non_null(fx.f);
  assert_int_equal(tf_params_finalize(fx.p), TF_OK);
  assert_int_equal(tf_flow_init(fx.f), TF_OK);
  tf_rng r;
  tf_rng_init(&r, seed, 0, TF_RNG_TEST, 0);
  /* scaled by fan-in, so that stacked spline blocks stay well conditioned (a random spline
   * with extreme bins compresses by e^-5 per feature, and a round trip through such a map
   * measures its condition number rather than the inverse's accuracy) */
  for (int i = 0; i < tf_params_count(fx.p); i++) {
    tf_tensor *t = tf_params_tensor(fx.p, i);
    const double fan_in = t->ndim >= 2 ? (double)(t->n / t->shape[0]) : 1.0;
    tf_rng_fill_normal(&r, t, 0, fmin(0.3, 1.0 / sqrt(fan_in)));
  }
  fx.ctx = tf_ctx_create(0);
  return fx;
}

static fixture make(int conditional, int base_temperature, uint64_t seed) {
  return make_v(&VARIANTS[0], conditional, base_temperature, seed);
}

static void drop(fixture *fx) {
  tf_ctx_destroy(fx->ctx);
  tf_flow_destroy(fx->f);
  tf_params_destroy(fx->p);
}

static tf_tensor *batch(tf_ctx *ctx, uint32_t step) {
  tf_rng r;
  tf_rng_init(&r, 5, 0, TF_RNG_TEST, step);
  tf_tensor *x = tf_new2(ctx, N, D);
  tf_rng_fill_normal(&r, x, 0, 1.5);
  return x;
}

static tf_tensor *conds(tf_ctx *ctx) {
  tf_tensor *c = tf_new2(ctx, N, 1);
  for (int i = 0; i < N; i++) c->data[i] = (tf_real)(0.4 + 0.15 * i);
  return c;
}

static void test_round_trip(void **state) {
  (void)state;
  for (int v = 0; v < NV; v++)
  for (int cond = 0; cond <= 1; cond++) {
    fixture fx = make_v(&VARIANTS[v], cond, cond, 11 + (uint64_t)cond);
    tf_tensor *x = batch(fx.ctx, 0), *c = cond ? conds(fx.ctx) : NULL, *ldf, *ldi;
    tf_tensor *z = tf_flow_forward(fx.f, fx.ctx, x, c, &ldf);
    tf_tensor *x2 = tf_flow_inverse(fx.f, fx.ctx, z, c, &ldi);
    assert_non_null(x2);
    double err = 0, zdiff = 0;
    for (int64_t i = 0; i < x->n; i++) {
      err = fmax(err, fabs((double)x2->data[i] - (double)x->data[i]));
      zdiff = fmax(zdiff, fabs((double)z->data[i] - (double)x->data[i]));
    }
    if (!(err < RT_TOL)) fail_msg("%s, conditional %d: round trip error %g", VARIANTS[v].name, cond, err);
    assert_true(zdiff > 0.1); /* the map is far from the identity */
    for (int i = 0; i < N; i++) assert_true(fabs(ldf->data[i] + ldi->data[i]) < RT_TOL * 10);
    drop(&fx);
  }
}

/* Without recording (sampling, evaluation) affine MLP blocks take a fused inverse; it must
 * give the op chain's values (same arithmetic, different accumulation of the log-det). */
static void test_fused_inverse_matches_ops(void **state) {
  (void)state;
  for (int v = 0; v < NV; v++)
    for (int cond = 0; cond <= 1; cond++) {
      fixture fx = make_v(&VARIANTS[v], cond, 0, 21 + (uint64_t)cond);
      tf_tensor *z = batch(fx.ctx, 3), *c = cond ? conds(fx.ctx) : NULL, *ld_ops, *ld_fast;
      assert_true(tf_ctx_grad_enabled(fx.ctx));
      tf_tensor *x_ops = tf_flow_inverse(fx.f, fx.ctx, z, c, &ld_ops);
      const size_t tape = tf_ctx_tape_length(fx.ctx);
      tf_ctx_set_grad(fx.ctx, 0);
      tf_tensor *x_fast = tf_flow_inverse(fx.f, fx.ctx, z, c, &ld_fast);
      tf_ctx_set_grad(fx.ctx, 1);
      assert_non_null(x_ops);
      assert_non_null(x_fast);
      assert_true(tape > 0); /* the first inverse was recorded: the op path */
      double ex = 0, el = 0;
      for (int64_t i = 0; i < x_ops->n; i++)
        ex = fmax(ex, fabs((double)x_ops->data[i] - (double)x_fast->data[i]));
      for (int i = 0; i < N; i++)
        el = fmax(el, fabs((double)ld_ops->data[i] - (double)ld_fast->data[i]));
      if (!(ex < RT_TOL && el < RT_TOL * 10))
        fail_msg("%s, conditional %d: fused inverse differs by %g (x), %g (log-det)",
                 VARIANTS[v].name, cond, ex, el);
      drop(&fx);
    }
}

typedef struct {
  tf_flow *f;
  tf_tensor *c;
} map_ud;

static tf_tensor *fwd_map(tf_ctx *ctx, tf_tensor *x, void *ud) {
  map_ud *m = ud;
  return tf_flow_forward(m->f, ctx, x, m->c, NULL);
}

static void test_logdet_brute_force(void **state) {
  (void)state;
  for (int v = 0; v < NV; v++) {
  fixture fx = make_v(&VARIANTS[v], 1, 0, 21);
  tf_tensor *x = batch(fx.ctx, 1), *c = conds(fx.ctx), *ld;
  tf_flow_forward(fx.f, fx.ctx, x, c, &ld);
  double J[N * DMAX * DMAX];
  map_ud m = {fx.f, c};
  assert_int_equal(tf_jacobian(fx.ctx, fwd_map, &m, x, D, J), TF_OK);
  for (int n = 0; n < N; n++) {
    int sign;
    const double ref = tf_logabsdet(J + n * D * D, D, &sign);
    assert_int_not_equal(sign, 0); /* a permutation may flip the sign; |det| is what counts */
    if (!(fabs(ref - (double)ld->data[n]) < LD_TOL * fmax(1, fabs(ref))))
      fail_msg("%s: log|det| %g, brute force %g", VARIANTS[v].name, (double)ld->data[n], ref);
  }
  drop(&fx);
  }
}

#ifdef TF_DOUBLE
/* d/dc log p(x | c) at fixed x: forward-mode tangent against central differences in c */
static void test_dlogp_dc(void **state) {
  (void)state;
  for (int v = 0; v < NV; v++)
  for (int bt = 0; bt <= 2; bt++) {
    fixture fx = make_v(&VARIANTS[v], 1, bt, 31 + (uint64_t)bt);
    tf_tensor *x = batch(fx.ctx, 2), *c = conds(fx.ctx);
    tf_set_tangent(fx.ctx, c, tf_full(fx.ctx, 2, c->shape, 1.0));
    tf_tensor *lp = tf_flow_log_prob(fx.f, fx.ctx, x, c);
    tf_tensor *dlp = tf_tangent(fx.ctx, lp);
    assert_non_null(dlp);
    tf_set_tangent(fx.ctx, c, NULL);
    const double h = 1e-6;
    tf_tensor *cp = tf_copy(fx.ctx, c), *cm = tf_copy(fx.ctx, c);
    for (int i = 0; i < N; i++) {
      cp->data[i] += h;
      cm->data[i] -= h;
    }
    tf_tensor *lpp = tf_flow_log_prob(fx.f, fx.ctx, x, cp), *lpm = tf_flow_log_prob(fx.f, fx.ctx, x, cm);
    for (int i = 0; i < N; i++) {
      const double fd = (lpp->data[i] - lpm->data[i]) / (2 * h);
      if (!(fabs(fd - dlp->data[i]) < 1e-7 * fmax(1, fabs(fd))))
        fail_msg("%s: d/dc log p %.12g, finite differences %.12g", VARIANTS[v].name, dlp->data[i], fd);
    }
    drop(&fx);
  }
}

static double nll(fixture *fx, tf_tensor *x, tf_tensor *c) {
  return -tf_mean_all(fx->ctx, tf_flow_log_prob(fx->f, fx->ctx, x, c))->data[0];
}

/* NLL gradient in every parameter against central differences (norm-wise) */
static void test_param_gradients(void **state) {
  (void)state;
  for (int iv = 0; iv < NV; iv++) {
  fixture fx = make_v(&VARIANTS[iv], 1, 1, 41);
  tf_tensor *x = batch(fx.ctx, 3), *c = conds(fx.ctx);
  tf_tensor *loss = tf_scale(fx.ctx, tf_mean_all(fx.ctx, tf_flow_log_prob(fx.f, fx.ctx, x, c)), -1);
  assert_int_equal(tf_params_backward(fx.p, fx.ctx, loss), TF_OK);
  const int64_t n = tf_params_size(fx.p);
  tf_real *v = tf_params_values(fx.p), *g = tf_params_grads(fx.p);
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i += 3) { /* every third scalar keeps the test fast */
    const double old = v[i], h = 1e-6;
    v[i] = old + h;
    const double lp = nll(&fx, x, c);
    v[i] = old - h;
    const double lm = nll(&fx, x, c);
    v[i] = old;
    const double fd = (lp - lm) / (2 * h);
    num += (fd - g[i]) * (fd - g[i]);
    den += fd * fd;
  }
  assert_true(den > 0);
  if (!(sqrt(num / den) < 1e-6))
    fail_msg("%s: relative gradient error %g", VARIANTS[iv].name, sqrt(num / den));
  drop(&fx);
  }
}
#endif

static void test_sample_log_prob_consistent(void **state) {
  (void)state;
  for (int v = 0; v < 2 * NV; v++) {
  fixture fx = make_v(&VARIANTS[v % NV], 1, 1 + v / NV, 51);
  tf_tensor *c = conds(fx.ctx), *lps;
  tf_rng r;
  tf_rng_init(&r, 9, 0, TF_RNG_LATENT, 0);
  tf_tensor *x = tf_flow_sample(fx.f, fx.ctx, c, N, &r, &lps);
  assert_non_null(x);
  tf_tensor *lp = tf_flow_log_prob(fx.f, fx.ctx, x, c);
  for (int i = 0; i < N; i++) assert_true(fabs(lp->data[i] - lps->data[i]) < LD_TOL * 10);
  drop(&fx);
  }
}

/* The sign-symmetric flow: log p(x) = log[(q(x) + q(-x)) / 2] with q from the bijection's own
 * forward pass, p(x) = p(-x), and a sample is the bijection's image of the same latent draw up
 * to a sign, with about as many of each sign. */
static void test_sign_symmetric(void **state) {
  (void)state;
  for (int v = 0; v < NV; v++) {
    SYM = 1;
    fixture fx = make_v(&VARIANTS[v], 1, 0, 61);
    SYM = 0;
    tf_tensor *x = batch(fx.ctx, 4), *c = conds(fx.ctx);
    tf_tensor *lp = tf_flow_log_prob(fx.f, fx.ctx, x, c);
    tf_tensor *lm = tf_flow_log_prob(fx.f, fx.ctx, tf_neg(fx.ctx, x), c);
    tf_tensor *ld1, *ld2;
    tf_tensor *z1 = tf_flow_forward(fx.f, fx.ctx, x, c, &ld1);
    tf_tensor *z2 = tf_flow_forward(fx.f, fx.ctx, tf_neg(fx.ctx, x), c, &ld2);
    tf_tensor *q1 = tf_add(fx.ctx, tf_flow_base_log_prob(fx.f, fx.ctx, z1, c), ld1);
    tf_tensor *q2 = tf_add(fx.ctx, tf_flow_base_log_prob(fx.f, fx.ctx, z2, c), ld2);
    assert_non_null(lp);
    assert_non_null(q2);
    for (int i = 0; i < N; i++) {
      const double a = q1->data[i], b = q2->data[i], m = fmax(a, b);
      const double want = m + log(0.5 * (exp(a - m) + exp(b - m)));
      if (!(fabs(lp->data[i] - want) < LD_TOL * fmax(1, fabs(want))))
        fail_msg("%s: row %d: log p %.9g, log[(q(x) + q(-x)) / 2] %.9g", VARIANTS[v].name, i,
                 lp->data[i], want);
      assert_true(fabs(lp->data[i] - lm->data[i]) < LD_TOL * fmax(1, fabs(want)));
      assert_true(fabs(a - b) > 1e-3); /* q itself is not symmetric: the test has teeth */
    }
    /* sampling: the same latent stream through the bijection, then a fair sign */
    enum { NS = 400 };
    tf_tensor *cs = tf_full(fx.ctx, 2, (int64_t[]){NS, 1}, 0.7), *lps;
    tf_rng r;
    tf_rng_init(&r, 9, 0, TF_RNG_LATENT, 0);
    tf_tensor *xs = tf_flow_sample(fx.f, fx.ctx, cs, NS, &r, &lps);
    tf_rng_init(&r, 9, 0, TF_RNG_LATENT, 0);
    tf_tensor *z = tf_new2(fx.ctx, NS, D);
    tf_rng_fill_normal(&r, z, 0, 1);
    tf_tensor *xq = tf_flow_inverse(fx.f, fx.ctx, z, cs, NULL);
    tf_tensor *lpx = tf_flow_log_prob(fx.f, fx.ctx, xs, cs);
    assert_non_null(xq);
    assert_non_null(lpx);
    int neg = 0;
    for (int i = 0; i < NS; i++) {
      const double s = xs->data[(int64_t)i * D] * xq->data[(int64_t)i * D] < 0 ? -1 : 1;
      neg += s < 0;
      for (int j = 0; j < D; j++)
        assert_true(fabs(xs->data[(int64_t)i * D + j] - s * xq->data[(int64_t)i * D + j]) <=
                    1e-6 * fmax(1, fabs(xq->data[(int64_t)i * D + j])));
      assert_true(fabs(lps->data[i] - lpx->data[i]) < LD_TOL * 10 * fmax(1, fabs(lpx->data[i])));
    }
    /* binomial(400, 1/2): sd 10 */
    if (!(neg > 150 && neg < 250)) fail_msg("%s: %d of %d samples flipped", VARIANTS[v].name, neg, NS);
    drop(&fx);
  }
}

#ifdef TF_DOUBLE
/* The derivative and gradient checks again, on sign-symmetric flows. */
static void test_sign_symmetric_derivatives(void **state) {
  SYM = 1;
  test_dlogp_dc(state);
  test_param_gradients(state);
  test_sample_log_prob_consistent(state);
  SYM = 0;
}
#endif

/* A freshly initialised flow (zero last layers, offset spline derivatives, zero ActNorm) is
 * the identity with log|det| = 0, for every layer type. */
static void test_identity_at_init(void **state) {
  (void)state;
  for (int v = 0; v < NV; v++) {
    tf_flow_config cfg = variant_config(&VARIANTS[v], 1, 0, 71);
    tf_params *p = tf_params_create();
    tf_flow *f = tf_flow_create(&cfg, p);
    assert_non_null(f);
    assert_int_equal(tf_params_finalize(p), TF_OK);
    assert_int_equal(tf_flow_init(f), TF_OK);
    tf_ctx *ctx = tf_ctx_create(0);
    tf_tensor *x = batch(ctx, 7), *ld;
    tf_tensor *z = tf_flow_forward(f, ctx, x, conds(ctx), &ld);
    assert_non_null(z);
    /* MLP flows leave z in permuted order: compare sorted rows via sums of powers */
    for (int n = 0; n < N; n++) {
      double s1 = 0, s2 = 0, t1 = 0, t2 = 0;
      for (int j = 0; j < D; j++) {
        s1 += x->data[n * D + j];
        s2 += pow(x->data[n * D + j], 3);
        t1 += z->data[n * D + j];
        t2 += pow(z->data[n * D + j], 3);
      }
      if (!(fabs(s1 - t1) < RT_TOL * 10 && fabs(s2 - t2) < RT_TOL * 100 &&
            fabs(ld->data[n]) < RT_TOL * 10))
        fail_msg("%s: not the identity at init (ld %g)", VARIANTS[v].name, (double)ld->data[n]);
    }
    tf_ctx_destroy(ctx);
    tf_flow_destroy(f);
    tf_params_destroy(p);
  }
}

/* After data init, the first ActNorm standardises the batch it saw. */
static void test_actnorm_data_init(void **state) {
  (void)state;
  const variant v = {"actnorm", TF_COUPLING_AFFINE, TF_SUBNET_MLP, 1, 1};
  tf_flow_config cfg = variant_config(&v, 1, 0, 81);
  cfg.permute = 0;
  tf_params *p = tf_params_create();
  tf_flow *f = tf_flow_create(&cfg, p);
  assert_int_equal(tf_params_finalize(p), TF_OK);
  assert_int_equal(tf_flow_init(f), TF_OK);
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x = tf_new2(ctx, 400, D), *c = tf_full(ctx, 2, (int64_t[]){400, 1}, 1.0);
  tf_rng r;
  tf_rng_init(&r, 3, 0, TF_RNG_TEST, 0);
  tf_rng_fill_normal(&r, x, 0, 1);
  for (int64_t i = 0; i < x->n; i++) x->data[i] = (tf_real)(3.0 * x->data[i] + 1.0 + (double)(i % D));
  assert_int_equal(tf_flow_data_init(f, ctx, x, c), TF_OK);
  tf_tensor *z = tf_flow_forward(f, ctx, x, c, NULL); /* identity coupling after the ActNorm */
  for (int j = 0; j < D; j++) {
    double m = 0, m2 = 0;
    for (int n = 0; n < 400; n++) m += z->data[n * D + j] / 400.0;
    for (int n = 0; n < 400; n++) m2 += pow(z->data[n * D + j] - m, 2) / 400.0;
    assert_true(fabs(m) < 1e-5);
    assert_true(fabs(m2 - 1) < 1e-4);
  }
  tf_ctx_destroy(ctx);
  tf_flow_destroy(f);
  tf_params_destroy(p);
}

static void test_bad_shapes(void **state) {
  (void)state;
  fixture fx = make(1, 0, 61);
  tf_tensor *x = tf_new2(fx.ctx, N, D + 1), *c = conds(fx.ctx);
  assert_null(tf_flow_forward(fx.f, fx.ctx, x, c, NULL));
  assert_non_null(strstr(tf_errmsg(), "(7, 6)"));
  x = batch(fx.ctx, 4);
  assert_null(tf_flow_log_prob(fx.f, fx.ctx, x, NULL));
  assert_non_null(strstr(tf_errmsg(), "condition"));
  drop(&fx);
  tf_flow_config cfg = tf_flow_defaults(1);
  tf_params *p = tf_params_create();
  assert_null(tf_flow_create(&cfg, p));
  assert_non_null(strstr(tf_errmsg(), "dim >= 2"));
  cfg = tf_flow_defaults(9);
  cfg.subnet = TF_SUBNET_CONV;
  cfg.lattice[0] = cfg.lattice[1] = 3;
  assert_null(tf_flow_create(&cfg, p));
  assert_non_null(strstr(tf_errmsg(), "even L1 x L2"));
  cfg = tf_flow_defaults(4);
  cfg.coupling = TF_COUPLING_SPLINE;
  cfg.spline_bins = 1;
  assert_null(tf_flow_create(&cfg, p));
  assert_non_null(strstr(tf_errmsg(), "2 <= bins"));
  tf_params_destroy(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_fused_inverse_matches_ops),
      cmocka_unit_test(test_logdet_brute_force),
#ifdef TF_DOUBLE
      cmocka_unit_test(test_dlogp_dc),
      cmocka_unit_test(test_param_gradients),
#endif
      cmocka_unit_test(test_sample_log_prob_consistent),
      cmocka_unit_test(test_sign_symmetric),
#ifdef TF_DOUBLE
      cmocka_unit_test(test_sign_symmetric_derivatives),
#endif
      cmocka_unit_test(test_identity_at_init),
      cmocka_unit_test(test_actnorm_data_init),
      cmocka_unit_test(test_bad_shapes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
