/* cmd_eval.c — `tradeflow eval`: how good is a flow?
 *
 * Two modes:
 *   eval CHECKPOINT --data FILE.h5 [...]          the flow's NLL on the rows of a dataset,
 *                                                 with standard and bootstrap errors;
 *   eval CHECKPOINT [--conditions C1,C2,...] ...  the metrics of DESIGN.md section 4 at each
 *                                                 condition against the physics module recorded
 *                                                 in the checkpoint's config (tf_eval_condition,
 *                                                 include/tradeflow/evaluate.h): ESS, log Z, KL,
 *                                                 NLL on reference samples, observables
 *                                                 reweighted and Metropolis-corrected.  A table
 *                                                 on stdout, progress on stderr, and optionally
 *                                                 a result file (docs/FILES.md) for `plot`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/evaluate.h"
#include "tradeflow/stats.h"

enum { N_BOOT = 200, MAX_COND = 4096, MAX_REF = 64, DEFAULT_K = 8 };

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow eval CHECKPOINT [--conditions C1,C2,...] [--n N] [--seed S]\n"
          "                      [--reference FILE.h5[,FILE2.h5...]] [--out RESULT.h5]\n"
          "                      [--imh-n M] [--bootstrap B] [--kl-grid G] [--n-ref R]\n"
          "       tradeflow eval CHECKPOINT --data FILE.h5 [--dataset x]\n"
          "                      [--condition C | --condition-dataset NAME] [--max-rows N]\n"
          "\n"
          "Against the physics module recorded in CHECKPOINT's config ([physics]), at each\n"
          "condition (default: %d values log-spaced over [c_min, c_max] plus c0 of the run):\n"
          "  - N flow samples (default 20000; latents from --seed S, default 1) with log-weights\n"
          "    log w = log q - log p; Kish ESS/N and log Z = LSE(log w) - log N, errors from\n"
          "    B bootstrap resamples (default %d), and the exact log Z where the module has it\n"
          "    (samples with a non-finite x or log p, or a NaN log w, are dropped and counted);\n"
          "  - every observable reweighted (self-normalised), and along an independence\n"
          "    Metropolis chain over the first M samples (default all; 0: off) with its\n"
          "    integrated autocorrelation time (Sokal window, c = 6) and error sd sqrt(2 tau/n);\n"
          "  - reference samples: rows of the --reference files whose c equals the condition\n"
          "    (within 1e-9 relative; datasets x [N, D] and c [N], converted by the module when\n"
          "    D differs), else R exact samples (default 20000) when the module can draw them:\n"
          "    the flow's NLL on them and the reference observable means;\n"
          "  - for 2-D targets with an exact log Z, KL(p_exact || p_flow) by quadrature: the\n"
          "    midpoint rule on a G x G grid (default 400; 0: off) over the reweighted mean\n"
          "    +- 8 sd per axis, widened 1.5x until the exact mass inside is >= 1 - 1e-6;\n"
          "    its error is |KL(h) - KL(2h)| from every other grid point.\n"
          "A table goes to stdout, progress to stderr, and with --out everything to an HDF5\n"
          "result file (layout: docs/FILES.md) for `tradeflow plot`.\n"
          "\n"
          "With --data: the mean negative log-likelihood (nats/sample) of the flow on the\n"
          "rows of a dataset (default 'x'; sample files from `tradeflow sample` work as they\n"
          "are), with its standard error and a bootstrap error (%d resamples).\n",
          DEFAULT_K, N_BOOT, N_BOOT);
}

typedef struct {
  const char *ckpt, *data, *dset, *cset, *out;
  double cond;
  int64_t max_rows;
  /* condition mode */
  const char *conditions;
  const char *refs[MAX_REF];
  int n_refs;
  tf_eval_config ec;
  int cond_opts; /* condition-mode options given (not allowed with --data) */
} eval_opts;

/* ================================ NLL on a dataset ============================================ */

