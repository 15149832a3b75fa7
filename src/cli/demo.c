/* demo.c — `tradeflow demo`: the smallest end-to-end run of the engine.
 *
 * Fits y = sin(3x) exp(-x^2/2) on x in [-2, 2] with an MLP 1 -> 64 -> 64 -> 1 (tanh), trained by
 * SGD with momentum on minibatches drawn from Philox streams, one arena reset per step.  It
 * exits non-zero unless the held-out mean squared error falls below 1% of the target variance,
 * so it doubles as a smoke test of ops, tape, arena and RNG together.  (The flow training
 * issues replace this job with real ones.)
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

enum { NL = 3 };

static double target(double x) { return sin(3 * x) * exp(-0.5 * x * x); }

static void usage(FILE *f) {
  fprintf(f, "usage: tradeflow demo [--steps N] [--seed S] [--batch B]\n"
             "\n"
             "Fits a small MLP to a 1-D function with the tensor engine: a 10-second end-to-end\n"
             "check of the build (no flows, no files).\n");
}

static void fill_batch(tf_rng *r, tf_tensor *x, tf_tensor *y) {
  for (int64_t i = 0; i < x->n; i++) {
    double u = -2 + 4 * tf_rng_uniform(r);
    x->data[i] = (tf_real)u;
    y->data[i] = (tf_real)target(u);
  }
}

/* MLP forward: tanh hidden layers, linear output; W[l] is (out, in) as in torch.nn.Linear. */
static tf_tensor *mlp(tf_ctx *ctx, tf_tensor *x, tf_tensor **W, tf_tensor **b) {
  tf_tensor *h = x;
  for (int l = 0; l < NL; l++) {
    h = tf_add(ctx, tf_matmul(ctx, h, W[l], 0, 1), b[l]);
    if (l < NL - 1) h = tf_tanh(ctx, h);
  }
  return h;
}

