/* h5io.c — HDF5 checkpoints, sample files and data matrices (serial HDF5, no MPI).
 *
 * Exported: tf_h5_version,
 *           tf_checkpoint_meta_init/clear/set_config/set_f64/set_i64/get_f64/get_i64,
 *           tf_checkpoint_save/load/read_meta/read_config,
 *           tf_sample_writer_open/append/rows/close/abort, tf_samples_write/read/free,
 *           tf_h5_read_matrix, tf_h5_matrix_open/rows/cols/read/close,
 *           tf_h5_has_dataset, tf_h5_list_datasets, tf_h5_free_names.
 * None is collective.  Every exported function that touches HDF5 runs with HDF5's error
 * printing off (tf__h5_quiet_on/off) and reports through tf_error().  The plumbing shared with
 * h5result.c (errors, attribute writers, atomic files) is in h5util.c, declared in h5-impl.h.
 * Defined here for the collective writer of h5par.c (h5-impl.h): tf__h5_sample_dsets,
 * tf__h5_sample_args/prepare/put_attrs/create.
 * Layouts: include/tradeflow/h5io.h and docs/FILES.md.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "h5-impl.h"
#include "tradeflow/h5io.h"

#ifndef TF_VERSION_STRING
#define TF_VERSION_STRING "unknown"
#endif

#ifdef TF_DOUBLE
#define REAL_MEM H5T_NATIVE_DOUBLE
#define REAL_FILE H5T_IEEE_F64LE
#else
#define REAL_MEM H5T_NATIVE_FLOAT
#define REAL_FILE H5T_IEEE_F32LE
#endif

/* About 512 KiB of float64 per chunk: large enough for zlib to work well and for few chunk
 * lookups, small enough for HDF5's default 1 MiB chunk cache. */
enum { CHUNK_ELEMS = 65536, MAX_DEPTH = 64 };

enum { K_INT = 1, K_FLOAT = 2, K_STRING = 4 }; /* accepted type classes */

const char *tf_h5_version(void) { return TF_VERSION_STRING; }

/* ---- HDF5 plumbing (the shared part is in h5util.c) ----------------------------------------- */

static const char *type_str(hid_t t, char *buf, size_t len) {
  const size_t bits = 8 * H5Tget_size(t);
  switch (H5Tget_class(t)) {
  case H5T_INTEGER:
    snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
    break;
  case H5T_FLOAT: snprintf(buf, len, "float%zu", bits); break;
  case H5T_STRING: snprintf(buf, len, "string"); break;
  case H5T_COMPOUND: snprintf(buf, len, "compound"); break;
  case H5T_ENUM: snprintf(buf, len, "enum"); break;
  case H5T_ARRAY: snprintf(buf, len, "array"); break;
  case H5T_VLEN: snprintf(buf, len, "vlen"); break;
  case H5T_BITFIELD: snprintf(buf, len, "bitfield"); break;
  case H5T_OPAQUE: snprintf(buf, len, "opaque"); break;
  case H5T_REFERENCE: snprintf(buf, len, "reference"); break;
  default: snprintf(buf, len, "unknown type"); break;
  }
  return buf;
}

static int class_ok(hid_t t, int kinds) {
  switch (H5Tget_class(t)) {
  case H5T_INTEGER: return (kinds & K_INT) != 0;
  case H5T_FLOAT: return (kinds & K_FLOAT) != 0;
  case H5T_STRING: return (kinds & K_STRING) != 0;
  default: return 0;
  }
}

static const char *kinds_str(int kinds) {
  switch (kinds) {
  case K_INT: return "an integer type";
  case K_FLOAT: return "a floating-point type";
  case K_STRING: return "a string";
  default: return "an integer or floating-point type";
  }
}

static const char *dims_str(int rank, const hsize_t *dims, char *buf, size_t len) {
  size_t off = (size_t)snprintf(buf, len, "(");
  for (int i = 0; i < rank && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, i ? ", %llu" : "%llu",
                            (unsigned long long)dims[i]);
  if (off < len) snprintf(buf + off, len - off, ")");
  return buf;
}

static double *alloc_doubles(int64_t n) {
  if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof(double)) return NULL;
  return malloc((size_t)(n ? n : 1) * sizeof(double));
}

/* H5Lexists fails, rather than answering 0, when an intermediate group is missing or is a
 * dataset, so every prefix of `name` is tested in turn. */
static int link_exists(hid_t loc, const char *name) {
  const size_t len = strlen(name);
  char *buf = malloc(len + 1);
  if (!buf) return 0;
  int ok = 1;
  for (size_t i = 1; ok && i <= len; i++) {
    if (i < len && name[i] != '/') continue;
    if (name[i - 1] == '/') continue; /* "//" or a trailing '/' */
    memcpy(buf, name, i);
    buf[i] = '\0';
    ok = H5Lexists(loc, buf, H5P_DEFAULT) > 0;
  }
  free(buf);
  return ok;
}

/* An open dataset with its extent and type class. */
typedef struct {
  hid_t id;
  int rank;
  hsize_t dims[H5S_MAX_RANK];
  char type[32];
} dset;

/* Open dataset `name` (relative to loc; `shown` is how messages name it), require a type of
 * one of `kinds`, and read its extent.  On error d->id < 0 and the message is set. */
static int dset_open(hid_t loc, const char *path, const char *name, const char *shown, int kinds,
                     dset *d) {
  d->id = H5I_INVALID_HID;
  hid_t obj = H5I_INVALID_HID, t = H5I_INVALID_HID, s = H5I_INVALID_HID;
  int st = TF_OK;
  const char *bare = name;
  while (*bare == '/') bare++;
  if (!*bare || !link_exists(loc, name))
    return tf_error(TF_EFORMAT, "%s: dataset '%s' not found", path, shown);
  obj = H5Oopen(loc, name, H5P_DEFAULT);
  if (obj < 0) return tf__h5_fail(TF_EFORMAT, "%s: cannot open '%s'", path, shown);
  if (H5Iget_type(obj) != H5I_DATASET) {
    st = tf_error(TF_EFORMAT, "%s: '%s' is a group or named type, not a dataset", path, shown);
    goto done;
  }
  t = H5Dget_type(obj);
  s = H5Dget_space(obj);
  if (t < 0 || s < 0) {
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot read the type or extent of dataset '%s'", path, shown);
    goto done;
  }
  type_str(t, d->type, sizeof d->type);
  if (!class_ok(t, kinds)) {
    st = tf_error(TF_EFORMAT, "%s: dataset '%s': expected %s, found %s", path, shown,
                  kinds_str(kinds), d->type);
    goto done;
  }
  d->rank = H5Sget_simple_extent_ndims(s);
  if (d->rank < 0 || H5Sget_simple_extent_dims(s, d->dims, NULL) < 0) {
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot read the extent of dataset '%s'", path, shown);
    goto done;
  }
  d->id = obj;
  obj = H5I_INVALID_HID;
done:
  tf__h5_close(&s);
  tf__h5_close(&t);
  tf__h5_close(&obj);
  return st;
}

/* Parameters and moments are float32 or float64: a narrower type (float16, or a custom one)
 * would load without notice as rounded values. */
static int wide_float(const dset *d, const char *path, const char *shown) {
  if (!strcmp(d->type, "float32") || !strcmp(d->type, "float64")) return TF_OK;
  return tf_error(TF_EFORMAT, "%s: dataset '%s' is %s; checkpoints hold float32 or float64",
                  path, shown, d->type);
}

