/* tradeflow — arena (bump) allocator for per-step scratch.
 *
 * A training step allocates every temporary tensor, tape node and gradient from one arena and
 * releases them all at once with tf_arena_reset().  The arena never returns memory to the
 * system before destroy.  If a step needs more than the current block, the next block is
 * added (one malloc); blocks are kept across resets and filled again in the same order, so
 * from the second step of a fixed-size computation on, a step performs no malloc and touches
 * no fresh page.  A mark and release pair frees what was allocated after the mark (stack
 * discipline), for loops whose intermediates die within one iteration.
 *
 * Ownership: the arena owns all memory it hands out; pointers are invalid after reset/destroy.
 * Alignment: every allocation is aligned to TF_ARENA_ALIGN bytes (one cache line, enough for
 * any SIMD load).
 */
#ifndef TRADEFLOW_ARENA_H
#define TRADEFLOW_ARENA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TF_ARENA_ALIGN 64

typedef struct tf_arena tf_arena;

/* Create an arena with an initial block of `bytes` (0 picks a default of 1 MiB).  NULL on
 * allocation failure (message in tf_errmsg()). */
tf_arena *tf_arena_create(size_t bytes);
void tf_arena_destroy(tf_arena *a); /* NULL is harmless */

/* Uninitialised, aligned memory; NULL (with message) if the system is out of memory.
 * Zero-size requests return a valid unique pointer. */
void *tf_arena_alloc(tf_arena *a, size_t bytes);

/* Release everything allocated since creation or the last reset. */
void tf_arena_reset(tf_arena *a);

/* A position in the arena.  tf_arena_release(a, m) releases everything allocated after m was
 * taken; pointers handed out after it are then invalid, those before stay valid.  Marks
 * must have been taken since the last reset and are released innermost first (stack order);
 * a mark that lies beyond the current position is ignored, but one taken before a release
 * that went past it and then reached again by new allocations would free those: don't. */
typedef struct {
  size_t block, offset, used;
} tf_arena_mark;
tf_arena_mark tf_arena_mark_get(const tf_arena *a);
void tf_arena_release(tf_arena *a, tf_arena_mark m);

/* Statistics for tests and diagnostics. */
typedef struct {
  size_t used;        /* bytes handed out since the last reset (including alignment) */
  size_t capacity;    /* bytes in all blocks currently held */
  size_t high_water;  /* largest `used` seen at any time */
  size_t n_blocks;    /* blocks currently held */
  size_t n_sys_alloc; /* calls to malloc made over the arena's lifetime */
} tf_arena_stats;

tf_arena_stats tf_arena_get_stats(const tf_arena *a);

#ifdef __cplusplus
}
#endif
#endif
