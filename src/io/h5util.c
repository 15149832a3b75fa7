/* h5util.c — HDF5 plumbing shared by h5io.c and h5result.c.
 *
 * Defines the internal functions declared in h5-impl.h (error reporting with HDF5's reason,
 * quiet error printing, closing ids, attribute and dataset writers, atomic files).  Nothing here
 * is exported by the public headers; none is collective.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "h5-impl.h"
#include "tradeflow/publish.h"
#include "tradeflow/h5io.h"

/* ---- error reporting ------------------------------------------------------------------------ */

tf__h5_quiet tf__h5_quiet_on(void) {
  tf__h5_quiet q = {NULL, NULL};
  if (H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data) < 0) {
    q.fn = NULL;
    q.data = NULL;
  }
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  return q;
}

void tf__h5_quiet_off(tf__h5_quiet q) { H5Eset_auto2(H5E_DEFAULT, q.fn, q.data); }

typedef struct {
  char *buf;
  size_t len;
} cause_ctx;

static herr_t cause_cb(unsigned n, const H5E_error2_t *e, void *p) {
  cause_ctx *c = p;
  if (n == 0 && e->desc && *e->desc) snprintf(c->buf, c->len, "%s", e->desc);
  return 0;
}

void tf__h5_cause(char *buf, size_t len) {
  cause_ctx c = {buf, len};
  if (len) buf[0] = '\0';
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, cause_cb, &c);
}

int tf__h5_fail(int code, const char *fmt, ...) {
  char cause[400], msg[768];
  tf__h5_cause(cause, sizeof cause);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (cause[0]) return tf_error(code, "%s (HDF5: %s)", msg, cause);
  return tf_error(code, "%s", msg);
}

/* ---- small helpers -------------------------------------------------------------------------- */

void tf__h5_close(hid_t *id) {
  if (*id < 0) return;
  switch (H5Iget_type(*id)) {
  case H5I_FILE: H5Fclose(*id); break;
  case H5I_GROUP: H5Gclose(*id); break;
  case H5I_DATASET: H5Dclose(*id); break;
  case H5I_DATASPACE: H5Sclose(*id); break;
  case H5I_DATATYPE: H5Tclose(*id); break;
  case H5I_ATTR: H5Aclose(*id); break;
  case H5I_GENPROP_LST: H5Pclose(*id); break;
  default: break;
  }
  *id = H5I_INVALID_HID;
}

char *tf__h5_dup_str(const char *s) {
  if (!s) s = "";
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

char *tf__h5_tmp_name(const char *path) {
  const size_t len = strlen(path) + 32;
  char *t = malloc(len);
  if (t && tf_publish_tmp_name(path, t, len) != TF_OK) { /* cannot happen: len has room */
    free(t);
    t = NULL;
  }
  return t;
}

/* ---- writing -------------------------------------------------------------------------------- */

int tf__h5_attr_put(hid_t obj, const char *path, const char *name, hid_t filetype,
                    hid_t memtype, hsize_t n, const void *data) {
  hid_t s = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
  hid_t a = s < 0 ? H5I_INVALID_HID : H5Acreate2(obj, name, filetype, s, H5P_DEFAULT, H5P_DEFAULT);
  int st = TF_OK;
  if (a < 0 || H5Awrite(a, memtype, data) < 0)
    st = tf__h5_fail(TF_EIO, "%s: cannot write attribute '%s'", path, name);
  tf__h5_close(&a);
  tf__h5_close(&s);
  return st;
}

int tf__h5_attr_put_strs(hid_t obj, const char *path, const char *name, hsize_t n,
                         const char *const *s) {
  hid_t t = H5Tcopy(H5T_C_S1);
  int st;
  if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)
    st = tf__h5_fail(TF_EIO, "%s: cannot make a string type for attribute '%s'", path, name);
  else
    st = tf__h5_attr_put(obj, path, name, t, t, n, s);
  tf__h5_close(&t);
  return st;
}

int tf__h5_attr_put_str(hid_t obj, const char *path, const char *name, const char *text) {
  const char *s = text ? text : "";
  return tf__h5_attr_put_strs(obj, path, name, 0, &s);
}

int tf__h5_attr_put_i64(hid_t obj, const char *path, const char *name, int64_t v) {
  return tf__h5_attr_put(obj, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &v);
}

void tf__h5_now_iso(char *buf, size_t len) {
  const time_t t = time(NULL);
  struct tm tm;
  if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(buf, len, "unknown");
}

int tf__h5_put_header(hid_t f, const char *path, const char *format) {
  char created[32];
  tf__h5_now_iso(created, sizeof created);
  int st = tf__h5_attr_put_str(f, path, "format", format);
  if (st == TF_OK) st = tf__h5_attr_put_i64(f, path, "format_version", TF_H5_FORMAT_VERSION);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "tradeflow_version", tf_h5_version());
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "created", created);
  return st;
}

