/* bench_core — the C side of tradeflow's benchmarks (see bench/README.md).
 *
 *   bench_core --list                 one line per case: NAME KIND DESCRIPTION
 *   bench_core [options] NAME...      run the named cases
 *
 * Every case prints exactly one line of space-separated key=value pairs on stdout, starting
 * with case=NAME; bench/run combines these with the PyTorch figures.  Diagnostics go to stderr.
 * Exit status: 0 if every case ran, 1 if one failed (its line then carries error=...), 2 on a
 * usage error.
 *
 * Options (the same ones bench/torch_bench.py takes, so both sides are timed alike):
 *   --reps N        timed repetitions, the median is reported          (default 7)
 *   --rep-time S    seconds each repetition should last at least       (default 0.3)
 *   --min-steps N   steps each repetition runs at least                (default 20)
 *   --warmup S      seconds of untimed warm-up                         (default 0.2)
 *   --seed N        seed of the parameter and data streams             (default 1)
 *   --no-check      skip the correctness check against the plain-C reference
 *
 * Adding a benchmark: write `static int bench_NAME(const bench_opts *o, bench_out *out)`
 * that builds its state, calls bench_time() with a step function, and fills `out`; then add a
 * row to CASES[] below (and the identical computation to bench/torch_bench.py).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "tradeflow/error.h"
#include "tradeflow/flow.h"
#include "tradeflow/optim.h"
#include "tradeflow/params.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"
#include "bench_util.h"

/* OpenBLAS's thread control, declared by its cblas.h.  Weak, so that bench_core still links
 * (and then relies on OPENBLAS_NUM_THREADS=1 alone) when the BLAS is not OpenBLAS. */
#pragma weak openblas_set_num_threads
#pragma weak openblas_get_num_threads
#pragma weak openblas_get_corename

/* ---- options, output, timing ------------------------------------------------------------- */

typedef struct {
  int reps;
  double rep_time;
  int min_steps;
  double warmup;
  uint64_t seed;
  int check;
} bench_opts;

/* A benchmark step: returns 0 on success, nonzero on failure. */
typedef int (*step_fn)(void *state);

typedef struct {
  double ms;      /* median over the repetitions of the per-step time */
  double ms_min;  /* fastest repetition, per step */
  double ms_max;  /* slowest repetition, per step */
  int steps;      /* steps per repetition */
  int reps;
} bench_timing;

/* Warm up for o->warmup seconds (at least 3 steps), pick a step count so that a repetition
 * lasts about o->rep_time (at least o->min_steps), then time o->reps repetitions. */
static int bench_time(const bench_opts *o, step_fn step, void *state, bench_timing *t) {
  double t0, t1, per_step, v[64];
  int n = 0, steps, r, i;
  t0 = now_s();
  do {
    if (step(state)) return 1;
    ++n;
    t1 = now_s();
  } while (n < 3 || t1 - t0 < o->warmup);
  per_step = (t1 - t0) / n;
  steps = o->min_steps;
  if (per_step > 0 && o->rep_time / per_step > steps) steps = (int)ceil(o->rep_time / per_step);
  if (steps < 1) steps = 1;
  for (r = 0; r < o->reps; ++r) {
    t0 = now_s();
    for (i = 0; i < steps; ++i)
      if (step(state)) return 1;
    t1 = now_s();
    v[r] = 1e3 * (t1 - t0) / steps;
  }
  t->steps = steps;
  t->reps = o->reps;
  t->ms_min = t->ms_max = v[0];
  for (r = 1; r < o->reps; ++r) {
    if (v[r] < t->ms_min) t->ms_min = v[r];
    if (v[r] > t->ms_max) t->ms_max = v[r];
  }
  t->ms = median(v, o->reps);
  return 0;
}

static void out_timing(bench_out *out, const char *key, const bench_timing *t) {
  out_add(out, key, "%.4f", t->ms);
  out_add(out, "min_ms", "%.4f", t->ms_min);
  out_add(out, "max_ms", "%.4f", t->ms_max);
  out_add(out, "steps", "%d", t->steps);
  out_add(out, "reps", "%d", t->reps);
}

/* ---- sgemm: the machine's single-core BLAS reference ------------------------------------ */

enum { SGEMM_N = 1024 };

