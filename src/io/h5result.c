/* h5result.c — evaluation result files: writer (atomic) and reader.
 *
 * Exported: tf_eval_col_name, tf_eval_tab_name, tf_eval_result_alloc, tf_eval_result_free,
 *           tf_eval_result_set_str, tf_eval_result_probe, tf_eval_result_write,
 *           tf_eval_result_read.
 * None is collective.  Layout: include/tradeflow/result.h and docs/FILES.md.
 *
 * The write is atomic as in h5io.c and through the same plumbing (h5-impl.h, h5util.c): the
 * file is built in memory with HDF5's core driver, its image is written by us to
 * "<path>.tmp.<pid>", fsync'd, renamed over <path>, and the directory is fsync'd; HDF5 itself
 * never writes to disk (see h5-impl.h for why).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "h5-impl.h"
#include "tradeflow/error.h"
#include "tradeflow/h5io.h"
#include "tradeflow/result.h"

static const char *const col_names[TF_EV_N_COLS] = {
    "c",   "n_valid", "ess",     "ess_err",     "logz",  "logz_err",   "logz_exact", "logz_diff",
    "kl",  "kl_err",  "nll_ref", "nll_ref_err", "n_ref", "ref_source", "imh_accept"};
static const char *const tab_names[TF_EV_N_TABS] = {
    "obs_rw", "obs_rw_err", "obs_imh", "obs_imh_err",
    "obs_tau", "obs_tau_err", "obs_ref", "obs_ref_err"};

const char *tf_eval_col_name(int i) { return i >= 0 && i < TF_EV_N_COLS ? col_names[i] : ""; }
const char *tf_eval_tab_name(int i) { return i >= 0 && i < TF_EV_N_TABS ? tab_names[i] : ""; }

/* ---- the struct ------------------------------------------------------------------------------ */

int tf_eval_result_set_str(char **field, const char *s) {
  char *d = tf__h5_dup_str(s);
  if (!d) return tf_error(TF_ENOMEM, "result: out of memory");
  free(*field);
  *field = d;
  return TF_OK;
}

static double *nan_array(int64_t n) {
  double *a = malloc((size_t)(n > 0 ? n : 1) * sizeof *a);
  if (a)
    for (int64_t i = 0; i < n; i++) a[i] = NAN;
  return a;
}

int tf_eval_result_alloc(tf_eval_result *r, int64_t k, int m, const char *const *obs_names) {
  memset(r, 0, sizeof *r);
  r->k = k;
  r->m = m;
  int ok = k >= 0 && m >= 0;
  r->obs_names = ok ? calloc((size_t)(m > 0 ? m : 1), sizeof *r->obs_names) : NULL;
  ok = ok && r->obs_names;
  for (int j = 0; ok && j < m; j++) {
    char buf[32];
    snprintf(buf, sizeof buf, "obs%d", j);
    const char *name = obs_names && obs_names[j] ? obs_names[j] : buf;
    ok = (r->obs_names[j] = tf__h5_dup_str(name)) != NULL;
  }
  for (int i = 0; ok && i < TF_EV_N_COLS; i++) ok = (r->col[i] = nan_array(k)) != NULL;
  for (int i = 0; ok && i < TF_EV_N_TABS; i++) ok = (r->tab[i] = nan_array(k * m)) != NULL;
  char **s[] = {&r->model, &r->physics, &r->physics_name, &r->param, &r->checkpoint,
                &r->config_text, &r->kl_method};
  for (size_t i = 0; ok && i < sizeof s / sizeof s[0]; i++)
    ok = (*s[i] = tf__h5_dup_str("")) != NULL;
  if (!ok) {
    tf_eval_result_free(r);
    return tf_error(k < 0 || m < 0 ? TF_EINVAL : TF_ENOMEM,
                    "result: cannot allocate %lld conditions x %d observables", (long long)k, m);
  }
  return TF_OK;
}

void tf_eval_result_free(tf_eval_result *r) {
  if (!r) return;
  if (r->obs_names)
    for (int j = 0; j < r->m; j++) free(r->obs_names[j]);
  free(r->obs_names);
  for (int i = 0; i < TF_EV_N_COLS; i++) free(r->col[i]);
  for (int i = 0; i < TF_EV_N_TABS; i++) free(r->tab[i]);
  free(r->model);
  free(r->physics);
  free(r->physics_name);
  free(r->param);
  free(r->checkpoint);
  free(r->config_text);
  free(r->kl_method);
  memset(r, 0, sizeof *r);
}

