/* tradeflow — tests/core/test_gradcheck.c: every primitive op of tensor.h against central finite
 * differences in double precision (float64 build only, TF_DOUBLE).
 *
 * Harness (gc_run): a case is a builder y = f(x_0..x_{n-1}) made of one op (plus fixed constant
 * tensors held in its user data), the input shapes, and one sampler of valid values per input.
 * Inputs are persistent tensors marked requires_grad and filled from the fixed-seed stream
 * tf_rng(GC_SEED, rank 0, TF_RNG_TEST, step = hash of the case name).  Four checks per case:
 *
 *   1. reverse               dL/dx_i, L = sum(f(x) * R)            (tf_grad, seed R)
 *   2. forward (JVP)         tangent of f(x) given tangents V_i   (tf_set_tangent/tf_tangent),
 *                            recording off, vs (f(x + hV) - f(x - hV)) / 2h over the whole
 *                            output, h = 1e-6 max(1, max |x|)
 *   3. reverse over forward  dM/dx_i, M = sum(tangent(f(x)) * R2) (tf_grad of the tangent,
 *                            recording on; that tangent must also equal the one of check 2)
 *   4. reverse over reverse  dG/dx_i, G = sum_i <dL/dx_i, S_i>     (first tf_grad with
 *                            create_graph = 1, then tf_grad of G)
 *
 * Checks 1, 3, 4 compare with central differences of the same scalar (L, M, G) evaluated
 * through the engine at x +- h e_j for every element j of every input, h = 1e-6 max(1, |x_j|);
 * L and M are evaluated with recording off, G with recording on (it needs a first gradient).
 * Criterion (per input, or over the whole output for check 2):
 *     ||ad - fd||_2 < max(GC_TOL * ||fd||_2, GC_ATOL)
 * The absolute floor GC_ATOL = 1e-8 only decides when ||fd|| < 1e-2: it is there for
 * derivatives that are exactly zero (an op linear in an input has zero second derivatives in
 * it; relu/abs away from the kink), where the finite difference is pure rounding noise.
 *
 * A test function runs every case of its op; each failing case/check is printed (case name,
 * check name, input, error figures) and the test ends with one fail_msg naming the count and
 * the first failure, after freeing everything (the suite runs under ASan/LSan).
 *
 * Direct semantic checks that do not use finite differences: matmul against a triple loop,
 * conv2d_periodic against the periodic formula, gather/scatter_add, conv/conv_t/conv_w,
 * expand/sum_to and pad/slice adjointness, where semantics, logsumexp/softmax at +-1000,
 * softmax normalisation, unary values against libm (and tf_unary_mul == g * tf_unary),
 * finiteness at large |x|, log_safe branches, stop_gradient (exact zeros).  One more FD test
 * checks the derivative family of tf_unary itself: f^(k+1) against differences of f^(k).
 */
#ifndef TF_DOUBLE
#error "test_gradcheck needs the float64 build of the core (compile with -DTF_DOUBLE)"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tradeflow/error.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

#define GC_SEED 0x5eed2385a1c3f071ULL
#define GC_MAX_IN 3
#define GC_H 1e-6     /* relative finite-difference step */
#define GC_TOL 1e-6   /* relative criterion, all four checks */
#define GC_ATOL 1e-8  /* absolute floor for derivatives that are exactly zero */

/* ---- reports ----------------------------------------------------------------------------- */

/* Failures are collected over all cases of a test function: each is printed at once with
 * print_error (cmocka truncates long messages), and gc_finish ends the test with fail_msg
 * naming the count and the first failure.  Everything is freed before fail_msg long-jumps. */
typedef struct {
  char first[512];
  int nfail;
} gc_report;

static void gc_report_init(gc_report *rep) {
  rep->first[0] = '\0';
  rep->nfail = 0;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void gc_note(gc_report *rep, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (rep->nfail++ == 0) memcpy(rep->first, line, sizeof line);
  print_error("  %s\n", line);
}

static void gc_finish(const gc_report *rep) {
  if (rep->nfail > 0) fail_msg("%d failure(s), first: %s", rep->nfail, rep->first);
}

/* ---- random inputs ----------------------------------------------------------------------- */

/* Values centre + sign * u with u ~ U(lo, hi); sign random if random_sign, else +1. */
typedef struct {
  double centre, lo, hi;
  int random_sign;
} gc_sampler;

static const gc_sampler GC_STD = {0.0, -1.5, 1.5, 0};   /* smooth ops */
static const gc_sampler GC_UNIT = {0.0, -1.0, 1.0, 0};  /* R, R2, V, S */
static const gc_sampler GC_POS = {0.0, 0.5, 2.0, 0};    /* log, sqrt */
static const gc_sampler GC_AWAY = {0.0, 0.2, 1.5, 1};   /* relu, abs: |x| >= 0.2 >> h */
static const gc_sampler GC_DENOM = {0.0, 0.5, 2.0, 1};  /* div denominator */
static const gc_sampler GC_LARGE = {50.0, -1.5, 1.5, 0}; /* logsumexp max shift */

static void gc_fill(tf_rng *r, tf_tensor *t, gc_sampler s) {
  for (int64_t i = 0; i < t->n; i++) {
    double u = s.lo + (s.hi - s.lo) * tf_rng_uniform(r);
    if (s.random_sign && (tf_rng_u32(r) & 1u)) u = -u;
    t->data[i] = (tf_real)(s.centre + u);
  }
}

static uint32_t gc_hash(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) {
    h ^= (uint8_t)*s;
    h *= 16777619u;
  }
  return h;
}

/* ---- vector helpers ---------------------------------------------------------------------- */

static double gc_norm(const double *a, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += a[i] * a[i];
  return sqrt(s);
}

static double gc_dist(const double *a, const double *b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
  return sqrt(s);
}

/* ||got - want|| <= tol ||want|| (exact match required when want == 0). */
static void gc_expect_close(gc_report *rep, const char *what, const double *got,
                            const double *want, int64_t n, double tol) {
  const double d = gc_dist(got, want, n), w = gc_norm(want, n);
  if (!(d <= tol * w || d == 0.0))
    gc_note(rep, "%s: rel err %.3e (|got-want| %.3e, |want| %.3e, tol %.1e)", what,
            d / (w > 0.0 ? w : 1e-300), d, w, tol);
}

static void gc_expect_near(gc_report *rep, const char *what, double got, double want,
                           double tol) {
  const double d = fabs(got - want), w = fabs(want) > 1.0 ? fabs(want) : 1.0;
  if (!(d <= tol * w)) gc_note(rep, "%s: got %.17g, want %.17g (diff %.3e)", what, got, want, d);
}

static void gc_expect_shape(gc_report *rep, const char *what, const tf_tensor *t, int ndim,
                            const int64_t *shape) {
  int ok = t->ndim == ndim;
  char buf[64];
  for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
  if (!ok) gc_note(rep, "%s: wrong output shape %s", what, tf_shape_str(t, buf, sizeof buf));
}

/* ---- the gradient-check harness ---------------------------------------------------------- */

typedef tf_tensor *(*gc_build_fn)(tf_ctx *ctx, tf_tensor **in, void *ud);

typedef struct {
  int ndim;
  int64_t shape[TF_MAX_DIM];
  gc_sampler s;
} gc_input;

typedef struct {
  const char *name;
  gc_build_fn build;
  void *ud;
  int n_in;
  gc_input in[GC_MAX_IN];
  double tol2; /* tolerance of checks 3 and 4; 0: GC_TOL */
} gc_case;

static gc_input gc_in(int ndim, int64_t n0, int64_t n1, int64_t n2, int64_t n3, gc_sampler s) {
  gc_input in;
  in.ndim = ndim;
  in.shape[0] = n0;
  in.shape[1] = n1;
  in.shape[2] = n2;
  in.shape[3] = n3;
  in.s = s;
  return in;
}
static gc_input gc_in1(int64_t n0, gc_sampler s) { return gc_in(1, n0, 1, 1, 1, s); }
static gc_input gc_in2(int64_t n0, int64_t n1, gc_sampler s) { return gc_in(2, n0, n1, 1, 1, s); }
static gc_input gc_in3(int64_t n0, int64_t n1, int64_t n2, gc_sampler s) {
  return gc_in(3, n0, n1, n2, 1, s);
}
static gc_input gc_in4(int64_t n0, int64_t n1, int64_t n2, int64_t n3, gc_sampler s) {
  return gc_in(4, n0, n1, n2, n3, s);
}

typedef struct {
  const gc_case *c;
  gc_report *rep;
  const char *check; /* name of the running check, for messages */
  tf_ctx *ctx;
  tf_tensor *x[GC_MAX_IN]; /* inputs (persistent, requires grad) */
  tf_tensor *v[GC_MAX_IN]; /* tangents */
  tf_tensor *s[GC_MAX_IN]; /* weights of the first gradients in G */
  tf_tensor *r, *r2;       /* output-shaped weights of L and M */
  int64_t nx, ny;          /* total input elements, output elements */
  double scale;            /* max(1, max |x|): JVP step scale */
  double *ad, *fd, *save;  /* nx each */
  double *jvp, *yp, *ym;   /* ny each */
  int have_jvp;            /* jvp holds the tangent computed by check 2 */
} gc_state;

static void gc_fail_eval(gc_state *st, const char *what) {
  const int status = tf_ctx_status(st->ctx);
  gc_note(st->rep, "%s: %s: %s failed (status %s: %s)", st->c->name, st->check, what,
          tf_strstatus(status), tf_errmsg());
}

/* Reset, set recording, attach tangents V if asked, run the builder. */
static tf_tensor *gc_forward(gc_state *st, int grad, int tangents) {
  tf_tensor *y;
  tf_ctx_reset(st->ctx);
  tf_ctx_set_grad(st->ctx, grad);
  if (tangents) {
    for (int i = 0; i < st->c->n_in; i++) {
      tf_tensor *v = tf_copy(st->ctx, st->v[i]);
      if (!v || tf_set_tangent(st->ctx, st->x[i], v) != TF_OK) {
        gc_fail_eval(st, "tf_set_tangent");
        return NULL;
      }
    }
  }
  y = st->c->build(st->ctx, st->x, st->c->ud);
  if (!y) {
    gc_fail_eval(st, "the op");
    return NULL;
  }
  if (st->ny > 0 && y->n != st->ny) {
    gc_note(st->rep, "%s: %s: output size changed (%lld, was %lld)", st->c->name, st->check,
            (long long)y->n, (long long)st->ny);
    return NULL;
  }
  return y;
}

/* Copy gradients out[0..n_in-1] into st->ad (concatenated), checking status and shapes. */
static int gc_grab(gc_state *st, int rc, tf_tensor **g) {
  int64_t off = 0;
  if (rc != TF_OK) {
    gc_note(st->rep, "%s: %s: tf_grad returned %s (%s)", st->c->name, st->check,
            tf_strstatus(rc), tf_errmsg());
    return 0;
  }
  for (int i = 0; i < st->c->n_in; i++) {
    if (!g[i] || !tf_same_shape(g[i], st->x[i])) {
      gc_note(st->rep, "%s: %s: gradient of input %d is %s", st->c->name, st->check, i,
              g[i] ? "of the wrong shape" : "NULL");
      return 0;
    }
    for (int64_t j = 0; j < g[i]->n; j++) st->ad[off + j] = g[i]->data[j];
    off += g[i]->n;
  }
  return 1;
}