typedef struct {
  float *a, *b, *c;
  int n;
} sgemm_state;

static int sgemm_step(void *p) {
  sgemm_state *s = p;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->n, s->n, s->n, 1.0f, s->a, s->n,
              s->b, s->n, 0.0f, s->c, s->n);
  return 0;
}

static int bench_sgemm(const bench_opts *o, bench_out *out) {
  sgemm_state s;
  bench_timing t;
  bench_opts so = *o;
  size_t nn = (size_t)SGEMM_N * SGEMM_N, i;
  double flops = 2.0 * SGEMM_N * SGEMM_N * SGEMM_N;
  uint64_t x = o->seed * 0x9E3779B97F4A7C15ull + 1;
  int rc = 0;
  s.n = SGEMM_N;
  s.a = malloc(nn * sizeof(float));
  s.b = malloc(nn * sizeof(float));
  s.c = malloc(nn * sizeof(float));
  if (!s.a || !s.b || !s.c) {
    out_add(out, "error", "out_of_memory");
    rc = 1;
    goto done;
  }
  for (i = 0; i < nn; ++i) { /* values in [-1, 1); the content does not matter for speed */
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s.a[i] = (float)((double)(x >> 40) / (double)(1ull << 23) - 1.0);
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s.b[i] = (float)((double)(x >> 40) / (double)(1ull << 23) - 1.0);
  }
  so.min_steps = 3; /* one call is ~2 GFLOP: a few per repetition are plenty */
  if (bench_time(&so, sgemm_step, &s, &t)) {
    out_add(out, "error", "sgemm_failed");
    rc = 1;
    goto done;
  }
  out_add(out, "sgemm_gflops", "%.2f", flops / (t.ms * 1e-3) / 1e9);
  out_timing(out, "sgemm_ms", &t);
  out_add(out, "n", "%d", SGEMM_N);
  out_add(out, "blas_threads", "%d", openblas_get_num_threads ? openblas_get_num_threads() : -1);
  out_add(out, "blas_core", "%s",
          openblas_get_corename ? openblas_get_corename() : "unknown");
done:
  free(s.a);
  free(s.b);
  free(s.c);
  return rc;
}

/* ---- mlp: MLP forward + backward --------------------------------------------------------- */

/* Batch 1024, 33 -> 128 -> 128 -> 64, SiLU after the first two layers, y = x W^T + b with
 * W (out, in) as in torch.nn.Linear, loss = mean(y^2), gradients for all weights and biases
 * (not for the input).  Inputs N(0, 1); W and b uniform(-1/sqrt(in), 1/sqrt(in)). */
enum { MLP_BATCH = 1024, MLP_LAYERS = 3 };
static const int64_t MLP_DIMS[MLP_LAYERS + 1] = {33, 128, 128, 64};

typedef struct {
  tf_ctx *ctx;
  tf_tensor *x;                       /* (B, 33), no grad */
  tf_tensor *params[2 * MLP_LAYERS];  /* W1, b1, W2, b2, W3, b3 */
  tf_tensor *grads[2 * MLP_LAYERS];   /* arena tensors of the last step */
  double loss;
} mlp_state;

/* Matmul flops of one step: forward x W^T per layer (2 B in out), backward dW = g^T h per
 * layer (2 B in out) and dh = g W for every layer but the first (its input needs no grad). */
static double mlp_flops(void) {
  double f = 0;
  int l;
  for (l = 0; l < MLP_LAYERS; ++l) {
    double mm = 2.0 * MLP_BATCH * (double)MLP_DIMS[l] * (double)MLP_DIMS[l + 1];
    f += (l == 0) ? 2 * mm : 3 * mm;
  }
  return f;
}

static int mlp_step(void *p) {
  mlp_state *s = p;
  tf_ctx *ctx = s->ctx;
  tf_tensor *h = s->x, *loss;
  int l;
  tf_ctx_reset(ctx);
  for (l = 0; l < MLP_LAYERS; ++l) {
    h = tf_add(ctx, tf_matmul(ctx, h, s->params[2 * l], 0, 1), s->params[2 * l + 1]);
    if (l + 1 < MLP_LAYERS) h = tf_silu(ctx, h);
  }
  loss = tf_mean_all(ctx, tf_square(ctx, h));
  if (!loss) return 1;
  if (tf_grad(ctx, loss, NULL, 2 * MLP_LAYERS, s->params, s->grads, 0) != TF_OK) return 1;
  s->loss = (double)loss->data[0];
  return 0;
}