/* ---- writing --------------------------------------------------------------------------------- */

int tf_eval_result_probe(const char *path) {
  struct stat sb;
  if (!path || !*path) return tf_error(TF_EINVAL, "result file: empty path");
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return tf_error(TF_EIO, "%s: is a directory; cannot write a file there", path);
  char *tmp = tf__h5_tmp_name(path);
  if (!tmp) return tf_error(TF_ENOMEM, "%s: out of memory", path);
  const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  int st = TF_OK;
  if (fd < 0) {
    st = tf_error(TF_EIO, "%s: cannot create a file there ('%s': %s)", path, tmp,
                  strerror(errno));
  } else {
    close(fd);
    unlink(tmp);
  }
  free(tmp);
  return st;
}

static int put_contents(hid_t f, const char *path, const tf_eval_result *r) {
  int st = tf__h5_put_header(f, path, TF_RESULT_FORMAT);
  const char *const sk[] = {"model", "physics", "physics_name", "param", "checkpoint", "config",
                            "kl_method"};
  const char *const sv[] = {r->model, r->physics, r->physics_name, r->param, r->checkpoint,
                            r->config_text, r->kl_method};
  for (size_t i = 0; st == TF_OK && i < sizeof sk / sizeof sk[0]; i++)
    st = tf__h5_attr_put_str(f, path, sk[i], sv[i]);
  const char *const ik[] = {"N", "seed", "imh_n", "bootstrap", "kl_grid"};
  const int64_t iv[] = {r->n, r->seed, r->imh_n, r->bootstrap, r->kl_grid};
  for (size_t i = 0; st == TF_OK && i < sizeof ik / sizeof ik[0]; i++)
    st = tf__h5_attr_put_i64(f, path, ik[i], iv[i]);
  /* an attribute of zero strings is not allowed; an empty list is simply absent */
  if (st == TF_OK && r->m > 0)
    st = tf__h5_attr_put_strs(f, path, "observables", (hsize_t)r->m,
                              (const char *const *)r->obs_names);
  const hsize_t d1[1] = {(hsize_t)r->k}, d2[2] = {(hsize_t)r->k, (hsize_t)r->m};
  for (int i = 0; st == TF_OK && i < TF_EV_N_COLS; i++)
    st = tf__h5_dset_put(f, path, col_names[i], col_names[i], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                         1, d1, r->col[i], NULL);
  for (int i = 0; st == TF_OK && i < TF_EV_N_TABS; i++) {
    hid_t d = H5I_INVALID_HID;
    st = tf__h5_dset_put(f, path, tab_names[i], tab_names[i], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                         2, d2, r->tab[i], &d);
    if (st == TF_OK && r->m > 0)
      st = tf__h5_attr_put_strs(d, path, "observables", (hsize_t)r->m,
                                (const char *const *)r->obs_names);
    tf__h5_close(&d);
  }
  return st;
}

static int result_write(const char *path, const tf_eval_result *r) {
  if (!path || !*path) return tf_error(TF_EINVAL, "result file: empty path");
  int st = tf_eval_result_probe(path);
  if (st != TF_OK) return st;
  tf__h5_atomic a;
  if ((st = tf__h5_atomic_begin(&a, path)) != TF_OK) return st;
  st = put_contents(a.file, path, r);
  if (st != TF_OK) {
    tf__h5_atomic_abort(&a); /* closes whatever put_contents left open, then the file */
    return st;
  }
  return tf__h5_atomic_commit(&a);
}

int tf_eval_result_write(const char *path, const tf_eval_result *r) {
  tf__h5_quiet q = tf__h5_quiet_on();
  const int st = result_write(path, r);
  tf__h5_quiet_off(q);
  return st;
}

/* ---- reading --------------------------------------------------------------------------------- */

