/* test_eval.c — `tradeflow eval` over conditions and `tradeflow plot`, end to end.
 *
 * The flow is a checkpoint trained for 0 steps: every coupling starts as the identity, so the
 * flow is exactly the standard normal N(0, I).  Against double_well dim=2,
 *   q(x | T) = exp(-(x1^4 - 4 x1^2 + x2^2 / 2) / T),
 * every metric has an independent answer by one-dimensional quadrature here (the target and
 * the proposal both factorise):
 *   ESS/N -> (int q)^2 / int q^2 / p,  log Z,  <U>,  KL(p || N(0, I)),  E_p[-log N(x; 0, I)],
 * which eval's sampling estimates must match within their own errors.  Also: the layout of
 * the result file, --reference rows, plot outputs, and clear failures for bad input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tradeflow/h5io.h"
#include "tradeflow/result.h"
#include "tradeflow/rng.h"

#include "cli_harness.h"

static const double PI = 3.14159265358979323846;

#define MODEL "[model]\nname = identity\nblocks = 2\nhidden = 16\nembed = 4\n"
#define DATA "[data]\nfile = data.h5\ncondition_dataset = c\n"
#define TRAIN "[train]\nsteps = 0\nbatch = 64\nval_fraction = 0\nlog_every = 0\n"

/* ---- quadrature of the exact answers ---------------------------------------------------------- */

typedef struct {
  double ess, log_z, energy, kl, nll;
} exact_t;

/* double_well dim=2 at T against the proposal N(0, I), by the trapezoidal rule on [-9, 9]. */
static exact_t exact_answers(double T) {
  const double h = 1e-4, L = 9;
  double z1 = 0, a1 = 0, u1 = 0, m2 = 0, ent = 0;
  for (double x = -L; x <= L; x += h) {
    const double u = x * x * x * x - 4 * x * x, f = exp(-u / T);
    const double logphi = -0.5 * x * x - 0.5 * log(2 * PI);
    z1 += f;
    a1 += f * f / exp(logphi);
    u1 += f * u;
    m2 += f * x * x;
    ent += f * (-u / T - logphi); /* f (log f - log phi); log Z1 subtracted below */
  }
  z1 *= h, a1 *= h, u1 *= h, m2 *= h, ent *= h;
  const double z2 = sqrt(2 * PI * T), a2 = sqrt(2 * PI) * sqrt(PI / (1 / T - 0.5));
  exact_t e;
  e.ess = (z1 * z2) * (z1 * z2) / (a1 * a2);
  e.log_z = log(z1) + log(z2);
  e.energy = u1 / z1 + T / 2;
  e.kl = (ent / z1 - log(z1)) + 0.5 * (T - 1 - log(T));
  e.nll = log(2 * PI) + 0.5 * (m2 / z1 + T);
  return e;
}

/* ---- fixture ----------------------------------------------------------------------------------- */

/* n rows of dimension D (x: n x D) with conditions c, as a sample file */
static int write_samples(const char *name, int64_t n, int64_t D, const double *x,
                         const double *c) {
  double *lp = calloc((size_t)n, sizeof *lp);
  if (!lp) return TF_ENOMEM;
  tf_sample_attrs at = {"reference", "", "", "", 0};
  tf_sample_block blk = {n, x, c, lp, NULL, NULL};
  const int rc = tf_samples_write(path_of(name), D, &at, &blk);
  free(lp);
  return rc;
}

static int setup(void **state) {
  (void)state;
  if (cli_make_dir("tf_eval") != 0) return -1;
  /* training data for the 0-step runs (never used for a step) */
  enum { N = 256 };
  double x[2 * N], c[N];
  tf_rng r;
  tf_rng_init(&r, 7, 0, TF_RNG_TEST, 0);
  for (int i = 0; i < N; i++) {
    x[2 * i] = tf_rng_normal(&r);
    x[2 * i + 1] = tf_rng_normal(&r);
    c[i] = 1;
  }
  if (write_samples("data.h5", N, 2, x, c) != TF_OK) return -1;
  write_file("dw.ini", MODEL "[physics]\nname = double_well\ndim = 2\n" DATA TRAIN
                       "[output]\ndir = run_dw\n");
  write_file("plain.ini", MODEL DATA TRAIN "[output]\ndir = run_plain\n");
  if (run("train dw.ini") != 0 || run("train plain.ini") != 0) {
    fprintf(stderr, "0-step training failed:\n%s\n", out);
    return -1;
  }
  return 0;
}

