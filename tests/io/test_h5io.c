/* test_h5io.c — HDF5 checkpoints, sample files and data matrices.
 * Every test works in a fresh directory made with mkdtemp under $TMPDIR (or /tmp), removed at
 * the end.  Files that tradeflow would never write (wrong shapes, float64 parameters in a
 * float32 build, integer matrices...) are made here with the HDF5 API directly. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include <hdf5.h>

#include "tradeflow/h5io.h"
#include "tradeflow/rng.h"

#ifdef TF_DOUBLE
#define OTHER_MEM H5T_NATIVE_FLOAT
#define OTHER_FILE H5T_IEEE_F32LE
typedef float other_real;
#else
#define OTHER_MEM H5T_NATIVE_DOUBLE
#define OTHER_FILE H5T_IEEE_F64LE
typedef double other_real;
#endif

/* ---- fixture: a fresh directory per test ----------------------------------------------------- */

typedef struct {
  char dir[512];
  char buf[8][640]; /* paths handed out by P() */
  int next;
} fixture;

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(fx->dir, sizeof fx->dir, "%s/tf_h5io_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(fx->dir)) {
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  /* every file this module opened is closed again */
  const ssize_t open_files = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE | H5F_OBJ_DATASET |
                                                               H5F_OBJ_GROUP | H5F_OBJ_ATTR);
  if (open_files != 0) print_error("%zd HDF5 objects left open\n", open_files);
  tf_test_rm_rf(fx->dir);
  free(fx);
  return open_files == 0 ? 0 : -1;
}

/* A path inside the test directory (a few stay valid at once). */
static const char *P(fixture *fx, const char *name) {
  char tmp[sizeof fx->buf[0]];
  snprintf(tmp, sizeof tmp, "%s/%s", fx->dir, name);
  char *b = fx->buf[fx->next++ % 8];
  memcpy(b, tmp, sizeof tmp);
  return b;
}

/* No "<anything>.tmp.<pid>" file is left in the directory. */
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

static char *read_all(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)*len + 1);
  if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

#define assert_msg(needle)                                                                   \
  do {                                                                                       \
    if (!strstr(tf_errmsg(), (needle)))                                                      \
      fail_msg("message '%s' lacks '%s'", tf_errmsg(), (needle));                            \
  } while (0)

/* ---- a small model --------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  int ndim;
  int64_t shape[4];
} pdecl;

static const pdecl ARCH[] = {{"embed.W", 2, {3, 4}},
                             {"embed.b", 1, {4}},
                             {"block0.conv", 4, {2, 3, 3, 3}},
                             {"block0.s", 3, {2, 3, 2}}};
enum { NARCH = sizeof ARCH / sizeof ARCH[0] };

static tf_params *build(const pdecl *decl, int n) {
  tf_params *p = tf_params_create();
  assert_non_null(p);
  for (int i = 0; i < n; i++)
    assert_non_null(tf_params_declare(p, decl[i].name, decl[i].ndim, decl[i].shape));
  assert_int_equal(tf_params_finalize(p), TF_OK);
  return p;
}

/* Raw random bit patterns (NaN payloads, infinities, denormals included), then explicit
 * denormals and signed zeros: a round trip must reproduce every bit. */
static void fill_bits(tf_params *p, uint64_t seed) {
  tf_rng r;
  tf_rng_init(&r, seed, 0, TF_RNG_TEST, 0);
  for (int i = 0; i < tf_params_count(p); i++) {
    tf_tensor *t = tf_params_tensor(p, i);
    for (int64_t k = 0; k < t->n; k++) {
      if (sizeof(tf_real) == 4) {
        uint32_t u = tf_rng_u32(&r);
        memcpy(&t->data[k], &u, sizeof u);
      } else {
        uint64_t u = tf_rng_u64(&r);
        memcpy(&t->data[k], &u, sizeof u);
      }
    }
  }
  /* a checkpoint holds finite values only (DESIGN.md section 12): random exponents, but not
   * the all-ones one of Inf and NaN */
  for (int i = 0; i < tf_params_count(p); i++) {
    tf_tensor *w = tf_params_tensor(p, i);
    for (int64_t k = 0; k < w->n; k++)
      if (!isfinite(w->data[k])) w->data[k] = (tf_real)ldexp((double)k + 0.5, -(int)(k % 60));
  }
  tf_tensor *t = tf_params_tensor(p, 0);
  t->data[0] = (tf_real)(FLT_MIN / 8);     /* denormal */
  t->data[1] = -(tf_real)(FLT_MIN / 1024); /* denormal */
  t->data[2] = (tf_real)-0.0;
  t->data[3] = (tf_real)2.385;
}

static tf_optim *make_optim(int64_t n, uint64_t seed) {
  tf_optim_config cfg = tf_optim_defaults(TF_OPTIM_ADAMW);
  tf_optim *o = tf_optim_create(&cfg, n);
  assert_non_null(o);
  tf_rng r;
  tf_rng_init(&r, seed, 0, TF_RNG_TEST, 1);
  double *m = tf_optim_m(o), *v = tf_optim_v(o);
  for (int64_t i = 0; i < n; i++) {
    m[i] = tf_rng_normal(&r) * 1e-3;
    v[i] = tf_rng_uniform(&r) * 1e-7;
  }
  m[0] = 4.9406564584124654e-324; /* smallest denormal */
  v[1] = -0.0;
  tf_optim_set_steps(o, 1234);
  return o;
}

static void assert_params_bits_equal(tf_params *a, tf_params *b) {
  assert_int_equal(tf_params_count(a), tf_params_count(b));
  for (int i = 0; i < tf_params_count(a); i++) {
    tf_tensor *x = tf_params_tensor(a, i), *y = tf_params_find(b, tf_params_name(a, i));
    assert_non_null(y);
    assert_int_equal(x->n, y->n);
    assert_memory_equal(x->data, y->data, (size_t)x->n * sizeof(tf_real));
  }
}

static const char *CONFIG =
    "[model]\nname = rqs-flow\nblocks = 8\n# comment with = signs == here\n"
    "[physics]\nmodule = ising\nlabel = Größe π ≈ 3.14159 ∑ 🙂\n"
    "key = a=b=c\n\n\ttrailing whitespace   \n";

static void fill_meta(tf_checkpoint_meta *m) {
  tf_checkpoint_meta_init(m);
  m->step = 987654321012LL;
  m->skipped_steps = 17;
  m->consecutive_skips = 2;
  m->rng_seed = 0xfedcba9876543210ULL;
  for (int i = 0; i < TF_CHECKPOINT_RNG_WORDS; i++)
    m->rng_pos[i] = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
  m->best_val_loss = -1.2345678901234567;
  snprintf(m->model, sizeof m->model, "rqs-flow");
  assert_int_equal(tf_checkpoint_meta_set_config(m, CONFIG), TF_OK);
  assert_int_equal(tf_checkpoint_meta_set_f64(m, "ess_fraction", 0.8125), TF_OK);
  assert_int_equal(tf_checkpoint_meta_set_f64(m, "tiny", 1e-310), TF_OK);
  assert_int_equal(tf_checkpoint_meta_set_i64(m, "epoch", INT64_MIN), TF_OK);
  assert_int_equal(tf_checkpoint_meta_set_i64(m, "lr_restarts", 3), TF_OK);
}

