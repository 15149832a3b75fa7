/* bench_util.h — what bench_core.c and bench_mpi.c share: the key=value result line and the
 * clock.  Header-only (static functions): each benchmark is one translation unit. */
#ifndef TRADEFLOW_BENCH_UTIL_H
#define TRADEFLOW_BENCH_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* One case's result line, built up as key=value pairs. */
typedef struct {
  char buf[4096];
  size_t len;
} bench_out;

static void out_add(bench_out *out, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), unused));

static void out_add(bench_out *out, const char *key, const char *fmt, ...) {
  va_list ap;
  int k;
  if (out->len >= sizeof out->buf) return;
  k = snprintf(out->buf + out->len, sizeof out->buf - out->len, " %s=", key);
  if (k < 0) return;
  out->len += (size_t)k;
  if (out->len >= sizeof out->buf) return;
  va_start(ap, fmt);
  k = vsnprintf(out->buf + out->len, sizeof out->buf - out->len, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  out->len += (size_t)k;
}

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* median of v[0..n) (sorts v) */
static inline double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return (n % 2) ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