static int dset_read(const dset *d, hid_t memtype, const char *path, const char *shown,
                     void *out) {
  if (H5Dread(d->id, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    return tf__h5_fail(TF_EFORMAT, "%s: cannot read dataset '%s' (corrupt file?)", path, shown);
  return TF_OK;
}

/* Open for reading, telling "missing", "not HDF5" and "corrupt" apart: HDF5's own message
 * for all three is "unable to open file". */
static int file_open_ro(const char *path, hid_t *f) {
  *f = H5I_INVALID_HID;
  if (!path || !*path) return tf_error(TF_EINVAL, "HDF5 file: empty path");
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    const int e = errno;
    if (fd >= 0) close(fd);
    return tf_error(TF_EIO, "%s: cannot open: %s", path, strerror(e));
  }
  close(fd);
  if (S_ISDIR(sb.st_mode)) return tf_error(TF_EIO, "%s: is a directory, not a file", path);
  const htri_t is = H5Fis_hdf5(path);
  if (is == 0)
    return tf_error(TF_EFORMAT, "%s: not an HDF5 file%s", path, sb.st_size ? "" : " (empty)");
  if (is < 0) return tf__h5_fail(TF_EIO, "%s: cannot read the file", path);
  *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (*f < 0) {
    char cause[200];
    tf__h5_cause(cause, sizeof cause);
    if (strstr(cause, "lock"))
      return tf_error(TF_EIO, "%s: cannot lock the file (HDF5: %s); on file systems without "
                      "locking set HDF5_USE_FILE_LOCKING=FALSE", path, cause);
    return tf__h5_fail(TF_EFORMAT, "%s: cannot open HDF5 file (truncated or corrupt?)", path);
  }
  return TF_OK;
}

/* ---- attributes ------------------------------------------------------------------------------ */

static int has_attr(hid_t obj, const char *name) { return H5Aexists(obj, name) > 0; }

/* Open attribute `name` on obj (`where` names obj in messages) and check its class and that it
 * holds between 1 and max_n elements (*n receives the count). */
static int attr_open(hid_t obj, const char *path, const char *where, const char *name, int kinds,
                     hssize_t max_n, hid_t *a, hid_t *t, hssize_t *n) {
  hid_t s = H5I_INVALID_HID;
  *t = H5I_INVALID_HID;
  *a = H5Aopen(obj, name, H5P_DEFAULT);
  if (*a < 0)
    return tf__h5_fail(TF_EFORMAT, "%s: cannot open attribute '%s' of '%s'", path, name, where);
  *t = H5Aget_type(*a);
  s = H5Aget_space(*a);
  int st = TF_OK;
  char ty[32];
  if (*t < 0 || s < 0) {
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot read attribute '%s' of '%s'", path, name, where);
  } else if (!class_ok(*t, kinds)) {
    st = tf_error(TF_EFORMAT, "%s: attribute '%s' of '%s': expected %s, found %s", path, name,
                  where, kinds_str(kinds), type_str(*t, ty, sizeof ty));
  } else {
    *n = H5Sget_simple_extent_npoints(s);
    if (*n < 1 || *n > max_n)
      st = tf_error(TF_EFORMAT,
                    "%s: attribute '%s' of '%s': expected %s%lld value%s, found %lld", path,
                    name, where, max_n > 1 ? "1 to " : "", (long long)max_n, max_n > 1 ? "s" : "",
                    (long long)*n);
  }
  tf__h5_close(&s);
  if (st != TF_OK) {
    tf__h5_close(t);
    tf__h5_close(a);
  }
  return st;
}

/* Numeric attribute (max_n values of memtype into out; *n_out may be NULL when max_n == 1). */
static int attr_get_num(hid_t obj, const char *path, const char *where, const char *name,
                        int kinds, hid_t memtype, hssize_t max_n, void *out, hssize_t *n_out) {
  hid_t a, t;
  hssize_t n = 0;
  int st = attr_open(obj, path, where, name, kinds, max_n, &a, &t, &n);
  if (st != TF_OK) return st;
  if (H5Aread(a, memtype, out) < 0)
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot read attribute '%s' of '%s'", path, name, where);
  else if (n_out)
    *n_out = n;
  tf__h5_close(&t);
  tf__h5_close(&a);
  return st;
}

/* String attribute, variable or fixed length (h5py writes both), into a malloc'd copy. */
static int attr_get_str(hid_t obj, const char *path, const char *where, const char *name,
                        char **out) {
  hid_t a, t, mt = H5I_INVALID_HID;
  hssize_t n = 0;
  *out = NULL;
  int st = attr_open(obj, path, where, name, K_STRING, 1, &a, &t, &n);
  if (st != TF_OK) return st;
  mt = H5Tcopy(H5T_C_S1);
  /* HDF5 converts between strings of one character set only, so read in the file's. */
  if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0) {
    st = tf__h5_fail(TF_EFORMAT, "%s: attribute '%s' of '%s': bad string type", path, name, where);
  } else if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0) {
      st = tf__h5_fail(TF_EFORMAT, "%s: cannot read attribute '%s' of '%s'", path, name, where);
    } else {
      *out = tf__h5_dup_str(s);
      if (s) H5free_memory(s);
      if (!*out) st = tf_error(TF_ENOMEM, "%s: attribute '%s': out of memory", path, name);
    }
  } else {
    /* In the file's own type: converting h5py's null-padded strings to C's null-terminated
     * ones would drop the last character of a string that fills its field. */
    const size_t sz = H5Tget_size(t);
    char *s = calloc(sz + 1, 1);
    tf__h5_close(&mt);
    if (!s) {
      st = tf_error(TF_ENOMEM, "%s: attribute '%s': out of memory", path, name);
    } else if ((mt = H5Tcopy(t)) < 0 || H5Aread(a, mt, s) < 0) {
      st = tf__h5_fail(TF_EFORMAT, "%s: cannot read attribute '%s' of '%s'", path, name, where);
      free(s);
    } else {
      for (size_t k = strlen(s); H5Tget_strpad(t) == H5T_STR_SPACEPAD && k > 0 && s[k - 1] == ' ';)
        s[--k] = '\0';
      *out = s;
    }
  }
  tf__h5_close(&mt);
  tf__h5_close(&t);
  tf__h5_close(&a);
  return st;
}

/* Optional string attribute into a fixed buffer (truncated); "" if absent. */
static int attr_get_str_buf(hid_t obj, const char *path, const char *name, char *buf, size_t len) {
  buf[0] = '\0';
  if (!has_attr(obj, name)) return TF_OK;
  char *s;
  int st = attr_get_str(obj, path, "/", name, &s);
  if (st != TF_OK) return st;
  snprintf(buf, len, "%s", s);
  free(s);
  return TF_OK;
}

static int attr_put_f64(hid_t obj, const char *path, const char *name, double v) {
  return tf__h5_attr_put(obj, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &v);
}

static int check_format(hid_t f, const char *path, const char *format) {
  if (!has_attr(f, "format"))
    return tf_error(TF_EFORMAT, "%s: not a %s file (no root attribute 'format')", path, format);
  char *found;
  int st = attr_get_str(f, path, "/", "format", &found);
  if (st != TF_OK) return st;
  if (strcmp(found, format) != 0)
    st = tf_error(TF_EFORMAT, "%s: attribute 'format': expected '%s', found '%s'", path, format,
                  found);
  free(found);
  if (st != TF_OK) return st;
  int64_t v = 0;
  if (!has_attr(f, "format_version"))
    return tf_error(TF_EFORMAT, "%s: root attribute 'format_version' missing", path);
  st = attr_get_num(f, path, "/", "format_version", K_INT, H5T_NATIVE_INT64, 1, &v, NULL);
  if (st != TF_OK) return st;
  if (v < 1 || v > TF_H5_FORMAT_VERSION)
    return tf_error(TF_EUNSUP, "%s: format_version %lld not supported (this build reads 1 to %d)",
                    path, (long long)v, TF_H5_FORMAT_VERSION);
  return TF_OK;
}

/* ---- datasets (write) ------------------------------------------------------------------------ */

/* offset: NULL, or an int64 attribute "offset" to attach. */
static int dset_put(hid_t loc, const char *path, const char *name, const char *shown,
                    hid_t filetype, hid_t memtype, int rank, const hsize_t *dims,
                    const void *data, const int64_t *offset) {
  hid_t d = H5I_INVALID_HID;
  int st = tf__h5_dset_put(loc, path, name, shown, filetype, memtype, rank, dims, data,
                           offset ? &d : NULL);
  if (st == TF_OK && offset) st = tf__h5_attr_put_i64(d, path, "offset", *offset);
  if (d >= 0 && H5Dclose(d) < 0 && st == TF_OK) /* closing flushes buffered data */
    st = tf__h5_fail(TF_EIO, "%s: cannot write dataset '%s'", path, shown);
  return st;
}

static int group_new(hid_t f, const char *path, const char *name, hid_t *g) {
  *g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (*g < 0) return tf__h5_fail(TF_EIO, "%s: cannot create group '%s'", path, name);
  return TF_OK;
}

/* ---- checkpoint meta ------------------------------------------------------------------------- */

void tf_checkpoint_meta_init(tf_checkpoint_meta *m) {
  memset(m, 0, sizeof *m);
  m->best_val_loss = INFINITY;
}

void tf_checkpoint_meta_clear(tf_checkpoint_meta *m) {
  if (!m) return;
  free(m->config_text);
  tf_checkpoint_meta_init(m);
}

int tf_checkpoint_meta_set_config(tf_checkpoint_meta *m, const char *text) {
  char *copy = NULL;
  if (text && !(copy = tf__h5_dup_str(text)))
    return tf_error(TF_ENOMEM, "checkpoint meta: cannot copy %zu bytes of config text",
                    strlen(text));
  free(m->config_text);
  m->config_text = copy;
  return TF_OK;
}

static int key_ok(const char *key) {
  if (!key || !*key || strlen(key) >= TF_CHECKPOINT_KEY_LEN) return 0;
  for (const char *p = key; *p; p++)
    if (!isprint((unsigned char)*p)) return 0;
  return 1;
}

static tf_meta_entry *meta_find(const tf_checkpoint_meta *m, const char *key) {
  for (int i = 0; i < m->n_extra && i < TF_CHECKPOINT_MAX_EXTRA; i++)
    if (!strcmp(m->extra[i].key, key)) return (tf_meta_entry *)&m->extra[i];
  return NULL;
}

