/* test_ops_f32.c — the float32 build: elementwise kernels against double-precision libm, IEEE
 * edge cases (NaN propagates, exact limits), and float32 MLP gradients against a hand-written
 * double-precision backpropagation. */
#include <math.h>
#include <string.h>
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

/* ---- float kernels: tanh, log, softplus, exp against double libm ---------------------------- */

/* max |f32 op(x) - ref(x)| in units of the float32 spacing at ref(x), over n points of
 * [lo, hi] (log-spaced if logscale; then lo > 0) */
static double max_ulp_err(tf_tensor *(*op)(tf_ctx *, tf_tensor *), double (*ref)(double),
                          double lo, double hi, int logscale) {
  tf_ctx *ctx = tf_ctx_create(0);
  const int64_t n = 400001;
  tf_tensor *x = tf_new1(ctx, n);
  for (int64_t i = 0; i < n; i++) {
    const double t = (double)i / (n - 1);
    x->data[i] = (tf_real)(logscale ? exp(log(lo) + (log(hi) - log(lo)) * t) : lo + (hi - lo) * t);
  }
  tf_tensor *y = op(ctx, x);
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    const double r = ref((double)x->data[i]);
    const float fr = (float)fabs(r);
    const double spacing = (double)nextafterf(fr, INFINITY) - (double)fr;
    worst = fmax(worst, fabs((double)y->data[i] - r) / spacing);
  }
  tf_ctx_destroy(ctx);
  return worst;
}

static double neg_tanh(double v) { return tanh(-v); }
static tf_tensor *op_neg_tanh(tf_ctx *ctx, tf_tensor *x) { return tf_tanh(ctx, tf_neg(ctx, x)); }

static void test_kernel_ulp(void **state) {
  (void)state;
  /* tanh: the polynomial below 0.5493, 1 - 2/(1 + e^2x) above, both signs, tiny arguments */
  assert_true(max_ulp_err(tf_tanh, tanh, -12, 12, 0) <= 2);
  assert_true(max_ulp_err(tf_tanh, tanh, 0.4, 0.7, 0) <= 2); /* around the switch */
  assert_true(max_ulp_err(tf_tanh, tanh, 1e-38, 1, 1) <= 2);
  assert_true(max_ulp_err(op_neg_tanh, neg_tanh, 1e-38, 20, 1) <= 2);
  /* log over the whole positive range, subnormals included */
  assert_true(max_ulp_err(tf_log, log, 1e-45, 3e38, 1) <= 1);
  assert_true(max_ulp_err(tf_log, log, 0.5, 2, 0) <= 1); /* near 1: cancellation-prone */
  assert_true(max_ulp_err(tf_exp, exp, -87, 88, 0) <= 2);
  assert_true(max_ulp_err(tf_softplus, softplus_ref, -80, 80, 0) <= 4);
  assert_true(max_ulp_err(tf_softplus, softplus_ref, -2, 2, 0) <= 4);
}

static void test_kernel_limits(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  enum { K = 12 };
  const float v[K] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 100.0f, -100.0f, 1e-45f,
                      1.0f, -1.0f, 0x1p-126f, 3.4e38f};
  tf_tensor *x = tf_new1(ctx, K);
  for (int i = 0; i < K; i++) x->data[i] = v[i];
  tf_tensor *t = tf_tanh(ctx, x), *l = tf_log(ctx, x), *sp = tf_softplus(ctx, x);
  assert_true(t->data[0] == 1 && t->data[1] == -1 && isnan(t->data[2]));
  assert_true(t->data[3] == 0 && !signbit(t->data[3]) && t->data[4] == 0 && signbit(t->data[4]));
  assert_true(t->data[5] == 1 && t->data[6] == -1 && t->data[7] == 1e-45f);
  assert_true(l->data[0] == INFINITY && isnan(l->data[1]) && isnan(l->data[2]));
  assert_true(l->data[3] == -INFINITY && l->data[4] == -INFINITY && isnan(l->data[9]));
  assert_true(l->data[8] == 0 && !signbit(l->data[8]));
  assert_true(fabs(l->data[7] - log(1e-45f)) < 1e-5 && fabs(l->data[10] - log(0x1p-126)) < 1e-5);
  assert_true(fabs(l->data[11] - log(3.4e38)) < 1e-4);
  assert_true(sp->data[0] == INFINITY && sp->data[1] == 0 && isnan(sp->data[2]));
  assert_true(fabs(sp->data[3] - log(2.0)) < 1e-7 && sp->data[5] == 100 && sp->data[6] < 1e-43);
  tf_ctx_destroy(ctx);
}