/* Plain-C double-precision reference of the same step; returns the largest relative error
 * (max |ours - ref| / max |ref|, per tensor) over the loss and the six gradients. */
static double mlp_reference_error(const mlp_state *s, double *ref_loss) {
  enum { B = MLP_BATCH };
  const int64_t *d = MLP_DIMS;
  double *act[MLP_LAYERS + 1], *pre[MLP_LAYERS], *g = NULL, *gprev = NULL;
  double worst = 0, L = 0;
  int64_t i, j, k;
  int l, ok = 1;
  for (l = 0; l <= MLP_LAYERS; ++l) act[l] = malloc(sizeof(double) * B * (size_t)d[l]);
  for (l = 0; l < MLP_LAYERS; ++l) pre[l] = malloc(sizeof(double) * B * (size_t)d[l + 1]);
  for (l = 0; l <= MLP_LAYERS; ++l) ok = ok && act[l];
  for (l = 0; l < MLP_LAYERS; ++l) ok = ok && pre[l];
  if (!ok) {
    worst = INFINITY;
    goto done;
  }
  for (i = 0; i < B * d[0]; ++i) act[0][i] = s->x->data[i];
  for (l = 0; l < MLP_LAYERS; ++l) { /* forward */
    const tf_real *W = s->params[2 * l]->data, *b = s->params[2 * l + 1]->data;
    int64_t din = d[l], dout = d[l + 1];
    for (i = 0; i < B; ++i)
      for (j = 0; j < dout; ++j) {
        double z = b[j];
        for (k = 0; k < din; ++k) z += act[l][i * din + k] * (double)W[j * din + k];
        pre[l][i * dout + j] = z;
        act[l + 1][i * dout + j] = (l + 1 < MLP_LAYERS) ? z / (1 + exp(-z)) : z;
      }
  }
  for (i = 0; i < B * d[MLP_LAYERS]; ++i) L += act[MLP_LAYERS][i] * act[MLP_LAYERS][i];
  L /= (double)(B * d[MLP_LAYERS]);
  *ref_loss = L;
  worst = fabs(s->loss - L) / fabs(L);
  g = malloc(sizeof(double) * B * (size_t)d[MLP_LAYERS]);
  if (!g) {
    worst = INFINITY;
    goto done;
  }
  for (i = 0; i < B * d[MLP_LAYERS]; ++i)
    g[i] = 2.0 * act[MLP_LAYERS][i] / (double)(B * d[MLP_LAYERS]);
  for (l = MLP_LAYERS - 1; l >= 0; --l) { /* backward: g is dL/d pre[l] */
    int64_t din = d[l], dout = d[l + 1];
    const tf_real *W = s->params[2 * l]->data;
    const tf_tensor *gW = s->grads[2 * l], *gb = s->grads[2 * l + 1];
    double num = 0, den = 0;
    if (!gW || !gb || gW->n != din * dout || gb->n != dout) {
      worst = INFINITY;
      goto done;
    }
    for (j = 0; j < dout; ++j)
      for (k = 0; k < din; ++k) {
        double r = 0;
        for (i = 0; i < B; ++i) r += g[i * dout + j] * act[l][i * din + k];
        num = fmax(num, fabs((double)gW->data[j * din + k] - r));
        den = fmax(den, fabs(r));
      }
    worst = fmax(worst, num / den);
    num = den = 0;
    for (j = 0; j < dout; ++j) {
      double r = 0;
      for (i = 0; i < B; ++i) r += g[i * dout + j];
      num = fmax(num, fabs((double)gb->data[j] - r));
      den = fmax(den, fabs(r));
    }
    worst = fmax(worst, num / den);
    if (l == 0) break;
    gprev = calloc((size_t)(B * din), sizeof(double));
    if (!gprev) {
      worst = INFINITY;
      goto done;
    }
    for (i = 0; i < B; ++i)
      for (j = 0; j < dout; ++j)
        for (k = 0; k < din; ++k) gprev[i * din + k] += g[i * dout + j] * (double)W[j * din + k];
    for (i = 0; i < B * din; ++i) { /* through the SiLU of layer l-1 */
      double z = pre[l - 1][i], sg = 1 / (1 + exp(-z));
      gprev[i] *= sg * (1 + z * (1 - sg));
    }
    free(g);
    g = gprev;
    gprev = NULL;
  }
done:
  free(g);
  free(gprev);
  for (l = 0; l <= MLP_LAYERS; ++l) free(act[l]);
  for (l = 0; l < MLP_LAYERS; ++l) free(pre[l]);
  return worst;
}

