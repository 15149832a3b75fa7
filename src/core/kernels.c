/* kernels.c — elementwise function families f^(k)(x) and their fused product with g.
 *
 * Exported (private): tf__unary_kernel, tf__fn_name.
 *
 * Every function of tf_fn comes with closed-form derivatives up to TF_MAX_DERIV, so that the
 * reverse rule of f^(k) is simply g * f^(k+1): any derivative order the tape asks for stays one
 * fused pass.  The loops are written per (fn, k) without branches inside so that GCC
 * vectorises them; in the float build exp, tanh and log are branch-free polynomial kernels
 * (glibc's expf, tanhf and logf do not vectorise without -ffast-math, which this project does
 * not use), with special values folded in arithmetically where a select would let GCC move
 * the work into a branch it then cannot vectorise.  sqrt, sin and cos stay libm calls (sqrt
 * vectorises only with -fno-math-errno); the float64 build uses libm throughout.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core-impl.h"

/* The function kernels below must be inlined into their loops to vectorise; with dozens of
 * call sites GCC's size heuristics would otherwise keep some out of line. */
#if defined(__GNUC__)
#define KERNEL static inline __attribute__((always_inline))
#else
#define KERNEL static inline
#endif

#ifdef TF_DOUBLE
KERNEL double e_x(double x) { return exp(x); }
/* logistic sigmoid; exact 0/1 limits, NaN propagates */
KERNEL double sig(double v) { return 1.0 / (1.0 + exp(-v)); }
#define R(x) (x)
#else
/* Fused multiply-add where the target has it: the polynomial kernels below are chains of
 * dependent multiply-adds, so this shortens their latency (and rounds once instead of twice).
 * ISO C mode does not contract a * b + c by itself. */
#ifdef FP_FAST_FMAF
#define FMAF(a, b, c) fmaf(a, b, c)
#else
#define FMAF(a, b, c) ((a) * (b) + (c))
#endif

/* exp for float on a clamped argument: |rel err| < 2 ulp on [-87.3, 88.0]; outside, the value
 * at the clamp (finite, nonzero); NaN propagates (the clamps compile to min/max, which pass a
 * NaN first operand through). */
