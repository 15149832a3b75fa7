/* arena.c — bump allocator with block chaining and merge-on-reset.
 * Exported: tf_arena_create, tf_arena_destroy, tf_arena_alloc, tf_arena_reset,
 *           tf_arena_get_stats.  Not thread-safe (one arena per context / thread). */
#include <stdint.h>
#include <stdlib.h>

#include "tradeflow/arena.h"
#include "tradeflow/error.h"

typedef struct block {
  struct block *next;
  size_t size, used;
  unsigned char *mem; /* aligned start */
  void *raw;          /* what malloc returned */
} block;

struct tf_arena {
  block *head;    /* current block (allocation happens here) */
  block *chain;   /* older blocks, filled, since the last reset */
  size_t used, high_water, n_sys_alloc;
};

static block *block_new(tf_arena *a, size_t size) {
  block *b = malloc(sizeof *b);
  void *raw = malloc(size + TF_ARENA_ALIGN);
  if (!b || !raw) {
    free(b);
    free(raw);
    tf_error(TF_ENOMEM, "arena: cannot allocate a block of %zu bytes", size);
    return NULL;
  }
  a->n_sys_alloc += 2;
  uintptr_t p = ((uintptr_t)raw + TF_ARENA_ALIGN - 1) & ~(uintptr_t)(TF_ARENA_ALIGN - 1);
  b->raw = raw;
  b->mem = (unsigned char *)p;
  b->size = size;
  b->used = 0;
  b->next = NULL;
  return b;
}

static void block_free(block *b) {
  if (!b) return;
  free(b->raw);
  free(b);
}

tf_arena *tf_arena_create(size_t bytes) {
  tf_arena *a = calloc(1, sizeof *a);
  if (!a) {
    tf_error(TF_ENOMEM, "arena: cannot allocate the arena header");
    return NULL;
  }
  a->n_sys_alloc = 1;
  a->head = block_new(a, bytes ? bytes : (size_t)1 << 20);
  if (!a->head) {
    free(a);
    return NULL;
  }
  return a;
}

void tf_arena_destroy(tf_arena *a) {
  if (!a) return;
  block_free(a->head);
  for (block *b = a->chain, *n; b; b = n) {
    n = b->next;
    block_free(b);
  }
  free(a);
}

void *tf_arena_alloc(tf_arena *a, size_t bytes) {
  size_t need = (bytes + TF_ARENA_ALIGN - 1) & ~(size_t)(TF_ARENA_ALIGN - 1);
  if (need == 0) need = TF_ARENA_ALIGN;
  block *h = a->head;
  if (h->used + need > h->size) {
    /* Chain a new block at least as large as the current one: the number of blocks in one
     * step stays logarithmic, and the next reset merges them. */
    size_t size = h->size > need ? h->size : need;
    block *b = block_new(a, size);
    if (!b) return NULL;
    h->next = a->chain;
    a->chain = h;
    a->head = h = b;
  }
  void *p = h->mem + h->used;
  h->used += need;
  a->used += need;
  if (a->used > a->high_water) a->high_water = a->used;
  return p;
}

void tf_arena_reset(tf_arena *a) {
  if (a->chain) {
    /* More than one block was needed: replace all by one block of the high-water size so
     * that the next step fits without any system allocation. */
    size_t total = a->head->size;
    for (block *b = a->chain; b; b = b->next) total += b->size;
    if (total < a->high_water) total = a->high_water;
    block *nb = block_new(a, total);
    if (nb) {
      block_free(a->head);
      for (block *b = a->chain, *n; b; b = n) {
        n = b->next;
        block_free(b);
      }
      a->head = nb;
      a->chain = NULL;
    }
    /* On allocation failure the chain is kept (freed at the next successful merge or at
     * destroy) and the step continues in the head block. */
  }
  a->head->used = 0;
  a->used = 0;
}

tf_arena_stats tf_arena_get_stats(const tf_arena *a) {
  tf_arena_stats s = {0};
  s.used = a->used;
  s.high_water = a->high_water;
  s.n_sys_alloc = a->n_sys_alloc;
  s.capacity = a->head->size;
  s.n_blocks = 1;
  for (const block *b = a->chain; b; b = b->next) {
    s.capacity += b->size;
    s.n_blocks++;
  }
  return s;
}