static int meta_set(tf_checkpoint_meta *m, const char *key, tf_meta_kind kind, double f,
                    int64_t i) {
  if (!key_ok(key))
    return tf_error(TF_EINVAL, "checkpoint meta: key '%s' must have 1 to %d printable characters",
                    key ? key : "(null)", TF_CHECKPOINT_KEY_LEN - 1);
  tf_meta_entry *e = meta_find(m, key);
  if (!e) {
    if (m->n_extra < 0 || m->n_extra >= TF_CHECKPOINT_MAX_EXTRA)
      return tf_error(TF_ERANGE, "checkpoint meta: cannot add '%s': all %d extra slots in use",
                      key, TF_CHECKPOINT_MAX_EXTRA);
    e = &m->extra[m->n_extra++];
    memset(e, 0, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
  }
  e->kind = kind;
  e->f64 = kind == TF_META_F64 ? f : 0.0;
  e->i64 = kind == TF_META_I64 ? i : 0;
  return TF_OK;
}

int tf_checkpoint_meta_set_f64(tf_checkpoint_meta *m, const char *key, double value) {
  return meta_set(m, key, TF_META_F64, value, 0);
}

int tf_checkpoint_meta_set_i64(tf_checkpoint_meta *m, const char *key, int64_t value) {
  return meta_set(m, key, TF_META_I64, 0.0, value);
}

int tf_checkpoint_meta_get_f64(const tf_checkpoint_meta *m, const char *key, double *value) {
  const tf_meta_entry *e = key ? meta_find(m, key) : NULL;
  if (!e) return tf_error(TF_EINVAL, "checkpoint meta: no key '%s'", key ? key : "(null)");
  *value = e->kind == TF_META_I64 ? (double)e->i64 : e->f64;
  return TF_OK;
}

int tf_checkpoint_meta_get_i64(const tf_checkpoint_meta *m, const char *key, int64_t *value) {
  const tf_meta_entry *e = key ? meta_find(m, key) : NULL;
  if (!e) return tf_error(TF_EINVAL, "checkpoint meta: no key '%s'", key ? key : "(null)");
  if (e->kind != TF_META_I64)
    return tf_error(TF_EINVAL, "checkpoint meta: key '%s' is float64, not int64", key);
  *value = e->i64;
  return TF_OK;
}

/* ---- checkpoint save ------------------------------------------------------------------------- */

static int check_meta(const char *path, const tf_checkpoint_meta *m) {
  if (!memchr(m->model, '\0', sizeof m->model))
    return tf_error(TF_EINVAL, "%s: meta.model is not NUL-terminated within %d bytes", path,
                    TF_CHECKPOINT_KEY_LEN);
  if (m->n_extra < 0 || m->n_extra > TF_CHECKPOINT_MAX_EXTRA)
    return tf_error(TF_EINVAL, "%s: meta.n_extra = %d outside 0..%d", path, m->n_extra,
                    TF_CHECKPOINT_MAX_EXTRA);
  for (int i = 0; i < m->n_extra; i++) {
    if (!key_ok(m->extra[i].key))
      return tf_error(TF_EINVAL, "%s: meta.extra[%d] has an invalid key", path, i);
    for (int j = 0; j < i; j++)
      if (!strcmp(m->extra[i].key, m->extra[j].key))
        return tf_error(TF_EINVAL, "%s: meta.extra key '%s' appears twice", path,
                        m->extra[i].key);
  }
  return TF_OK;
}

static int put_meta(hid_t f, const char *path, const tf_checkpoint_meta *m) {
  int st = tf__h5_put_header(f, path, TF_CHECKPOINT_FORMAT);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "precision", TF_REAL_NAME);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "model", m->model);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "config", m->config_text);
  if (st == TF_OK) st = tf__h5_attr_put_i64(f, path, "step", m->step);
  if (st == TF_OK) st = tf__h5_attr_put_i64(f, path, "skipped_steps", m->skipped_steps);
  if (st == TF_OK) st = tf__h5_attr_put_i64(f, path, "consecutive_skips", m->consecutive_skips);
  if (st == TF_OK)
    st = tf__h5_attr_put(f, path, "rng_seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &m->rng_seed);
  if (st == TF_OK)
    st = tf__h5_attr_put(f, path, "rng_pos", H5T_STD_U64LE, H5T_NATIVE_UINT64,
                         TF_CHECKPOINT_RNG_WORDS, m->rng_pos);
  if (st == TF_OK) st = attr_put_f64(f, path, "best_val_loss", m->best_val_loss);
  if (st != TF_OK) return st;
  hid_t g;
  if ((st = group_new(f, path, "extra", &g)) != TF_OK) return st;
  for (int i = 0; st == TF_OK && i < m->n_extra; i++) {
    const tf_meta_entry *e = &m->extra[i];
    st = e->kind == TF_META_I64 ? tf__h5_attr_put_i64(g, path, e->key, e->i64)
                                : attr_put_f64(g, path, e->key, e->f64);
  }
  tf__h5_close(&g);
  return st;
}

/* ---- what a checkpoint may hold (DESIGN.md section 12) ---------------------------------------
 * Checked on save (a run never writes a checkpoint it could not resume from) and on load
 * (a corrupt or hand-edited file is refused with the object and index named, before anything
 * is copied into the model). */

/* The first index of a[0..n) that is not finite (or, with nonneg, is negative); -1 if none. */
static int64_t first_bad(const double *a, int64_t n, int nonneg) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(a[i]) || (nonneg && a[i] < 0)) return i;
  return -1;
}

/* Parameter i and index k of slab position j (for messages). */
static void slab_where(const tf_params *p, int64_t j, int *i, int64_t *k) {
  *i = 0;
  *k = j;
  for (int t = 0; t < tf_params_count(p); t++) {
    const int64_t off = tf_params_offset(p, t);
    if (j >= off && j < off + tf_params_tensor(p, t)->n) {
      *i = t;
      *k = j - off;
      return;
    }
  }
}

/* Every parameter value finite; slab in the params' layout. */
static int check_params_finite(const char *path, const tf_params *p, const tf_real *slab,
                               const char *doing) {
  for (int i = 0; i < tf_params_count(p); i++) {
    const tf_tensor *t = tf_params_tensor(p, i);
    const tf_real *v = slab + tf_params_offset(p, i);
    for (int64_t k = 0; k < t->n; k++)
      if (!isfinite(v[k]))
        return tf_error(TF_ENUMERIC, "%s: %s: /params/%s[%lld] = %g; parameters must be finite",
                        path, doing, tf_params_name(p, i), (long long)k, (double)v[k]);
  }
  return TF_OK;
}

/* Moments m (finite), v (finite, >= 0) and the average (finite, may be NULL), n each in the
 * params' layout. */
static int check_moments(const char *path, const tf_params *p, const double *m, const double *v,
                         const double *ema, int64_t n, const char *doing) {
  const double *arr[3] = {m, v, ema};
  static const char *const names[3] = {"/optim/m", "/optim/v", "/optim/ema"};
  for (int a = 0; a < 3; a++) {
    if (!arr[a]) continue;
    const int64_t j = first_bad(arr[a], n, a == 1);
    if (j < 0) continue;
    int i;
    int64_t k;
    slab_where(p, j, &i, &k);
    return tf_error(TF_ENUMERIC, "%s: %s: %s[%lld] = %g (parameter %s[%lld]); %s", path, doing,
                    names[a], (long long)j, arr[a][j], tf_params_name(p, i), (long long)k,
                    a == 1 ? "second moments must be finite and >= 0" : "it must be finite");
  }
  return TF_OK;
}

/* Counters that a run can have reached: 0 <= consecutive <= skipped <= step, and the
 * optimizer's step count (if any) >= 0 (it drives Adam's bias correction: a negative one gives
 * NaN updates). */
static int check_counters(const char *path, const tf_checkpoint_meta *m, const int64_t *steps) {
  if (m->step < 0 || m->skipped_steps < 0 || m->consecutive_skips < 0 ||
      m->skipped_steps > m->step || m->consecutive_skips > m->skipped_steps)
    return tf_error(TF_EFORMAT, "%s: counters step = %lld, skipped_steps = %lld, "
                    "consecutive_skips = %lld are impossible (need 0 <= consecutive_skips <= "
                    "skipped_steps <= step)", path, (long long)m->step,
                    (long long)m->skipped_steps, (long long)m->consecutive_skips);
  if (steps && *steps < 0)
    return tf_error(TF_EFORMAT, "%s: attribute 'steps' of '/optim' = %lld; an optimizer's "
                    "step count is >= 0", path, (long long)*steps);
  return TF_OK;
}

static int ckpt_save(const char *path, const tf_params *p, const tf_optim *o,
                     const tf_checkpoint_meta *meta) {
  if (!path || !*path) return tf_error(TF_EINVAL, "tf_checkpoint_save: empty path");
  if (!p) return tf_error(TF_EINVAL, "%s: tf_checkpoint_save: params is NULL", path);
  const int np = tf_params_count(p);
  for (int i = 0; i < np; i++) {
    const char *name = tf_params_name(p, i);
    if (!tf_params_tensor(p, i)->data)
      return tf_error(TF_EINVAL, "%s: parameters are not finalized", path);
    if (strchr(name, '/') || !strcmp(name, "."))
      return tf_error(TF_EINVAL, "%s: parameter name '%s' cannot be an HDF5 dataset name", path,
                      name);
  }
  if (o && tf_optim_size(o) != tf_params_size(p))
    return tf_error(TF_EINVAL, "%s: optimizer holds %lld moments, the parameters %lld values",
                    path, (long long)tf_optim_size(o), (long long)tf_params_size(p));
  tf_checkpoint_meta defaults;
  if (!meta) {
    tf_checkpoint_meta_init(&defaults);
    meta = &defaults;
  }
  int st = check_meta(path, meta);
  /* a checkpoint is a state a run can continue from: never NaN over a good file */
  const char *doing = "refusing to write this checkpoint (the previous one, if any, is kept)";
  if (st == TF_OK) st = check_counters(path, meta, NULL);
  if (st == TF_OK) st = check_params_finite(path, p, tf_params_values((tf_params *)p), doing);
  if (st == TF_OK && o) {
    tf_optim *oo = (tf_optim *)o;
    const int64_t steps = tf_optim_steps(o);
    st = check_moments(path, p, tf_optim_m(oo), tf_optim_v(oo), tf_optim_ema(oo),
                       tf_optim_size(o), doing);
    if (st == TF_OK && steps < 0)
      st = tf_error(TF_EINVAL, "%s: %s: the optimizer's step count is %lld", path, doing,
                    (long long)steps);
  }
  if (st != TF_OK) return st;

  tf__h5_atomic a;
  if ((st = tf__h5_atomic_begin(&a, path)) != TF_OK) return st;
  hid_t g = H5I_INVALID_HID;
  st = put_meta(a.file, path, meta);
  if (st == TF_OK) st = group_new(a.file, path, "params", &g);
  for (int i = 0; st == TF_OK && i < np; i++) {
    const tf_tensor *t = tf_params_tensor(p, i);
    hsize_t dims[TF_MAX_DIM];
    for (int k = 0; k < t->ndim; k++) dims[k] = (hsize_t)t->shape[k];
    char shown[96];
    snprintf(shown, sizeof shown, "/params/%s", tf_params_name(p, i));
    const int64_t off = tf_params_offset(p, i);
    st = dset_put(g, path, tf_params_name(p, i), shown, REAL_FILE, REAL_MEM, t->ndim, dims,
                  t->data, &off);
  }
  tf__h5_close(&g);
  if (st == TF_OK && o) {
    /* optim.h's accessors take a non-const optimizer; nothing is modified here. */
    tf_optim *oo = (tf_optim *)o;
    const hsize_t n = (hsize_t)tf_optim_size(o);
    st = group_new(a.file, path, "optim", &g);
    if (st == TF_OK)
      st = dset_put(g, path, "m", "/optim/m", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n,
                    tf_optim_m(oo), NULL);
    if (st == TF_OK)
      st = dset_put(g, path, "v", "/optim/v", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n,
                    tf_optim_v(oo), NULL);
    if (st == TF_OK && tf_optim_ema(oo))
      st = dset_put(g, path, "ema", "/optim/ema", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n,
                    tf_optim_ema(oo), NULL);
    if (st == TF_OK) st = tf__h5_attr_put_i64(g, path, "steps", tf_optim_steps(o));
    tf__h5_close(&g);
  }
  if (st != TF_OK) {
    tf__h5_atomic_abort(&a);
    return st;
  }
  return tf__h5_atomic_commit(&a);
}