typedef struct {
  int64_t n, d;
  double *x, *c, *lp, *lq;
} sample_data;
static sample_data make_samples(int64_t n, int64_t d, uint64_t seed);
static void free_samples(sample_data *s);
static long stderr_bytes_during(void (*f)(fixture *), fixture *fx);

/* ---- checkpoints ----------------------------------------------------------------------------- */

static void test_checkpoint_round_trip(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "ckpt.h5");
  tf_params *a = build(ARCH, NARCH), *b = build(ARCH, NARCH);
  fill_bits(a, 11);
  tf_optim *oa = make_optim(tf_params_size(a), 12), *ob = make_optim(tf_params_size(b), 99);
  tf_checkpoint_meta m, back;
  fill_meta(&m);
  assert_int_equal(tf_checkpoint_save(path, a, oa, &m), TF_OK);
  assert_int_equal(count_tmp_files(fx->dir), 0);

  assert_int_equal(tf_checkpoint_load(path, b, ob, &back), TF_OK);
  assert_params_bits_equal(a, b);
  assert_memory_equal(tf_optim_m(oa), tf_optim_m(ob), (size_t)tf_params_size(a) * sizeof(double));
  assert_memory_equal(tf_optim_v(oa), tf_optim_v(ob), (size_t)tf_params_size(a) * sizeof(double));
  assert_int_equal(tf_optim_steps(ob), 1234);

  assert_int_equal(back.step, m.step);
  assert_int_equal(back.skipped_steps, 17);
  assert_int_equal(back.consecutive_skips, 2);
  assert_true(back.rng_seed == m.rng_seed);
  assert_memory_equal(back.rng_pos, m.rng_pos, sizeof m.rng_pos);
  assert_memory_equal(&back.best_val_loss, &m.best_val_loss, sizeof(double));
  assert_string_equal(back.model, "rqs-flow");
  assert_string_equal(back.config_text, CONFIG);
  assert_string_equal(back.version, tf_h5_version());
  assert_string_equal(back.precision, TF_REAL_NAME);
  assert_int_equal(strlen(back.created), 20); /* YYYY-MM-DDThh:mm:ssZ */
  assert_int_equal(back.created[19], 'Z');
  assert_int_equal(back.n_extra, 4);
  double f;
  int64_t i;
  assert_int_equal(tf_checkpoint_meta_get_f64(&back, "ess_fraction", &f), TF_OK);
  assert_true(f == 0.8125);
  assert_int_equal(tf_checkpoint_meta_get_f64(&back, "tiny", &f), TF_OK);
  assert_true(f == 1e-310);
  assert_int_equal(tf_checkpoint_meta_get_i64(&back, "epoch", &i), TF_OK);
  assert_true(i == INT64_MIN);
  assert_int_equal(tf_checkpoint_meta_get_i64(&back, "lr_restarts", &i), TF_OK);
  assert_int_equal(i, 3);

  /* Overwriting an existing checkpoint works and leaves no temporary either. */
  m.step = 5;
  m.skipped_steps = 2; /* a possible state: skips are steps too */
  m.consecutive_skips = 1;
  assert_int_equal(tf_checkpoint_save(path, a, NULL, &m), TF_OK);
  assert_int_equal(count_tmp_files(fx->dir), 0);
  tf_checkpoint_meta_clear(&back);
  assert_int_equal(tf_checkpoint_read_meta(path, &back), TF_OK);
  assert_int_equal(back.step, 5);

  tf_checkpoint_meta_clear(&back);
  tf_checkpoint_meta_clear(&m);
  tf_optim_destroy(oa);
  tf_optim_destroy(ob);
  tf_params_destroy(a);
  tf_params_destroy(b);
}

static void test_checkpoint_config_only(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "cfg.h5");
  tf_params *a = build(ARCH, 2);
  /* 200 KB of config: more than HDF5's 64 KiB limit on an attribute's inline size */
  const size_t big = 200000;
  char *text = malloc(big + 1);
  assert_non_null(text);
  static const char unit[] = "key = value\n[sec]\xc3\xa9=\n"; /* 21 bytes, a UTF-8 'é' */
  for (size_t k = 0; k < big; k++) text[k] = unit[k % (sizeof unit - 1)];
  text[big] = '\0';
  tf_checkpoint_meta m;
  tf_checkpoint_meta_init(&m);
  assert_int_equal(tf_checkpoint_meta_set_config(&m, text), TF_OK);
  assert_int_equal(tf_checkpoint_save(path, a, NULL, &m), TF_OK);
  char *back = NULL;
  assert_int_equal(tf_checkpoint_read_config(path, &back), TF_OK);
  assert_string_equal(back, text);
  free(back);

  /* no config at all reads back as "" */
  tf_checkpoint_meta_clear(&m);
  assert_int_equal(tf_checkpoint_save(path, a, NULL, NULL), TF_OK);
  assert_int_equal(tf_checkpoint_read_config(path, &back), TF_OK);
  assert_string_equal(back, "");
  free(back);
  assert_int_equal(tf_checkpoint_read_meta(path, &m), TF_OK);
  assert_true(isinf(m.best_val_loss) && m.best_val_loss > 0);
  assert_int_equal(m.n_extra, 0);
  tf_checkpoint_meta_clear(&m);
  free(text);
  tf_params_destroy(a);
}

