/* cmd_plot.c — `tradeflow plot RESULT.h5 [RESULT2.h5 ...] [--labels a,b,...] --out DIR`.
 *
 * Turns evaluation results (docs/FILES.md, written by `tradeflow eval --out`) into PNG plots
 * against the condition: ESS/N, every observable (reweighted and IMH-corrected, one curve
 * each per result file, with the reference or exact values as their own curve), KL and log Z
 * when present.  Every plot is NAME.dat (one gnuplot data block per result file, selected with
 * `index`), NAME.gp (the script, runnable as `cd DIR && gnuplot NAME.gp` after restyling) and
 * NAME.png rendered by gnuplot (pngcairo, or png where cairo is missing: the script decides).
 * gnuplot runs by fork/exec in DIR, so no path ever goes through a shell.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/result.h"

enum { MAX_FILES = 32, MAX_PLOTS = 256 };

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow plot RESULT.h5 [RESULT2.h5 ...] [--labels a,b,...] --out DIR\n"
          "\n"
          "Plots evaluation results (from `tradeflow eval --out`) against the condition into\n"
          "DIR (created if missing): ess.png (ESS/N with bootstrap errors), obs_NAME.png per\n"
          "observable (reweighted and IMH-corrected means with errors for each file, and the\n"
          "reference or exact values as a separate curve), kl.png and logz.png (the estimate\n"
          "minus the exact log Z where known) when the files have them.  Beside each PNG: NAME.dat (one block per file) and NAME.gp, the\n"
          "gnuplot script that made it (edit, then `gnuplot NAME.gp` in DIR).  Labels default\n"
          "to the file names; the x axis is logarithmic when the conditions span more than a\n"
          "factor 4.  Needs gnuplot on PATH (exit 1 naming it otherwise, with the .dat and .gp\n"
          "files written).\n");
}

typedef struct {
  const char *label;
  tf_eval_result r;
  int64_t *order; /* rows sorted by c */
} plot_file;

typedef struct {
  const char *dir;
  int logx;
  double cmin, cmax; /* condition range over all files */
  const char *param;
  char written[MAX_PLOTS][80]; /* script names, to render */
  int n_written;
} plot_ctx;

/* gnuplot double-quoted string contents: backslash and quote escaped. */
static void gp_quote(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

static FILE *open_in(const plot_ctx *pc, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", pc->dir, name);
  FILE *f = fopen(path, "w");
  if (!f) tf_error(TF_EIO, "%s: cannot write: %s", path, strerror(errno));
  return f;
}

static int close_checked(const plot_ctx *pc, const char *name, FILE *f) {
  const int bad = ferror(f);
  if (fclose(f) != 0 || bad)
    return tf_error(TF_EIO, "%s/%s: write failed: %s", pc->dir, name, strerror(errno));
  return TF_OK;
}

static void put_num(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, " %.10g", v);
  else
    fputs(" NaN", f);
}

/* Header of every script: terminal with fallback, output, axes. */
static void gp_head(FILE *f, const plot_ctx *pc, const char *base, const char *ylabel,
                    const char *what) {
  fprintf(f, "# tradeflow plot: %s against %s.  Data: %s.dat (one block per result file,\n"
             "# selected with `index`).  Restyle, then run `gnuplot %s.gp` in this directory.\n",
          what, pc->param, base, base);
  fprintf(f, "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
             "  set terminal pngcairo size 960,640 font \",11\"\n"
             "} else {\n"
             "  set terminal png size 960,640\n"
             "}\n"
             "set termoption noenhanced\n"
             "set output \"%s.png\"\n"
             "set datafile missing \"NaN\"\n"
             "set grid\n"
             "set key outside right top\n"
             "set xlabel ", base);
  gp_quote(f, pc->param);
  fputs("\nset ylabel ", f);
  gp_quote(f, ylabel);
  fprintf(f, "\n%s\n", pc->logx ? "set logscale x" : "unset logscale x");
  fputs("set autoscale xfix\nset offsets graph 0.04, graph 0.04, 0, 0\n", f);
  if (pc->logx) {
    /* 1-2-3-5 ticks: over a decade or two gnuplot's own log ticks would label one value */
    fputs("set format x \"%g\"\nset xtics (", f);
    int n = 0;
    for (int e = (int)floor(log10(pc->cmin)) - 1; e <= (int)ceil(log10(pc->cmax)); e++)
      for (int k = 0; k < 4; k++) {
        static const double mant[4] = {1, 2, 3, 5};
        const double t = mant[k] * pow(10, e);
        if (t >= pc->cmin / 1.3 && t <= pc->cmax * 1.3) fprintf(f, "%s%g", n++ ? ", " : "", t);
      }
    fputs(")\n", f);
  }
}

