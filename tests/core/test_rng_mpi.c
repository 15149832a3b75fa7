/* test_rng_mpi.c — every rank draws its own stream: all ranks' streams differ, and a rank's
 * stream is what a single process computes for that rank's name. */
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#define TF_TEST_MPI
#include "testutil.h"

#include "tradeflow/rng.h"

enum { NW = 1024 };

static void test_ranks_draw_distinct_streams(void **state) {
  (void)state;
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  uint32_t mine[NW];
  tf_rng r;
  tf_rng_init(&r, 77, (uint32_t)rank, TF_RNG_DATA, 3);
  for (int i = 0; i < NW; i++) mine[i] = tf_rng_u32(&r);
  uint32_t *all = malloc(sizeof(uint32_t) * NW * (size_t)size);
  assert_non_null(all);
  MPI_Allgather(mine, NW, MPI_UINT32_T, all, NW, MPI_UINT32_T, MPI_COMM_WORLD);
  for (int q = 0; q < size; q++) {
    tf_rng ref;
    tf_rng_init(&ref, 77, (uint32_t)q, TF_RNG_DATA, 3);
    for (int i = 0; i < NW; i++) assert_int_equal(all[q * NW + i], tf_rng_u32(&ref));
    for (int p = 0; p < q; p++) {
      int eq = 0;
      for (int i = 0; i < NW; i++) eq += all[p * NW + i] == all[q * NW + i];
      assert_true(eq <= 1);
    }
  }
  free(all);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ranks_draw_distinct_streams),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  /* any failing rank fails the job */
  return tf_test_mpi_finish(rc);
}
