/* h5result.c — evaluation result files: writer (atomic) and reader.
 *
 * Exported: tf_eval_col_name, tf_eval_tab_name, tf_eval_result_alloc, tf_eval_result_free,
 *           tf_eval_result_set_str, tf_eval_result_probe, tf_eval_result_write,
 *           tf_eval_result_read.
 * None is collective.  Layout: include/tradeflow/result.h and docs/FILES.md.
 *
 * The atomic write follows h5io.c: the file is built in memory with HDF5's core driver, its
 * image is written by us to "<path>.tmp.<pid>", fsync'd, renamed over <path>, and the
 * directory is fsync'd; HDF5 itself never writes to disk (see h5io.c for why).  The plumbing
 * is repeated here in small because h5io.c keeps its helpers private.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

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

static char *dup_str(const char *s) {
  const size_t n = strlen(s ? s : "") + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s ? s : "", n);
  return d;
}

int tf_eval_result_set_str(char **field, const char *s) {
  char *d = dup_str(s);
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
    ok = (r->obs_names[j] = dup_str(obs_names && obs_names[j] ? obs_names[j] : buf)) != NULL;
  }
  for (int i = 0; ok && i < TF_EV_N_COLS; i++) ok = (r->col[i] = nan_array(k)) != NULL;
  for (int i = 0; ok && i < TF_EV_N_TABS; i++) ok = (r->tab[i] = nan_array(k * m)) != NULL;
  char **s[] = {&r->model, &r->physics, &r->physics_name, &r->param, &r->checkpoint,
                &r->config_text, &r->kl_method};
  for (size_t i = 0; ok && i < sizeof s / sizeof s[0]; i++) ok = (*s[i] = dup_str("")) != NULL;
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

/* ---- HDF5 plumbing --------------------------------------------------------------------------- */

typedef struct {
  H5E_auto2_t fn;
  void *data;
} quiet;

static quiet quiet_on(void) {
  quiet q = {NULL, NULL};
  if (H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data) < 0) q.fn = NULL, q.data = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  return q;
}

static void quiet_off(quiet q) { H5Eset_auto2(H5E_DEFAULT, q.fn, q.data); }

static herr_t cause_cb(unsigned n, const H5E_error2_t *e, void *p) {
  if (n == 0 && e->desc && *e->desc) snprintf(p, 300, "%s", e->desc);
  return 0;
}

static int h5fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Our message with HDF5's innermost reason; call right after the failing HDF5 call. */
static int h5fail(int code, const char *fmt, ...) {
  char cause[300] = "", msg[700];
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, cause_cb, cause);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return cause[0] ? tf_error(code, "%s (HDF5: %s)", msg, cause) : tf_error(code, "%s", msg);
}

static void h5close(hid_t *id) {
  if (*id < 0) return;
  switch (H5Iget_type(*id)) {
  case H5I_FILE: H5Fclose(*id); break;
  case H5I_DATASET: H5Dclose(*id); break;
  case H5I_DATASPACE: H5Sclose(*id); break;
  case H5I_DATATYPE: H5Tclose(*id); break;
  case H5I_ATTR: H5Aclose(*id); break;
  case H5I_GENPROP_LST: H5Pclose(*id); break;
  default: break;
  }
  *id = H5I_INVALID_HID;
}

/* ---- writing --------------------------------------------------------------------------------- */

/* n == 0: scalar attribute. */
static int attr_put(hid_t obj, const char *path, const char *name, hid_t ft, hid_t mt,
                    hsize_t n, const void *data) {
  hid_t s = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
  hid_t a = s < 0 ? H5I_INVALID_HID : H5Acreate2(obj, name, ft, s, H5P_DEFAULT, H5P_DEFAULT);
  int st = TF_OK;
  if (a < 0 || H5Awrite(a, mt, data) < 0)
    st = h5fail(TF_EIO, "%s: cannot write attribute '%s'", path, name);
  h5close(&a);
  h5close(&s);
  return st;
}

/* n strings (n == 0: one scalar string s[0]), variable-length UTF-8. */
static int attr_put_strs(hid_t obj, const char *path, const char *name, hsize_t n,
                         const char *const *s) {
  hid_t t = H5Tcopy(H5T_C_S1);
  int st;
  if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)
    st = h5fail(TF_EIO, "%s: cannot make a string type for '%s'", path, name);
  else
    st = attr_put(obj, path, name, t, t, n, s);
  h5close(&t);
  return st;
}

static int attr_put_str(hid_t obj, const char *path, const char *name, const char *text) {
  const char *s = text ? text : "";
  return attr_put_strs(obj, path, name, 0, &s);
}

static int attr_put_i64(hid_t obj, const char *path, const char *name, int64_t v) {
  return attr_put(obj, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &v);
}