/* ---- tests ------------------------------------------------------------------------------------- */

#define N_SAMPLES 20000
static const double T_LIST[3] = {0.5, 0.8, 1.1};

static void test_metrics_against_quadrature(void **state) {
  (void)state;
  const int st = run("eval run_dw/checkpoint.h5 --conditions 0.5,0.8,1.1 --n %d --seed 3 "
                     "--out res.h5", N_SAMPLES);
  if (st != 0) fail_msg("eval exit %d:\n%s", st, out);
  assert_non_null(strstr(out, "ESS/N"));
  assert_non_null(strstr(out, "results written to res.h5"));
  tf_eval_result r;
  if (tf_eval_result_read(path_of("res.h5"), &r) != TF_OK) fail_msg("%s", tf_errmsg());
  assert_int_equal(r.k, 3);
  assert_int_equal(r.m, 3);
  assert_string_equal(r.obs_names[0], "energy");
  assert_string_equal(r.param, "T");
  assert_non_null(strstr(r.physics, "double_well"));
  assert_string_equal(r.model, "identity");
  assert_int_equal(r.n, N_SAMPLES);
  assert_int_equal(r.seed, 3);
  assert_int_equal(r.kl_grid, 400);
  assert_non_null(strstr(r.config_text, "[physics]"));
  for (int k = 0; k < 3; k++) {
    const double T = T_LIST[k];
    const exact_t e = exact_answers(T);
    double *const *col = r.col;
    const double *obs = r.tab[TF_EV_OBS_RW] + k * r.m, *obs_e = r.tab[TF_EV_OBS_RW_ERR] + k * r.m;
    const double *imh = r.tab[TF_EV_OBS_IMH] + k * r.m, *imh_e = r.tab[TF_EV_OBS_IMH_ERR] + k * r.m;
    const double *ref = r.tab[TF_EV_OBS_REF] + k * r.m, *ref_e = r.tab[TF_EV_OBS_REF_ERR] + k * r.m;
    print_message("T = %.2f: ESS/N %.4f +- %.4f (exact %.4f); log Z %.5f +- %.5f (exact "
                  "%.5f); KL %.5f +- %.1g (exact %.5f); NLL %.4f +- %.4f (exact %.4f); "
                  "<U> rw %.4f +- %.4f, IMH %.4f +- %.4f (tau %.2f, acc %.3f), ref %.4f +- "
                  "%.4f (exact %.4f)\n", T, col[TF_EV_ESS][k], col[TF_EV_ESS_ERR][k], e.ess,
                  col[TF_EV_LOGZ][k], col[TF_EV_LOGZ_ERR][k], e.log_z, col[TF_EV_KL][k],
                  col[TF_EV_KL_ERR][k], e.kl, col[TF_EV_NLL_REF][k], col[TF_EV_NLL_REF_ERR][k],
                  e.nll, obs[0], obs_e[0], imh[0], imh_e[0], r.tab[TF_EV_OBS_TAU][k * r.m],
                  col[TF_EV_IMH_ACCEPT][k], ref[0], ref_e[0], e.energy);
    assert_true(col[TF_EV_C][k] == T);
    assert_true(col[TF_EV_N_VALID][k] == N_SAMPLES);
    assert_true(col[TF_EV_ESS_ERR][k] > 0 && col[TF_EV_ESS_ERR][k] < 0.05);
    assert_true(fabs(col[TF_EV_ESS][k] - e.ess) < 3 * col[TF_EV_ESS_ERR][k]);
    assert_true(fabs(col[TF_EV_LOGZ_EXACT][k] - e.log_z) < 1e-6);
    assert_true(fabs(col[TF_EV_LOGZ][k] - e.log_z) < 4 * col[TF_EV_LOGZ_ERR][k]);
    assert_true(col[TF_EV_LOGZ_DIFF][k] == col[TF_EV_LOGZ][k] - col[TF_EV_LOGZ_EXACT][k]);
    assert_true(fabs(col[TF_EV_KL][k] - e.kl) < 2e-3 + col[TF_EV_KL_ERR][k]);
    assert_true(col[TF_EV_REF_SOURCE][k] == 1 && col[TF_EV_N_REF][k] == 20000);
    assert_true(fabs(col[TF_EV_NLL_REF][k] - e.nll) < 4 * col[TF_EV_NLL_REF_ERR][k]);
    assert_true(col[TF_EV_IMH_ACCEPT][k] > 0.05 && col[TF_EV_IMH_ACCEPT][k] < 1);
    /* the energy three ways: reweighted, Metropolis-corrected, exact samples */
    assert_true(fabs(obs[0] - e.energy) < 4 * obs_e[0]);
    assert_true(fabs(imh[0] - e.energy) < 4 * imh_e[0]);
    assert_true(fabs(ref[0] - e.energy) < 4 * ref_e[0]);
    assert_true(r.tab[TF_EV_OBS_TAU][k * r.m] >= 0.5);
    /* x1 is symmetric, |x1| near sqrt(2) at low T */
    assert_true(fabs(obs[1]) < 4 * obs_e[1] + 1e-12);
    assert_true(fabs(ref[2] - obs[2]) < 4 * sqrt(ref_e[2] * ref_e[2] + obs_e[2] * obs_e[2]));
  }
  tf_eval_result_free(&r);
  /* the layout as any HDF5 reader sees it */
  char **names;
  int count;
  assert_int_equal(tf_h5_list_datasets(path_of("res.h5"), &names, &count), TF_OK);
  assert_int_equal(count, TF_EV_N_COLS + TF_EV_N_TABS);
  tf_h5_free_names(names, count);
  int64_t nr, nc;
  double *v;
  assert_int_equal(tf_h5_read_matrix(path_of("res.h5"), "ess", 0, &nr, &nc, &v), TF_OK);
  assert_true(nr == 3 && nc == 1);
  free(v);
  assert_int_equal(tf_h5_read_matrix(path_of("res.h5"), "obs_imh_err", 0, &nr, &nc, &v), TF_OK);
  assert_true(nr == 3 && nc == 3);
  free(v);
  /* the same command gives the same numbers */
  assert_int_equal(run("eval run_dw/checkpoint.h5 --conditions 0.5,0.8,1.1 --n %d --seed 3 "
                       "--out res2.h5", N_SAMPLES), 0);
  tf_eval_result a, b;
  assert_int_equal(tf_eval_result_read(path_of("res.h5"), &a), TF_OK);
  assert_int_equal(tf_eval_result_read(path_of("res2.h5"), &b), TF_OK);
  for (int i = 0; i < TF_EV_N_COLS; i++)
    assert_memory_equal(a.col[i], b.col[i], 3 * sizeof(double));
  tf_eval_result_free(&a);
  tf_eval_result_free(&b);
}

