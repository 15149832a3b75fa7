/* ops.c — the primitive ops: argument checks, forward kernels, then tf__finish (tape + tangent).
 *
 * The kernels favour the shapes of the flows (batch x features, features of a few dozen to a
 * few hundred): an AVX-512 float32 GEMM, fast paths of the broadcasting ops for rows and
 * columns, short-row copies without libc calls.
 *
 * Exported: every op of tensor.h (tf_matmul ... tf_stop_gradient) and the composites built on
 * them (tf_neg, tf_exp..tf_cos, tf_sum, tf_mean, tf_sum_all, tf_mean_all, tf_softmax,
 * tf_log_softmax, tf_abs_smooth, tf_log_safe).  Reverse and tangent rules are in rules.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core-impl.h"

#if !defined(TF_DOUBLE) && defined(__AVX512F__)
#include <immintrin.h>
#define TF_GEMM 1 /* our float32 GEMM instead of cblas_sgemm (see tf_matmul) */
#endif

#define CHECK_IN(x)                              \
  do {                                           \
    if (!(x) || ctx->status != TF_OK) return NULL; \
  } while (0)

static tf_node node0(tf_op op, int nin, tf_tensor **in) {
  tf_node nd;
  memset(&nd, 0, sizeof nd);
  nd.op = op;
  nd.nin = nin;
  nd.in = in;
  return nd;
}

static const char *shp(const tf_tensor *t, char *buf) { return tf_shape_str(t, buf, 64); }

/* ---- matmul ------------------------------------------------------------------------------ */

/* A buffer owned by the context, grown on demand and kept across resets (no per-step cost). */
static void *ctx_buffer(tf_ctx *ctx, void **buf, size_t *have, size_t bytes, const char *what) {
  bytes = (bytes + 63) & ~(size_t)63;
  if (bytes > *have) {
    void *p = aligned_alloc(64, bytes);
    if (!p) {
      tf__fail(ctx, TF_ENOMEM, "%s: cannot allocate %zu bytes of scratch", what, bytes);
      return NULL;
    }
    free(*buf);
    *buf = p;
    *have = bytes;
  }
  return *buf;
}


#ifdef TF_GEMM
/* float32 GEMM for AVX-512.  The matrices here are tall and thin (batch 1024 x widths 33..128):
 * OpenBLAS 0.3.21 does not know Zen 4/5 and runs its AVX2 Haswell kernel at about half the
 * machine's FMA throughput, and it zeroes C before accumulating when beta = 0.  This kernel
 * packs op(B) into 32-column panels (one K block at a time, in the context's scratch buffer),
 * broadcasts op(A) straight from its storage (both transposes are cheap to broadcast from), and
 * keeps an MR x 32 block of C in registers.  The float64 build, and float32 builds without
 * AVX-512, keep BLAS. */
enum { GEMM_MR = 8, GEMM_NR = 32, GEMM_KC = 256 };

/* C[0..mr) x [0..32) (= or +=) sum_k A[i, k] Bp[k][0..32); masks select the valid columns */
static inline __attribute__((always_inline)) void gemm_block32(
    int mr, int64_t kc, const float *A, int64_t ars, int64_t aks, const float *Bp, float *C,
    int64_t ldc, int acc, const float *bias, __mmask16 m0, __mmask16 m1) {
  __m512 c0[GEMM_MR], c1[GEMM_MR];
  const __m512 i0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 i1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  for (int i = 0; i < mr; i++) {
    c0[i] = i0;
    c1[i] = i1;
  }
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_load_ps(Bp + k * 32), b1 = _mm512_load_ps(Bp + k * 32 + 16);
    const float *a = A + k * aks;
    for (int i = 0; i < mr; i++) {
      const __m512 av = _mm512_set1_ps(a[i * ars]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
  }
  for (int i = 0; i < mr; i++) {
    float *c = C + i * ldc;
    if (acc) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, c));
      c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, c + 16));
    }
    _mm512_mask_storeu_ps(c, m0, c0[i]);
    _mm512_mask_storeu_ps(c + 16, m1, c1[i]);
  }
}

/* the same for a last panel of at most 16 columns (halves the padding waste for N = 33) */
static inline __attribute__((always_inline)) void gemm_block16(
    int mr, int64_t kc, const float *A, int64_t ars, int64_t aks, const float *Bp, float *C,
    int64_t ldc, int acc, const float *bias, __mmask16 m0) {
  __m512 c0[GEMM_MR];
  const __m512 i0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  for (int i = 0; i < mr; i++) c0[i] = i0;
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_load_ps(Bp + k * 16);
    const float *a = A + k * aks;
    for (int i = 0; i < mr; i++) c0[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * ars]), b0, c0[i]);
  }
  for (int i = 0; i < mr; i++) {
    float *c = C + i * ldc;
    if (acc) c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, c));
    _mm512_mask_storeu_ps(c, m0, c0[i]);
  }
}

typedef void (*gemm_fn32)(int64_t, const float *, int64_t, int64_t, const float *, float *,
                          int64_t, int, const float *, __mmask16, __mmask16);
typedef void (*gemm_fn16)(int64_t, const float *, int64_t, int64_t, const float *, float *,
                          int64_t, int, const float *, __mmask16);
/* one instance per row count, so that the register blocks are fully unrolled */
#define GEMM_INST(R)                                                                         \
  static void gemm32_##R(int64_t kc, const float *A, int64_t ars, int64_t aks,               \
                         const float *Bp, float *C, int64_t ldc, int acc,                    \
                         const float *bias, __mmask16 m0, __mmask16 m1) {                    \
    gemm_block32(R, kc, A, ars, aks, Bp, C, ldc, acc, bias, m0, m1);                         \
  }                                                                                          \
  static void gemm16_##R(int64_t kc, const float *A, int64_t ars, int64_t aks,               \
                         const float *Bp, float *C, int64_t ldc, int acc, const float *bias, \
                         __mmask16 m0) {                                                     \
    gemm_block16(R, kc, A, ars, aks, Bp, C, ldc, acc, bias, m0);                             \
  }
GEMM_INST(1)
GEMM_INST(2)
GEMM_INST(3)
GEMM_INST(4)
GEMM_INST(5)
GEMM_INST(6)
GEMM_INST(7)
GEMM_INST(8)
#undef GEMM_INST
static const gemm_fn32 gemm32[GEMM_MR + 1] = {NULL,      gemm32_1, gemm32_2, gemm32_3, gemm32_4,
                                              gemm32_5, gemm32_6, gemm32_7, gemm32_8};
static const gemm_fn16 gemm16[GEMM_MR + 1] = {NULL,      gemm16_1, gemm16_2, gemm16_3, gemm16_4,
                                              gemm16_5, gemm16_6, gemm16_7, gemm16_8};

static __mmask16 lane_mask(int64_t w) {
  return w >= 16 ? (__mmask16)0xFFFF : w <= 0 ? (__mmask16)0 : (__mmask16)((1u << w) - 1);
}

/* The context's packing buffer */
static float *gemm_scratch(tf_ctx *ctx, size_t floats) {
  return ctx_buffer(ctx, &ctx->scratch, &ctx->scratch_bytes, floats * sizeof(float), "matmul");
}

/* C (M, N), row stride N, = op(A) op(B) (+ bias (N) added to every row, when not NULL: the
 * registers start from it, so the bias costs no pass over C) */
