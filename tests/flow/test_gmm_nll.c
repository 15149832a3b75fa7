/* test_gmm_nll.c — NLL training reaches the entropy of the 2D Gaussian mixture.
 *
 * The target is the six-component GMM of DESIGN.md section 5 at beta = 1.  A spline flow is
 * trained on 50,000 exact samples; its NLL on 50,000 fresh samples must come within 0.05 nats
 * of the mixture's differential entropy H = -int g log g, computed here by the midpoint rule
 * on a fine grid (the integrand is smooth and decays like a Gaussian, so the rule converges
 * fast; the grid is checked against a twice coarser one).  KL(g || p) = NLL - H >= 0, so the
 * test also checks the NLL does not fall below H by more than the Monte Carlo error.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tradeflow/flow.h"
#include "tradeflow/train.h"

enum { K = 6, NTRAIN = 50000, NTEST = 50000 };

static const double MU[K][2] = {{-1, 2}, {3, 7}, {-4, 2}, {-2, -4}, {0, 4}, {5, -2}};
static const double SIG[K][3] = {/* s_xx, s_xy, s_yy */
                                 {.2778, .4797, .8615}, {.8958, -.0249, .1001},
                                 {1.3074, .9223, .7744}, {.0305, .0142, .4409},
                                 {.0463, .0294, .3441}, {.15, .0294, 1.5}};

static double log_g(double x, double y) {
  double lp[K], m = -INFINITY;
  for (int k = 0; k < K; k++) {
    const double a = SIG[k][0], b = SIG[k][1], c = SIG[k][2], det = a * c - b * b;
    const double dx = x - MU[k][0], dy = y - MU[k][1];
    const double q = (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det;
    lp[k] = -0.5 * q - 1.8378770664093453 /* log 2 pi */ - 0.5 * log(det) - log((double)K);
    if (lp[k] > m) m = lp[k];
  }
  double s = 0;
  for (int k = 0; k < K; k++) s += exp(lp[k] - m);
  return m + log(s);
}

static void sample(tf_rng *r, double *out, int n) {
  for (int i = 0; i < n; i++) {
    const int k = (int)tf_rng_below(r, K);
    const double a = SIG[k][0], b = SIG[k][1], c = SIG[k][2];
    const double l11 = sqrt(a), l21 = b / l11, l22 = sqrt(c - l21 * l21);
    const double z1 = tf_rng_normal(r), z2 = tf_rng_normal(r);
    out[2 * i] = MU[k][0] + l11 * z1;
    out[2 * i + 1] = MU[k][1] + l21 * z1 + l22 * z2;
  }
}

/* -int g log g over [-12, 13] x [-12, 15] (every component is > 7 sd inside) */
static double entropy(int n) {
  const double x0 = -12, x1 = 13, y0 = -12, y1 = 15, hx = (x1 - x0) / n, hy = (y1 - y0) / n;
  double s = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      const double l = log_g(x0 + (i + 0.5) * hx, y0 + (j + 0.5) * hy);
      s -= exp(l) * l;
    }
  return s * hx * hy;
}

static void test_gmm_nll_reaches_entropy(void **state) {
  (void)state;
  const double H = entropy(1600), H2 = entropy(800);
  assert_true(fabs(H - H2) < 1e-6);

  double *xtr = malloc(2 * NTRAIN * sizeof *xtr), *xte = malloc(2 * NTEST * sizeof *xte);
  tf_rng r;
  tf_rng_init(&r, 2024, 0, TF_RNG_TEST, 0);
  sample(&r, xtr, NTRAIN);
  tf_rng_init(&r, 2024, 0, TF_RNG_TEST, 1);
  sample(&r, xte, NTEST);

  tf_flow_config fc = tf_flow_defaults(2);
  fc.conditional = 0;
  fc.coupling = TF_COUPLING_SPLINE;
  fc.spline_bins = 16;
  fc.spline_bound = 4;
  fc.actnorm = 1;
  fc.permute = 0;
  fc.n_blocks = 8;
  fc.hidden = 64;
  fc.seed = 3;
  tf_model *model = tf_flow_model_create(&fc);
  tf_flow *f = tf_flow_of(model);
  assert_non_null(f);
  assert_int_equal(tf_model_init(model), TF_OK);

  tf_train_config tc = tf_train_defaults();
  tc.steps = 3000;
  tc.batch = 512;
  tc.val_fraction = 0.05;
  tc.val_every = 0;
  tc.log_every = getenv("TF_TEST_VERBOSE") ? 500 : 0;
  tc.log = stdout;
  tc.lr.kind = TF_LR_COSINE;
  tc.lr.lr = 2e-3;
  tc.lr.lr_min = 1e-5;
  tc.lr.warmup = 100;
  tc.seed = 11;
  tf_dataset train = {NTRAIN, 2, xtr, NULL, 1.0};
  tf_trainer *t = tf_trainer_create(&tc, model, &train);
  assert_non_null(t);
  assert_int_equal(tf_trainer_run(t), TF_OK);
  tf_trainer_destroy(t);

  /* NLL on the fresh samples, with its Monte Carlo error */
  tf_dataset test = {NTEST, 2, xte, NULL, 1.0};
  double *lp = malloc(NTEST * sizeof *lp);
  tf_ctx *ctx = tf_ctx_create(0);
  assert_int_equal(tf_dataset_log_prob(model, ctx, &test, NULL, NTEST, lp), TF_OK);
  double nll = 0;
  for (int i = 0; i < NTEST; i++) nll -= lp[i] / NTEST;
  tf_ctx_destroy(ctx);
  free(lp);
  double m = 0, m2 = 0;
  for (int i = 0; i < NTEST; i++) {
    const double l = log_g(xte[2 * i], xte[2 * i + 1]);
    m -= l / NTEST;
    m2 += l * l / NTEST;
  }
  const double se = sqrt((m2 - m * m) / NTEST);
  print_message("GMM: entropy %.5f (quadrature), NLL %.5f, gap %.4f nats; exact-density NLL "
                "on the same samples %.5f +- %.5f\n", H, nll, nll - H, m, se);
  assert_true(fabs(m - H) < 4 * se); /* the sampler and the density agree */
  assert_true(nll - H < 0.05);
  assert_true(nll - H > -4 * se);
  tf_model_destroy(model);
  free(xtr);
  free(xte);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_gmm_nll_reaches_entropy)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