static void gc_compare(gc_state *st, int input, const double *ad, const double *fd, int64_t n,
                       double tol) {
  const double d = gc_dist(ad, fd, n), nf = gc_norm(fd, n), rel = d / fmax(nf, 1e-12);
  char where[32];
  if (rel < tol || d < GC_ATOL) return;
  if (input < 0)
    snprintf(where, sizeof where, "output");
  else
    snprintf(where, sizeof where, "input %d", input);
  gc_note(st->rep, "%s: %s, %s: rel err %.3e (|ad-fd| %.3e, |fd| %.3e, |ad| %.3e, tol %.0e)",
          st->c->name, st->check, where, rel, d, nf, gc_norm(ad, n), tol);
}

static void gc_compare_inputs(gc_state *st, double tol) {
  int64_t off = 0;
  for (int i = 0; i < st->c->n_in; i++) {
    gc_compare(st, i, st->ad + off, st->fd + off, st->x[i]->n, tol);
    off += st->x[i]->n;
  }
}

typedef int (*gc_scalar_fn)(gc_state *st, double *val);

/* L = sum(f(x) * R), recording off. */
static int gc_eval_L(gc_state *st, double *val) {
  tf_tensor *y = gc_forward(st, 0, 0);
  if (!y) return 0;
  *val = tf_dot(y, st->r);
  return 1;
}

/* M = sum(tangent(f(x)) * R2), recording off. */
static int gc_eval_M(gc_state *st, double *val) {
  tf_tensor *y = gc_forward(st, 0, 1), *t;
  if (!y) return 0;
  t = tf_tangent(st->ctx, y);
  if (t && t->n != st->ny) {
    gc_note(st->rep, "%s: %s: tangent has the wrong size", st->c->name, st->check);
    return 0;
  }
  *val = t ? tf_dot(t, st->r2) : 0.0;
  return 1;
}

/* G = sum_i <dL/dx_i, S_i> with the first gradient recomputed (recording on). */
static int gc_eval_G(gc_state *st, double *val) {
  tf_tensor *g[GC_MAX_IN];
  tf_tensor *y = gc_forward(st, 1, 0);
  int rc;
  if (!y) return 0;
  rc = tf_grad(st->ctx, y, st->r, st->c->n_in, st->x, g, 0);
  if (rc != TF_OK) {
    gc_note(st->rep, "%s: %s: tf_grad returned %s (%s)", st->c->name, st->check,
            tf_strstatus(rc), tf_errmsg());
    return 0;
  }
  *val = 0.0;
  for (int i = 0; i < st->c->n_in; i++) {
    if (!g[i] || g[i]->n != st->x[i]->n) {
      gc_note(st->rep, "%s: %s: bad gradient of input %d", st->c->name, st->check, i);
      return 0;
    }
    *val += tf_dot(g[i], st->s[i]);
  }
  return 1;
}

/* Central differences of f at x +- h e_j for every element of every input, into st->fd. */
static int gc_fd_scalar(gc_state *st, gc_scalar_fn f) {
  int64_t off = 0;
  for (int i = 0; i < st->c->n_in; i++) {
    tf_tensor *x = st->x[i];
    for (int64_t j = 0; j < x->n; j++) {
      const tf_real x0 = x->data[j];
      const double h = GC_H * fmax(1.0, fabs(x0));
      double fp = 0.0, fm = 0.0, xp, xm;
      int ok;
      x->data[j] = (tf_real)(x0 + h);
      xp = x->data[j];
      ok = f(st, &fp);
      x->data[j] = (tf_real)(x0 - h);
      xm = x->data[j];
      ok = ok && f(st, &fm);
      x->data[j] = x0;
      if (!ok) return 0;
      st->fd[off + j] = (fp - fm) / (xp - xm);
    }
    off += x->n;
  }
  return 1;
}

static double gc_tol2(const gc_state *st) { return st->c->tol2 > 0.0 ? st->c->tol2 : GC_TOL; }

/* 1. reverse mode. */
static void gc_check_reverse(gc_state *st) {
  tf_tensor *g[GC_MAX_IN];
  tf_tensor *y;
  st->check = "reverse";
  y = gc_forward(st, 1, 0);
  if (!y) return;
  if (!gc_grab(st, tf_grad(st->ctx, y, st->r, st->c->n_in, st->x, g, 0), g)) return;
  if (!gc_fd_scalar(st, gc_eval_L)) return;
  gc_compare_inputs(st, GC_TOL);
}

/* Set every input to x0 + t V (x0 saved in st->save). */
static void gc_move_along_v(gc_state *st, double t) {
  int64_t off = 0;
  for (int i = 0; i < st->c->n_in; i++) {
    for (int64_t j = 0; j < st->x[i]->n; j++)
      st->x[i]->data[j] = (tf_real)(st->save[off + j] + t * st->v[i]->data[j]);
    off += st->x[i]->n;
  }
}

static int gc_eval_y(gc_state *st, double *out) {
  tf_tensor *y = gc_forward(st, 0, 0);
  if (!y) return 0;
  for (int64_t k = 0; k < st->ny; k++) out[k] = y->data[k];
  return 1;
}

/* 2. forward mode (JVP), recording off. */
static void gc_check_forward(gc_state *st) {
  const double h = GC_H * st->scale;
  tf_tensor *y, *t;
  int64_t off = 0;
  int ok;
  st->check = "forward (JVP)";
  y = gc_forward(st, 0, 1);
  if (!y) return;
  t = tf_tangent(st->ctx, y);
  if (t && (t->n != st->ny || !tf_same_shape(t, y))) {
    gc_note(st->rep, "%s: %s: tangent has the wrong shape", st->c->name, st->check);
    return;
  }
  for (int64_t k = 0; k < st->ny; k++) st->jvp[k] = t ? t->data[k] : 0.0;
  st->have_jvp = 1;
  for (int i = 0; i < st->c->n_in; i++) {
    for (int64_t j = 0; j < st->x[i]->n; j++) st->save[off + j] = st->x[i]->data[j];
    off += st->x[i]->n;
  }
  gc_move_along_v(st, h);
  ok = gc_eval_y(st, st->yp);
  gc_move_along_v(st, -h);
  ok = ok && gc_eval_y(st, st->ym);
  gc_move_along_v(st, 0.0);
  if (!ok) return;
  for (int64_t k = 0; k < st->ny; k++) st->yp[k] = (st->yp[k] - st->ym[k]) / (2.0 * h);
  gc_compare(st, -1, st->jvp, st->yp, st->ny, GC_TOL);
}

/* 3. reverse over forward: gradient of M = sum(tangent(y) * R2). */
static void gc_check_rev_over_fwd(gc_state *st) {
  tf_tensor *g[GC_MAX_IN];
  tf_tensor *y, *t;
  st->check = "reverse-over-forward";
  y = gc_forward(st, 1, 1);
  if (!y) return;
  t = tf_tangent(st->ctx, y);
  if (t) {
    if (t->n != st->ny) {
      gc_note(st->rep, "%s: %s: tangent has the wrong size", st->c->name, st->check);
      return;
    }
    /* the tangent must not depend on whether recording is on (check 2 ran with it off) */
    if (st->have_jvp) {
      const double d = gc_dist(t->data, st->jvp, st->ny), nj = gc_norm(st->jvp, st->ny);
      if (!(d <= 1e-14 * nj || d == 0.0))
        gc_note(st->rep, "%s: %s: tangent with recording on differs from recording off by %.3e"
                " (|tangent| %.3e)", st->c->name, st->check, d, nj);
    }
    if (!gc_grab(st, tf_grad(st->ctx, t, st->r2, st->c->n_in, st->x, g, 0), g)) return;
  } else {
    for (int64_t j = 0; j < st->nx; j++) st->ad[j] = 0.0;
  }
  if (!gc_fd_scalar(st, gc_eval_M)) return;
  gc_compare_inputs(st, gc_tol2(st));
}

/* 4. reverse over reverse: gradient of G = sum_i <dL/dx_i, S_i>. */
static void gc_check_rev_over_rev(gc_state *st) {
  tf_tensor *g[GC_MAX_IN], *gg[GC_MAX_IN];
  tf_tensor *y, *gsum = NULL;
  int rc;
  st->check = "reverse-over-reverse";
  y = gc_forward(st, 1, 0);
  if (!y) return;
  rc = tf_grad(st->ctx, y, st->r, st->c->n_in, st->x, g, 1);
  if (!gc_grab(st, rc, g)) return;
  for (int i = 0; i < st->c->n_in; i++) {
    tf_tensor *term = tf_sum_all(st->ctx, tf_mul(st->ctx, g[i], st->s[i]));
    gsum = i == 0 ? term : tf_add(st->ctx, gsum, term);
  }
  if (!gsum) {
    gc_fail_eval(st, "building G from the first gradients");
    return;
  }
  if (!gc_grab(st, tf_grad(st->ctx, gsum, NULL, st->c->n_in, st->x, gg, 0), gg)) return;
  if (!gc_fd_scalar(st, gc_eval_G)) return;
  gc_compare_inputs(st, gc_tol2(st));
}

static void gc_run(gc_report *rep, const gc_case *c) {
  gc_state st;
  tf_rng rng;
  tf_tensor *y;
  memset(&st, 0, sizeof st);
  st.c = c;
  st.rep = rep;
  st.check = "setup";
  st.scale = 1.0;
  st.ctx = tf_ctx_create(0);
  if (!st.ctx) {
    gc_note(rep, "%s: tf_ctx_create failed", c->name);
    return;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash(c->name));
  for (int i = 0; i < c->n_in; i++) {
    st.x[i] = tf_tensor_create(c->in[i].ndim, c->in[i].shape);
    st.v[i] = tf_tensor_create(c->in[i].ndim, c->in[i].shape);
    st.s[i] = tf_tensor_create(c->in[i].ndim, c->in[i].shape);
    if (!st.x[i] || !st.v[i] || !st.s[i]) {
      gc_note(rep, "%s: tf_tensor_create failed for input %d", c->name, i);
      goto done;
    }
    gc_fill(&rng, st.x[i], c->in[i].s);
    gc_fill(&rng, st.v[i], GC_UNIT);
    gc_fill(&rng, st.s[i], GC_UNIT);
    tf_requires_grad(st.x[i], 1);
    for (int64_t j = 0; j < st.x[i]->n; j++) st.scale = fmax(st.scale, fabs(st.x[i]->data[j]));
    st.nx += st.x[i]->n;
  }
  y = gc_forward(&st, 0, 0);
  if (!y) goto done;
  if (!tf_all_finite(y)) {
    gc_note(rep, "%s: forward value not finite", c->name);
    goto done;
  }
  st.ny = y->n;
  st.r = tf_tensor_create(y->ndim, y->shape);
  st.r2 = tf_tensor_create(y->ndim, y->shape);
  st.ad = malloc((size_t)st.nx * sizeof *st.ad);
  st.fd = malloc((size_t)st.nx * sizeof *st.fd);
  st.save = malloc((size_t)st.nx * sizeof *st.save);
  st.jvp = malloc((size_t)st.ny * sizeof *st.jvp);
  st.yp = malloc((size_t)st.ny * sizeof *st.yp);
  st.ym = malloc((size_t)st.ny * sizeof *st.ym);
  if (!st.r || !st.r2 || !st.ad || !st.fd || !st.save || !st.jvp || !st.yp || !st.ym) {
    gc_note(rep, "%s: allocation failed", c->name);
    goto done;
  }
  gc_fill(&rng, st.r, GC_UNIT);
  gc_fill(&rng, st.r2, GC_UNIT);

  gc_check_reverse(&st);
  gc_check_forward(&st);
  gc_check_rev_over_fwd(&st);
  gc_check_rev_over_rev(&st);

done:
  tf_ctx_reset(st.ctx);
  tf_ctx_destroy(st.ctx);
  for (int i = 0; i < GC_MAX_IN; i++) {
    tf_tensor_destroy(st.x[i]);
    tf_tensor_destroy(st.v[i]);
    tf_tensor_destroy(st.s[i]);
  }
  tf_tensor_destroy(st.r);
  tf_tensor_destroy(st.r2);
  free(st.ad);
  free(st.fd);
  free(st.save);
  free(st.jvp);
  free(st.yp);
  free(st.ym);
}

