/* test_arena.c — arena allocator: alignment, growth and block reuse, mark and release, and no growth in steady state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tradeflow/arena.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

static void test_alignment_and_zero_size(void **state) {
  (void)state;
  tf_arena *a = tf_arena_create(4096);
  assert_non_null(a);
  void *p0 = tf_arena_alloc(a, 0), *p1 = tf_arena_alloc(a, 0);
  assert_non_null(p0);
  assert_ptr_not_equal(p0, p1);
  for (size_t sz = 1; sz < 300; sz += 37) {
    unsigned char *p = tf_arena_alloc(a, sz);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % TF_ARENA_ALIGN, 0);
    memset(p, 0xab, sz); /* ASan checks the bounds */
  }
  tf_arena_destroy(a);
  tf_arena_destroy(NULL);
}

static void test_growth_and_reuse_after_reset(void **state) {
  (void)state;
  tf_arena *a = tf_arena_create(1024);
  unsigned char *first[50];
  for (int i = 0; i < 50; i++) assert_non_null(first[i] = tf_arena_alloc(a, 1000));
  tf_arena_stats s = tf_arena_get_stats(a);
  assert_true(s.n_blocks > 1);
  assert_true(s.n_blocks <= 8); /* each new block at least doubles the capacity */
  assert_true(s.high_water >= 50 * 1000);
  tf_arena_reset(a);
  s = tf_arena_get_stats(a);
  assert_int_equal(s.used, 0);
  assert_true(s.capacity >= s.high_water);
  const size_t sys = s.n_sys_alloc;
  /* the same workload now runs through the same memory without a system allocation */
  for (int i = 0; i < 50; i++) {
    unsigned char *p = tf_arena_alloc(a, 1000);
    assert_ptr_equal(p, first[i]);
    memset(p, i, 1000);
  }
  assert_int_equal(tf_arena_get_stats(a).n_sys_alloc, sys);
  /* and a larger one after a reset still gets memory */
  tf_arena_reset(a);
  unsigned char *big = tf_arena_alloc(a, 200000);
  assert_non_null(big);
  memset(big, 1, 200000);
  tf_arena_destroy(a);
}

static void test_mark_release(void **state) {
  (void)state;
  tf_arena *a = tf_arena_create(4096);
  unsigned char *keep = tf_arena_alloc(a, 100);
  memset(keep, 7, 100);
  const tf_arena_mark m = tf_arena_mark_get(a);
  const size_t used0 = tf_arena_get_stats(a).used;
  unsigned char *after = tf_arena_alloc(a, 500);
  for (int it = 0; it < 20; it++) {
    /* an iteration that spills over several blocks, then gives everything back */
    for (int i = 0; i < 10; i++) memset(tf_arena_alloc(a, 3000), it, 3000);
    const tf_arena_mark inner = tf_arena_mark_get(a);
    memset(tf_arena_alloc(a, 10000), 1, 10000);
    tf_arena_release(a, inner);
    tf_arena_release(a, m);
    assert_int_equal(tf_arena_get_stats(a).used, used0);
    tf_arena_release(a, inner); /* already released past: ignored */
    assert_int_equal(tf_arena_get_stats(a).used, used0);
    assert_ptr_equal(tf_arena_alloc(a, 500), after); /* the same memory again */
  }
  const tf_arena_stats s = tf_arena_get_stats(a);
  assert_true(s.high_water < 2 * (100 + 500 + 10 * 3072 + 10048)); /* not 20 iterations' worth */
  for (int i = 0; i < 100; i++) assert_int_equal(keep[i], 7);
  tf_arena_destroy(a);
}

/* A realistic training step: MLP forward + backward through the context. */
static double step(tf_ctx *ctx, tf_tensor **p, uint32_t s) {
  tf_ctx_reset(ctx);
  tf_rng r;
  tf_rng_init(&r, 7, 0, TF_RNG_DATA, s);
  tf_tensor *x = tf_new2(ctx, 64, 8);
  tf_rng_fill_normal(&r, x, 0, 1);
  tf_tensor *h = tf_silu(ctx, tf_add(ctx, tf_matmul(ctx, x, p[0], 0, 1), p[1]));
  tf_tensor *y = tf_add(ctx, tf_matmul(ctx, h, p[2], 0, 1), p[3]);
  tf_tensor *loss = tf_mean_all(ctx, tf_square(ctx, y));
  tf_tensor *g[4];
  assert_int_equal(tf_grad(ctx, loss, NULL, 4, p, g, 0), TF_OK);
  for (int i = 0; i < 4; i++)
    for (int64_t k = 0; k < p[i]->n; k++) p[i]->data[k] -= (tf_real)(0.01 * g[i]->data[k]);
  return loss->data[0];
}

static void test_no_growth_over_1000_steps(void **state) {
  (void)state;
  tf_ctx *ctx = tf_ctx_create(4096); /* deliberately small: the first step must grow it */
  assert_non_null(ctx);
  tf_tensor *p[4] = {tf_tensor_create(2, (int64_t[]){32, 8}), tf_tensor_create(1, (int64_t[]){32}),
                     tf_tensor_create(2, (int64_t[]){4, 32}), tf_tensor_create(1, (int64_t[]){4})};
  tf_rng r;
  tf_rng_init(&r, 1, 0, TF_RNG_INIT, 0);
  for (int i = 0; i < 4; i++) {
    tf_rng_fill_normal(&r, p[i], 0, 0.3);
    tf_requires_grad(p[i], 1);
  }
  step(ctx, p, 0);
  step(ctx, p, 1);
  const tf_arena_stats s0 = tf_arena_get_stats(tf_ctx_arena(ctx));
  double first = 0, last = 0;
  for (uint32_t s = 2; s < 1002; s++) {
    double l = step(ctx, p, s);
    if (s == 2) first = l;
    last = l;
  }
  const tf_arena_stats s1 = tf_arena_get_stats(tf_ctx_arena(ctx));
  assert_int_equal(s1.n_sys_alloc, s0.n_sys_alloc);
  assert_int_equal(s1.capacity, s0.capacity);
  assert_int_equal(s1.high_water, s0.high_water);
  assert_true(last < first); /* and the steps did real work */
  for (int i = 0; i < 4; i++) tf_tensor_destroy(p[i]);
  tf_ctx_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alignment_and_zero_size),
      cmocka_unit_test(test_growth_and_reuse_after_reset),
      cmocka_unit_test(test_mark_release),
      cmocka_unit_test(test_no_growth_over_1000_steps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