/* g * f^(k)(x), k = 1..4, for the families whose kernels changed, against double formulas */
static double tanh_k(int k, double x) {
  const double t = tanh(x), d = 1 - t * t;
  switch (k) {
    case 1: return d;
    case 2: return -2 * t * d;
    case 3: return -2 * d * (1 - 3 * t * t);
    default: return 8 * t * d * (2 - 3 * t * t);
  }
}
static double log_k(int k, double x) {
  switch (k) {
    case 1: return 1 / x;
    case 2: return -1 / (x * x);
    case 3: return 2 / (x * x * x);
    default: return -6 / (x * x * x * x);
  }
}
static double sig_k(int k, double x) {
  const double s = sigm(x), s1 = s * (1 - s);
  switch (k) {
    case 0: return s;
    case 1: return s1;
    case 2: return s1 * (1 - 2 * s);
    case 3: return s1 * (1 - 6 * s + 6 * s * s);
    default: return s1 * (1 - 2 * s) * (1 - 12 * s + 12 * s * s);
  }
}
static double silu_k(int k, double x) { return k * sig_k(k - 1, x) + x * sig_k(k, x); }

static void test_kernel_derivatives(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  const int64_t n = 20001;
  tf_tensor *x = tf_new1(ctx, n), *g = tf_new1(ctx, n);
  for (int64_t i = 0; i < n; i++) {
    x->data[i] = (tf_real)(-9 + 18.0 * (double)i / (n - 1));
    g->data[i] = (tf_real)(0.5 + (double)(i % 7) / 7);
  }
  tf_tensor *xp = tf_new1(ctx, n); /* log: positive arguments */
  for (int64_t i = 0; i < n; i++) xp->data[i] = (tf_real)(0.05 + 20.0 * (double)i / (n - 1));
  const struct {
    tf_fn fn;
    double (*ref)(int, double);
    int positive;
    double tol;
  } fam[] = {{TF_FN_TANH, tanh_k, 0, 5e-7}, {TF_FN_LOG, log_k, 1, 2e-7},
             /* the sigmoid formulas in s cancel (1 - 2s near s = 1/2), about 20 ulp */
             {TF_FN_SIGMOID, sig_k, 0, 2e-6}, {TF_FN_SILU, silu_k, 0, 3e-6}};
  for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++)
    for (int k = 1; k <= TF_MAX_DERIV; k++) {
      tf_tensor *in = fam[f].positive ? xp : x;
      tf_tensor *y = tf_unary_mul(ctx, fam[f].fn, k, in, g), *y0 = tf_unary(ctx, fam[f].fn, k, in);
      assert_non_null(y);
      double scale = 0, worst = 0, worst0 = 0;
      for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(fam[f].ref(k, in->data[i])));
      for (int64_t i = 0; i < n; i++) {
        const double r = fam[f].ref(k, in->data[i]);
        worst = fmax(worst, fabs(y->data[i] - g->data[i] * r));
        worst0 = fmax(worst0, fabs(y0->data[i] - r));
      }
      /* absolute error relative to the family's scale: the formulas in t = tanh or
       * s = sigmoid lose relative accuracy where they are small, but not absolute */
      if (getenv("TF_TEST_VERBOSE"))
        print_message("f%d^(%d): %g %g (scale %g)\n", (int)fam[f].fn, k, worst / scale,
                      worst0 / scale, scale);
      if (!(worst < 1.5 * fam[f].tol * scale && worst0 < fam[f].tol * scale))
        fail_msg("%s^(%d): max error %g (%g without g), scale %g", fam[f].fn == TF_FN_TANH ? "tanh"
                 : fam[f].fn == TF_FN_LOG ? "log" : fam[f].fn == TF_FN_SIGMOID ? "sigmoid" : "silu",
                 k, worst, worst0, scale);
    }
  tf_ctx_destroy(ctx);
}