int tf_checkpoint_save(const char *path, const tf_params *params, const tf_optim *optim,
                       const tf_checkpoint_meta *meta) {
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = ckpt_save(path, params, optim, meta);
  tf__h5_quiet_off(q);
  return st;
}


/* ---- checkpoint load ------------------------------------------------------------------------- */

typedef struct {
  const char *path;
  tf_checkpoint_meta *m;
  int st;
} extra_ctx;

static herr_t extra_cb(hid_t loc, const char *name, const H5A_info_t *info, void *p) {
  (void)info;
  extra_ctx *c = p;
  hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID;
  hssize_t n;
  if (c->m->n_extra >= TF_CHECKPOINT_MAX_EXTRA) {
    c->st = tf_error(TF_EFORMAT, "%s: group '/extra' holds more than %d attributes", c->path,
                     TF_CHECKPOINT_MAX_EXTRA);
    return -1;
  }
  if (!key_ok(name)) {
    c->st = tf_error(TF_EFORMAT, "%s: '/extra' attribute name '%s' is not a valid key", c->path,
                     name);
    return -1;
  }
  c->st = attr_open(loc, c->path, "/extra", name, K_INT | K_FLOAT, 1, &a, &t, &n);
  if (c->st != TF_OK) return -1;
  const int is_int = H5Tget_class(t) == H5T_INTEGER;
  tf__h5_close(&t);
  tf__h5_close(&a);
  tf_meta_entry *e = &c->m->extra[c->m->n_extra];
  memset(e, 0, sizeof *e);
  snprintf(e->key, sizeof e->key, "%s", name);
  e->kind = is_int ? TF_META_I64 : TF_META_F64;
  c->st = attr_get_num(loc, c->path, "/extra", name, is_int ? K_INT : K_FLOAT,
                       is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, 1,
                       is_int ? (void *)&e->i64 : (void *)&e->f64, NULL);
  if (c->st != TF_OK) return -1;
  c->m->n_extra++;
  return 0;
}

/* Attributes other than format/format_version are optional, so a checkpoint assembled by hand
 * (e.g. from PyTorch weights with h5py) needs only those two and /params. */
static int read_meta(hid_t f, const char *path, tf_checkpoint_meta *m) {
  int st = check_format(f, path, TF_CHECKPOINT_FORMAT);
  if (st == TF_OK)
    st = attr_get_str_buf(f, path, "tradeflow_version", m->version, sizeof m->version);
  if (st == TF_OK) st = attr_get_str_buf(f, path, "precision", m->precision, sizeof m->precision);
  if (st == TF_OK) st = attr_get_str_buf(f, path, "created", m->created, sizeof m->created);
  if (st != TF_OK) return st;
  char *s = NULL;
  if (has_attr(f, "model")) {
    if ((st = attr_get_str(f, path, "/", "model", &s)) != TF_OK) return st;
    if (strlen(s) >= sizeof m->model)
      st = tf_error(TF_EFORMAT, "%s: attribute 'model' longer than %d characters", path,
                    TF_CHECKPOINT_KEY_LEN - 1);
    else
      snprintf(m->model, sizeof m->model, "%s", s);
    free(s);
    if (st != TF_OK) return st;
  }
  if (has_attr(f, "config") && (st = attr_get_str(f, path, "/", "config", &m->config_text)))
    return st;
  static const char *const ints[3] = {"step", "skipped_steps", "consecutive_skips"};
  int64_t *const dst[3] = {&m->step, &m->skipped_steps, &m->consecutive_skips};
  for (int i = 0; i < 3; i++)
    if (has_attr(f, ints[i]) &&
        (st = attr_get_num(f, path, "/", ints[i], K_INT, H5T_NATIVE_INT64, 1, dst[i], NULL)))
      return st;
  if (has_attr(f, "rng_seed") &&
      (st = attr_get_num(f, path, "/", "rng_seed", K_INT, H5T_NATIVE_UINT64, 1, &m->rng_seed,
                         NULL)))
    return st;
  if (has_attr(f, "rng_pos")) {
    hssize_t n;
    /* a shorter array (an older writer) leaves the remaining positions 0 */
    st = attr_get_num(f, path, "/", "rng_pos", K_INT, H5T_NATIVE_UINT64,
                      TF_CHECKPOINT_RNG_WORDS, m->rng_pos, &n);
    if (st != TF_OK) return st;
  }
  if (has_attr(f, "best_val_loss") &&
      (st = attr_get_num(f, path, "/", "best_val_loss", K_INT | K_FLOAT, H5T_NATIVE_DOUBLE, 1,
                         &m->best_val_loss, NULL)))
    return st;
  if (link_exists(f, "extra")) {
    hid_t g = H5Gopen2(f, "extra", H5P_DEFAULT);
    if (g < 0) return tf__h5_fail(TF_EFORMAT, "%s: '/extra' is not a group", path);
    extra_ctx c = {path, m, TF_OK};
    hsize_t idx = 0;
    herr_t r = H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, extra_cb, &c);
    if (r < 0 && c.st == TF_OK) st = tf__h5_fail(TF_EFORMAT, "%s: cannot list '/extra'", path);
    else st = c.st;
    tf__h5_close(&g);
  }
  return st;
}

static int open_meta(const char *path, tf_checkpoint_meta *m, hid_t *f) {
  tf_checkpoint_meta_init(m);
  int st = file_open_ro(path, f);
  if (st == TF_OK) st = read_meta(*f, path, m);
  if (st != TF_OK) {
    tf_checkpoint_meta_clear(m);
    tf__h5_close(f);
  }
  return st;
}

/* Every parameter present with its shape; nothing else in /params.  Values go to `slab`
 * (tf_params_size elements, the params' layout); file_off[i] receives the slab offset the
 * writer had for parameter i (its "offset" attribute; the model's own if absent). */
static int load_params(hid_t f, const char *path, const tf_params *p, tf_real *slab,
                       int64_t *file_off) {
  if (!link_exists(f, "params"))
    return tf_error(TF_EFORMAT, "%s: group '/params' not found", path);
  hid_t g = H5Gopen2(f, "params", H5P_DEFAULT);
  if (g < 0) return tf__h5_fail(TF_EFORMAT, "%s: '/params' is not a group", path);
  int st = TF_OK;
  const int np = tf_params_count(p);
  for (int i = 0; st == TF_OK && i < np; i++) {
    const tf_tensor *t = tf_params_tensor(p, i);
    const char *name = tf_params_name(p, i);
    char shown[96], want[96], found[96];
    snprintf(shown, sizeof shown, "/params/%s", name);
    tf_shape_str(t, want, sizeof want);
    if (!link_exists(g, name)) {
      st = tf_error(TF_EFORMAT, "%s: dataset '%s' not found (the model expects shape %s)", path,
                    shown, want);
      break;
    }
    dset d;
    if ((st = dset_open(g, path, name, shown, K_FLOAT, &d)) != TF_OK) break;
    if ((st = wide_float(&d, path, shown)) != TF_OK) {
      tf__h5_close(&d.id);
      break;
    }
    int same = d.rank == t->ndim;
    for (int k = 0; same && k < t->ndim; k++) same = d.dims[k] == (hsize_t)t->shape[k];
    if (!same)
      st = tf_error(TF_EFORMAT, "%s: dataset '%s' has shape %s, the model expects %s", path,
                    shown, dims_str(d.rank, d.dims, found, sizeof found), want);
    else
      st = dset_read(&d, REAL_MEM, path, shown, slab + tf_params_offset(p, i));
    file_off[i] = tf_params_offset(p, i);
    if (st == TF_OK && has_attr(d.id, "offset"))
      st = attr_get_num(d.id, path, shown, "offset", K_INT, H5T_NATIVE_INT64, 1, &file_off[i],
                        NULL);
    tf__h5_close(&d.id);
  }
  H5G_info_t gi;
  memset(&gi, 0, sizeof gi);
  if (st == TF_OK && H5Gget_info(g, &gi) < 0)
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot list '/params'", path);
  for (hsize_t i = 0; st == TF_OK && i < gi.nlinks; i++) {
    ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    char *name = len < 0 ? NULL : malloc((size_t)len + 1);
    if (!name) {
      st = len < 0 ? tf__h5_fail(TF_EFORMAT, "%s: cannot list '/params'", path)
                   : tf_error(TF_ENOMEM, "%s: out of memory", path);
      break;
    }
    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, (size_t)len + 1, H5P_DEFAULT);
    if (!tf_params_find(p, name))
      st = tf_error(TF_EFORMAT, "%s: '/params/%s' is in the file but not a parameter of the model "
                    "(file has %llu entries, model %d)",
                    path, name, (unsigned long long)gi.nlinks, np);
    free(name);
  }
  tf__h5_close(&g);
  return st;
}

