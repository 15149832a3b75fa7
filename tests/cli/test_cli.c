/* test_cli.c — the `tradeflow` command end to end: train -> sample -> eval, resumption through
 * the command line (bit-identical to an uninterrupted run), and one clear message with a
 * non-zero exit for every class of bad config or input. */
#include <glob.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tradeflow/h5io.h"
#include "tradeflow/physics.h"
#include "tradeflow/rng.h"

#define CLI_OUT_SIZE (1 << 16)
#include "cli_harness.h"

enum { NROWS = 4000 };

#define BASE_MODEL "[model]\nblocks = 2\nhidden = 16\nembed = 4\n"
#define BASE_DATA "[data]\nfile = data.h5\ncondition_dataset = c\n"
#define BASE_TRAIN "[train]\nsteps = 60\nbatch = 128\nval_every = 30\nlog_every = 20\n"

static int setup(void **state) {
  (void)state;
  if (cli_make_dir("tf_cli") != 0) return -1;
  /* conditional 2-D data: width sqrt(c), c in [0.5, 1.5] */
  double *x = malloc(2 * NROWS * sizeof *x), *c = malloc(NROWS * sizeof *c);
  double *lp = calloc(NROWS, sizeof *lp);
  tf_rng r;
  tf_rng_init(&r, 3, 0, TF_RNG_TEST, 0);
  for (int i = 0; i < NROWS; i++) {
    const double a = tf_rng_normal(&r), b = tf_rng_normal(&r);
    c[i] = 0.5 + tf_rng_uniform(&r);
    x[2 * i] = sqrt(c[i]) * a;
    x[2 * i + 1] = sqrt(c[i]) * (0.5 * a * a + 0.3 * b);
  }
  char path[512];
  snprintf(path, sizeof path, "%s/data.h5", dir);
  tf_sample_attrs at = {"synthetic", "", "", "", 0};
  tf_sample_block blk = {NROWS, x, c, lp, NULL, NULL};
  const int rc = tf_samples_write(path, 2, &at, &blk);
  free(x);
  free(c);
  free(lp);
  return rc == TF_OK ? 0 : -1;
}

static void test_train_sample_eval(void **state) {
  (void)state;
  write_file("a.ini", BASE_MODEL "coupling = spline\nactnorm = true\n" BASE_DATA BASE_TRAIN
                      "[output]\ndir = run_a\n");
  assert_int_equal(run("train a.ini"), 0);
  assert_non_null(strstr(out, "step 60/60"));
  assert_non_null(strstr(out, "done: 60 steps"));
  assert_int_equal(run("sample run_a/checkpoint.h5 --n 3000 --condition 0.7 --out s.h5 "
                       "--batch 1000"), 0);
  char path[512];
  snprintf(path, sizeof path, "%s/s.h5", dir);
  tf_samples s;
  assert_int_equal(tf_samples_read(path, &s), TF_OK);
  assert_int_equal(s.n, 3000);
  assert_int_equal(s.d, 2);
  for (int i = 0; i < 3000; i++) {
    assert_true(s.c[i] == 0.7);
    assert_true(isfinite(s.log_p[i]) && isnan(s.log_q[i]) && isnan(s.log_w[i]));
  }
  assert_non_null(strstr(s.config_text, "coupling = spline"));
  tf_samples_free(&s);
  /* the NLL of the flow's own samples is an estimate of its entropy; eval reads their c */
  assert_int_equal(run("eval run_a/checkpoint.h5 --data s.h5"), 0);
  assert_non_null(strstr(out, "3000 rows, per-row conditions"));
  double nll, se;
  const char *p = strstr(out, "NLL ");
  assert_non_null(p);
  assert_int_equal(sscanf(p, "NLL %lf nats/sample  +- %lf", &nll, &se), 2);
  assert_true(isfinite(nll) && se > 0 && se < 0.1);
  /* the sample file is reproducible from its seed */
  assert_int_equal(run("sample run_a/checkpoint.h5 --n 3000 --condition 0.7 --out s2.h5 "
                       "--batch 1000"), 0);
  char cmp[1200];
  snprintf(cmp, sizeof cmp, "h5diff -q '%s/s.h5' '%s/s2.h5' /x /x >/dev/null", dir, dir);
  if (system("command -v h5diff >/dev/null 2>&1") == 0) assert_int_equal(system(cmp), 0);
}

