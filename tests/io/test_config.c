/* test_config.c — INI configs against a schema: values, precedence, round trip, and one test
 * per class of user error, each checking that the message names the file, the line, the
 * section.key, the value and what is accepted.  Files live in a mkdtemp directory per test. */
#define _XOPEN_SOURCE 700 /* nftw, realpath */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tradeflow/config.h"
#include "tradeflow/error.h"

static const tf_cfg_key schema[] = {
    {"train", "lr", TF_CFG_REAL, "0.001", 1e-8, 1.0, NULL, "learning rate"},
    {"train", "steps", TF_CFG_INT, NULL, 1, 100000, NULL, "number of optimizer steps"},
    {"train", "batch", TF_CFG_INT, "256", 1, INFINITY, NULL, "minibatch size"},
    {"train", "optimizer", TF_CFG_CHOICE, "adam", 1, 0, "adam|adamw|sgd", "update rule"},
    {"train", "resume", TF_CFG_BOOL, "no", 1, 0, NULL, "continue from the checkpoint"},
    {"train", "c_values", TF_CFG_REAL_LIST, "0.5, 1", 0, 10, NULL, "conditions to train at"},
    {"train", "shift", TF_CFG_REAL, "-2.385", 1, 0, NULL, "unbounded real"},
    {"data", "samples", TF_CFG_PATH_IN, NULL, 1, 0, NULL, "training samples (HDF5)"},
    {"data", "extra", TF_CFG_PATH_IN, "", 1, 0, NULL, "optional extra samples"},
    {"output", "checkpoint", TF_CFG_PATH_OUT, "", 1, 0, NULL, "checkpoint file"},
    {"output", "label", TF_CFG_STRING, "run", 1, 0, NULL, "name of the run"},
};
enum { NS = sizeof schema / sizeof schema[0] };

static char dir[64];      /* the test's temporary directory, canonical */
static char pathbuf[8][1024];
static int pathnext;

/* A path in the temporary directory; a few stay valid at once. */
static const char *tmp(const char *name) {
  char *b = pathbuf[pathnext++ % 8];
  snprintf(b, sizeof pathbuf[0], "%s/%s", dir, name);
  return b;
}