static void gc_run1(gc_report *rep, const char *name, gc_build_fn b, void *ud, gc_input a) {
  gc_case c;
  memset(&c, 0, sizeof c);
  c.name = name;
  c.build = b;
  c.ud = ud;
  c.n_in = 1;
  c.in[0] = a;
  gc_run(rep, &c);
}

static void gc_run2(gc_report *rep, const char *name, gc_build_fn b, void *ud, gc_input a,
                    gc_input a1) {
  gc_case c;
  memset(&c, 0, sizeof c);
  c.name = name;
  c.build = b;
  c.ud = ud;
  c.n_in = 2;
  c.in[0] = a;
  c.in[1] = a1;
  gc_run(rep, &c);
}

/* ---- builders ---------------------------------------------------------------------------- */

typedef struct {
  int ta, tb;
} gc_mm;

static tf_tensor *b_matmul(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_mm *p = ud;
  return tf_matmul(ctx, in[0], in[1], p->ta, p->tb);
}

static tf_tensor *b_linear(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const int *nb = ud; /* 0: no bias, 1: bias (M), 2: bias (1, M) */
  return tf_linear(ctx, in[0], in[1], *nb ? in[2] : NULL);
}

typedef enum { GC_ADD, GC_SUB, GC_MUL, GC_DIV } gc_binop;

static tf_tensor *b_binary(tf_ctx *ctx, tf_tensor **in, void *ud) {
  switch (*(const gc_binop *)ud) {
  case GC_ADD: return tf_add(ctx, in[0], in[1]);
  case GC_SUB: return tf_sub(ctx, in[0], in[1]);
  case GC_MUL: return tf_mul(ctx, in[0], in[1]);
  case GC_DIV: return tf_div(ctx, in[0], in[1]);
  }
  return NULL;
}

static tf_tensor *b_scale(tf_ctx *ctx, tf_tensor **in, void *ud) {
  return tf_scale(ctx, in[0], *(const double *)ud);
}
static tf_tensor *b_shift(tf_ctx *ctx, tf_tensor **in, void *ud) {
  return tf_shift(ctx, in[0], *(const double *)ud);
}
static tf_tensor *b_neg(tf_ctx *ctx, tf_tensor **in, void *ud) {
  (void)ud;
  return tf_neg(ctx, in[0]);
}

/* The named function of each tf_fn. */
static tf_tensor *gc_apply_fn(tf_ctx *ctx, tf_fn fn, tf_tensor *x) {
  switch (fn) {
  case TF_FN_EXP: return tf_exp(ctx, x);
  case TF_FN_LOG: return tf_log(ctx, x);
  case TF_FN_TANH: return tf_tanh(ctx, x);
  case TF_FN_SIGMOID: return tf_sigmoid(ctx, x);
  case TF_FN_SOFTPLUS: return tf_softplus(ctx, x);
  case TF_FN_SILU: return tf_silu(ctx, x);
  case TF_FN_RELU: return tf_relu(ctx, x);
  case TF_FN_SQUARE: return tf_square(ctx, x);
  case TF_FN_SQRT: return tf_sqrt(ctx, x);
  case TF_FN_ABS: return tf_abs(ctx, x);
  case TF_FN_SIN: return tf_sin(ctx, x);
  case TF_FN_COS: return tf_cos(ctx, x);
  default: return NULL;
  }
}

static tf_tensor *b_fn(tf_ctx *ctx, tf_tensor **in, void *ud) {
  return gc_apply_fn(ctx, *(const tf_fn *)ud, in[0]);
}

typedef struct {
  tf_fn fn;
  int k;
} gc_fnk;

static tf_tensor *b_unary(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_fnk *p = ud;
  return tf_unary(ctx, p->fn, p->k, in[0]);
}
static tf_tensor *b_unary_mul(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_fnk *p = ud;
  return tf_unary_mul(ctx, p->fn, p->k, in[0], in[1]);
}
static tf_tensor *b_abs_smooth(tf_ctx *ctx, tf_tensor **in, void *ud) {
  return tf_abs_smooth(ctx, in[0], *(const double *)ud);
}
static tf_tensor *b_log_safe(tf_ctx *ctx, tf_tensor **in, void *ud) {
  return tf_log_safe(ctx, in[0], *(const double *)ud);
}

typedef enum { GC_SUM, GC_MEAN, GC_LSE, GC_SOFTMAX, GC_LOG_SOFTMAX } gc_redop;
typedef struct {
  gc_redop op;
  int axis;
} gc_red;

static tf_tensor *b_reduce(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_red *p = ud;
  switch (p->op) {
  case GC_SUM: return tf_sum(ctx, in[0], p->axis);
  case GC_MEAN: return tf_mean(ctx, in[0], p->axis);
  case GC_LSE: return tf_logsumexp(ctx, in[0], p->axis);
  case GC_SOFTMAX: return tf_softmax(ctx, in[0], p->axis);
  case GC_LOG_SOFTMAX: return tf_log_softmax(ctx, in[0], p->axis);
  }
  return NULL;
}
static tf_tensor *b_sum_all(tf_ctx *ctx, tf_tensor **in, void *ud) {
  (void)ud;
  return tf_sum_all(ctx, in[0]);
}
static tf_tensor *b_mean_all(tf_ctx *ctx, tf_tensor **in, void *ud) {
  (void)ud;
  return tf_mean_all(ctx, in[0]);
}

typedef struct {
  int ndim;
  int64_t shape[TF_MAX_DIM];
} gc_shape;

static tf_tensor *b_sum_to(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_shape *p = ud;
  return tf_sum_to(ctx, in[0], p->ndim, p->shape);
}
static tf_tensor *b_expand(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_shape *p = ud;
  return tf_expand(ctx, in[0], p->ndim, p->shape);
}
static tf_tensor *b_reshape(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_shape *p = ud;
  return tf_reshape(ctx, in[0], p->ndim, p->shape);
}

static tf_tensor *b_transpose(tf_ctx *ctx, tf_tensor **in, void *ud) {
  (void)ud;
  return tf_transpose(ctx, in[0]);
}

static tf_tensor *b_concat3(tf_ctx *ctx, tf_tensor **in, void *ud) {
  (void)ud;
  return tf_concat(ctx, 3, in);
}

typedef struct {
  int64_t a, b;
} gc_pair;

static tf_tensor *b_slice(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_pair *p = ud;
  return tf_slice(ctx, in[0], p->a, p->b);
}
static tf_tensor *b_pad(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_pair *p = ud;
  return tf_pad(ctx, in[0], p->a, p->b);
}

typedef struct {
  int axis;
  const int64_t *idx;
  int64_t m, size;
} gc_index;

static tf_tensor *b_gather(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_index *p = ud;
  return tf_gather(ctx, in[0], p->axis, p->idx, p->m);
}
static tf_tensor *b_scatter(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_index *p = ud;
  return tf_scatter_add(ctx, in[0], p->axis, p->idx, p->m, p->size);
}

typedef struct {
  tf_tensor *mask;
  int a_null, b_null;
} gc_where;

static tf_tensor *b_where(tf_ctx *ctx, tf_tensor **in, void *ud) {
  const gc_where *p = ud;
  tf_tensor *a = p->a_null ? NULL : in[0];
  tf_tensor *b = p->b_null ? NULL : in[p->a_null ? 0 : 1];
  return tf_where(ctx, p->mask, a, b);
}

static tf_tensor *b_conv(tf_ctx *ctx, tf_tensor **in, void *ud) {
  (void)ud;
  return tf_conv2d_periodic(ctx, in[0], in[1]);
}
static tf_tensor *b_conv_t(tf_ctx *ctx, tf_tensor **in, void *ud) {
  (void)ud;
  return tf_conv2d_periodic_t(ctx, in[0], in[1]);
}
static tf_tensor *b_conv_w(tf_ctx *ctx, tf_tensor **in, void *ud) {
  (void)ud;
  return tf_conv2d_periodic_w(ctx, in[0], in[1]);
}

/* ---- gradient checks: matmul (M = 3, K = 4, N = 5) ---------------------------------------- */

static void gc_matmul_case(int ta, int tb) {
  gc_report rep;
  gc_mm p = {ta, tb};
  char name[64];
  gc_report_init(&rep);
  snprintf(name, sizeof name, "matmul(trans_a=%d, trans_b=%d)", ta, tb);
  gc_run2(&rep, name, b_matmul, &p, ta ? gc_in2(4, 3, GC_STD) : gc_in2(3, 4, GC_STD),
          tb ? gc_in2(5, 4, GC_STD) : gc_in2(4, 5, GC_STD));
  gc_finish(&rep);
}

static void test_matmul_nn(void **state) { (void)state; gc_matmul_case(0, 0); }
static void test_matmul_tn(void **state) { (void)state; gc_matmul_case(1, 0); }
static void test_matmul_nt(void **state) { (void)state; gc_matmul_case(0, 1); }
static void test_matmul_tt(void **state) { (void)state; gc_matmul_case(1, 1); }

/* ---- elementwise binary ops, equal shapes and broadcasting (N = 3, D = 4) ------------------ */