static int load_optim(hid_t f, const char *path, const tf_optim *o, double *m, double *v,
                      int64_t *steps) {
  if (!link_exists(f, "optim"))
    return tf_error(TF_EFORMAT, "%s: group '/optim' not found (the checkpoint holds no "
                    "optimizer state; pass optim = NULL to load parameters only)", path);
  hid_t g = H5Gopen2(f, "optim", H5P_DEFAULT);
  if (g < 0) return tf__h5_fail(TF_EFORMAT, "%s: '/optim' is not a group", path);
  const int64_t n = tf_optim_size(o);
  int st = TF_OK;
  static const char *const names[2] = {"m", "v"};
  double *const out[2] = {m, v};
  for (int k = 0; st == TF_OK && k < 2; k++) {
    char shown[16], found[64];
    snprintf(shown, sizeof shown, "/optim/%s", names[k]);
    dset d;
    if ((st = dset_open(g, path, names[k], shown, K_FLOAT, &d)) != TF_OK) break;
    if ((st = wide_float(&d, path, shown)) != TF_OK) {
      tf__h5_close(&d.id);
      break;
    }
    if (d.rank != 1 || d.dims[0] != (hsize_t)n)
      st = tf_error(TF_EFORMAT, "%s: dataset '%s' has shape %s, the optimizer expects (%lld)",
                    path, shown, dims_str(d.rank, d.dims, found, sizeof found), (long long)n);
    else
      st = dset_read(&d, H5T_NATIVE_DOUBLE, path, shown, out[k]);
    tf__h5_close(&d.id);
  }
  *steps = 0;
  if (st == TF_OK && has_attr(g, "steps"))
    st = attr_get_num(g, path, "/optim", "steps", K_INT, H5T_NATIVE_INT64, 1, steps, NULL);
  tf__h5_close(&g);
  return st;
}

/* /optim/ema, the writer's parameter average in its slab layout, into a malloc'd *out (NULL
 * and TF_OK when the file has none); *n its length. */
static int read_ema(hid_t f, const char *path, double **out, int64_t *n) {
  *out = NULL;
  *n = 0;
  if (!link_exists(f, "optim")) return TF_OK;
  hid_t g = H5Gopen2(f, "optim", H5P_DEFAULT);
  if (g < 0) return tf__h5_fail(TF_EFORMAT, "%s: '/optim' is not a group", path);
  int st = TF_OK;
  if (link_exists(g, "ema")) {
    dset d;
    char found[64];
    if ((st = dset_open(g, path, "ema", "/optim/ema", K_FLOAT, &d)) == TF_OK) {
      if ((st = wide_float(&d, path, "/optim/ema")) != TF_OK)
        ;
      else if (d.rank != 1)
        st = tf_error(TF_EFORMAT, "%s: dataset '/optim/ema' has shape %s, expected (n)", path,
                      dims_str(d.rank, d.dims, found, sizeof found));
      else if (!(*out = alloc_doubles((int64_t)d.dims[0])))
        st = tf_error(TF_ENOMEM, "%s: cannot allocate %lld values for '/optim/ema'", path,
                      (long long)d.dims[0]);
      else if ((st = dset_read(&d, H5T_NATIVE_DOUBLE, path, "/optim/ema", *out)) == TF_OK)
        *n = (int64_t)d.dims[0];
      tf__h5_close(&d.id);
    }
  }
  tf__h5_close(&g);
  if (st != TF_OK) {
    free(*out);
    *out = NULL;
  }
  return st;
}

/* The writer's offsets: non-negative, and no two tensors sharing slab positions (the moments
 * and the average are read through them). */
static int check_offsets(const char *path, const tf_params *p, const int64_t *file_off) {
  const int np = tf_params_count(p);
  for (int i = 0; i < np; i++) {
    const int64_t a0 = file_off[i], a1 = a0 + tf_params_tensor(p, i)->n;
    if (a0 < 0 || a1 < a0)
      return tf_error(TF_EFORMAT, "%s: attribute 'offset' of '/params/%s' = %lld is negative",
                      path, tf_params_name(p, i), (long long)a0);
    for (int j = 0; j < i; j++) {
      const int64_t b0 = file_off[j], b1 = b0 + tf_params_tensor(p, j)->n;
      if (a0 < b1 && b0 < a1)
        return tf_error(TF_EFORMAT, "%s: attributes 'offset' of '/params/%s' (%lld, %lld values) "
                        "and '/params/%s' (%lld, %lld values) overlap", path,
                        tf_params_name(p, i), (long long)a0, (long long)(a1 - a0),
                        tf_params_name(p, j), (long long)b0, (long long)(b1 - b0));
    }
  }
  return TF_OK;
}

/* Tensor i of the model at file offset file_off[i] must lie inside a writer's slab of n. */
static int check_span(const char *path, const tf_params *p, const int64_t *file_off, int i,
                      int64_t n, const char *what) {
  const int64_t len = tf_params_tensor(p, i)->n, src = file_off[i];
  if (src < 0 || src > n - len)
    return tf_error(TF_EFORMAT, "%s: attribute 'offset' of '/params/%s' = %lld lies outside "
                    "the %lld %s", path, tf_params_name(p, i), (long long)src, (long long)n,
                    what);
  return TF_OK;
}

static int ckpt_load(const char *path, tf_params *p, tf_optim *o, int averaged, int *used,
                     tf_checkpoint_meta *meta_out) {
  if (!path || !*path) return tf_error(TF_EINVAL, "tf_checkpoint_load: empty path");
  if (!p) return tf_error(TF_EINVAL, "%s: tf_checkpoint_load: params is NULL", path);
  const int np = tf_params_count(p);
  if (np > 0 && !tf_params_tensor(p, 0)->data)
    return tf_error(TF_EINVAL, "%s: tf_checkpoint_load: parameters are not finalized", path);
  tf_checkpoint_meta m;
  hid_t f;
  int st = open_meta(path, &m, &f);
  if (st != TF_OK) return st;
  /* Read into scratch first, so that a failure half-way leaves the model as it was. */
  const int64_t size = tf_params_size(p), on = o ? tf_optim_size(o) : 0;
  tf_real *slab = calloc((size_t)(size ? size : 1), sizeof *slab);
  double *mv = o ? alloc_doubles(4 * on) : NULL; /* file layout, then the model's */
  int64_t *file_off = malloc((size_t)(np ? np : 1) * sizeof *file_off), steps = 0;
  if (!slab || (o && !mv) || !file_off)
    st = tf_error(TF_ENOMEM, "%s: cannot allocate %lld values for loading", path,
                  (long long)(size + 4 * on));
  if (st == TF_OK) st = load_params(f, path, p, slab, file_off);
  if (st == TF_OK) st = check_offsets(path, p, file_off);
  if (st == TF_OK && o) st = load_optim(f, path, o, mv, mv + on, &steps);
  if (st == TF_OK) st = check_counters(path, &m, o ? &steps : NULL);
  /* the average: for a run that continues it (o keeps one), or as the weights to use */
  double *ev = NULL, *em = NULL;
  int64_t en = 0;
  if (st == TF_OK && ((o && tf_optim_ema(o)) || averaged)) st = read_ema(f, path, &ev, &en);
  tf__h5_close(&f);
  if (st == TF_OK && ev && o && tf_optim_ema(o)) {
    if (!(em = alloc_doubles(on)))
      st = tf_error(TF_ENOMEM, "%s: cannot allocate %lld values for loading", path,
                    (long long)on);
    else
      memset(em, 0, (size_t)on * sizeof *em);
    for (int i = 0; st == TF_OK && i < np; i++)
      if ((st = check_span(path, p, file_off, i, en, "averaged parameters")) == TF_OK)
        memcpy(em + tf_params_offset(p, i), ev + file_off[i],
               (size_t)tf_params_tensor(p, i)->n * sizeof *em);
  }
  if (st == TF_OK && ev && averaged) {
    for (int i = 0; st == TF_OK && i < np; i++)
      if ((st = check_span(path, p, file_off, i, en, "averaged parameters")) == TF_OK)
        for (int64_t j = 0; j < tf_params_tensor(p, i)->n; j++)
          slab[tf_params_offset(p, i) + j] = (tf_real)ev[file_off[i] + j];
  }
  if (st == TF_OK && o) {
    /* Moments follow the slab layout of the writer; a model declaring the same parameters in
     * another order has another layout, so moments are moved parameter by parameter. */
    double *mm = mv + 2 * on;
    int same = 1;
    for (int i = 0; i < np; i++) same = same && file_off[i] == tf_params_offset(p, i);
    if (same) /* the common case, exactly (alignment gaps included) */
      memcpy(mm, mv, (size_t)(2 * on) * sizeof *mm);
    else
      memset(mm, 0, (size_t)(2 * on) * sizeof *mm);
    for (int i = 0; !same && st == TF_OK && i < np; i++) {
      const int64_t n = tf_params_tensor(p, i)->n, src = file_off[i], dst = tf_params_offset(p, i);
      if ((st = check_span(path, p, file_off, i, on, "moments")) != TF_OK) break;
      memcpy(mm + dst, mv + src, (size_t)n * sizeof *mm);
      memcpy(mm + on + dst, mv + on + src, (size_t)n * sizeof *mm);
    }
  }
  if (st == TF_OK) st = check_params_finite(path, p, slab, "corrupt checkpoint");
  if (st == TF_OK && o)
    st = check_moments(path, p, mv + 2 * on, mv + 3 * on, em, on, "corrupt checkpoint");
  if (st == TF_OK) {
    for (int i = 0; i < np; i++) {
      tf_tensor *t = tf_params_tensor(p, i);
      memcpy(t->data, slab + tf_params_offset(p, i), (size_t)t->n * sizeof *slab);
    }
    if (o) {
      memcpy(tf_optim_m(o), mv + 2 * on, (size_t)on * sizeof *mv);
      memcpy(tf_optim_v(o), mv + 3 * on, (size_t)on * sizeof *mv);
      tf_optim_set_steps(o, steps);
      /* a run that switches averaging on starts it from the loaded parameters */
      if (em) memcpy(tf_optim_ema(o), em, (size_t)on * sizeof *em);
      else tf_optim_ema_reset(o, tf_params_values(p));
    }
    if (used) *used = averaged && ev;
    if (meta_out)
      *meta_out = m;
    else
      tf_checkpoint_meta_clear(&m);
  } else {
    tf_checkpoint_meta_clear(&m);
  }
  free(file_off);
  free(slab);
  free(mv);
  free(ev);
  free(em);
  return st;
}