static void test_checkpoint_wrong_architecture(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "arch.h5");
  tf_params *a = build(ARCH, NARCH);
  fill_bits(a, 3);
  tf_optim *oa = make_optim(tf_params_size(a), 4);
  assert_int_equal(tf_checkpoint_save(path, a, oa, NULL), TF_OK);

  /* shape mismatch: names the dataset and both shapes; the model is left as it was */
  pdecl wide[NARCH];
  memcpy(wide, ARCH, sizeof wide);
  wide[0].shape[1] = 5;
  tf_params *b = build(wide, NARCH);
  tf_params_tensor(b, 0)->data[0] = (tf_real)7.5;
  assert_int_equal(tf_checkpoint_load(path, b, NULL, NULL), TF_EFORMAT);
  assert_msg(path);
  assert_msg("/params/embed.W");
  assert_msg("(3, 4)");
  assert_msg("(3, 5)");
  assert_true(tf_params_tensor(b, 0)->data[0] == (tf_real)7.5);
  tf_params_destroy(b);

  /* the model has a parameter the file lacks */
  pdecl more[NARCH + 1];
  memcpy(more, ARCH, sizeof ARCH);
  more[NARCH] = (pdecl){"head.W", 2, {4, 2}};
  b = build(more, NARCH + 1);
  assert_int_equal(tf_checkpoint_load(path, b, NULL, NULL), TF_EFORMAT);
  assert_msg("/params/head.W");
  assert_msg("not found");
  assert_msg("(4, 2)");
  tf_params_destroy(b);

  /* the file has a parameter the model lacks; found only after every read succeeded, so this
   * also checks that nothing is copied before the whole file is validated */
  b = build(ARCH, NARCH - 1);
  tf_params_tensor(b, 1)->data[2] = (tf_real)-3.25;
  assert_int_equal(tf_checkpoint_load(path, b, NULL, NULL), TF_EFORMAT);
  assert_msg("/params/block0.s");
  assert_msg("not a parameter of the model");
  assert_true(tf_params_tensor(b, 1)->data[2] == (tf_real)-3.25);
  tf_params_destroy(b);

  /* optimizer of another size */
  b = build(ARCH, NARCH);
  tf_optim *ob = make_optim(tf_params_size(b) + 16, 5);
  assert_int_equal(tf_checkpoint_load(path, b, ob, NULL), TF_EFORMAT);
  assert_msg("/optim/m");
  char want[64];
  snprintf(want, sizeof want, "(%lld)", (long long)tf_params_size(b) + 16);
  assert_msg(want);
  assert_int_equal(tf_optim_steps(ob), 1234); /* make_optim's; untouched */
  tf_optim_destroy(ob);

  /* an optimizer asked for, but the checkpoint has none */
  assert_int_equal(tf_checkpoint_save(path, a, NULL, NULL), TF_OK);
  ob = make_optim(tf_params_size(b), 5);
  assert_int_equal(tf_checkpoint_load(path, b, ob, NULL), TF_EFORMAT);
  assert_msg("/optim");
  tf_optim_destroy(ob);

  /* saving with a mismatched optimizer is refused before anything is written */
  ob = make_optim(3, 5);
  assert_int_equal(tf_checkpoint_save(P(fx, "never.h5"), a, ob, NULL), TF_EINVAL);
  assert_int_equal(access(P(fx, "never.h5"), F_OK), -1);
  tf_optim_destroy(ob);

  tf_params_destroy(b);
  tf_optim_destroy(oa);
  tf_params_destroy(a);
}

/* Same parameters declared in another order: values by name, moments moved along with them. */
static void test_checkpoint_other_order(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "order.h5");
  tf_params *a = build(ARCH, NARCH);
  fill_bits(a, 31);
  tf_optim *oa = make_optim(tf_params_size(a), 32);
  assert_int_equal(tf_checkpoint_save(path, a, oa, NULL), TF_OK);
  pdecl rev[NARCH];
  for (int i = 0; i < NARCH; i++) rev[i] = ARCH[NARCH - 1 - i];
  tf_params *b = build(rev, NARCH);
  assert_int_not_equal(tf_params_offset(a, 0), tf_params_offset(b, tf_params_count(b) - 1));
  tf_optim *ob = make_optim(tf_params_size(b), 33);
  assert_int_equal(tf_checkpoint_load(path, b, ob, NULL), TF_OK);
  assert_params_bits_equal(a, b);
  for (int i = 0; i < NARCH; i++) {
    const int j = NARCH - 1 - i; /* the same parameter in b */
    assert_string_equal(tf_params_name(a, i), tf_params_name(b, j));
    const size_t bytes = (size_t)tf_params_tensor(a, i)->n * sizeof(double);
    assert_memory_equal(tf_optim_m(oa) + tf_params_offset(a, i),
                        tf_optim_m(ob) + tf_params_offset(b, j), bytes);
    assert_memory_equal(tf_optim_v(oa) + tf_params_offset(a, i),
                        tf_optim_v(ob) + tf_params_offset(b, j), bytes);
  }
  tf_optim_destroy(oa);
  tf_optim_destroy(ob);
  tf_params_destroy(a);
  tf_params_destroy(b);
}

static tf_optim *make_averaging_optim(int64_t n) {
  tf_optim_config cfg = tf_optim_defaults(TF_OPTIM_ADAM);
  cfg.ema_decay = 0.99;
  tf_optim *o = tf_optim_create(&cfg, n);
  assert_non_null(o);
  assert_non_null(tf_optim_ema(o));
  return o;
}

/* The parameter average: saved with the moments, moved with its parameters when the order
 * differs, loaded as the weights by tf_checkpoint_load_averaged, reset to the parameters by a
 * run that turns averaging on for a checkpoint without one. */
static void test_checkpoint_average(void **state) {
  fixture *fx = *state;
  const char *with = P(fx, "ema.h5"), *without = P(fx, "noema.h5");
  tf_params *a = build(ARCH, NARCH);
  fill_bits(a, 41);
  const int64_t n = tf_params_size(a);
  tf_optim *oa = make_averaging_optim(n);
  double *e = tf_optim_ema(oa);
  for (int64_t i = 0; i < n; i++) e[i] = 0.25 + 1e-3 * (double)i + 1e-12; /* not a tf_real */
  assert_int_equal(tf_checkpoint_save(with, a, oa, NULL), TF_OK);

  /* into a run that keeps averaging, parameters declared in reverse order */
  pdecl rev[NARCH];
  for (int i = 0; i < NARCH; i++) rev[i] = ARCH[NARCH - 1 - i];
  tf_params *b = build(rev, NARCH);
  tf_optim *ob = make_averaging_optim(tf_params_size(b));
  assert_int_equal(tf_checkpoint_load(with, b, ob, NULL), TF_OK);
  assert_params_bits_equal(a, b);
  for (int i = 0; i < NARCH; i++) {
    const int j = NARCH - 1 - i;
    assert_memory_equal(e + tf_params_offset(a, i), tf_optim_ema(ob) + tf_params_offset(b, j),
                        (size_t)tf_params_tensor(a, i)->n * sizeof(double));
  }
  /* as the weights of a finished model: the average, rounded to tf_real */
  int averaged = -1;
  assert_int_equal(tf_checkpoint_load_averaged(with, b, &averaged, NULL), TF_OK);
  assert_int_equal(averaged, 1);
  for (int i = 0; i < NARCH; i++) {
    const tf_tensor *tb = tf_params_tensor(b, NARCH - 1 - i);
    for (int64_t k = 0; k < tb->n; k++)
      assert_true(tb->data[k] == (tf_real)e[tf_params_offset(a, i) + k]);
  }
  /* a run without averaging ignores it */
  tf_optim *plain = make_optim(n, 7);
  tf_params *c = build(ARCH, NARCH);
  assert_int_equal(tf_checkpoint_load(with, c, plain, NULL), TF_OK);
  assert_params_bits_equal(a, c);

  /* a checkpoint without an average: raw weights; averaging starts from them */
  assert_int_equal(tf_checkpoint_save(without, a, plain, NULL), TF_OK);
  assert_int_equal(tf_checkpoint_load_averaged(without, b, &averaged, NULL), TF_OK);
  assert_int_equal(averaged, 0);
  assert_params_bits_equal(a, b);
  assert_int_equal(tf_checkpoint_load(without, b, ob, NULL), TF_OK);
  for (int64_t i = 0; i < tf_params_size(b); i++)
    assert_true(tf_optim_ema(ob)[i] == (double)tf_params_values(b)[i]);

  tf_optim_destroy(plain);
  tf_optim_destroy(oa);
  tf_optim_destroy(ob);
  tf_params_destroy(a);
  tf_params_destroy(b);
  tf_params_destroy(c);
}