static void gc_binary_cases(gc_binop op, const char *opname, gc_sampler sb) {
  struct {
    const char *shapes;
    gc_input a, b;
  } v[7];
  gc_report rep;
  char name[96];
  gc_report_init(&rep);
  v[0].shapes = "(3,4),(3,4)";
  v[0].a = gc_in2(3, 4, GC_STD);
  v[0].b = gc_in2(3, 4, sb);
  v[1].shapes = "(3,4),(4)";
  v[1].a = gc_in2(3, 4, GC_STD);
  v[1].b = gc_in1(4, sb);
  v[2].shapes = "(3,4),(3,1)";
  v[2].a = gc_in2(3, 4, GC_STD);
  v[2].b = gc_in2(3, 1, sb);
  v[3].shapes = "(3,4),(1)";
  v[3].a = gc_in2(3, 4, GC_STD);
  v[3].b = gc_in1(1, sb);
  v[4].shapes = "(4),(3,4)";
  v[4].a = gc_in1(4, GC_STD);
  v[4].b = gc_in2(3, 4, sb);
  v[5].shapes = "(3,1),(1,4)";
  v[5].a = gc_in2(3, 1, GC_STD);
  v[5].b = gc_in2(1, 4, sb);
  v[6].shapes = "(2,3,4),(3,1)";
  v[6].a = gc_in3(2, 3, 4, GC_STD);
  v[6].b = gc_in2(3, 1, sb);
  for (int i = 0; i < 7; i++) {
    snprintf(name, sizeof name, "%s %s", opname, v[i].shapes);
    gc_run2(&rep, name, b_binary, &op, v[i].a, v[i].b);
  }
  gc_finish(&rep);
}

static void test_add(void **state) { (void)state; gc_binary_cases(GC_ADD, "add", GC_STD); }
static void test_sub(void **state) { (void)state; gc_binary_cases(GC_SUB, "sub", GC_STD); }
static void test_mul(void **state) { (void)state; gc_binary_cases(GC_MUL, "mul", GC_STD); }
static void test_div(void **state) { (void)state; gc_binary_cases(GC_DIV, "div", GC_DENOM); }

static void test_scale(void **state) {
  gc_report rep;
  double alpha = -1.73, alpha2 = 0.385;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "scale(-1.73)", b_scale, &alpha, gc_in2(3, 4, GC_STD));
  gc_run1(&rep, "scale(0.385)", b_scale, &alpha2, gc_in3(2, 3, 2, GC_STD));
  gc_finish(&rep);
}

static void test_shift(void **state) {
  gc_report rep;
  double beta = 0.37;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "shift(0.37)", b_shift, &beta, gc_in2(3, 4, GC_STD));
  gc_finish(&rep);
}

static void test_neg(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "neg", b_neg, NULL, gc_in2(3, 4, GC_STD));
  gc_finish(&rep);
}

/* ---- unary functions --------------------------------------------------------------------- */

static gc_sampler gc_fn_sampler(tf_fn fn) {
  switch (fn) {
  case TF_FN_LOG:
  case TF_FN_SQRT: return GC_POS;
  case TF_FN_RELU:
  case TF_FN_ABS: return GC_AWAY;
  default: return GC_STD;
  }
}

static const char *gc_fn_name(tf_fn fn) {
  static const char *const names[TF_FN_COUNT] = {"exp",  "log",    "tanh",   "sigmoid",
                                                 "softplus", "silu", "relu", "square",
                                                 "sqrt", "abs",    "sin",    "cos"};
  return (int)fn >= 0 && fn < TF_FN_COUNT ? names[fn] : "?";
}

static void gc_fn_case(tf_fn fn) {
  gc_report rep;
  gc_report_init(&rep);
  gc_run1(&rep, gc_fn_name(fn), b_fn, &fn, gc_in2(3, 4, gc_fn_sampler(fn)));
  gc_finish(&rep);
}

static void test_exp(void **state) { (void)state; gc_fn_case(TF_FN_EXP); }
static void test_log(void **state) { (void)state; gc_fn_case(TF_FN_LOG); }
static void test_tanh(void **state) { (void)state; gc_fn_case(TF_FN_TANH); }
static void test_sigmoid(void **state) { (void)state; gc_fn_case(TF_FN_SIGMOID); }
static void test_softplus(void **state) { (void)state; gc_fn_case(TF_FN_SOFTPLUS); }
static void test_silu(void **state) { (void)state; gc_fn_case(TF_FN_SILU); }
static void test_relu(void **state) { (void)state; gc_fn_case(TF_FN_RELU); }
static void test_square(void **state) { (void)state; gc_fn_case(TF_FN_SQUARE); }
static void test_sqrt(void **state) { (void)state; gc_fn_case(TF_FN_SQRT); }
static void test_abs(void **state) { (void)state; gc_fn_case(TF_FN_ABS); }
static void test_sin(void **state) { (void)state; gc_fn_case(TF_FN_SIN); }
static void test_cos(void **state) { (void)state; gc_fn_case(TF_FN_COS); }

/* tf_unary(fn, k) for the listed (fn, k); checks 3 and 4 then need f^(k+2). */
static void gc_unary_k_cases(const gc_fnk *list, int n) {
  gc_report rep;
  char name[64];
  gc_report_init(&rep);
  for (int i = 0; i < n; i++) {
    gc_fnk p = list[i];
    snprintf(name, sizeof name, "unary(%s, k=%d)", gc_fn_name(p.fn), p.k);
    gc_run1(&rep, name, b_unary, &p, gc_in2(3, 4, gc_fn_sampler(p.fn)));
  }
  gc_finish(&rep);
}

static void test_unary_tanh_k(void **state) {
  static const gc_fnk list[] = {{TF_FN_TANH, 1}, {TF_FN_TANH, 2}};
  (void)state;
  gc_unary_k_cases(list, 2);
}

static void test_unary_silu_k(void **state) {
  static const gc_fnk list[] = {{TF_FN_SILU, 1}, {TF_FN_SILU, 2}};
  (void)state;
  gc_unary_k_cases(list, 2);
}

static void test_unary_k_other(void **state) {
  static const gc_fnk list[] = {{TF_FN_SIGMOID, 1}, {TF_FN_SIGMOID, 2}, {TF_FN_SOFTPLUS, 1},
                                {TF_FN_SOFTPLUS, 2}, {TF_FN_LOG, 1},     {TF_FN_SQRT, 2},
                                {TF_FN_SIN, 2},      {TF_FN_EXP, 1}};
  (void)state;
  gc_unary_k_cases(list, (int)(sizeof list / sizeof list[0]));
}

static void test_unary_mul(void **state) {
  static const gc_fnk list[] = {{TF_FN_TANH, 1}, {TF_FN_SILU, 2},     {TF_FN_SIGMOID, 1},
                                {TF_FN_LOG, 1},  {TF_FN_SOFTPLUS, 2}, {TF_FN_EXP, 0}};
  gc_report rep;
  char name[64];
  (void)state;
  gc_report_init(&rep);
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
    gc_fnk p = list[i];
    snprintf(name, sizeof name, "unary_mul(%s, k=%d)", gc_fn_name(p.fn), p.k);
    gc_run2(&rep, name, b_unary_mul, &p, gc_in2(3, 4, gc_fn_sampler(p.fn)),
            gc_in2(3, 4, GC_STD));
  }
  gc_finish(&rep);
}

static void test_abs_smooth(void **state) {
  gc_report rep;
  double eps = 0.3, eps2 = 0.05;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "abs_smooth(eps=0.3)", b_abs_smooth, &eps, gc_in2(3, 4, GC_STD));
  gc_run1(&rep, "abs_smooth(eps=0.05) away from 0", b_abs_smooth, &eps2, gc_in2(3, 4, GC_AWAY));
  gc_finish(&rep);
}

static void test_log_safe(void **state) {
  /* eps = 0.25: inputs stay >= 0.05 away from the branch point, far more than the FD step. */
  const gc_sampler above = {0.0, 0.5, 2.0, 0};   /* log branch */
  const gc_sampler below = {0.0, -1.0, 0.2, 0};  /* linear continuation */
  const gc_sampler mixed = {0.25, 0.05, 1.0, 1}; /* both, eps +- u */
  gc_report rep;
  double eps = 0.25;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "log_safe(eps=0.25) x > eps", b_log_safe, &eps, gc_in2(3, 4, above));
  gc_run1(&rep, "log_safe(eps=0.25) x < eps", b_log_safe, &eps, gc_in2(3, 4, below));
  gc_run1(&rep, "log_safe(eps=0.25) mixed", b_log_safe, &eps, gc_in2(3, 4, mixed));
  gc_finish(&rep);
}

/* ---- reductions -------------------------------------------------------------------------- */

static void gc_reduce_case(gc_report *rep, gc_redop op, const char *opname, int axis,
                           gc_input a) {
  gc_red p = {op, axis};
  char name[96], buf[64];
  int64_t shape[TF_MAX_DIM];
  for (int d = 0; d < TF_MAX_DIM; d++) shape[d] = a.shape[d];
  {
    /* shape string of the input, for the case name */
    int k = 0;
    buf[0] = '\0';
    for (int d = 0; d < a.ndim; d++)
      k += snprintf(buf + k, sizeof buf - (size_t)k, d ? ",%lld" : "%lld", (long long)shape[d]);
  }
  snprintf(name, sizeof name, "%s((%s), axis=%d)%s", opname, buf, axis,
           a.s.centre != 0.0 ? " large" : "");
  gc_run1(rep, name, b_reduce, &p, a);
}

static void test_sum(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_reduce_case(&rep, GC_SUM, "sum", 0, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_SUM, "sum", -1, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_SUM, "sum", 1, gc_in3(2, 3, 4, GC_STD));
  gc_finish(&rep);
}

static void test_mean(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_reduce_case(&rep, GC_MEAN, "mean", 0, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_MEAN, "mean", -1, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_MEAN, "mean", 1, gc_in3(2, 3, 4, GC_STD));
  gc_finish(&rep);
}

static void test_sum_all(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "sum_all", b_sum_all, NULL, gc_in2(3, 4, GC_STD));
  gc_finish(&rep);
}

static void test_mean_all(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "mean_all", b_mean_all, NULL, gc_in2(3, 4, GC_STD));
  gc_finish(&rep);
}

static void test_sum_to(void **state) {
  gc_shape s1 = {1, {4, 1, 1, 1}}, s2 = {2, {3, 1, 1, 1}}, s3 = {1, {1, 1, 1, 1}},
           s4 = {2, {3, 1, 1, 1}};
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "sum_to (3,4)->(4)", b_sum_to, &s1, gc_in2(3, 4, GC_STD));
  gc_run1(&rep, "sum_to (3,4)->(3,1)", b_sum_to, &s2, gc_in2(3, 4, GC_STD));
  gc_run1(&rep, "sum_to (3,4)->(1)", b_sum_to, &s3, gc_in2(3, 4, GC_STD));
  gc_run1(&rep, "sum_to (2,3,4)->(3,1)", b_sum_to, &s4, gc_in3(2, 3, 4, GC_STD));
  gc_finish(&rep);
}

static void test_expand(void **state) {
  gc_shape s2 = {2, {3, 4, 1, 1}}, s3 = {3, {2, 3, 4, 1}};
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "expand (4)->(3,4)", b_expand, &s2, gc_in1(4, GC_STD));
  gc_run1(&rep, "expand (3,1)->(3,4)", b_expand, &s2, gc_in2(3, 1, GC_STD));
  gc_run1(&rep, "expand (1)->(3,4)", b_expand, &s2, gc_in1(1, GC_STD));
  gc_run1(&rep, "expand (3,1)->(2,3,4)", b_expand, &s3, gc_in2(3, 1, GC_STD));
  gc_finish(&rep);
}

