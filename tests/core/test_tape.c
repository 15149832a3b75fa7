/* test_tape.c — behaviour of the tape as a whole (float64 build): accumulation, pruning,
 * higher derivatives of composites, tangent lifetime, the Jacobian helper, and error paths. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tradeflow/error.h"
#include "tradeflow/jacobian.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

static tf_tensor *param(int ndim, const int64_t *shape, uint32_t seed, double sd) {
  tf_tensor *t = tf_tensor_create(ndim, shape);
  tf_rng r;
  tf_rng_init(&r, seed, 0, TF_RNG_TEST, 0);
  tf_rng_fill_normal(&r, t, 0, sd);
  tf_requires_grad(t, 1);
  return t;
}

static void test_accumulation_and_unused(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x = param(1, (int64_t[]){5}, 1, 1), *u = param(1, (int64_t[]){5}, 2, 1);
  /* L = sum(x*x + x): dL/dx = 2x + 1; u is never used: zeros */
  tf_tensor *L = tf_sum_all(ctx, tf_add(ctx, tf_mul(ctx, x, x), x));
  tf_tensor *g[2];
  assert_int_equal(tf_grad(ctx, L, NULL, 2, (tf_tensor *[]){x, u}, g, 0), TF_OK);
  for (int i = 0; i < 5; i++) {
    assert_float_equal(g[0]->data[i], 2 * x->data[i] + 1, 1e-14);
    assert_true(g[1]->data[i] == 0);
  }
  /* a second tf_grad on the same tape gives the same answer */
  tf_tensor *g2[1];
  assert_int_equal(tf_grad(ctx, L, NULL, 1, &x, g2, 0), TF_OK);
  for (int i = 0; i < 5; i++) assert_true(g2[0]->data[i] == g[0]->data[i]);
  tf_tensor_destroy(x);
  tf_tensor_destroy(u);
  tf_ctx_destroy(ctx);
}

/* d^3/dx^3 of sum(x^4)/4 by three nested reverse passes: 6x */
static void test_third_derivative(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x = param(1, (int64_t[]){4}, 3, 1);
  tf_tensor *x2 = tf_mul(ctx, x, x);
  tf_tensor *L = tf_scale(ctx, tf_sum_all(ctx, tf_mul(ctx, x2, x2)), 0.25);
  tf_tensor *g1, *g2, *g3;
  assert_int_equal(tf_grad(ctx, L, NULL, 1, &x, &g1, 1), TF_OK);         /* x^3 */
  assert_int_equal(tf_grad(ctx, tf_sum_all(ctx, g1), NULL, 1, &x, &g2, 1), TF_OK); /* 3x^2 */
  assert_int_equal(tf_grad(ctx, tf_sum_all(ctx, g2), NULL, 1, &x, &g3, 0), TF_OK); /* 6x */
  for (int i = 0; i < 4; i++) {
    const double v = x->data[i];
    assert_float_equal(g1->data[i], v * v * v, 1e-13);
    assert_float_equal(g2->data[i], 3 * v * v, 1e-13);
    assert_float_equal(g3->data[i], 6 * v, 1e-13);
  }
  tf_tensor_destroy(x);
  tf_ctx_destroy(ctx);
}

/* The TRADE pattern on a composite: f(x, c) = sum over features of an MLP of [x, log c];
 * the tangent in c gives df/dc at fixed x; the loss mean((df/dc)^2) is differentiated in the
 * weights (reverse over forward) and checked against finite differences of the loss. */
static double trade_like(tf_ctx *ctx, tf_tensor *x, tf_tensor *c, tf_tensor **p, tf_tensor **g) {
  tf_ctx_reset(ctx);
  tf_tensor *dc = tf_full(ctx, 2, c->shape, 1.0);
  tf_set_tangent(ctx, c, dc);
  tf_tensor *in = tf_concat(ctx, 2, (tf_tensor *[]){x, tf_log(ctx, c)});
  tf_tensor *h = tf_tanh(ctx, tf_add(ctx, tf_matmul(ctx, in, p[0], 0, 1), p[1]));
  tf_tensor *f = tf_sum(ctx, tf_matmul(ctx, h, p[2], 0, 1), -1);
  tf_tensor *dfdc = tf_tangent(ctx, f);
  assert_non_null(dfdc);
  tf_tensor *loss = tf_mean_all(ctx, tf_square(ctx, dfdc));
  if (g) assert_int_equal(tf_grad(ctx, loss, NULL, 3, p, g, 0), TF_OK);
  return loss->data[0];
}