/* default conditions, --reference rows (two files, other conditions mixed in), IMH off, no KL */
static void test_defaults_and_reference_rows(void **state) {
  (void)state;
  enum { NA = 400, NB = 60 };
  static double xa[2 * NA], ca[NA], xb[2 * NB], cb[NB];
  tf_rng r;
  tf_rng_init(&r, 9, 0, TF_RNG_TEST, 0);
  double nll = 0;
  int n_at = 0;
  for (int i = 0; i < NA + NB; i++) {
    double *x = i < NA ? xa + 2 * i : xb + 2 * (i - NA), *c = i < NA ? ca + i : cb + i - NA;
    x[0] = 1.4 * tf_rng_normal(&r);
    x[1] = 0.9 * tf_rng_normal(&r);
    *c = i % 3 ? 1.0 : 0.7; /* rows at 1.0 (the boundary c0) and at 0.7 */
    if (*c == 1.0) {
      nll += log(2 * PI) + 0.5 * (x[0] * x[0] + x[1] * x[1]);
      n_at++;
    }
  }
  assert_int_equal(write_samples("refa.h5", NA, 2, xa, ca), TF_OK);
  assert_int_equal(write_samples("refb.h5", NB, 2, xb, cb), TF_OK);
  const int st = run("eval run_dw/checkpoint.h5 --n 2000 --imh-n 0 --kl-grid 0 --n-ref 500 "
                     "--bootstrap 50 --reference refa.h5,refb.h5 --out def.h5");
  if (st != 0) fail_msg("eval exit %d:\n%s", st, out);
  tf_eval_result res;
  assert_int_equal(tf_eval_result_read(path_of("def.h5"), &res), TF_OK);
  /* 8 log-spaced values over [0.4, 1.1] with T0 = 1 inserted in order */
  assert_int_equal(res.k, 9);
  assert_true(fabs(res.col[TF_EV_C][0] - 0.4) < 1e-12 && res.col[TF_EV_C][8] == 1.1);
  int at = -1;
  for (int k = 0; k < 9; k++) {
    if (k) assert_true(res.col[TF_EV_C][k] > res.col[TF_EV_C][k - 1]);
    if (res.col[TF_EV_C][k] == 1.0) at = k;
    assert_true(isnan(res.col[TF_EV_IMH_ACCEPT][k]) && isnan(res.col[TF_EV_KL][k]));
    assert_true(isnan(res.tab[TF_EV_OBS_IMH][k * res.m]));
  }
  assert_true(at >= 0);
  for (int k = 0; k < 9; k++) {
    const double want_src = k == at ? 2 : 1, want_n = k == at ? n_at : 500;
    assert_true(res.col[TF_EV_REF_SOURCE][k] == want_src);
    assert_true(res.col[TF_EV_N_REF][k] == want_n);
  }
  /* the flow is N(0, I): its NLL on the file's rows at T = 1 is known exactly */
  assert_true(fabs(res.col[TF_EV_NLL_REF][at] - nll / n_at) < 1e-4);
  assert_int_equal(res.imh_n, 0);
  assert_int_equal(res.kl_grid, 0);
  tf_eval_result_free(&res);
}