/* String attribute (scalar, variable or fixed length) into a malloc'd copy; "" if absent. */
static int attr_get_str(hid_t f, const char *path, const char *name, char **out) {
  *out = NULL;
  if (H5Aexists(f, name) <= 0) return (*out = tf__h5_dup_str("")) ? TF_OK : TF_ENOMEM;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1, mt = -1;
  int st = TF_OK;
  if (t < 0 || H5Tget_class(t) != H5T_STRING) {
    st = tf_error(TF_EFORMAT, "%s: attribute '%s' is not a string", path, name);
  } else if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
        H5Aread(a, mt, &s) < 0)
      st = tf__h5_fail(TF_EFORMAT, "%s: cannot read attribute '%s'", path, name);
    else
      *out = tf__h5_dup_str(s);
    if (s) H5free_memory(s);
  } else {
    const size_t sz = H5Tget_size(t);
    char *s = calloc(sz + 1, 1);
    if (s && H5Aread(a, t, s) >= 0)
      *out = s;
    else
      free(s), st = tf__h5_fail(TF_EFORMAT, "%s: cannot read attribute '%s'", path, name);
  }
  if (st == TF_OK && !*out) st = tf_error(TF_ENOMEM, "%s: out of memory", path);
  tf__h5_close(&mt);
  tf__h5_close(&t);
  tf__h5_close(&a);
  return st;
}

static int attr_get_i64(hid_t f, const char *path, const char *name, int64_t *v) {
  *v = 0;
  if (H5Aexists(f, name) <= 0) return TF_OK;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  int st = TF_OK;
  if (a < 0 || H5Aread(a, H5T_NATIVE_INT64, v) < 0)
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot read attribute '%s' as an integer", path, name);
  tf__h5_close(&a);
  return st;
}

/* The observable names: a 1-D attribute of m variable-length strings. */
static int read_names(hid_t f, const char *path, int *m, char ***names) {
  *m = 0;
  *names = NULL;
  if (H5Aexists(f, "observables") <= 0) return TF_OK;
  hid_t a = H5Aopen(f, "observables", H5P_DEFAULT), s = a >= 0 ? H5Aget_space(a) : -1;
  hid_t t = a >= 0 ? H5Aget_type(a) : -1, mt = H5Tcopy(H5T_C_S1);
  const hssize_t n = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
  char **raw = n > 0 ? calloc((size_t)n, sizeof *raw) : NULL;
  int st = TF_OK;
  if (!raw || t < 0 || H5Tis_variable_str(t) <= 0 || mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 ||
      H5Tset_cset(mt, H5Tget_cset(t)) < 0 || H5Aread(a, mt, raw) < 0) {
    st = tf__h5_fail(TF_EFORMAT, "%s: attribute 'observables' is not a list of strings", path);
  } else {
    *names = calloc((size_t)n, sizeof **names);
    for (hssize_t i = 0; *names && i < n; i++)
      if (!((*names)[i] = tf__h5_dup_str(raw[i]))) st = TF_ENOMEM;
    if (!*names) st = TF_ENOMEM;
    if (st == TF_OK) *m = (int)n;
    if (st == TF_ENOMEM) tf_error(st, "%s: out of memory", path);
  }
  if (raw)
    for (hssize_t i = 0; i < n; i++)
      if (raw[i]) H5free_memory(raw[i]);
  if (st != TF_OK && *names) {
    for (hssize_t i = 0; i < n; i++) free((*names)[i]);
    free(*names);
    *names = NULL;
  }
  free(raw);
  tf__h5_close(&mt);
  tf__h5_close(&t);
  tf__h5_close(&s);
  tf__h5_close(&a);
  return st;
}

/* Dataset `name` of shape want[0..rank) into out; absent: left as is (NaN). */
static int read_dset(hid_t f, const char *path, const char *name, int rank, const hsize_t *want,
                     double *out, int required) {
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
    if (required) return tf_error(TF_EFORMAT, "%s: dataset '%s' missing", path, name);
    return TF_OK;
  }
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT), s = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t dims[2] = {0, 0};
  const int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
  int st = TF_OK;
  if (r < 0 || d < 0) {
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot open dataset '%s'", path, name);
  } else if (r != rank || (H5Sget_simple_extent_dims(s, dims, NULL), dims[0] != want[0]) ||
             (rank == 2 && dims[1] != want[1])) {
    st = tf_error(TF_EFORMAT, "%s: dataset '%s' has rank %d shape (%llu%s%llu), expected "
                  "(%llu%s%llu)", path, name, r, (unsigned long long)dims[0], r == 2 ? ", " : "",
                  r == 2 ? (unsigned long long)dims[1] : 0ULL, (unsigned long long)want[0],
                  rank == 2 ? ", " : "", rank == 2 ? (unsigned long long)want[1] : 0ULL);
  } else if (want[0] * (rank == 2 ? want[1] : 1) > 0 &&
             H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot read dataset '%s' as float64", path, name);
  }
  tf__h5_close(&s);
  tf__h5_close(&d);
  return st;
}