static void test_logsumexp(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_reduce_case(&rep, GC_LSE, "logsumexp", 0, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_LSE, "logsumexp", -1, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_LSE, "logsumexp", 0, gc_in2(3, 4, GC_LARGE));
  gc_reduce_case(&rep, GC_LSE, "logsumexp", -1, gc_in2(3, 4, GC_LARGE));
  gc_reduce_case(&rep, GC_LSE, "logsumexp", 1, gc_in3(2, 3, 4, GC_STD));
  gc_finish(&rep);
}

static void test_softmax(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_reduce_case(&rep, GC_SOFTMAX, "softmax", -1, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_SOFTMAX, "softmax", 0, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_SOFTMAX, "softmax", -1, gc_in2(3, 4, GC_LARGE));
  gc_reduce_case(&rep, GC_SOFTMAX, "softmax", 1, gc_in3(2, 3, 4, GC_STD));
  gc_finish(&rep);
}

static void test_log_softmax(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_reduce_case(&rep, GC_LOG_SOFTMAX, "log_softmax", -1, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_LOG_SOFTMAX, "log_softmax", 0, gc_in2(3, 4, GC_STD));
  gc_reduce_case(&rep, GC_LOG_SOFTMAX, "log_softmax", -1, gc_in2(3, 4, GC_LARGE));
  gc_finish(&rep);
}

/* ---- structure ops ----------------------------------------------------------------------- */

static void test_concat(void **state) {
  gc_case c;
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  memset(&c, 0, sizeof c);
  c.name = "concat (3,2),(3,4),(3,1)";
  c.build = b_concat3;
  c.n_in = 3;
  c.in[0] = gc_in2(3, 2, GC_STD);
  c.in[1] = gc_in2(3, 4, GC_STD);
  c.in[2] = gc_in2(3, 1, GC_STD);
  gc_run(&rep, &c);
  gc_finish(&rep);
}

static void test_slice(void **state) {
  gc_pair p = {1, 3}, p2 = {0, 2};
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "slice (3,6) start 1 len 3", b_slice, &p, gc_in2(3, 6, GC_STD));
  gc_run1(&rep, "slice (2,2,5) start 0 len 2", b_slice, &p2, gc_in3(2, 2, 5, GC_STD));
  gc_finish(&rep);
}

static void test_pad(void **state) {
  gc_pair p = {2, 7}, p2 = {0, 4};
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "pad (3,3) start 2 total 7", b_pad, &p, gc_in2(3, 3, GC_STD));
  gc_run1(&rep, "pad (2,2,3) start 0 total 4", b_pad, &p2, gc_in3(2, 2, 3, GC_STD));
  gc_finish(&rep);
}

static void test_reshape(void **state) {
  gc_shape s1 = {3, {2, 2, 3, 1}}, s2 = {1, {12, 1, 1, 1}};
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "reshape (3,4)->(2,2,3)", b_reshape, &s1, gc_in2(3, 4, GC_STD));
  gc_run1(&rep, "reshape (2,3,2)->(12)", b_reshape, &s2, gc_in3(2, 3, 2, GC_STD));
  gc_finish(&rep);
}

static void test_transpose(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "transpose (3,5)", b_transpose, NULL, gc_in2(3, 5, GC_STD));
  gc_run1(&rep, "transpose (2,3,4)", b_transpose, NULL, gc_in3(2, 3, 4, GC_STD));
  gc_finish(&rep);
}

/* Values against the index definition, across a tile edge (33 x 40 > the 32 x 32 tile). */
static void test_transpose_values(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x = tf_new3(ctx, 2, 33, 40);
  for (int64_t i = 0; i < x->n; i++) x->data[i] = (tf_real)i;
  tf_tensor *y = tf_transpose(ctx, x);
  assert_non_null(y);
  assert_int_equal(y->shape[0], 2);
  assert_int_equal(y->shape[1], 40);
  assert_int_equal(y->shape[2], 33);
  for (int64_t o = 0; o < 2; o++)
    for (int64_t i = 0; i < 33; i++)
      for (int64_t j = 0; j < 40; j++)
        assert_true(y->data[o * 1320 + j * 33 + i] == x->data[o * 1320 + i * 40 + j]);
  assert_null(tf_transpose(ctx, tf_new1(ctx, 4)));
  assert_int_equal(tf_ctx_status(ctx), TF_EINVAL);
  tf_ctx_destroy(ctx);
}

/* Repeated indices in both. */
static const int64_t GC_IDX_GATHER[5] = {2, 0, 2, 3, 1};
static const int64_t GC_IDX_SCATTER[5] = {1, 3, 1, 0, 1};

static void test_gather(void **state) {
  gc_index p0 = {0, GC_IDX_GATHER, 5, 0}, p1 = {-1, GC_IDX_GATHER, 5, 0},
           p2 = {1, GC_IDX_GATHER, 5, 0};
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "gather (4,3) axis 0", b_gather, &p0, gc_in2(4, 3, GC_STD));
  gc_run1(&rep, "gather (3,4) axis -1", b_gather, &p1, gc_in2(3, 4, GC_STD));
  gc_run1(&rep, "gather (2,4,3) axis 1", b_gather, &p2, gc_in3(2, 4, 3, GC_STD));
  gc_finish(&rep);
}

static void test_scatter_add(void **state) {
  gc_index p0 = {0, GC_IDX_SCATTER, 5, 4}, p1 = {-1, GC_IDX_SCATTER, 5, 4},
           p2 = {1, GC_IDX_SCATTER, 5, 4};
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run1(&rep, "scatter_add (5,3) axis 0 size 4", b_scatter, &p0, gc_in2(5, 3, GC_STD));
  gc_run1(&rep, "scatter_add (3,5) axis -1 size 4", b_scatter, &p1, gc_in2(3, 5, GC_STD));
  gc_run1(&rep, "scatter_add (2,5,3) axis 1 size 4", b_scatter, &p2, gc_in3(2, 5, 3, GC_STD));
  gc_finish(&rep);
}

/* Mask with zeros, ones and a negative nonzero (mask != 0 selects a). */
static double gc_mask_value(int64_t i) {
  return (i * 7) % 3 == 0 ? 0.0 : (i % 2 ? 1.0 : -0.5);
}

static void test_where(void **state) {
  const int64_t shape[2] = {3, 4};
  gc_report rep;
  tf_tensor *mask = tf_tensor_create(2, shape);
  (void)state;
  gc_report_init(&rep);
  if (!mask) {
    gc_note(&rep, "where: tf_tensor_create failed");
  } else {
    gc_where ab = {mask, 0, 0}, an = {mask, 1, 0}, bn = {mask, 0, 1};
    for (int64_t i = 0; i < mask->n; i++) mask->data[i] = gc_mask_value(i);
    gc_run2(&rep, "where(mask, a, b)", b_where, &ab, gc_in2(3, 4, GC_STD), gc_in2(3, 4, GC_STD));
    gc_run1(&rep, "where(mask, NULL, b)", b_where, &an, gc_in2(3, 4, GC_STD));
    gc_run1(&rep, "where(mask, a, NULL)", b_where, &bn, gc_in2(3, 4, GC_STD));
  }
  tf_tensor_destroy(mask);
  gc_finish(&rep);
}

/* ---- periodic convolution: N = 2, Cin = 2, Cout = 3, L = 4 x 5 ----------------------------- */

static void test_conv2d_periodic(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run2(&rep, "conv2d_periodic x(2,4,5,2) w(3,2,3,3)", b_conv, NULL,
          gc_in4(2, 4, 5, 2, GC_STD), gc_in4(3, 2, 3, 3, GC_STD));
  gc_finish(&rep);
}

static void test_conv2d_periodic_t(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run2(&rep, "conv2d_periodic_t g(2,4,5,3) w(3,2,3,3)", b_conv_t, NULL,
          gc_in4(2, 4, 5, 3, GC_STD), gc_in4(3, 2, 3, 3, GC_STD));
  gc_finish(&rep);
}

static void test_conv2d_periodic_w(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  gc_run2(&rep, "conv2d_periodic_w x(2,4,5,2) g(2,4,5,3)", b_conv_w, NULL,
          gc_in4(2, 4, 5, 2, GC_STD), gc_in4(2, 4, 5, 3, GC_STD));
  gc_finish(&rep);
}

/* ---- stop_gradient: exact zeros, not finite differences ---------------------------------- */

static int gc_all_zero(const tf_tensor *t) {
  for (int64_t i = 0; i < t->n; i++)
    if (t->data[i] != 0.0) return 0;
  return 1;
}