static void test_plot(void **state) {
  (void)state;
  /* two results (from the first test, and a second one), labelled */
  if (!exists("res.h5") || !exists("def.h5")) skip();
  const int st = run("plot res.h5 def.h5 --labels 'run \"a\",def' --out plots");
  const int have_gnuplot = system("command -v gnuplot >/dev/null 2>&1") == 0;
  const char *base[] = {"ess", "obs_energy", "obs_x1", "obs_abs_x1", "kl", "logz"};
  char name[64];
  for (int i = 0; i < 6; i++) {
    snprintf(name, sizeof name, "plots/%s.dat", base[i]);
    if (!exists(name)) fail_msg("%s missing; output:\n%s", name, out);
    snprintf(name, sizeof name, "plots/%s.gp", base[i]);
    assert_true(exists(name));
  }
  if (!have_gnuplot) {
    print_message("gnuplot is not installed: PNG output not checked\n");
    assert_int_equal(st, 1);
    assert_non_null(strstr(out, "gnuplot not found"));
  } else {
    if (st != 0) fail_msg("plot exit %d:\n%s", st, out);
    for (int i = 0; i < 6; i++) {
      snprintf(name, sizeof name, "plots/%s.png", base[i]);
      if (!exists(name)) fail_msg("%s missing; output:\n%s", name, out);
      /* a PNG signature, not an error page */
      FILE *f = fopen(path_of(name), "rb");
      unsigned char sig[8] = {0};
      assert_int_equal(fread(sig, 1, 8, f), 8);
      fclose(f);
      assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
    }
  }
  /* the quoted label made it into the script intact; the x axis is logarithmic (0.4..1.1
   * spans less than a factor 4, so it is not) */
  FILE *f = fopen(path_of("plots/obs_energy.gp"), "r");
  static char gp[8192];
  const size_t n = fread(gp, 1, sizeof gp - 1, f);
  gp[n] = 0;
  fclose(f);
  assert_non_null(strstr(gp, "run \\\"a\\\" reweighted"));
  assert_non_null(strstr(gp, "unset logscale x"));
  assert_non_null(strstr(gp, "title \"reference\""));
  /* without gnuplot: data and scripts, a message naming it, exit 1 */
  assert_int_equal(run_env("PATH=/nonexistent", "plot res.h5 --out plots2"), 1);
  assert_non_null(strstr(out, "gnuplot not found"));
  assert_true(exists("plots2/ess.gp") && exists("plots2/ess.dat") && !exists("plots2/ess.png"));
}