/* Runs f with stderr captured; returns the number of bytes HDF5 (or anything) printed. */
static long stderr_bytes_during(void (*f)(fixture *), fixture *fx) {
  const char *cap = P(fx, "stderr.txt");
  fflush(stderr);
  int saved = dup(2);
  int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  f(fx);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  long len = 0;
  char *text = read_all(cap, &len);
  if (text && len > 0) print_message("captured stderr:\n%.*s\n", (int)len, text);
  free(text);
  unlink(cap);
  return len;
}

static void bad_files(fixture *fx) {
  tf_params *p = build(ARCH, NARCH);
  const char *path = P(fx, "trunc.h5");
  fill_bits(p, 8);
  assert_int_equal(tf_checkpoint_save(path, p, NULL, NULL), TF_OK);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  const off_t full = sb.st_size;
  /* half first (the case asked for), then cuts through the superblock and near the end */
  const off_t cuts[] = {full / 2, 0, 7, 40, 100, 700, full - 1};
  for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
    assert_int_equal(tf_checkpoint_save(path, p, NULL, NULL), TF_OK);
    assert_int_equal(truncate(path, cuts[k]), 0);
    const int st = tf_checkpoint_load(path, p, NULL, NULL);
    assert_true(st == TF_EFORMAT || st == TF_EIO);
    assert_msg(path);
    char *text = NULL;
    assert_int_not_equal(tf_checkpoint_read_config(path, &text), TF_OK);
    assert_null(text);
    int64_t r, c;
    double *x = NULL;
    assert_int_not_equal(tf_h5_read_matrix(path, "params/embed.W", 0, &r, &c, &x), TF_OK);
    assert_null(x);
  }
  /* not an HDF5 file */
  const char *txt = P(fx, "notes.h5");
  write_text(txt, "[model]\nname = x\n");
  assert_int_equal(tf_checkpoint_load(txt, p, NULL, NULL), TF_EFORMAT);
  assert_msg(txt);
  assert_msg("not an HDF5 file");
  tf_samples s;
  assert_int_equal(tf_samples_read(txt, &s), TF_EFORMAT);
  assert_null(s.x);
  /* missing file */
  const char *missing = P(fx, "no/such/ckpt.h5");
  assert_int_equal(tf_checkpoint_load(missing, p, NULL, NULL), TF_EIO);
  assert_msg(missing);
  assert_msg("No such file");
  int yes = 1;
  assert_int_equal(tf_h5_has_dataset(missing, "x", &yes), TF_EIO);
  /* a directory */
  assert_int_equal(tf_checkpoint_load(fx->dir, p, NULL, NULL), TF_EIO);
  assert_msg("directory");
  /* a sample file is not a checkpoint */
  const double x1[2] = {1, 2}, c1 = 1, lp = -1;
  tf_sample_block b = {1, x1, &c1, &lp, NULL, NULL};
  assert_int_equal(tf_samples_write(P(fx, "s.h5"), 2, NULL, &b), TF_OK);
  assert_int_equal(tf_checkpoint_load(P(fx, "s.h5"), p, NULL, NULL), TF_EFORMAT);
  assert_msg("expected 'tradeflow-checkpoint', found 'tradeflow-samples'");
  tf_params_destroy(p);
}

/* Truncated, non-HDF5, missing: clear errors, no crash, and nothing printed by HDF5. */
static void test_bad_files(void **state) {
  fixture *fx = *state;
  assert_int_equal(stderr_bytes_during(bad_files, fx), 0);
}

/* A save that hits a file-size limit (the kernel refuses the write with EFBIG, as a full disk
 * refuses it with ENOSPC) at several points fails with TF_EIO naming the path, leaves the
 * previous file byte for byte and no temporary, and leaves no HDF5 object open. */
static void write_failures(fixture *fx, const char *path, tf_params *a) {
  pdecl big[1] = {{"huge", 2, {256, 512}}}; /* 512 KiB in float32 */
  tf_params *h = build(big, 1);
  tf_optim *o = make_optim(tf_params_size(h), 9);
  tf_checkpoint_meta m;
  fill_meta(&m);
  assert_int_equal(tf_checkpoint_save(path, a, NULL, NULL), TF_OK);
  long len0, len1;
  char *before = read_all(path, &len0);
  assert_non_null(before);
  sample_data sd = make_samples(8000, 4, 3);
  const char *sp = P(fx, "full.h5");
  struct rlimit old, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  const rlim_t limits[] = {0, 1, 512, 4096, 65536, 300000};
  for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
    lim = old;
    lim.rlim_cur = limits[k];
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    const int st = tf_checkpoint_save(path, h, o, &m);
    tf_sample_writer *w = NULL;
    int ss = tf_sample_writer_open(&w, sp, sd.d, NULL);
    for (int64_t r0 = 0; ss == TF_OK && r0 < sd.n; r0 += 2000) {
      tf_sample_block b = {2000, sd.x + r0 * sd.d, sd.c + r0, sd.lp + r0, sd.lq + r0, NULL};
      ss = tf_sample_writer_append(w, &b);
    }
    const int sc = tf_sample_writer_close(w);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(st, TF_EIO);
    assert_int_equal(ss, TF_OK);
    assert_int_equal(sc, TF_EIO);
    assert_msg(sp);
    assert_msg("File too large");
    char *after = read_all(path, &len1);
    assert_non_null(after);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, (size_t)len0);
    free(after);
    assert_int_equal(access(sp, F_OK), -1);
    assert_int_equal(count_tmp_files(fx->dir), 0);
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
  }
  signal(SIGXFSZ, prev);
  free(before);
  free_samples(&sd);
  tf_checkpoint_meta_clear(&m);
  tf_optim_destroy(o);
  tf_params_destroy(h);
}

static void write_failures_quiet(fixture *fx) {
  tf_params *a = build(ARCH, NARCH);
  fill_bits(a, 5);
  write_failures(fx, P(fx, "scratch.h5"), a);
  tf_params_destroy(a);
}