int tf_checkpoint_load(const char *path, tf_params *params, tf_optim *optim,
                       tf_checkpoint_meta *meta_out) {
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = ckpt_load(path, params, optim, 0, NULL, meta_out);
  tf__h5_quiet_off(q);
  return st;
}

int tf_checkpoint_load_averaged(const char *path, tf_params *params, int *averaged,
                                tf_checkpoint_meta *meta_out) {
  tf__h5_quiet q = tf__h5_quiet_on();
  int used = 0;
  int st = ckpt_load(path, params, NULL, 1, &used, meta_out);
  tf__h5_quiet_off(q);
  if (averaged) *averaged = st == TF_OK && used;
  return st;
}

int tf_checkpoint_read_meta(const char *path, tf_checkpoint_meta *meta_out) {
  if (!meta_out) return tf_error(TF_EINVAL, "tf_checkpoint_read_meta: meta_out is NULL");
  tf__h5_quiet q = tf__h5_quiet_on();
  tf_checkpoint_meta m;
  hid_t f;
  int st = open_meta(path, &m, &f);
  tf__h5_close(&f);
  tf__h5_quiet_off(q);
  if (st == TF_OK) *meta_out = m;
  return st;
}

int tf_checkpoint_read_config(const char *path, char **text) {
  if (!text) return tf_error(TF_EINVAL, "tf_checkpoint_read_config: text is NULL");
  tf_checkpoint_meta m;
  int st = tf_checkpoint_read_meta(path, &m);
  if (st != TF_OK) return st;
  char *s = m.config_text ? m.config_text : tf__h5_dup_str("");
  if (!s) return tf_error(TF_ENOMEM, "%s: out of memory", path);
  m.config_text = NULL;
  tf_checkpoint_meta_clear(&m);
  *text = s;
  return TF_OK;
}

/* ---- sample files ---------------------------------------------------------------------------- */

enum { S_X, S_C, S_LOGP, S_LOGQ, S_LOGW, NSDS };
_Static_assert((int)S_X == (int)TF__H5_SAMPLE_X && (int)NSDS == (int)TF__H5_SAMPLE_NDSETS,
               "the sample layout of h5-impl.h");
/* shared with h5par.c (h5-impl.h) */
const char *const tf__h5_sample_dsets[NSDS] = {"x", "c", "log_p", "log_q", "log_w"};
#define sds_name tf__h5_sample_dsets

struct tf_sample_writer {
  tf__h5_atomic af;
  int64_t n, d;
  hid_t ds[NSDS];
  int status; /* first failure; the writer refuses to go on after one */
};

/* log_w equals log_q - log_p up to rounding (the caller may have computed it another way). */
static int logw_consistent(double lq, double lp, double lw) {
  const double e = lq - lp;
  if (isnan(e)) return isnan(lw);
  if (isinf(e)) return lw == e;
  return isfinite(lw) && fabs(lw - e) <= 1e-9 * fmax(1.0, fmax(fabs(lq), fabs(lp)));
}

/* The validity rules of a sample file, shared by the writers and the reader.  `code` is the
 * status for a violation (TF_EINVAL for a caller's block, TF_EFORMAT for a file). */
static int check_samples(const char *path, int code, int64_t row0, int64_t n, int64_t d,
                         const double *x, const double *c, const double *lp, const double *lq,
                         const double *lw) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++)
      if (!isfinite(x[i * d + j]))
        return tf_error(TF_ENUMERIC, "%s: x[%lld, %lld] = %g; samples must be finite", path,
                        (long long)(row0 + i), (long long)j, x[i * d + j]);
  for (int64_t i = 0; i < n; i++) {
    const long long r = (long long)(row0 + i);
    if (!isfinite(c[i]))
      return tf_error(TF_ENUMERIC, "%s: c[%lld] = %g; conditions must be finite", path, r, c[i]);
    if (!isfinite(lp[i]))
      return tf_error(TF_ENUMERIC, "%s: log_p[%lld] = %g; must be finite", path, r, lp[i]);
    if (lq && isinf(lq[i]) && lq[i] > 0)
      return tf_error(TF_ENUMERIC, "%s: log_q[%lld] = +inf", path, r);
    if (lq && lw && !logw_consistent(lq[i], lp[i], lw[i]))
      return tf_error(code, "%s: log_w[%lld] = %.17g but log_q - log_p = %.17g", path, r, lw[i],
                      lq[i] - lp[i]);
  }
  return TF_OK;
}

static int deflate_level(const char *path, int deflate, int *level) {
  if (deflate == 0)
    *level = 4;
  else if (deflate == -1)
    *level = 0;
  else if (deflate >= 1 && deflate <= 9)
    *level = deflate;
  else
    return tf_error(TF_EINVAL, "%s: deflate = %d; expected -1 (off), 0 (default) or 1..9", path,
                    deflate);
  return TF_OK;
}

int tf__h5_sample_args(const char *path, int64_t d, const tf_sample_attrs *attrs, int *level) {
  /* one chunk row must fit HDF5's 4 GiB chunk limit */
  if (d < 1 || d > ((int64_t)1 << 28))
    return tf_error(TF_EINVAL, "%s: sample dimension D = %lld; expected 1..%lld", path,
                    (long long)d, (long long)1 << 28);
  return deflate_level(path, attrs ? attrs->deflate : 0, level);
}

int tf__h5_sample_prepare(const char *path, int64_t d, int64_t row0, const tf_sample_block *b,
                          const double **lq_out, const double **lw_out, double **tmp_out) {
  *lq_out = *lw_out = NULL;
  *tmp_out = NULL;
  if (!b || b->n < 0) return tf_error(TF_EINVAL, "%s: sample block is NULL or has n < 0", path);
  if (b->n == 0) return TF_OK;
  if (!b->x || !b->c || !b->log_p)
    return tf_error(TF_EINVAL, "%s: sample block needs x, c and log_p", path);
  if (b->log_w && !b->log_q)
    return tf_error(TF_EINVAL, "%s: sample block has log_w but no log_q", path);
  if ((uint64_t)b->n > SIZE_MAX / sizeof(double) / 2 / (uint64_t)d)
    return tf_error(TF_ERANGE, "%s: sample block of %lld rows is too large", path,
                    (long long)b->n);
  const int64_t n = b->n;
  int st = check_samples(path, TF_EINVAL, row0, n, d, b->x, b->c, b->log_p, b->log_q, b->log_w);
  if (st != TF_OK) return st;
  double *tmp = NULL;
  const double *lq = b->log_q, *lw = b->log_w;
  if (!lq || !lw) {
    if (!(tmp = alloc_doubles(2 * n))) return tf_error(TF_ENOMEM, "%s: out of memory", path);
    if (!lq) {
      for (int64_t i = 0; i < n; i++) tmp[i] = NAN;
      lq = tmp;
    }
    if (!lw) {
      for (int64_t i = 0; i < n; i++) tmp[n + i] = lq[i] - b->log_p[i];
      lw = tmp + n;
    }
  }
  *lq_out = lq;
  *lw_out = lw;
  *tmp_out = tmp;
  return TF_OK;
}

int tf__h5_sample_put_attrs(hid_t f, const char *path, int64_t d, const tf_sample_attrs *attrs) {
  const tf_sample_attrs none = {NULL, NULL, NULL, NULL, 0};
  if (!attrs) attrs = &none;
  int st = tf__h5_attr_put_i64(f, path, "D", d);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "model", attrs->model);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "physics", attrs->physics);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "physics_params", attrs->physics_params);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "config", attrs->config_text);
  return st;
}

int tf__h5_sample_create(hid_t f, const char *path, int64_t d, int64_t n, int level,
                         hid_t ds[NSDS]) {
  int st = TF_OK;
  for (int k = 0; k < NSDS; k++) ds[k] = H5I_INVALID_HID;
  /* Without the deflate filter in this HDF5 the file is still valid, only larger. */
  if (level > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) level = 0;
  for (int k = 0; st == TF_OK && k < NSDS; k++) {
    const int rank = k == S_X ? 2 : 1;
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)d}, maxd[2] = {H5S_UNLIMITED, (hsize_t)d};
    hsize_t chunk[2] = {CHUNK_ELEMS, (hsize_t)d};
    if (k == S_X) chunk[0] = d >= CHUNK_ELEMS ? 1 : (hsize_t)(CHUNK_ELEMS / d);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), s = H5Screate_simple(rank, dims, maxd);
    if (dcpl < 0 || s < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0 ||
        (level > 0 && (H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, (unsigned)level) < 0)))
      st = tf__h5_fail(TF_EIO, "%s: cannot set up dataset '%s'", path, sds_name[k]);
    else if ((ds[k] = H5Dcreate2(f, sds_name[k], H5T_IEEE_F64LE, s, H5P_DEFAULT, dcpl,
                                 H5P_DEFAULT)) < 0)
      st = tf__h5_fail(TF_EIO, "%s: cannot create dataset '%s'", path, sds_name[k]);
    tf__h5_close(&s);
    tf__h5_close(&dcpl);
  }
  if (st != TF_OK)
    for (int k = 0; k < NSDS; k++) tf__h5_close(&ds[k]);
  return st;
}