static int cmp_c(const void *a, const void *b, const double *c) {
  const double x = c[*(const int64_t *)a], y = c[*(const int64_t *)b];
  return (x > y) - (x < y);
}

/* insertion sort by c (K is small), stable */
static void sort_rows(plot_file *pf) {
  const double *c = pf->r.col[TF_EV_C];
  for (int64_t i = 0; i < pf->r.k; i++) pf->order[i] = i;
  for (int64_t i = 1; i < pf->r.k; i++)
    for (int64_t j = i; j > 0 && cmp_c(&pf->order[j - 1], &pf->order[j], c) > 0; j--) {
      const int64_t t = pf->order[j];
      pf->order[j] = pf->order[j - 1];
      pf->order[j - 1] = t;
    }
}

static int any_finite(const plot_file *pf, int nf, int col) {
  for (int i = 0; i < nf; i++)
    for (int64_t k = 0; k < pf[i].r.k; k++)
      if (isfinite(pf[i].r.col[col][k])) return 1;
  return 0;
}

/* A per-condition plot of a value column with its error column, one curve per file.
 * from_zero: the y axis starts at 0 (ESS, KL); zero_line: a reference line at y = 0. */
static int plot_columns(plot_ctx *pc, const plot_file *pf, int nf, const char *base,
                        const char *ylabel, int v, int e, int from_zero, int zero_line) {
  char name[96];
  snprintf(name, sizeof name, "%s.dat", base);
  FILE *f = open_in(pc, name);
  if (!f) return TF_EIO;
  for (int i = 0; i < nf; i++) {
    fprintf(f, "%s# %s (%s): %s %s error\n", i ? "\n\n" : "", pf[i].label,
            pf[i].r.checkpoint, pc->param, tf_eval_col_name(v));
    for (int64_t k = 0; k < pf[i].r.k; k++) {
      const int64_t q = pf[i].order[k];
      put_num(f, pf[i].r.col[TF_EV_C][q]);
      put_num(f, pf[i].r.col[v][q]);
      put_num(f, pf[i].r.col[e][q]);
      fputc('\n', f);
    }
  }
  int st = close_checked(pc, name, f);
  snprintf(name, sizeof name, "%s.gp", base);
  if (st != TF_OK || !(f = open_in(pc, name))) return st != TF_OK ? st : TF_EIO;
  gp_head(f, pc, base, ylabel, ylabel);
  if (from_zero) fputs("set yrange [0:*]\n", f);
  fputs("plot ", f);
  for (int i = 0; i < nf; i++) {
    fprintf(f, "%s\"%s.dat\" index %d using 1:2:3 with yerrorlines lw 1.5 title ", i ? ", \\\n     " : "",
            base, i);
    gp_quote(f, pf[i].label);
  }
  if (zero_line) fputs(", \\\n     0 with lines lw 1 dt 2 lc rgb \"black\" notitle", f);
  fputc('\n', f);
  st = close_checked(pc, name, f);
  if (st == TF_OK && pc->n_written < MAX_PLOTS) snprintf(pc->written[pc->n_written++], 80, "%s", base);
  return st;
}

/* obs_NAME: NAME with anything but [A-Za-z0-9_-] replaced by '_'. */
static void obs_base(const char *obs, char *base, size_t len) {
  snprintf(base, len, "obs_%s", obs);
  for (char *s = base + 4; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '-'))
      *s = '_';
}