static const char *write_file(const char *name, const char *text) {
  const char *p = tmp(name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
  return p;
}

static int setup(void **state) {
  (void)state;
  char t[] = "/tmp/tf_cfg_XXXXXX";
  if (!mkdtemp(t)) return -1;
  char *r = realpath(t, NULL); /* /tmp may be a symbolic link; getters return canonical paths */
  if (!r) return -1;
  snprintf(dir, sizeof dir, "%s", r);
  free(r);
  write_file("samples.h5", "not really HDF5\n");
  return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static int teardown(void **state) {
  (void)state;
  return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Every needle must occur in the message; on failure the whole message is printed. */
static void expect_all(const char *msg, const char *const *needles) {
  for (; *needles; needles++)
    if (!strstr(msg, *needles)) fail_msg("message:\n  %s\nlacks: '%s'", msg, *needles);
}
#define EXPECT_MSG(...) expect_all(tf_errmsg(), (const char *const[]){__VA_ARGS__, NULL})

/* Loads cfg text written to train.ini and expects failure with `code`. */
static void load_fails(const char *text, int n_set, const char *const *set, int code) {
  const char *p = write_file("train.ini", text);
  tf_config *c = tf_config_load(p, schema, NS, n_set, set);
  if (c) {
    tf_config_destroy(c);
    fail_msg("load of\n%s\nsucceeded", text);
  }
  if (tf_config_load_status() != code)
    fail_msg("status %s, expected %s; message: %s", tf_strstatus(tf_config_load_status()),
             tf_strstatus(code), tf_errmsg());
}

static tf_config *load_ok(const char *text, int n_set, const char *const *set) {
  const char *p = write_file("train.ini", text);
  tf_config *c = tf_config_load(p, schema, NS, n_set, set);
  if (!c) fail_msg("load failed: %s", tf_errmsg());
  return c;
}

/* ---- valid configs ------------------------------------------------------------------------ */

static void test_full_valid(void **state) {
  (void)state;
  assert_int_equal(mkdir(tmp("out"), 0755), 0);
  /* PATH_OUT is taken from the current directory: give it absolute, through --set */
  char set[1100];
  snprintf(set, sizeof set, "output.checkpoint=%s", tmp("out/ck.h5"));
  const char *sets[] = {set};
  tf_config *c = load_ok("[train]\nlr = 3e-4\nsteps = 20000\nbatch = +512\noptimizer = adamw\n"
              "resume = YES\nc_values = 0.25,1.5 , 2.385,10\nshift = -1e300\n"
              "[data]\nsamples = samples.h5\n[output]\nlabel = phi4 L=16: first try\n",
              1, sets);
  assert_float_equal(tf_config_real(c, "train", "lr"), 3e-4, 0);
  assert_int_equal(tf_config_int(c, "train", "steps"), 20000);
  assert_int_equal(tf_config_int(c, "train", "batch"), 512);
  assert_string_equal(tf_config_str(c, "train", "optimizer"), "adamw");
  assert_int_equal(tf_config_bool(c, "train", "resume"), 1);
  assert_float_equal(tf_config_real(c, "train", "shift"), -1e300, 0);
  const double *v;
  assert_int_equal(tf_config_real_list(c, "train", "c_values", &v), 4);
  assert_float_equal(v[0], 0.25, 0);
  assert_float_equal(v[1], 1.5, 0);
  assert_float_equal(v[2], 2.385, 0);
  assert_float_equal(v[3], 10, 0);
  assert_string_equal(tf_config_str(c, "data", "samples"), tmp("samples.h5"));
  assert_string_equal(tf_config_str(c, "data", "extra"), "");
  assert_string_equal(tf_config_str(c, "output", "checkpoint"), tmp("out/ck.h5"));
  assert_string_equal(tf_config_str(c, "output", "label"), "phi4 L=16: first try");
  /* canonical text: equal values, equal strings */
  assert_string_equal(tf_config_str(c, "train", "lr"), "0.0003");
  assert_string_equal(tf_config_str(c, "train", "batch"), "512");
  assert_string_equal(tf_config_str(c, "train", "resume"), "true");
  assert_string_equal(tf_config_str(c, "train", "c_values"), "0.25, 1.5, 2.385, 10");
  assert_string_equal(tf_config_str(c, "train", "shift"), "-1e+300");
  assert_int_equal(tf_config_is_set(c, "train", "lr"), 1);
  assert_int_equal(tf_config_is_set(c, "data", "extra"), 0);
  assert_string_equal(tf_config_where(c, "train", "steps"), tmp("train.ini:3"));
  assert_string_equal(tf_config_where(c, "output", "checkpoint"), "--set argument 1");
  assert_string_equal(tf_config_where(c, "data", "extra"), "default");
  assert_int_equal(tf_config_load_status(), TF_OK);
  tf_config_destroy(c);
}

static void test_defaults_applied(void **state) {
  (void)state;
  tf_config *c = load_ok("[train]\nsteps = 10\n[data]\nsamples = samples.h5\n", 0, NULL);
  assert_float_equal(tf_config_real(c, "train", "lr"), 0.001, 0);
  assert_int_equal(tf_config_int(c, "train", "batch"), 256);
  assert_string_equal(tf_config_str(c, "train", "optimizer"), "adam");
  assert_int_equal(tf_config_bool(c, "train", "resume"), 0);
  const double *v;
  assert_int_equal(tf_config_real_list(c, "train", "c_values", &v), 2);
  assert_float_equal(v[1], 1.0, 0);
  assert_string_equal(tf_config_str(c, "output", "checkpoint"), "");
  assert_string_equal(tf_config_str(c, "output", "label"), "run");
  assert_int_equal(tf_config_is_set(c, "train", "lr"), 0);
  assert_int_equal(tf_config_is_set(c, "train", "steps"), 1);
  assert_string_equal(tf_config_where(c, "train", "lr"), "default");
  tf_config_destroy(c);
}

static void test_set_overrides_and_precedence(void **state) {
  (void)state;
  const char *sets[] = {"train.lr=0.02", " train . resume = on ", "output.label=a=b",
                        "train.lr = 0.03", "train.c_values="};
  /* c_values may be emptied only if its default is "": it is "0.5, 1" here, so not that one */
  tf_config *c = load_ok("[train]\nlr = 0.5\nsteps = 7\n[data]\nsamples = samples.h5\n", 4, sets);
  assert_float_equal(tf_config_real(c, "train", "lr"), 0.03, 0); /* file < set 1 < set 4 */
  assert_string_equal(tf_config_where(c, "train", "lr"), "--set argument 4");
  assert_int_equal(tf_config_bool(c, "train", "resume"), 1); /* absent from the file */
  assert_int_equal(tf_config_is_set(c, "train", "resume"), 1);
  assert_string_equal(tf_config_str(c, "output", "label"), "a=b");
  assert_int_equal(tf_config_int(c, "train", "steps"), 7);
  tf_config_destroy(c);

  load_fails("[train]\nsteps = 7\n[data]\nsamples = samples.h5\n", 5, sets, TF_EFORMAT);
  EXPECT_MSG("--set argument 5", "train.c_values", "empty value", "comma-separated finite reals");

  /* no file at all: everything from --set */
  char s2[1100];
  snprintf(s2, sizeof s2, "data.samples=%s", tmp("samples.h5"));
  const char *only[] = {"train.steps=3", s2};
  c = tf_config_load(NULL, schema, NS, 2, only);
  assert_non_null(c);
  assert_int_equal(tf_config_int(c, "train", "steps"), 3);
  tf_config_destroy(c);
}

static void test_text_round_trip(void **state) {
  (void)state;
  assert_int_equal(mkdir(tmp("out"), 0755), 0);
  char s1[1100];
  snprintf(s1, sizeof s1, "output.checkpoint=%s", tmp("out/ck.h5"));
  const char *sets[] = {s1, "output.label=;starts with a semicolon", "train.shift=0.1"};
  tf_config *a = load_ok("[train]\nlr = 1e-3\nsteps = 123\nc_values = 0.1, 0.2,0.30000000000000004\n"
                         "optimizer = sgd\n[data]\nsamples = samples.h5\nextra = samples.h5\n",
                         3, sets);
  char *text = tf_config_text(a);
  assert_non_null(text);
  assert_non_null(strstr(text, "; learning rate\nlr = 0.001\n"));
  assert_non_null(strstr(text, "c_values = 0.1, 0.2, 0.30000000000000004\n"));
  assert_non_null(strstr(text, "; minibatch size (default)\nbatch = 256\n"));
  assert_non_null(strstr(text, "label=;starts with a semicolon\n"));
  tf_config *b = tf_config_load_string(text, "round trip", schema, NS, 0, NULL);
  if (!b) fail_msg("reload failed: %s\n%s", tf_errmsg(), text);
  assert_float_equal(tf_config_real(b, "train", "lr"), tf_config_real(a, "train", "lr"), 0);
  assert_float_equal(tf_config_real(b, "train", "shift"), 0.1, 0);
  assert_int_equal(tf_config_int(b, "train", "steps"), 123);
  assert_int_equal(tf_config_int(b, "train", "batch"), 256);
  assert_int_equal(tf_config_bool(b, "train", "resume"), 0);
  const double *va, *vb;
  int na = tf_config_real_list(a, "train", "c_values", &va);
  assert_int_equal(tf_config_real_list(b, "train", "c_values", &vb), na);
  for (int i = 0; i < na; i++) assert_true(va[i] == vb[i]);
  for (int i = 0; i < NS; i++)
    assert_string_equal(tf_config_str(b, schema[i].section, schema[i].key),
                        tf_config_str(a, schema[i].section, schema[i].key));
  /* and the reloaded config writes the same settings (only the "(default)" marks differ) */
  char *text2 = tf_config_text(b);
  tf_config *c = tf_config_load_string(text2, "again", schema, NS, 0, NULL);
  assert_non_null(c);
  char *text3 = tf_config_text(c);
  assert_string_equal(text2, text3);
  free(text);
  free(text2);
  free(text3);
  tf_config_destroy(a);
  tf_config_destroy(b);
  tf_config_destroy(c);
}

static void test_syntax_details(void **state) {
  (void)state;
  write_file("phi4 L=16.h5", "x");
  tf_config *c = load_ok("\xEF\xBB\xBF; comment\r\n"
                         "# another comment\r\n"
                         "\r\n"
                         "[ train ]   ; header with blanks and a comment\r\n"
                         "    steps: 42            ; ':' for '=', indentation, inline comment\r\n"
                         "    lr = 0.5\r\n"
                         "[data]\n"
                         "samples = phi4 L=16.h5\n"
                         "[output]\n"
                         "label = run #3;v2 ; the '#' and the ';' without a blank stay\n"
                         "[train]\n"
                         "resume = off\n",
                         0, NULL);
  assert_int_equal(tf_config_int(c, "train", "steps"), 42);
  assert_float_equal(tf_config_real(c, "train", "lr"), 0.5, 0);
  assert_string_equal(tf_config_str(c, "data", "samples"), tmp("phi4 L=16.h5"));
  assert_string_equal(tf_config_str(c, "output", "label"), "run #3;v2");
  assert_int_equal(tf_config_bool(c, "train", "resume"), 0);
  assert_string_equal(tf_config_where(c, "train", "lr"), tmp("train.ini:6"));
  assert_string_equal(tf_config_where(c, "train", "resume"), tmp("train.ini:12"));
  tf_config_destroy(c);
  assert_int_equal(tf_config_max_line(), 198); /* Debian's libinih 55: 200-byte buffer */
}

static void test_relative_paths(void **state) {
  (void)state;
  assert_int_equal(mkdir(tmp("job"), 0755), 0);
  assert_int_equal(mkdir(tmp("job/data"), 0755), 0);
  assert_int_equal(mkdir(tmp("run"), 0755), 0);
  write_file("job/data/s.h5", "x");
  write_file("run/local.h5", "x");
  const char *cfg = write_file("job/train.ini", "[train]\nsteps = 5\n[data]\nsamples = data/s.h5\n"
                                                "extra = ../samples.h5\n[output]\n"
                                                "checkpoint = ck.h5\n");
  char old[4096];
  assert_non_null(getcwd(old, sizeof old));
  assert_int_equal(chdir(tmp("run")), 0);
  tf_config *c = tf_config_load(cfg, schema, NS, 0, NULL);
  if (!c) {
    assert_int_equal(chdir(old), 0);
    fail_msg("%s", tf_errmsg());
  }
  /* input: from the file's directory; output: from the current directory */
  assert_string_equal(tf_config_str(c, "data", "samples"), tmp("job/data/s.h5"));
  assert_string_equal(tf_config_str(c, "data", "extra"), tmp("samples.h5"));
  assert_string_equal(tf_config_str(c, "output", "checkpoint"), tmp("run/ck.h5"));
  tf_config_destroy(c);
  /* --set: from the current directory */
  const char *sets[] = {"data.samples=local.h5"};
  c = tf_config_load(cfg, schema, NS, 1, sets);
  int ok = c != NULL;
  if (ok) assert_string_equal(tf_config_str(c, "data", "samples"), tmp("run/local.h5"));
  tf_config_destroy(c);
  /* a relative path in a string config: from the current directory too */
  c = tf_config_load_string("[train]\nsteps=1\n[data]\nsamples = local.h5\n", "str", schema, NS,
                            0, NULL);
  ok = ok && c != NULL;
  if (c) assert_string_equal(tf_config_str(c, "data", "samples"), tmp("run/local.h5"));
  tf_config_destroy(c);
  assert_int_equal(chdir(old), 0);
  assert_true(ok);
}

/* ---- one test per class of error ------------------------------------------------------------ */

static void test_err_unknown_section(void **state) {
  (void)state;
  load_fails("[train]\nsteps = 3\n[trian]\nlr = 0.1\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:3"), "unknown section [trian]", "did you mean [train]?",
             "known sections: [train], [data], [output]");
  load_fails("[train]\nsteps = 3\n\n[ outptu ] ; typo, and no key below\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:4"), "unknown section [outptu]", "did you mean [output]?");
  load_fails("; top\nsteps = 3\n[train]\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:2"), "'steps' comes before any [section] header",
             "belongs in section [train]", "known sections: [train], [data], [output]");
}