static int bench_mlp(const bench_opts *o, bench_out *out) {
  mlp_state s;
  bench_timing t;
  tf_rng rng;
  int64_t shape[2];
  int l, rc = 1;
  double flops = mlp_flops();
  memset(&s, 0, sizeof s);
  s.ctx = tf_ctx_create(0);
  shape[0] = MLP_BATCH;
  shape[1] = MLP_DIMS[0];
  s.x = tf_tensor_create(2, shape);
  if (!s.ctx || !s.x) {
    out_add(out, "error", "setup_failed");
    goto done;
  }
  tf_rng_init(&rng, o->seed, 0, TF_RNG_DATA, 0);
  tf_rng_fill_normal(&rng, s.x, 0.0, 1.0);
  tf_rng_init(&rng, o->seed, 0, TF_RNG_INIT, 0);
  for (l = 0; l < MLP_LAYERS; ++l) {
    double bound = 1.0 / sqrt((double)MLP_DIMS[l]);
    shape[0] = MLP_DIMS[l + 1];
    shape[1] = MLP_DIMS[l];
    s.params[2 * l] = tf_tensor_create(2, shape);
    s.params[2 * l + 1] = tf_tensor_create(1, shape);
    if (!s.params[2 * l] || !s.params[2 * l + 1]) {
      out_add(out, "error", "setup_failed");
      goto done;
    }
    tf_rng_fill_uniform(&rng, s.params[2 * l], -bound, bound);
    tf_rng_fill_uniform(&rng, s.params[2 * l + 1], -bound, bound);
    tf_requires_grad(s.params[2 * l], 1);
    tf_requires_grad(s.params[2 * l + 1], 1);
  }
  if (mlp_step(&s)) {
    fprintf(stderr, "bench_core: mlp: step failed: %s (%s)\n", tf_errmsg(),
            tf_strstatus(tf_ctx_status(s.ctx)));
    out_add(out, "error", "step_failed");
    goto done;
  }
  if (o->check) {
    double ref_loss = 0, err = mlp_reference_error(&s, &ref_loss);
    out_add(out, "check_maxrel", "%.3g", err);
    if (!(err < 1e-3)) {
      fprintf(stderr, "bench_core: mlp: result differs from the reference: max rel err %g "
                      "(loss %.8g, reference %.8g)\n", err, s.loss, ref_loss);
      out_add(out, "error", "wrong_result");
      goto done;
    }
  }
  if (bench_time(o, mlp_step, &s, &t)) {
    fprintf(stderr, "bench_core: mlp: step failed: %s\n", tf_errmsg());
    out_add(out, "error", "step_failed");
    goto done;
  }
  out_timing(out, "ours_ms", &t);
  out_add(out, "gflops", "%.2f", flops / (t.ms * 1e-3) / 1e9);
  out_add(out, "flops", "%.0f", flops);
  out_add(out, "loss", "%.6g", s.loss);
  out_add(out, "tape", "%zu", tf_ctx_tape_length(s.ctx));
  out_add(out, "dtype", "%s", TF_REAL_NAME);
  rc = 0;
done:
  for (l = 0; l < 2 * MLP_LAYERS; ++l) tf_tensor_destroy(s.params[l]);
  tf_tensor_destroy(s.x);
  tf_ctx_destroy(s.ctx);
  return rc;
}

/* ---- nll_step, sample: the conditional affine-coupling flow ------------------------------
 * D = 64, 8 blocks of [fixed random permutation -> affine coupling], subnet MLP
 * (D/2 + 1) -> 128 -> 128 -> D with SiLU, soft clamp s = 2 tanh(s/2), log c concatenated to
 * the subnet input, base N(0, I), batch 1024.  nll_step = forward, backward, Adam;
 * sample = 1024 draws through the inverse with their log-densities (no gradients). */