static void test_reverse_over_forward_composite(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  enum { N = 6, D = 3, H = 5 };
  tf_tensor *p[3] = {param(2, (int64_t[]){H, D + 1}, 4, 0.7), param(1, (int64_t[]){H}, 5, 0.3),
                     param(2, (int64_t[]){2, H}, 6, 0.7)};
  tf_tensor *x = param(2, (int64_t[]){N, D}, 7, 1);
  tf_tensor *c = tf_tensor_create(2, (int64_t[]){N, 1});
  for (int i = 0; i < N; i++) c->data[i] = 0.5 + 0.2 * i;
  tf_requires_grad(x, 0);
  tf_tensor *g[3];
  trade_like(ctx, x, c, p, g);
  double *gsave[3];
  for (int k = 0; k < 3; k++) {
    gsave[k] = malloc(sizeof(double) * (size_t)g[k]->n);
    memcpy(gsave[k], g[k]->data, sizeof(double) * (size_t)g[k]->n);
  }
  double num = 0, den = 0;
  for (int k = 0; k < 3; k++)
    for (int64_t i = 0; i < p[k]->n; i++) {
      const double v = p[k]->data[i], h = 1e-6;
      p[k]->data[i] = v + h;
      const double lp = trade_like(ctx, x, c, p, NULL);
      p[k]->data[i] = v - h;
      const double lm = trade_like(ctx, x, c, p, NULL);
      p[k]->data[i] = v;
      const double fd = (lp - lm) / (2 * h);
      num += (fd - gsave[k][i]) * (fd - gsave[k][i]);
      den += fd * fd;
    }
  assert_true(den > 0);
  assert_true(sqrt(num / den) < 1e-6);
  for (int k = 0; k < 3; k++) {
    free(gsave[k]);
    tf_tensor_destroy(p[k]);
  }
  tf_tensor_destroy(x);
  tf_tensor_destroy(c);
  tf_ctx_destroy(ctx);
}

static void test_tangent_lifetime(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x = tf_tensor_create(1, (int64_t[]){3});
  assert_int_equal(tf_set_tangent(ctx, x, tf_full(ctx, 1, x->shape, 1.0)), TF_OK);
  assert_non_null(tf_tangent(ctx, x));
  assert_non_null(tf_tangent(ctx, tf_exp(ctx, x)));
  tf_ctx_reset(ctx); /* the arena tangent is gone: it must not be seen again */
  assert_null(tf_tangent(ctx, x));
  assert_null(tf_tangent(ctx, tf_exp(ctx, x)));
  /* wrong shape is refused */
  assert_int_equal(tf_set_tangent(ctx, x, tf_full(ctx, 1, (int64_t[]){4}, 1.0)), TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "(4)"));
  /* stop_gradient drops tangents and gradients */
  tf_set_tangent(ctx, x, tf_full(ctx, 1, x->shape, 1.0));
  assert_null(tf_tangent(ctx, tf_stop_gradient(ctx, x)));
  tf_tensor_destroy(x);
  tf_ctx_destroy(ctx);
}

/* y = tanh(x A^T): J = diag(1 - y^2) A, per sample */
static tf_tensor *tanh_lin(tf_ctx *ctx, tf_tensor *x, void *ud) {
  return tf_tanh(ctx, tf_matmul(ctx, x, (tf_tensor *)ud, 0, 1));
}

