/* cmd_sample.c — `tradeflow sample CHECKPOINT --n N --out FILE.h5 [--condition C] ...`.
 *
 * Draws x ~ p_theta(. | c) in batches and streams them into a sample file (docs/FILES.md):
 * x, c, log_p; log_q and log_w are NaN, since a flow alone knows no target density (the
 * physics-aware commands fill them).  Batch b draws its latents from the Philox stream
 * (seed, 0, LATENT, b), so a given --seed and --batch reproduce a file exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tradeflow/error.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow sample CHECKPOINT --n N --out FILE.h5 [--condition C] [--seed S]\n"
          "                        [--batch B]\n"
          "\n"
          "Draws N samples from the flow in CHECKPOINT at condition C (required for a\n"
          "conditional flow) and writes them with their log-densities to FILE.h5\n"
          "(layout: docs/FILES.md).  --seed (default 1) and --batch (default 8192) fix the\n"
          "random stream.\n");
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tf_cli_sample(int argc, char **argv) {
  const char *ckpt = NULL, *out = NULL;
  int64_t n = -1, seed = 1, batch = 8192;
  double cond = NAN;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const int has = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return TF_EXIT_OK;
    } else if (has && !strcmp(a, "--n")) {
      if (!tf_cli_parse_i64("sample", a, argv[++i], 1, (int64_t)1 << 40, &n)) return TF_EXIT_USAGE;
    } else if (has && !strcmp(a, "--seed")) {
      if (!tf_cli_parse_i64("sample", a, argv[++i], 0, INT64_MAX, &seed)) return TF_EXIT_USAGE;
    } else if (has && !strcmp(a, "--batch")) {
      if (!tf_cli_parse_i64("sample", a, argv[++i], 1, 1 << 24, &batch)) return TF_EXIT_USAGE;
    } else if (has && !strcmp(a, "--condition")) {
      if (!tf_cli_parse_f64("sample", a, argv[++i], 1e-300, 1e300, &cond)) return TF_EXIT_USAGE;
    } else if (has && !strcmp(a, "--out")) {
      out = argv[++i];
    } else if (a[0] != '-' && !ckpt) {
      ckpt = a;
    } else {
      fprintf(tf_cli_err(), "tradeflow sample: unexpected or incomplete argument '%s'\n\n", a);
      usage(tf_cli_err());
      return TF_EXIT_USAGE;
    }
  }
  if (!ckpt || !out || n < 0) {
    fprintf(tf_cli_err(), "tradeflow sample: CHECKPOINT, --n and --out are required\n\n");
    usage(tf_cli_err());
    return TF_EXIT_USAGE;
  }
  tf_cli_model m;
  if (tf_cli_model_open(&m, ckpt) != TF_OK) {
    fprintf(tf_cli_err(), "tradeflow sample: %s\n", tf_errmsg());
    return TF_EXIT_USAGE;
  }
  if (m.fc.conditional && isnan(cond)) {
    fprintf(tf_cli_err(), "tradeflow sample: %s holds a conditional flow; give --condition C (> 0)\n",
            ckpt);
    tf_cli_model_close(&m);
    return TF_EXIT_USAGE;
  }
  if (!m.fc.conditional) cond = isnan(cond) ? 1.0 : cond;

  /* the target family recorded with the model (if any) gives log_q and log_w */
  tf_physics *phys = NULL;
  tf_config *pc = tf_cli_physics_load(m.config_text, ckpt);
  if (!pc || tf_cli_physics_create(pc, &phys, NULL) != TF_OK) {
    fprintf(tf_cli_err(), "tradeflow sample: %s: %s\n", ckpt, tf_errmsg());
    tf_config_destroy(pc);
    tf_cli_model_close(&m);
    return TF_EXIT_USAGE;
  }
  tf_config_destroy(pc);
  if (phys) {
    double lo, hi;
    tf_physics_param_range(phys, &lo, &hi);
    if (cond < lo || cond > hi) {
      fprintf(tf_cli_err(), "tradeflow sample: --condition %g is outside the valid range [%g, %g] of "
              "%s for %s\n", cond, lo, hi, tf_physics_param(phys), tf_physics_describe(phys));
      tf_physics_destroy(phys);
      tf_cli_model_close(&m);
      return TF_EXIT_USAGE;
    }
  }

  const int64_t D = m.fc.dim;
  int status = TF_EXIT_FAIL;
  tf_sample_writer *w = NULL;
  tf_ctx *ctx = tf_ctx_create(0);
  double *xd = malloc((size_t)(batch * D) * sizeof *xd), *cd = malloc((size_t)batch * sizeof *cd);
  double *lp = malloc((size_t)batch * sizeof *lp), *lq = malloc((size_t)batch * sizeof *lq);
  tf_sample_attrs at = {m.name, phys ? tf_physics_name(phys) : "",
                        phys ? tf_physics_describe(phys) : "", m.config_text, 0};
  if (!ctx || !xd || !cd || !lp || !lq) {
    tf_error(TF_ENOMEM, "out of memory");
    goto fail;
  }
  if (tf_sample_writer_open(&w, out, D, &at) != TF_OK) {
    status = TF_EXIT_USAGE;
    goto fail;
  }
  tf_ctx_set_grad(ctx, 0);
  const double t0 = now_s();
  for (int64_t b = 0, done = 0; done < n; b++) {
    const int64_t k = n - done < batch ? n - done : batch;
    tf_ctx_reset(ctx);
    tf_rng r;
    tf_rng_init(&r, (uint64_t)seed, 0, TF_RNG_LATENT, (uint32_t)b);
    tf_tensor *c = tf_full(ctx, 2, (int64_t[]){k, 1}, cond), *logp = NULL;
    tf_tensor *x = tf_flow_sample(m.flow, ctx, m.fc.conditional ? c : NULL, k, &r, &logp);
    if (!x || !logp) goto fail;
    for (int64_t i = 0; i < k * D; i++) xd[i] = (double)x->data[i];
    for (int64_t i = 0; i < k; i++) {
      cd[i] = cond;
      lp[i] = (double)logp->data[i];
    }
    if (phys && tf_physics_log_q(phys, k, xd, cd, lq, NULL, NULL) != TF_OK) goto fail;
    tf_sample_block blk = {k, xd, cd, lp, phys ? lq : NULL, NULL};
    if (tf_sample_writer_append(w, &blk) != TF_OK) goto fail;
    done += k;
  }
  const double dt = now_s() - t0;
  if (tf_sample_writer_close(w) != TF_OK) {
    w = NULL;
    goto fail;
  }
  w = NULL;
  printf("tradeflow sample: %lld samples of %s (D = %lld) at c = %g written to %s "
         "(%.3g s, %.3g samples/s)\n",
         (long long)n, m.name, (long long)D, cond, out, dt, dt > 0 ? (double)n / dt : 0.0);
  status = TF_EXIT_OK;
  goto done;
fail:
  fprintf(tf_cli_err(), "tradeflow sample: %s\n", tf_errmsg());
done:
  tf_sample_writer_abort(w);
  tf_ctx_destroy(ctx);
  free(xd);
  free(cd);
  free(lp);
  free(lq);
  tf_physics_destroy(phys);
  tf_cli_model_close(&m);
  return status;
}
