/* test_h5par.c — the collective sample writer (tf_sample_pwriter) on 1, 2 or 4 ranks.
 *
 * Every test works in a fresh directory made by rank 0 (mkdtemp under $TMPDIR or /tmp) and
 * removed at the end.  Every rank checks that it got the same status and message as rank 0,
 * so a failure that is not agreed shows up as a failed assertion rather than a hang. */
#include <dirent.h>
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define TF_TEST_MPI
#include "testutil.h"
#include <hdf5.h>

#include "tradeflow/dist.h"
#include "tradeflow/error.h"
#include "tradeflow/h5io.h"

/* ---- fixture: one directory for all ranks, one dist ------------------------------------------ */

typedef struct {
  tf_dist d;
  char dir[512];
  char buf[8][640];
  int next;
} fixture;

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  if (tf_dist_from_comm(MPI_COMM_WORLD, &fx->d) != TF_OK) return -1;
  int ok = 1;
  if (fx->d.rank == 0) {
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/tf_h5par_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ok = mkdtemp(fx->dir) != NULL;
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Bcast(fx->dir, (int)sizeof fx->dir, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (!ok) {
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  const ssize_t open_objs = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE | H5F_OBJ_DATASET |
                                                              H5F_OBJ_GROUP | H5F_OBJ_ATTR);
  if (open_objs != 0) print_error("%zd HDF5 objects left open\n", open_objs);
  MPI_Barrier(MPI_COMM_WORLD);
  if (fx->d.rank == 0) tf_test_rm_rf(fx->dir);
  free(fx);
  return open_objs == 0 ? 0 : -1;
}

static const char *P(fixture *fx, const char *name) {
  char *b = fx->buf[fx->next++ % 8];
  snprintf(b, sizeof fx->buf[0], "%s/%s", fx->dir, name);
  return b;
}

/* Names in the directory containing ".tmp." (temporaries left behind). */
static int count_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

/* Every rank holds the same status and message as rank 0. */
static void assert_agreed(const tf_dist *d, int st) {
  int all[2] = {st, -st}, red[2];
  MPI_Allreduce(all, red, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  assert_int_equal(red[0], st);
  assert_int_equal(-red[1], st);
  char msg[1024], root[1024];
  snprintf(msg, sizeof msg, "%s", tf_errmsg());
  memcpy(root, msg, sizeof root);
  MPI_Bcast(root, (int)sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (strcmp(root, msg) != 0)
    print_error("rank %d message '%s' differs from rank 0's '%s'\n", d->rank, msg, root);
  assert_string_equal(root, msg);
}

/* ---- the deterministic data set -------------------------------------------------------------- */

enum { D = 3 };
static const int64_t N_ROWS = 70001; /* x: 4 chunks of 21845 rows; c, log_p...: 2 chunks */

typedef struct {
  int64_t n;
  double *x, *c, *lp, *lq, *lw;
} data;

static void data_make(data *s, int64_t n) {
  s->n = n;
  s->x = malloc((size_t)(n * D) * sizeof(double));
  s->c = malloc((size_t)n * sizeof(double));
  s->lp = malloc((size_t)n * sizeof(double));
  s->lq = malloc((size_t)n * sizeof(double));
  s->lw = malloc((size_t)n * sizeof(double));
  assert_true(s->x && s->c && s->lp && s->lq && s->lw);
  for (int64_t i = 0; i < n; i++) {
    double r2 = 0;
    for (int j = 0; j < D; j++) {
      const double v = sin(0.37 * (double)i + 1.3 * j) * (1.0 + j) + 1e-3 * (double)(i % 101);
      s->x[i * D + j] = v;
      r2 += v * v;
    }
    s->c[i] = 0.5 + 0.25 * (double)(i % 7);
    s->lp[i] = -0.5 * r2 - 2.0 + 1e-7 * (double)i;
    s->lq[i] = i % 11 == 0 ? NAN : i % 13 == 0 ? -INFINITY : -0.45 * r2 + 0.125 * s->c[i];
    s->lw[i] = s->lq[i] - s->lp[i];
  }
}

static void data_free(data *s) {
  free(s->x);
  free(s->c);
  free(s->lp);
  free(s->lq);
  free(s->lw);
}

/* Rows [a, a + n) of s as a block; log_w given or left to the writer. */
static tf_sample_block block_of(const data *s, int64_t a, int64_t n, int give_lw) {
  tf_sample_block b = {n, s->x + a * D, s->c + a, s->lp + a, s->lq + a, give_lw ? s->lw + a : NULL};
  return b;
}

static int same(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 8) == 0; }

static void assert_same_array(const double *got, const double *want, int64_t n, const char *what) {
  for (int64_t i = 0; i < n; i++)
    if (!same(got[i], want[i])) {
      print_error("%s[%lld] = %.17g, expected %.17g\n", what, (long long)i, got[i], want[i]);
      fail();
    }
}

static const tf_sample_attrs ATTRS = {"par-model", "double_well", "dim=3 a=1.5",
                                      "[model]\nname = par-model\n[physics]\nname = double_well\n",
                                      0};

static void assert_file_holds(const char *path, const data *s) {
  tf_samples r;
  const int st = tf_samples_read(path, &r);
  if (st != TF_OK) print_error("%s\n", tf_errmsg());
  assert_int_equal(st, TF_OK);
  assert_int_equal(r.n, s->n);
  assert_int_equal(r.d, D);
  assert_same_array(r.x, s->x, s->n * D, "x");
  assert_same_array(r.c, s->c, s->n, "c");
  assert_same_array(r.log_p, s->lp, s->n, "log_p");
  assert_same_array(r.log_q, s->lq, s->n, "log_q");
  assert_same_array(r.log_w, s->lw, s->n, "log_w");
  assert_string_equal(r.model, ATTRS.model);
  assert_string_equal(r.physics, ATTRS.physics);
  assert_string_equal(r.physics_params, ATTRS.physics_params);
  assert_string_equal(r.config_text, ATTRS.config_text);
  assert_string_equal(r.version, tf_h5_version());
  assert_int_equal(strlen(r.created), 20); /* YYYY-MM-DDThh:mm:ssZ */
  tf_samples_free(&r);
}

/* Storage of one dataset as serial HDF5 sees it: chunk rows and the filters. */
typedef struct {
  int chunked, nfilters;
  hsize_t chunk[2];
  H5Z_filter_t filter[4];
  hsize_t dims[2], maxdims[2];
} storage;

static storage storage_of(const char *path, const char *name) {
  storage s;
  memset(&s, 0, sizeof s);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), dcpl = H5Dget_create_plist(ds),
        sp = H5Dget_space(ds);
  assert_true(ds >= 0 && dcpl >= 0 && sp >= 0);
  H5Sget_simple_extent_dims(sp, s.dims, s.maxdims);
  s.chunked = H5Pget_layout(dcpl) == H5D_CHUNKED;
  if (s.chunked) H5Pget_chunk(dcpl, 2, s.chunk);
  s.nfilters = H5Pget_nfilters(dcpl);
  for (int i = 0; i < s.nfilters && i < 4; i++) {
    unsigned flags, cd[8];
    size_t ncd = 8;
    s.filter[i] = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
  }
  H5Sclose(sp);
  H5Pclose(dcpl);
  H5Dclose(ds);
  H5Fclose(f);
  return s;
}

/* ---- (a) shares in uneven blocks, compared with the data and with the serial writer ---------- */

static void test_shares_match_data_and_serial_writer(void **state) {
  fixture *fx = *state;
  const tf_dist *d = &fx->d;
  data s;
  data_make(&s, N_ROWS);
  const char *path = P(fx, "par.h5"), *spath = P(fx, "serial.h5");

  int64_t lo, hi;
  tf_dist_share(N_ROWS, d->rank, d->size, &lo, &hi);
  /* this rank's blocks: uneven sizes, the pattern shifted by the rank */
  static const int64_t sizes[] = {1, 777, 5000, 13, 21845, 4096, 2, 9999};
  enum { NS = sizeof sizes / sizeof sizes[0], MAXB = 256 };
  int64_t first[MAXB], count[MAXB];
  int nb = 0;
  for (int64_t a = lo, k = d->rank; a < hi; k++) {
    const int64_t n = sizes[k % NS] < hi - a ? sizes[k % NS] : hi - a;
    assert_true(nb < MAXB);
    first[nb] = a;
    count[nb++] = n;
    a += n;
  }
  int rounds = nb;
  MPI_Allreduce(&nb, &rounds, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  rounds += d->rank % 2; /* odd ranks end with an extra round of empty writes everywhere */
  MPI_Allreduce(MPI_IN_PLACE, &rounds, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  /* odd ranks (and a lone rank) write their blocks last to first */
  const int reverse = d->rank % 2 == 1 || d->size == 1;

  tf_sample_pwriter *w = NULL;
  int st = tf_sample_pwriter_open(&w, d, path, D, N_ROWS, &ATTRS);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  for (int r = 0; r < rounds; r++) {
    if (r < nb) {
      const int i = reverse ? nb - 1 - r : r;
      tf_sample_block b = block_of(&s, first[i], count[i], i % 2);
      st = tf_sample_pwriter_write(w, first[i], &b);
    } else if (r % 2) {
      st = tf_sample_pwriter_write(w, 0, NULL);
    } else {
      tf_sample_block empty = {0, NULL, NULL, NULL, NULL, NULL};
      st = tf_sample_pwriter_write(w, 12345, &empty); /* row0 is ignored for an empty block */
    }
    if (st != TF_OK) print_error("round %d: %s\n", r, tf_errmsg());
    assert_agreed(d, st);
    assert_int_equal(st, TF_OK);
  }
  assert_int_equal(tf_sample_pwriter_rows(w), hi - lo);
  st = tf_sample_pwriter_close(w);
  if (st != TF_OK) print_error("close: %s\n", tf_errmsg());
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);

  if (d->rank == 0) {
    assert_file_holds(path, &s);
    /* the serial writer's file, in blocks of 10000 rows */
    tf_sample_writer *sw = NULL;
    assert_int_equal(tf_sample_writer_open(&sw, spath, D, &ATTRS), TF_OK);
    for (int64_t a = 0; a < N_ROWS; a += 10000) {
      tf_sample_block b = block_of(&s, a, N_ROWS - a < 10000 ? N_ROWS - a : 10000, 1);
      assert_int_equal(tf_sample_writer_append(sw, &b), TF_OK);
    }
    assert_int_equal(tf_sample_writer_close(sw), TF_OK);
    tf_samples p, q;
    assert_int_equal(tf_samples_read(path, &p), TF_OK);
    assert_int_equal(tf_samples_read(spath, &q), TF_OK);
    assert_int_equal(p.n, q.n);
    assert_int_equal(p.d, q.d);
    assert_memory_equal(p.x, q.x, (size_t)(p.n * p.d) * sizeof(double));
    assert_memory_equal(p.c, q.c, (size_t)p.n * sizeof(double));
    assert_memory_equal(p.log_p, q.log_p, (size_t)p.n * sizeof(double));
    assert_memory_equal(p.log_q, q.log_q, (size_t)p.n * sizeof(double));
    assert_memory_equal(p.log_w, q.log_w, (size_t)p.n * sizeof(double));
    assert_string_equal(p.model, q.model);
    assert_string_equal(p.physics, q.physics);
    assert_string_equal(p.physics_params, q.physics_params);
    assert_string_equal(p.config_text, q.config_text);
    assert_string_equal(p.version, q.version);
    tf_samples_free(&p);
    tf_samples_free(&q);
    /* same storage: chunk shape and filters (shuffle + deflate, written collectively) */
    static const char *const names[] = {"x", "c", "log_p", "log_q", "log_w"};
    for (int k = 0; k < 5; k++) {
      const storage a = storage_of(path, names[k]), b = storage_of(spath, names[k]);
      assert_true(a.chunked && b.chunked);
      assert_int_equal(a.chunk[0], b.chunk[0]);
      assert_int_equal(a.nfilters, b.nfilters);
      assert_int_equal(a.nfilters, H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 ? 2 : 0);
      for (int i = 0; i < a.nfilters; i++) assert_int_equal(a.filter[i], b.filter[i]);
      assert_int_equal(a.dims[0], N_ROWS);
      assert_true(a.maxdims[0] == H5S_UNLIMITED && b.maxdims[0] == H5S_UNLIMITED);
    }
    assert_int_equal(count_tmp_files(fx->dir), 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  data_free(&s);
}

/* An empty file (N = 0), and no compression: both still readable. */
static void test_empty_and_uncompressed(void **state) {
  fixture *fx = *state;
  const tf_dist *d = &fx->d;
  const char *path = P(fx, "empty.h5");
  tf_sample_pwriter *w = NULL;
  int st = tf_sample_pwriter_open(&w, d, path, D, 0, NULL);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  st = tf_sample_pwriter_write(w, 0, NULL);
  assert_agreed(d, st);
  st = tf_sample_pwriter_close(w);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);

  data s;
  data_make(&s, 1000);
  const char *p2 = P(fx, "plain.h5");
  tf_sample_attrs at = ATTRS;
  at.deflate = -1;
  st = tf_sample_pwriter_open(&w, d, p2, D, s.n, &at);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  int64_t lo, hi;
  tf_dist_share(s.n, d->rank, d->size, &lo, &hi);
  tf_sample_block b = block_of(&s, lo, hi - lo, 1);
  st = tf_sample_pwriter_write(w, lo, &b);
  assert_agreed(d, st);
  st = tf_sample_pwriter_close(w);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  if (d->rank == 0) {
    tf_samples r;
    assert_int_equal(tf_samples_read(path, &r), TF_OK);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.d, D);
    tf_samples_free(&r);
    assert_file_holds(p2, &s);
    assert_int_equal(storage_of(p2, "x").nfilters, 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  data_free(&s);
}

/* ---- (b) a NaN on one rank: the same error everywhere, no file ------------------------------- */

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int file_is(const char *path, const char *text) {
  char buf[256] = "";
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strcmp(buf, text) == 0;
}

static void test_nan_on_one_rank(void **state) {
  fixture *fx = *state;
  const tf_dist *d = &fx->d;
  const char *fresh = P(fx, "fresh.h5"), *old = P(fx, "old.h5");
  if (d->rank == 0) write_file(old, "previous contents");
  MPI_Barrier(MPI_COMM_WORLD);
  data s;
  data_make(&s, 5000);
  int64_t lo, hi;
  tf_dist_share(s.n, d->rank, d->size, &lo, &hi);
  const int bad = d->size - 1;
  const int64_t bad_row = hi - 3; /* on rank `bad` */
  if (d->rank == bad) s.x[bad_row * D + 1] = NAN;
  char want_where[64], want_rank[64];
  snprintf(want_where, sizeof want_where, "x[%lld, 1] = nan", (long long)bad_row);
  snprintf(want_rank, sizeof want_rank, "rank %d of %d: ", bad, d->size);
  MPI_Bcast(want_where, (int)sizeof want_where, MPI_CHAR, bad, MPI_COMM_WORLD);

  for (int use_close = 0; use_close < 2; use_close++) {
    const char *path = use_close ? old : fresh;
    tf_sample_pwriter *w = NULL;
    int st = tf_sample_pwriter_open(&w, d, path, D, s.n, &ATTRS);
    assert_agreed(d, st);
    assert_int_equal(st, TF_OK);
    tf_sample_block b = block_of(&s, lo, hi - lo, 0);
    st = tf_sample_pwriter_write(w, lo, &b);
    assert_agreed(d, st);
    assert_int_equal(st, TF_ENUMERIC);
    if (d->size > 1) assert_non_null(strstr(tf_errmsg(), want_rank));
    assert_non_null(strstr(tf_errmsg(), want_where));
    assert_non_null(strstr(tf_errmsg(), path));
    if (use_close) {
      /* close refuses to publish a file with rows never written */
      st = tf_sample_pwriter_close(w);
      assert_agreed(d, st);
      assert_int_equal(st, TF_EINVAL);
      assert_non_null(strstr(tf_errmsg(), "never written"));
    } else {
      tf_sample_pwriter_abort(w);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (d->rank == 0) {
      struct stat sb;
      assert_int_equal(stat(fresh, &sb), -1);
      assert_true(file_is(old, "previous contents"));
      assert_int_equal(count_tmp_files(fx->dir), 0);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  data_free(&s);
}

/* Refused blocks leave the writer usable; rows written twice or out of range are errors. */
static void test_refused_blocks_and_overlaps(void **state) {
  fixture *fx = *state;
  const tf_dist *d = &fx->d;
  data s;
  data_make(&s, 3001);
  int64_t lo, hi;
  tf_dist_share(s.n, d->rank, d->size, &lo, &hi);
  const char *path = P(fx, "retry.h5");
  tf_sample_pwriter *w = NULL;
  int st = tf_sample_pwriter_open(&w, d, path, D, s.n, &ATTRS);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  /* the first half of every share is accepted (and held back: less than a chunk) */
  const int64_t mid = lo + (hi - lo) / 2;
  tf_sample_block b1 = block_of(&s, lo, mid - lo, 1), b = block_of(&s, mid, hi - mid, 1);
  st = tf_sample_pwriter_write(w, lo, &b1);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  /* the last rank asks for rows past N */
  st = tf_sample_pwriter_write(w, d->rank == d->size - 1 ? mid + 1 : mid, &b);
  assert_agreed(d, st);
  assert_int_equal(st, TF_ERANGE);
  assert_non_null(strstr(tf_errmsg(), "outside [0, N = 3001)"));
  /* rank 0 gives an inconsistent log_w */
  const double keep = s.lw[mid + 5];
  if (d->rank == 0) s.lw[mid + 5] += 1.0;
  st = tf_sample_pwriter_write(w, mid, &b);
  assert_agreed(d, st);
  assert_int_equal(st, TF_EINVAL);
  char where[32];
  snprintf(where, sizeof where, "log_w[%lld]", (long long)mid + 5);
  MPI_Bcast(where, (int)sizeof where, MPI_CHAR, 0, MPI_COMM_WORLD);
  assert_non_null(strstr(tf_errmsg(), where));
  s.lw[mid + 5] = keep;
  /* still usable: the right blocks give the right file */
  st = tf_sample_pwriter_write(w, mid, &b);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  st = tf_sample_pwriter_close(w);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  if (d->rank == 0) assert_file_holds(path, &s);

  /* every rank writes rows 0..9 as well as its share: written more than once */
  const char *p2 = P(fx, "twice.h5");
  st = tf_sample_pwriter_open(&w, d, p2, D, s.n, &ATTRS);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  st = tf_sample_pwriter_write(w, lo, &b);
  assert_agreed(d, st);
  tf_sample_block head = block_of(&s, 0, 10, 1);
  st = tf_sample_pwriter_write(w, 0, &head);
  assert_agreed(d, st);
  assert_int_equal(st, TF_OK);
  st = tf_sample_pwriter_close(w);
  assert_agreed(d, st);
  assert_int_equal(st, TF_EINVAL);
  assert_non_null(strstr(tf_errmsg(), "more than once"));
  if (d->rank == 0) {
    struct stat sb;
    assert_int_equal(stat(p2, &sb), -1);
    assert_int_equal(count_tmp_files(fx->dir), 0);
  }

  /* ranks that disagree about N */
  st = tf_sample_pwriter_open(&w, d, P(fx, "n.h5"), D, s.n + (d->rank == d->size - 1), &ATTRS);
  assert_agreed(d, st);
  if (d->size > 1) {
    assert_int_equal(st, TF_EINVAL);
    assert_non_null(strstr(tf_errmsg(), "differ from rank 0"));
  } else {
    assert_int_equal(st, TF_OK);
    tf_sample_pwriter_abort(w);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  data_free(&s);
}

/* ---- (c) an unwritable directory: TF_EIO on every rank --------------------------------------- */

static void test_unwritable_directory(void **state) {
  fixture *fx = *state;
  const tf_dist *d = &fx->d;
  /* a missing directory is unwritable even for root; a read-only one only for other users */
  const char *paths[2] = {P(fx, "missing/sub/out.h5"), P(fx, "ro/out.h5")};
  const int n_paths = geteuid() == 0 ? 1 : 2;
  if (d->rank == 0) {
    char ro[640];
    snprintf(ro, sizeof ro, "%s/ro", fx->dir);
    assert_int_equal(mkdir(ro, 0555), 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  for (int i = 0; i < n_paths; i++) {
    tf_sample_pwriter *w = NULL;
    int st = tf_sample_pwriter_open(&w, d, paths[i], D, 100, &ATTRS);
    assert_agreed(d, st);
    assert_int_equal(st, TF_EIO);
    assert_null(w);
    assert_non_null(strstr(tf_errmsg(), "cannot create temporary file"));
    assert_non_null(strstr(tf_errmsg(), paths[i]));
  }
  /* a directory as the target */
  tf_sample_pwriter *w = NULL;
  int st = tf_sample_pwriter_open(&w, d, fx->dir, D, 100, &ATTRS);
  assert_agreed(d, st);
  assert_int_equal(st, TF_EIO);
  assert_non_null(strstr(tf_errmsg(), "is a directory"));
  MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_shares_match_data_and_serial_writer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_and_uncompressed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_nan_on_one_rank, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_blocks_and_overlaps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unwritable_directory, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  /* any failing rank fails the job */
  return tf_test_mpi_finish(rc);
}
