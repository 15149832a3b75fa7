/* h5par.c — the collective sample writer: one sample file written by every rank of a process
 * group through parallel HDF5 (the MPI-IO driver), in the layout of the serial writer.
 *
 * Exported: tf_sample_pwriter_open/write/rows/close/abort (all collective).
 *
 * Every function runs with HDF5's error printing off (tf__h5_quiet_on/off) and reports through
 * tf_error().  Error safety: each rank-local step (argument and block checks, allocations,
 * dataspace set-up, HDF5 calls) is followed by tf_dist_agree before the next collective HDF5
 * or MPI call, so that a failure on one rank becomes the same status and message on every rank
 * instead of a hang.  The shared sample-file helpers (block validation, root attributes,
 * dataset creation) are in h5io.c, declared in h5-impl.h.
 *
 * Serial group: the same code writes an in-memory file (tf__h5_atomic, as the serial writer
 * does) with H5P_DEFAULT transfers and no MPI call; the datasets and attributes are those of
 * tf_sample_writer.
 *
 * Parallel group: rank 0 creates "<path>.tmp.<rank 0's pid>" (so that an unwritable directory
 * is reported early, with errno's reason), then every rank opens it with H5Pset_fapl_mpio and
 * writes its hyperslabs with collective transfers (H5FD_MPIO_COLLECTIVE; an empty block
 * selects nothing but still takes part).  Collective writes support HDF5's filters since
 * 1.10.2, so the datasets are chunked with shuffle + deflate as in the serial writer.  At close
 * every rank closes the file, then rank 0 fsyncs the temporary, renames it over <path> and
 * fsyncs the directory; on any error rank 0 removes the temporary instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "h5-impl.h"
#include "tradeflow/publish.h"
#include "tradeflow/dist.h"
#include "tradeflow/h5io.h"

enum { NSDS = TF__H5_SAMPLE_NDSETS, S_X = TF__H5_SAMPLE_X };
#define sds_name tf__h5_sample_dsets

struct tf_sample_pwriter {
  tf_dist d;
  int par;            /* d.size > 1: an MPI-IO file; else an in-memory file (af) */
  char *path, *tmp;   /* target and temporary (parallel mode; serial: af.path, af.tmp) */
  int tmp_made;       /* rank 0 (parallel): the temporary exists and is ours to remove */
  tf__h5_atomic af;   /* serial mode */
  hid_t file, dxpl;   /* the open file (af.file in serial mode) and the transfer list */
  hid_t ds[NSDS];
  int64_t dim, n_total;
  int64_t rows;       /* rows accepted from this rank (some may still be pending) */
  int status;         /* first failure of a write; identical on every rank */
  int64_t *iv;        /* [2 * n_iv]: (first row, count) of this rank's non-empty writes */
  size_t n_iv, cap_iv;
  /* rows accepted but not yet written (see "write"): rows [pstart[k], pend) of dataset k */
  int64_t chunk[NSDS]; /* chunk rows of each dataset */
  int64_t pstart[NSDS], pend;
  double *pbuf[NSDS];
  size_t pcap[NSDS];   /* rows */
};

/* ---- small helpers --------------------------------------------------------------------------- */

static const char *str_or_empty(const char *s) { return s ? s : ""; }

/* format, format_version, tradeflow_version, created (given: the same on every rank), N, then
 * D, model, physics, physics_params and config as the serial writer writes them. */
static int put_root_attrs(hid_t f, const char *path, const char *created, int64_t n, int64_t d,
                          const tf_sample_attrs *attrs) {
  int st = tf__h5_attr_put_str(f, path, "format", TF_SAMPLES_FORMAT);
  if (st == TF_OK) st = tf__h5_attr_put_i64(f, path, "format_version", TF_H5_FORMAT_VERSION);
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "tradeflow_version", tf_h5_version());
  if (st == TF_OK) st = tf__h5_attr_put_str(f, path, "created", created);
  if (st == TF_OK) st = tf__h5_attr_put_i64(f, path, "N", n);
  if (st == TF_OK) st = tf__h5_sample_put_attrs(f, path, d, attrs);
  return st;
}

