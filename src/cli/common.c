/* common.c — helpers shared by the subcommands: strict option numbers, models from checkpoints.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/publish.h"

static tf_dist the_dist = {MPI_COMM_NULL, 0, 1};
static FILE *null_stream;

int tf_cli_dist_init(int *argc, char ***argv) {
  int rc = tf_dist_init(argc, argv, &the_dist);
  if (rc != TF_OK) return rc;
  if (the_dist.rank != 0) {
    null_stream = fopen("/dev/null", "w");
    if (!null_stream || !freopen("/dev/null", "w", stdout))
      return tf_error(TF_EIO, "rank %d: cannot open /dev/null", the_dist.rank);
  }
  return TF_OK;
}

void tf_cli_dist_finalize(void) {
  if (null_stream) fclose(null_stream);
  null_stream = NULL;
  tf_dist_finalize();
}

const tf_dist *tf_cli_dist(void) { return &the_dist; }

double tf_cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

FILE *tf_cli_err(void) { return null_stream ? null_stream : stderr; }

int tf_cli_parse_i64(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi,
                     int64_t *out) {
  char *end;
  errno = 0;
  const long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi) {
    fprintf(tf_cli_err(), "tradeflow %s: %s expects an integer in [%lld, %lld], got '%s'\n", cmd, opt,
            (long long)lo, (long long)hi, s);
    return 0;
  }
  *out = v;
  return 1;
}

int tf_cli_parse_f64(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out) {
  char *end;
  errno = 0;
  const double v = strtod(s, &end);
  if (errno || *end || end == s || !isfinite(v) || v < lo || v > hi) {
    fprintf(tf_cli_err(), "tradeflow %s: %s expects a finite number in [%g, %g], got '%s'\n", cmd,
            opt, lo, hi, s);
    return 0;
  }
  *out = v;
  return 1;
}

int tf_cli_parse_f64_list(const char *cmd, const char *opt, const char *s, double lo,
                          double hi, int max, double *out, int *k) {
  *k = 0;
  char *buf = malloc(strlen(s) + 1);
  if (!buf) {
    fprintf(tf_cli_err(), "tradeflow %s: out of memory\n", cmd);
    return 0;
  }
  strcpy(buf, s);
  int ok = 1;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); ok && t; t = strtok_r(NULL, ",", &save)) {
    if (*k == max) {
      fprintf(tf_cli_err(), "tradeflow %s: %s takes at most %d values, got '%s'\n", cmd, opt, max,
              s);
      ok = 0;
    } else {
      ok = tf_cli_parse_f64(cmd, opt, t, lo, hi, &out[(*k)++]);
    }
  }
  free(buf);
  if (ok && *k == 0) {
    fprintf(tf_cli_err(), "tradeflow %s: %s expects a comma-separated list, got '%s'\n", cmd, opt,
            s);
    ok = 0;
  }
  return ok;
}

int tf_cli_model_open(tf_cli_model *m, const char *checkpoint) {
  memset(m, 0, sizeof *m);
  m->weights = "";
  const char *w = getenv("TRADEFLOW_WEIGHTS");
  const int raw = w && !strcmp(w, "raw");
  if (w && *w && !raw && strcmp(w, "average"))
    return tf_error(TF_EINVAL, "TRADEFLOW_WEIGHTS = '%s': expected 'average' (the default) or "
                    "'raw'", w);
  m->model_cfg = tf_cli_load_model(checkpoint, &m->config_text);
  if (!m->model_cfg) return TF_EFORMAT; /* message set by the loader */
  int rc = tf_model_from_config(m->model_cfg, 0, &m->model);
  if (rc != TF_OK) goto fail;
  snprintf(m->name, sizeof m->name, "%s", tf_config_str(m->model_cfg, "model", "name"));
  tf_params *params = tf_model_params(m->model);
  int averaged = 0;
  if (raw) {
    rc = tf_checkpoint_load(checkpoint, params, NULL, NULL);
    m->weights = " (raw parameters)";
  } else {
    rc = tf_checkpoint_load_averaged(checkpoint, params, &averaged, NULL);
    if (averaged) m->weights = " (averaged parameters)";
  }
  if (rc == TF_OK) return TF_OK;
fail:
  tf_cli_model_close(m);
  return rc;
}

void tf_cli_model_close(tf_cli_model *m) {
  tf_model_destroy(m->model);
  tf_config_destroy(m->model_cfg);
  free(m->config_text);
  memset(m, 0, sizeof *m);
}

int tf_cli_afile_open(tf_cli_afile *a, const char *path) {
  a->f = NULL;
  if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path ||
      tf_publish_tmp_name(path, a->tmp, sizeof a->tmp) != TF_OK)
    return tf_error(TF_EINVAL, "path too long: %.64s...", path);
  a->f = fopen(a->tmp, "w");
  if (!a->f) return tf_error(TF_EIO, "%s: cannot write: %s", a->tmp, strerror(errno));
  return TF_OK;
}

int tf_cli_afile_commit(tf_cli_afile *a) {
  if (!a->f) return tf_error(TF_EINVAL, "%s: not open", a->path);
  int e = 0;
  if (ferror(a->f)) e = EIO; /* errno may be stale here: the failed write set it long ago */
  else if (fflush(a->f) != 0) e = errno ? errno : EIO;
  const int fd = e ? -1 : dup(fileno(a->f));
  if (!e && fd < 0) e = errno;
  if (fclose(a->f) != 0 && !e) e = errno;
  a->f = NULL;
  if (e) {
    if (fd >= 0) close(fd);
    remove(a->tmp);
    return tf_error(TF_EIO, "%s: write failed: %s", a->path, strerror(e));
  }
  return tf_publish(fd, a->tmp, a->path);
}

void tf_cli_afile_abort(tf_cli_afile *a) {
  if (!a->f) return;
  fclose(a->f);
  a->f = NULL;
  remove(a->tmp);
}
