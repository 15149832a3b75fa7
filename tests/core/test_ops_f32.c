/* test_ops_f32.c — the float32 build: elementwise kernels against double-precision libm, IEEE
 * edge cases (NaN propagates, exact limits), and float32 MLP gradients against a hand-written
 * double-precision backpropagation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

static double sigm(double v) { return 1 / (1 + exp(-v)); }

/* max relative error of f32 op(x) against the double reference over a grid on [lo, hi] */
static double max_rel_err(tf_tensor *(*op)(tf_ctx *, tf_tensor *), double (*ref)(double),
                          double lo, double hi) {
  tf_ctx *ctx = tf_ctx_create(0);
  const int64_t n = 100001;
  tf_tensor *x = tf_new1(ctx, n);
  for (int64_t i = 0; i < n; i++) x->data[i] = (tf_real)(lo + (hi - lo) * (double)i / (n - 1));
  tf_tensor *y = op(ctx, x);
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    const double r = ref((double)x->data[i]);
    const double e = fabs((double)y->data[i] - r) / fmax(fabs(r), 1e-30);
    worst = fmax(worst, e);
  }
  tf_ctx_destroy(ctx);
  return worst;
}

static double silu_ref(double v) { return v * sigm(v); }
static double softplus_ref(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }

static void test_kernel_accuracy(void **state) {
  (void)state;
  const double ulp = 0x1p-23; /* float32 epsilon */
  assert_true(max_rel_err(tf_exp, exp, -87, 88) < 4 * ulp);
  assert_true(max_rel_err(tf_sigmoid, sigm, -30, 30) < 8 * ulp);
  /* silu's relative error is large only near its zero at v = 0, so stay clear of it */
  assert_true(max_rel_err(tf_silu, silu_ref, 0.01, 30) < 8 * ulp);
  assert_true(max_rel_err(tf_silu, silu_ref, -15, -0.01) < 64 * ulp);
  assert_true(max_rel_err(tf_softplus, softplus_ref, -30, 30) < 8 * ulp);
  assert_true(max_rel_err(tf_tanh, tanh, 0.01, 10) < 4 * ulp);
}

static void test_ieee_edges(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x = tf_new1(ctx, 6);
  const tf_real v[6] = {-200.0f, 200.0f, NAN, -INFINITY, INFINITY, 0.0f};
  for (int i = 0; i < 6; i++) x->data[i] = v[i];
  tf_tensor *e = tf_exp(ctx, x), *s = tf_sigmoid(ctx, x), *r = tf_relu(ctx, x),
            *sp = tf_softplus(ctx, x);
  assert_true(e->data[0] == 0 && isinf(e->data[1]) && isnan(e->data[2]));
  assert_true(e->data[3] == 0 && isinf(e->data[4]) && e->data[5] == 1);
  assert_true(s->data[0] == 0 && s->data[1] == 1 && isnan(s->data[2]));
  assert_true(isnan(r->data[2]) && r->data[0] == 0 && r->data[1] == 200);
  assert_true(sp->data[1] == 200 && sp->data[0] == 0 && isnan(sp->data[2]));
  /* log-sum-exp stays finite for huge inputs and ignores -inf entries */
  tf_tensor *z = tf_new2(ctx, 1, 3);
  z->data[0] = 1000;
  z->data[1] = 1000;
  z->data[2] = -INFINITY;
  tf_tensor *l = tf_logsumexp(ctx, z, -1);
  assert_float_equal(l->data[0], 1000 + log(2.0), 1e-3);
  assert_true(!tf_all_finite(x));
  tf_ctx_destroy(ctx);
}

/* 2-layer MLP y = W2 silu(W1 x + b1) + b2, loss = mean(y^2): float32 engine vs double by hand. */
static void test_mlp_grad_f32_vs_double(void **state) {
  (void)state;
  enum { N = 16, I = 5, H = 7, O = 3 };
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *W1 = tf_tensor_create(2, (int64_t[]){H, I}), *b1 = tf_tensor_create(1, (int64_t[]){H});
  tf_tensor *W2 = tf_tensor_create(2, (int64_t[]){O, H}), *b2 = tf_tensor_create(1, (int64_t[]){O});
  tf_tensor *p[4] = {W1, b1, W2, b2};
  tf_rng r;
  tf_rng_init(&r, 11, 0, TF_RNG_TEST, 0);
  for (int i = 0; i < 4; i++) {
    tf_rng_fill_normal(&r, p[i], 0, 0.5);
    tf_requires_grad(p[i], 1);
  }
  tf_tensor *x = tf_new2(ctx, N, I);
  tf_rng_fill_normal(&r, x, 0, 1);
  tf_tensor *a = tf_add(ctx, tf_matmul(ctx, x, W1, 0, 1), b1);
  tf_tensor *y = tf_add(ctx, tf_matmul(ctx, tf_silu(ctx, a), W2, 0, 1), b2);
  tf_tensor *loss = tf_mean_all(ctx, tf_square(ctx, y));
  tf_tensor *g[4];
  assert_int_equal(tf_grad(ctx, loss, NULL, 4, p, g, 0), TF_OK);

  double dW1[H][I] = {{0}}, db1[H] = {0}, dW2[O][H] = {{0}}, db2[O] = {0}, L = 0;
  for (int n = 0; n < N; n++) {
    double av[H], hv[H], yv[O];
    for (int h = 0; h < H; h++) {
      av[h] = b1->data[h];
      for (int i = 0; i < I; i++) av[h] += (double)W1->data[h * I + i] * x->data[n * I + i];
      hv[h] = av[h] * sigm(av[h]);
    }
    for (int o = 0; o < O; o++) {
      yv[o] = b2->data[o];
      for (int h = 0; h < H; h++) yv[o] += (double)W2->data[o * H + h] * hv[h];
      L += yv[o] * yv[o] / (N * O);
    }
    double gh[H] = {0};
    for (int o = 0; o < O; o++) {
      const double gy = 2 * yv[o] / (N * O);
      db2[o] += gy;
      for (int h = 0; h < H; h++) {
        dW2[o][h] += gy * hv[h];
        gh[h] += gy * W2->data[o * H + h];
      }
    }
    for (int h = 0; h < H; h++) {
      const double s = sigm(av[h]), ga = gh[h] * (s + av[h] * s * (1 - s));
      db1[h] += ga;
      for (int i = 0; i < I; i++) dW1[h][i] += ga * x->data[n * I + i];
    }
  }
  assert_true(fabs(loss->data[0] - L) < 1e-5 * fabs(L));
  const double *ref[4] = {&dW1[0][0], db1, &dW2[0][0], db2};
  for (int k = 0; k < 4; k++) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < g[k]->n; i++) {
      num += (g[k]->data[i] - ref[k][i]) * (g[k]->data[i] - ref[k][i]);
      den += ref[k][i] * ref[k][i];
    }
    assert_true(sqrt(num / den) < 1e-5); /* float32 rounding, a few ulp per term */
  }
  for (int i = 0; i < 4; i++) tf_tensor_destroy(p[i]);
  tf_ctx_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernel_accuracy),
      cmocka_unit_test(test_ieee_edges),
      cmocka_unit_test(test_mlp_grad_f32_vs_double),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