static int dset_put(hid_t f, const char *path, const char *name, int rank, const hsize_t *dims,
                    const double *data, hid_t *keep) {
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = s < 0 ? H5I_INVALID_HID
                  : H5Dcreate2(f, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int st = TF_OK;
  if (d < 0 || H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    st = h5fail(TF_EIO, "%s: cannot write dataset '%s'", path, name);
  h5close(&s);
  if (keep && st == TF_OK)
    *keep = d;
  else
    h5close(&d);
  return st;
}

static char *tmp_name(const char *path) {
  const size_t len = strlen(path) + 32;
  char *t = malloc(len);
  if (t) snprintf(t, len, "%s.tmp.%ld", path, (long)getpid());
  return t;
}

int tf_eval_result_probe(const char *path) {
  struct stat sb;
  if (!path || !*path) return tf_error(TF_EINVAL, "result file: empty path");
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return tf_error(TF_EIO, "%s: is a directory; cannot write a file there", path);
  char *tmp = tmp_name(path);
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
  char created[32];
  const time_t now = time(NULL);
  struct tm tm;
  if (!gmtime_r(&now, &tm) || !strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(created, sizeof created, "unknown");
  int st = attr_put_str(f, path, "format", TF_RESULT_FORMAT);
  if (st == TF_OK) st = attr_put_i64(f, path, "format_version", TF_H5_FORMAT_VERSION);
  if (st == TF_OK) st = attr_put_str(f, path, "tradeflow_version", tf_h5_version());
  if (st == TF_OK) st = attr_put_str(f, path, "created", created);
  const char *const sk[] = {"model", "physics", "physics_name", "param", "checkpoint", "config",
                            "kl_method"};
  const char *const sv[] = {r->model, r->physics, r->physics_name, r->param, r->checkpoint,
                            r->config_text, r->kl_method};
  for (size_t i = 0; st == TF_OK && i < sizeof sk / sizeof sk[0]; i++)
    st = attr_put_str(f, path, sk[i], sv[i]);
  const char *const ik[] = {"N", "seed", "imh_n", "bootstrap", "kl_grid"};
  const int64_t iv[] = {r->n, r->seed, r->imh_n, r->bootstrap, r->kl_grid};
  for (size_t i = 0; st == TF_OK && i < sizeof ik / sizeof ik[0]; i++)
    st = attr_put_i64(f, path, ik[i], iv[i]);
  /* an attribute of zero strings is not allowed; an empty list is simply absent */
  if (st == TF_OK && r->m > 0)
    st = attr_put_strs(f, path, "observables", (hsize_t)r->m, (const char *const *)r->obs_names);
  const hsize_t d1[1] = {(hsize_t)r->k}, d2[2] = {(hsize_t)r->k, (hsize_t)r->m};
  for (int i = 0; st == TF_OK && i < TF_EV_N_COLS; i++)
    st = dset_put(f, path, col_names[i], 1, d1, r->col[i], NULL);
  for (int i = 0; st == TF_OK && i < TF_EV_N_TABS; i++) {
    hid_t d = H5I_INVALID_HID;
    st = dset_put(f, path, tab_names[i], 2, d2, r->tab[i], &d);
    if (st == TF_OK && r->m > 0)
      st = attr_put_strs(d, path, "observables", (hsize_t)r->m,
                         (const char *const *)r->obs_names);
    h5close(&d);
  }
  return st;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int result_write(const char *path, const tf_eval_result *r) {
  if (!path || !*path) return tf_error(TF_EINVAL, "result file: empty path");
  int st = tf_eval_result_probe(path);
  if (st != TF_OK) return st;
  char *tmp = tmp_name(path), *mem = tmp ? tmp_name(tmp) : NULL;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = H5I_INVALID_HID;
  unsigned char *img = NULL;
  int fd = -1;
  if (!tmp || !mem) {
    st = tf_error(TF_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  /* in memory under a name that is not on disk (HDF5 would look at an existing file) */
  if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 ||
      (f = H5Fcreate(mem, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
    st = h5fail(TF_EIO, "%s: cannot create an HDF5 file in memory", path);
    goto done;
  }
  st = put_contents(f, path, r);
  if (st != TF_OK) goto done;
  ssize_t size = -1;
  if (H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0) size = H5Fget_file_image(f, NULL, 0);
  img = size > 0 ? malloc((size_t)size) : NULL;
  if (size <= 0 || !img || H5Fget_file_image(f, img, (size_t)size) != size) {
    st = size > 0 && !img ? tf_error(TF_ENOMEM, "%s: cannot allocate %zd bytes", path, size)
                          : h5fail(TF_EIO, "%s: cannot assemble the file", path);
    goto done;
  }
  h5close(&f);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0 || write_all(fd, img, (size_t)size) != 0 || fsync(fd) != 0) {
    st = tf_error(TF_EIO, "%s: cannot write '%s': %s", path, tmp, strerror(errno));
    if (fd >= 0) close(fd), unlink(tmp);
    goto done;
  }
  if (close(fd) != 0 || rename(tmp, path) != 0) {
    st = tf_error(TF_EIO, "%s: cannot write '%s' and rename it over the target: %s", path, tmp,
                  strerror(errno));
    unlink(tmp);
    goto done;
  }
  /* make the rename itself durable; some file systems cannot sync a directory */
  const char *slash = strrchr(path, '/');
  char dir[4096];
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash == path ? 1 : slash - path) : 1,
           slash ? path : ".");
  const int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP)
      st = tf_error(TF_EIO, "%s: written, but syncing directory '%s' failed: %s", path, dir,
                    strerror(errno));
    close(dfd);
  }
done:
  if (f >= 0) {
    /* close whatever a failed put_contents left open, then the file */
    hid_t ids[64];
    const ssize_t n = H5Fget_obj_ids(f, H5F_OBJ_LOCAL | H5F_OBJ_DATASET | H5F_OBJ_ATTR, 64, ids);
    for (ssize_t i = 0; i < n; i++) h5close(&ids[i]);
    h5close(&f);
  }
  h5close(&fapl);
  free(img);
  free(mem);
  free(tmp);
  return st;
}

int tf_eval_result_write(const char *path, const tf_eval_result *r) {
  quiet q = quiet_on();
  const int st = result_write(path, r);
  quiet_off(q);
  return st;
}

/* ---- reading --------------------------------------------------------------------------------- */

/* String attribute (scalar, variable or fixed length) into a malloc'd copy; "" if absent. */
static int attr_get_str(hid_t f, const char *path, const char *name, char **out) {
  *out = NULL;
  if (H5Aexists(f, name) <= 0) return (*out = dup_str("")) ? TF_OK : TF_ENOMEM;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1, mt = -1;
  int st = TF_OK;
  if (t < 0 || H5Tget_class(t) != H5T_STRING) {
    st = tf_error(TF_EFORMAT, "%s: attribute '%s' is not a string", path, name);
  } else if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
        H5Aread(a, mt, &s) < 0)
      st = h5fail(TF_EFORMAT, "%s: cannot read attribute '%s'", path, name);
    else
      *out = dup_str(s);
    if (s) H5free_memory(s);
  } else {
    const size_t sz = H5Tget_size(t);
    char *s = calloc(sz + 1, 1);
    if (s && H5Aread(a, t, s) >= 0)
      *out = s;
    else
      free(s), st = h5fail(TF_EFORMAT, "%s: cannot read attribute '%s'", path, name);
  }
  if (st == TF_OK && !*out) st = tf_error(TF_ENOMEM, "%s: out of memory", path);
  h5close(&mt);
  h5close(&t);
  h5close(&a);
  return st;
}