static int sgemm_avx512(tf_ctx *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                        const float *bias) {
  const int64_t nfull = N / GEMM_NR, rem = N - nfull * GEMM_NR;
  const int64_t npad = nfull * GEMM_NR + (rem == 0 ? 0 : rem <= 16 ? 16 : GEMM_NR);
  const int64_t kcmax = K < GEMM_KC ? K : GEMM_KC;
  float *bp = gemm_scratch(ctx, (size_t)(kcmax * npad));
  if (!bp) return TF_ENOMEM;
  /* op(A)[i, k] = A[i ars + k aks] */
  const int64_t ars = ta ? 1 : lda, aks = ta ? lda : 1;
  for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {
    const int64_t kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
    /* panel p covers columns [j0, j0 + pw), stored as kc rows of pw floats, zero-padded */
    for (int64_t j0 = 0; j0 < N; j0 += GEMM_NR) {
      const int64_t w = N - j0 < GEMM_NR ? N - j0 : GEMM_NR, pw = w <= 16 ? 16 : GEMM_NR;
      float *restrict d = bp + kc * j0;
      for (int64_t k = 0; k < kc; k++, d += pw) {
        int64_t j = 0;
        if (!tb) {
          const float *restrict s = B + (k0 + k) * ldb + j0;
          for (; j < w; j++) d[j] = s[j];
        } else {
          const float *s = B + j0 * ldb + k0 + k;
          for (; j < w; j++) d[j] = s[j * ldb];
        }
        for (; j < pw; j++) d[j] = 0;
      }
    }
    /* rows outer: an MR-row slice of A is read from memory once and reused from L1 for every
     * panel, and C is written row block by row block; the packed panels (kc x N) stay in L2.
     * (Panels outer measured the same on the flow benchmarks.) */
    const float *a0 = A + k0 * aks;
    for (int64_t i0 = 0; i0 < M; i0 += GEMM_MR) {
      const int mr = M - i0 < GEMM_MR ? (int)(M - i0) : GEMM_MR;
      for (int64_t j0 = 0; j0 < N; j0 += GEMM_NR) {
        const int64_t w = N - j0 < GEMM_NR ? N - j0 : GEMM_NR;
        const float *p = bp + kc * j0;
        const __mmask16 m0 = lane_mask(w), m1 = lane_mask(w - 16);
        const float *bj = bias && k0 == 0 ? bias + j0 : NULL;
        if (w > 16)
          gemm32[mr](kc, a0 + i0 * ars, ars, aks, p, C + i0 * N + j0, N, k0 > 0, bj, m0, m1);
        else
          gemm16[mr](kc, a0 + i0 * ars, ars, aks, p, C + i0 * N + j0, N, k0 > 0, bj, m0);
      }
    }
  }
  return TF_OK;
}
#endif

/* C (M, N), row stride N, = op(A) op(B) in the network precision */
static int gemm_rm(tf_ctx *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K,
                   const tf_real *A, int64_t lda, const tf_real *B, int64_t ldb, tf_real *C) {
#ifdef TF_DOUBLE
  (void)ctx;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)M, (int)N, (int)K, 1.0, A, (int)lda, B, (int)ldb, 0.0, C, (int)N);
  return TF_OK;
#elif defined(TF_GEMM)
  return sgemm_avx512(ctx, ta, tb, M, N, K, A, lda, B, ldb, C, NULL);
#else
  (void)ctx;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, 0.0f, C, (int)N);
  return TF_OK;
#endif
}

tf_tensor *tf_matmul(tf_ctx *ctx, tf_tensor *a, tf_tensor *b, int ta, int tb) {
  CHECK_IN(a);
  CHECK_IN(b);
  char s1[64], s2[64];
  if (a->ndim != 2 || b->ndim != 2) {
    tf__fail(ctx, TF_EINVAL, "matmul: operands must be 2-D, got %s and %s", shp(a, s1),
             shp(b, s2));
    return NULL;
  }
  int64_t m = ta ? a->shape[1] : a->shape[0], k = ta ? a->shape[0] : a->shape[1];
  int64_t k2 = tb ? b->shape[1] : b->shape[0], n = tb ? b->shape[0] : b->shape[1];
  if (k != k2) {
    tf__fail(ctx, TF_EINVAL, "matmul: inner dimensions differ: %s%s x %s%s", shp(a, s1),
             ta ? "^T" : "", shp(b, s2), tb ? "^T" : "");
    return NULL;
  }
  tf_tensor *c = tf__alloc(ctx, 2, (int64_t[]){m, n});
  if (!c || gemm_rm(ctx, ta, tb, m, n, k, a->data, a->shape[1], b->data, b->shape[1], c->data))
    return NULL;
  tf_tensor *in[2] = {a, b};
  tf_node nd = node0(TF_OP_MATMUL, 2, in);
  nd.ip[0] = ta != 0;
  nd.ip[1] = tb != 0;
  nd.out = c;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_linear(tf_ctx *ctx, tf_tensor *x, tf_tensor *w, tf_tensor *b) {
  CHECK_IN(x);
  CHECK_IN(w);
  char s1[64], s2[64];
  if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1]) {
    tf__fail(ctx, TF_EINVAL, "linear: need x (N, K) and W (M, K), got %s and %s", shp(x, s1),
             shp(w, s2));
    return NULL;
  }
  const int64_t n = x->shape[0], k = x->shape[1], m = w->shape[0];
  if (b && b->n != m) {
    tf__fail(ctx, TF_EINVAL, "linear: bias %s does not have the %lld outputs of W %s",
             shp(b, s1), (long long)m, shp(w, s2));
    return NULL;
  }
  tf_tensor *c = tf__alloc(ctx, 2, (int64_t[]){n, m});
  if (!c) return NULL;
#if defined(TF_GEMM) && !defined(TF_DOUBLE)
  if (sgemm_avx512(ctx, 0, 1, n, m, k, x->data, k, w->data, k, c->data, b ? b->data : NULL))
    return NULL;
#else
  if (b)
    for (int64_t i = 0; i < n; i++) memcpy(c->data + i * m, b->data, (size_t)m * sizeof(tf_real));
#ifdef TF_DOUBLE
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)m, (int)k, 1.0, x->data,
              (int)k, w->data, (int)k, b ? 1.0 : 0.0, c->data, (int)m);
#else
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)m, (int)k, 1.0f, x->data,
              (int)k, w->data, (int)k, b ? 1.0f : 0.0f, c->data, (int)m);
#endif
#endif
  tf_tensor *in[3] = {x, w, b};
  tf_node nd = node0(TF_OP_LINEAR, b ? 3 : 2, in);
  nd.out = c;
  return tf__finish(ctx, &nd);
}

/* ---- broadcasting elementwise ------------------------------------------------------------ */

/* Shape of x right-aligned into 4 dims. */
static void pad4(const tf_tensor *x, int64_t *s) {
  int off = TF_MAX_DIM - x->ndim;
  for (int i = 0; i < TF_MAX_DIM; i++) s[i] = i < off ? 1 : x->shape[i - off];
}

static void pad4_shape(int ndim, const int64_t *shape, int64_t *s) {
  int off = TF_MAX_DIM - ndim;
  for (int i = 0; i < TF_MAX_DIM; i++) s[i] = i < off ? 1 : shape[i - off];
}

/* Strides (in elements) of a padded shape, 0 where the dim is 1 (broadcast). */
static void bstrides(const int64_t *s, int64_t *st) {
  int64_t acc = 1;
  for (int i = TF_MAX_DIM - 1; i >= 0; i--) {
    st[i] = s[i] == 1 ? 0 : acc;
    acc *= s[i];
  }
}

/* 1 if the padded shape s (nelem elements) equals the trailing dims of ys: the leading dims
 * are all broadcast, so the operand repeats as one contiguous block */
static int trailing_block(const int64_t *s, const int64_t *ys, int64_t nelem) {
  int64_t acc = 1;
  int ok = 1;
  for (int i = 3; i >= 0 && acc < nelem; i--) {
    if (s[i] != ys[i]) ok = 0;
    acc *= s[i];
  }
  return ok && acc == nelem;
}

enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV };

#define BIN_LOOP(EXPR)                                                              \
  do {                                                                              \
    if (na == n && nb == n) {                                                       \
      for (int64_t i = 0; i < n; i++) {                                             \
        const tf_real u = A[i], v = B[i];                                           \
        Y[i] = (EXPR);                                                              \
      }                                                                             \
    } else if (nb == 1) {                                                           \
      const tf_real v = B[0];                                                       \
      for (int64_t i = 0; i < n; i++) {                                             \
        const tf_real u = A[i];                                                     \
        Y[i] = (EXPR);                                                              \
      }                                                                             \
    } else if (na == 1) {                                                           \
      const tf_real u = A[0];                                                       \
      for (int64_t i = 0; i < n; i++) {                                             \
        const tf_real v = B[i];                                                     \
        Y[i] = (EXPR);                                                              \
      }                                                                             \
    } else if (na == n && b_inner) { /* b repeats along leading dims */             \
      for (int64_t r = 0; r < n / nb; r++) {                                        \
        const tf_real *restrict Ar = A + r * nb;                                    \
        tf_real *restrict Yr = Y + r * nb;                                          \
        for (int64_t i = 0; i < nb; i++) {                                          \
          const tf_real u = Ar[i], v = B[i];                                        \
          Yr[i] = (EXPR);                                                           \
        }                                                                           \
      }                                                                             \
    } else if (nb == n && a_inner) {                                                \
      for (int64_t r = 0; r < n / na; r++) {                                        \
        const tf_real *restrict Br = B + r * na;                                    \
        tf_real *restrict Yr = Y + r * na;                                          \
        for (int64_t i = 0; i < na; i++) {                                          \
          const tf_real u = A[i], v = Br[i];                                        \
          Yr[i] = (EXPR);                                                           \
        }                                                                           \
      }                                                                             \
    } else if (na == n && b_col) { /* b constant along the last axis */             \
      for (int64_t r = 0; r < nb; r++) {                                            \
        const tf_real *restrict Ar = A + r * w;                                     \
        tf_real *restrict Yr = Y + r * w;                                           \
        const tf_real v = B[r];                                                     \
        for (int64_t i = 0; i < w; i++) {                                           \
          const tf_real u = Ar[i];                                                  \
          Yr[i] = (EXPR);                                                           \
        }                                                                           \
      }                                                                             \
    } else if (nb == n && a_col) {                                                  \
      for (int64_t r = 0; r < na; r++) {                                            \
        const tf_real *restrict Br = B + r * w;                                     \
        tf_real *restrict Yr = Y + r * w;                                           \
        const tf_real u = A[r];                                                     \
        for (int64_t i = 0; i < w; i++) {                                           \
          const tf_real v = Br[i];                                                  \
          Yr[i] = (EXPR);                                                           \
        }                                                                           \
      }                                                                             \
    } else if (na == n && b_mid) { /* b (B0, 1, 1, W): constant over the middle axes */ \
      for (int64_t i0 = 0; i0 < ys[0]; i0++) {                                      \
        const tf_real *restrict Bv = B + i0 * w;                                    \
        for (int64_t r = i0 * ys[1] * ys[2]; r < (i0 + 1) * ys[1] * ys[2]; r++) {   \
          const tf_real *restrict Ar = A + r * w;                                   \
          tf_real *restrict Yr = Y + r * w;                                         \
          for (int64_t i = 0; i < w; i++) {                                         \
            const tf_real u = Ar[i], v = Bv[i];                                     \
            Yr[i] = (EXPR);                                                         \
          }                                                                         \
        }                                                                           \
      }                                                                             \
    } else {                                                                        \
      int64_t o = 0;                                                                \
      for (int64_t i0 = 0; i0 < ys[0]; i0++)                                        \
        for (int64_t i1 = 0; i1 < ys[1]; i1++)                                      \
          for (int64_t i2 = 0; i2 < ys[2]; i2++)                                    \
            for (int64_t i3 = 0; i3 < ys[3]; i3++, o++) {                           \
              const tf_real u = A[i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3]]; \
              const tf_real v = B[i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]]; \
              Y[o] = (EXPR);                                                        \
            }                                                                       \
    }                                                                               \
  } while (0)

