/* cli_harness.h — the harness of the end-to-end tests of the `tradeflow` command (test_cli.c,
 * test_eval.c): a temporary directory per suite, files written into it, and the command run
 * there with its output captured.
 *
 * Each test executable includes this header once.  The build defines TF_CLI (the path of the
 * tradeflow executable); CLI_OUT_SIZE (bytes of output kept, default 128 KiB) may be defined
 * before the include.  Provides:
 *   dir, out                  the test directory and the output of the last run
 *   run(fmt, ...)             `tradeflow ARGS` in dir: exit status, output (stdout and stderr) in out
 *   run_env(env, fmt, ...)    the same with `env` (e.g. "PATH=/nonexistent") before the command
 *   write_file(name, text)    dir/name with the given contents
 *   path_of(name)             "dir/name" (one of four rotating buffers)
 *   exists(name)              dir/name exists and is not empty
 *   cli_make_dir(prefix)      creates dir as $TMPDIR/prefix_XXXXXX (for a group setup)
 *   cli_teardown(state)       removes dir (a group teardown)
 */
#ifndef TF_TESTS_CLI_HARNESS_H
#define TF_TESTS_CLI_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#ifndef TF_CLI
#error "TF_CLI (path of the tradeflow executable) must be defined by the build"
#endif

#ifndef CLI_OUT_SIZE
#define CLI_OUT_SIZE (1 << 17)
#endif

static char dir[256];
static char out[CLI_OUT_SIZE];

static inline int run_env(const char *env, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Runs `ENV tradeflow ARGS` in the test directory; returns the exit status, output in `out`. */
static inline int run_env(const char *env, const char *fmt, ...) {
  char args[2048], cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' %s 2>&1", dir, env, TF_CLI, args);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = 0;
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
#define run(...) run_env("", __VA_ARGS__)

static inline void write_file(const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static inline char *path_of(const char *name) {
  static char path[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
  return path[k];
}

static inline int exists(const char *name) {
  char path[512];
  struct stat sb;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return stat(path, &sb) == 0 && sb.st_size > 0;
}

/* 0 on success, -1 if the directory cannot be created. */
static inline int cli_make_dir(const char *prefix) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(dir, sizeof dir, "%s/%s_XXXXXX", base, prefix);
  return mkdtemp(dir) ? 0 : -1;
}

static inline int cli_teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

#endif