/* The chunk rows of every dataset, as created. */
static int read_chunks(tf_sample_pwriter *w) {
  int st = TF_OK;
  for (int k = 0; st == TF_OK && k < NSDS; k++) {
    hsize_t dims[2] = {0, 0};
    hid_t dcpl = H5Dget_create_plist(w->ds[k]);
    if (dcpl < 0 || H5Pget_chunk(dcpl, 2, dims) < 1 || dims[0] < 1)
      st = tf__h5_fail(TF_EIO, "%s: cannot read the chunk shape of dataset '%s'", w->path,
                       sds_name[k]);
    w->chunk[k] = (int64_t)dims[0];
    tf__h5_close(&dcpl);
  }
  return st;
}

static void free_writer(tf_sample_pwriter *w) {
  for (int k = 0; k < NSDS; k++) free(w->pbuf[k]);
  free(w->path);
  free(w->tmp);
  free(w->iv);
  free(w);
}

/* (collective) Parallel mode: close everything (in the same order on every rank), wait for all
 * ranks, and let rank 0 remove the temporary.  Does not change the error message. */
static void par_discard(tf_sample_pwriter *w) {
  for (int k = 0; k < NSDS; k++) tf__h5_close(&w->ds[k]);
  tf__h5_close(&w->dxpl);
  tf__h5_close(&w->file);
  (void)tf_dist_agree(&w->d, TF_OK); /* a barrier: every rank has closed the file */
  if (w->d.rank == 0 && w->tmp_made) unlink(w->tmp);
  w->tmp_made = 0;
}

/* ---- open ------------------------------------------------------------------------------------ */

static int open_serial(tf_sample_pwriter *w, int level, const tf_sample_attrs *attrs) {
  int st = tf__h5_atomic_begin(&w->af, w->path);
  if (st != TF_OK) return st;
  w->file = w->af.file;
  char created[32];
  tf__h5_now_iso(created, sizeof created);
  st = put_root_attrs(w->file, w->path, created, w->n_total, w->dim, attrs);
  if (st == TF_OK) st = tf__h5_sample_create(w->file, w->path, w->dim, w->n_total, level, w->ds);
  if (st == TF_OK) st = read_chunks(w);
  if (st != TF_OK) tf__h5_atomic_abort(&w->af); /* closes the datasets too */
  return st;
}

/* Every rank must pass the same arguments: they become the file's metadata, which parallel
 * HDF5 requires to be identical on all ranks.  Rank 0's hashes are compared on every rank. */
static int check_same_args(tf_sample_pwriter *w, int level, const tf_sample_attrs *attrs) {
  const tf_sample_attrs none = {NULL, NULL, NULL, NULL, 0};
  if (!attrs) attrs = &none;
  enum { NR = 6 };
  const int64_t nums[3] = {w->dim, w->n_total, level};
  const char *strs[NR - 1] = {w->path, str_or_empty(attrs->model), str_or_empty(attrs->physics),
                              str_or_empty(attrs->physics_params),
                              str_or_empty(attrs->config_text)};
  static const char *const names[NR] = {"D, N or deflate level", "path", "model name",
                                        "physics name", "physics parameters", "config text"};
  uint64_t mine[NR], root[NR];
  mine[0] = tf_dist_hash(nums, sizeof nums, tf_dist_hash(NULL, 0, 0));
  for (int i = 1; i < NR; i++)
    mine[i] = tf_dist_hash(strs[i - 1], strlen(strs[i - 1]) + 1, tf_dist_hash(NULL, 0, 0));
  memcpy(root, mine, sizeof root);
  int st = tf_dist_bcast(&w->d, root, sizeof root, 0);
  for (int i = 0; st == TF_OK && i < NR; i++)
    if (root[i] != mine[i])
      st = tf_error(TF_EINVAL, "%s: tf_sample_pwriter_open: the %s differ from rank 0's; every "
                    "rank must pass the same arguments", w->path, names[i]);
  return tf_dist_agree(&w->d, st);
}