static void test_err_unknown_key(void **state) {
  (void)state;
  load_fails("[train]\n\n; c\nsteps = 3\nlrr = 0.1\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:5"), "unknown key 'lrr' in section [train]", "did you mean 'lr'?",
             "keys in [train]: lr, steps, batch, optimizer, resume, c_values, shift");
  load_fails("[train]\nStpes = 3\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:2"), "'Stpes'", "did you mean 'steps'?");
  load_fails("[data]\nlr = 0.1\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:2"), "unknown key 'lr' in section [data]",
             "'lr' belongs in section [train]", "keys in [data]: samples, extra");
  load_fails("[train]\nwarmup = 0.1\n", 0, NULL, TF_EFORMAT);
  assert_null(strstr(tf_errmsg(), "did you mean"));
  load_fails("[train]\n= 0.1\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:2"), "no key name before '='", "keys in [train]: lr");
}

static void test_err_duplicate_key(void **state) {
  (void)state;
  load_fails("[train]\nlr = 0.01\nsteps = 3\n[data]\n[train]\nlr = 0.02\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:6"), "duplicate key train.lr = '0.02'",
             "first given at line 2 as '0.01'", "only once");
}

static void test_err_syntax(void **state) {
  (void)state;
  /* line numbers count comments, blank lines and CRLF line ends */
  load_fails("; c\r\n\r\n[train]\r\n# c\r\n\r\nsteps 3\r\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:6"), "'steps 3' is not `key = value`, a [section] header or a comment");
  load_fails("[train]\nsteps = 3\n\n[data\nsamples = x\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:4"), "section header '[data' has no closing ']'", "expected [section]");
  load_fails("[train] lr = 0.1\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:1"), "unexpected 'lr = 0.1' after section header '[train]'",
             "only a comment");
  /* an indented line is not a continuation: the list must be on one line */
  load_fails("[train]\nsteps = 3\n[output]\nlabel = first part\n    second part\n", 0, NULL,
             TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:5"), "'second part' is not `key = value`", "does not continue");
  /* ...while an indented key is an ordinary key, not a continuation of the line above */
  tf_config *c = load_ok("[train]\n  lr = 0.1\n  steps = 9\n[data]\nsamples = samples.h5\n", 0,
                         NULL);
  assert_int_equal(tf_config_int(c, "train", "steps"), 9);
  tf_config_destroy(c);
}