/* Derived quantities of a reference chain take their jackknife blocks from the observables they
 * depend on.  The chain here is phi^4 (L = 4) configurations phi = sign * 2 + noise, iid, with
 * the sign +1 for the first half of the rows and -1 for the second: the signed m "never
 * tunnels" (tau_int of order the chain length, as in the broken phase) while |m|, m^2, m^4 are
 * iid.  chi = V (<m2> - <|m|>^2) and U_L do not use m, so they must come out with errors; blocks
 * sized by m's tau would be longer than the chain and leave NaN. */
static void test_derived_blocks_ignore_unused(void **state) {
  (void)state;
  enum { NR = 2000, V = 16 };
  static double x[NR * V], c[NR];
  tf_rng r;
  tf_rng_init(&r, 11, 0, TF_RNG_TEST, 0);
  double s_m2 = 0, s_am = 0;
  for (int i = 0; i < NR; i++) {
    const double sign = i < NR / 2 ? 1 : -1;
    double m = 0;
    for (int j = 0; j < V; j++) {
      x[i * V + j] = 2 * sign + 0.5 * tf_rng_normal(&r);
      m += x[i * V + j] / V;
    }
    s_m2 += m * m / NR;
    s_am += fabs(m) / NR;
    c[i] = 0.25;
  }
  assert_int_equal(write_samples("phiref.h5", NR, V, x, c), TF_OK);
  write_file("phi.ini", "[model]\nblocks = 2\nhidden = 8\n[physics]\nname = phi4\nL = 4\n"
                        "[loss]\nkind = reverse_kl\n[train]\nsteps = 0\nlog_every = 0\n"
                        "[output]\ndir = run_phi\n");
  assert_int_equal(run("train phi.ini"), 0);
  const int st = run("eval run_phi/checkpoint.h5 --conditions 0.25 --n 200 --imh-n 0 "
                     "--bootstrap 10 --reference phiref.h5 --out phi.h5");
  if (st != 0) fail_msg("eval exit %d:\n%s", st, out);
  tf_eval_result res;
  assert_int_equal(tf_eval_result_read(path_of("phi.h5"), &res), TF_OK);
  int im = -1, ichi = -1, ib = -1;
  for (int j = 0; j < res.m; j++) {
    if (!strcmp(res.obs_names[j], "m")) im = j;
    if (!strcmp(res.obs_names[j], "chi")) ichi = j;
    if (!strcmp(res.obs_names[j], "binder")) ib = j;
  }
  assert_true(im >= 0 && ichi >= 0 && ib >= 0);
  const double *ref = res.tab[TF_EV_OBS_REF], *err = res.tab[TF_EV_OBS_REF_ERR];
  /* the premise: m's chain error reflects a huge tau (naive sd/sqrt(n) would be ~0.045) */
  if (!(err[im] > 0.2)) fail_msg("signed m error %g: the chain does not look frozen", err[im]);
  /* the derived quantities exist, equal the plain estimate, and carry a finite error */
  const double chi = V * (s_m2 - s_am * s_am);
  if (!(fabs(ref[ichi] - chi) < 1e-9 * fabs(chi)))
    fail_msg("reference chi %g, direct %g\n%s", ref[ichi], chi, out);
  assert_true(isfinite(err[ichi]) && err[ichi] > 0);
  assert_true(isfinite(ref[ib]) && isfinite(err[ib]) && err[ib] > 0);
  tf_eval_result_free(&res);
}

/* The identity flow against the double well has ESS/N 0.03 at T = 0.1 (its wells are narrow
 * against N(0, I)) and 0.30 at T = 1.1: the low-ESS warning appears once, for T = 0.1. */