static tf_tensor *binary(tf_ctx *ctx, int kind, tf_op op, tf_tensor *a, tf_tensor *b) {
  CHECK_IN(a);
  CHECK_IN(b);
  int64_t as[4], bs[4], ys[4];
  pad4(a, as);
  pad4(b, bs);
  for (int i = 0; i < 4; i++) {
    if (as[i] != bs[i] && as[i] != 1 && bs[i] != 1) {
      char s1[64], s2[64];
      tf__fail(ctx, TF_EINVAL, "%s: shapes %s and %s do not broadcast", tf_rules[op].name,
               shp(a, s1), shp(b, s2));
      return NULL;
    }
    ys[i] = as[i] > bs[i] ? as[i] : bs[i];
  }
  int ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
  tf_tensor *y = tf__alloc(ctx, ndim, ys + (4 - ndim));
  if (!y) return NULL;
  int64_t sa[4], sb[4];
  bstrides(as, sa);
  bstrides(bs, sb);
  const int64_t n = y->n, na = a->n, nb = b->n;
  /* b occupies the trailing dims of y exactly (e.g. a bias row): leading dims all broadcast */
  const int b_inner = trailing_block(bs, ys, nb), a_inner = trailing_block(as, ys, na);
  /* (N, D) op (N, 1) and its mirror: one value per row of the last axis */
  const int64_t w = ys[3];
  const int b_col = w > 1 && bs[3] == 1 && bs[0] == ys[0] && bs[1] == ys[1] && bs[2] == ys[2];
  const int a_col = w > 1 && as[3] == 1 && as[0] == ys[0] && as[1] == ys[1] && as[2] == ys[2];
  /* (N, L1, L2, C) op (N, 1, 1, C): a per-sample condition on a channels-last field */
  const int b_mid = bs[0] == ys[0] && bs[1] == 1 && bs[2] == 1 && bs[3] == ys[3] && w > 1;
  const tf_real *restrict A = a->data, *restrict B = b->data;
  tf_real *restrict Y = y->data;
  switch (kind) {
    case BIN_ADD: BIN_LOOP(u + v); break;
    case BIN_SUB: BIN_LOOP(u - v); break;
    case BIN_MUL: BIN_LOOP(u * v); break;
    default: BIN_LOOP(u / v); break;
  }
  tf_tensor *in[2] = {a, b};
  tf_node nd = node0(op, 2, in);
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_add(tf_ctx *ctx, tf_tensor *a, tf_tensor *b) {
  return binary(ctx, BIN_ADD, TF_OP_ADD, a, b);
}
tf_tensor *tf_sub(tf_ctx *ctx, tf_tensor *a, tf_tensor *b) {
  return binary(ctx, BIN_SUB, TF_OP_SUB, a, b);
}
tf_tensor *tf_mul(tf_ctx *ctx, tf_tensor *a, tf_tensor *b) {
  return binary(ctx, BIN_MUL, TF_OP_MUL, a, b);
}
tf_tensor *tf_div(tf_ctx *ctx, tf_tensor *a, tf_tensor *b) {
  return binary(ctx, BIN_DIV, TF_OP_DIV, a, b);
}

static tf_tensor *affine1(tf_ctx *ctx, tf_op op, tf_tensor *x, double alpha, double beta) {
  CHECK_IN(x);
  tf_tensor *y = tf__alloc(ctx, x->ndim, x->shape);
  if (!y) return NULL;
  const tf_real al = (tf_real)alpha, be = (tf_real)beta;
  const tf_real *restrict X = x->data;
  tf_real *restrict Y = y->data;
  for (int64_t i = 0; i < x->n; i++) Y[i] = al * X[i] + be;
  tf_tensor *in[1] = {x};
  tf_node nd = node0(op, 1, in);
  nd.fp = op == TF_OP_SCALE ? alpha : beta;
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_scale(tf_ctx *ctx, tf_tensor *x, double alpha) {
  return affine1(ctx, TF_OP_SCALE, x, alpha, 0.0);
}
tf_tensor *tf_shift(tf_ctx *ctx, tf_tensor *x, double beta) {
  return affine1(ctx, TF_OP_SHIFT, x, 1.0, beta);
}
tf_tensor *tf_neg(tf_ctx *ctx, tf_tensor *x) { return tf_scale(ctx, x, -1.0); }

/* ---- unary families ---------------------------------------------------------------------- */

static int check_fn(tf_ctx *ctx, tf_fn fn, int k) {
  if (fn < 0 || fn >= TF_FN_COUNT)
    return tf__fail(ctx, TF_EINVAL, "unary: unknown function %d", (int)fn);
  if (k < 0 || k > TF_MAX_DERIV)
    return tf__fail(ctx, TF_EUNSUP,
                    "unary: derivative order %d of %s requested; orders 0..%d are implemented",
                    k, tf__fn_name(fn), TF_MAX_DERIV);
  return TF_OK;
}

tf_tensor *tf_unary(tf_ctx *ctx, tf_fn fn, int k, tf_tensor *x) {
  CHECK_IN(x);
  if (check_fn(ctx, fn, k)) return NULL;
  tf_tensor *y = tf__alloc(ctx, x->ndim, x->shape);
  if (!y) return NULL;
  tf__unary_kernel(fn, k, x->data, NULL, y->data, x->n);
  tf_tensor *in[1] = {x};
  tf_node nd = node0(TF_OP_UNARY, 1, in);
  nd.ip[0] = (int)fn;
  nd.ip[1] = k;
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_unary_mul(tf_ctx *ctx, tf_fn fn, int k, tf_tensor *x, tf_tensor *g) {
  CHECK_IN(x);
  CHECK_IN(g);
  if (check_fn(ctx, fn, k)) return NULL;
  if (!tf_same_shape(x, g)) {
    char s1[64], s2[64];
    tf__fail(ctx, TF_EINVAL, "unary_mul(%s): x %s and g %s differ in shape", tf__fn_name(fn),
             shp(x, s1), shp(g, s2));
    return NULL;
  }
  tf_tensor *y = tf__alloc(ctx, x->ndim, x->shape);
  if (!y) return NULL;
  tf__unary_kernel(fn, k, x->data, g->data, y->data, x->n);
  tf_tensor *in[2] = {x, g};
  tf_node nd = node0(TF_OP_UNARY_MUL, 2, in);
  nd.ip[0] = (int)fn;
  nd.ip[1] = k;
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_exp(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_EXP, 0, x); }
tf_tensor *tf_log(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_LOG, 0, x); }
tf_tensor *tf_tanh(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_TANH, 0, x); }
tf_tensor *tf_sigmoid(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_SIGMOID, 0, x); }
tf_tensor *tf_softplus(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_SOFTPLUS, 0, x); }
tf_tensor *tf_silu(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_SILU, 0, x); }
tf_tensor *tf_relu(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_RELU, 0, x); }
tf_tensor *tf_square(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_SQUARE, 0, x); }
tf_tensor *tf_sqrt(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_SQRT, 0, x); }
tf_tensor *tf_abs(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_ABS, 0, x); }
tf_tensor *tf_sin(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_SIN, 0, x); }
tf_tensor *tf_cos(tf_ctx *ctx, tf_tensor *x) { return tf_unary(ctx, TF_FN_COS, 0, x); }

tf_tensor *tf_abs_smooth(tf_ctx *ctx, tf_tensor *x, double eps) {
  return tf_sqrt(ctx, tf_shift(ctx, tf_square(ctx, x), eps * eps));
}

tf_tensor *tf_log_safe(tf_ctx *ctx, tf_tensor *x, double eps) {
  CHECK_IN(x);
  tf_tensor *mask = tf__alloc(ctx, x->ndim, x->shape);
  tf_tensor *floor = tf_full(ctx, x->ndim, x->shape, eps);
  if (!mask || !floor) return NULL;
  for (int64_t i = 0; i < x->n; i++) mask->data[i] = x->data[i] >= (tf_real)eps;
  /* log sees only values >= eps, so neither branch produces NaN/Inf in value or gradient */
  tf_tensor *lg = tf_log(ctx, tf_where(ctx, mask, x, floor));
  tf_tensor *lin = tf_shift(ctx, tf_scale(ctx, x, 1.0 / eps), log(eps) - 1.0);
  return tf_where(ctx, mask, lg, lin);
}

/* ---- reductions and broadcasting --------------------------------------------------------- */

/* sum of x[0..n) in double.  Eight interleaved partial sums: one running sum is a chain of
 * dependent adds (latency-bound, and the vectoriser may not reorder it); eight independent
 * lanes vectorise and stay deterministic. */
static double sum_d(const tf_real *restrict x, int64_t n) {
  double acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j];
  double s = 0;
  for (; i < n; i++) s += (double)x[i];
  return s + (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])));
}