static void test_err_first_problem_by_line(void **state) {
  (void)state;
  load_fails("[train]\nlrr = 1\n\nsteps 3\n", 0, NULL, TF_EFORMAT); /* key at 2, syntax at 4 */
  EXPECT_MSG(tmp("train.ini:2"), "unknown key 'lrr'");
  load_fails("[train]\nsteps 3\n\nlrr = 1\n", 0, NULL, TF_EFORMAT); /* syntax at 2, key at 4 */
  EXPECT_MSG(tmp("train.ini:2"), "'steps 3'");
  const char *bad[] = {"train.lr=oops"};
  load_fails("[train]\nsteps = x\n", 1, bad, TF_EFORMAT); /* the file before --set */
  EXPECT_MSG(tmp("train.ini:2"), "train.steps = 'x'");
}

static void test_err_line_too_long(void **state) {
  (void)state;
  char text[600];
  char label[300];
  memset(label, 'v', 250);
  label[250] = '\0';
  snprintf(text, sizeof text, "[train]\nsteps = 3\n[output]\nlabel = %s\nlr = 1\n", label);
  load_fails(text, 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:4"), "'label = vvv", "258 characters long", "at most 198");
  /* the same value through --set is fine */
  char set[320];
  snprintf(set, sizeof set, "output.label=%.180s", label);
  const char *sets[] = {set};
  tf_config *c = load_ok("[train]\nsteps = 3\n[data]\nsamples = samples.h5\n", 1, sets);
  assert_int_equal((int)strlen(tf_config_str(c, "output", "label")), 180);
  tf_config_destroy(c);
  /* ...unless it cannot be written back as a config line */
  snprintf(set, sizeof set, "output.label=%s", label);
  load_fails("[train]\nsteps = 3\n[data]\nsamples = samples.h5\n", 1, sets, TF_EFORMAT);
  EXPECT_MSG("--set argument 1", "output.label = 'vvv", "too long to be recorded",
             "at most 198");
}

static void test_err_malformed_values(void **state) {
  (void)state;
  load_fails("[train]\nsteps = 12x\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:2"), "train.steps = '12x'", "not an integer",
             "expected an integer in [1, 100000]");
  load_fails("[train]\nsteps = 1e3\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG("train.steps = '1e3'", "not an integer", "(write it as 1000)");
  load_fails("[train]\nsteps = 3\nlr = 1e\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:3"), "train.lr = '1e'", "not a real number",
             "expected a finite real number in [1e-08, 1]");
  load_fails("[train]\nsteps = 3\nresume = maybe\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:3"), "train.resume = 'maybe'", "not a boolean",
             "true/false, yes/no, on/off or 1/0");
  load_fails("[train]\nsteps = 3\nc_values = 0.5, 0.x, 2\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:3"), "train.c_values = '0.5, 0.x, 2'",
             "element 2 '0.x' is not a real number",
             "comma-separated finite reals, each in [0, 10]");
  load_fails("[train]\nsteps = 3\nc_values = 0.5,,2\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG("element 2 '' is not a real number");
  load_fails("[train]\nsteps =\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini:2"), "train.steps = ''", "empty value", "an integer");
  load_fails("[train]\nsteps = 99999999999999999999\n", 0, NULL, TF_ERANGE);
  EXPECT_MSG("does not fit a 64-bit integer");
}