/* ---- matmul: every transpose combination, edge sizes, against a double reference ----------- */

static void test_matmul_f32(void **state) {
  (void)state;
  const int64_t Ms[] = {1, 3, 8, 9, 37}, Ns[] = {1, 5, 16, 17, 32, 33, 48, 65}, Ks[] = {1, 7, 300};
  tf_rng r;
  tf_rng_init(&r, 7, 0, TF_RNG_TEST, 3);
  tf_ctx *ctx = tf_ctx_create(0);
  for (size_t a = 0; a < 5; a++)
    for (size_t b = 0; b < 8; b++)
      for (size_t c = 0; c < 3; c++)
        for (int ta = 0; ta <= 1; ta++)
          for (int tb = 0; tb <= 1; tb++) {
            const int64_t M = Ms[a], N = Ns[b], K = Ks[c];
            tf_tensor *A = ta ? tf_new2(ctx, K, M) : tf_new2(ctx, M, K);
            tf_tensor *B = tb ? tf_new2(ctx, N, K) : tf_new2(ctx, K, N);
            tf_rng_fill_normal(&r, A, 0, 1);
            tf_rng_fill_normal(&r, B, 0, 1);
            tf_tensor *C = tf_matmul(ctx, A, B, ta, tb);
            assert_non_null(C);
            assert_true(C->shape[0] == M && C->shape[1] == N);
            for (int64_t i = 0; i < M; i++)
              for (int64_t j = 0; j < N; j++) {
                double ref = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) {
                  const double av = ta ? A->data[k * M + i] : A->data[i * K + k];
                  const double bv = tb ? B->data[j * K + k] : B->data[k * N + j];
                  ref += av * bv;
                  mag += fabs(av * bv);
                }
                if (!(fabs(C->data[i * N + j] - ref) <= 1e-6 * (mag + 1e-30) * 4))
                  fail_msg("matmul %lldx%lldx%lld ta=%d tb=%d: C[%lld,%lld] = %g, want %g",
                           (long long)M, (long long)N, (long long)K, ta, tb, (long long)i,
                           (long long)j, (double)C->data[i * N + j], ref);
              }
            tf_ctx_reset(ctx);
          }
  /* NaN and Inf reach exactly the outputs they should (no padding lanes leak) */
  tf_tensor *A = tf_full(ctx, 2, (int64_t[]){3, 4}, 1.0);
  tf_tensor *B = tf_full(ctx, 2, (int64_t[]){4, 33}, 1.0);
  A->data[1 * 4 + 2] = NAN;
  B->data[0 * 33 + 32] = INFINITY;
  tf_tensor *C = tf_matmul(ctx, A, B, 0, 0);
  for (int64_t i = 0; i < 3; i++)
    for (int64_t j = 0; j < 33; j++) {
      const tf_real v = C->data[i * 33 + j];
      if (i == 1) assert_true(isnan(v));
      else if (j == 32) assert_true(v == INFINITY);
      else assert_true(v == 4);
    }
  tf_ctx_destroy(ctx);
}

/* linear (bias in the GEMM's registers) against x W^T + b in double, over the edge sizes of
 * the register blocks and panels, with and without bias */