static int attr_get_i64(hid_t f, const char *path, const char *name, int64_t *v) {
  *v = 0;
  if (H5Aexists(f, name) <= 0) return TF_OK;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  int st = TF_OK;
  if (a < 0 || H5Aread(a, H5T_NATIVE_INT64, v) < 0)
    st = h5fail(TF_EFORMAT, "%s: cannot read attribute '%s' as an integer", path, name);
  h5close(&a);
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
    st = h5fail(TF_EFORMAT, "%s: attribute 'observables' is not a list of strings", path);
  } else {
    *names = calloc((size_t)n, sizeof **names);
    for (hssize_t i = 0; *names && i < n; i++)
      if (!((*names)[i] = dup_str(raw[i]))) st = TF_ENOMEM;
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
  h5close(&mt);
  h5close(&t);
  h5close(&s);
  h5close(&a);
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
    st = h5fail(TF_EFORMAT, "%s: cannot open dataset '%s'", path, name);
  } else if (r != rank || (H5Sget_simple_extent_dims(s, dims, NULL), dims[0] != want[0]) ||
             (rank == 2 && dims[1] != want[1])) {
    st = tf_error(TF_EFORMAT, "%s: dataset '%s' has rank %d shape (%llu%s%llu), expected "
                  "(%llu%s%llu)", path, name, r, (unsigned long long)dims[0], r == 2 ? ", " : "",
                  r == 2 ? (unsigned long long)dims[1] : 0ULL, (unsigned long long)want[0],
                  rank == 2 ? ", " : "", rank == 2 ? (unsigned long long)want[1] : 0ULL);
  } else if (want[0] * (rank == 2 ? want[1] : 1) > 0 &&
             H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    st = h5fail(TF_EFORMAT, "%s: cannot read dataset '%s' as float64", path, name);
  }
  h5close(&s);
  h5close(&d);
  return st;
}

static int result_read(const char *path, tf_eval_result *r) {
  hid_t f = H5I_INVALID_HID;
  struct stat sb;
  if (stat(path, &sb) != 0) return tf_error(TF_EIO, "%s: %s", path, strerror(errno));
  if (H5Fis_hdf5(path) <= 0) return tf_error(TF_EFORMAT, "%s: not an HDF5 file", path);
  f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return h5fail(TF_EFORMAT, "%s: cannot open HDF5 file (truncated or corrupt?)", path);
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
    h5close(&s);
    h5close(&d);
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
  h5close(&f);
  if (st != TF_OK) tf_eval_result_free(r);
  return st;
}

int tf_eval_result_read(const char *path, tf_eval_result *r) {
  memset(r, 0, sizeof *r);
  quiet q = quiet_on();
  const int st = result_read(path, r);
  quiet_off(q);
  return st;
}