static void test_err_nonfinite(void **state) {
  (void)state;
  load_fails("[train]\nsteps = 3\nshift = inf\n", 0, NULL, TF_ENUMERIC);
  EXPECT_MSG(tmp("train.ini:3"), "train.shift = 'inf'", "not finite",
             "expected a finite real number");
  load_fails("[train]\nsteps = 3\nshift = NaN\n", 0, NULL, TF_ENUMERIC);
  EXPECT_MSG("train.shift = 'NaN'", "not finite");
  load_fails("[train]\nsteps = 3\nshift = 1e999\n", 0, NULL, TF_ENUMERIC);
  load_fails("[train]\nsteps = 3\nc_values = 1, nan\n", 0, NULL, TF_ENUMERIC);
  EXPECT_MSG("element 2 'nan' is not finite");
}

static void test_err_out_of_range(void **state) {
  (void)state;
  load_fails("[train]\nsteps = 0\n", 0, NULL, TF_ERANGE);
  EXPECT_MSG(tmp("train.ini:2"), "train.steps = '0'", "out of range: must be in [1, 100000]");
  load_fails("[train]\nsteps = 3\nlr = 2.5\n", 0, NULL, TF_ERANGE);
  EXPECT_MSG(tmp("train.ini:3"), "train.lr = '2.5'", "must be in [1e-08, 1]");
  load_fails("[train]\nsteps = 3\nbatch = -4\n", 0, NULL, TF_ERANGE);
  EXPECT_MSG("train.batch = '-4'", "must be >= 1");
  load_fails("[train]\nsteps = 3\nc_values = 1, 10.5\n", 0, NULL, TF_ERANGE);
  EXPECT_MSG("train.c_values = '1, 10.5'", "element 2 '10.5' is out of range: must be in [0, 10]");
}