int tf__h5_dset_put(hid_t loc, const char *path, const char *name, const char *shown,
                    hid_t filetype, hid_t memtype, int rank, const hsize_t *dims,
                    const void *data, hid_t *keep) {
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = s < 0 ? H5I_INVALID_HID
                  : H5Dcreate2(loc, name, filetype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int st = TF_OK;
  if (d < 0 || H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    st = tf__h5_fail(TF_EIO, "%s: cannot write dataset '%s'", path, shown);
  tf__h5_close(&s);
  if (keep && st == TF_OK) {
    *keep = d;
    return st;
  }
  if (d >= 0 && H5Dclose(d) < 0 && st == TF_OK) /* closing flushes buffered data */
    st = tf__h5_fail(TF_EIO, "%s: cannot write dataset '%s'", path, shown);
  return st;
}

/* ---- atomic files --------------------------------------------------------------------------- */

enum { CORE_INCREMENT = 1 << 20 };

void tf__h5_atomic_abort(tf__h5_atomic *a) {
  if (a->file >= 0) {
    /* HDF5 keeps a file open until its last object is closed. */
    const unsigned kinds =
        H5F_OBJ_LOCAL | H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR;
    ssize_t n = H5Fget_obj_count(a->file, kinds);
    hid_t *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
    if (ids) {
      n = H5Fget_obj_ids(a->file, kinds, (size_t)n, ids);
      for (ssize_t i = 0; i < n; i++) tf__h5_close(&ids[i]);
      free(ids);
    }
    tf__h5_close(&a->file);
  }
  if (a->fd >= 0) {
    close(a->fd);
    unlink(a->tmp);
  }
  a->fd = -1;
  free(a->path);
  free(a->tmp);
  a->path = a->tmp = NULL;
}

int tf__h5_atomic_begin(tf__h5_atomic *a, const char *path) {
  memset(a, 0, sizeof *a);
  a->file = H5I_INVALID_HID;
  a->fd = -1;
  if (!path || !*path) return tf_error(TF_EINVAL, "HDF5 output: empty path");
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return tf_error(TF_EIO, "%s: is a directory; cannot write a file there", path);
  a->path = tf__h5_dup_str(path);
  a->tmp = tf__h5_tmp_name(path);
  if (!a->path || !a->tmp) {
    tf__h5_atomic_abort(a);
    return tf_error(TF_ENOMEM, "%s: out of memory", path);
  }
  a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (a->fd < 0) {
    int st = tf_error(TF_EIO, "%s: cannot create temporary file '%s': %s", path, a->tmp,
                      strerror(errno));
    tf__h5_atomic_abort(a);
    return st;
  }
  /* The in-memory file gets a name that is not on disk: HDF5 would otherwise open the
   * temporary just created to look at it. */
  const size_t len = strlen(a->tmp) + 8;
  char *mem = malloc(len);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (mem) snprintf(mem, len, "%s.memory", a->tmp);
  if (mem && fapl >= 0 && H5Pset_fapl_core(fapl, CORE_INCREMENT, 0) >= 0)
    a->file = H5Fcreate(mem, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  free(mem);
  if (a->file < 0) {
    int st = tf__h5_fail(TF_EIO, "%s: cannot create an HDF5 file in memory", path);
    tf__h5_close(&fapl);
    tf__h5_atomic_abort(a);
    return st;
  }
  tf__h5_close(&fapl);
  return TF_OK;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int tf__h5_atomic_commit(tf__h5_atomic *a) {
  int st = TF_OK, fd = -1;
  unsigned char *img = NULL;
  ssize_t size = -1;
  /* An object left open would keep parts of the file unwritten in the image. */
  if (H5Fget_obj_count(a->file, H5F_OBJ_LOCAL | H5F_OBJ_DATASET | H5F_OBJ_GROUP |
                                    H5F_OBJ_DATATYPE | H5F_OBJ_ATTR) != 0) {
    st = tf_error(TF_EIO, "%s: internal error: objects still open at commit", a->path);
    goto done;
  }
  if (H5Fflush(a->file, H5F_SCOPE_GLOBAL) >= 0) size = H5Fget_file_image(a->file, NULL, 0);
  img = size > 0 ? malloc((size_t)size) : NULL;
  if (size <= 0 || !img || H5Fget_file_image(a->file, img, (size_t)size) != size) {
    st = size > 0 && !img ? tf_error(TF_ENOMEM, "%s: cannot allocate %zd bytes", a->path, size)
                          : tf__h5_fail(TF_EIO, "%s: cannot assemble the file", a->path);
    goto done;
  }
  tf__h5_close(&a->file); /* frees the in-memory copy before the disk write */
  if (write_all(a->fd, img, (size_t)size) != 0) {
    st = tf_error(TF_EIO, "%s: cannot write '%s': %s", a->path, a->tmp, strerror(errno));
    goto done;
  }
  fd = a->fd;
  a->fd = -1; /* tf_publish closes it */
  st = tf_publish(fd, a->tmp, a->path);
done:
  free(img);
  tf__h5_atomic_abort(a);
  return st;
}
