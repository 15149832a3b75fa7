/* params.c — parameter slabs.
 * Exported: tf_params_create/destroy/declare/finalize/count/size/tensor/name/offset/find,
 *           tf_params_values, tf_params_grads, tf_params_backward, tf_params_grad_norm. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tradeflow/error.h"
#include "tradeflow/params.h"

enum { NAME_MAX_LEN = 64, ALIGN_ELEMS = 16 };

typedef struct {
  char name[NAME_MAX_LEN];
  tf_tensor *t;
  int64_t offset;
} entry;

struct tf_params {
  entry *e;
  int n, cap;
  int64_t size;
  tf_real *values, *grads;
  void *raw_values, *raw_grads;
  int final;
};

tf_params *tf_params_create(void) {
  tf_params *p = calloc(1, sizeof *p);
  if (!p) tf_error(TF_ENOMEM, "tf_params_create: out of memory");
  return p;
}

void tf_params_destroy(tf_params *p) {
  if (!p) return;
  for (int i = 0; i < p->n; i++) free(p->e[i].t);
  free(p->e);
  free(p->raw_values);
  free(p->raw_grads);
  free(p);
}

tf_tensor *tf_params_declare(tf_params *p, const char *name, int ndim, const int64_t *shape) {
  if (p->final) {
    tf_error(TF_EINVAL, "tf_params_declare('%s'): parameters are already finalized", name);
    return NULL;
  }
  if (!name || !*name || strlen(name) >= NAME_MAX_LEN) {
    tf_error(TF_EINVAL, "tf_params_declare: name must have 1..%d characters", NAME_MAX_LEN - 1);
    return NULL;
  }
  if (tf_params_find(p, name)) {
    tf_error(TF_EINVAL, "tf_params_declare: parameter '%s' declared twice", name);
    return NULL;
  }
  int64_t n = 1;
  if (ndim < 1 || ndim > TF_MAX_DIM) n = 0;
  for (int i = 0; n && i < ndim; i++) n = shape[i] >= 1 ? n * shape[i] : 0;
  if (!n) {
    tf_error(TF_EINVAL, "tf_params_declare('%s'): invalid shape", name);
    return NULL;
  }
  if (p->n == p->cap) {
    int cap = p->cap ? 2 * p->cap : 16;
    entry *e = realloc(p->e, (size_t)cap * sizeof *e);
    if (!e) {
      tf_error(TF_ENOMEM, "tf_params_declare: out of memory");
      return NULL;
    }
    p->e = e;
    p->cap = cap;
  }
  tf_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    tf_error(TF_ENOMEM, "tf_params_declare: out of memory");
    return NULL;
  }
  t->ndim = ndim;
  for (int i = 0; i < TF_MAX_DIM; i++) t->shape[i] = i < ndim ? shape[i] : 1;
  t->n = n;
  t->flags = TF_TENSOR_REQUIRES_GRAD | TF_TENSOR_EXTERNAL;
  entry *en = &p->e[p->n++];
  snprintf(en->name, sizeof en->name, "%s", name);
  en->t = t;
  en->offset = p->size;
  p->size += (n + ALIGN_ELEMS - 1) / ALIGN_ELEMS * ALIGN_ELEMS; /* keep every view aligned */
  return t;
}

static tf_real *aligned_zeros(int64_t n, void **raw) {
  *raw = calloc((size_t)n * sizeof(tf_real) + 64, 1);
  if (!*raw) return NULL;
  return (tf_real *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
}

int tf_params_finalize(tf_params *p) {
  if (p->final) return TF_OK;
  const int64_t n = p->size ? p->size : 1;
  p->values = aligned_zeros(n, &p->raw_values);
  p->grads = aligned_zeros(n, &p->raw_grads);
  if (!p->values || !p->grads)
    return tf_error(TF_ENOMEM, "tf_params_finalize: cannot allocate %lld parameters",
                    (long long)p->size);
  for (int i = 0; i < p->n; i++) p->e[i].t->data = p->values + p->e[i].offset;
  p->final = 1;
  return TF_OK;
}

int tf_params_count(const tf_params *p) { return p->n; }
int64_t tf_params_size(const tf_params *p) { return p->size; }
tf_tensor *tf_params_tensor(const tf_params *p, int i) { return p->e[i].t; }
const char *tf_params_name(const tf_params *p, int i) { return p->e[i].name; }
int64_t tf_params_offset(const tf_params *p, int i) { return p->e[i].offset; }
tf_real *tf_params_values(tf_params *p) { return p->values; }
tf_real *tf_params_grads(tf_params *p) { return p->grads; }

tf_tensor *tf_params_find(const tf_params *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (!strcmp(p->e[i].name, name)) return p->e[i].t;
  return NULL;
}

int tf_params_backward(tf_params *p, tf_ctx *ctx, tf_tensor *loss) {
  if (!p->final) return tf_error(TF_EINVAL, "tf_params_backward: parameters not finalized");
  if (!loss) return tf_ctx_status(ctx) ? tf_ctx_status(ctx) : tf_error(TF_EINVAL, "loss is NULL");
  if (loss->n != 1) return tf_error(TF_EINVAL, "tf_params_backward: loss is not a scalar");
  tf_tensor **wrt = tf_arena_alloc(tf_ctx_arena(ctx), (size_t)p->n * 2 * sizeof *wrt);
  if (!wrt) return tf_error(TF_ENOMEM, "tf_params_backward: out of memory");
  tf_tensor **g = wrt + p->n;
  for (int i = 0; i < p->n; i++) wrt[i] = p->e[i].t;
  int st = tf_grad(ctx, loss, NULL, p->n, wrt, g, 0);
  if (st != TF_OK) return st;
  memset(p->grads, 0, (size_t)p->size * sizeof(tf_real));
  for (int i = 0; i < p->n; i++)
    memcpy(p->grads + p->e[i].offset, g[i]->data, (size_t)g[i]->n * sizeof(tf_real));
  return TF_OK;
}

double tf_params_grad_norm(const tf_params *p) {
  double s = 0;
  for (int64_t i = 0; i < p->size; i++) s += (double)p->grads[i] * (double)p->grads[i];
  return isfinite(s) ? sqrt(s) : NAN;
}
