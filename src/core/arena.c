/* arena.c — bump allocator over a list of blocks that are kept and reused in order.
 * Exported: tf_arena_create, tf_arena_destroy, tf_arena_alloc, tf_arena_reset,
 *           tf_arena_mark_get, tf_arena_release, tf_arena_get_stats.
 * Not thread-safe (one arena per context / thread).
 *
 * Why blocks are reused rather than merged: the first version merged a step's blocks into one
 * of the high-water size at reset.  That malloc returned fresh pages, so the second step paid
 * the first-touch page faults of the whole step again, and on this project's virtual
 * machines a fault costs ~25 us: sampling a D = 1024 lattice flow spent seconds in them.
 * Kept blocks stay mapped, and since a step allocates the same sequence of sizes every time,
 * it walks the same blocks without any system allocation from the second step on. */
#include <stdint.h>
#include <stdlib.h>

#include "tradeflow/arena.h"
#include "tradeflow/error.h"

typedef struct {
  size_t size, used;
  unsigned char *mem; /* aligned start */
  void *raw;          /* what malloc returned */
} block;

struct tf_arena {
  block *b;                /* blocks in the order a step fills them */
  size_t nb, cap_b;        /* blocks held, slots in b */
  size_t cur;              /* the block allocation happens in */
  size_t used, high_water; /* bytes handed out since the last reset, and the most ever */
  size_t capacity, n_sys_alloc;
};

/* Insert a new block of `size` bytes at position `at`. */
static int block_insert(tf_arena *a, size_t at, size_t size) {
  if (a->nb == a->cap_b) {
    const size_t cap = a->cap_b ? 2 * a->cap_b : 8;
    block *nbv = realloc(a->b, cap * sizeof *nbv);
    if (!nbv) return tf_error(TF_ENOMEM, "arena: cannot grow the block list to %zu", cap);
    a->b = nbv;
    a->cap_b = cap;
    a->n_sys_alloc++;
  }
  void *raw = malloc(size + TF_ARENA_ALIGN);
  if (!raw) return tf_error(TF_ENOMEM, "arena: cannot allocate a block of %zu bytes", size);
  a->n_sys_alloc++;
  for (size_t i = a->nb; i > at; i--) a->b[i] = a->b[i - 1];
  const uintptr_t p = ((uintptr_t)raw + TF_ARENA_ALIGN - 1) & ~(uintptr_t)(TF_ARENA_ALIGN - 1);
  a->b[at] = (block){size, 0, (unsigned char *)p, raw};
  a->nb++;
  a->capacity += size;
  return TF_OK;
}

tf_arena *tf_arena_create(size_t bytes) {
  tf_arena *a = calloc(1, sizeof *a);
  if (!a) {
    tf_error(TF_ENOMEM, "arena: cannot allocate the arena header");
    return NULL;
  }
  a->n_sys_alloc = 1;
  if (block_insert(a, 0, bytes ? bytes : (size_t)1 << 20) != TF_OK) {
    tf_arena_destroy(a);
    return NULL;
  }
  return a;
}

void tf_arena_destroy(tf_arena *a) {
  if (!a) return;
  for (size_t i = 0; i < a->nb; i++) free(a->b[i].raw);
  free(a->b);
  free(a);
}

void *tf_arena_alloc(tf_arena *a, size_t bytes) {
  size_t need = (bytes + TF_ARENA_ALIGN - 1) & ~(size_t)(TF_ARENA_ALIGN - 1);
  if (need == 0) need = TF_ARENA_ALIGN;
  block *h = &a->b[a->cur];
  if (h->used + need > h->size) {
    /* Move on to the next kept block; a block too small for this request is passed over
     * (the same request passes it over at every step, so nothing new is allocated).  None
     * left: a new block at least as large as all held so far, so that their number stays
     * logarithmic in the high-water mark. */
    size_t j = a->cur + 1;
    while (j < a->nb && a->b[j].size < need) a->b[j++].used = 0;
    if (j == a->nb) {
      const size_t size = a->capacity > need ? a->capacity : need;
      if (block_insert(a, j, size) != TF_OK) return NULL;
    }
    a->cur = j;
    h = &a->b[j];
    h->used = 0;
  }
  void *p = h->mem + h->used;
  h->used += need;
  a->used += need;
  if (a->used > a->high_water) a->high_water = a->used;
  return p;
}

void tf_arena_reset(tf_arena *a) {
  a->cur = 0;
  a->b[0].used = 0;
  a->used = 0;
}

tf_arena_mark tf_arena_mark_get(const tf_arena *a) {
  return (tf_arena_mark){a->cur, a->b[a->cur].used, a->used};
}

void tf_arena_release(tf_arena *a, tf_arena_mark m) {
  if (m.block > a->cur || (m.block == a->cur && m.offset > a->b[a->cur].used)) return;
  a->cur = m.block;
  a->b[m.block].used = m.offset;
  a->used = m.used;
}

tf_arena_stats tf_arena_get_stats(const tf_arena *a) {
  tf_arena_stats s = {0};
  s.used = a->used;
  s.high_water = a->high_water;
  s.n_sys_alloc = a->n_sys_alloc;
  s.capacity = a->capacity;
  s.n_blocks = a->nb;
  return s;
}