static void test_atomic_save(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "keep.h5");
  tf_params *a = build(ARCH, NARCH);
  fill_bits(a, 21);
  tf_checkpoint_meta m;
  tf_checkpoint_meta_init(&m);
  m.step = 100;
  assert_int_equal(tf_checkpoint_save(path, a, NULL, &m), TF_OK);
  long len0;
  char *before = read_all(path, &len0);
  assert_non_null(before);

  /* 1. the temporary cannot be created (a directory is in its way) */
  char tmp[700];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  assert_int_equal(mkdir(tmp, 0700), 0);
  m.step = 200;
  assert_int_equal(tf_checkpoint_save(path, a, NULL, &m), TF_EIO);
  assert_msg(path);
  assert_int_equal(rmdir(tmp), 0);

  /* 2. the disk "fills up" during the write (see write_failures) */
  write_failures(fx, P(fx, "full-disk.h5"), a);

  /* 3. a missing directory */
  const char *nodir = P(fx, "missing-dir/ckpt.h5");
  assert_int_equal(tf_checkpoint_save(nodir, a, NULL, &m), TF_EIO);
  assert_msg(nodir);
  assert_msg("No such file or directory");

  /* 4. the target is a directory */
  assert_int_equal(tf_checkpoint_save(fx->dir, a, NULL, &m), TF_EIO);
  assert_msg("directory");

  /* 5. a read-only directory (root ignores permissions, so only as a normal user) */
  if (geteuid() != 0) {
    const char *ro = P(fx, "ro");
    assert_int_equal(mkdir(ro, 0500), 0);
    assert_int_equal(tf_checkpoint_save(P(fx, "ro/x.h5"), a, NULL, &m), TF_EIO);
    assert_msg("Permission denied");
  }

  /* the old checkpoint is intact, byte for byte, and still loads */
  long len1;
  char *after = read_all(path, &len1);
  assert_non_null(after);
  assert_int_equal(len0, len1);
  assert_memory_equal(before, after, (size_t)len0);
  tf_checkpoint_meta back;
  assert_int_equal(tf_checkpoint_load(path, a, NULL, &back), TF_OK);
  assert_int_equal(back.step, 100);
  assert_int_equal(count_tmp_files(fx->dir), 0);
  tf_checkpoint_meta_clear(&back);
  free(before);
  free(after);
  tf_params_destroy(a);
  /* HDF5 prints nothing while failing */
  assert_int_equal(stderr_bytes_during(write_failures_quiet, fx), 0);
}

/* Write a checkpoint by hand: parameters in the other precision (as the other build would), or
 * of an integer type. */
static void write_manual_checkpoint(const char *path, hid_t ftype, hid_t mtype, const void *w,
                                    const void *b, const char *format, int64_t version) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, strlen(format));
  H5Tset_strpad(str, H5T_STR_NULLPAD); /* as h5py writes numpy.bytes_ */
  hid_t sc = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "format", str, sc, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, str, format);
  H5Aclose(a);
  a = H5Acreate2(f, "format_version", H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &version);
  H5Aclose(a);
  hid_t g = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dw[2] = {3, 4}, db[1] = {4};
  hid_t s = H5Screate_simple(2, dw, NULL);
  hid_t d = H5Dcreate2(g, "embed.W", ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) >= 0);
  H5Dclose(d);
  H5Sclose(s);
  s = H5Screate_simple(1, db, NULL);
  d = H5Dcreate2(g, "embed.b", ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0);
  H5Dclose(d);
  H5Sclose(s);
  H5Gclose(g);
  H5Sclose(sc);
  H5Tclose(str);
  H5Fclose(f);
}

static void test_checkpoint_other_precision(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "other.h5");
  other_real w[12], b[4];
  for (int i = 0; i < 12; i++) w[i] = (other_real)(0.1 * (i + 1) - 0.55);
  for (int i = 0; i < 4; i++) b[i] = (other_real)(1.0 / 3.0 * (i - 2));
  write_manual_checkpoint(path, OTHER_FILE, OTHER_MEM, w, b, TF_CHECKPOINT_FORMAT, 1);
  tf_params *p = build(ARCH, 2);
  tf_checkpoint_meta m;
  assert_int_equal(tf_checkpoint_load(path, p, NULL, &m), TF_OK);
  for (int i = 0; i < 12; i++) assert_true(tf_params_tensor(p, 0)->data[i] == (tf_real)w[i]);
  for (int i = 0; i < 4; i++) assert_true(tf_params_tensor(p, 1)->data[i] == (tf_real)b[i]);
  /* a minimal hand-made checkpoint: the optional meta takes its defaults */
  assert_int_equal(m.step, 0);
  assert_string_equal(m.model, "");
  assert_null(m.config_text);
  tf_checkpoint_meta_clear(&m);

  /* integer parameters are refused */
  const int32_t wi[12] = {0}, bi[4] = {0};
  write_manual_checkpoint(path, H5T_STD_I32LE, H5T_NATIVE_INT32, wi, bi, TF_CHECKPOINT_FORMAT, 1);
  assert_int_equal(tf_checkpoint_load(path, p, NULL, NULL), TF_EFORMAT);
  assert_msg("/params/embed.W");
  assert_msg("found int32");

  /* another format, and a newer format version */
  write_manual_checkpoint(path, OTHER_FILE, OTHER_MEM, w, b, "someone-else", 1);
  assert_int_equal(tf_checkpoint_load(path, p, NULL, NULL), TF_EFORMAT);
  assert_msg("'someone-else'");
  write_manual_checkpoint(path, OTHER_FILE, OTHER_MEM, w, b, TF_CHECKPOINT_FORMAT, 99);
  assert_int_equal(tf_checkpoint_load(path, p, NULL, NULL), TF_EUNSUP);
  assert_msg("format_version 99");
  tf_params_destroy(p);
}

static void test_meta_extras(void **state) {
  (void)state;
  tf_checkpoint_meta m;
  tf_checkpoint_meta_init(&m);
  double f;
  int64_t i;
  assert_int_equal(tf_checkpoint_meta_set_f64(&m, "a", 1.5), TF_OK);
  assert_int_equal(tf_checkpoint_meta_set_f64(&m, "a", 2.5), TF_OK); /* overwrite */
  assert_int_equal(m.n_extra, 1);
  assert_int_equal(tf_checkpoint_meta_get_f64(&m, "a", &f), TF_OK);
  assert_true(f == 2.5);
  assert_int_equal(tf_checkpoint_meta_get_i64(&m, "a", &i), TF_EINVAL);
  assert_msg("float64");
  assert_int_equal(tf_checkpoint_meta_get_f64(&m, "b", &f), TF_EINVAL);
  assert_msg("'b'");
  assert_int_equal(tf_checkpoint_meta_set_i64(&m, "", 1), TF_EINVAL);
  assert_int_equal(tf_checkpoint_meta_set_i64(&m, "bad\nkey", 1), TF_EINVAL);
  char key[80];
  memset(key, 'k', sizeof key);
  key[TF_CHECKPOINT_KEY_LEN] = '\0';
  assert_int_equal(tf_checkpoint_meta_set_i64(&m, key, 1), TF_EINVAL);
  for (int k = 1; k < TF_CHECKPOINT_MAX_EXTRA; k++) {
    snprintf(key, sizeof key, "k%d", k);
    assert_int_equal(tf_checkpoint_meta_set_i64(&m, key, k), TF_OK);
  }
  assert_int_equal(tf_checkpoint_meta_set_i64(&m, "one-too-many", 1), TF_ERANGE);
  assert_int_equal(tf_checkpoint_meta_get_f64(&m, "k7", &f), TF_OK); /* int converts */
  assert_true(f == 7.0);
  tf_checkpoint_meta_clear(&m);
  tf_checkpoint_meta_clear(NULL);
}

/* ---- sample files ---------------------------------------------------------------------------- */