enum { FLOW_D = 64, FLOW_BATCH = 1024 };

/* ---- lattice_sample, lattice_nll_step: the phi^4 flows' architecture -----------------------
 * A 16 x 16 periodic lattice (D = 256), 8 checkerboard affine couplings, each with a subnet of
 * periodic 3x3 convolutions 1 -> 32 -> 32 -> 2 channels with SiLU, log c added to the first
 * layer's channels through a (32, 1) weight, soft clamp s = 2 tanh(s/2), base N(0, I), batch
 * 64.  lattice_sample = 64 draws through the inverse with log p; lattice_nll_step = forward,
 * backward, Adam. */
enum { LAT_L = 16, LAT_BATCH = 64, LAT_BLOCKS = 8, LAT_HIDDEN = 32 };

typedef struct {
  tf_params *p;
  tf_flow *f;
  tf_optim *opt;
  tf_ctx *ctx;
  tf_tensor *x, *c, *target;
  tf_rng rng;
  int64_t n; /* batch */
  double loss;
} flow_state;

static void flow_free(flow_state *s) {
  tf_optim_destroy(s->opt);
  tf_flow_destroy(s->f);
  tf_params_destroy(s->p);
  tf_tensor_destroy(s->x);
  tf_tensor_destroy(s->c);
  tf_tensor_destroy(s->target);
  tf_ctx_destroy(s->ctx);
}

/* lattice = 0: the nll_step flow; else the lattice_* flow */
static int flow_setup(const bench_opts *o, flow_state *s, int lattice) {
  memset(s, 0, sizeof *s);
  const int D = lattice ? LAT_L * LAT_L : FLOW_D;
  s->n = lattice ? LAT_BATCH : FLOW_BATCH;
  tf_flow_config cfg = tf_flow_defaults(D);
  cfg.embed_dim = 0; /* log c concatenated directly (MLP) or through Wc (conv) */
  cfg.n_blocks = lattice ? LAT_BLOCKS : 8;
  cfg.hidden = lattice ? LAT_HIDDEN : 128;
  cfg.n_hidden = 2;
  cfg.clamp = 2.0;
  cfg.seed = o->seed;
  if (lattice) {
    cfg.subnet = TF_SUBNET_CONV;
    cfg.lattice[0] = cfg.lattice[1] = LAT_L;
  }
  tf_optim_config oc = tf_optim_defaults(TF_OPTIM_ADAM);
  s->ctx = tf_ctx_create(0);
  s->p = tf_params_create();
  if (!s->ctx || !s->p || !(s->f = tf_flow_create(&cfg, s->p)) || tf_params_finalize(s->p) ||
      tf_flow_init(s->f) || !(s->opt = tf_optim_create(&oc, tf_params_size(s->p))))
    return 1;
  s->x = tf_tensor_create(2, (int64_t[]){s->n, D});
  s->c = tf_tensor_create(2, (int64_t[]){s->n, 1});
  s->target = tf_tensor_create(2, (int64_t[]){s->n, 1});
  if (!s->x || !s->c || !s->target) return 1;
  tf_rng_init(&s->rng, o->seed, 0, TF_RNG_DATA, 0);
  tf_rng_fill_normal(&s->rng, s->x, 0, 1);
  tf_rng_fill_uniform(&s->rng, s->c, 0.5, 2.0);
  tf_rng_fill_normal(&s->rng, s->target, 0, 1);
  tf_rng_init(&s->rng, o->seed, 0, TF_RNG_LATENT, 0);
  return 0;
}

/* matmul flops of the subnets: forward per block 2 N (33*128 + 128*128 + 128*64) */
static double flow_fwd_flops(void) {
  const double n = FLOW_BATCH, in = FLOW_D / 2 + 1;
  return 8 * 2 * n * (in * 128 + 128 * 128 + 128.0 * FLOW_D);
}

/* conv flops of the lattice subnets: forward per block 2 N S 9 (1*32 + 32*32 + 32*2) */
static double lattice_fwd_flops(void) {
  const double h = LAT_HIDDEN;
  return LAT_BLOCKS * 2.0 * LAT_BATCH * LAT_L * LAT_L * 9 * (h + h * h + 2 * h);
}