/* every /params/ dataset of two checkpoints, compared exactly */
static void assert_same_params(const char *a, const char *b) {
  char pa[512], pb[512];
  snprintf(pa, sizeof pa, "%s/%s", dir, a);
  snprintf(pb, sizeof pb, "%s/%s", dir, b);
  char **names;
  int count;
  assert_int_equal(tf_h5_list_datasets(pa, &names, &count), TF_OK);
  int nparams = 0;
  for (int i = 0; i < count; i++) {
    if (strncmp(names[i], "/params/", 8) && strncmp(names[i], "/optim/", 7)) continue;
    double *va, *vb;
    int64_t ra, ca, rb, cb;
    assert_int_equal(tf_h5_read_matrix(pa, names[i], 0, &ra, &ca, &va), TF_OK);
    if (tf_h5_read_matrix(pb, names[i], 0, &rb, &cb, &vb) != TF_OK) {
      /* conv weights are 4-D; this test's flows have none */
      fail_msg("%s: %s", names[i], tf_errmsg());
    }
    assert_int_equal(ra * ca, rb * cb);
    assert_memory_equal(va, vb, (size_t)(ra * ca) * sizeof *va);
    free(va);
    free(vb);
    nparams++;
  }
  assert_true(nparams > 10);
  tf_h5_free_names(names, count);
}