static int writer_open(tf_sample_writer **out, const char *path, int64_t d,
                       const tf_sample_attrs *attrs) {
  if (!out) return tf_error(TF_EINVAL, "tf_sample_writer_open: out is NULL");
  *out = NULL;
  if (!path || !*path) return tf_error(TF_EINVAL, "tf_sample_writer_open: empty path");
  int level = 0, st = tf__h5_sample_args(path, d, attrs, &level);
  if (st != TF_OK) return st;
  tf_sample_writer *w = calloc(1, sizeof *w);
  if (!w) return tf_error(TF_ENOMEM, "%s: out of memory", path);
  for (int k = 0; k < NSDS; k++) w->ds[k] = H5I_INVALID_HID;
  w->d = d;
  if ((st = tf__h5_atomic_begin(&w->af, path)) != TF_OK) {
    free(w);
    return st;
  }
  hid_t f = w->af.file;
  st = tf__h5_put_header(f, path, TF_SAMPLES_FORMAT);
  if (st == TF_OK) st = tf__h5_sample_put_attrs(f, path, d, attrs);
  if (st == TF_OK) st = tf__h5_sample_create(f, path, d, 0, level, w->ds);
  if (st != TF_OK) {
    tf_sample_writer_abort(w);
    return st;
  }
  *out = w;
  return TF_OK;
}

static int writer_append(tf_sample_writer *w, const tf_sample_block *b) {
  if (!w) return tf_error(TF_EINVAL, "tf_sample_writer_append: writer is NULL");
  const char *path = w->af.path;
  if (w->status != TF_OK)
    return tf_error(w->status, "%s: the sample writer failed earlier; close or abort it", path);
  if (b && b->n > INT64_MAX - w->n)
    return tf_error(TF_ERANGE, "%s: sample block of %lld rows is too large", path,
                    (long long)b->n);
  const double *lq, *lw;
  double *tmp;
  const int64_t d = w->d;
  /* validation failure: nothing written yet, the writer stays usable */
  int st = tf__h5_sample_prepare(path, d, w->n, b, &lq, &lw, &tmp);
  if (st != TF_OK || b->n == 0) return st;
  const int64_t n = b->n;
  const double *src[NSDS] = {b->x, b->c, b->log_p, lq, lw};
  for (int k = 0; st == TF_OK && k < NSDS; k++) {
    const int rank = k == S_X ? 2 : 1;
    hsize_t ext[2] = {(hsize_t)(w->n + n), (hsize_t)d}, start[2] = {(hsize_t)w->n, 0},
            count[2] = {(hsize_t)n, (hsize_t)d};
    hid_t fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    if (H5Dset_extent(w->ds[k], ext) < 0 || (fs = H5Dget_space(w->ds[k])) < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        (ms = H5Screate_simple(rank, count, NULL)) < 0 ||
        H5Dwrite(w->ds[k], H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, src[k]) < 0)
      st = tf__h5_fail(TF_EIO, "%s: cannot write rows %lld..%lld of dataset '%s'", path,
                       (long long)w->n, (long long)(w->n + n - 1), sds_name[k]);
    tf__h5_close(&ms);
    tf__h5_close(&fs);
  }
  free(tmp);
  if (st != TF_OK) {
    w->status = st;
    return st;
  }
  w->n += n;
  return TF_OK;
}

static int writer_close(tf_sample_writer *w) {
  if (!w) return TF_OK;
  int st = w->status;
  if (st == TF_OK) st = tf__h5_attr_put_i64(w->af.file, w->af.path, "N", w->n);
  if (st == TF_OK) {
    for (int k = 0; k < NSDS; k++) tf__h5_close(&w->ds[k]);
    st = tf__h5_atomic_commit(&w->af);
  } else {
    tf__h5_atomic_abort(&w->af); /* closes the datasets too */
  }
  free(w);
  return st;
}

int tf_sample_writer_open(tf_sample_writer **w, const char *path, int64_t d,
                          const tf_sample_attrs *attrs) {
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = writer_open(w, path, d, attrs);
  tf__h5_quiet_off(q);
  return st;
}

int tf_sample_writer_append(tf_sample_writer *w, const tf_sample_block *block) {
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = writer_append(w, block);
  tf__h5_quiet_off(q);
  return st;
}

int64_t tf_sample_writer_rows(const tf_sample_writer *w) { return w ? w->n : 0; }

int tf_sample_writer_close(tf_sample_writer *w) {
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = writer_close(w);
  tf__h5_quiet_off(q);
  return st;
}

void tf_sample_writer_abort(tf_sample_writer *w) {
  if (!w) return;
  tf__h5_quiet q = tf__h5_quiet_on();
  tf__h5_atomic_abort(&w->af); /* closes the datasets too */
  free(w);
  tf__h5_quiet_off(q);
}

int tf_samples_write(const char *path, int64_t d, const tf_sample_attrs *attrs,
                     const tf_sample_block *all) {
  if (!all) return tf_error(TF_EINVAL, "%s: tf_samples_write: block is NULL", path ? path : "");
  tf_sample_writer *w;
  int st = tf_sample_writer_open(&w, path, d, attrs);
  if (st != TF_OK) return st;
  if ((st = tf_sample_writer_append(w, all)) != TF_OK) {
    tf_sample_writer_abort(w);
    return st;
  }
  return tf_sample_writer_close(w);
}

void tf_samples_free(tf_samples *s) {
  if (!s) return;
  free(s->x);
  free(s->c);
  free(s->log_p);
  free(s->log_q);
  free(s->log_w);
  free(s->model);
  free(s->physics);
  free(s->physics_params);
  free(s->config_text);
  free(s->version);
  free(s->created);
  memset(s, 0, sizeof *s);
}

static int opt_str(hid_t f, const char *path, const char *name, char **out) {
  if (!has_attr(f, name)) {
    *out = tf__h5_dup_str("");
    return *out ? TF_OK : tf_error(TF_ENOMEM, "%s: out of memory", path);
  }
  return attr_get_str(f, path, "/", name, out);
}

/* N and D attributes are optional (the datasets are authoritative) but must agree if present. */
static int check_count_attr(hid_t f, const char *path, const char *name, int64_t want,
                            const char *from) {
  if (!has_attr(f, name)) return TF_OK;
  int64_t v;
  int st = attr_get_num(f, path, "/", name, K_INT, H5T_NATIVE_INT64, 1, &v, NULL);
  if (st == TF_OK && v != want)
    st = tf_error(TF_EFORMAT, "%s: attribute '%s' = %lld but %s is %lld", path, name,
                  (long long)v, from, (long long)want);
  return st;
}

static int samples_read(const char *path, tf_samples *s) {
  hid_t f;
  int st = file_open_ro(path, &f);
  if (st == TF_OK) st = check_format(f, path, TF_SAMPLES_FORMAT);
  dset d[NSDS];
  for (int k = 0; k < NSDS; k++) d[k].id = H5I_INVALID_HID;
  for (int k = 0; st == TF_OK && k < NSDS; k++) {
    char shown[16], found[64];
    snprintf(shown, sizeof shown, "/%s", sds_name[k]);
    if ((st = dset_open(f, path, sds_name[k], shown, K_FLOAT, &d[k])) != TF_OK) break;
    if (k == S_X) {
      if (d[k].rank != 2 || d[k].dims[1] < 1) {
        st = tf_error(TF_EFORMAT, "%s: dataset '/x' has shape %s; expected (N, D) with D >= 1",
                      path, dims_str(d[k].rank, d[k].dims, found, sizeof found));
      } else {
        s->n = (int64_t)d[k].dims[0];
        s->d = (int64_t)d[k].dims[1];
      }
    } else if (d[k].rank != 1 || d[k].dims[0] != (hsize_t)s->n) {
      st = tf_error(TF_EFORMAT, "%s: dataset '%s' has shape %s; expected (%lld) as x has %lld rows",
                    path, shown, dims_str(d[k].rank, d[k].dims, found, sizeof found),
                    (long long)s->n, (long long)s->n);
    }
  }
  if (st == TF_OK) st = check_count_attr(f, path, "N", s->n, "the number of rows of x");
  if (st == TF_OK) st = check_count_attr(f, path, "D", s->d, "the number of columns of x");
  if (st == TF_OK && (uint64_t)s->n > SIZE_MAX / sizeof(double) / (uint64_t)s->d)
    st = tf_error(TF_ENOMEM, "%s: x of shape (%lld, %lld) does not fit in memory", path,
                  (long long)s->n, (long long)s->d);
  double **dst[NSDS] = {&s->x, &s->c, &s->log_p, &s->log_q, &s->log_w};
  for (int k = 0; st == TF_OK && k < NSDS; k++) {
    char shown[16];
    snprintf(shown, sizeof shown, "/%s", sds_name[k]);
    if (!(*dst[k] = alloc_doubles(k == S_X ? s->n * s->d : s->n)))
      st = tf_error(TF_ENOMEM, "%s: cannot allocate dataset '%s'", path, shown);
    else
      st = dset_read(&d[k], H5T_NATIVE_DOUBLE, path, shown, *dst[k]);
  }
  for (int k = 0; k < NSDS; k++) tf__h5_close(&d[k].id);
  if (st == TF_OK)
    st = check_samples(path, TF_EFORMAT, 0, s->n, s->d, s->x, s->c, s->log_p, s->log_q, s->log_w);
  if (st == TF_OK) st = opt_str(f, path, "model", &s->model);
  if (st == TF_OK) st = opt_str(f, path, "physics", &s->physics);
  if (st == TF_OK) st = opt_str(f, path, "physics_params", &s->physics_params);
  if (st == TF_OK) st = opt_str(f, path, "config", &s->config_text);
  if (st == TF_OK) st = opt_str(f, path, "tradeflow_version", &s->version);
  if (st == TF_OK) st = opt_str(f, path, "created", &s->created);
  tf__h5_close(&f);
  return st;
}