static int nll_step_fn(void *p) {
  flow_state *s = p;
  tf_ctx_reset(s->ctx);
  tf_tensor *loss =
      tf_scale(s->ctx, tf_mean_all(s->ctx, tf_flow_log_prob(s->f, s->ctx, s->x, s->c)), -1.0);
  if (!loss || tf_params_backward(s->p, s->ctx, loss)) return 1;
  s->loss = loss->data[0];
  return tf_optim_step(s->opt, tf_params_values(s->p), tf_params_grads(s->p), 1e-4, NULL);
}

static int sample_fn(void *p) {
  flow_state *s = p;
  tf_ctx_reset(s->ctx);
  tf_ctx_set_grad(s->ctx, 0);
  tf_tensor *lp = NULL;
  tf_tensor *x = tf_flow_sample(s->f, s->ctx, s->c, s->n, &s->rng, &lp);
  tf_ctx_set_grad(s->ctx, 1);
  if (!x || !lp) return 1;
  s->loss = lp->data[0];
  return 0;
}

/* trade_step: the TRADE residual r = d/dc log p(x | c) - target at fixed x (forward mode:
 * a tangent of ones on c), loss mean(r^2), backward through the tangent, Adam. */
static int trade_step_fn(void *p) {
  flow_state *s = p;
  tf_ctx_reset(s->ctx);
  tf_tensor *c = tf_copy(s->ctx, s->c);
  tf_tensor *one = tf_full(s->ctx, 2, (int64_t[]){s->n, 1}, 1.0);
  if (!c || !one || tf_set_tangent(s->ctx, c, one)) return 1;
  tf_tensor *lp = tf_flow_log_prob(s->f, s->ctx, s->x, c);
  tf_tensor *dlp = lp ? tf_tangent(s->ctx, lp) : NULL;
  tf_tensor *loss = tf_mean_all(s->ctx, tf_square(s->ctx, tf_sub(s->ctx, dlp, s->target)));
  if (!loss || tf_params_backward(s->p, s->ctx, loss)) return 1;
  s->loss = loss->data[0];
  return tf_optim_step(s->opt, tf_params_values(s->p), tf_params_grads(s->p), 1e-4, NULL);
}

static int bench_flow_case(const bench_opts *o, bench_out *out, const char *name, step_fn fn,
                           double flops, int lattice) {
  flow_state s;
  bench_timing t;
  int rc = 1;
  if (flow_setup(o, &s, lattice)) {
    fprintf(stderr, "bench_core: %s: setup failed: %s\n", name, tf_errmsg());
    out_add(out, "error", "setup_failed");
  } else if (bench_time(o, fn, &s, &t)) {
    fprintf(stderr, "bench_core: %s: step failed: %s\n", name, tf_errmsg());
    out_add(out, "error", "step_failed");
  } else {
    out_timing(out, "ours_ms", &t);
    out_add(out, "gflops", "%.2f", flops / (t.ms * 1e-3) / 1e9);
    out_add(out, "flops", "%.0f", flops);
    out_add(out, "params", "%lld", (long long)tf_params_size(s.p));
    out_add(out, "tape", "%zu", tf_ctx_tape_length(s.ctx));
    out_add(out, "dtype", "%s", TF_REAL_NAME);
    rc = 0;
  }
  flow_free(&s);
  return rc;
}

/* forward + backward: weight and input gradients of every subnet layer (the subnet input
 * depends on earlier blocks' parameters), i.e. three times the forward matmuls */
static int bench_nll_step(const bench_opts *o, bench_out *out) {
  return bench_flow_case(o, out, "nll_step", nll_step_fn, 3 * flow_fwd_flops(), 0);
}

/* forward, tangent (one more matmul per layer), and the reverse pass through both (about
 * twice each): about six forward passes of matmul flops */
static int bench_trade_step(const bench_opts *o, bench_out *out) {
  return bench_flow_case(o, out, "trade_step", trade_step_fn, 6 * flow_fwd_flops(), 0);
}

static int bench_sample(const bench_opts *o, bench_out *out) {
  return bench_flow_case(o, out, "sample", sample_fn, flow_fwd_flops(), 0);
}

static int bench_lattice_sample(const bench_opts *o, bench_out *out) {
  return bench_flow_case(o, out, "lattice_sample", sample_fn, lattice_fwd_flops(), 1);
}