static int plot_observable(plot_ctx *pc, const plot_file *pf, int nf, const char *obs) {
  char base[80], name[96];
  obs_base(obs, base, sizeof base);
  snprintf(name, sizeof name, "%s.dat", base);
  FILE *f = open_in(pc, name);
  if (!f) return TF_EIO;
  int has_ref[MAX_FILES] = {0};
  for (int i = 0; i < nf; i++) {
    int j = 0;
    while (j < pf[i].r.m && strcmp(pf[i].r.obs_names[j], obs)) j++;
    fprintf(f, "%s# %s (%s): %s reweighted error imh error reference error\n", i ? "\n\n" : "",
            pf[i].label, pf[i].r.checkpoint, pc->param);
    for (int64_t k = 0; k < pf[i].r.k; k++) {
      const int64_t q = pf[i].order[k], t = q * pf[i].r.m + j;
      put_num(f, pf[i].r.col[TF_EV_C][q]);
      for (int tab = TF_EV_OBS_RW; tab <= TF_EV_OBS_REF_ERR; tab++) {
        if (tab == TF_EV_OBS_TAU || tab == TF_EV_OBS_TAU_ERR) continue;
        const double v = j < pf[i].r.m ? pf[i].r.tab[tab][t] : NAN;
        put_num(f, v);
        if (tab == TF_EV_OBS_REF && isfinite(v)) has_ref[i] = 1;
      }
      fputc('\n', f);
    }
  }
  int st = close_checked(pc, name, f);
  snprintf(name, sizeof name, "%s.gp", base);
  if (st != TF_OK || !(f = open_in(pc, name))) return st != TF_OK ? st : TF_EIO;
  gp_head(f, pc, base, obs, obs);
  fputs("plot ", f);
  for (int i = 0; i < nf; i++) {
    fprintf(f, "%s\"%s.dat\" index %d using 1:2:3 with yerrorlines lw 1.5 lc %d title ",
            i ? ", \\\n     " : "", base, i, i + 1);
    char t[300];
    snprintf(t, sizeof t, "%s reweighted", pf[i].label);
    gp_quote(f, t);
    fprintf(f, ", \\\n     \"%s.dat\" index %d using 1:4:5 with yerrorbars pt 6 ps 1.3 lc %d "
            "title ", base, i, i + 1);
    snprintf(t, sizeof t, "%s IMH", pf[i].label);
    gp_quote(f, t);
  }
  /* reference values: the same physics for every file, so one style and one legend entry */
  for (int i = 0, titled = 0; i < nf; i++)
    if (has_ref[i])
      fprintf(f, ", \\\n     \"%s.dat\" index %d using 1:6:7 with yerrorbars pt 7 ps 0.9 lc rgb "
              "\"black\" %s", base, i, titled++ ? "notitle" : "title \"reference\"");
  fputc('\n', f);
  st = close_checked(pc, name, f);
  if (st == TF_OK && pc->n_written < MAX_PLOTS) snprintf(pc->written[pc->n_written++], 80, "%s", base);
  return st;
}

/* gnuplot on PATH, as execvp would find it. */
static int have_program(const char *prog) {
  const char *path = getenv("PATH");
  if (!path || !*path) return 0;
  char buf[4096];
  for (const char *p = path; p;) {
    const char *colon = strchr(p, ':');
    const int len = colon ? (int)(colon - p) : (int)strlen(p);
    snprintf(buf, sizeof buf, "%.*s/%s", len, len ? p : ".", prog);
    if (access(buf, X_OK) == 0) return 1;
    p = colon ? colon + 1 : NULL;
  }
  return 0;
}

/* Runs `gnuplot NAME.gp` with DIR as working directory; TF_OK if it exited 0. */
static int run_gnuplot(const char *dir, const char *base) {
  char script[96];
  snprintf(script, sizeof script, "%s.gp", base);
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) return tf_error(TF_EIO, "cannot start gnuplot: %s", strerror(errno));
  if (pid == 0) {
    if (chdir(dir) != 0) _exit(126);
    execlp("gnuplot", "gnuplot", script, (char *)NULL);
    _exit(127);
  }
  int ws;
  while (waitpid(pid, &ws, 0) < 0)
    if (errno != EINTR) return tf_error(TF_EIO, "waiting for gnuplot: %s", strerror(errno));
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
    return tf_error(TF_EIO, "gnuplot failed on %s/%s (exit %d)", dir, script,
                    WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
  return TF_OK;
}