tf_tensor *tf_sum_to(tf_ctx *ctx, tf_tensor *x, int ndim, const int64_t *shape) {
  CHECK_IN(x);
  int64_t xs[4], ys[4];
  pad4(x, xs);
  if (ndim < 1 || ndim > TF_MAX_DIM) {
    tf__fail(ctx, TF_EINVAL, "sum_to: invalid target rank %d", ndim);
    return NULL;
  }
  pad4_shape(ndim, shape, ys);
  for (int i = 0; i < 4; i++)
    if (ys[i] != xs[i] && ys[i] != 1) {
      char s1[64];
      tf__fail(ctx, TF_EINVAL, "sum_to: %s cannot be summed to a shape with dim %d = %lld",
               shp(x, s1), i - (4 - ndim), (long long)ys[i]);
      return NULL;
    }
  if (ndim == x->ndim && memcmp(shape, x->shape, (size_t)ndim * sizeof *shape) == 0)
    return x; /* identity: nothing to record */
  tf_tensor *y = tf__alloc(ctx, ndim, shape);
  if (!y) return NULL;
  const tf_real *restrict X = x->data;
  tf_real *restrict Y = y->data;
  const int64_t n = x->n, m = y->n;
  int64_t inner = 1; /* length of the trailing run y shares with x */
  {
    int i = 3;
    while (i >= 0 && ys[i] == xs[i]) inner *= xs[i--];
  }
  int64_t ys_lead = m / inner;
  if (m == 1) {
    Y[0] = (tf_real)sum_d(X, n);
  } else if (ys_lead == 1) { /* y = trailing block of x: sum of rows (column sums) */
    memset(Y, 0, (size_t)m * sizeof *Y);
    for (int64_t r = 0; r < n / m; r++) {
      const tf_real *restrict Xr = X + r * m;
      for (int64_t i = 0; i < m; i++) Y[i] += Xr[i];
    }
  } else if (ys[3] == 1 && ys[0] == xs[0] && ys[1] == xs[1] && ys[2] == xs[2]) {
    /* sum over the last axis only: contiguous runs, accumulated in double */
    const int64_t len = xs[3];
    for (int64_t r = 0; r < m; r++) Y[r] = (tf_real)sum_d(X + r * len, len);
  } else {
    int64_t st[4];
    bstrides(ys, st);
    memset(Y, 0, (size_t)m * sizeof *Y);
    int64_t o = 0;
    for (int64_t i0 = 0; i0 < xs[0]; i0++)
      for (int64_t i1 = 0; i1 < xs[1]; i1++)
        for (int64_t i2 = 0; i2 < xs[2]; i2++)
          for (int64_t i3 = 0; i3 < xs[3]; i3++, o++)
            Y[i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3]] += X[o];
  }
  tf_tensor *in[1] = {x};
  tf_node nd = node0(TF_OP_SUM_TO, 1, in);
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_expand(tf_ctx *ctx, tf_tensor *x, int ndim, const int64_t *shape) {
  CHECK_IN(x);
  int64_t xs[4], ys[4];
  pad4(x, xs);
  if (ndim < x->ndim || ndim > TF_MAX_DIM) {
    tf__fail(ctx, TF_EINVAL, "expand: target rank %d below the input rank %d", ndim, x->ndim);
    return NULL;
  }
  pad4_shape(ndim, shape, ys);
  for (int i = 0; i < 4; i++)
    if (ys[i] != xs[i] && xs[i] != 1) {
      char s1[64];
      tf__fail(ctx, TF_EINVAL, "expand: %s cannot be broadcast to dim %d = %lld", shp(x, s1),
               i - (4 - ndim), (long long)ys[i]);
      return NULL;
    }
  if (ndim == x->ndim && memcmp(shape, x->shape, (size_t)ndim * sizeof *shape) == 0) return x;
  tf_tensor *y = tf__alloc(ctx, ndim, shape);
  if (!y) return NULL;
  const tf_real *restrict X = x->data;
  tf_real *restrict Y = y->data;
  const int64_t n = y->n, nx = x->n, w = ys[3];
  if (nx == 1) {
    for (int64_t i = 0; i < n; i++) Y[i] = X[0];
  } else if (trailing_block(xs, ys, nx)) { /* a row repeated */
    for (int64_t r = 0; r < n / nx; r++) memcpy(Y + r * nx, X, (size_t)nx * sizeof *Y);
  } else if (xs[3] == 1 && xs[0] == ys[0] && xs[1] == ys[1] && xs[2] == ys[2]) {
    /* one value per row of the last axis (the adjoint of a sum over it) */
    for (int64_t r = 0; r < nx; r++)
      for (int64_t i = 0; i < w; i++) Y[r * w + i] = X[r];
  } else {
    int64_t st[4];
    bstrides(xs, st);
    int64_t o = 0;
    for (int64_t i0 = 0; i0 < ys[0]; i0++)
      for (int64_t i1 = 0; i1 < ys[1]; i1++)
        for (int64_t i2 = 0; i2 < ys[2]; i2++)
          for (int64_t i3 = 0; i3 < ys[3]; i3++, o++)
            Y[o] = X[i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3]];
  }
  tf_tensor *in[1] = {x};
  tf_node nd = node0(TF_OP_EXPAND, 1, in);
  nd.out = y;
  return tf__finish(ctx, &nd);
}

static int norm_axis(tf_ctx *ctx, const tf_tensor *x, int axis, const char *op) {
  int a = axis < 0 ? axis + x->ndim : axis;
  if (a < 0 || a >= x->ndim) {
    char s1[64];
    tf__fail(ctx, TF_EINVAL, "%s: axis %d out of range for shape %s", op, axis, shp(x, s1));
    return -1;
  }
  return a;
}

/* x's shape with axis a set to 1 (the result shape of every reduction here) */
static void reduced_shape(const tf_tensor *x, int a, int64_t *s) {
  memcpy(s, x->shape, TF_MAX_DIM * sizeof *s);
  s[a] = 1;
}

tf_tensor *tf_sum(tf_ctx *ctx, tf_tensor *x, int axis) {
  CHECK_IN(x);
  int a = norm_axis(ctx, x, axis, "sum");
  if (a < 0) return NULL;
  int64_t s[TF_MAX_DIM];
  reduced_shape(x, a, s);
  return tf_sum_to(ctx, x, x->ndim, s);
}

tf_tensor *tf_mean(tf_ctx *ctx, tf_tensor *x, int axis) {
  CHECK_IN(x);
  int a = norm_axis(ctx, x, axis, "mean");
  if (a < 0) return NULL;
  return tf_scale(ctx, tf_sum(ctx, x, a), 1.0 / (double)x->shape[a]);
}

tf_tensor *tf_sum_all(tf_ctx *ctx, tf_tensor *x) {
  const int64_t one = 1;
  CHECK_IN(x);
  if (x->ndim == 1 && x->n == 1) return x;
  return tf_sum_to(ctx, x, 1, &one);
}

tf_tensor *tf_mean_all(tf_ctx *ctx, tf_tensor *x) {
  CHECK_IN(x);
  return tf_scale(ctx, tf_sum_all(ctx, x), 1.0 / (double)x->n);
}

/* (outer, A, inner) view of x around axis a */
static void split3(const tf_tensor *x, int a, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < a; i++) *outer *= x->shape[i];
  for (int i = a + 1; i < x->ndim; i++) *inner *= x->shape[i];
  *len = x->shape[a];
}

/* max of p[0], p[inner], ..., p[(len-1) inner]; NaN entries are skipped (callers check) */
static double strided_max(const tf_real *p, int64_t len, int64_t inner) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < len; i++) mx = p[i * inner] > mx ? p[i * inner] : mx;
  return mx;
}

tf_tensor *tf_logsumexp(tf_ctx *ctx, tf_tensor *x, int axis) {
  CHECK_IN(x);
  int a = norm_axis(ctx, x, axis, "logsumexp");
  if (a < 0) return NULL;
  int64_t s[TF_MAX_DIM];
  reduced_shape(x, a, s);
  tf_tensor *y = tf__alloc(ctx, x->ndim, s);
  if (!y) return NULL;
  int64_t outer, len, inner;
  split3(x, a, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++) {
      const tf_real *p = x->data + o * len * inner + j;
      const double mx = strided_max(p, len, inner);
      double r;
      if (isinf(mx)) {
        r = mx; /* all -inf (or one +inf): the max is the answer */
      } else if (isnan(mx)) {
        r = NAN;
      } else {
        double acc = 0;
        for (int64_t i = 0; i < len; i++) acc += exp((double)p[i * inner] - mx);
        r = mx + log(acc);
      }
      /* a NaN anywhere in the row must surface */
      for (int64_t i = 0; i < len; i++)
        if (isnan(p[i * inner])) r = NAN;
      y->data[o * inner + j] = (tf_real)r;
    }
  tf_tensor *in[1] = {x};
  tf_node nd = node0(TF_OP_LSE, 1, in);
  nd.ip[0] = a;
  nd.out = y;
  return tf__finish(ctx, &nd);
}

/* The maximum over an axis (kept with size 1) as a constant: not recorded, no tangent.
 * Non-finite maxima become 0 so that x - max never forms inf - inf. */
static tf_tensor *max_const(tf_ctx *ctx, tf_tensor *x, int a) {
  int64_t s[TF_MAX_DIM];
  reduced_shape(x, a, s);
  tf_tensor *m = tf__alloc(ctx, x->ndim, s);
  if (!m) return NULL;
  int64_t outer, len, inner;
  split3(x, a, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++) {
      const double mx = strided_max(x->data + o * len * inner + j, len, inner);
      m->data[o * inner + j] = isfinite(mx) ? (tf_real)mx : 0;
    }
  return m;
}

tf_tensor *tf_softmax(tf_ctx *ctx, tf_tensor *x, int axis) {
  return tf_exp(ctx, tf_log_softmax(ctx, x, axis));
}

tf_tensor *tf_log_softmax(tf_ctx *ctx, tf_tensor *x, int axis) {
  CHECK_IN(x);
  int a = norm_axis(ctx, x, axis, "log_softmax");
  if (a < 0) return NULL;
  /* Shift by the maximum first: (x - m) - lse(x - m) is exact where x - lse(x) would lose the
   * last bits of a large lse.  m is a constant, which changes no derivative because the
   * function is invariant under the shift. */
  tf_tensor *xs = tf_sub(ctx, x, max_const(ctx, x, a));
  return tf_sub(ctx, xs, tf_logsumexp(ctx, xs, a));
}