KERNEL float e_clamped(float x) {
  const float hi = 88.0f, lo = -87.33654475f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  /* n = round(x / ln 2) via the 1.5 * 2^23 trick: no float->int conversion (no UB on NaN). */
  float t = FMAF(xc, 1.44269504088896341f, 12582912.0f);
  uint32_t nb;
  memcpy(&nb, &t, sizeof nb);
  float n = t - 12582912.0f;
  float r = FMAF(n, -0.693359375f, xc);
  r = FMAF(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = FMAF(p, r, 1.3981999507e-3f);
  p = FMAF(p, r, 8.3334519073e-3f);
  p = FMAF(p, r, 4.1665795894e-2f);
  p = FMAF(p, r, 1.6666665459e-1f);
  p = FMAF(p, r, 5.0000001201e-1f);
  p = FMAF(p * r, r, r) + 1.0f;
  uint32_t eb = (nb - 0x4B400000u + 127u) << 23;
  float scale;
  memcpy(&scale, &eb, sizeof scale);
  return p * scale;
}

/* exp for float with exact limits: 0 below the range, +inf above.  The limits are applied
 * arithmetically (e_clamped is finite): selecting them instead lets GCC sink e_clamped into a
 * branch, which stops the vectoriser when e_x is inlined into a larger expression. */
KERNEL float e_x(float x) {
  const float keep = x < -87.33654475f ? 0.0f : 1.0f, over = x > 88.0f ? INFINITY : 0.0f;
  return e_clamped(x) * keep + over;
}

/* tanh for float, branch-free so that its loops vectorise (libm's tanhf does not, and the
 * soft clamp of every coupling block calls it): below |x| = 0.5493 (tanh = 0.5) an odd
 * polynomial, relative-minimax fitted (< 1e-9 before rounding); above, 1 - 2/(1 + e^2|x|),
 * whose subtraction cannot cancel there.  Computed for |x| with the sign put back last (that
 * also keeps -0).  < 2 ulp; exact +-1 limits (e_clamped stays finite); NaN propagates (the
 * comparison is false and e_clamped passes NaN). */
KERNEL float tanh_f(float x) {
  const float a = fabsf(x), z = a * a;
  float p = -6.2796529382e-3f;
  p = FMAF(p, z, 2.1075274795e-2f);
  p = FMAF(p, z, -5.3853124380e-2f);
  p = FMAF(p, z, 1.3332593441e-1f);
  p = FMAF(p, z, -3.3333316445e-1f);
  const float small = FMAF(a, z * p, a);
  const float big = 1.0f - 2.0f / (1.0f + e_clamped(2.0f * a));
  return copysignf(a < 0.5493f ? small : big, x);
}

/* log for float (FreeBSD's e_logf.c reduction and polynomial, < 1 ulp), branch-free for the
 * vectoriser: subnormals are scaled up first; 0 -> -inf, +inf -> +inf, x < 0 and NaN -> NaN. */
KERNEL float log_f(float x) {
  const int sub = x < 0x1p-126f;
  const float xs = sub ? x * 0x1p23f : x, ksub = sub ? 23.0f : 0.0f;
  uint32_t ix;
  memcpy(&ix, &xs, sizeof ix);
  /* m = x 2^-k in [sqrt(2)/2, sqrt(2)) */
  ix += 0x3f800000u - 0x3f3504f3u;
  const float dk = (float)((int32_t)(ix >> 23) - 0x7f) - ksub;
  ix = (ix & 0x007fffffu) + 0x3f3504f3u;
  float m;
  memcpy(&m, &ix, sizeof m);
  const float f = m - 1.0f, s = f / (2.0f + f), z = s * s, w = z * z;
  const float t1 = w * (0.40000972152f + w * 0.24279078841f);
  const float t2 = z * (0.66666662693f + w * 0.28498786688f);
  const float hfsq = 0.5f * f * f;
  /* k ln 2 split in a high part exact in float (ln2_hi) and the rest (ln2_lo) */
  const float r =
      s * (hfsq + (t1 + t2)) + dk * 9.0580006145e-6f - hfsq + f + dk * 6.9313812256e-1f;
  /* The special cases are added to r rather than selected instead of it: with a select, GCC
   * sinks the whole computation of r into the branch that uses it, and then (-ftrapping-math)
   * will not if-convert the loop back.  r is finite for every input, so r + special is the
   * special value. */
  float special = x < 0 ? NAN : 0.0f;
  special = x == 0 ? -INFINITY : special;
  special = x == INFINITY ? INFINITY : special;
  special = x != x ? x : special;
  return r + special;
}

/* log(1 + u) for u >= 0: log(w) u / (w - 1) with w = fl(1 + u) cancels the rounding of w
 * (Goldberg's trick), a few ulp; u = 0 (w = 1) returns u exactly. */
KERNEL float log1p_pos(float u) {
  const float w = 1.0f + u;
  /* w = 1: log_f(1) = 0 exactly, and the added u is the answer (no select that would sink
   * log_f into a branch, see log_f) */
  const float d = w == 1.0f ? 1.0f : w - 1.0f;
  return log_f(w) * (u / d) + (w == 1.0f ? u : 0.0f);
}

/* 1 / (1 + e^-v): the sigmoid needs no exact exp limits, since 1/(1 + 1.6e38) already rounds
 * to a float32 value that is 0 for every purpose, and the limit handling in e_x would cost a
 * third of the loop.  The exact 0 limit is restored by a factor; 1 comes out by itself. */
KERNEL float sig(float v) {
  const float keep = v < -88.0f ? 0.0f : 1.0f; /* a factor, not a select: see e_x */
  return keep / (1.0f + e_clamped(-v));
}
#define R(x) ((float)(x))
#endif


/* k-th derivative of the sigmoid written with s = sigmoid(v) */
KERNEL tf_real sigk(int k, tf_real s) {
  tf_real s1 = s * (R(1) - s);
  switch (k) {
    case 0: return s;
    case 1: return s1;
    case 2: return s1 * (R(1) - R(2) * s);
    case 3: return s1 * (R(1) - R(6) * s + R(6) * s * s);
    default: return s1 * (R(1) - R(2) * s) * (R(1) - R(12) * s + R(12) * s * s);
  }
}

KERNEL tf_real tanhk(int k, tf_real t) {
  tf_real d = R(1) - t * t;
  switch (k) {
    case 0: return t;
    case 1: return d;
    case 2: return R(-2) * t * d;
    case 3: return R(-2) * d * (R(1) - R(3) * t * t);
    default: return R(8) * t * d * (R(2) - R(3) * t * t);
  }
}

#ifdef TF_DOUBLE
#define TANH(v) tanh(v)
#define LOG(v) log(v)
#define LOG1P_POS(u) log1p(u)
#else
#define TANH(v) tanh_f(v)
#define LOG(v) log_f(v)
#define LOG1P_POS(u) log1p_pos(u)
#endif

KERNEL tf_real softplus0(tf_real v) {
  /* max(v, 0) + log1p(exp(-|v|)): no overflow for large |v| */
  tf_real a = v < 0 ? -v : v;
  tf_real m = v < 0 ? R(0) : v;
  return m + LOG1P_POS(e_x(-a));
}

/* The loop body for one (fn, k): y = g * F or y = F, F an expression in v = x[i]. */
#define LOOP(F)                                                                  \
  do {                                                                           \
    if (g) {                                                                     \
      for (int64_t i = 0; i < n; i++) {                                          \
        const tf_real v = x[i];                                                  \
        y[i] = g[i] * (F);                                                       \
      }                                                                          \
    } else {                                                                     \
      for (int64_t i = 0; i < n; i++) {                                          \
        const tf_real v = x[i];                                                  \
        y[i] = (F);                                                              \
      }                                                                          \
    }                                                                            \
  } while (0)

/* y = g * f^(k)(x) (g NULL: y = f^(k)(x)); 0 <= k <= TF_MAX_DERIV, checked by the caller.
 * y may alias x or g. */
void tf__unary_kernel(tf_fn fn, int k, const tf_real *x, const tf_real *g, tf_real *y,
                      int64_t n) {
  switch (fn) {
    case TF_FN_EXP:
      LOOP(e_x(v));
      break;
    case TF_FN_LOG:
      switch (k) {
        case 0: LOOP(LOG(v)); break;
        case 1: LOOP(R(1) / v); break;
        case 2: LOOP(R(-1) / (v * v)); break;
        case 3: LOOP(R(2) / (v * v * v)); break;
        default: LOOP(R(-6) / (v * v * v * v)); break;
      }
      break;
    case TF_FN_TANH:
      switch (k) {
        case 0: LOOP(TANH(v)); break;
        case 1: LOOP(tanhk(1, TANH(v))); break;
        case 2: LOOP(tanhk(2, TANH(v))); break;
        case 3: LOOP(tanhk(3, TANH(v))); break;
        default: LOOP(tanhk(4, TANH(v))); break;
      }
      break;
    case TF_FN_SIGMOID:
      switch (k) {
        case 0: LOOP(sig(v)); break;
        case 1: LOOP(sigk(1, sig(v))); break;
        case 2: LOOP(sigk(2, sig(v))); break;
        case 3: LOOP(sigk(3, sig(v))); break;
        default: LOOP(sigk(4, sig(v))); break;
      }
      break;
    case TF_FN_SOFTPLUS: /* f' = sigmoid, f^(k) = sigmoid^(k-1) */
      switch (k) {
        case 0: LOOP(softplus0(v)); break;
        case 1: LOOP(sig(v)); break;
        case 2: LOOP(sigk(1, sig(v))); break;
        case 3: LOOP(sigk(2, sig(v))); break;
        default: LOOP(sigk(3, sig(v))); break;
      }
      break;
    case TF_FN_SILU: /* (v s)^(k) = k s^(k-1) + v s^(k) */
      switch (k) {
        case 0: LOOP(v * sig(v)); break;
        case 1: { LOOP(sigk(0, sig(v)) + v * sigk(1, sig(v))); } break;
        case 2: { LOOP(R(2) * sigk(1, sig(v)) + v * sigk(2, sig(v))); } break;
        case 3: { LOOP(R(3) * sigk(2, sig(v)) + v * sigk(3, sig(v))); } break;
        default: { LOOP(R(4) * sigk(3, sig(v)) + v * sigk(4, sig(v))); } break;
      }
      break;
    case TF_FN_RELU:
      switch (k) {
        case 0: LOOP(v < 0 ? R(0) : v); break; /* NaN propagates */
        case 1: LOOP(v > 0 ? R(1) : R(0)); break;
        default: LOOP(R(0) * v); break;
      }
      break;
    case TF_FN_SQUARE:
      switch (k) {
        case 0: LOOP(v * v); break;
        case 1: LOOP(R(2) * v); break;
        case 2: LOOP(R(2) + R(0) * v); break;
        default: LOOP(R(0) * v); break;
      }
      break;
    case TF_FN_SQRT:
      switch (k) {
        case 0: LOOP((tf_real)sqrt(v)); break;
        case 1: LOOP(R(0.5) / (tf_real)sqrt(v)); break;
        case 2: LOOP(R(-0.25) / (v * (tf_real)sqrt(v))); break;
        case 3: LOOP(R(0.375) / (v * v * (tf_real)sqrt(v))); break;
        default: LOOP(R(-0.9375) / (v * v * v * (tf_real)sqrt(v))); break;
      }
      break;
    case TF_FN_ABS:
      switch (k) {
        case 0: LOOP(v < 0 ? -v : v); break;
        case 1: LOOP(v > 0 ? R(1) : (v < 0 ? R(-1) : R(0))); break;
        default: LOOP(R(0) * v); break;
      }
      break;
    case TF_FN_SIN: /* sin^(k)(v) = sin(v + k pi/2) */
      switch (k & 3) {
        case 0: LOOP((tf_real)sin(v)); break;
        case 1: LOOP((tf_real)cos(v)); break;
        case 2: LOOP(-(tf_real)sin(v)); break;
        default: LOOP(-(tf_real)cos(v)); break;
      }
      break;
    case TF_FN_COS:
      switch (k & 3) {
        case 0: LOOP((tf_real)cos(v)); break;
        case 1: LOOP(-(tf_real)sin(v)); break;
        case 2: LOOP(-(tf_real)cos(v)); break;
        default: LOOP((tf_real)sin(v)); break;
      }
      break;
    case TF_FN_COUNT:
      break;
  }
}

const char *tf__fn_name(tf_fn fn) {
  static const char *const names[] = {"exp",  "log",    "tanh", "sigmoid", "softplus", "silu",
                                      "relu", "square", "sqrt", "abs",     "sin",      "cos"};
  _Static_assert(sizeof names / sizeof names[0] == TF_FN_COUNT, "one name per tf_fn");
  return (fn >= 0 && fn < TF_FN_COUNT) ? names[fn] : "?";
}