static void test_linear_f32(void **state) {
  (void)state;
  const int64_t Ns[] = {1, 3, 8, 9, 37}, Ms[] = {1, 5, 16, 17, 32, 33, 48, 65}, Ks[] = {1, 7, 300};
  tf_rng r;
  tf_rng_init(&r, 8, 0, TF_RNG_TEST, 4);
  tf_ctx *ctx = tf_ctx_create(0);
  for (size_t a = 0; a < 5; a++)
    for (size_t b = 0; b < 8; b++)
      for (size_t c = 0; c < 3; c++) {
        const int64_t N = Ns[a], M = Ms[b], K = Ks[c];
        tf_tensor *x = tf_new2(ctx, N, K), *W = tf_new2(ctx, M, K), *bias = tf_new1(ctx, M);
        tf_rng_fill_normal(&r, x, 0, 1);
        tf_rng_fill_normal(&r, W, 0, 1);
        tf_rng_fill_normal(&r, bias, 0, 1);
        tf_tensor *y = tf_linear(ctx, x, W, bias), *y0 = tf_linear(ctx, x, W, NULL);
        assert_non_null(y);
        assert_non_null(y0);
        assert_true(y->shape[0] == N && y->shape[1] == M);
        for (int64_t i = 0; i < N; i++)
          for (int64_t j = 0; j < M; j++) {
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
              ref += (double)x->data[i * K + k] * W->data[j * K + k];
              mag += fabs((double)x->data[i * K + k] * W->data[j * K + k]);
            }
            if (!(fabs(y0->data[i * M + j] - ref) <= 4e-6 * (mag + 1e-30)) ||
                !(fabs(y->data[i * M + j] - ref - bias->data[j]) <= 4e-6 * (mag + fabs(bias->data[j]))))
              fail_msg("linear %lldx%lldx%lld: y[%lld,%lld] = %g (no bias %g), want %g + %g",
                       (long long)N, (long long)M, (long long)K, (long long)i, (long long)j,
                       (double)y->data[i * M + j], (double)y0->data[i * M + j], ref,
                       (double)bias->data[j]);
          }
        tf_ctx_reset(ctx);
      }
  /* a bias of shape (1, M) is accepted, a wrong size is refused with a message */
  tf_tensor *x = tf_full(ctx, 2, (int64_t[]){2, 3}, 1.0), *W = tf_full(ctx, 2, (int64_t[]){4, 3}, 1.0);
  tf_tensor *y = tf_linear(ctx, x, W, tf_full(ctx, 2, (int64_t[]){1, 4}, 0.5));
  assert_non_null(y);
  assert_true(y->data[0] == 3.5f);
  assert_null(tf_linear(ctx, x, W, tf_full(ctx, 1, (int64_t[]){3}, 0.5)));
  assert_non_null(strstr(tf_errmsg(), "bias"));
  tf_ctx_destroy(ctx);
}

/* ---- structure ops: the fast paths against naive loops ----------------------------------- */

static void fill_seq(tf_tensor *t, double a) {
  for (int64_t i = 0; i < t->n; i++) t->data[i] = (tf_real)(a * (double)((i * 37) % 101) - 3);
}