static void test_stop_gradient(void **state) {
  const int64_t shape[2] = {3, 4};
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x = tf_tensor_create(2, shape), *r = tf_tensor_create(2, shape);
  tf_tensor *v = tf_tensor_create(2, shape), *s = tf_tensor_create(2, shape);
  tf_tensor *g[1], *gg[1], *y, *z, *t;
  double want[12], got[12];
  (void)state;
  gc_report_init(&rep);
  if (!ctx || !x || !r || !v || !s) {
    gc_note(&rep, "stop_gradient: allocation failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("stop_gradient"));
  gc_fill(&rng, x, GC_STD);
  gc_fill(&rng, r, GC_UNIT);
  gc_fill(&rng, v, GC_UNIT);
  gc_fill(&rng, s, GC_UNIT);
  tf_requires_grad(x, 1);

  /* values, and the reverse gradient through stop_gradient alone: exactly zero */
  tf_ctx_reset(ctx);
  y = tf_stop_gradient(ctx, x);
  if (!y || !tf_same_shape(y, x)) {
    gc_note(&rep, "stop_gradient: op failed (%s)", tf_errmsg());
    goto done;
  }
  for (int64_t i = 0; i < x->n; i++)
    if (y->data[i] != x->data[i]) {
      gc_note(&rep, "stop_gradient: value %lld differs from the input", (long long)i);
      break;
    }
  if (tf_grad(ctx, y, r, 1, &x, g, 0) != TF_OK || !g[0] || !gc_all_zero(g[0]))
    gc_note(&rep, "stop_gradient: reverse: gradient not exactly zero (%s)", tf_errmsg());

  /* z = x * sg(x): dL/dx = R * x (the stopped factor is a constant) */
  tf_ctx_reset(ctx);
  z = tf_mul(ctx, x, tf_stop_gradient(ctx, x));
  if (!z || tf_grad(ctx, z, r, 1, &x, g, 0) != TF_OK || !g[0]) {
    gc_note(&rep, "stop_gradient: reverse of x*sg(x) failed (%s)", tf_errmsg());
  } else {
    for (int64_t i = 0; i < x->n; i++) {
      want[i] = r->data[i] * x->data[i];
      got[i] = g[0]->data[i];
    }
    gc_expect_close(&rep, "stop_gradient: reverse of x*sg(x)", got, want, x->n, 1e-15);
  }

  /* forward: the tangent of sg(x) is NULL or zero; that of x*sg(x) is V*x */
  tf_ctx_reset(ctx);
  if (tf_set_tangent(ctx, x, tf_copy(ctx, v)) != TF_OK) {
    gc_note(&rep, "stop_gradient: tf_set_tangent failed (%s)", tf_errmsg());
    goto done;
  }
  y = tf_stop_gradient(ctx, x);
  t = y ? tf_tangent(ctx, y) : NULL;
  if (!y || (t && !gc_all_zero(t)))
    gc_note(&rep, "stop_gradient: forward: tangent of sg(x) is not zero");
  z = tf_mul(ctx, x, y);
  t = z ? tf_tangent(ctx, z) : NULL;
  if (!t) {
    gc_note(&rep, "stop_gradient: forward: x*sg(x) has no tangent");
  } else {
    for (int64_t i = 0; i < x->n; i++) {
      want[i] = v->data[i] * x->data[i];
      got[i] = t->data[i];
    }
    gc_expect_close(&rep, "stop_gradient: forward of x*sg(x)", got, want, x->n, 1e-15);
    /* reverse over forward: M = <V * sg(x), R> does not depend on x */
    if (tf_grad(ctx, t, r, 1, &x, g, 0) != TF_OK || !g[0] || !gc_all_zero(g[0]))
      gc_note(&rep, "stop_gradient: reverse-over-forward: gradient not exactly zero (%s)",
              tf_errmsg());
  }

  /* reverse over reverse: dL/dx = R * sg(x), so G = <R * sg(x), S> has zero gradient */
  tf_ctx_reset(ctx);
  z = tf_mul(ctx, x, tf_stop_gradient(ctx, x));
  if (!z || tf_grad(ctx, z, r, 1, &x, g, 1) != TF_OK || !g[0]) {
    gc_note(&rep, "stop_gradient: reverse (create_graph) of x*sg(x) failed (%s)", tf_errmsg());
  } else {
    tf_tensor *gsum = tf_sum_all(ctx, tf_mul(ctx, g[0], s));
    if (!gsum || tf_grad(ctx, gsum, NULL, 1, &x, gg, 0) != TF_OK || !gg[0] ||
        !gc_all_zero(gg[0]))
      gc_note(&rep, "stop_gradient: reverse-over-reverse: gradient not exactly zero (%s)",
              tf_errmsg());
  }

done:
  tf_ctx_destroy(ctx);
  tf_tensor_destroy(x);
  tf_tensor_destroy(r);
  tf_tensor_destroy(v);
  tf_tensor_destroy(s);
  gc_finish(&rep);
}

/* ---- direct semantic checks -------------------------------------------------------------- */

/* Arena tensor with random values (valid until the next reset). */
static tf_tensor *gc_rand(tf_ctx *ctx, tf_rng *r, int ndim, const int64_t *shape, gc_sampler s) {
  tf_tensor *t = tf_new(ctx, ndim, shape);
  if (t) gc_fill(r, t, s);
  return t;
}

/* linear: x (3, 4), W (5, 4), b (5) / (1, 5) / none */
static void test_linear(void **state) {
  gc_report rep;
  (void)state;
  gc_report_init(&rep);
  for (int nb = 0; nb <= 2; nb++) {
    gc_case c;
    char name[64];
    memset(&c, 0, sizeof c);
    snprintf(name, sizeof name, "linear(%s)", nb == 0 ? "no bias" : nb == 1 ? "b (5)" : "b (1, 5)");
    c.name = name;
    c.build = b_linear;
    c.ud = &nb;
    c.n_in = nb ? 3 : 2;
    c.in[0] = gc_in2(3, 4, GC_STD);
    c.in[1] = gc_in2(5, 4, GC_STD);
    c.in[2] = nb == 1 ? gc_in1(5, GC_STD) : gc_in2(1, 5, GC_STD);
    gc_run(&rep, &c);
  }
  gc_finish(&rep);
}

static void test_matmul_naive(void **state) {
  enum { M = 3, K = 4, N = 5 };
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("matmul_naive"));
  for (int ta = 0; ta < 2; ta++) {
    for (int tb = 0; tb < 2; tb++) {
      const int64_t sa[2] = {ta ? K : M, ta ? M : K}, sb[2] = {tb ? N : K, tb ? K : N};
      const int64_t sc[2] = {M, N};
      double want[M * N];
      char what[64];
      tf_tensor *a, *b, *c;
      snprintf(what, sizeof what, "matmul(trans_a=%d, trans_b=%d) vs loop", ta, tb);
      tf_ctx_reset(ctx);
      a = gc_rand(ctx, &rng, 2, sa, GC_STD);
      b = gc_rand(ctx, &rng, 2, sb, GC_STD);
      c = tf_matmul(ctx, a, b, ta, tb);
      if (!c) {
        gc_note(&rep, "%s: op failed (%s)", what, tf_errmsg());
        continue;
      }
      gc_expect_shape(&rep, what, c, 2, sc);
      if (c->n != M * N) continue;
      for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
          double acc = 0.0;
          for (int k = 0; k < K; k++) {
            const double av = ta ? a->data[k * M + i] : a->data[i * K + k];
            const double bv = tb ? b->data[j * K + k] : b->data[k * N + j];
            acc += av * bv;
          }
          want[i * N + j] = acc;
        }
      }
      gc_expect_close(&rep, what, c->data, want, M * N, 1e-14);
    }
  }
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

/* y[n, i, j, o] = sum_{c, di, dj} w[o, c, di, dj]
 *                 * x[n, (i + di - 1) mod L1, (j + dj - 1) mod L2, c]  (channels-last) */
static void gc_conv_naive(const double *x, const double *w, double *y, int64_t nb, int64_t cin,
                          int64_t cout, int64_t l1, int64_t l2) {
  for (int64_t n = 0; n < nb; n++)
    for (int64_t o = 0; o < cout; o++)
      for (int64_t i = 0; i < l1; i++)
        for (int64_t j = 0; j < l2; j++) {
          double acc = 0.0;
          for (int64_t c = 0; c < cin; c++)
            for (int64_t di = 0; di < 3; di++)
              for (int64_t dj = 0; dj < 3; dj++) {
                const int64_t ii = (i + di - 1 + l1) % l1, jj = (j + dj - 1 + l2) % l2;
                acc += w[((o * cin + c) * 3 + di) * 3 + dj] *
                       x[((n * l1 + ii) * l2 + jj) * cin + c];
              }
          y[((n * l1 + i) * l2 + j) * cout + o] = acc;
        }
}

static void test_conv2d_naive(void **state) {
  enum { NB = 2, CIN = 2, COUT = 3, L1 = 4, L2 = 5 };
  const int64_t sx[4] = {NB, L1, L2, CIN}, sw[4] = {COUT, CIN, 3, 3}, sy[4] = {NB, L1, L2, COUT};
  double want[NB * COUT * L1 * L2];
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x, *w, *y;
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("conv2d_naive"));
  x = gc_rand(ctx, &rng, 4, sx, GC_STD);
  w = gc_rand(ctx, &rng, 4, sw, GC_STD);
  y = tf_conv2d_periodic(ctx, x, w);
  if (!y) {
    gc_note(&rep, "conv2d_periodic: op failed (%s)", tf_errmsg());
    goto done;
  }
  gc_expect_shape(&rep, "conv2d_periodic", y, 4, sy);
  if (y->n == NB * COUT * L1 * L2) {
    gc_conv_naive(x->data, w->data, want, NB, CIN, COUT, L1, L2);
    gc_expect_close(&rep, "conv2d_periodic vs periodic formula", y->data, want, y->n, 1e-14);
  }
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

static void test_conv_adjoint(void **state) {
  enum { NB = 2, CIN = 2, COUT = 3, L1 = 4, L2 = 5 };
  const int64_t sx[4] = {NB, L1, L2, CIN}, sw[4] = {COUT, CIN, 3, 3}, sy[4] = {NB, L1, L2, COUT};
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x, *w, *g, *y, *xt, *wt;
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("conv_adjoint"));
  x = gc_rand(ctx, &rng, 4, sx, GC_STD);
  w = gc_rand(ctx, &rng, 4, sw, GC_STD);
  g = gc_rand(ctx, &rng, 4, sy, GC_STD);
  y = tf_conv2d_periodic(ctx, x, w);
  xt = tf_conv2d_periodic_t(ctx, g, w);
  wt = tf_conv2d_periodic_w(ctx, x, g);
  if (!y || !xt || !wt) {
    gc_note(&rep, "conv adjoint: an op failed (%s)", tf_errmsg());
    goto done;
  }
  gc_expect_shape(&rep, "conv2d_periodic", y, 4, sy);
  gc_expect_shape(&rep, "conv2d_periodic_t", xt, 4, sx);
  gc_expect_shape(&rep, "conv2d_periodic_w", wt, 4, sw);
  if (rep.nfail == 0) {
    const double d0 = tf_dot(y, g), d1 = tf_dot(x, xt), d2 = tf_dot(w, wt);
    gc_expect_near(&rep, "<x, conv_t(g, w)> vs <conv(x, w), g>", d1, d0, 1e-13);
    gc_expect_near(&rep, "<w, conv_w(x, g)> vs <conv(x, w), g>", d2, d0, 1e-13);
  }
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

static void gc_axis_view(int ndim, const int64_t *shape, int axis, int64_t *outer, int64_t *len,
                         int64_t *inner) {
  if (axis < 0) axis += ndim;
  *outer = 1;
  *inner = 1;
  for (int d = 0; d < axis; d++) *outer *= shape[d];
  *len = shape[axis];
  for (int d = axis + 1; d < ndim; d++) *inner *= shape[d];
}

static void test_gather_scatter_adjoint(void **state) {
  static const struct {
    int ndim;
    int64_t shape[3];
    int axis;
  } cases[3] = {{2, {4, 3, 1}, 0}, {2, {3, 4, 1}, -1}, {3, {2, 4, 3}, 1}};
  const int64_t *idx = GC_IDX_SCATTER, m = 5;
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("gather_scatter_adjoint"));
  for (int c = 0; c < 3; c++) {
    int64_t outer, len, inner, gshape[3];
    double want[64];
    char what[96];
    tf_tensor *x, *yv, *gx, *sy;
    const int nd = cases[c].ndim;
    const int ax = cases[c].axis < 0 ? cases[c].axis + nd : cases[c].axis;
    gc_axis_view(nd, cases[c].shape, cases[c].axis, &outer, &len, &inner);
    for (int d = 0; d < nd; d++) gshape[d] = d == ax ? m : cases[c].shape[d];
    tf_ctx_reset(ctx);
    x = gc_rand(ctx, &rng, nd, cases[c].shape, GC_STD);
    yv = gc_rand(ctx, &rng, nd, gshape, GC_STD);
    gx = tf_gather(ctx, x, cases[c].axis, idx, m);
    sy = tf_scatter_add(ctx, yv, cases[c].axis, idx, m, len);
    snprintf(what, sizeof what, "gather/scatter_add axis %d of %d-d", cases[c].axis, nd);
    if (!gx || !sy) {
      gc_note(&rep, "%s: op failed (%s)", what, tf_errmsg());
      continue;
    }
    gc_expect_shape(&rep, what, gx, nd, gshape);
    gc_expect_shape(&rep, what, sy, nd, cases[c].shape);
    if (gx->n != outer * m * inner || sy->n != x->n) continue;
    /* gather: out[o, i, j] = x[o, idx[i], j] */
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < inner; j++)
          want[(o * m + i) * inner + j] = x->data[(o * len + idx[i]) * inner + j];
    gc_expect_close(&rep, "gather values", gx->data, want, gx->n, 0.0);
    /* scatter_add: out[o, idx[i], j] += y[o, i, j] */
    for (int64_t k = 0; k < sy->n; k++) want[k] = 0.0;
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < inner; j++)
          want[(o * len + idx[i]) * inner + j] += yv->data[(o * m + i) * inner + j];
    gc_expect_close(&rep, "scatter_add values", sy->data, want, sy->n, 1e-15);
    gc_expect_near(&rep, "<gather(x), y> vs <x, scatter_add(y)>", tf_dot(gx, yv), tf_dot(x, sy),
                   1e-14);
  }
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