static int open_parallel(tf_sample_pwriter *w, int level, const tf_sample_attrs *attrs) {
  const tf_dist *d = &w->d;
  int st = check_same_args(w, level, attrs);
  if (st != TF_OK) return st;
  /* Rank 0 names and creates the temporary and fixes the creation time. */
  struct {
    int64_t pid;
    char created[32];
  } head;
  memset(&head, 0, sizeof head);
  if (d->rank == 0) {
    head.pid = (int64_t)getpid();
    tf__h5_now_iso(head.created, sizeof head.created);
  }
  if ((st = tf_dist_bcast(d, &head, sizeof head, 0)) != TF_OK) return tf_dist_agree(d, st);
  const size_t len = strlen(w->path) + 32;
  if (!(w->tmp = malloc(len))) {
    st = tf_error(TF_ENOMEM, "%s: out of memory", w->path);
  } else {
    snprintf(w->tmp, len, "%s.tmp.%lld", w->path, (long long)head.pid);
    struct stat sb;
    if (d->rank == 0 && stat(w->path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
      st = tf_error(TF_EIO, "%s: is a directory; cannot write a file there", w->path);
    } else if (d->rank == 0) {
      const int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
      if (fd < 0)
        st = tf_error(TF_EIO, "%s: cannot create temporary file '%s': %s", w->path, w->tmp,
                      strerror(errno));
      else
        w->tmp_made = 1;
      if (fd >= 0) close(fd);
    }
  }
  if ((st = tf_dist_agree(d, st)) != TF_OK) {
    par_discard(w);
    return st;
  }

  /* Every rank opens the temporary through MPI-IO. */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fapl_mpio(fapl, d->comm, MPI_INFO_NULL) < 0)
    st = tf__h5_fail(TF_EIO, "%s: cannot set up parallel (MPI-IO) file access", w->path);
  if ((st = tf_dist_agree(d, st)) == TF_OK) {
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (w->file < 0)
      st = tf__h5_fail(TF_EIO, "%s: cannot create '%s' for parallel writing", w->path, w->tmp);
    st = tf_dist_agree(d, st);
  }
  tf__h5_close(&fapl);
  if (st != TF_OK) {
    par_discard(w);
    return st;
  }

  /* Metadata: collective, the same values on every rank. */
  st = put_root_attrs(w->file, w->path, head.created, w->n_total, w->dim, attrs);
  if ((st = tf_dist_agree(d, st)) == TF_OK) {
    st = tf__h5_sample_create(w->file, w->path, w->dim, w->n_total, level, w->ds);
    if (st == TF_OK) st = read_chunks(w);
    st = tf_dist_agree(d, st);
  }
  if (st == TF_OK) {
    w->dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (w->dxpl < 0 || H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE) < 0)
      st = tf__h5_fail(TF_EIO, "%s: cannot set up collective transfers", w->path);
    st = tf_dist_agree(d, st);
  }
  if (st != TF_OK) par_discard(w);
  return st;
}

static int pw_open(tf_sample_pwriter **out, const tf_dist *d, const char *path, int64_t dim,
                   int64_t n_total, const tf_sample_attrs *attrs) {
  int level = 0, st = TF_OK;
  tf_sample_pwriter *w = NULL;
  if (!out)
    st = tf_error(TF_EINVAL, "tf_sample_pwriter_open: out is NULL");
  else if (!path || !*path)
    st = tf_error(TF_EINVAL, "tf_sample_pwriter_open: empty path");
  else if (n_total < 0)
    st = tf_error(TF_EINVAL, "%s: N = %lld samples; expected N >= 0", path, (long long)n_total);
  else
    st = tf__h5_sample_args(path, dim, attrs, &level);
  if (st == TF_OK && (!(w = calloc(1, sizeof *w)) || !(w->path = tf__h5_dup_str(path))))
    st = tf_error(TF_ENOMEM, "%s: out of memory", path);
  if ((st = tf_dist_agree(d, st)) != TF_OK) {
    if (w) free_writer(w);
    return st;
  }
  w->d = *d;
  w->par = d->size > 1;
  w->dim = dim;
  w->n_total = n_total;
  w->file = w->dxpl = H5I_INVALID_HID;
  w->af.file = H5I_INVALID_HID;
  w->af.fd = -1;
  for (int k = 0; k < NSDS; k++) w->ds[k] = H5I_INVALID_HID;
  st = w->par ? open_parallel(w, level, attrs) : open_serial(w, level, attrs);
  if (st != TF_OK) {
    free_writer(w);
    return st;
  }
  *out = w;
  return TF_OK;
}