static void test_resume_from_the_command_line(void **state) {
  (void)state;
  write_file("r.ini", BASE_MODEL BASE_DATA BASE_TRAIN "schedule = onecycle\n"
                      "[output]\ndir = run_full\ncheckpoint_every = 25\n");
  assert_int_equal(run("train r.ini"), 0);
  /* the same run stopped after 35 steps (exit 3), then resumed */
  assert_int_equal(run("train r.ini --set output.dir=run_split --set train.max_steps_per_run=35"), 3);
  assert_non_null(strstr(out, "stopped at step 35 of 60"));
  assert_int_equal(run("train r.ini --set output.dir=run_split --resume"), 0);
  assert_non_null(strstr(out, "resuming at step 35"));
  assert_same_params("run_full/checkpoint.h5", "run_split/checkpoint.h5");
  /* resuming a finished run changes nothing on disk: same checkpoint inode and mtime (a
   * rewrite goes through a new file and a rename) */
  struct stat before, after;
  char ck[512];
  snprintf(ck, sizeof ck, "%s/run_full/checkpoint.h5", dir);
  assert_int_equal(stat(ck, &before), 0);
  assert_int_equal(run("train r.ini --resume"), 0);
  assert_non_null(strstr(out, "resuming at step 60 of 60"));
  assert_int_equal(stat(ck, &after), 0);
  assert_int_equal(before.st_ino, after.st_ino);
  assert_int_equal(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
  /* a fresh run refuses to overwrite; a resume refuses a changed architecture */
  assert_int_equal(run("train r.ini"), 2);
  assert_non_null(strstr(out, "exists: pass --resume"));
  assert_int_equal(run("train r.ini --resume --set model.hidden=17"), 2);
  assert_non_null(strstr(out, "model.hidden is '16'"));
  assert_int_equal(run("train r.ini --resume --set train.seed=9"), 2);
  assert_non_null(strstr(out, "seed"));
}

/* train.ema: the run resumes with its average, and the inference commands use the average
 * unless TRADEFLOW_WEIGHTS=raw; the two give different samples from the same seed. */
static void test_parameter_average(void **state) {
  (void)state;
  write_file("e.ini", BASE_MODEL BASE_DATA BASE_TRAIN "ema = 0.95\n"
                      "[output]\ndir = run_ema\n");
  assert_int_equal(run("train e.ini"), 0);
  assert_non_null(strstr(out, "of the averaged parameters"));
  assert_int_equal(run("train e.ini --set output.dir=run_ema2 --set train.max_steps_per_run=25"),
                   3);
  assert_int_equal(run("train e.ini --set output.dir=run_ema2 --resume"), 0);
  assert_same_params("run_ema/checkpoint.h5", "run_ema2/checkpoint.h5"); /* /optim/ema too */
  assert_int_equal(run("sample run_ema/checkpoint.h5 --n 500 --condition 0.7 --out avg.h5"), 0);
  assert_non_null(strstr(out, "(averaged parameters)"));
  assert_int_equal(run_env("TRADEFLOW_WEIGHTS=raw", "sample run_ema/checkpoint.h5 --n 500 "
                           "--condition 0.7 --out raw.h5"), 0);
  assert_non_null(strstr(out, "(raw parameters)"));
  tf_samples a, b;
  char pa[512], pb[512];
  snprintf(pa, sizeof pa, "%s/avg.h5", dir);
  snprintf(pb, sizeof pb, "%s/raw.h5", dir);
  assert_int_equal(tf_samples_read(pa, &a), TF_OK);
  assert_int_equal(tf_samples_read(pb, &b), TF_OK);
  assert_int_equal(a.n, b.n);
  assert_memory_not_equal(a.x, b.x, (size_t)(a.n * a.d) * sizeof *a.x);
  tf_samples_free(&a);
  tf_samples_free(&b);
  assert_int_equal(run_env("TRADEFLOW_WEIGHTS=best", "sample run_ema/checkpoint.h5 --n 5 "
                           "--condition 0.7 --out bad.h5"), 2);
  assert_non_null(strstr(out, "TRADEFLOW_WEIGHTS = 'best'"));
  assert_int_equal(exists("bad.h5"), 0);
}

typedef struct {
  const char *what, *config, *extra_args, *expect[4];
} bad_case;

static void test_bad_configs(void **state) {
  (void)state;
  const bad_case cases[] = {
      {"unknown section", BASE_MODEL BASE_DATA "[trian]\nsteps = 5\n", "",
       {"bad.ini:8", "unknown section", "trian", "train"}},
      {"unknown key", BASE_MODEL BASE_DATA "[train]\nstesp = 5\n", "",
       {"bad.ini:9", "stesp", "did you mean 'steps'", NULL}},
      {"malformed value", BASE_MODEL BASE_DATA "[train]\nsteps = 12x\n", "",
       {"bad.ini:9", "train.steps", "12x", "integer"}},
      {"out of range", BASE_MODEL "layers = 40\n" BASE_DATA, "",
       {"bad.ini:5", "model.layers", "40", "[1, 15]"}},
      {"bad choice", BASE_MODEL "coupling = quadratic\n" BASE_DATA, "",
       {"bad.ini:5", "model.coupling", "quadratic", "affine"}},
      {"missing input file", BASE_MODEL "[data]\nfile = nowhere.h5\n", "",
       {"bad.ini:6", "data.file", "nowhere.h5", "No such file"}},
      {"no data", BASE_MODEL "[train]\nsteps = 5\n", "",
       {"data.file", "missing", NULL, NULL}},
      {"unknown physics module", BASE_MODEL "[physics]\nname = nosuch\n" BASE_DATA, "",
       {"bad.ini:6", "physics.name", "nosuch", NULL}},
      {"TRADE without physics", BASE_MODEL BASE_DATA "[loss]\nkind = trade\n", "",
       {"loss.kind = trade", "physics", NULL, NULL}},
      {"c0 outside the range", BASE_MODEL "[physics]\nname = gmm\nc_min = 0.5\nc_max = 2\n"
       "c0 = 3\n[loss]\nkind = trade\n", "", {"c0 = 3", "c_min <= c0 <= c_max", NULL, NULL}},
      {"condition outside the module", BASE_MODEL "[physics]\nname = gmm\nc_max = 1e6\n",
       "", {"bad.ini", "physics.c_max", "1e+06", "valid range"}},
      {"no exact sampler", BASE_MODEL "[physics]\nname = dw4\n[data]\nexact_samples = 100\n",
       "", {"data.exact_samples", "dw4", "no exact sampler", NULL}},
      {"augment without a group", BASE_MODEL "[physics]\nname = gmm\n[data]\nexact_samples = "
       "100\naugment = true\n", "", {"bad.ini:9", "data.augment", "module gmm has none", NULL}},
      {"bad --set", BASE_MODEL BASE_DATA, "--set trainsteps5",
       {"--set argument 1", "section.key=value", NULL, NULL}},
      {"dimension mismatch", BASE_MODEL "dim = 3\n" BASE_DATA, "",
       {"bad.ini:5", "model.dim = 3", "2 columns", NULL}},
      {"lattice mismatch", BASE_MODEL "subnet = conv\nlattice_l1 = 4\nlattice_l2 = 4\n" BASE_DATA,
       "", {"bad.ini:5", "model.subnet = conv", "L1 * L2 = D = 2", NULL}},
      {"missing dataset", BASE_MODEL "[data]\nfile = data.h5\ndataset = y\n", "",
       {"data.h5", "'y'", NULL, NULL}},
      {"weight decay without adamw", BASE_MODEL BASE_DATA "[train]\nweight_decay = 0.1\n", "",
       {"bad.ini:9", "train.weight_decay", "adamw", NULL}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_file("bad.ini", cases[i].config);
    const int st = run("train bad.ini %s", cases[i].extra_args);
    if (st != 2) fail_msg("%s: exit %d, expected 2; output:\n%s", cases[i].what, st, out);
    for (int k = 0; k < 4 && cases[i].expect[k]; k++)
      if (!strstr(out, cases[i].expect[k]))
        fail_msg("%s: message lacks '%s':\n%s", cases[i].what, cases[i].expect[k], out);
    if (strchr(out, '\n') != out + strlen(out) - 1)
      fail_msg("%s: expected a one-line message:\n%s", cases[i].what, out);
  }
}

static void test_bad_inputs(void **state) {
  (void)state;
  /* a truncated data file */
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "head -c 3000 '%s/data.h5' > '%s/trunc.h5'", dir, dir);
  assert_int_equal(system(cmd), 0);
  write_file("t.ini", BASE_MODEL "[data]\nfile = trunc.h5\n");
  assert_int_equal(run("train t.ini"), 2);
  assert_non_null(strstr(out, "trunc.h5"));
  /* sample: missing condition for a conditional flow, bad numbers, missing checkpoint */
  write_file("a2.ini", BASE_MODEL BASE_DATA BASE_TRAIN "[output]\ndir = run_b\n");
  assert_int_equal(run("train a2.ini --set train.steps=5"), 0);
  assert_int_equal(run("sample run_b/checkpoint.h5 --n 10 --out x.h5"), 2);
  assert_non_null(strstr(out, "--condition"));
  assert_int_equal(run("sample run_b/checkpoint.h5 --n 10x --condition 1 --out x.h5"), 2);
  assert_non_null(strstr(out, "--n expects an integer"));
  assert_int_equal(run("sample run_b/checkpoint.h5 --n 10 --condition -1 --out x.h5"), 2);
  assert_non_null(strstr(out, "--condition expects"));
  assert_int_equal(run("sample nothing.h5 --n 10 --condition 1 --out x.h5"), 2);
  assert_non_null(strstr(out, "nothing.h5"));
  assert_int_equal(run("sample run_b/checkpoint.h5 --n 10 --condition 1 --out nodir/x.h5"), 2);
  assert_non_null(strstr(out, "nodir"));
  assert_int_equal(run("eval run_b/checkpoint.h5 --data trunc.h5"), 2);
  /* a file with no rows has no NLL (it used to print NLL nan and exit 0) */
  tf_sample_attrs at0 = {"empty", "", "", "", 0};
  tf_sample_block none = {0, NULL, NULL, NULL, NULL, NULL};
  assert_int_equal(tf_samples_write(path_of("empty.h5"), 2, &at0, &none), TF_OK);
  assert_int_equal(run("eval run_b/checkpoint.h5 --data empty.h5"), 2);
  assert_non_null(strstr(out, "has no rows"));
  assert_int_equal(run("bogus"), 2);
  assert_non_null(strstr(out, "unknown command 'bogus'"));
}

/* TRADE from a config file: boundary data from the module's exact sampler, then samples with
 * the target density and importance weights filled in. */
static void test_trade_from_config(void **state) {
  (void)state;
  write_file("trade.ini", "[model]\nblocks = 2\nhidden = 16\n[physics]\nname = gmm\n"
                          "c_min = 0.5\nc_max = 2\n[data]\nexact_samples = 2000\n"
                          "[loss]\nkind = trade\ngrid_points = 4\ngrid_samples = 64\n"
                          "points = 64\nlambda_warmup = 5\nlambda_ramp = 5\n"
                          "[train]\nsteps = 20\nbatch = 64\nlog_every = 10\n"
                          "[output]\ndir = run_trade\n");
  assert_int_equal(run("train trade.ini"), 0);
  assert_non_null(strstr(out, "loss trade"));
  assert_non_null(strstr(out, "trade "));   /* the TRADE term on the progress line */
  assert_non_null(strstr(out, "ess "));
  assert_int_equal(run("sample run_trade/checkpoint.h5 --n 500 --condition 1.5 --out st.h5"), 0);
  char path[512];
  snprintf(path, sizeof path, "%s/st.h5", dir);
  tf_samples s;
  assert_int_equal(tf_samples_read(path, &s), TF_OK);
  assert_int_equal(s.n, 500);
  for (int i = 0; i < 500; i++) {
    assert_true(isfinite(s.log_q[i]) && isfinite(s.log_w[i]));
    assert_true(fabs(s.log_w[i] - (s.log_q[i] - s.log_p[i])) < 1e-9);
  }
  tf_samples_free(&s);
  /* a condition the module does not allow */
  assert_int_equal(run("sample run_trade/checkpoint.h5 --n 5 --condition 1e6 --out st2.h5"), 2);
  assert_non_null(strstr(out, "valid range"));
}

/* mcmc: reference chains from a pipeline config whose [data] file does not exist yet; the
 * chain mean of the energy agrees with exact samples within the combined error (the
 * autocorrelation-corrected error is what makes this pass honestly), the file trains a flow,
 * a repeat run reproduces it, and bad settings are refused with the line named. */
static void test_mcmc(void **state) {
  (void)state;
  static const char *cfg =
      "[physics]\nname = double_well\n"
      "[mcmc]\nconditions = 0.7, 1\nsamples = 8000\nchains = 4\nburn_in = 300\n"
      "out = chains.h5\n"
      "[data]\nfile = chains.h5\ncondition_dataset = c\n"
      "[model]\nblocks = 2\nhidden = 16\n[train]\nsteps = 10\nbatch = 64\n"
      "[output]\ndir = run_mcmc\n";
  write_file("mcmc.ini", cfg);
  assert_int_equal(run("mcmc mcmc.ini"), 0);
  assert_non_null(strstr(out, "MALA"));
  int64_t n, d, nc, dc, no, mo;
  double *x = NULL, *c = NULL, *obs = NULL;
  assert_int_equal(tf_h5_read_matrix(path_of("chains.h5"), "x", TF_H5_FINITE, &n, &d, &x), TF_OK);
  assert_int_equal(tf_h5_read_matrix(path_of("chains.h5"), "c", TF_H5_FINITE, &nc, &dc, &c), TF_OK);
  assert_int_equal(tf_h5_read_matrix(path_of("chains.h5"), "obs", 0, &no, &mo, &obs), TF_OK);
  assert_int_equal(n, 16000);
  assert_int_equal(d, 2);
  assert_int_equal(nc, 16000);
  assert_true(c[0] == 0.7 && c[7999] == 0.7 && c[8000] == 1.0 && c[15999] == 1.0);
  double *mean = NULL, *err = NULL;
  int64_t k1, k2;
  assert_int_equal(tf_h5_read_matrix(path_of("chains.h5"), "conditions/energy", 0, &k1, &k2,
                                     &mean), TF_OK);
  assert_int_equal(tf_h5_read_matrix(path_of("chains.h5"), "conditions/energy_err", 0, &k1,
                                     &k2, &err), TF_OK);
  assert_int_equal(k1, 2);
  /* exact <U> at T = 1 from 40000 exact samples */
  tf_physics *p = NULL;
  assert_int_equal(tf_physics_create("double_well", 0, NULL, &p), TF_OK);
  enum { NE = 40000 };
  double *xe = malloc(2 * NE * sizeof *xe), *u = malloc(NE * sizeof *u);
  tf_rng r;
  tf_rng_init(&r, 99, 0, TF_RNG_TEST, 0);
  assert_int_equal(tf_physics_sample(p, 1.0, NE, &r, xe), TF_OK);
  assert_int_equal(tf_physics_energy(p, NE, xe, u), TF_OK);
  double su = 0, su2 = 0;
  for (int i = 0; i < NE; i++) su += u[i], su2 += u[i] * u[i];
  const double ue = su / NE, se = sqrt((su2 / NE - ue * ue) / NE);
  print_message("mcmc <U>(T=1) = %.4f +- %.4f, exact samples %.4f +- %.4f\n", mean[1], err[1],
                ue, se);
  assert_true(err[1] > 0 && fabs(mean[1] - ue) < 4 * sqrt(err[1] * err[1] + se * se));
  /* the observable column 0 is the energy of the row */
  assert_int_equal(mo, tf_physics_n_obs(p));
  double u0;
  assert_int_equal(tf_physics_energy(p, 1, x + 2 * 123, &u0), TF_OK);
  assert_true(fabs(u0 - obs[123 * mo]) < 1e-12);
  tf_physics_destroy(p);
  free(xe);
  free(u);
  free(mean);
  free(err);
  free(obs);
  free(c);
  /* the same config trains from the file; a repeat run writes the same chains */
  assert_int_equal(run("train mcmc.ini"), 0);
  assert_int_equal(run("mcmc mcmc.ini --set mcmc.out=chains2.h5"), 0);
  double *x2 = NULL;
  assert_int_equal(tf_h5_read_matrix(path_of("chains2.h5"), "x", 0, &n, &d, &x2), TF_OK);
  assert_memory_equal(x, x2, (size_t)(n * d) * sizeof *x);
  free(x);
  free(x2);
  /* errors: no output, a condition outside the module's range, an unknown key */
  write_file("mcmc_bad.ini", "[physics]\nname = double_well\n[mcmc]\nsamples = 10\n");
  assert_int_equal(run("mcmc mcmc_bad.ini"), 2);
  assert_non_null(strstr(out, "mcmc.out"));
  assert_int_equal(run("mcmc mcmc.ini --set mcmc.conditions=1e6"), 2);
  assert_non_null(strstr(out, "valid range"));
  /* other sections are blanked, not removed: the line number is the file's own */
  write_file("mcmc_bad2.ini", "[model]\nblocks = 2\n[physics]\nname = double_well\n\n[mcmc]\n"
                              "steps = 10\n");
  assert_int_equal(run("mcmc mcmc_bad2.ini"), 2);
  assert_non_null(strstr(out, "mcmc_bad2.ini:7"));
  assert_non_null(strstr(out, "steps"));
  /* a misspelt section is refused, not skipped */
  write_file("mcmc_bad3.ini", "[physics]\nname = double_well\n[mcmcc]\nsamples = 10\n");
  assert_int_equal(run("mcmc mcmc_bad3.ini"), 2);
  assert_non_null(strstr(out, "mcmcc"));
  /* an output directory that does not exist: refused before any sampling */
  assert_int_equal(run("mcmc mcmc.ini --set mcmc.out=no/such/dir/c.h5"), 2);
  assert_non_null(strstr(out, "no/such/dir"));
}

/* Reads a profile table of `bins` rows; every bin must agree with the exact profile within 4
 * of its bootstrap errors.  *err_max gets the largest error over the bins. */
static void check_profile(const char *name, int bins, double *err_max) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[512];
  int rows = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    double x, F, err, E, d, neff;
    assert_int_equal(sscanf(line, "%lf %lf %lf %lf %lf %lf", &x, &F, &err, &E, &d, &neff), 6);
    assert_true(isfinite(E) && isfinite(F) && err > 0 && neff >= 1);
    if (fabs(d) > 4 * err) fail_msg("%s, bin %g: F_flow - F_exact = %g, error %g", name, x, d, err);
    *err_max = rows ? fmax(*err_max, err) : err;
    rows++;
  }
  fclose(f);
  assert_int_equal(rows, bins);
}