static void test_expand_sum_to_adjoint(void **state) {
  static const struct {
    int ndim;
    int64_t shape[2];
  } small[3] = {{1, {4, 1}}, {2, {3, 1}}, {1, {1, 1}}};
  const int64_t big[2] = {3, 4};
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("expand_sum_to_adjoint"));
  for (int c = 0; c < 3; c++) {
    double want[12];
    char what[64];
    tf_tensor *x, *yv, *ex, *sy;
    tf_ctx_reset(ctx);
    x = gc_rand(ctx, &rng, small[c].ndim, small[c].shape, GC_STD);
    yv = gc_rand(ctx, &rng, 2, big, GC_STD);
    ex = tf_expand(ctx, x, 2, big);
    sy = tf_sum_to(ctx, yv, small[c].ndim, small[c].shape);
    snprintf(what, sizeof what, "expand/sum_to case %d", c);
    if (!ex || !sy) {
      gc_note(&rep, "%s: op failed (%s)", what, tf_errmsg());
      continue;
    }
    gc_expect_shape(&rep, what, ex, 2, big);
    gc_expect_shape(&rep, what, sy, small[c].ndim, small[c].shape);
    if (ex->n != 12 || sy->n != x->n) continue;
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 4; j++) {
        const int64_t k = c == 0 ? j : c == 1 ? i : 0;
        want[i * 4 + j] = x->data[k];
      }
    gc_expect_close(&rep, "expand values", ex->data, want, 12, 0.0);
    gc_expect_near(&rep, "<expand(x), y> vs <x, sum_to(y)>", tf_dot(ex, yv), tf_dot(x, sy),
                   1e-14);
  }
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

static void test_pad_slice_adjoint(void **state) {
  const int64_t sx[2] = {3, 3}, sy[2] = {3, 7};
  double want[21];
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x, *yv, *px, *sl;
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("pad_slice_adjoint"));
  x = gc_rand(ctx, &rng, 2, sx, GC_STD);
  yv = gc_rand(ctx, &rng, 2, sy, GC_STD);
  px = tf_pad(ctx, x, 2, 7);
  sl = tf_slice(ctx, yv, 2, 3);
  if (!px || !sl) {
    gc_note(&rep, "pad/slice: op failed (%s)", tf_errmsg());
    goto done;
  }
  gc_expect_shape(&rep, "pad", px, 2, sy);
  gc_expect_shape(&rep, "slice", sl, 2, sx);
  if (rep.nfail) goto done;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 7; j++) want[i * 7 + j] = (j >= 2 && j < 5) ? x->data[i * 3 + j - 2] : 0.0;
  gc_expect_close(&rep, "pad values", px->data, want, 21, 0.0);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) want[i * 3 + j] = yv->data[i * 7 + j + 2];
  gc_expect_close(&rep, "slice values", sl->data, want, 9, 0.0);
  gc_expect_near(&rep, "<pad(x), y> vs <x, slice(y)>", tf_dot(px, yv), tf_dot(x, sl), 1e-14);
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

static void test_where_values(void **state) {
  const int64_t shape[2] = {3, 4};
  double want[12];
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *mask, *a, *b, *o1, *o2, *o3;
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("where_values"));
  mask = tf_new(ctx, 2, shape);
  a = gc_rand(ctx, &rng, 2, shape, GC_STD);
  b = gc_rand(ctx, &rng, 2, shape, GC_STD);
  if (!mask || !a || !b) {
    gc_note(&rep, "where: allocation failed");
    goto done;
  }
  for (int64_t i = 0; i < 12; i++) mask->data[i] = gc_mask_value(i);
  o1 = tf_where(ctx, mask, a, b);
  o2 = tf_where(ctx, mask, NULL, b);
  o3 = tf_where(ctx, mask, a, NULL);
  if (!o1 || !o2 || !o3) {
    gc_note(&rep, "where: op failed (%s)", tf_errmsg());
    goto done;
  }
  for (int64_t i = 0; i < 12; i++) want[i] = mask->data[i] != 0.0 ? a->data[i] : b->data[i];
  gc_expect_close(&rep, "where(mask, a, b) values", o1->data, want, 12, 0.0);
  for (int64_t i = 0; i < 12; i++) want[i] = mask->data[i] != 0.0 ? 0.0 : b->data[i];
  gc_expect_close(&rep, "where(mask, NULL, b) values", o2->data, want, 12, 0.0);
  for (int64_t i = 0; i < 12; i++) want[i] = mask->data[i] != 0.0 ? a->data[i] : 0.0;
  gc_expect_close(&rep, "where(mask, a, NULL) values", o3->data, want, 12, 0.0);
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

static void test_logsumexp_no_overflow(void **state) {
  const int64_t s1[1] = {2}, s2[2] = {1, 2};
  gc_report rep;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x1 = tf_tensor_create(1, s1); /* persistent: gradients wanted */
  (void)state;
  gc_report_init(&rep);
  if (!ctx || !x1) {
    gc_note(&rep, "allocation failed");
    goto done;
  }
  tf_requires_grad(x1, 1);
  for (int sign = -1; sign <= 1; sign += 2) {
    const double big = 1000.0 * sign;
    /* softmax and log_softmax shift by the row maximum before the log-sum-exp, so they are
     * exact to a few ulp of the result, not of |x| (x - lse(x) would lose ~5.7e-14 here). */
    const double tol_big = 4.0 * DBL_EPSILON;
    tf_tensor *x2, *l1, *l2, *sm, *lsm, *g[1];
    char what[96];
    tf_ctx_reset(ctx);
    x1->data[0] = x1->data[1] = big;
    x2 = tf_full(ctx, 2, s2, big);
    l1 = tf_logsumexp(ctx, x1, 0);
    l2 = tf_logsumexp(ctx, x2, -1);
    sm = tf_softmax(ctx, x2, -1);
    lsm = tf_log_softmax(ctx, x2, -1);
    if (!l1 || !l2 || !sm || !lsm || l1->n != 1 || l2->n != 1 || sm->n != 2 || lsm->n != 2) {
      gc_note(&rep, "logsumexp at %g: op failed (%s)", big, tf_errmsg());
      continue;
    }
    snprintf(what, sizeof what, "logsumexp([%g, %g]) (1-d)", big, big);
    gc_expect_near(&rep, what, l1->data[0], big + log(2.0), 1e-15);
    snprintf(what, sizeof what, "logsumexp([[%g, %g]], axis -1)", big, big);
    gc_expect_near(&rep, what, l2->data[0], big + log(2.0), 1e-15);
    for (int i = 0; i < 2; i++) {
      snprintf(what, sizeof what, "softmax([[%g, %g]])[%d]", big, big, i);
      gc_expect_near(&rep, what, sm->data[i], 0.5, tol_big);
      snprintf(what, sizeof what, "log_softmax([[%g, %g]])[%d]", big, big, i);
      gc_expect_near(&rep, what, lsm->data[i], -log(2.0), tol_big);
    }
    if (tf_grad(ctx, l1, NULL, 1, &x1, g, 0) != TF_OK || !g[0] || g[0]->n != 2) {
      gc_note(&rep, "logsumexp at %g: tf_grad failed (%s)", big, tf_errmsg());
    } else {
      snprintf(what, sizeof what, "d logsumexp([%g, %g]) / dx", big, big);
      gc_expect_near(&rep, what, g[0]->data[0], 0.5, tol_big);
      gc_expect_near(&rep, what, g[0]->data[1], 0.5, tol_big);
    }
  }
done:
  tf_ctx_destroy(ctx);
  tf_tensor_destroy(x1);
  gc_finish(&rep);
}

static void test_softmax_normalised(void **state) {
  const int64_t shape[2] = {3, 4};
  const gc_sampler wide = {0.0, -20.0, 20.0, 0};
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  tf_tensor *x, *s1, *s0, *l1;
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("softmax_normalised"));
  x = gc_rand(ctx, &rng, 2, shape, wide);
  s1 = tf_softmax(ctx, x, -1);
  s0 = tf_softmax(ctx, x, 0);
  l1 = tf_log_softmax(ctx, x, 1);
  if (!s1 || !s0 || !l1) {
    gc_note(&rep, "softmax: op failed (%s)", tf_errmsg());
    goto done;
  }
  gc_expect_shape(&rep, "softmax axis -1", s1, 2, shape);
  gc_expect_shape(&rep, "softmax axis 0", s0, 2, shape);
  gc_expect_shape(&rep, "log_softmax axis 1", l1, 2, shape);
  if (rep.nfail) goto done;
  for (int i = 0; i < 12; i++)
    if (!(s1->data[i] > 0.0 && s1->data[i] <= 1.0 && s0->data[i] > 0.0 && s0->data[i] <= 1.0)) {
      gc_note(&rep, "softmax: entry %d outside (0, 1]", i);
      break;
    }
  for (int i = 0; i < 3; i++) {
    double a = 0.0, b = 0.0;
    for (int j = 0; j < 4; j++) {
      a += s1->data[i * 4 + j];
      b += exp(l1->data[i * 4 + j]);
    }
    gc_expect_near(&rep, "softmax axis -1 row sum", a, 1.0, 1e-14);
    gc_expect_near(&rep, "exp(log_softmax) axis 1 row sum", b, 1.0, 1e-14);
  }
  for (int j = 0; j < 4; j++) {
    double a = 0.0;
    for (int i = 0; i < 3; i++) a += s0->data[i * 4 + j];
    gc_expect_near(&rep, "softmax axis 0 column sum", a, 1.0, 1e-14);
  }
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

/* libm reference of f = f^(0). */
static double gc_fn_ref(tf_fn fn, double x) {
  switch (fn) {
  case TF_FN_EXP: return exp(x);
  case TF_FN_LOG: return log(x);
  case TF_FN_TANH: return tanh(x);
  case TF_FN_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case TF_FN_SOFTPLUS: return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));
  case TF_FN_SILU: return x / (1.0 + exp(-x));
  case TF_FN_RELU: return x > 0.0 ? x : 0.0;
  case TF_FN_SQUARE: return x * x;
  case TF_FN_SQRT: return sqrt(x);
  case TF_FN_ABS: return fabs(x);
  case TF_FN_SIN: return sin(x);
  case TF_FN_COS: return cos(x);
  default: return NAN;
  }
}