int tf_sample_pwriter_open(tf_sample_pwriter **w, const tf_dist *d, const char *path,
                           int64_t dim, int64_t n_total, const tf_sample_attrs *attrs) {
  if (w) *w = NULL;
  if (!d) return tf_error(TF_EINVAL, "tf_sample_pwriter_open: process group is NULL");
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = pw_open(w, d, path, dim, n_total, attrs);
  tf__h5_quiet_off(q);
  return st;
}

/* ---- write ----------------------------------------------------------------------------------- */

/* Rows are not written as they come: every call writes, per dataset, only whole chunks (from
 * the first pending row up to the last chunk boundary), and keeps the rest of the rank's
 * contiguous run of rows in memory until more rows complete a chunk, a write elsewhere starts a
 * new run, or close writes what is left.  A compressed chunk is so written once (only the
 * chunks shared by two ranks' runs twice), not read back, decompressed, merged and compressed
 * again for every block: with blocks of 8192 rows that made collective writes several times
 * slower than the serial writer.  Memory: about one chunk (512 KiB) plus one block per
 * dataset. */

static int push_interval(tf_sample_pwriter *w, int64_t row0, int64_t n) {
  if (w->n_iv > 0 && w->iv[2 * w->n_iv - 2] + w->iv[2 * w->n_iv - 1] == row0) {
    w->iv[2 * w->n_iv - 1] += n; /* continues the previous write: merged */
    return TF_OK;
  }
  if (w->n_iv == w->cap_iv) {
    const size_t cap = w->cap_iv ? 2 * w->cap_iv : 16;
    int64_t *iv = realloc(w->iv, cap * 2 * sizeof *iv);
    if (!iv) return tf_error(TF_ENOMEM, "%s: out of memory", w->path);
    w->iv = iv;
    w->cap_iv = cap;
  }
  w->iv[2 * w->n_iv] = row0;
  w->iv[2 * w->n_iv + 1] = n;
  w->n_iv++;
  return TF_OK;
}

static void pop_interval(tf_sample_pwriter *w, int64_t n) {
  if (w->iv[2 * w->n_iv - 1] > n)
    w->iv[2 * w->n_iv - 1] -= n;
  else
    w->n_iv--;
}

static int64_t width(const tf_sample_pwriter *w, int k) { return k == S_X ? w->dim : 1; }

static int pending_empty(const tf_sample_pwriter *w) {
  for (int k = 0; k < NSDS; k++)
    if (w->pstart[k] < w->pend) return 0;
  return 1;
}

/* Room for `rows` pending rows in every buffer. */
static int reserve(tf_sample_pwriter *w, int64_t rows) {
  for (int k = 0; k < NSDS; k++) {
    if ((size_t)rows <= w->pcap[k]) continue;
    const size_t cap = (size_t)rows > 2 * w->pcap[k] ? (size_t)rows : 2 * w->pcap[k];
    double *p = realloc(w->pbuf[k], cap * (size_t)width(w, k) * sizeof *p);
    if (!p) return tf_error(TF_ENOMEM, "%s: out of memory for %zu pending rows", w->path, cap);
    w->pbuf[k] = p;
    w->pcap[k] = cap;
  }
  return TF_OK;
}

/* Block rows [row0, row0 + n) appended to the pending run (room reserved). */
static void append(tf_sample_pwriter *w, int64_t row0, int64_t n, const double *const src[NSDS]) {
  if (pending_empty(w)) {
    for (int k = 0; k < NSDS; k++) w->pstart[k] = row0;
    w->pend = row0;
  }
  for (int k = 0; k < NSDS; k++) {
    const size_t wd = (size_t)width(w, k);
    memcpy(w->pbuf[k] + (size_t)(w->pend - w->pstart[k]) * wd, src[k],
           (size_t)n * wd * sizeof(double));
  }
  w->pend += n;
}

/* The file and memory selections of rows [row0, row0 + n) of dataset k; nothing selected in
 * either when n == 0 (the rank still takes part in the collective write). */