/* ---- feature-axis structure -------------------------------------------------------------- */

/* Copy one row of w elements.  The rows here are short (a few dozen floats, once per batch
 * row), where a libc memcpy call per row costs as much as the copy: fixed 64-byte blocks
 * (inlined as vector moves), the tail as one more block ending at the row's end.  The empty
 * asm keeps GCC from turning the loops back into a memcpy call (loop distribution). */
#if defined(__GNUC__)
#define NO_LIBCALL() __asm__("" ::: "memory")
#else
#define NO_LIBCALL() ((void)0)
#endif
static inline void zero_row(tf_real *dst, int64_t w) {
  enum { B = 64 / sizeof(tf_real) };
  static const tf_real zeros[B];
  if (w < B) {
    for (int64_t j = 0; j < w; j++) {
      dst[j] = 0;
      NO_LIBCALL();
    }
    return;
  }
  int64_t j = 0;
  for (; j + B <= w; j += B) {
    memcpy(dst + j, zeros, 64);
    NO_LIBCALL();
  }
  if (j < w) memcpy(dst + w - B, zeros, 64);
}

static inline void copy_row(tf_real *restrict dst, const tf_real *restrict src, int64_t w) {
  enum { B = 64 / sizeof(tf_real) };
  if (w < B) {
    for (int64_t j = 0; j < w; j++) {
      dst[j] = src[j];
      NO_LIBCALL();
    }
    return;
  }
  int64_t j = 0;
  for (; j + B <= w; j += B) {
    memcpy(dst + j, src + j, 64);
    NO_LIBCALL();
  }
  if (j < w) memcpy(dst + w - B, src + w - B, 64);
}

tf_tensor *tf_concat(tf_ctx *ctx, int n, tf_tensor *const *xs) {
  if (ctx->status != TF_OK || n < 1) {
    if (n < 1) tf__fail(ctx, TF_EINVAL, "concat: no inputs");
    return NULL;
  }
  for (int i = 0; i < n; i++) CHECK_IN(xs[i]);
  const tf_tensor *x0 = xs[0];
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    const tf_tensor *x = xs[i];
    int ok = x->ndim == x0->ndim;
    for (int d = 0; ok && d < x0->ndim - 1; d++) ok = x->shape[d] == x0->shape[d];
    if (!ok) {
      char s1[64], s2[64];
      tf__fail(ctx, TF_EINVAL, "concat: input %d has shape %s, incompatible with %s", i,
               shp(x, s1), shp(x0, s2));
      return NULL;
    }
    total += x->shape[x->ndim - 1];
  }
  int64_t s[TF_MAX_DIM];
  memcpy(s, x0->shape, sizeof s);
  s[x0->ndim - 1] = total;
  tf_tensor *y = tf__alloc(ctx, x0->ndim, s);
  if (!y) return NULL;
  const int64_t rows = x0->n / x0->shape[x0->ndim - 1];
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    const int64_t w = xs[i]->shape[xs[i]->ndim - 1];
    for (int64_t r = 0; r < rows; r++)
      copy_row(y->data + r * total + off, xs[i]->data + r * w, w);
    off += w;
  }
  tf_tensor **in = tf_arena_alloc(ctx->arena, (size_t)n * sizeof *in);
  if (!in) {
    tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
    return NULL;
  }
  memcpy(in, xs, (size_t)n * sizeof *in);
  tf_node nd = node0(TF_OP_CONCAT, n, in);
  nd.out = y;
  return tf__finish(ctx, &nd);
}

/* y[..., j] = x[..., j + xoff] for j in [0, ylen), over the last axis; used by slice and pad */
static void copy_cols(const tf_tensor *x, int64_t xoff, tf_tensor *y, int64_t yoff, int64_t len) {
  const int64_t xw = x->shape[x->ndim - 1], yw = y->shape[y->ndim - 1], rows = x->n / xw;
  for (int64_t r = 0; r < rows; r++)
    copy_row(y->data + r * yw + yoff, x->data + r * xw + xoff, len);
}

