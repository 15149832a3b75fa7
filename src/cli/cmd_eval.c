/* cmd_eval.c — `tradeflow eval CHECKPOINT --data FILE.h5 [...]`: the flow's NLL on samples.
 *
 * Reports the mean negative log-likelihood in nats per sample with two error estimates: the
 * standard error of the mean and a bootstrap over samples (fixed seed), as DESIGN.md asks of
 * every metric.  NLL - H is KL(data || flow) when the data's entropy H is known.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tradeflow/error.h"

enum { N_BOOT = 200 };

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow eval CHECKPOINT --data FILE.h5 [--dataset x]\n"
          "                      [--condition C | --condition-dataset NAME] [--max-rows N]\n"
          "\n"
          "Mean negative log-likelihood (nats/sample) of the flow in CHECKPOINT on the rows\n"
          "of a dataset (default 'x'; sample files from `tradeflow sample` work as they are),\n"
          "with its standard error and a bootstrap error (%d resamples).\n",
          N_BOOT);
}

int tf_cli_eval(int argc, char **argv) {
  const char *ckpt = NULL, *data = NULL, *dset = "x", *cset = NULL;
  double cond = NAN;
  int64_t max_rows = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const int has = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return TF_EXIT_OK;
    } else if (has && !strcmp(a, "--data")) {
      data = argv[++i];
    } else if (has && !strcmp(a, "--dataset")) {
      dset = argv[++i];
    } else if (has && !strcmp(a, "--condition-dataset")) {
      cset = argv[++i];
    } else if (has && !strcmp(a, "--condition")) {
      if (!tf_cli_parse_f64("eval", a, argv[++i], 1e-300, 1e300, &cond)) return TF_EXIT_USAGE;
    } else if (has && !strcmp(a, "--max-rows")) {
      if (!tf_cli_parse_i64("eval", a, argv[++i], 1, INT64_MAX, &max_rows)) return TF_EXIT_USAGE;
    } else if (a[0] != '-' && !ckpt) {
      ckpt = a;
    } else {
      fprintf(stderr, "tradeflow eval: unexpected or incomplete argument '%s'\n\n", a);
      usage(stderr);
      return TF_EXIT_USAGE;
    }
  }
  if (!ckpt || !data) {
    fprintf(stderr, "tradeflow eval: CHECKPOINT and --data are required\n\n");
    usage(stderr);
    return TF_EXIT_USAGE;
  }
  if (cset && !isnan(cond)) {
    fprintf(stderr, "tradeflow eval: give --condition or --condition-dataset, not both\n");
    return TF_EXIT_USAGE;
  }
  tf_cli_model m;
  if (tf_cli_model_open(&m, ckpt) != TF_OK) {
    fprintf(stderr, "tradeflow eval: %s\n", tf_errmsg());
    return TF_EXIT_USAGE;
  }
  int status = TF_EXIT_USAGE;
  double *x = NULL, *c = NULL, *nll = NULL;
  tf_ctx *ctx = NULL;
  int64_t n, d;
  if (tf_h5_read_matrix(data, dset, TF_H5_FINITE, &n, &d, &x) != TF_OK) goto fail;
  if (d != m.fc.dim) {
    tf_error(TF_EINVAL, "%s:%s has %lld columns, the flow in %s has dimension %d", data, dset,
             (long long)d, ckpt, m.fc.dim);
    goto fail;
  }
  if (m.fc.conditional) {
    if (!cset && isnan(cond)) {
      /* a sample file carries its conditions */
      int has_c = 0;
      if (tf_h5_has_dataset(data, "c", &has_c) == TF_OK && has_c) cset = "c";
    }
    if (cset) {
      int64_t nc, k;
      if (tf_h5_read_matrix(data, cset, TF_H5_FINITE, &nc, &k, &c) != TF_OK) goto fail;
      if (nc != n || k != 1) {
        tf_error(TF_EFORMAT, "%s: '%s' is (%lld, %lld), expected (%lld) to match '%s'", data,
                 cset, (long long)nc, (long long)k, (long long)n, dset);
        goto fail;
      }
      for (int64_t i = 0; i < n; i++)
        if (!(c[i] > 0)) {
          tf_error(TF_ERANGE, "%s:%s row %lld is %g; conditions must be > 0", data, cset,
                   (long long)i, c[i]);
          goto fail;
        }
    } else if (isnan(cond)) {
      tf_error(TF_EINVAL, "%s holds a conditional flow and %s has no dataset 'c': give "
               "--condition C or --condition-dataset NAME", ckpt, data);
      goto fail;
    }
  }
  if (max_rows && max_rows < n) n = max_rows;
  status = TF_EXIT_FAIL;
  ctx = tf_ctx_create(0);
  nll = malloc((size_t)n * sizeof *nll);
  if (!ctx || !nll) {
    tf_error(TF_ENOMEM, "out of memory");
    goto fail;
  }
  tf_dataset ds = {n, d, x, c, c ? 0 : cond};
  if (tf_dataset_log_prob(m.flow, ctx, &ds, NULL, n, nll) != TF_OK) goto fail;
  for (int64_t i = 0; i < n; i++) nll[i] = -nll[i];
  double mean = 0, m2 = 0;
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(nll[i])) bad++;
    mean += nll[i];
  }
  mean /= (double)n;
  for (int64_t i = 0; i < n; i++) m2 += (nll[i] - mean) * (nll[i] - mean);
  const double se = n > 1 ? sqrt(m2 / (double)(n - 1) / (double)n) : NAN;
  tf_rng r;
  tf_rng_init(&r, 12345, 0, TF_RNG_USER, 0);
  double bs = 0, bs2 = 0;
  for (int b = 0; b < N_BOOT; b++) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += nll[tf_rng_below(&r, (uint64_t)n)];
    s /= (double)n;
    bs += s / N_BOOT;
    bs2 += s * s / N_BOOT;
  }
  const double boot = sqrt(fmax(0, bs2 - bs * bs) * N_BOOT / (N_BOOT - 1));
  printf("tradeflow eval: %s on %s:%s (%lld rows%s)\n", m.name, data, dset, (long long)n,
         c ? ", per-row conditions" : "");
  printf("NLL %.6f nats/sample  +- %.6f (standard error)  +- %.6f (bootstrap, %d resamples)\n",
         mean, se, boot, N_BOOT);
  if (bad) {
    printf("warning: %lld rows have a non-finite log-density\n", (long long)bad);
    status = TF_EXIT_FAIL;
  } else {
    status = TF_EXIT_OK;
  }
  goto done;
fail:
  fprintf(stderr, "tradeflow eval: %s\n", tf_errmsg());
done:
  tf_ctx_destroy(ctx);
  free(x);
  free(c);
  free(nll);
  tf_cli_model_close(&m);
  return status;
}