/* f^(0) against libm and the named function; tf_unary_mul == g * f^(k); finite values and
 * derivatives at large |x|; log_safe branches. */
static void test_unary_values(void **state) {
  const int64_t shape[2] = {3, 4}, s6[1] = {6};
  static const double extreme[6] = {-800.0, -30.0, -1e-3, 1e-3, 30.0, 800.0};
  double want[12];
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_ctx_set_grad(ctx, 0);
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("unary_values"));
  for (int f = 0; f < TF_FN_COUNT; f++) {
    const tf_fn fn = (tf_fn)f;
    char what[96];
    tf_tensor *x, *g, *u0, *named;
    tf_ctx_reset(ctx);
    x = gc_rand(ctx, &rng, 2, shape, gc_fn_sampler(fn));
    g = gc_rand(ctx, &rng, 2, shape, GC_STD);
    u0 = tf_unary(ctx, fn, 0, x);
    named = gc_apply_fn(ctx, fn, x);
    if (!x || !g || !u0 || !named) {
      gc_note(&rep, "%s: op failed (%s)", gc_fn_name(fn), tf_errmsg());
      continue;
    }
    for (int i = 0; i < 12; i++) want[i] = gc_fn_ref(fn, x->data[i]);
    snprintf(what, sizeof what, "%s vs libm", gc_fn_name(fn));
    gc_expect_close(&rep, what, named->data, want, 12, 1e-14);
    snprintf(what, sizeof what, "unary(%s, 0) vs libm", gc_fn_name(fn));
    gc_expect_close(&rep, what, u0->data, want, 12, 1e-14);
    for (int k = 0; k <= TF_MAX_DERIV; k++) {
      tf_tensor *fk = tf_unary(ctx, fn, k, x), *gm = tf_unary_mul(ctx, fn, k, x, g);
      if (!fk || !gm) {
        gc_note(&rep, "%s: unary/unary_mul k=%d failed (%s)", gc_fn_name(fn), k, tf_errmsg());
        continue;
      }
      for (int i = 0; i < 12; i++) want[i] = g->data[i] * fk->data[i];
      snprintf(what, sizeof what, "unary_mul(%s, k=%d) vs g * unary", gc_fn_name(fn), k);
      gc_expect_close(&rep, what, gm->data, want, 12, 1e-15);
    }
  }

  /* large |x|: f^(k) finite for the functions defined on all of R (not exp, square) */
  {
    static const tf_fn bounded[8] = {TF_FN_TANH, TF_FN_SIGMOID, TF_FN_SOFTPLUS, TF_FN_SILU,
                                     TF_FN_RELU, TF_FN_ABS,     TF_FN_SIN,      TF_FN_COS};
    tf_tensor *x;
    tf_ctx_reset(ctx);
    x = tf_new(ctx, 1, s6);
    if (!x) {
      gc_note(&rep, "allocation failed");
      goto done;
    }
    for (int i = 0; i < 6; i++) x->data[i] = extreme[i];
    for (int f = 0; f < 8; f++) {
      for (int k = 0; k <= TF_MAX_DERIV; k++) {
        tf_tensor *fk = tf_unary(ctx, bounded[f], k, x);
        if (!fk || !tf_all_finite(fk))
          gc_note(&rep, "unary(%s, k=%d) not finite at x = +-800, +-30, +-1e-3",
                  gc_fn_name(bounded[f]), k);
      }
    }
    {
      tf_tensor *sp = tf_softplus(ctx, x), *sg = tf_sigmoid(ctx, x), *sl = tf_silu(ctx, x);
      if (sp && sg && sl) {
        gc_expect_near(&rep, "softplus(800)", sp->data[5], 800.0, 1e-15);
        gc_expect_near(&rep, "softplus(-800)", sp->data[0], 0.0, 1e-300);
        gc_expect_near(&rep, "softplus(30)", sp->data[4], 30.0 + log1p(exp(-30.0)), 1e-15);
        gc_expect_near(&rep, "sigmoid(800)", sg->data[5], 1.0, 1e-15);
        gc_expect_near(&rep, "sigmoid(-800)", sg->data[0], 0.0, 1e-300);
        gc_expect_near(&rep, "silu(800)", sl->data[5], 800.0, 1e-15);
        gc_expect_near(&rep, "silu(-800)", sl->data[0], 0.0, 1e-300);
      } else {
        gc_note(&rep, "softplus/sigmoid/silu at large |x| failed (%s)", tf_errmsg());
      }
    }
  }

  /* log_safe: log(x) for x >= eps, a finite linear continuation below, continuous at eps */
  {
    const double eps = 0.25;
    const double xs[6] = {0.3, 1.7, 0.25 - 1e-9, -0.5, -0.75, -1.0};
    tf_tensor *x, *ls;
    tf_ctx_reset(ctx);
    x = tf_new(ctx, 1, s6);
    if (!x) {
      gc_note(&rep, "allocation failed");
      goto done;
    }
    for (int i = 0; i < 6; i++) x->data[i] = xs[i];
    ls = tf_log_safe(ctx, x, eps);
    if (!ls || !tf_all_finite(ls)) {
      gc_note(&rep, "log_safe: failed or not finite (%s)", tf_errmsg());
    } else {
      gc_expect_near(&rep, "log_safe(0.3)", ls->data[0], log(0.3), 1e-15);
      gc_expect_near(&rep, "log_safe(1.7)", ls->data[1], log(1.7), 1e-15);
      gc_expect_near(&rep, "log_safe continuous at eps", ls->data[2], log(eps), 1e-8);
      gc_expect_near(&rep, "log_safe linear below eps", ls->data[3] + ls->data[5],
                     2.0 * ls->data[4], 1e-14);
    }
  }
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

/* The derivative family of tf_unary: central differences of f^(k) match f^(k+1), k < max. */
static void test_unary_family(void **state) {
  const int64_t shape[2] = {3, 4};
  double fd[12], ad[12];
  gc_report rep;
  tf_rng rng;
  tf_ctx *ctx = tf_ctx_create(0);
  (void)state;
  gc_report_init(&rep);
  if (!ctx) {
    gc_note(&rep, "tf_ctx_create failed");
    goto done;
  }
  tf_ctx_set_grad(ctx, 0);
  tf_rng_init(&rng, GC_SEED, 0, TF_RNG_TEST, gc_hash("unary_family"));
  for (int f = 0; f < TF_FN_COUNT; f++) {
    const tf_fn fn = (tf_fn)f;
    tf_tensor *x, *xp, *xm;
    tf_ctx_reset(ctx);
    x = gc_rand(ctx, &rng, 2, shape, gc_fn_sampler(fn));
    xp = tf_new(ctx, 2, shape);
    xm = tf_new(ctx, 2, shape);
    if (!x || !xp || !xm) {
      gc_note(&rep, "allocation failed");
      goto done;
    }
    for (int i = 0; i < 12; i++) {
      const double h = GC_H * fmax(1.0, fabs(x->data[i]));
      xp->data[i] = x->data[i] + h;
      xm->data[i] = x->data[i] - h;
    }
    for (int k = 0; k < TF_MAX_DERIV; k++) {
      tf_tensor *next = tf_unary(ctx, fn, k + 1, x);
      tf_tensor *fp = tf_unary(ctx, fn, k, xp), *fm = tf_unary(ctx, fn, k, xm);
      char what[96];
      if (!next || !fp || !fm) {
        gc_note(&rep, "unary(%s, k=%d) failed (%s)", gc_fn_name(fn), k, tf_errmsg());
        continue;
      }
      for (int i = 0; i < 12; i++) {
        fd[i] = (fp->data[i] - fm->data[i]) / (xp->data[i] - xm->data[i]);
        ad[i] = next->data[i];
      }
      {
        const double d = gc_dist(ad, fd, 12), nf = gc_norm(fd, 12);
        if (!(d < GC_TOL * nf || d < GC_ATOL)) {
          snprintf(what, sizeof what, "unary(%s, k=%d) vs FD of k=%d", gc_fn_name(fn), k + 1, k);
          gc_note(&rep, "%s: rel err %.3e (|ad-fd| %.3e, |fd| %.3e)", what, d / fmax(nf, 1e-12),
                  d, nf);
        }
      }
    }
  }
done:
  tf_ctx_destroy(ctx);
  gc_finish(&rep);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matmul_nn),
      cmocka_unit_test(test_matmul_tn),
      cmocka_unit_test(test_matmul_nt),
      cmocka_unit_test(test_matmul_tt),
      cmocka_unit_test(test_linear),
      cmocka_unit_test(test_add),
      cmocka_unit_test(test_sub),
      cmocka_unit_test(test_mul),
      cmocka_unit_test(test_div),
      cmocka_unit_test(test_scale),
      cmocka_unit_test(test_shift),
      cmocka_unit_test(test_neg),
      cmocka_unit_test(test_exp),
      cmocka_unit_test(test_log),
      cmocka_unit_test(test_tanh),
      cmocka_unit_test(test_sigmoid),
      cmocka_unit_test(test_softplus),
      cmocka_unit_test(test_silu),
      cmocka_unit_test(test_relu),
      cmocka_unit_test(test_square),
      cmocka_unit_test(test_sqrt),
      cmocka_unit_test(test_abs),
      cmocka_unit_test(test_sin),
      cmocka_unit_test(test_cos),
      cmocka_unit_test(test_unary_tanh_k),
      cmocka_unit_test(test_unary_silu_k),
      cmocka_unit_test(test_unary_k_other),
      cmocka_unit_test(test_unary_mul),
      cmocka_unit_test(test_abs_smooth),
      cmocka_unit_test(test_log_safe),
      cmocka_unit_test(test_sum),
      cmocka_unit_test(test_mean),
      cmocka_unit_test(test_sum_all),
      cmocka_unit_test(test_mean_all),
      cmocka_unit_test(test_sum_to),
      cmocka_unit_test(test_expand),
      cmocka_unit_test(test_logsumexp),
      cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_log_softmax),
      cmocka_unit_test(test_concat),
      cmocka_unit_test(test_slice),
      cmocka_unit_test(test_pad),
      cmocka_unit_test(test_reshape),
      cmocka_unit_test(test_gather),
      cmocka_unit_test(test_scatter_add),
      cmocka_unit_test(test_where),
      cmocka_unit_test(test_conv2d_periodic),
      cmocka_unit_test(test_conv2d_periodic_t),
      cmocka_unit_test(test_conv2d_periodic_w),
      cmocka_unit_test(test_stop_gradient),
      cmocka_unit_test(test_transpose),
      cmocka_unit_test(test_transpose_values),
      cmocka_unit_test(test_matmul_naive),
      cmocka_unit_test(test_conv2d_naive),
      cmocka_unit_test(test_conv_adjoint),
      cmocka_unit_test(test_gather_scatter_adjoint),
      cmocka_unit_test(test_expand_sum_to_adjoint),
      cmocka_unit_test(test_pad_slice_adjoint),
      cmocka_unit_test(test_where_values),
      cmocka_unit_test(test_logsumexp_no_overflow),
      cmocka_unit_test(test_softmax_normalised),
      cmocka_unit_test(test_unary_values),
      cmocka_unit_test(test_unary_family),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