static int select_rows(const tf_sample_pwriter *w, int k, int64_t row0, int64_t n, hid_t *fs,
                       hid_t *ms) {
  const int rank = k == S_X ? 2 : 1;
  hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, (hsize_t)w->dim};
  hsize_t one[2] = {1, (hsize_t)w->dim};
  *fs = H5Dget_space(w->ds[k]);
  *ms = H5Screate_simple(rank, n > 0 ? count : one, NULL);
  herr_t e = *fs < 0 || *ms < 0 ? -1 : 0;
  if (e >= 0 && n > 0) e = H5Sselect_hyperslab(*fs, H5S_SELECT_SET, start, NULL, count, NULL);
  if (e >= 0 && n == 0 && (e = H5Sselect_none(*fs)) >= 0) e = H5Sselect_none(*ms);
  if (e < 0)
    return tf__h5_fail(TF_EIO, "%s: cannot select %lld rows from row %lld of dataset '%s'",
                       w->path, (long long)n, (long long)row0, sds_name[k]);
  return TF_OK;
}

/* (collective) Pending rows [pstart[k], upto[k]) of every dataset k to the file (an empty range
 * still takes part); the rows written leave the buffers.  A failure is agreed and sticks. */
static int write_pending(tf_sample_pwriter *w, const int64_t upto[NSDS]) {
  const tf_dist *d = &w->d;
  hid_t fs[NSDS], ms[NSDS];
  int st = TF_OK;
  for (int k = 0; k < NSDS; k++) fs[k] = ms[k] = H5I_INVALID_HID;
  /* in serial mode an empty range is nothing to do; in parallel mode every rank takes part */
  for (int k = 0; st == TF_OK && k < NSDS; k++)
    if (w->par || upto[k] > w->pstart[k])
      st = select_rows(w, k, w->pstart[k], upto[k] - w->pstart[k], &fs[k], &ms[k]);
  st = tf_dist_agree(d, st);
  /* a dataset no rank writes to this time is skipped: an empty collective write costs time */
  int64_t any[NSDS];
  for (int k = 0; k < NSDS; k++) any[k] = upto[k] - w->pstart[k];
  if (st == TF_OK && w->par &&
      MPI_Allreduce(MPI_IN_PLACE, any, NSDS, MPI_INT64_T, MPI_MAX, d->comm) != MPI_SUCCESS)
    st = tf_error(TF_EMPI, "%s: MPI_Allreduce of the rows to write failed", w->path);
  const double dummy = 0;
  for (int k = 0; st == TF_OK && k < NSDS; k++) {
    const int64_t n = upto[k] - w->pstart[k];
    if (any[k] == 0) continue;
    if (H5Dwrite(w->ds[k], H5T_NATIVE_DOUBLE, ms[k], fs[k], w->par ? w->dxpl : H5P_DEFAULT,
                 n > 0 ? w->pbuf[k] : &dummy) < 0)
      st = tf__h5_fail(TF_EIO, "%s: cannot write rows %lld..%lld of dataset '%s'", w->path,
                       (long long)w->pstart[k], (long long)(upto[k] - 1), sds_name[k]);
    st = tf_dist_agree(d, st);
  }
  for (int k = 0; k < NSDS; k++) {
    tf__h5_close(&ms[k]);
    tf__h5_close(&fs[k]);
  }
  if (st != TF_OK) {
    w->status = st;
    return st;
  }
  for (int k = 0; k < NSDS; k++) {
    const size_t wd = (size_t)width(w, k), done = (size_t)(upto[k] - w->pstart[k]);
    const size_t left = (size_t)(w->pend - upto[k]);
    if (done > 0 && left > 0)
      memmove(w->pbuf[k], w->pbuf[k] + done * wd, left * wd * sizeof(double));
    w->pstart[k] = upto[k];
  }
  return TF_OK;
}

