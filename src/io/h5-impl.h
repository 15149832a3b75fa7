/* h5-impl.h — private HDF5 plumbing shared by h5io.c, h5result.c and h5par.c (not installed).
 *
 * Implemented in h5util.c, except the sample-file helpers at the end (h5io.c).  None is
 * collective.  The tf__h5_ prefix marks these as internal to
 * the core library: they are not part of include/tradeflow/ and may change at any time.
 *
 * Conventions: `path` names the file in messages; every failure is reported through tf_error()
 * and returned as a TF_* status; invalid hid_t values are ignored by tf__h5_close, so cleanup
 * code can close everything unconditionally.
 */
#ifndef TRADEFLOW_IO_H5_IMPL_H
#define TRADEFLOW_IO_H5_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "tradeflow/error.h"
#include "tradeflow/h5io.h"

/* ---- error reporting ------------------------------------------------------------------------ */

/* HDF5 prints its error stack to stderr by default; the user should see only our message.
 * tf__h5_quiet_on() turns the printing off and returns the application's setting, which
 * tf__h5_quiet_off() restores. */
typedef struct {
  H5E_auto2_t fn;
  void *data;
} tf__h5_quiet;

tf__h5_quiet tf__h5_quiet_on(void);
void tf__h5_quiet_off(tf__h5_quiet q);

/* HDF5's innermost error description into buf ("" if none).  Call right after the failing HDF5
 * call: the next HDF5 API call clears the error stack. */
void tf__h5_cause(char *buf, size_t len);

/* tf_error(code, fmt, ...) with HDF5's innermost reason appended as " (HDF5: ...)".  Must be
 * called right after the failing call. */
int tf__h5_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- small helpers -------------------------------------------------------------------------- */

/* Close any kind of HDF5 id and set it to H5I_INVALID_HID; invalid ids are ignored. */
void tf__h5_close(hid_t *id);

/* malloc'd copy of s (NULL: ""); NULL when out of memory. */
char *tf__h5_dup_str(const char *s);
/* The current UTC time as ISO 8601 ("2026-11-24T10:00:00Z"; "unknown" if unavailable). */
void tf__h5_now_iso(char *buf, size_t len);

/* malloc'd "<path>.tmp.<pid>", the temporary an atomic write goes through; NULL: no memory. */
char *tf__h5_tmp_name(const char *path);

/* ---- writing -------------------------------------------------------------------------------- */

/* Attribute `name` on obj of n values (n == 0: a scalar) of memtype, stored as filetype. */
int tf__h5_attr_put(hid_t obj, const char *path, const char *name, hid_t filetype,
                    hid_t memtype, hsize_t n, const void *data);
/* n variable-length UTF-8 strings (n == 0: one scalar string s[0]). */
int tf__h5_attr_put_strs(hid_t obj, const char *path, const char *name, hsize_t n,
                         const char *const *s);
/* Scalar string (NULL: ""). */
int tf__h5_attr_put_str(hid_t obj, const char *path, const char *name, const char *text);
int tf__h5_attr_put_i64(hid_t obj, const char *path, const char *name, int64_t v);

/* format / format_version / tradeflow_version / created: the head of every file written. */
int tf__h5_put_header(hid_t f, const char *path, const char *format);

/* Dataset `name` of shape dims[0..rank) written from data (`shown` is how messages name it).
 * keep == NULL: the dataset is closed (a failure to close, which flushes, is an error);
 * otherwise *keep receives the open dataset on success. */
int tf__h5_dset_put(hid_t loc, const char *path, const char *name, const char *shown,
                    hid_t filetype, hid_t memtype, int rank, const hsize_t *dims,
                    const void *data, hid_t *keep);

/* ---- atomic files (published by tf_publish, publish.h) ---------------------------------------- */

/* A file assembled in memory (HDF5's core driver) and written to disk by us at commit: the image
 * goes to "<path>.tmp.<pid>", is fsync'd and renamed over <path>, and the directory is fsync'd.
 * HDF5 1.10 cannot recover from a failed write of its own: after a failed metadata flush the
 * file can never be closed, and the library crashes at exit.  With every disk write ours, a
 * full disk or an I/O error is an ordinary error return.  Memory: about twice the file size,
 * briefly, at commit. */
typedef struct {
  char *path, *tmp;
  hid_t file; /* the in-memory HDF5 file */
  int fd;     /* the temporary on disk, created at begin so that errors show early; -1: none */
} tf__h5_atomic;

/* Creates the temporary and the in-memory file; on failure *a holds nothing. */
int tf__h5_atomic_begin(tf__h5_atomic *a, const char *path);
/* Image to the temporary, fsync, rename over the target, fsync the directory.  Every object of
 * a->file must be closed.  Always releases *a. */
int tf__h5_atomic_commit(tf__h5_atomic *a);
/* Closes whatever is still open in a->file, removes the temporary, releases *a. */
void tf__h5_atomic_abort(tf__h5_atomic *a);

/* ---- sample files (defined in h5io.c; used by the serial writer and by h5par.c) ------------ */

/* The datasets in file order: x (N, D) first, then c, log_p, log_q, log_w (N). */
enum { TF__H5_SAMPLE_X = 0, TF__H5_SAMPLE_NDSETS = 5 };
extern const char *const tf__h5_sample_dsets[TF__H5_SAMPLE_NDSETS];

/* Open-time arguments: D in range, attrs->deflate valid (attrs may be NULL); *level receives the
 * zlib level to use (0: no compression). */
int tf__h5_sample_args(const char *path, int64_t d, const tf_sample_attrs *attrs, int *level);

/* Validate block b of D columns whose first row is row `row0` of the file (rows in messages are
 * numbered from there): arrays present, size, finiteness and log_w consistency (TF_EINVAL /
 * TF_ERANGE / TF_ENUMERIC naming the array and row).  On success *lq and *lw point to the log_q
 * and log_w to write: b's own, or arrays in *tmp (malloc'd: NaN log_q, log_q - log_p) that the
 * caller frees; for b->n == 0 all three are NULL. */
int tf__h5_sample_prepare(const char *path, int64_t d, int64_t row0, const tf_sample_block *b,
                          const double **lq, const double **lw, double **tmp);

/* The root attributes D, model, physics, physics_params and config (attrs may be NULL). */
int tf__h5_sample_put_attrs(hid_t f, const char *path, int64_t d, const tf_sample_attrs *attrs);

/* The five datasets with n rows (maximum: unlimited), chunked in whole rows of about 512 KiB,
 * shuffle + deflate at `level` (0: none; also none when this HDF5 lacks deflate).  ds[] receives
 * the open datasets; on error the ones created are closed and set invalid. */
int tf__h5_sample_create(hid_t f, const char *path, int64_t d, int64_t n, int level,
                         hid_t ds[TF__H5_SAMPLE_NDSETS]);

#endif