static void test_err_choice(void **state) {
  (void)state;
  load_fails("[train]\nsteps = 3\noptimizer = adamm\n", 0, NULL, TF_ERANGE);
  EXPECT_MSG(tmp("train.ini:3"), "train.optimizer = 'adamm'", "did you mean 'adam'?",
             "one of: adam, adamw, sgd");
  load_fails("[train]\nsteps = 3\noptimizer = ADAMW\n", 0, NULL, TF_ERANGE);
  EXPECT_MSG("did you mean 'adamw'?");
  load_fails("[train]\nsteps = 3\noptimizer = lbfgs\n", 0, NULL, TF_ERANGE);
  assert_null(strstr(tf_errmsg(), "did you mean"));
}

static void test_err_missing_required(void **state) {
  (void)state;
  load_fails("[data]\nsamples = samples.h5\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG(tmp("train.ini"), "missing required key train.steps (number of optimizer steps)",
             "under [train]", "--set train.steps=");
  load_fails("[output]\nlabel = x\n", 0, NULL, TF_EFORMAT);
  EXPECT_MSG("missing required key train.steps", "also missing: data.samples");
  tf_config *c = tf_config_load(NULL, schema, NS, 0, NULL);
  assert_null(c);
  EXPECT_MSG("config: missing required key train.steps");
}

static void test_err_path_in(void **state) {
  (void)state;
  load_fails("[train]\nsteps = 3\n[data]\nsamples = nope.h5\n", 0, NULL, TF_EIO);
  EXPECT_MSG(tmp("train.ini:4"), "data.samples = 'nope.h5'", tmp("nope.h5"),
             "No such file or directory", "an existing, readable file or directory",
             "taken from the file's directory");
  load_fails("[train]\nsteps = 3\n[data]\nsamples = ~/x.h5\n", 0, NULL, TF_EIO);
  EXPECT_MSG("~ and $VARIABLES are not expanded");
  /* the file-system check applies to the value in effect: --set may replace a bad path */
  const char *sets[] = {"data.samples=/nonexistent/dir/s.h5"};
  load_fails("[train]\nsteps = 3\n[data]\nsamples = samples.h5\n", 1, sets, TF_EIO);
  EXPECT_MSG("--set argument 1", "data.samples = '/nonexistent/dir/s.h5'",
             "No such file or directory");
  char fix[1100];
  snprintf(fix, sizeof fix, "data.samples=%s", tmp("samples.h5"));
  const char *fixes[] = {fix};
  tf_config *c = load_ok("[train]\nsteps = 3\n[data]\nsamples = elsewhere.h5\n", 1, fixes);
  tf_config_destroy(c);
}