static int pw_write(tf_sample_pwriter *w, int64_t row0, const tf_sample_block *b) {
  const tf_dist *d = &w->d;
  if (w->status != TF_OK) /* the same on every rank: no agreement needed */
    return tf_error(w->status, "%s: the sample writer failed earlier; close or abort it",
                    w->path);
  const int64_t n = b && b->n > 0 ? b->n : 0;
  const double *lq = NULL, *lw = NULL;
  double *tmp = NULL;
  int st = TF_OK, pushed = 0;
  if (n > 0 && (row0 < 0 || row0 > w->n_total || n > w->n_total - row0))
    st = tf_error(TF_ERANGE, "%s: sample block of rows [%lld, %lld) outside [0, N = %lld)",
                  w->path, (long long)row0, (long long)(row0 + n), (long long)w->n_total);
  if (st == TF_OK && b) st = tf__h5_sample_prepare(w->path, w->dim, row0, b, &lq, &lw, &tmp);
  /* a block that does not continue the pending run: the run is written first, the block kept */
  const int restart = n > 0 && !pending_empty(w) && row0 != w->pend;
  if (st == TF_OK && n > 0) {
    int64_t most = 0;
    for (int k = 0; k < NSDS; k++)
      if (w->pend - w->pstart[k] > most) most = w->pend - w->pstart[k];
    st = reserve(w, restart ? (n > most ? n : most) : most + n);
  }
  if (st == TF_OK && n > 0 && (st = push_interval(w, row0, n)) == TF_OK) pushed = 1;
  if ((st = tf_dist_agree(d, st)) != TF_OK) {
    /* refused before anything was written: the writer stays usable */
    if (pushed) pop_interval(w, n);
    free(tmp);
    return st;
  }
  const double *const src[NSDS] = {n ? b->x : NULL, n ? b->c : NULL, n ? b->log_p : NULL, lq,
                                    lw};
  int64_t upto[NSDS];
  if (restart) {
    for (int k = 0; k < NSDS; k++) upto[k] = w->pend;
  } else {
    if (n > 0) append(w, row0, n, src);
    for (int k = 0; k < NSDS; k++) {
      const int64_t edge = w->pend / w->chunk[k] * w->chunk[k];
      upto[k] = edge > w->pstart[k] ? edge : w->pstart[k];
    }
  }
  st = write_pending(w, upto);
  if (st == TF_OK && restart) append(w, row0, n, src);
  if (st == TF_OK) w->rows += n;
  free(tmp);
  return st;
}

int tf_sample_pwriter_write(tf_sample_pwriter *w, int64_t row0, const tf_sample_block *b) {
  if (!w) return tf_error(TF_EINVAL, "tf_sample_pwriter_write: writer is NULL");
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = pw_write(w, row0, b);
  tf__h5_quiet_off(q);
  return st;
}

int64_t tf_sample_pwriter_rows(const tf_sample_pwriter *w) { return w ? w->rows : 0; }

/* ---- close ----------------------------------------------------------------------------------- */

static int cmp_iv(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Every row of [0, n_total) written exactly once, given all (first, count) pairs. */
static int check_cover(const char *path, int64_t *iv, size_t n_iv, int64_t n_total) {
  if (n_iv > 1) qsort(iv, n_iv, 2 * sizeof *iv, cmp_iv); /* iv may be NULL when empty */
  int64_t next = 0; /* rows [0, next) are covered */
  for (size_t i = 0; i < n_iv; i++) {
    const int64_t a = iv[2 * i], e = a + iv[2 * i + 1];
    if (a < next)
      return tf_error(TF_EINVAL, "%s: rows %lld..%lld were written more than once", path,
                      (long long)a, (long long)((e < next ? e : next) - 1));
    if (a > next)
      return tf_error(TF_EINVAL, "%s: rows %lld..%lld of N = %lld were never written", path,
                      (long long)next, (long long)(a - 1), (long long)n_total);
    next = e;
  }
  if (next < n_total)
    return tf_error(TF_EINVAL, "%s: rows %lld..%lld of N = %lld were never written", path,
                    (long long)next, (long long)(n_total - 1), (long long)n_total);
  return TF_OK;
}

/* (collective) The coverage check over every rank's writes, made at rank 0; agreed. */
static int check_cover_all(tf_sample_pwriter *w) {
  const tf_dist *d = &w->d;
  if (!w->par) return check_cover(w->path, w->iv, w->n_iv, w->n_total);
  int mine = (int)(2 * w->n_iv), *counts = NULL, *displs = NULL, st = TF_OK;
  int64_t *all = NULL;
  if (w->n_iv > (size_t)INT32_MAX / 2) st = tf_error(TF_ERANGE, "%s: too many writes", w->path);
  if ((st = tf_dist_agree(d, st)) != TF_OK) return st;
  if (d->rank == 0 && (!(counts = malloc((size_t)d->size * sizeof *counts)) ||
                       !(displs = malloc((size_t)d->size * sizeof *displs))))
    st = tf_error(TF_ENOMEM, "%s: out of memory", w->path);
  if ((st = tf_dist_agree(d, st)) != TF_OK) goto done;
  if (MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, d->comm) != MPI_SUCCESS)
    st = tf_error(TF_EMPI, "%s: MPI_Gather of the write counts failed", w->path);
  int64_t total = 0;
  if (st == TF_OK && d->rank == 0) {
    for (int q = 0; q < d->size; q++) {
      displs[q] = (int)total;
      total += counts[q];
    }
    if (total > INT32_MAX)
      st = tf_error(TF_ERANGE, "%s: too many writes", w->path);
    else if (!(all = malloc((size_t)(total ? total : 1) * sizeof *all)))
      st = tf_error(TF_ENOMEM, "%s: out of memory", w->path);
  }
  if ((st = tf_dist_agree(d, st)) != TF_OK) goto done;
  if (MPI_Gatherv(w->iv ? w->iv : (int64_t[]){0}, mine, MPI_INT64_T, all, counts, displs,
                  MPI_INT64_T, 0, d->comm) != MPI_SUCCESS)
    st = tf_error(TF_EMPI, "%s: MPI_Gatherv of the written rows failed", w->path);
  if (st == TF_OK && d->rank == 0) st = check_cover(w->path, all, (size_t)(total / 2), w->n_total);
  st = tf_dist_agree(d, st);
done:
  free(all);
  free(counts);
  free(displs);
  return st;
}