static int bench_lattice_nll_step(const bench_opts *o, bench_out *out) {
  return bench_flow_case(o, out, "lattice_nll_step", nll_step_fn, 3 * lattice_fwd_flops(), 1);
}

/* ---- the case table ---------------------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *kind; /* "ref": machine reference measurement; "bench": a benchmark line */
  const char *desc;
  int (*run)(const bench_opts *o, bench_out *out);
} bench_case;

static const bench_case CASES[] = {
    {"sgemm", "ref", "cblas_sgemm 1024x1024x1024 row-major, one thread", bench_sgemm},
    {"mlp", "bench",
     "MLP fwd+bwd, batch 1024, 33-128-128-64, SiLU, loss mean(y^2), grads of W and b",
     bench_mlp},
    {"nll_step", "bench",
     "conditional affine-coupling flow D=64, 8 blocks, subnets 33-128-128-64, batch 1024: "
     "forward, backward, Adam",
     bench_nll_step},
    {"sample", "bench", "the nll_step flow: 1024 samples through the inverse with log p",
     bench_sample},
    {"trade_step", "bench",
     "the nll_step flow: TRADE residual d/dc log p (forward mode) against a target, "
     "mean square, backward, Adam",
     bench_trade_step},
    {"lattice_sample", "bench",
     "phi4-style conv flow, 16x16 lattice, 8 checkerboard affine blocks, periodic 3x3 convs "
     "1-32-32-2: 64 samples through the inverse with log p",
     bench_lattice_sample},
    {"lattice_nll_step", "bench",
     "the lattice_sample flow, batch 64: forward, backward, Adam", bench_lattice_nll_step},
    /* next: mpi_weak */
};
enum { N_CASES = sizeof CASES / sizeof CASES[0] };

static void usage(FILE *f) {
  fprintf(f, "usage: bench_core --list | bench_core [--reps N] [--rep-time S] [--min-steps N]"
             " [--warmup S] [--seed N] [--no-check] NAME...\n");
}

int main(int argc, char **argv) {
  bench_opts o = {7, 0.3, 20, 0.2, 1, 1};
  const bench_case *todo[64];
  int n_todo = 0, i, c, failed = 0;
  for (i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
    if (!strcmp(a, "--list")) {
      for (c = 0; c < N_CASES; ++c) printf("%s %s %s\n", CASES[c].name, CASES[c].kind, CASES[c].desc);
      return 0;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--no-check")) {
      o.check = 0;
    } else if (!strcmp(a, "--reps") && v) {
      o.reps = atoi(v), ++i;
    } else if (!strcmp(a, "--rep-time") && v) {
      o.rep_time = atof(v), ++i;
    } else if (!strcmp(a, "--min-steps") && v) {
      o.min_steps = atoi(v), ++i;
    } else if (!strcmp(a, "--warmup") && v) {
      o.warmup = atof(v), ++i;
    } else if (!strcmp(a, "--seed") && v) {
      o.seed = strtoull(v, NULL, 10), ++i;
    } else if (a[0] == '-') {
      fprintf(stderr, "bench_core: unknown option or missing value: %s\n", a);
      usage(stderr);
      return 2;
    } else {
      for (c = 0; c < N_CASES && strcmp(CASES[c].name, a); ++c) {
      }
      if (c == N_CASES) {
        fprintf(stderr, "bench_core: unknown case '%s' (see --list)\n", a);
        return 2;
      }
      if (n_todo < 64) todo[n_todo++] = &CASES[c];
    }
  }
  if (o.reps < 1 || o.reps > 64 || o.min_steps < 1 || !(o.rep_time >= 0) || !(o.warmup >= 0)) {
    fprintf(stderr, "bench_core: --reps must be in 1..64, --min-steps >= 1, times >= 0\n");
    return 2;
  }
  if (n_todo == 0) {
    usage(stderr);
    return 2;
  }
  if (openblas_set_num_threads) openblas_set_num_threads(1);
  for (i = 0; i < n_todo; ++i) {
    bench_out out;
    out.len = 0;
    out.buf[0] = '\0';
    if (todo[i]->run(&o, &out)) failed = 1;
    printf("case=%s%s\n", todo[i]->name, out.buf);
    fflush(stdout);
  }
  return failed;
}