int tf_cli_demo(int argc, char **argv) {
  int64_t steps = 3000, seed = 1234, batch = 256;
  const tf_cli_arg args[] = {
      {"steps", TF_ARG_I64, &steps, 1, 10000000, 0, NULL, NULL},
      {"seed", TF_ARG_I64, &seed, 0, 2147483647, 0, NULL, NULL},
      {"batch", TF_ARG_I64, &batch, 1, 1 << 20, 0, NULL, NULL},
  };
  int npos;
  const int st = tf_cli_args("demo", argc, argv, args, 3, NULL, 0, &npos, usage);
  if (st >= 0) return st;
  const int64_t sizes[NL + 1] = {1, 64, 64, 1};
  tf_tensor *W[NL] = {0}, *b[NL] = {0}, *vW[NL] = {0}, *vb[NL] = {0}, *params[2 * NL];
  tf_ctx *ctx = tf_ctx_create(0);
  int rc = 1;
  if (!ctx) goto done;
  tf_rng init;
  tf_rng_init(&init, (uint64_t)seed, 0, TF_RNG_INIT, 0);
  for (int l = 0; l < NL; l++) {
    W[l] = tf_tensor_create(2, (int64_t[]){sizes[l + 1], sizes[l]});
    b[l] = tf_tensor_create(1, (int64_t[]){sizes[l + 1]});
    vW[l] = tf_tensor_create(2, W[l]->shape);
    vb[l] = tf_tensor_create(1, b[l]->shape);
    if (!W[l] || !b[l] || !vW[l] || !vb[l]) goto done;
    const double bound = 1.0 / sqrt((double)sizes[l]);
    tf_rng_fill_uniform(&init, W[l], -bound, bound);
    tf_rng_fill_uniform(&init, b[l], -bound, bound);
    tf_requires_grad(W[l], 1);
    tf_requires_grad(b[l], 1);
    params[2 * l] = W[l];
    params[2 * l + 1] = b[l];
  }
  printf("tradeflow demo: MLP 1-64-64-1 (tanh), %s, batch %ld, %ld steps, seed %ld\n",
         TF_REAL_NAME, (long)batch, (long)steps, (long)seed);
  const double lr = 0.05, mom = 0.9;
  const double t0 = tf_cli_now();
  const long every = steps >= 10 ? steps / 10 : 1;
  double ema = NAN;
  for (long s = 0; s < steps; s++) {
    tf_ctx_reset(ctx);
    tf_rng r;
    tf_rng_init(&r, (uint64_t)seed, 0, TF_RNG_DATA, (uint32_t)s);
    tf_tensor *x = tf_new2(ctx, batch, 1), *y = tf_new2(ctx, batch, 1);
    if (!x || !y) break;
    fill_batch(&r, x, y);
    tf_tensor *loss = tf_mean_all(ctx, tf_square(ctx, tf_sub(ctx, mlp(ctx, x, W, b), y)));
    tf_tensor *g[2 * NL];
    if (!loss || tf_grad(ctx, loss, NULL, 2 * NL, params, g, 0) != TF_OK) break;
    if (!isfinite(loss->data[0])) {
      fprintf(stderr, "tradeflow demo: non-finite loss at step %ld\n", s);
      goto done;
    }
    /* decayed learning rate: cosine from lr to lr/20 */
    const double eta = lr * (0.05 + 0.95 * 0.5 * (1 + cos(3.141592653589793 * (double)s / (double)steps)));
    for (int p = 0; p < 2 * NL; p++) {
      tf_tensor *v = (p & 1) ? vb[p / 2] : vW[p / 2];
      for (int64_t i = 0; i < v->n; i++) {
        v->data[i] = (tf_real)(mom * v->data[i] + g[p]->data[i]);
        params[p]->data[i] -= (tf_real)(eta * v->data[i]);
      }
    }
    ema = isnan(ema) ? loss->data[0] : 0.95 * ema + 0.05 * loss->data[0];
    if ((s + 1) % every == 0 || s + 1 == steps) {
      const double el = tf_cli_now() - t0, rate = (double)(s + 1) / el;
      printf("step %7ld/%ld  loss %.3e  %8.0f steps/s  %9.0f samples/s  ETA %5.1f s\n", s + 1,
             (long)steps, ema, rate, rate * (double)batch, (double)(steps - s - 1) / rate);
      fflush(stdout);
    }
  }
  if (tf_ctx_status(ctx) != TF_OK) {
    fprintf(stderr, "tradeflow demo: %s\n", tf_errmsg());
    goto done;
  }
  /* held-out error on a uniform grid, relative to the target's variance there */
  {
    tf_ctx_reset(ctx);
    tf_ctx_set_grad(ctx, 0);
    const int64_t M = 2001;
    tf_tensor *x = tf_new2(ctx, M, 1);
    if (!x) goto done;
    for (int64_t i = 0; i < M; i++) x->data[i] = (tf_real)(-2 + 4.0 * (double)i / (double)(M - 1));
    tf_tensor *p = mlp(ctx, x, W, b);
    if (!p) {
      fprintf(stderr, "tradeflow demo: %s\n", tf_errmsg());
      goto done;
    }
    double mse = 0, mean = 0, var = 0;
    for (int64_t i = 0; i < M; i++) mean += target(x->data[i]) / (double)M;
    for (int64_t i = 0; i < M; i++) {
      const double t = target(x->data[i]);
      mse += (p->data[i] - t) * (p->data[i] - t) / (double)M;
      var += (t - mean) * (t - mean) / (double)M;
    }
    printf("held-out: mse %.3e, target variance %.3e, relative %.2e (pass below 1e-2)\n", mse,
           var, mse / var);
    rc = mse / var < 1e-2 ? 0 : 1;
    if (rc) fprintf(stderr, "tradeflow demo: the fit did not converge\n");
  }
done:
  if (rc && !ctx) fprintf(stderr, "tradeflow demo: %s\n", tf_errmsg());
  for (int l = 0; l < NL; l++) {
    tf_tensor_destroy(W[l]);
    tf_tensor_destroy(b[l]);
    tf_tensor_destroy(vW[l]);
    tf_tensor_destroy(vb[l]);
  }
  tf_ctx_destroy(ctx);
  return rc;
}