/* Rank 0: the closed temporary to disk, renamed over the target, the directory synced. */
static int publish(tf_sample_pwriter *w) {
  w->tmp_made = 0; /* renamed, or removed by tf_publish on failure */
  return tf_publish(-1, w->tmp, w->path);
}

static int pw_close(tf_sample_pwriter *w) {
  const tf_dist *d = &w->d;
  int st = w->status;
  if (st == TF_OK) st = check_cover_all(w);
  if (st == TF_OK) { /* the rows still pending */
    int64_t upto[NSDS];
    for (int k = 0; k < NSDS; k++) upto[k] = w->pend;
    st = write_pending(w, upto);
  }
  if (!w->par) {
    for (int k = 0; k < NSDS; k++) tf__h5_close(&w->ds[k]);
    if (st == TF_OK) {
      st = tf__h5_atomic_commit(&w->af);
    } else {
      tf__h5_atomic_abort(&w->af);
    }
    return st;
  }
  /* Parallel: close everything on every rank (the file's last data reaches the disk here). */
  int cl = TF_OK;
  for (int k = 0; k < NSDS; k++)
    if (w->ds[k] >= 0 && H5Dclose(w->ds[k]) < 0 && cl == TF_OK)
      cl = tf__h5_fail(TF_EIO, "%s: cannot write dataset '%s'", w->path, sds_name[k]);
  for (int k = 0; k < NSDS; k++) w->ds[k] = H5I_INVALID_HID;
  tf__h5_close(&w->dxpl);
  if (w->file >= 0 && H5Fclose(w->file) < 0 && cl == TF_OK)
    cl = tf__h5_fail(TF_EIO, "%s: cannot finish writing '%s'", w->path, w->tmp);
  w->file = H5I_INVALID_HID;
  /* (an earlier error keeps its message; this agreement is then only a barrier) */
  cl = tf_dist_agree(d, st == TF_OK ? cl : TF_OK);
  if (st == TF_OK) st = cl;
  if (st == TF_OK) {
    st = tf_dist_agree(d, d->rank == 0 ? publish(w) : TF_OK);
  }
  if (d->rank == 0 && w->tmp_made) unlink(w->tmp);
  w->tmp_made = 0;
  return st;
}

int tf_sample_pwriter_close(tf_sample_pwriter *w) {
  if (!w) return TF_OK;
  tf__h5_quiet q = tf__h5_quiet_on();
  int st = pw_close(w);
  tf__h5_quiet_off(q);
  free_writer(w);
  return st;
}

void tf_sample_pwriter_abort(tf_sample_pwriter *w) {
  if (!w) return;
  tf__h5_quiet q = tf__h5_quiet_on();
  if (w->par) {
    par_discard(w);
  } else {
    tf__h5_atomic_abort(&w->af); /* closes the datasets too */
  }
  tf__h5_quiet_off(q);
  free_writer(w);
}