/* unreadable input, unwritable output directory: root may read and write anything */
static void test_err_permissions(void **state) {
  (void)state;
  if (geteuid() == 0) skip();
  write_file("secret.h5", "x");
  assert_int_equal(chmod(tmp("secret.h5"), 0), 0);
  load_fails("[train]\nsteps = 3\n[data]\nsamples = secret.h5\n", 0, NULL, TF_EIO);
  EXPECT_MSG(tmp("train.ini:4"), "data.samples = 'secret.h5'", "Permission denied");
  assert_int_equal(mkdir(tmp("ro"), 0555), 0);
  char text[1200];
  snprintf(text, sizeof text, "[train]\nsteps = 3\n[data]\nsamples = samples.h5\n[output]\n"
                              "checkpoint = %s\n",
           tmp("ro/ck.h5"));
  load_fails(text, 0, NULL, TF_EIO);
  EXPECT_MSG(tmp("train.ini:6"), "output.checkpoint", "is not writable (Permission denied)");
}

static void test_err_path_out(void **state) {
  (void)state;
  char text[1200];
  snprintf(text, sizeof text, "[train]\nsteps = 3\n[data]\nsamples = samples.h5\n[output]\n"
                              "checkpoint = %s\n",
           tmp("nodir/ck.h5"));
  load_fails(text, 0, NULL, TF_EIO);
  EXPECT_MSG(tmp("train.ini:6"), "output.checkpoint = '", tmp("nodir"), "does not exist",
             "No such file or directory", "a path in an existing, writable directory");
  snprintf(text, sizeof text, "[train]\nsteps = 3\n[data]\nsamples = samples.h5\n[output]\n"
                              "checkpoint = %s\n",
           tmp("samples.h5/ck.h5"));
  load_fails(text, 0, NULL, TF_EIO);
  EXPECT_MSG(tmp("train.ini:6"), "output.checkpoint");
}

static void test_err_set(void **state) {
  (void)state;
  const char *text = "[train]\nsteps = 3\n[data]\nsamples = samples.h5\n";
  const char *a[] = {"train.lr=0.1", "train.lr"};
  load_fails(text, 2, a, TF_EINVAL);
  EXPECT_MSG("--set argument 2", "expected section.key=value, got 'train.lr'");
  const char *b[] = {"lr=0.1"};
  load_fails(text, 1, b, TF_EINVAL);
  EXPECT_MSG("--set argument 1", "expected section.key=value", "did you mean train.lr=...?");
  const char *c[] = {".lr=1"};
  load_fails(text, 1, c, TF_EINVAL);
  EXPECT_MSG("--set argument 1", "got '.lr=1'");
  const char *d[] = {"train.steps=4", "train.lrr=0.1"};
  load_fails(text, 2, d, TF_EFORMAT);
  EXPECT_MSG("--set argument 2", "unknown key 'lrr' in section [train]", "did you mean 'lr'?");
  const char *e[] = {"trian.lr=0.1"};
  load_fails(text, 1, e, TF_EFORMAT);
  EXPECT_MSG("--set argument 1", "unknown section [trian]", "did you mean [train]?");
  const char *f[] = {"train.lr=0.1x"};
  load_fails(text, 1, f, TF_EFORMAT);
  EXPECT_MSG("--set argument 1: train.lr = '0.1x'", "not a real number", "[1e-08, 1]");
  assert_null(strstr(tf_errmsg(), "train.ini"));
  const char *g[] = {"output.label=a ;b"};
  load_fails(text, 1, g, TF_EFORMAT);
  EXPECT_MSG("--set argument 1: output.label = 'a ;b'", "would read back differently");
  const char *h[] = {"output.label=a\nb"};
  load_fails(text, 1, h, TF_EFORMAT);
  EXPECT_MSG("--set argument 1", "line break");
}

