/* kernels.c — elementwise function families f^(k)(x) and their fused product with g.
 *
 * Exported (private): tf__unary_kernel, tf__fn_name.
 *
 * Every function of tf_fn comes with closed-form derivatives up to TF_MAX_DERIV, so that the
 * reverse rule of f^(k) is simply g * f^(k+1): any derivative order the tape asks for stays one
 * fused pass.  The loops are written per (fn, k) without branches inside so that GCC
 * vectorises them; in the float build exp() is a branch-free Cody-Waite + polynomial kernel
 * (glibc's expf does not vectorise without -ffast-math, which this project does not use).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core-impl.h"

#ifdef TF_DOUBLE
static inline double e_x(double x) { return exp(x); }
/* logistic sigmoid; exact 0/1 limits, NaN propagates */
static inline double sig(double v) { return 1.0 / (1.0 + exp(-v)); }
#define R(x) (x)
#else
/* exp for float on a clamped argument: |rel err| < 2 ulp on [-87.3, 88.0]; outside, the value
 * at the clamp (finite, nonzero); NaN propagates (the clamps compile to min/max, which pass a
 * NaN first operand through). */
static inline float e_clamped(float x) {
  const float hi = 88.0f, lo = -87.33654475f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  /* n = round(x / ln 2) via the 1.5 * 2^23 trick: no float->int conversion (no UB on NaN). */
  float t = xc * 1.44269504088896341f + 12582912.0f;
  uint32_t nb;
  memcpy(&nb, &t, sizeof nb);
  float n = t - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t eb = (nb - 0x4B400000u + 127u) << 23;
  float scale;
  memcpy(&scale, &eb, sizeof scale);
  return p * scale;
}

/* exp for float with exact limits: 0 below the range, +inf above. */
static inline float e_x(float x) {
  float y = e_clamped(x);
  y = x > 88.0f ? INFINITY : y;
  y = x < -87.33654475f ? 0.0f : y;
  return y;
}

/* 1 / (1 + e^-v): the sigmoid needs no exact exp limits, since 1/(1 + 1.6e38) already rounds
 * to a float32 value that is 0 for every purpose, and the selects in e_x would cost a third
 * of the loop.  The exact 0 and 1 limits are restored by one select each. */
static inline float sig(float v) {
  float s = 1.0f / (1.0f + e_clamped(-v));
  s = v < -88.0f ? 0.0f : s;
  return s;
}
#define R(x) ((float)(x))
#endif


/* k-th derivative of the sigmoid written with s = sigmoid(v) */
static inline tf_real sigk(int k, tf_real s) {
  tf_real s1 = s * (R(1) - s);
  switch (k) {
    case 0: return s;
    case 1: return s1;
    case 2: return s1 * (R(1) - R(2) * s);
    case 3: return s1 * (R(1) - R(6) * s + R(6) * s * s);
    default: return s1 * (R(1) - R(2) * s) * (R(1) - R(12) * s + R(12) * s * s);
  }
}

static inline tf_real tanhk(int k, tf_real t) {
  tf_real d = R(1) - t * t;
  switch (k) {
    case 0: return t;
    case 1: return d;
    case 2: return R(-2) * t * d;
    case 3: return R(-2) * d * (R(1) - R(3) * t * t);
    default: return R(8) * t * d * (R(2) - R(3) * t * t);
  }
}

static inline tf_real softplus0(tf_real v) {
  /* max(v, 0) + log1p(exp(-|v|)): no overflow for large |v| */
  tf_real a = v < 0 ? -v : v;
  tf_real m = v < 0 ? R(0) : v;
  return m + (tf_real)log1p((double)e_x(-a));
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
        case 0: LOOP((tf_real)log(v)); break;
        case 1: LOOP(R(1) / v); break;
        case 2: LOOP(R(-1) / (v * v)); break;
        case 3: LOOP(R(2) / (v * v * v)); break;
        default: LOOP(R(-6) / (v * v * v * v)); break;
      }
      break;
    case TF_FN_TANH:
      switch (k) {
        case 0: LOOP((tf_real)tanh(v)); break;
        case 1: LOOP(tanhk(1, (tf_real)tanh(v))); break;
        case 2: LOOP(tanhk(2, (tf_real)tanh(v))); break;
        case 3: LOOP(tanhk(3, (tf_real)tanh(v))); break;
        default: LOOP(tanhk(4, (tf_real)tanh(v))); break;
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