static sample_data make_samples(int64_t n, int64_t d, uint64_t seed) {
  sample_data s = {n, d, malloc((size_t)(n * d) * 8), malloc((size_t)n * 8), malloc((size_t)n * 8),
                   malloc((size_t)n * 8)};
  assert_true(s.x && s.c && s.lp && s.lq);
  tf_rng r;
  tf_rng_init(&r, seed, 0, TF_RNG_TEST, 2);
  tf_rng_fill_normal_d(&r, s.x, n * d);
  for (int64_t i = 0; i < n; i++) {
    s.c[i] = 0.5 + tf_rng_uniform(&r);
    s.lp[i] = -1.0 - 3 * tf_rng_uniform(&r);
    s.lq[i] = i % 7 == 3 ? NAN : i % 11 == 5 ? -INFINITY : -2.0 + tf_rng_normal(&r);
  }
  return s;
}

static void free_samples(sample_data *s) {
  free(s->x);
  free(s->c);
  free(s->lp);
  free(s->lq);
}

static void assert_samples_equal(const sample_data *want, const tf_samples *got) {
  assert_int_equal(got->n, want->n);
  assert_int_equal(got->d, want->d);
  assert_memory_equal(got->x, want->x, (size_t)(want->n * want->d) * 8);
  assert_memory_equal(got->c, want->c, (size_t)want->n * 8);
  assert_memory_equal(got->log_p, want->lp, (size_t)want->n * 8);
  for (int64_t i = 0; i < want->n; i++) {
    if (isnan(want->lq[i])) {
      assert_true(isnan(got->log_q[i]) && isnan(got->log_w[i]));
    } else {
      assert_true(got->log_q[i] == want->lq[i]);
      assert_true(got->log_w[i] == want->lq[i] - want->lp[i]);
    }
  }
}

static void test_samples_round_trip(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "samples.h5");
  sample_data sd = make_samples(3000, 3, 5);
  tf_sample_attrs at = {"rqs-flow", "ising", "beta=0.44 L=8", CONFIG, 0};
  tf_sample_block all = {sd.n, sd.x, sd.c, sd.lp, sd.lq, NULL};
  assert_int_equal(tf_samples_write(path, sd.d, &at, &all), TF_OK);
  assert_int_equal(count_tmp_files(fx->dir), 0);
  tf_samples s;
  assert_int_equal(tf_samples_read(path, &s), TF_OK);
  assert_samples_equal(&sd, &s);
  assert_string_equal(s.model, "rqs-flow");
  assert_string_equal(s.physics, "ising");
  assert_string_equal(s.physics_params, "beta=0.44 L=8");
  assert_string_equal(s.config_text, CONFIG);
  assert_string_equal(s.version, tf_h5_version());
  assert_int_equal(strlen(s.created), 20);
  tf_samples_free(&s);
  tf_samples_free(&s); /* idempotent */

  /* streamed in uneven blocks (one empty), uncompressed: the same file content */
  const char *p2 = P(fx, "stream.h5");
  tf_sample_attrs at2 = {NULL, NULL, NULL, NULL, -1};
  tf_sample_writer *w = NULL;
  assert_int_equal(tf_sample_writer_open(&w, p2, sd.d, &at2), TF_OK);
  const int64_t cuts[] = {0, 1, 1, 700, 2999, 3000};
  for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++) {
    const int64_t r0 = cuts[k], n = cuts[k + 1] - cuts[k];
    double lw[3000];
    for (int64_t i = 0; i < n; i++) lw[i] = sd.lq[r0 + i] - sd.lp[r0 + i];
    tf_sample_block b = {n, sd.x + r0 * sd.d, sd.c + r0, sd.lp + r0, sd.lq + r0,
                         k % 2 ? lw : NULL};
    assert_int_equal(tf_sample_writer_append(w, &b), TF_OK);
    /* not visible under its name until close */
    assert_int_equal(access(p2, F_OK), -1);
  }
  assert_int_equal(tf_sample_writer_rows(w), 3000);
  assert_int_equal(tf_sample_writer_close(w), TF_OK);
  assert_int_equal(count_tmp_files(fx->dir), 0);
  assert_int_equal(tf_samples_read(p2, &s), TF_OK);
  assert_samples_equal(&sd, &s);
  assert_string_equal(s.model, "");
  tf_samples_free(&s);

  /* h5py-style access to the same data: rows through the matrix reader */
  tf_h5_matrix *m;
  assert_int_equal(tf_h5_matrix_open(&m, path, "x"), TF_OK);
  assert_int_equal(tf_h5_matrix_rows(m), 3000);
  assert_int_equal(tf_h5_matrix_cols(m), 3);
  double rows[6];
  assert_int_equal(tf_h5_matrix_read(m, 2998, 2, TF_H5_FINITE, rows), TF_OK);
  assert_memory_equal(rows, sd.x + 2998 * 3, sizeof rows);
  tf_h5_matrix_close(m);

  /* abort: neither the file nor a temporary remains */
  const char *p3 = P(fx, "aborted.h5");
  assert_int_equal(tf_sample_writer_open(&w, p3, sd.d, NULL), TF_OK);
  assert_int_equal(tf_sample_writer_append(w, &all), TF_OK);
  tf_sample_writer_abort(w);
  assert_int_equal(access(p3, F_OK), -1);
  assert_int_equal(count_tmp_files(fx->dir), 0);

  /* an empty sample file is valid */
  tf_sample_block none = {0, NULL, NULL, NULL, NULL, NULL};
  assert_int_equal(tf_samples_write(p3, 4, NULL, &none), TF_OK);
  assert_int_equal(tf_samples_read(p3, &s), TF_OK);
  assert_int_equal(s.n, 0);
  assert_int_equal(s.d, 4);
  tf_samples_free(&s);
  free_samples(&sd);
}

static void test_sample_writer_rejects(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "bad.h5");
  sample_data sd = make_samples(10, 2, 6);
  tf_sample_writer *w;
  assert_int_equal(tf_sample_writer_open(&w, path, 2, NULL), TF_OK);
  sd.x[7] = NAN; /* row 3, column 1 */
  tf_sample_block b = {10, sd.x, sd.c, sd.lp, sd.lq, NULL};
  assert_int_equal(tf_sample_writer_append(w, &b), TF_ENUMERIC);
  assert_msg("x[3, 1]");
  sd.x[7] = 0.25;
  double lw[10];
  for (int i = 0; i < 10; i++) lw[i] = sd.lq[i] - sd.lp[i];
  lw[4] += 1e-3;
  b.log_w = lw;
  assert_int_equal(tf_sample_writer_append(w, &b), TF_EINVAL);
  assert_msg("log_w[4]");
  /* validation failures write nothing: the writer goes on */
  b.log_w = NULL;
  assert_int_equal(tf_sample_writer_append(w, &b), TF_OK);
  assert_int_equal(tf_sample_writer_close(w), TF_OK);
  assert_int_equal(tf_sample_writer_open(&w, path, 0, NULL), TF_EINVAL);
  assert_null(w);
  tf_sample_attrs at = {NULL, NULL, NULL, NULL, 12};
  assert_int_equal(tf_sample_writer_open(&w, path, 2, &at), TF_EINVAL);
  assert_msg("deflate");
  free_samples(&sd);
}