/* profile: the untrained flow (N(0, I)) reweighted to the double well at T = 1 reproduces the
 * exact free-energy profile within its bootstrap errors; an unusable --range is refused.  With
 * a base N(0, T I) the untrained flow differs between temperatures, so at T = 0.4 the mixture
 * of T = 0.4, 1 and 2 must give the same profile as T = 0.4 alone and, by putting samples on
 * the walls at |x1| = 2 (10 kT above the wells), a much smaller largest error. */
static void test_profile(void **state) {
  (void)state;
  write_file("prof.ini", "[model]\nblocks = 2\nhidden = 8\n[physics]\nname = double_well\n"
                         "[data]\nexact_samples = 500\n[train]\nsteps = 0\nbatch = 64\n"
                         "log_every = 0\n[output]\ndir = run_prof\n");
  assert_int_equal(run("train prof.ini"), 0);
  assert_int_equal(run("profile run_prof/checkpoint.h5 --condition 1 --range -2,2 --bins 20 "
                       "--n 200000 --out prof.dat"), 0);
  assert_non_null(strstr(out, "max |F_flow - F_exact|"));
  double e1, e_single, e_mix;
  check_profile("prof.dat", 20, &e1);
  assert_int_equal(run("profile run_prof/checkpoint.h5 --condition 1 --range 2,-2 "
                       "--out prof2.dat"), 2);
  assert_non_null(strstr(out, "--range"));

  assert_int_equal(run("train prof.ini --set model.base_temperature=true "
                       "--set output.dir=run_prof_t"), 0);
  assert_int_equal(run("profile run_prof_t/checkpoint.h5 --condition 0.4 --bins 20 --n 400000 "
                       "--out prof_single.dat"), 0);
  check_profile("prof_single.dat", 20, &e_single);
  assert_int_equal(run("profile run_prof_t/checkpoint.h5 --condition 0.4 --bins 20 --n 400000 "
                       "--proposal 0.4,1,2 --out prof_mix.dat"), 0);
  check_profile("prof_mix.dat", 20, &e_mix);
  print_message("profile at T = 0.4, largest error: proposal T = 0.4 %.4f, mixture %.4f\n",
                e_single, e_mix);
  assert_true(e_mix < 0.5 * e_single);
  assert_int_equal(run("profile run_prof_t/checkpoint.h5 --condition 0.4 --proposal 0.4,200 "
                       "--out prof3.dat"), 2);
  assert_non_null(strstr(out, "--proposal 200"));
  assert_int_equal(run("profile run_prof_t/checkpoint.h5 --condition 0.4 --proposal 0.4,x "
                       "--out prof3.dat"), 2);
  assert_non_null(strstr(out, "--proposal"));
  /* tables are written atomically: no temporaries left behind, and an unwritable path is
   * an error naming it, with nothing written */
  glob_t g;
  assert_int_equal(glob("prof*.tmp.*", 0, NULL, &g), GLOB_NOMATCH);
  assert_int_equal(run("profile run_prof_t/checkpoint.h5 --condition 0.4 --n 1000 "
                       "--out nosuchdir/p.dat"), 2);
  assert_non_null(strstr(out, "nosuchdir/p.dat"));
  FILE *f = fopen("nosuchdir/p.dat", "r");
  assert_null(f);
}

