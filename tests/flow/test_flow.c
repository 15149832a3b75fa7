/* test_flow.c — conditional affine-coupling flows: round trip, log-determinant against the
 * brute-force Jacobian, d/dc log p against finite differences, parameter gradients, sampling.
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

enum { N = 7, D = 5 };

typedef struct {
  tf_params *p;
  tf_flow *f;
  tf_ctx *ctx;
} fixture;

/* A flow whose every parameter is random (a freshly initialised flow is the identity). */
static fixture make(int conditional, int base_temperature, uint64_t seed) {
  fixture fx;
  tf_flow_config cfg = tf_flow_defaults(D);
  cfg.conditional = conditional;
  cfg.base_temperature = base_temperature;
  cfg.n_blocks = 3;
  cfg.hidden = 16;
  cfg.embed_dim = 4;
  cfg.seed = seed;
  fx.p = tf_params_create();
  fx.f = tf_flow_create(&cfg, fx.p);
  assert_non_null(fx.f);
  assert_int_equal(tf_params_finalize(fx.p), TF_OK);
  assert_int_equal(tf_flow_init(fx.f), TF_OK);
  tf_rng r;
  tf_rng_init(&r, seed, 0, TF_RNG_TEST, 0);
  for (int i = 0; i < tf_params_count(fx.p); i++)
    tf_rng_fill_normal(&r, tf_params_tensor(fx.p, i), 0, 0.3);
  fx.ctx = tf_ctx_create(0);
  return fx;
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
  for (int cond = 0; cond <= 1; cond++) {
    fixture fx = make(cond, cond, 11 + (uint64_t)cond);
    tf_tensor *x = batch(fx.ctx, 0), *c = cond ? conds(fx.ctx) : NULL, *ldf, *ldi;
    tf_tensor *z = tf_flow_forward(fx.f, fx.ctx, x, c, &ldf);
    tf_tensor *x2 = tf_flow_inverse(fx.f, fx.ctx, z, c, &ldi);
    assert_non_null(x2);
    double err = 0, zdiff = 0;
    for (int64_t i = 0; i < x->n; i++) {
      err = fmax(err, fabs((double)x2->data[i] - (double)x->data[i]));
      zdiff = fmax(zdiff, fabs((double)z->data[i] - (double)x->data[i]));
    }
    assert_true(err < RT_TOL);
    assert_true(zdiff > 0.1); /* the map is far from the identity */
    for (int i = 0; i < N; i++) assert_true(fabs(ldf->data[i] + ldi->data[i]) < RT_TOL * 10);
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
  fixture fx = make(1, 0, 21);
  tf_tensor *x = batch(fx.ctx, 1), *c = conds(fx.ctx), *ld;
  tf_flow_forward(fx.f, fx.ctx, x, c, &ld);
  double J[N * D * D];
  map_ud m = {fx.f, c};
  assert_int_equal(tf_jacobian(fx.ctx, fwd_map, &m, x, D, J), TF_OK);
  for (int n = 0; n < N; n++) {
    int sign;
    const double ref = tf_logabsdet(J + n * D * D, D, &sign);
    assert_int_not_equal(sign, 0); /* a permutation may flip the sign; |det| is what counts */
    assert_true(fabs(ref - (double)ld->data[n]) < LD_TOL * fmax(1, fabs(ref)));
  }
  drop(&fx);
}

#ifdef TF_DOUBLE
/* d/dc log p(x | c) at fixed x: forward-mode tangent against central differences in c */
static void test_dlogp_dc(void **state) {
  (void)state;
  for (int bt = 0; bt <= 1; bt++) {
    fixture fx = make(1, bt, 31 + (uint64_t)bt);
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
      assert_true(fabs(fd - dlp->data[i]) < 1e-7 * fmax(1, fabs(fd)));
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
  fixture fx = make(1, 1, 41);
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
  assert_true(sqrt(num / den) < 1e-6);
  drop(&fx);
}
#endif

static void test_sample_log_prob_consistent(void **state) {
  (void)state;
  fixture fx = make(1, 1, 51);
  tf_tensor *c = conds(fx.ctx), *lps;
  tf_rng r;
  tf_rng_init(&r, 9, 0, TF_RNG_LATENT, 0);
  tf_tensor *x = tf_flow_sample(fx.f, fx.ctx, c, N, &r, &lps);
  assert_non_null(x);
  tf_tensor *lp = tf_flow_log_prob(fx.f, fx.ctx, x, c);
  for (int i = 0; i < N; i++) assert_true(fabs(lp->data[i] - lps->data[i]) < LD_TOL * 10);
  drop(&fx);
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
  tf_params_destroy(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_logdet_brute_force),
#ifdef TF_DOUBLE
      cmocka_unit_test(test_dlogp_dc),
      cmocka_unit_test(test_param_gradients),
#endif
      cmocka_unit_test(test_sample_log_prob_consistent),
      cmocka_unit_test(test_bad_shapes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