static int nll_mode(const eval_opts *o) {
  const char *ckpt = o->ckpt, *data = o->data, *dset = o->dset, *cset = o->cset;
  const double cond = o->cond;
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
  if (n == 0) {
    tf_error(TF_EFORMAT, "%s:%s has no rows: there is no NLL to report", data, dset);
    goto fail;
  }
  if (d != tf_model_dim(m.model)) {
    tf_error(TF_EINVAL, "%s:%s has %lld columns, the flow in %s has dimension %d", data, dset,
             (long long)d, ckpt, tf_model_dim(m.model));
    goto fail;
  }
  if (tf_model_conditional(m.model)) {
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
  if (o->max_rows && o->max_rows < n) n = o->max_rows;
  status = TF_EXIT_FAIL;
  ctx = tf_ctx_create(0);
  nll = malloc((size_t)n * sizeof *nll);
  if (!ctx || !nll) {
    tf_error(TF_ENOMEM, "out of memory");
    goto fail;
  }
  tf_dataset ds = {n, d, x, c, c ? 0 : cond};
  if (tf_dataset_log_prob(m.model, ctx, &ds, NULL, n, nll) != TF_OK) goto fail;
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    nll[i] = -nll[i];
    if (!isfinite(nll[i])) bad++;
  }
  double mean, se;
  tf_stats_mean_se(n, nll, 1, &mean, &se);
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
  printf("tradeflow eval: %s%s on %s:%s (%lld rows%s)\n", m.name, m.weights, data, dset,
         (long long)n, c ? ", per-row conditions" : "");
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

/* ================================ metrics over conditions ===================================== */

typedef struct {
  const char *path;
  int64_t n;
  double *x; /* (n, D) in the module's coordinates */
  double *c; /* (n) */
} ref_file;

/* --conditions C1,C2,... (each > 0); or the default grid over the run's range. */
static int make_conditions(const char *list, const tf_cli_range *rg, double *c, int *k) {
  *k = 0;
  if (list) {
    if (!tf_cli_parse_f64_list("eval", "--conditions", list, 1e-300, 1e300, MAX_COND, c, k))
      return tf_error(TF_EINVAL, "--conditions '%s' is not a list of conditions", list);
    return TF_OK;
  }
  /* DEFAULT_K log-spaced points, c0 inserted in order unless it is (nearly) one of them */
  for (int i = 0; i < DEFAULT_K; i++)
    c[(*k)++] = rg->c_min * pow(rg->c_max / rg->c_min, DEFAULT_K > 1 ? i / (DEFAULT_K - 1.0) : 0);
  c[DEFAULT_K - 1] = rg->c_max; /* exact ends despite pow's rounding */
  int at = 0, dup = 0;
  while (at < *k && c[at] < rg->c0) at++;
  for (int i = 0; i < *k; i++) dup |= fabs(c[i] - rg->c0) <= 1e-9 * fabs(rg->c0);
  if (!dup) {
    memmove(c + at + 1, c + at, (size_t)(*k - at) * sizeof *c);
    c[at] = rg->c0;
    (*k)++;
  }
  return TF_OK;
}

static int load_reference(const char *path, const tf_physics *p, ref_file *rf) {
  memset(rf, 0, sizeof *rf);
  rf->path = path;
  int64_t n, d, nc, kc;
  double *raw = NULL;
  int st = tf_h5_read_matrix(path, "x", TF_H5_FINITE, &n, &d, &raw);
  if (st == TF_OK) st = tf_h5_read_matrix(path, "c", TF_H5_FINITE, &nc, &kc, &rf->c);
  if (st == TF_OK && (nc != n || kc != 1))
    st = tf_error(TF_EFORMAT, "%s: dataset 'c' is (%lld, %lld), expected (%lld) to match 'x'",
                  path, (long long)nc, (long long)kc, (long long)n);
  const int64_t D = tf_physics_dim(p);
  if (st == TF_OK && d != D) {
    rf->x = malloc((size_t)(n * D) * sizeof *rf->x);
    st = rf->x ? tf_physics_import(p, n, d, raw, rf->x) : tf_error(TF_ENOMEM, "out of memory");
    if (st != TF_OK)
      st = tf_error(st, "%s: x has %lld columns, module %s has dimension %lld and cannot "
                    "convert them: %s", path, (long long)d, tf_physics_describe(p), (long long)D,
                    tf_errmsg());
    free(raw);
  } else {
    rf->x = raw;
  }
  rf->n = n;
  if (st != TF_OK) {
    free(rf->x);
    free(rf->c);
    memset(rf, 0, sizeof *rf);
  }
  return st;
}

/* The rows of every reference file at condition c, gathered into *x (malloc'd). */
static int gather_reference(const ref_file *rf, int n_rf, double c, int64_t D, tf_eval_ref *out,
                            double **x) {
  int64_t n = 0;
  *x = NULL;
  out->n = 0;
  out->x = NULL;
  for (int f = 0; f < n_rf; f++)
    for (int64_t i = 0; i < rf[f].n; i++) n += fabs(rf[f].c[i] - c) <= 1e-9 * fabs(c);
  if (n == 0) return TF_OK;
  *x = malloc((size_t)(n * D) * sizeof **x);
  if (!*x) return tf_error(TF_ENOMEM, "out of memory for %lld reference rows", (long long)n);
  int64_t k = 0;
  for (int f = 0; f < n_rf; f++)
    for (int64_t i = 0; i < rf[f].n; i++)
      if (fabs(rf[f].c[i] - c) <= 1e-9 * fabs(c))
        memcpy(*x + (k++) * D, rf[f].x + i * D, (size_t)D * sizeof **x);
  out->n = n;
  out->x = *x;
  return TF_OK;
}

/* "value +- error" with the value rounded to the error's second significant digit, or "-"
 * when missing. */
static const char *pm(char *buf, size_t len, double v, double e) {
  if (isnan(v)) {
    snprintf(buf, len, "-");
  } else if (!isfinite(e) || !(e > 0) || !isfinite(v)) {
    snprintf(buf, len, "%.6g", v);
  } else {
    int dec = 1 - (int)floor(log10(e));
    if (dec < 0) dec = 0;
    if (dec > 12 || fabs(v) >= 1e9)
      snprintf(buf, len, "%.6g +- %.2g", v, e);
    else
      snprintf(buf, len, "%.*f +- %.*f", dec, v, dec, e);
  }
  return buf;
}

static void print_tables(const tf_eval_result *r) {
  char a[64], b[64], cc[64], d[64], e[64], f[64];
  double *const *col = r->col;
  printf("%10s  %-22s %-24s %-12s %-10s %-24s %s\n", r->param, "ESS/N", "log Z", "log Z exact",
         "KL", "NLL reference", "IMH accept");
  for (int64_t i = 0; i < r->k; i++)
    printf("%10.5g  %-22s %-24s %-12s %-10s %-24s %s\n", col[TF_EV_C][i],
           pm(a, sizeof a, col[TF_EV_ESS][i], col[TF_EV_ESS_ERR][i]),
           pm(b, sizeof b, col[TF_EV_LOGZ][i], col[TF_EV_LOGZ_ERR][i]),
           pm(cc, sizeof cc, col[TF_EV_LOGZ_EXACT][i], NAN),
           pm(d, sizeof d, col[TF_EV_KL][i], NAN),
           pm(e, sizeof e, col[TF_EV_NLL_REF][i], col[TF_EV_NLL_REF_ERR][i]),
           pm(f, sizeof f, col[TF_EV_IMH_ACCEPT][i], NAN));
  for (int j = 0; j < r->m; j++) {
    printf("\n%10s  %-26s %-26s %-8s %-26s %s\n", r->param, r->obs_names[j], "IMH-corrected",
           "tau_int", "reference", "pull");
    for (int64_t i = 0; i < r->k; i++) {
      const int64_t q = i * r->m + j;
      /* (IMH - reference) in combined standard errors: the agreement test at a glance */
      const double ei = r->tab[TF_EV_OBS_IMH_ERR][q], er = r->tab[TF_EV_OBS_REF_ERR][q];
      const double pull = (r->tab[TF_EV_OBS_IMH][q] - r->tab[TF_EV_OBS_REF][q]) /
                          sqrt(ei * ei + er * er);
      char g[32] = "-";
      if (isfinite(pull)) snprintf(g, sizeof g, "%+.2f", pull);
      printf("%10.5g  %-26s %-26s %-8s %-26s %s\n", col[TF_EV_C][i],
             pm(a, sizeof a, r->tab[TF_EV_OBS_RW][q], r->tab[TF_EV_OBS_RW_ERR][q]),
             pm(b, sizeof b, r->tab[TF_EV_OBS_IMH][q], r->tab[TF_EV_OBS_IMH_ERR][q]),
             isnan(r->tab[TF_EV_OBS_TAU][q])
                 ? "-"
                 : (snprintf(cc, sizeof cc, "%.3g", r->tab[TF_EV_OBS_TAU][q]), cc),
             pm(d, sizeof d, r->tab[TF_EV_OBS_REF][q], r->tab[TF_EV_OBS_REF_ERR][q]), g);
    }
  }
}

static int cond_mode(eval_opts *o) {
  tf_cli_model m;
  if (tf_cli_model_open(&m, o->ckpt) != TF_OK) {
    fprintf(stderr, "tradeflow eval: %s\n", tf_errmsg());
    return TF_EXIT_USAGE;
  }
  int status = TF_EXIT_USAGE, k = 0, n_rf = 0;
  tf_config *pc = NULL;
  tf_physics *p = NULL;
  tf_ctx *ctx = NULL;
  tf_eval_result res;
  ref_file rf[MAX_REF];
  double *cond = malloc((MAX_COND + 1) * sizeof *cond), *xref = NULL;
  memset(&res, 0, sizeof res);
  tf_cli_range rg;
  if (!cond) {
    tf_error(TF_ENOMEM, "out of memory");
    goto fail;
  }
  if (tf_cli_model_physics(&m, o->ckpt, "give --data FILE.h5 to evaluate the NLL on samples, "
                           "or train with a [physics] section", NAN, &pc, &p, &rg) != TF_OK)
    goto fail;
  const int64_t D = tf_physics_dim(p);
  if (make_conditions(o->conditions, &rg, cond, &k) != TF_OK) goto fail;
  double lo, hi;
  tf_physics_param_range(p, &lo, &hi);
  for (int i = 0; i < k; i++)
    if (!(cond[i] >= lo && cond[i] <= hi)) {
      tf_error(TF_ERANGE, "condition %s = %g is outside the valid range [%g, %g] of module %s",
               tf_physics_param(p), cond[i], lo, hi, tf_physics_describe(p));
      goto fail;
    }
  if (o->ec.imh_n > o->ec.n) {
    tf_error(TF_EINVAL, "--imh-n %lld exceeds --n %lld: the chain runs over the flow samples",
             (long long)o->ec.imh_n, (long long)o->ec.n);
    goto fail;
  }
  if (o->out && tf_eval_result_probe(o->out) != TF_OK) goto fail;
  for (; n_rf < o->n_refs; n_rf++)
    if (load_reference(o->refs[n_rf], p, &rf[n_rf]) != TF_OK) goto fail;
  const int M = tf_physics_n_obs(p) + tf_physics_n_derived(p);
  const char *names[256];
  for (int j = 0; j < M && j < 256; j++)
    names[j] = j < tf_physics_n_obs(p) ? tf_physics_obs_name(p, j)
                                       : tf_physics_derived_name(p, j - tf_physics_n_obs(p));
  if (M > 256) {
    tf_error(TF_EUNSUP, "module %s has %d observables (at most 256)", tf_physics_name(p), M);
    goto fail;
  }
  status = TF_EXIT_FAIL;
  ctx = tf_ctx_create(0);
  if (!ctx || tf_eval_result_alloc(&res, k, M, names) != TF_OK) {
    tf_error(TF_ENOMEM, "out of memory");
    goto fail;
  }
  int st = TF_OK;
  const char *sk[] = {m.name, tf_physics_describe(p), tf_physics_name(p), tf_physics_param(p),
                      o->ckpt, m.config_text, D == 2 ? tf_eval_kl_method() : ""};
  char **sv[] = {&res.model, &res.physics, &res.physics_name, &res.param, &res.checkpoint,
                 &res.config_text, &res.kl_method};
  for (int i = 0; i < 7 && st == TF_OK; i++) st = tf_eval_result_set_str(sv[i], sk[i]);
  if (st != TF_OK) goto fail;
  res.n = o->ec.n;
  res.seed = (int64_t)o->ec.seed;
  res.imh_n = o->ec.imh_n < 0 ? o->ec.n : o->ec.imh_n;
  res.bootstrap = o->ec.bootstrap;
  res.kl_grid = D == 2 ? o->ec.kl_grid : 0;
  fprintf(stderr, "tradeflow eval: %s%s against %s at %d value%s of %s, N = %lld, seed %llu\n",
          m.name, m.weights, tf_physics_describe(p), k, k == 1 ? "" : "s", tf_physics_param(p),
          (long long)o->ec.n, (unsigned long long)o->ec.seed);
  const double t0 = tf_cli_now();
  for (int i = 0; i < k; i++) {
    tf_eval_ref ref;
    char note[1024];
    const double t1 = tf_cli_now();
    if (gather_reference(rf, n_rf, cond[i], D, &ref, &xref) != TF_OK) goto fail;
    if (tf_eval_condition(m.model, ctx, p, cond[i], i, &o->ec, &ref, &res, i, note,
                          sizeof note) != TF_OK)
      goto fail;
    free(xref);
    xref = NULL;
    fprintf(stderr, "  [%d/%d] %s = %-9.5g ESS/N %.4f +- %.4f  log Z %.5g +- %.2g  %.1f s\n",
            i + 1, k, tf_physics_param(p), cond[i], res.col[TF_EV_ESS][i],
            res.col[TF_EV_ESS_ERR][i], res.col[TF_EV_LOGZ][i], res.col[TF_EV_LOGZ_ERR][i],
            tf_cli_now() - t1);
    if (note[0]) fprintf(stderr, "        note: %s\n", note);
  }
  printf("tradeflow eval: %s%s against %s, N = %lld flow samples per condition, seed %llu\n",
         m.name, m.weights, tf_physics_describe(p), (long long)o->ec.n,
         (unsigned long long)o->ec.seed);
  print_tables(&res);
  /* The weakest condition decides whether a flow can be trusted over its range, and needs no
   * reference: of the phi4 TRADE runs, the five whose lowest ESS/N was >= 0.1 agreed with HMC
   * (at most 2 pulls of 44 beyond 2), 14 of the 15 below did not (docs/RESULTS-phi4.md). */
  const double *ess = res.col[TF_EV_ESS];
  int weak = 0; /* a NaN ESS (no finite weight) is the weakest of all */
  for (int i = 1; i < k; i++)
    if (isnan(ess[i]) || (!isnan(ess[weak]) && ess[i] < ess[weak])) weak = i;
  printf("\nlowest ESS/N: %.4f +- %.4f at %s = %.5g\n", ess[weak],
         res.col[TF_EV_ESS_ERR][weak], tf_physics_param(p), cond[weak]);
  if (o->out) {
    if (tf_eval_result_write(o->out, &res) != TF_OK) goto fail;
    printf("\nresults written to %s (%.1f s)\n", o->out, tf_cli_now() - t0);
  }
  status = TF_EXIT_OK;
  goto done;
fail:
  fprintf(stderr, "tradeflow eval: %s\n", tf_errmsg());
done:
  for (int i = 0; i < n_rf; i++) {
    free(rf[i].x);
    free(rf[i].c);
  }
  free(xref);
  free(cond);
  tf_eval_result_free(&res);
  tf_ctx_destroy(ctx);
  tf_physics_destroy(p);
  tf_config_destroy(pc);
  tf_cli_model_close(&m);
  return status;
}

/* ================================ options ===================================================== */

int tf_cli_eval(int argc, char **argv) {
  eval_opts o;
  memset(&o, 0, sizeof o);
  o.dset = "x";
  o.cond = NAN;
  o.ec = tf_eval_defaults();
  int64_t seed = (int64_t)o.ec.seed, kl = o.ec.kl_grid;
  const char *ref_args[MAX_REF];
  int n_ref_args = 0, *co = &o.cond_opts;
  const double I64 = (double)INT64_MAX;
  const tf_cli_arg args[] = {
      {"data", TF_ARG_STR, &o.data, 0, 0, 0, NULL, NULL},
      {"dataset", TF_ARG_STR, &o.dset, 0, 0, 0, NULL, NULL},
      {"condition-dataset", TF_ARG_STR, &o.cset, 0, 0, 0, NULL, NULL},
      {"condition", TF_ARG_F64, &o.cond, 1e-300, 1e300, 0, NULL, NULL},
      {"max-rows", TF_ARG_I64, &o.max_rows, 1, I64, 0, NULL, NULL},
      {"conditions", TF_ARG_STR, &o.conditions, 0, 0, 0, NULL, co},
      {"n", TF_ARG_I64, &o.ec.n, 2, (double)((int64_t)1 << 32), 0, NULL, co},
      {"seed", TF_ARG_I64, &seed, 0, I64, 0, NULL, co},
      {"imh-n", TF_ARG_I64, &o.ec.imh_n, 0, I64, 0, NULL, co},
      {"bootstrap", TF_ARG_I64, &o.ec.bootstrap, 2, 1000000, 0, NULL, co},
      {"kl-grid", TF_ARG_I64, &kl, 0, 20000, 0, NULL, co},
      {"n-ref", TF_ARG_I64, &o.ec.n_ref, 0, (double)((int64_t)1 << 32), 0, NULL, co},
      {"reference", TF_ARG_MULTI, ref_args, 0, 0, MAX_REF, &n_ref_args, co},
      {"out", TF_ARG_STR, &o.out, 0, 0, 0, NULL, co},
  };
  int np;
  const int rc = tf_cli_args("eval", argc, argv, args, sizeof args / sizeof args[0], &o.ckpt, 1,
                             &np, usage);
  if (rc >= 0) return rc;
  o.ec.seed = (uint64_t)seed;
  if (kl == 1) {
    fprintf(stderr, "tradeflow eval: --kl-grid expects 0 (off) or at least 2, got 1\n");
    return TF_EXIT_USAGE;
  }
  o.ec.kl_grid = (int)kl;
  /* --reference repeated, or comma-separated: each list is split in place */
  for (int k = 0; k < n_ref_args; k++)
    for (char *save = NULL, *t = strtok_r((char *)ref_args[k], ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
      if (o.n_refs == MAX_REF) {
        fprintf(stderr, "tradeflow eval: at most %d reference files\n", MAX_REF);
        return TF_EXIT_USAGE;
      }
      o.refs[o.n_refs++] = t;
    }
  if (!o.ckpt) {
    fprintf(stderr, "tradeflow eval: CHECKPOINT is required\n\n");
    usage(stderr);
    return TF_EXIT_USAGE;
  }
  if (o.data) {
    if (o.cond_opts) {
      fprintf(stderr, "tradeflow eval: --data selects the NLL mode; --conditions, --n, --seed, "
              "--reference, --out, --imh-n, --bootstrap, --kl-grid and --n-ref belong to the "
              "evaluation over conditions and cannot be combined with it\n");
      return TF_EXIT_USAGE;
    }
    if (o.cset && !isnan(o.cond)) {
      fprintf(stderr, "tradeflow eval: give --condition or --condition-dataset, not both\n");
      return TF_EXIT_USAGE;
    }
    return nll_mode(&o);
  }
  if (o.cset || !isnan(o.cond) || o.max_rows || strcmp(o.dset, "x")) {
    fprintf(stderr, "tradeflow eval: --dataset, --condition, --condition-dataset and "
            "--max-rows need --data FILE.h5 (use --conditions C1,C2,... for the evaluation "
            "over conditions)\n");
    return TF_EXIT_USAGE;
  }
  return cond_mode(&o);
}