/* tradeflow efficiency: flow-IMH and HMC on phi^4 (L = 4) in one run; an untrained flow (the
 * base N(0, I)) is a valid if poor proposal, so the two chains' means must agree */
static void test_efficiency(void **state) {
  (void)state;
  write_file("eff.ini", "[model]\nblocks = 2\nhidden = 8\n[physics]\nname = phi4\nL = 4\n"
                        "[loss]\nkind = reverse_kl\n[train]\nsteps = 0\nlog_every = 0\n"
                        "[output]\ndir = run_eff\n");
  assert_int_equal(run("train eff.ini"), 0);
  assert_int_equal(run("efficiency run_eff/checkpoint.h5 --condition 0.22 --n 20000 "
                       "--mcmc-n 20000 --observable s"), 0);
  assert_non_null(strstr(out, "flow-IMH"));
  assert_non_null(strstr(out, "HMC-FA"));
  const char *d = strstr(out, "means differ by ");
  assert_non_null(d);
  double pull = strtod(d + strlen("means differ by "), NULL);
  if (!(fabs(pull) < 4)) fail_msg("flow-IMH and HMC-FA means differ by %g standard errors", pull);
  /* plain HMC (no Fourier acceleration) samples the same distribution */
  assert_int_equal(run("efficiency run_eff/checkpoint.h5 --condition 0.22 --n 20000 "
                       "--mcmc-n 20000 --observable s --fourier 0"), 0);
  assert_null(strstr(out, "HMC-FA"));
  assert_non_null(d = strstr(out, "means differ by "));
  pull = strtod(d + strlen("means differ by "), NULL);
  if (!(fabs(pull) < 4)) fail_msg("flow-IMH and plain HMC means differ by %g standard errors", pull);
  assert_int_equal(run("efficiency run_eff/checkpoint.h5 --condition 0.22 --fourier 2"), 2);
  assert_non_null(strstr(out, "--fourier"));
  assert_int_equal(run("efficiency run_eff/checkpoint.h5 --condition 0.22 --observable nosuch"),
                   2);
  assert_non_null(strstr(out, "abs_m"));
  assert_int_equal(run("efficiency run_eff/checkpoint.h5 --condition 20"), 2);
  assert_non_null(strstr(out, "valid range"));
  assert_int_equal(run("efficiency run_eff/checkpoint.h5"), 2);
}