/* Replace dataset `name` of a sample file by one of `n` float64 values equal to `value`. */
static void replace_1d(const char *path, const char *name, hsize_t n, double value) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
  double *v = malloc(n * sizeof *v);
  for (hsize_t i = 0; i < n; i++) v[i] = value;
  hid_t s = H5Screate_simple(1, &n, NULL);
  hid_t d = H5Dcreate2(f, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
  H5Dclose(d);
  H5Sclose(s);
  H5Fclose(f);
  free(v);
}

static void test_sample_reader_rejects(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "s.h5");
  sample_data sd = make_samples(5, 2, 7);
  for (int i = 0; i < 5; i++) sd.lq[i] = -1.0; /* log_w = -1 - log_p */
  tf_sample_block b = {5, sd.x, sd.c, sd.lp, sd.lq, NULL};
  tf_samples s;

  assert_int_equal(tf_samples_write(path, 2, NULL, &b), TF_OK);
  replace_1d(path, "c", 4, 1.0);
  assert_int_equal(tf_samples_read(path, &s), TF_EFORMAT);
  assert_msg(path);
  assert_msg("'/c' has shape (4)");
  assert_msg("expected (5)");
  assert_null(s.x);

  assert_int_equal(tf_samples_write(path, 2, NULL, &b), TF_OK);
  replace_1d(path, "log_w", 5, 0.0);
  assert_int_equal(tf_samples_read(path, &s), TF_EFORMAT);
  assert_msg("log_w[0]");

  assert_int_equal(tf_samples_write(path, 2, NULL, &b), TF_OK);
  replace_1d(path, "log_p", 5, NAN);
  assert_int_equal(tf_samples_read(path, &s), TF_ENUMERIC);
  assert_msg("log_p[0]");

  assert_int_equal(tf_samples_write(path, 2, NULL, &b), TF_OK);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(H5Adelete(f, "N") >= 0);
  hid_t sc = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "N", H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
  const int64_t wrong = 6;
  H5Awrite(a, H5T_NATIVE_INT64, &wrong);
  H5Aclose(a);
  H5Sclose(sc);
  H5Fclose(f);
  assert_int_equal(tf_samples_read(path, &s), TF_EFORMAT);
  assert_msg("'N' = 6");

  assert_int_equal(tf_samples_write(path, 2, NULL, &b), TF_OK);
  f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(H5Ldelete(f, "log_q", H5P_DEFAULT) >= 0);
  H5Fclose(f);
  assert_int_equal(tf_samples_read(path, &s), TF_EFORMAT);
  assert_msg("'/log_q' not found");
  free_samples(&sd);
}

/* ---- what a checkpoint may hold (DESIGN.md section 12) ---------------------------------------- */