int tf_cli_plot(int argc, char **argv) {
  const char *files[MAX_FILES], *labels[MAX_FILES], *dir = NULL;
  const char *labels_opt = NULL;
  int nf = 0, nl = 0;
  const tf_cli_arg args[] = {
      {"out", TF_ARG_STR, &dir, 0, 0, 0, NULL, NULL},
      {"labels", TF_ARG_STR, &labels_opt, 0, 0, 0, NULL, NULL},
  };
  const int rc = tf_cli_args("plot", argc, argv, args, sizeof args / sizeof args[0], files,
                             MAX_FILES, &nf, usage);
  if (rc >= 0) return rc;
  char *label_arg = (char *)labels_opt; /* an argv string: split in place */
  if (!nf || !dir) {
    fprintf(stderr, "tradeflow plot: at least one RESULT.h5 and --out DIR are required\n\n");
    usage(stderr);
    return TF_EXIT_USAGE;
  }
  for (char *save = NULL, *t = label_arg ? strtok_r(label_arg, ",", &save) : NULL; t;
       t = strtok_r(NULL, ",", &save))
    labels[nl < MAX_FILES ? nl : MAX_FILES - 1] = t, nl++;
  if (label_arg && nl != nf) {
    fprintf(stderr, "tradeflow plot: --labels has %d entries for %d result files\n", nl, nf);
    return TF_EXIT_USAGE;
  }
  plot_file pf[MAX_FILES];
  char deflabel[MAX_FILES][256];
  memset(pf, 0, sizeof pf);
  int status = TF_EXIT_USAGE, st = TF_OK, loaded = 0;
  double cmin = INFINITY, cmax = 0;
  for (; loaded < nf; loaded++) {
    plot_file *p = &pf[loaded];
    if (tf_eval_result_read(files[loaded], &p->r) != TF_OK) goto fail;
    p->order = malloc((size_t)(p->r.k > 0 ? p->r.k : 1) * sizeof *p->order);
    if (!p->order) {
      tf_error(TF_ENOMEM, "out of memory");
      loaded++;
      goto fail;
    }
    sort_rows(p);
    const char *slash = strrchr(files[loaded], '/'), *b = slash ? slash + 1 : files[loaded];
    const size_t len = strlen(b) > 3 && !strcmp(b + strlen(b) - 3, ".h5") ? strlen(b) - 3 : strlen(b);
    snprintf(deflabel[loaded], sizeof deflabel[loaded], "%.*s", (int)len, b);
    p->label = label_arg ? labels[loaded] : deflabel[loaded];
    for (int64_t k = 0; k < p->r.k; k++) {
      cmin = fmin(cmin, p->r.col[TF_EV_C][k]);
      cmax = fmax(cmax, p->r.col[TF_EV_C][k]);
    }
    if (loaded && strcmp(p->r.param, pf[0].r.param))
      fprintf(stderr, "tradeflow plot: warning: %s has parameter '%s', %s has '%s'\n",
              files[loaded], p->r.param, files[0], pf[0].r.param);
  }
  struct stat sb;
  if (mkdir(dir, 0777) != 0 && !(errno == EEXIST && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))) {
    tf_error(TF_EIO, "--out %s: cannot create the directory: %s", dir, strerror(errno));
    goto fail;
  }
  status = TF_EXIT_FAIL;
  plot_ctx pc;
  memset(&pc, 0, sizeof pc);
  pc.dir = dir;
  pc.logx = cmin > 0 && cmax / cmin > 4;
  pc.cmin = cmin;
  pc.cmax = cmax;
  pc.param = pf[0].r.param[0] ? pf[0].r.param : "c";
  st = plot_columns(&pc, pf, nf, "ess", "ESS/N", TF_EV_ESS, TF_EV_ESS_ERR, 1, 0);
  for (int i = 0; st == TF_OK && i < nf; i++)
    for (int j = 0; st == TF_OK && j < pf[i].r.m; j++) {
      int seen = 0; /* each observable once, in the order of first appearance */
      for (int i2 = 0; i2 <= i && !seen; i2++)
        for (int j2 = 0; j2 < (i2 < i ? pf[i2].r.m : j) && !seen; j2++)
          seen = !strcmp(pf[i2].r.obs_names[j2], pf[i].r.obs_names[j]);
      if (!seen) st = plot_observable(&pc, pf, nf, pf[i].r.obs_names[j]);
    }
  if (st == TF_OK && any_finite(pf, nf, TF_EV_KL))
    st = plot_columns(&pc, pf, nf, "kl", "KL(p_exact || p_flow) [nats]", TF_EV_KL, TF_EV_KL_ERR,
                      1, 0);
  /* against the exact value where there is one: the error is what is worth seeing */
  if (st == TF_OK && any_finite(pf, nf, TF_EV_LOGZ_DIFF))
    st = plot_columns(&pc, pf, nf, "logz", "log Z estimate - exact log Z", TF_EV_LOGZ_DIFF,
                      TF_EV_LOGZ_ERR, 0, 1);
  else if (st == TF_OK && any_finite(pf, nf, TF_EV_LOGZ))
    st = plot_columns(&pc, pf, nf, "logz", "log Z estimate", TF_EV_LOGZ, TF_EV_LOGZ_ERR, 0, 0);
  if (st != TF_OK) goto fail;
  if (!have_program("gnuplot")) {
    tf_error(TF_EUNSUP, "gnuplot not found on PATH: wrote the .dat and .gp files of %d plots "
             "to %s but no PNG; install gnuplot (Debian: apt-get install gnuplot-nox) and run "
             "`gnuplot NAME.gp` in %s", pc.n_written, dir, dir);
    goto fail;
  }
  for (int i = 0; i < pc.n_written; i++) {
    if (run_gnuplot(dir, pc.written[i]) != TF_OK) goto fail;
    printf("%s/%s.png\n", dir, pc.written[i]);
  }
  printf("tradeflow plot: %d plots of %d result file%s in %s (.png, .dat, .gp)\n", pc.n_written,
         nf, nf > 1 ? "s" : "", dir);
  status = TF_EXIT_OK;
  goto done;
fail:
  fprintf(stderr, "tradeflow plot: %s\n", tf_errmsg());
done:
  for (int i = 0; i < loaded; i++) {
    tf_eval_result_free(&pf[i].r);
    free(pf[i].order);
  }
  return status;
}