int tf_samples_read(const char *path, tf_samples *out) {
  if (!out) return tf_error(TF_EINVAL, "tf_samples_read: out is NULL");
  memset(out, 0, sizeof *out);
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = samples_read(path, out);
  tf__h5_quiet_off(q);
  if (st != TF_OK) tf_samples_free(out);
  return st;
}

/* ---- data matrices --------------------------------------------------------------------------- */

struct tf_h5_matrix {
  hid_t file, ds;
  int rank; /* 1 or 2 */
  int64_t rows, cols;
  char *path, *name;
};

static void matrix_close(tf_h5_matrix *m) {
  if (!m) return;
  tf__h5_close(&m->ds);
  tf__h5_close(&m->file);
  free(m->path);
  free(m->name);
  free(m);
}

static int matrix_open(tf_h5_matrix **out, const char *path, const char *dataset) {
  if (!out) return tf_error(TF_EINVAL, "tf_h5_matrix_open: out is NULL");
  *out = NULL;
  if (!dataset || !*dataset)
    return tf_error(TF_EINVAL, "%s: empty dataset name", path ? path : "");
  tf_h5_matrix *m = calloc(1, sizeof *m);
  if (!m) return tf_error(TF_ENOMEM, "%s: out of memory", path ? path : "");
  m->ds = H5I_INVALID_HID;
  int st = file_open_ro(path, &m->file);
  if (st == TF_OK && (!(m->path = tf__h5_dup_str(path)) || !(m->name = tf__h5_dup_str(dataset))))
    st = tf_error(TF_ENOMEM, "%s: out of memory", path);
  dset d;
  if (st == TF_OK) st = dset_open(m->file, path, dataset, dataset, K_INT | K_FLOAT, &d);
  if (st == TF_OK) {
    m->ds = d.id;
    char found[128];
    if (d.rank != 1 && d.rank != 2)
      st = tf_error(TF_EFORMAT, "%s: dataset '%s': expected rank 1 or 2, found rank %d, shape %s",
                    path, dataset, d.rank, dims_str(d.rank, d.dims, found, sizeof found));
    m->rank = d.rank;
    m->rows = (int64_t)d.dims[0];
    m->cols = d.rank == 2 ? (int64_t)d.dims[1] : 1;
  }
  if (st != TF_OK) {
    matrix_close(m);
    return st;
  }
  *out = m;
  return TF_OK;
}

static int matrix_read(tf_h5_matrix *m, int64_t row0, int64_t n, unsigned flags, double *out) {
  if (!m) return tf_error(TF_EINVAL, "tf_h5_matrix_read: matrix is NULL");
  if (row0 < 0 || n < 0 || row0 > m->rows || n > m->rows - row0)
    return tf_error(TF_ERANGE, "%s: dataset '%s': rows [%lld, %lld) outside [0, %lld)", m->path,
                    m->name, (long long)row0, (long long)row0 + (long long)n, (long long)m->rows);
  hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, (hsize_t)m->cols};
  hsize_t total = (hsize_t)n * (hsize_t)m->cols;
  if (total == 0) return TF_OK;
  if (!out) return tf_error(TF_EINVAL, "%s: dataset '%s': output buffer is NULL", m->path, m->name);
  hid_t fs = H5Dget_space(m->ds), ms = H5I_INVALID_HID;
  int st = TF_OK;
  if (fs < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
      (ms = H5Screate_simple(1, &total, NULL)) < 0 ||
      H5Dread(m->ds, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, out) < 0)
    st = tf__h5_fail(TF_EFORMAT, "%s: cannot read rows [%lld, %lld) of dataset '%s'",
                     m->path, (long long)row0, (long long)(row0 + n), m->name);
  tf__h5_close(&ms);
  tf__h5_close(&fs);
  if (st == TF_OK && (flags & TF_H5_FINITE)) {
    for (hsize_t i = 0; i < total; i++)
      if (!isfinite(out[i]))
        return tf_error(TF_ENUMERIC, "%s: dataset '%s' row %lld column %lld is %g; finite "
                        "values required", m->path, m->name,
                        (long long)(row0 + (int64_t)(i / (hsize_t)m->cols)),
                        (long long)(i % (hsize_t)m->cols), out[i]);
  }
  return st;
}

int tf_h5_matrix_open(tf_h5_matrix **m, const char *path, const char *dataset) {
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = matrix_open(m, path, dataset);
  tf__h5_quiet_off(q);
  return st;
}

int64_t tf_h5_matrix_rows(const tf_h5_matrix *m) { return m ? m->rows : 0; }
int64_t tf_h5_matrix_cols(const tf_h5_matrix *m) { return m ? m->cols : 0; }

int tf_h5_matrix_read(tf_h5_matrix *m, int64_t row0, int64_t n, unsigned flags, double *out) {
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = matrix_read(m, row0, n, flags, out);
  tf__h5_quiet_off(q);
  return st;
}

void tf_h5_matrix_close(tf_h5_matrix *m) {
  if (!m) return;
  tf__h5_quiet q = tf__h5_quiet_on();
  matrix_close(m);
  tf__h5_quiet_off(q);
}

int tf_h5_read_matrix(const char *path, const char *dataset, unsigned flags, int64_t *n_rows,
                      int64_t *n_cols, double **out) {
  if (!n_rows || !n_cols || !out)
    return tf_error(TF_EINVAL, "tf_h5_read_matrix: NULL output argument");
  tf_h5_matrix *m;
  int st = tf_h5_matrix_open(&m, path, dataset);
  if (st != TF_OK) return st;
  double *buf = NULL;
  if ((uint64_t)m->rows > SIZE_MAX / sizeof(double) / (uint64_t)(m->cols ? m->cols : 1) ||
      !(buf = alloc_doubles(m->rows * m->cols)))
    st = tf_error(TF_ENOMEM, "%s: dataset '%s' of %lld x %lld values does not fit in memory",
                  path, dataset, (long long)m->rows, (long long)m->cols);
  if (st == TF_OK) st = tf_h5_matrix_read(m, 0, m->rows, flags, buf);
  if (st == TF_OK) {
    *n_rows = m->rows;
    *n_cols = m->cols;
    *out = buf;
  } else {
    free(buf);
  }
  tf_h5_matrix_close(m);
  return st;
}

int tf_h5_has_dataset(const char *path, const char *dataset, int *exists) {
  if (!exists || !dataset) return tf_error(TF_EINVAL, "tf_h5_has_dataset: NULL argument");
  tf__h5_quiet q = tf__h5_quiet_on();
  hid_t f;
  int st = file_open_ro(path, &f);
  if (st == TF_OK) {
    const char *bare = dataset;
    while (*bare == '/') bare++;
    int yes = 0;
    if (*bare && link_exists(f, dataset)) {
      hid_t o = H5Oopen(f, dataset, H5P_DEFAULT);
      yes = o >= 0 && H5Iget_type(o) == H5I_DATASET;
      tf__h5_close(&o);
    }
    *exists = yes;
  }
  tf__h5_close(&f);
  tf__h5_quiet_off(q);
  return st;
}

/* ---- listing --------------------------------------------------------------------------------- */

typedef struct {
  char **v;
  int n, cap;
} name_list;

static int list_push(name_list *l, char *s) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    char **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) return 0;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = s;
  return 1;
}

static int list_group(hid_t g, const char *prefix, const char *path, name_list *l, int depth) {
  if (depth > MAX_DEPTH) return TF_OK; /* hard-link cycles */
  H5G_info_t gi;
  if (H5Gget_info(g, &gi) < 0)
    return tf__h5_fail(TF_EFORMAT, "%s: cannot list group '%s'", path, prefix);
  int st = TF_OK;
  for (hsize_t i = 0; st == TF_OK && i < gi.nlinks; i++) {
    ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    if (len < 0) return tf__h5_fail(TF_EFORMAT, "%s: cannot list group '%s'", path, prefix);
    const size_t plen = strlen(prefix);
    char *full = malloc(plen + (size_t)len + 2);
    if (!full) return tf_error(TF_ENOMEM, "%s: out of memory", path);
    snprintf(full, plen + 2, "%s/", strcmp(prefix, "/") ? prefix : "");
    char *name = full + strlen(full);
    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, (size_t)len + 1, H5P_DEFAULT);
    H5L_info_t li;
    hid_t o = H5I_INVALID_HID;
    /* Soft and external links are skipped: they may dangle or point into other files. */
    if (H5Lget_info(g, name, &li, H5P_DEFAULT) >= 0 && li.type == H5L_TYPE_HARD)
      o = H5Oopen(g, name, H5P_DEFAULT);
    const H5I_type_t ty = o >= 0 ? H5Iget_type(o) : H5I_BADID;
    if (ty == H5I_DATASET) {
      if (!list_push(l, full)) st = tf_error(TF_ENOMEM, "%s: out of memory", path);
      else full = NULL;
    } else if (ty == H5I_GROUP) {
      st = list_group(o, full, path, l, depth + 1);
    }
    tf__h5_close(&o);
    free(full);
  }
  return st;
}

void tf_h5_free_names(char **names, int count) {
  if (!names) return;
  for (int i = 0; i < count; i++) free(names[i]);
  free(names);
}

int tf_h5_list_datasets(const char *path, char ***names, int *count) {
  if (!names || !count) return tf_error(TF_EINVAL, "tf_h5_list_datasets: NULL output argument");
  tf__h5_quiet q = tf__h5_quiet_on();
  hid_t f;
  name_list l = {NULL, 0, 0};
  int st = file_open_ro(path, &f);
  if (st == TF_OK) {
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    st = root < 0 ? tf__h5_fail(TF_EFORMAT, "%s: cannot open the root group", path)
                  : list_group(root, "/", path, &l, 0);
    tf__h5_close(&root);
  }
  tf__h5_close(&f);
  tf__h5_quiet_off(q);
  if (st != TF_OK) {
    tf_h5_free_names(l.v, l.n);
    return st;
  }
  *names = l.v;
  *count = l.n;
  return TF_OK;
}