/* the shipped example config is valid and runs (a few steps, on this test's data) */
/* the option parser every subcommand shares (src/cli/args.c) */
static void test_options(void **state) {
  (void)state;
  const char *cmds[] = {"train", "sample", "eval", "plot", "profile", "mcmc", "efficiency",
                        "demo"};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    assert_int_equal(run("%s --help", cmds[i]), 0);
    assert_non_null(strstr(out, "usage: tradeflow"));
    assert_int_equal(run("%s --no-such-option", cmds[i]), 2);
    assert_non_null(strstr(out, "unknown or ambiguous option '--no-such-option'"));
    assert_non_null(strstr(out, "usage: tradeflow"));
  }
  /* a value missing at the end, named by its option */
  assert_int_equal(run("sample ck.h5 --condition 1 --out x.h5 --n"), 2);
  assert_non_null(strstr(out, "option '--n' needs a value"));
  /* one positional argument, wherever it stands; a second is refused */
  assert_int_equal(run("sample --n 3 a.h5 b.h5 --out x.h5 --condition 1"), 2);
  assert_non_null(strstr(out, "unexpected argument 'b.h5'"));
  assert_int_equal(run("demo extra"), 2);
  assert_non_null(strstr(out, "this command takes none"));
  /* --opt=value and options before the positional argument */
  write_file("o.ini", BASE_MODEL BASE_DATA BASE_TRAIN "[output]\ndir = run_o\n");
  assert_int_equal(run("train --set=train.steps=3 o.ini"), 0);
  assert_non_null(strstr(out, "done: 3 steps"));
  assert_int_equal(run("sample --n=7 --condition=0.9 --out=o.h5 run_o/checkpoint.h5"), 0);
  assert_non_null(strstr(out, "7 samples"));
}

static void test_example_config(void **state) {
  (void)state;
  assert_int_equal(run("train '%s/jobs/examples/flow.ini' --set data.file=data.h5 "
                       "--set train.steps=3 --set train.batch=64 --set output.dir=run_ex "
                       "--set train.warmup=0", TF_SOURCE_DIR), 0);
  assert_non_null(strstr(out, "example-spline"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_sample_eval),
      cmocka_unit_test(test_resume_from_the_command_line),
      cmocka_unit_test(test_parameter_average),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_trade_from_config),
      cmocka_unit_test(test_mcmc),
      cmocka_unit_test(test_profile),
      cmocka_unit_test(test_efficiency),
      cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_example_config),
      cmocka_unit_test(test_options),
  };
  return cmocka_run_group_tests(tests, setup, cli_teardown);
}