static void test_jacobian_and_logdet(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  enum { N = 3, D = 4 };
  tf_tensor *A = param(2, (int64_t[]){D, D}, 8, 0.8);
  tf_tensor *x = tf_new2(ctx, N, D);
  tf_rng r;
  tf_rng_init(&r, 9, 0, TF_RNG_TEST, 0);
  tf_rng_fill_normal(&r, x, 0, 0.5);
  double J[N * D * D];
  assert_int_equal(tf_jacobian(ctx, tanh_lin, A, x, D, J), TF_OK);
  for (int n = 0; n < N; n++) {
    double ldj = 0;
    for (int a = 0; a < D; a++) {
      double z = 0;
      for (int b = 0; b < D; b++) z += A->data[a * D + b] * x->data[n * D + b];
      const double d = 1 - tanh(z) * tanh(z);
      ldj += log(d);
      for (int b = 0; b < D; b++)
        assert_float_equal(J[(n * D + a) * D + b], d * A->data[a * D + b], 1e-14);
    }
    int sA, sJ;
    const double ldA = tf_logabsdet(A->data, D, &sA);
    const double ld = tf_logabsdet(J + n * D * D, D, &sJ);
    assert_float_equal(ld, ldA + ldj, 1e-12);
    assert_int_equal(sJ, sA);
  }
  /* known determinants */
  const double M2[4] = {2, 1, 1, 3}; /* det 5 */
  const double P3[9] = {0, 1, 0, 1, 0, 0, 0, 0, 2}; /* det -2 */
  const double S2[4] = {1, 2, 2, 4}; /* singular */
  int s;
  assert_float_equal(tf_logabsdet(M2, 2, &s), log(5.0), 1e-15);
  assert_int_equal(s, 1);
  assert_float_equal(tf_logabsdet(P3, 3, &s), log(2.0), 1e-15);
  assert_int_equal(s, -1);
  assert_true(isinf(tf_logabsdet(S2, 2, &s)));
  assert_int_equal(s, 0);
  tf_tensor_destroy(A);
  tf_ctx_destroy(ctx);
}

static void test_errors_are_sticky_and_named(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *a = tf_zeros(ctx, 2, (int64_t[]){2, 3}), *b = tf_zeros(ctx, 2, (int64_t[]){4, 5});
  assert_null(tf_matmul(ctx, a, b, 0, 0));
  assert_int_equal(tf_ctx_status(ctx), TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "(2, 3)"));
  assert_non_null(strstr(tf_errmsg(), "(4, 5)"));
  /* later ops return NULL without overwriting the first message */
  assert_null(tf_add(ctx, a, a));
  assert_non_null(strstr(tf_errmsg(), "matmul"));
  assert_null(tf_exp(ctx, NULL));
  tf_ctx_reset(ctx);
  assert_int_equal(tf_ctx_status(ctx), TF_OK);
  a = tf_zeros(ctx, 2, (int64_t[]){2, 3});
  b = tf_zeros(ctx, 2, (int64_t[]){4, 3});
  assert_null(tf_add(ctx, a, b));
  assert_non_null(strstr(tf_errmsg(), "broadcast"));
  tf_ctx_reset(ctx);
  a = tf_zeros(ctx, 1, (int64_t[]){3});
  assert_null(tf_unary(ctx, TF_FN_TANH, TF_MAX_DERIV + 1, a));
  assert_int_equal(tf_ctx_status(ctx), TF_EUNSUP);
  tf_ctx_reset(ctx);
  a = tf_zeros(ctx, 2, (int64_t[]){2, 3});
  assert_null(tf_gather(ctx, a, 0, (const int64_t[]){0, 2}, 2));
  assert_non_null(strstr(tf_errmsg(), "index 2"));
  tf_ctx_reset(ctx);
  a = tf_zeros(ctx, 2, (int64_t[]){2, 3});
  assert_null(tf_reshape(ctx, a, 1, (int64_t[]){7}));
  assert_null(tf_slice(ctx, a, 2, 2));
  assert_null(tf_new(ctx, 5, (int64_t[]){1, 1, 1, 1, 1}));
  tf_ctx_destroy(ctx);
  tf_ctx_destroy(NULL);
  tf_tensor_destroy(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accumulation_and_unused),
      cmocka_unit_test(test_third_derivative),
      cmocka_unit_test(test_reverse_over_forward_composite),
      cmocka_unit_test(test_tangent_lifetime),
      cmocka_unit_test(test_jacobian_and_logdet),
      cmocka_unit_test(test_errors_are_sticky_and_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