static void test_broadcast_and_index_paths(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  enum { N = 6, D = 5 };
  tf_tensor *a = tf_new2(ctx, N, D), *col = tf_new2(ctx, N, 1), *row = tf_new1(ctx, D);
  fill_seq(a, 0.25);
  fill_seq(col, 0.5);
  fill_seq(row, 0.75);
  for (int z = 0; z < N; z++) col->data[z] += col->data[z] == 0 ? 1 : 0; /* divisors */
  for (int z = 0; z < D; z++) row->data[z] += row->data[z] == 0 ? 1 : 0;
  tf_tensor *y1 = tf_div(ctx, a, col), *y2 = tf_sub(ctx, col, a), *y3 = tf_div(ctx, row, a),
            *y4 = tf_mul(ctx, a, row), *e1 = tf_expand(ctx, col, 2, a->shape),
            *e2 = tf_expand(ctx, row, 2, a->shape);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D; j++) {
      const tf_real u = a->data[i * D + j], c = col->data[i], w = row->data[j];
      assert_true(y1->data[i * D + j] == u / c && y2->data[i * D + j] == c - u);
      assert_true(y3->data[i * D + j] == w / u && y4->data[i * D + j] == u * w);
      assert_true(e1->data[i * D + j] == c && e2->data[i * D + j] == w);
    }
  /* fields (B, C, L1, L2) with a per-channel (1, C, 1, 1) or per-sample-and-channel
   * (B, C, 1, 1) operand against the index formula (the generic broadcast path) */
  {
    enum { B = 2, C = 3, L1 = 4, L2 = 5 };
    tf_tensor *f = tf_new(ctx, 4, (int64_t[]){B, C, L1, L2});
    tf_tensor *bc = tf_new(ctx, 4, (int64_t[]){1, C, 1, 1});
    tf_tensor *nc = tf_new(ctx, 4, (int64_t[]){B, C, 1, 1});
    fill_seq(f, 0.3);
    fill_seq(bc, 0.7);
    fill_seq(nc, 1.1);
    tf_tensor *f1 = tf_add(ctx, f, bc), *f2 = tf_mul(ctx, f, nc), *f3 = tf_sub(ctx, f, nc);
    for (int b = 0; b < B; b++)
      for (int c = 0; c < C; c++)
        for (int k = 0; k < L1 * L2; k++) {
          const int64_t i = (b * C + c) * L1 * L2 + k;
          assert_true(f1->data[i] == f->data[i] + bc->data[c]);
          assert_true(f2->data[i] == f->data[i] * nc->data[b * C + c]);
          assert_true(f3->data[i] == f->data[i] - nc->data[b * C + c]);
        }
    /* channels-last (B, L1, L2, C) with a per-sample (B, 1, 1, C) operand */
    tf_tensor *fl = tf_reshape(ctx, f, 4, (int64_t[]){B, L1, L2, C});
    tf_tensor *ncl = tf_reshape(ctx, nc, 4, (int64_t[]){B, 1, 1, C});
    tf_tensor *f4 = tf_add(ctx, fl, ncl), *f5 = tf_div(ctx, fl, ncl);
    for (int b = 0; b < B; b++)
      for (int k = 0; k < L1 * L2; k++)
        for (int c = 0; c < C; c++) {
          const int64_t i = (b * L1 * L2 + k) * C + c;
          assert_true(f4->data[i] == fl->data[i] + ncl->data[b * C + c]);
          assert_true(f5->data[i] == fl->data[i] / ncl->data[b * C + c]);
        }
  }
  /* last-axis gather, scatter through a permutation and through repeated indices */
  static const int64_t perm[D] = {3, 0, 4, 1, 2}, rep[D] = {1, 1, 0, 4, 1};
  static const int64_t p0[N] = {2, 0, 1, 5, 3, 4};
  tf_tensor *g = tf_gather(ctx, a, -1, perm, D), *sp = tf_scatter_add(ctx, a, -1, perm, D, D),
            *sr = tf_scatter_add(ctx, a, -1, rep, D, D), *s0 = tf_scatter_add(ctx, a, 0, p0, N, N);
  for (int i = 0; i < N; i++) {
    tf_real want[D] = {0};
    for (int j = 0; j < D; j++) {
      assert_true(g->data[i * D + j] == a->data[i * D + perm[j]]);
      assert_true(sp->data[i * D + perm[j]] == a->data[i * D + j]);
      want[rep[j]] += a->data[i * D + j];
    }
    for (int j = 0; j < D; j++) assert_true(sr->data[i * D + j] == want[j]);
  }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D; j++) assert_true(s0->data[p0[i] * D + j] == a->data[i * D + j]);
  /* pad with zeros on both sides, on the left only, on the right only */
  const int64_t starts[3] = {2, 0, 4};
  for (int c = 0; c < 3; c++) {
    tf_tensor *p = tf_pad(ctx, a, starts[c], D + 4);
    for (int i = 0; i < N; i++)
      for (int j = 0; j < D + 4; j++) {
        const int64_t k = j - starts[c];
        assert_true(p->data[i * (D + 4) + j] == (k >= 0 && k < D ? a->data[i * D + k] : 0));
      }
  }
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

/* The periodic convolutions (im2col + GEMM, in chunks of samples) against the defining sums in
 * double: forward y[n,i,j,o] = sum w[o,c,a,b] x[n,i+a-1,j+b-1,c] (channels-last), the input adjoint and the
 * weight gradient, on a batch large enough to be split into several chunks (600 samples of
 * 16 channels on 8 x 6 sites) and on an odd 3 x 5 lattice. */