static void test_low_ess_note(void **state) {
  (void)state;
  const int st = run("eval run_dw/checkpoint.h5 --conditions 0.1,1.1 --n 4000 --imh-n 4000 "
                     "--bootstrap 20 --out lowess.h5");
  if (st != 0) fail_msg("eval exit %d:\n%s", st, out);
  const char *warn = "below 0.1: the reweighted and IMH error bars rest on few effective samples";
  const char *first = strstr(out, warn);
  if (!first) fail_msg("no low-ESS note:\n%s", out);
  if (strstr(first + 1, warn)) fail_msg("the low-ESS note appears twice:\n%s", out);
  /* it belongs to the T = 0.1 row, which precedes the T = 1.1 row */
  const char *row1 = strstr(out, "T = 1.1");
  assert_non_null(row1);
  assert_true(first < row1);
  /* the summary names the weakest condition */
  if (!strstr(out, "lowest ESS/N: 0.0") || !strstr(out, "at T = 0.1\n"))
    fail_msg("no summary line for T = 0.1:\n%s", out);
  tf_eval_result r;
  assert_int_equal(tf_eval_result_read(path_of("lowess.h5"), &r), TF_OK);
  assert_true(r.col[TF_EV_ESS][0] < 0.1 && r.col[TF_EV_ESS][1] > 0.1);
  tf_eval_result_free(&r);
}

static void test_bad_inputs(void **state) {
  (void)state;
  /* a checkpoint without physics: only the NLL mode applies */
  assert_int_equal(run("eval run_plain/checkpoint.h5 --out bad.h5"), 2);
  assert_non_null(strstr(out, "records no physics module"));
  assert_non_null(strstr(out, "--data"));
  /* conditions outside the module's range, malformed, or against --data */
  assert_int_equal(run("eval run_dw/checkpoint.h5 --conditions 0.5,500 --out bad.h5"), 2);
  assert_non_null(strstr(out, "T = 500"));
  assert_non_null(strstr(out, "outside the valid range"));
  assert_int_equal(run("eval run_dw/checkpoint.h5 --conditions 0.5,x1"), 2);
  assert_non_null(strstr(out, "x1"));
  assert_int_equal(run("eval run_dw/checkpoint.h5 --data data.h5 --conditions 0.5"), 2);
  assert_non_null(strstr(out, "cannot be combined"));
  assert_int_equal(run("eval run_dw/checkpoint.h5 --n 100 --imh-n 200"), 2);
  assert_non_null(strstr(out, "--imh-n"));
  assert_int_equal(run("eval run_dw/checkpoint.h5 --n 1"), 2);
  /* missing checkpoint, unwritable output, unreadable reference */
  assert_int_equal(run("eval nothing.h5 --out bad.h5"), 2);
  assert_non_null(strstr(out, "nothing.h5"));
  assert_int_equal(run("eval run_dw/checkpoint.h5 --n 100 --out nodir/r.h5"), 2);
  assert_non_null(strstr(out, "nodir"));
  assert_int_equal(run("eval run_dw/checkpoint.h5 --n 100 --reference dw.ini --out bad.h5"), 2);
  assert_non_null(strstr(out, "dw.ini"));
  assert_false(exists("bad.h5"));
  /* the NLL mode still works on a checkpoint with physics */
  assert_int_equal(run("eval run_dw/checkpoint.h5 --data data.h5"), 0);
  assert_non_null(strstr(out, "NLL "));
  /* plot: not a result file, no --out, label count */
  assert_int_equal(run("plot run_dw/checkpoint.h5 --out p3"), 2);
  assert_non_null(strstr(out, "not an evaluation result"));
  assert_int_equal(run("plot res.h5"), 2);
  assert_non_null(strstr(out, "--out"));
  assert_int_equal(run("plot res.h5 --labels a,b --out p3"), 2);
  assert_non_null(strstr(out, "2 entries for 1"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_against_quadrature),
      cmocka_unit_test(test_defaults_and_reference_rows),
      cmocka_unit_test(test_plot),
      cmocka_unit_test(test_derived_blocks_ignore_unused),
      cmocka_unit_test(test_low_ess_note),
      cmocka_unit_test(test_bad_inputs),
  };
  return cmocka_run_group_tests(tests, setup, cli_teardown);
}