static void set_attr_i64(const char *path, const char *obj, const char *name, int64_t v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
  assert_true(o >= 0);
  if (H5Aexists(o, name) > 0) assert_true(H5Adelete(o, name) >= 0);
  hid_t sc = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(o, name, H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
  H5Aclose(a);
  H5Sclose(sc);
  H5Oclose(o);
  H5Fclose(f);
}

/* element k of dataset `name` (any float type) set to v, the dataset otherwise kept */
static void poke(const char *path, const char *name, hsize_t k, double v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  assert_true(d >= 0);
  hid_t sp = H5Dget_space(d);
  const hssize_t n = H5Sget_simple_extent_npoints(sp);
  double *x = malloc((size_t)n * sizeof *x);
  assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
  x[k] = v;
  assert_true(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
  free(x);
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
}

/* dataset `name` rewritten as IEEE half precision (float16) with the same values */
static void to_float16(const char *path, const char *name) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t sp = H5Dget_space(d);
  const hssize_t n = H5Sget_simple_extent_npoints(sp);
  double *x = malloc((size_t)n * sizeof *x);
  assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
  H5Dclose(d);
  assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
  hid_t h = H5Tcopy(H5T_IEEE_F32LE);
  assert_true(H5Tset_fields(h, 15, 10, 5, 0, 10) >= 0);
  assert_true(H5Tset_precision(h, 16) >= 0 && H5Tset_size(h, 2) >= 0 && H5Tset_ebias(h, 15) >= 0);
  d = H5Dcreate2(f, name, h, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(d >= 0);
  assert_true(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
  free(x);
  H5Tclose(h);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
}

/* Each class of corrupted checkpoint is refused with the object named, and the model and the
 * optimizer are left as they were; and no checkpoint with such values can be written. */
static void test_checkpoint_validation(void **state) {
  fixture *fx = *state;
  const char *good = P(fx, "good.h5"), *path = P(fx, "bad.h5");
  tf_params *a = build(ARCH, NARCH), *b = build(ARCH, NARCH);
  fill_bits(a, 41);
  tf_optim *oa = make_optim(tf_params_size(a), 42), *ob = make_optim(tf_params_size(b), 43);
  tf_checkpoint_meta m;
  fill_meta(&m);
  assert_int_equal(tf_checkpoint_save(good, a, oa, &m), TF_OK);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, path);
  const int64_t np = tf_params_size(b);
  tf_real *before = malloc((size_t)np * sizeof *before);
  memcpy(before, tf_params_values(b), (size_t)np * sizeof *before);
  struct {
    const char *what;
    int code;
    const char *msg;
  } cases[] = {
      {"negative step", TF_EFORMAT, "step = -3"},
      {"skips beyond the step", TF_EFORMAT, "are impossible"},
      {"negative optimizer steps", TF_EFORMAT, "'steps' of '/optim' = -1"},
      {"NaN parameter", TF_ENUMERIC, "/params/embed.b[1] = nan"},
      {"Inf parameter", TF_ENUMERIC, "/params/block0.s[5] = inf"},
      {"negative second moment", TF_ENUMERIC, "/optim/v[2] = -1e-09"},
      {"NaN first moment", TF_ENUMERIC, "/optim/m[7] = nan"},
      {"overlapping offsets", TF_EFORMAT, "overlap"},
      {"negative offset", TF_EFORMAT, "is negative"},
      {"float16 parameters", TF_EFORMAT, "float16"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    assert_int_equal(system(cmd), 0);
    switch (c) {
    case 0: set_attr_i64(path, "/", "step", -3); break;
    case 1: set_attr_i64(path, "/", "skipped_steps", m.step + 1); break;
    case 2: set_attr_i64(path, "/optim", "steps", -1); break;
    case 3: poke(path, "/params/embed.b", 1, NAN); break;
    case 4: poke(path, "/params/block0.s", 5, INFINITY); break;
    case 5: poke(path, "/optim/v", 2, -1e-9); break;
    case 6: poke(path, "/optim/m", 7, NAN); break;
    case 7: set_attr_i64(path, "/params/embed.b", "offset", tf_params_offset(a, 0) + 2); break;
    case 8: set_attr_i64(path, "/params/embed.W", "offset", -16); break;
    case 9: to_float16(path, "/params/embed.W"); break;
    }
    tf_checkpoint_meta back;
    const int rc = tf_checkpoint_load(path, b, ob, &back);
    if (rc != cases[c].code || !strstr(tf_errmsg(), cases[c].msg))
      fail_msg("%s: status %d, message '%s'", cases[c].what, rc, tf_errmsg());
    assert_msg(path);
    assert_memory_equal(tf_params_values(b), before, (size_t)np * sizeof *before);
    assert_int_equal(tf_optim_steps(ob), 1234); /* make_optim's, not the file's */
  }
  /* the writer refuses what the reader would */
  tf_params_values(a)[3] = (tf_real)NAN;
  assert_int_equal(tf_checkpoint_save(good, a, oa, &m), TF_ENUMERIC);
  assert_msg("refusing to write");
  assert_msg("= nan");
  tf_params_values(a)[3] = 1;
  tf_optim_v(oa)[4] = -1;
  assert_int_equal(tf_checkpoint_save(good, a, oa, &m), TF_ENUMERIC);
  assert_msg("/optim/v[4] = -1");
  /* and the good file is still the good one */
  assert_int_equal(tf_checkpoint_load(good, b, ob, NULL), TF_OK);
  free(before);
  tf_checkpoint_meta_clear(&m);
  tf_optim_destroy(oa);
  tf_optim_destroy(ob);
  tf_params_destroy(a);
  tf_params_destroy(b);
}

/* ---- data matrices --------------------------------------------------------------------------- */

static void put(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                const hsize_t *dims, const void *data) {
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(loc, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(d >= 0);
  assert_true(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  H5Dclose(d);
  H5Sclose(s);
}

static void test_read_matrix(void **state) {
  fixture *fx = *state;
  const char *path = P(fx, "data.h5");
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  float f32[4][3];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++) f32[i][j] = (float)(i * 3 + j) * 0.1f;
  const hsize_t d43[2] = {4, 3}, d5[1] = {5}, d62[2] = {6, 2}, d222[3] = {2, 2, 2};
  put(f, "f32", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 2, d43, f32); /* big-endian on purpose */
  const int32_t i32[5] = {-7, 0, 7, 2147483647, -2147483647 - 1};
  put(f, "i32", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d5, i32);
  hid_t g = H5Gcreate2(f, "grp", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int64_t i64[12];
  for (int i = 0; i < 12; i++) i64[i] = 1000 * i - 5;
  put(g, "i64", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, d62, i64);
  H5Gclose(g);
  const double r3[8] = {0}, withnan[5] = {1, NAN, 2, 3, 4};
  put(f, "r3", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, d222, r3);
  put(f, "nan", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d5, withnan);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, 4);
  put(f, "str", st, st, 1, d5, "abcdefghijklmnopqrst");
  H5Tclose(st);
  H5Fclose(f);

  int64_t r, c;
  double *x = NULL;
  assert_int_equal(tf_h5_read_matrix(path, "f32", TF_H5_FINITE, &r, &c, &x), TF_OK);
  assert_int_equal(r, 4);
  assert_int_equal(c, 3);
  for (int i = 0; i < 12; i++) assert_true(x[i] == (double)f32[i / 3][i % 3]);
  free(x);
  assert_int_equal(tf_h5_read_matrix(path, "/i32", 0, &r, &c, &x), TF_OK);
  assert_int_equal(r, 5);
  assert_int_equal(c, 1);
  for (int i = 0; i < 5; i++) assert_true(x[i] == (double)i32[i]);
  free(x);

  /* row ranges (hyperslabs) of a nested dataset */
  tf_h5_matrix *m;
  assert_int_equal(tf_h5_matrix_open(&m, path, "grp/i64"), TF_OK);
  assert_int_equal(tf_h5_matrix_rows(m), 6);
  assert_int_equal(tf_h5_matrix_cols(m), 2);
  double blk[6];
  assert_int_equal(tf_h5_matrix_read(m, 2, 3, 0, blk), TF_OK);
  for (int i = 0; i < 6; i++) assert_true(blk[i] == (double)i64[4 + i]);
  assert_int_equal(tf_h5_matrix_read(m, 6, 0, 0, blk), TF_OK); /* empty range at the end */
  assert_int_equal(tf_h5_matrix_read(m, 5, 2, 0, blk), TF_ERANGE);
  assert_msg("rows [5, 7) outside [0, 6)");
  assert_int_equal(tf_h5_matrix_read(m, -1, 1, 0, blk), TF_ERANGE);
  tf_h5_matrix_close(m);
  tf_h5_matrix_close(NULL);

  /* NaN only where the caller asks for finite data */
  assert_int_equal(tf_h5_read_matrix(path, "nan", TF_H5_FINITE, &r, &c, &x), TF_ENUMERIC);
  assert_msg("'nan' row 1 column 0");
  assert_int_equal(tf_h5_read_matrix(path, "nan", 0, &r, &c, &x), TF_OK);
  assert_true(isnan(x[1]));
  free(x);

  /* wrong rank, wrong type, missing, group */
  x = NULL;
  assert_int_equal(tf_h5_read_matrix(path, "r3", 0, &r, &c, &x), TF_EFORMAT);
  assert_msg(path);
  assert_msg("rank 3");
  assert_msg("(2, 2, 2)");
  assert_int_equal(tf_h5_read_matrix(path, "str", 0, &r, &c, &x), TF_EFORMAT);
  assert_msg("found string");
  assert_int_equal(tf_h5_read_matrix(path, "train/x", 0, &r, &c, &x), TF_EFORMAT);
  assert_msg("'train/x' not found");
  assert_int_equal(tf_h5_read_matrix(path, "f32/deeper", 0, &r, &c, &x), TF_EFORMAT);
  assert_int_equal(tf_h5_read_matrix(path, "grp", 0, &r, &c, &x), TF_EFORMAT);
  assert_msg("not a dataset");
  assert_int_equal(tf_h5_read_matrix(path, "/", 0, &r, &c, &x), TF_EFORMAT);
  assert_null(x);

  int yes = -1;
  assert_int_equal(tf_h5_has_dataset(path, "grp/i64", &yes), TF_OK);
  assert_int_equal(yes, 1);
  assert_int_equal(tf_h5_has_dataset(path, "grp", &yes), TF_OK);
  assert_int_equal(yes, 0);
  assert_int_equal(tf_h5_has_dataset(path, "nope/x", &yes), TF_OK);
  assert_int_equal(yes, 0);

  char **names = NULL;
  int n = 0;
  assert_int_equal(tf_h5_list_datasets(path, &names, &n), TF_OK);
  const char *want[] = {"/f32", "/grp/i64", "/i32", "/nan", "/r3", "/str"};
  assert_int_equal(n, 6);
  for (int i = 0; i < n; i++) assert_string_equal(names[i], want[i]);
  tf_h5_free_names(names, n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_checkpoint_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_config_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_wrong_architecture, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_other_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_average, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_atomic_save, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_other_precision, setup, teardown),
      cmocka_unit_test(test_meta_extras),
      cmocka_unit_test_setup_teardown(test_samples_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sample_writer_rejects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sample_reader_rejects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_matrix, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_validation, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