static int result_read(const char *path, tf_eval_result *r) {
  hid_t f = H5I_INVALID_HID;
  struct stat sb;
  if (stat(path, &sb) != 0) return tf_error(TF_EIO, "%s: %s", path, strerror(errno));
  if (H5Fis_hdf5(path) <= 0) return tf_error(TF_EFORMAT, "%s: not an HDF5 file", path);
  f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return tf__h5_fail(TF_EFORMAT, "%s: cannot open HDF5 file (truncated or corrupt?)", path);
  char *fmt = NULL, **names = NULL;
  int m = 0;
  int64_t ver = 0;
  int st = attr_get_str(f, path, "format", &fmt);
  if (st == TF_OK && strcmp(fmt, TF_RESULT_FORMAT) != 0)
    st = tf_error(TF_EFORMAT, "%s: not an evaluation result (attribute 'format' is '%s', "
                  "expected '%s')", path, fmt, TF_RESULT_FORMAT);
  if (st == TF_OK) st = attr_get_i64(f, path, "format_version", &ver);
  if (st == TF_OK && (ver < 1 || ver > TF_H5_FORMAT_VERSION))
    st = tf_error(TF_EUNSUP, "%s: format_version %lld not supported (this build reads 1 to %d)",
                  path, (long long)ver, TF_H5_FORMAT_VERSION);
  if (st == TF_OK) st = read_names(f, path, &m, &names);
  /* K from the condition column */
  hsize_t k = 0;
  if (st == TF_OK) {
    hid_t d = H5Lexists(f, "c", H5P_DEFAULT) > 0 ? H5Dopen2(f, "c", H5P_DEFAULT) : -1;
    hid_t s = d >= 0 ? H5Dget_space(d) : -1;
    if (s < 0 || H5Sget_simple_extent_ndims(s) != 1)
      st = tf_error(TF_EFORMAT, "%s: dataset 'c' (the conditions, 1-D) missing", path);
    else
      H5Sget_simple_extent_dims(s, &k, NULL);
    tf__h5_close(&s);
    tf__h5_close(&d);
  }
  if (st == TF_OK) st = tf_eval_result_alloc(r, (int64_t)k, m, (const char *const *)names);
  const hsize_t d1[1] = {k}, d2[2] = {k, (hsize_t)m};
  for (int i = 0; st == TF_OK && i < TF_EV_N_COLS; i++)
    st = read_dset(f, path, col_names[i], 1, d1, r->col[i], i == TF_EV_C);
  for (int i = 0; st == TF_OK && i < TF_EV_N_TABS; i++)
    st = read_dset(f, path, tab_names[i], 2, d2, r->tab[i], 0);
  const char *const sk[] = {"model", "physics", "physics_name", "param", "checkpoint", "config",
                            "kl_method"};
  char **sv[] = {&r->model, &r->physics, &r->physics_name, &r->param, &r->checkpoint,
                 &r->config_text, &r->kl_method};
  for (size_t i = 0; st == TF_OK && i < sizeof sk / sizeof sk[0]; i++) {
    free(*sv[i]);
    *sv[i] = NULL;
    st = attr_get_str(f, path, sk[i], sv[i]);
  }
  const char *const ik[] = {"N", "seed", "imh_n", "bootstrap", "kl_grid"};
  int64_t *iv[] = {&r->n, &r->seed, &r->imh_n, &r->bootstrap, &r->kl_grid};
  for (size_t i = 0; st == TF_OK && i < sizeof ik / sizeof ik[0]; i++)
    st = attr_get_i64(f, path, ik[i], iv[i]);
  if (names)
    for (int j = 0; j < m; j++) free(names[j]);
  free(names);
  free(fmt);
  tf__h5_close(&f);
  if (st != TF_OK) tf_eval_result_free(r);
  return st;
}

int tf_eval_result_read(const char *path, tf_eval_result *r) {
  memset(r, 0, sizeof *r);
  tf__h5_quiet q = tf__h5_quiet_on();
  const int st = result_read(path, r);
  tf__h5_quiet_off(q);
  return st;
}