static void check_conv(int64_t N, int64_t Cin, int64_t Cout, int64_t L1, int64_t L2) {
  tf_ctx *ctx = tf_ctx_create(0);
  tf_rng r;
  tf_rng_init(&r, 77, 0, TF_RNG_TEST, (uint32_t)(N + L2));
  tf_tensor *x = tf_zeros(ctx, 4, (int64_t[]){N, L1, L2, Cin});
  tf_tensor *g = tf_zeros(ctx, 4, (int64_t[]){N, L1, L2, Cout});
  tf_tensor *w = tf_zeros(ctx, 4, (int64_t[]){Cout, Cin, 3, 3});
  tf_rng_fill_normal(&r, x, 0, 1);
  tf_rng_fill_normal(&r, g, 0, 1);
  tf_rng_fill_normal(&r, w, 0, 0.3);
  tf_tensor *y = tf_conv2d_periodic(ctx, x, w), *u = tf_conv2d_periodic_t(ctx, g, w),
            *dw = tf_conv2d_periodic_w(ctx, x, g);
  assert_non_null(y);
  assert_non_null(u);
  assert_non_null(dw);
  const int64_t S = L1 * L2;
#define X(n, c, i, j) \
  ((double)x->data[((n) * S + (((i) + L1) % L1) * L2 + ((j) + L2) % L2) * Cin + (c)])
#define G(n, o, i, j) \
  ((double)g->data[((n) * S + (((i) + L1) % L1) * L2 + ((j) + L2) % L2) * Cout + (o)])
#define W(o, c, a, b) ((double)w->data[(((o) * Cin + (c)) * 3 + (a)) * 3 + (b)])
  double worst = 0;
  for (int64_t n = 0; n < N; n += 7) /* every 7th sample: all chunks, bounded cost */
    for (int64_t i = 0; i < L1; i++)
      for (int64_t j = 0; j < L2; j++) {
        for (int64_t o = 0; o < Cout; o++) {
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < Cin; c++)
            for (int a = 0; a < 3; a++)
              for (int b = 0; b < 3; b++) {
                ref += W(o, c, a, b) * X(n, c, i + a - 1, j + b - 1);
                mag += fabs(W(o, c, a, b) * X(n, c, i + a - 1, j + b - 1));
              }
          worst = fmax(worst, fabs(y->data[(n * S + i * L2 + j) * Cout + o] - ref) / mag);
        }
        for (int64_t c = 0; c < Cin; c++) {
          double ref = 0, mag = 0;
          for (int64_t o = 0; o < Cout; o++)
            for (int a = 0; a < 3; a++)
              for (int b = 0; b < 3; b++) {
                ref += W(o, c, a, b) * G(n, o, i - a + 1, j - b + 1);
                mag += fabs(W(o, c, a, b) * G(n, o, i - a + 1, j - b + 1));
              }
          worst = fmax(worst, fabs(u->data[(n * S + i * L2 + j) * Cin + c] - ref) / mag);
        }
      }
  for (int64_t o = 0; o < Cout; o += 3)
    for (int64_t c = 0; c < Cin; c += 2)
      for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
          double ref = 0, mag = 0;
          for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < L1; i++)
              for (int64_t j = 0; j < L2; j++) {
                ref += G(n, o, i, j) * X(n, c, i + a - 1, j + b - 1);
                mag += fabs(G(n, o, i, j) * X(n, c, i + a - 1, j + b - 1));
              }
          worst = fmax(worst, fabs(dw->data[((o * Cin + c) * 3 + a) * 3 + b] - ref) / mag);
        }
#undef X
#undef G
#undef W
  print_message("conv N=%lld Cin=%lld Cout=%lld %lldx%lld: max error / sum |terms| %.2e\n",
                (long long)N, (long long)Cin, (long long)Cout, (long long)L1, (long long)L2,
                worst);
  assert_true(worst < 1e-6);
  tf_ctx_destroy(ctx);
}

static void test_conv_periodic_f32(void **state) {
  (void)state;
  check_conv(600, 16, 16, 8, 6);
  check_conv(5, 3, 2, 3, 5);
  check_conv(2, 1, 4, 2, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernel_accuracy),
      cmocka_unit_test(test_ieee_edges),
      cmocka_unit_test(test_kernel_ulp),
      cmocka_unit_test(test_kernel_limits),
      cmocka_unit_test(test_kernel_derivatives),
      cmocka_unit_test(test_matmul_f32),
      cmocka_unit_test(test_linear_f32),
      cmocka_unit_test(test_broadcast_and_index_paths),
      cmocka_unit_test(test_mlp_grad_f32_vs_double),
      cmocka_unit_test(test_conv_periodic_f32),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