static void test_err_file_and_schema(void **state) {
  (void)state;
  tf_config *c = tf_config_load(tmp("absent.ini"), schema, NS, 0, NULL);
  assert_null(c);
  assert_int_equal(tf_config_load_status(), TF_EIO);
  EXPECT_MSG("cannot open config file", tmp("absent.ini"), "No such file or directory");
  c = tf_config_load(dir, schema, NS, 0, NULL);
  assert_null(c);
  EXPECT_MSG("is a directory");
  write_file("bin.ini", "[train]\nst\0eps = 3\n");
  /* fputs stops at the NUL: write it by hand */
  FILE *fp = fopen(tmp("bin.ini"), "wb");
  assert_non_null(fp);
  fwrite("[train]\nst\0eps = 3\n", 1, 19, fp);
  fclose(fp);
  c = tf_config_load(tmp("bin.ini"), schema, NS, 0, NULL);
  assert_null(c);
  EXPECT_MSG(tmp("bin.ini:2"), "NUL byte");

  static const tf_cfg_key bad_default[] = {
      {"train", "lr", TF_CFG_REAL, "fast", 0, 1, NULL, "learning rate"}};
  c = tf_config_load_string("", "s", bad_default, 1, 0, NULL);
  assert_null(c);
  assert_int_equal(tf_config_load_status(), TF_EINVAL);
  EXPECT_MSG("config schema: default 'fast' of train.lr is invalid", "not a real number");
  static const tf_cfg_key dup[] = {{"a", "x", TF_CFG_INT, "1", 1, 0, NULL, NULL},
                                   {"a", "x", TF_CFG_INT, "1", 1, 0, NULL, NULL}};
  assert_null(tf_config_load_string("", "s", dup, 2, 0, NULL));
  EXPECT_MSG("config schema: a.x appears twice");
  static const tf_cfg_key badname[] = {{"a.b", "x", TF_CFG_INT, "1", 1, 0, NULL, NULL}};
  assert_null(tf_config_load_string("", "s", badname, 1, 0, NULL));
  EXPECT_MSG("config schema: entry 0");
  static const tf_cfg_key nochoice[] = {{"a", "x", TF_CFG_CHOICE, "p", 1, 0, "p||q", NULL}};
  assert_null(tf_config_load_string("", "s", nochoice, 1, 0, NULL));
  EXPECT_MSG("config schema: a.x: CHOICE");
}

/* ---- programming errors and listings ----------------------------------------------------- */

/* Runs getter `which` in a child and returns what it printed before dying of SIGABRT. */
static void expect_abort(int which, const char *needle) {
  int fd[2];
  assert_int_equal(pipe(fd), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    tf_config *c = tf_config_load_string("[train]\nsteps=1\n[data]\nsamples=/\n", "s", schema, NS,
                                         0, NULL);
    if (!c) _exit(3);
    if (which == 0) (void)tf_config_int(c, "train", "nope");
    if (which == 1) (void)tf_config_int(c, "train", "lr");
    if (which == 2) (void)tf_config_real_list(c, "train", "steps", NULL);
    _exit(0);
  }
  close(fd[1]);
  char out[1024] = "";
  size_t n = 0;
  ssize_t k;
  while (n + 1 < sizeof out && (k = read(fd[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)k;
  out[n] = '\0';
  close(fd[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);
  if (!strstr(out, needle)) fail_msg("stderr '%s' lacks '%s'", out, needle);
}

static void test_getter_misuse_aborts(void **state) {
  (void)state;
  expect_abort(0, "tradeflow: BUG: tf_config_int: train.nope is not in the config schema");
  expect_abort(1, "train.lr is a TF_CFG_REAL key, not TF_CFG_INT");
  expect_abort(2, "train.steps is a TF_CFG_INT key, not TF_CFG_REAL_LIST");
}

static void test_help_listing(void **state) {
  (void)state;
  char *h = tf_config_help(schema, NS);
  assert_non_null(h);
  assert_non_null(strstr(h, "[train]\n  lr: a finite real number in [1e-08, 1]; default 0.001\n"
                            "      learning rate\n"));
  assert_non_null(strstr(h, "  steps: an integer in [1, 100000]; required\n"));
  assert_non_null(strstr(h, "  optimizer: one of: adam, adamw, sgd; default adam\n"));
  assert_non_null(strstr(h, "  extra: an existing, readable file or directory; optional\n"));
  free(h);
  tf_config_destroy(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_full_valid),
      T(test_defaults_applied),
      T(test_set_overrides_and_precedence),
      T(test_text_round_trip),
      T(test_syntax_details),
      T(test_relative_paths),
      T(test_err_unknown_section),
      T(test_err_unknown_key),
      T(test_err_duplicate_key),
      T(test_err_syntax),
      T(test_err_first_problem_by_line),
      T(test_err_line_too_long),
      T(test_err_malformed_values),
      T(test_err_nonfinite),
      T(test_err_out_of_range),
      T(test_err_choice),
      T(test_err_missing_required),
      T(test_err_path_in),
      T(test_err_permissions),
      T(test_err_path_out),
      T(test_err_set),
      T(test_err_file_and_schema),
      T(test_getter_misuse_aborts),
      T(test_help_listing),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