tf_tensor *tf_slice(tf_ctx *ctx, tf_tensor *x, int64_t start, int64_t len) {
  CHECK_IN(x);
  const int64_t w = x->shape[x->ndim - 1];
  if (start < 0 || len < 1 || start + len > w) {
    char s1[64];
    tf__fail(ctx, TF_EINVAL, "slice: [%lld, %lld) outside the last axis of %s", (long long)start,
             (long long)(start + len), shp(x, s1));
    return NULL;
  }
  int64_t s[TF_MAX_DIM];
  memcpy(s, x->shape, sizeof s);
  s[x->ndim - 1] = len;
  tf_tensor *y = tf__alloc(ctx, x->ndim, s);
  if (!y) return NULL;
  copy_cols(x, start, y, 0, len);
  tf_tensor *in[1] = {x};
  tf_node nd = node0(TF_OP_SLICE, 1, in);
  nd.lp[0] = start;
  nd.lp[1] = len;
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_pad(tf_ctx *ctx, tf_tensor *x, int64_t start, int64_t total) {
  CHECK_IN(x);
  const int64_t w = x->shape[x->ndim - 1];
  if (start < 0 || start + w > total) {
    char s1[64];
    tf__fail(ctx, TF_EINVAL, "pad: %s at offset %lld does not fit in %lld", shp(x, s1),
             (long long)start, (long long)total);
    return NULL;
  }
  int64_t s[TF_MAX_DIM];
  memcpy(s, x->shape, sizeof s);
  s[x->ndim - 1] = total;
  tf_tensor *y = tf__alloc(ctx, x->ndim, s);
  if (!y) return NULL;
  /* one pass: zero only the columns the copy does not write */
  const int64_t rows = x->n / w, tail = total - start - w;
  for (int64_t r = 0; r < rows; r++) {
    tf_real *yr = y->data + r * total;
    zero_row(yr, start);
    copy_row(yr + start, x->data + r * w, w);
    zero_row(yr + start + w, tail);
  }
  tf_tensor *in[1] = {x};
  tf_node nd = node0(TF_OP_PAD, 1, in);
  nd.lp[0] = start;
  nd.lp[1] = total;
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_reshape(tf_ctx *ctx, tf_tensor *x, int ndim, const int64_t *shape) {
  CHECK_IN(x);
  tf_tensor *y = tf__header(ctx, x->data, ndim, shape);
  if (!y) return NULL;
  if (y->n != x->n) {
    char s1[64], s2[64];
    tf__fail(ctx, TF_EINVAL, "reshape: %s has %lld elements, target %s has %lld", shp(x, s1),
             (long long)x->n, shp(y, s2), (long long)y->n);
    return NULL;
  }
  tf_tensor *in[1] = {x};
  tf_node nd = node0(TF_OP_RESHAPE, 1, in);
  nd.out = y;
  return tf__finish(ctx, &nd);
}

/* ---- index ops --------------------------------------------------------------------------- */

/* The inverse of idx (m entries in [0, size)) in the arena if idx is a permutation of
 * 0..size-1, else NULL (and no error). */
static const int64_t *inverse_perm(tf_ctx *ctx, const int64_t *idx, int64_t m, int64_t size) {
  if (m != size) return NULL;
  int64_t *inv = tf_arena_alloc(ctx->arena, (size_t)m * sizeof *inv);
  if (!inv) {
    tf__fail(ctx, TF_ENOMEM, "%s", tf_errmsg());
    return NULL;
  }
  for (int64_t i = 0; i < m; i++) inv[i] = -1;
  for (int64_t i = 0; i < m; i++) {
    if (inv[idx[i]] >= 0) return NULL; /* a repeated index: a genuine sum */
    inv[idx[i]] = i;
  }
  return inv;
}

static tf_tensor *index_op(tf_ctx *ctx, tf_op op, tf_tensor *x, int axis, const int64_t *idx,
                           int64_t m, int64_t size) {
  CHECK_IN(x);
  const char *name = op == TF_OP_GATHER ? "gather" : "scatter_add";
  int a = norm_axis(ctx, x, axis, name);
  if (a < 0) return NULL;
  int64_t outer, len, inner;
  split3(x, a, &outer, &len, &inner);
  const int64_t src_range = op == TF_OP_GATHER ? len : size; /* idx values index this axis */
  if (m < 1 || (op == TF_OP_SCATTER && m != len) || !idx) {
    tf__fail(ctx, TF_EINVAL, "%s: %lld indices for an axis of length %lld", name, (long long)m,
             (long long)len);
    return NULL;
  }
  for (int64_t i = 0; i < m; i++)
    if (idx[i] < 0 || idx[i] >= src_range) {
      tf__fail(ctx, TF_EINVAL, "%s: index %lld at position %lld outside [0, %lld)", name,
               (long long)idx[i], (long long)i, (long long)src_range);
      return NULL;
    }
  int64_t s[TF_MAX_DIM];
  memcpy(s, x->shape, sizeof s);
  s[a] = op == TF_OP_GATHER ? m : size;
  const int64_t ylen = s[a];
  /* A scatter through a permutation is a gather through its inverse: no zeroing, no
   * read-modify-write.  (The flows' permutation layers are exactly this case.) */
  const int64_t *inv = op == TF_OP_SCATTER && inner == 1 ? inverse_perm(ctx, idx, m, size) : NULL;
  if (ctx->status != TF_OK) return NULL;
  tf_tensor *y = op == TF_OP_GATHER || inv ? tf__alloc(ctx, x->ndim, s) : tf_zeros(ctx, x->ndim, s);
  if (!y) return NULL;
  if (inner == 1 && (op == TF_OP_GATHER || inv)) {
    /* the last axis: one element per index, where a memcpy per element would dominate */
    const int64_t *ix = inv ? inv : idx;
    for (int64_t o = 0; o < outer; o++) {
      const tf_real *restrict xr = x->data + o * len;
      tf_real *restrict yr = y->data + o * ylen;
      for (int64_t i = 0; i < ylen; i++) yr[i] = xr[ix[i]];
    }
  } else {
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < m; i++) {
        if (op == TF_OP_GATHER) {
          const tf_real *src = x->data + (o * len + idx[i]) * inner;
          tf_real *dst = y->data + (o * ylen + i) * inner;
          memcpy(dst, src, (size_t)inner * sizeof(tf_real));
        } else {
          const tf_real *restrict src = x->data + (o * len + i) * inner;
          tf_real *restrict dst = y->data + (o * ylen + idx[i]) * inner;
          for (int64_t j = 0; j < inner; j++) dst[j] += src[j];
        }
      }
  }
  tf_tensor *in[1] = {x};
  tf_node nd = node0(op, 1, in);
  nd.ip[0] = a;
  nd.lp[0] = m;
  nd.lp[1] = op == TF_OP_GATHER ? len : size;
  nd.idx = idx;
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_gather(tf_ctx *ctx, tf_tensor *x, int axis, const int64_t *idx, int64_t m) {
  return index_op(ctx, TF_OP_GATHER, x, axis, idx, m, 0);
}

tf_tensor *tf_scatter_add(tf_ctx *ctx, tf_tensor *x, int axis, const int64_t *idx, int64_t m,
                          int64_t size) {
  return index_op(ctx, TF_OP_SCATTER, x, axis, idx, m, size);
}

tf_tensor *tf_where(tf_ctx *ctx, tf_tensor *mask, tf_tensor *a, tf_tensor *b) {
  CHECK_IN(mask);
  if (ctx->status != TF_OK) return NULL;
  if ((a && !tf_same_shape(mask, a)) || (b && !tf_same_shape(mask, b))) {
    char s1[64], s2[64], s3[64];
    tf__fail(ctx, TF_EINVAL, "where: mask %s, a %s, b %s must have one shape", shp(mask, s1),
             shp(a, s2), shp(b, s3));
    return NULL;
  }
  tf_tensor *y = tf__alloc(ctx, mask->ndim, mask->shape);
  if (!y) return NULL;
  const tf_real *M = mask->data;
  for (int64_t i = 0; i < y->n; i++) {
    tf_real va = a ? a->data[i] : 0, vb = b ? b->data[i] : 0;
    y->data[i] = M[i] != 0 ? va : vb;
  }
  tf_tensor *in[3] = {mask, a, b};
  tf_node nd = node0(TF_OP_WHERE, 3, in);
  nd.out = y;
  return tf__finish(ctx, &nd);
}

/* ---- periodic 3x3 convolution ------------------------------------------------------------
 *
 * Fields are channels-last, x (N, L1, L2, C): one site's channels are contiguous, so the
 * rows of the GEMM are (sample, site) and its columns channels, tall and thin like the flows'
 * dense layers, and the GEMM reads and writes fields in place.  The column matrix X' has rows
 * (n, s), s = i L2 + j, and columns k = t C + c for the tap t = 3 di + dj:
 *   X'[(n, s), t C + c] = x[n, (i + di - 1) mod L1, (j + dj - 1) mod L2, c],
 * so that, with W' (Cout, 9 Cin) the weights (Cout, Cin, 3, 3) with their columns permuted to
 * the same (t, c) order,
 *   forward   y  = X' W'^T         rows (n, s), columns o: y (N, L1, L2, Cout) itself
 *   input     u  = col2im(G W')    G = g (N L1 L2, Cout) as it is; col2im scatter-adds
 *   weights   dW' = G^T X'         (Cout, 9 Cin), summed over the chunks
 * Each tap of a row is one contiguous run of C values, so im2col is 9 copies per row.  (The
 * first version was channel-major: im2col read 9 C values strided by L1 L2, and every conv
 * transposed its input or output; im2col and the transposes were 40% of a lattice flow's
 * sampling time.)  Samples go in chunks so that the buffers (context-owned, kept across
 * resets, no allocation in steady state) stay near CONV_CHUNK_VALUES whatever the batch.  The
 * weight gradient is summed by the GEMM in the network precision (the old loop summed in
 * double; the float32 test bounds the difference at 2.4e-7 relative on 600 samples). */
enum { CONV_CHUNK_VALUES = 1 << 20 }; /* tf_real values (4 MiB in float32) */

static tf_real *conv_scratch(tf_ctx *ctx, size_t n) {
  return ctx_buffer(ctx, &ctx->conv_scratch, &ctx->conv_scratch_bytes, n * sizeof(tf_real),
                    "conv2d_periodic");
}

/* Site of tap t (= 3 di + dj) of site (i, j): row-major index of (i + di - 1, j + dj - 1)
 * with periodic wrap, for the 9 taps at once. */
static void taps(int64_t i, int64_t j, int64_t L1, int64_t L2, int64_t nbr[9]) {
  const int64_t ri[3] = {(i == 0 ? L1 - 1 : i - 1) * L2, i * L2, (i + 1 == L1 ? 0 : i + 1) * L2};
  const int64_t cj[3] = {j == 0 ? L2 - 1 : j - 1, j, j + 1 == L2 ? 0 : j + 1};
  for (int t = 0; t < 9; t++) nbr[t] = ri[t / 3] + cj[t % 3];
}

/* X' rows for samples [0, nb) of the field x (nb, S, C): xc (nb * S, 9 C) */
static void im2col(const tf_real *restrict x, int64_t nb, int64_t C, int64_t L1, int64_t L2,
                   tf_real *restrict xc) {
  const int64_t S = L1 * L2, K = 9 * C;
  int64_t nbr[9];
  for (int64_t i = 0; i < L1; i++)
    for (int64_t j = 0; j < L2; j++) {
      taps(i, j, L1, L2, nbr);
      for (int64_t n = 0; n < nb; n++) {
        tf_real *restrict row = xc + (n * S + i * L2 + j) * K;
        const tf_real *restrict f = x + n * S * C;
        if (C == 1) /* a flow's first layer: single values, where a memcpy call would dominate */
          for (int t = 0; t < 9; t++) row[t] = f[nbr[t]];
        else
          for (int t = 0; t < 9; t++)
            memcpy(row + t * C, f + nbr[t] * C, (size_t)C * sizeof *row);
      }
    }
}

/* u (nb, S, C) += the adjoint of im2col applied to gc (nb * S, 9 C) */
static void col2im(const tf_real *restrict gc, int64_t nb, int64_t C, int64_t L1, int64_t L2,
                   tf_real *restrict u) {
  const int64_t S = L1 * L2, K = 9 * C;
  int64_t nbr[9];
  for (int64_t i = 0; i < L1; i++)
    for (int64_t j = 0; j < L2; j++) {
      taps(i, j, L1, L2, nbr);
      for (int64_t n = 0; n < nb; n++) {
        const tf_real *restrict row = gc + (n * S + i * L2 + j) * K;
        tf_real *restrict f = u + n * S * C;
        for (int t = 0; t < 9; t++) {
          tf_real *restrict d = f + nbr[t] * C;
          const tf_real *restrict r = row + t * C;
          for (int64_t c = 0; c < C; c++) d[c] += r[c];
        }
      }
    }
}

/* w (Cout, Cin, 3, 3) -> wp (Cout, 9 Cin) in (t, c) column order; inverse: w += wp unpermuted */
static void weights_tc(const tf_real *restrict w, int64_t Cout, int64_t Cin, tf_real *restrict wp) {
  for (int64_t o = 0; o < Cout; o++)
    for (int64_t c = 0; c < Cin; c++)
      for (int t = 0; t < 9; t++) wp[(o * 9 + t) * Cin + c] = w[(o * Cin + c) * 9 + t];
}
static void weights_ct_acc(const tf_real *restrict wp, int64_t Cout, int64_t Cin,
                           tf_real *restrict w) {
  for (int64_t o = 0; o < Cout; o++)
    for (int64_t c = 0; c < Cin; c++)
      for (int t = 0; t < 9; t++) w[(o * Cin + c) * 9 + t] += wp[(o * 9 + t) * Cin + c];
}

enum { CONV_FWD, CONV_T, CONV_W };

/* Samples per chunk for buffers of `per_sample` values each */
static int64_t conv_chunk(int64_t N, int64_t per_sample) {
  int64_t nb = CONV_CHUNK_VALUES / (per_sample > 0 ? per_sample : 1);
  if (nb < 1) nb = 1;
  return nb < N ? nb : N;
}

static tf_tensor *conv_any(tf_ctx *ctx, int kind, tf_tensor *p, tf_tensor *q) {
  CHECK_IN(p);
  CHECK_IN(q);
  static const char *const names[] = {"conv2d_periodic", "conv2d_periodic_t",
                                      "conv2d_periodic_w"};
  char s1[64], s2[64];
  /* p is always a field (N, L1, L2, C); q is w (CONV_FWD, CONV_T) or a field (CONV_W) */
  int ok = p->ndim == 4 && q->ndim == 4;
  if (ok && kind != CONV_W) ok = q->shape[2] == 3 && q->shape[3] == 3;
  if (ok && kind == CONV_FWD) ok = q->shape[1] == p->shape[3];
  if (ok && kind == CONV_T) ok = q->shape[0] == p->shape[3];
  if (ok && kind == CONV_W)
    ok = q->shape[0] == p->shape[0] && q->shape[1] == p->shape[1] && q->shape[2] == p->shape[2];
  if (!ok) {
    tf__fail(ctx, TF_EINVAL, "%s: incompatible shapes %s and %s", names[kind], shp(p, s1),
             shp(q, s2));
    return NULL;
  }
  const int64_t N = p->shape[0], L1 = p->shape[1], L2 = p->shape[2], S = L1 * L2;
  const int64_t Cin = kind == CONV_W ? p->shape[3] : q->shape[1];
  const int64_t Cout = kind == CONV_W ? q->shape[3] : q->shape[0], K = 9 * Cin;
  tf_tensor *y = kind == CONV_FWD ? tf__alloc(ctx, 4, (int64_t[]){N, L1, L2, Cout})
                 : kind == CONV_T ? tf_zeros(ctx, 4, (int64_t[]){N, L1, L2, Cin})
                                  : tf_zeros(ctx, 4, (int64_t[]){Cout, Cin, 3, 3});
  if (!y) return NULL;
  /* scratch: X' or G W' (S K per sample); the permuted weights or their gradient (Cout K) */
  const int64_t nb = conv_chunk(N, S * K);
  tf_real *xc = conv_scratch(ctx, (size_t)(nb * S * K + Cout * K));
  if (!xc) return NULL;
  tf_real *wp = xc + nb * S * K;
  if (kind != CONV_W) weights_tc(q->data, Cout, Cin, wp);
  for (int64_t n0 = 0; n0 < N; n0 += nb) {
    const int64_t m = N - n0 < nb ? N - n0 : nb;
    if (kind == CONV_FWD) { /* x = p, w = q */
      im2col(p->data + n0 * S * Cin, m, Cin, L1, L2, xc);
      if (gemm_rm(ctx, 0, 1, m * S, Cout, K, xc, K, wp, K, y->data + n0 * S * Cout))
        return NULL;
    } else if (kind == CONV_T) { /* g = p (N, L1, L2, Cout), w = q */
      if (gemm_rm(ctx, 0, 0, m * S, K, Cout, p->data + n0 * S * Cout, Cout, wp, K, xc))
        return NULL;
      col2im(xc, m, Cin, L1, L2, y->data + n0 * S * Cin);
    } else { /* x = p, g = q (N, L1, L2, Cout) -> (Cout, Cin, 3, 3) */
      im2col(p->data + n0 * S * Cin, m, Cin, L1, L2, xc);
      if (gemm_rm(ctx, 1, 0, Cout, K, m * S, q->data + n0 * S * Cout, Cout, xc, K, wp))
        return NULL;
      weights_ct_acc(wp, Cout, Cin, y->data);
    }
  }
  tf_tensor *in[2] = {p, q};
  tf_node nd = node0(kind == CONV_FWD ? TF_OP_CONV : kind == CONV_T ? TF_OP_CONV_T : TF_OP_CONV_W,
                     2, in);
  nd.out = y;
  return tf__finish(ctx, &nd);
}

tf_tensor *tf_conv2d_periodic(tf_ctx *ctx, tf_tensor *x, tf_tensor *w) {
  return conv_any(ctx, CONV_FWD, x, w);
}
tf_tensor *tf_conv2d_periodic_t(tf_ctx *ctx, tf_tensor *g, tf_tensor *w) {
  return conv_any(ctx, CONV_T, g, w);
}
tf_tensor *tf_conv2d_periodic_w(tf_ctx *ctx, tf_tensor *x, tf_tensor *g) {
  return conv_any(ctx, CONV_W, x, g);
}

tf_tensor *tf_stop_gradient(tf_ctx *ctx, tf_tensor *x) {
  CHECK_IN(x);
  /* a fresh header over the same data, neither recorded nor carrying a tangent */
  return tf__header(ctx, x->data, x->ndim, x->shape);
}
