/* subnet.c — the subnetworks of coupling blocks (subnet.h): MLP and periodic convolution.
 *
 * Exported: tf_subnet_type_count, tf_subnet_type_at, tf_subnet_kind_of.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subnet.h"
#include "tradeflow/error.h"

/* Layers of both kinds: W (out, in) as torch.nn.Linear (MLP) or (out, in, 3, 3) (conv),
 * b (out) (MLP) or (1, out, 1, 1) (conv, the checkpoint layout of the channel-major version,
 * used as (out)); Wc (hidden, edim) maps e(c) to the first conv layer's per-sample bias. */
typedef struct {
  tf_subnet base;
  tf_subnet_shape sh;
  int n_layers;
  tf_tensor *W[TF_SUBNET_MAX_LAYERS], *b[TF_SUBNET_MAX_LAYERS], *Wc;
  tf_tensor *passive; /* conv: (1, D) mask, 1 on the passive sites */
} layered;

static tf_tensor *declare(tf_params *p, const char *name, int ndim, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3) {
  const int64_t shape[4] = {d0, d1, d2, d3};
  return tf_params_declare(p, name, ndim, shape);
}

/* Layers 0..n_layers-1 of widths in -> hidden -> ... -> out_last, as "<prefix>.W<l>" and
 * "<prefix>.b<l>": 2-D W and 1-D b (MLP) or 4-D (conv, 3x3 kernels). */
static int declare_layers(layered *n, tf_params *p, const char *prefix, int conv, int64_t in,
                          int64_t out_last) {
  char name[96];
  for (int l = 0; l < n->n_layers; l++) {
    const int64_t out = l + 1 < n->n_layers ? n->sh.hidden : out_last;
    snprintf(name, sizeof name, "%s.W%d", prefix, l);
    n->W[l] = conv ? declare(p, name, 4, out, in, 3, 3) : declare(p, name, 2, out, in, 0, 0);
    snprintf(name, sizeof name, "%s.b%d", prefix, l);
    n->b[l] = conv ? declare(p, name, 4, 1, out, 1, 1) : declare(p, name, 1, out, 0, 0, 0);
    if (!n->W[l] || !n->b[l]) return TF_EINVAL;
    in = out;
  }
  return TF_OK;
}

static void layered_destroy(tf_subnet *s) {
  if (!s) return;
  tf_tensor_destroy(((layered *)s)->passive);
  free(s);
}

/* torch.nn.Linear's and Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b */
static void init_layer(tf_rng *r, tf_tensor *W, tf_tensor *b, int zero) {
  const double fan_in = (double)(W->n / W->shape[0]);
  const double bound = zero ? 0.0 : 1.0 / sqrt(fan_in);
  tf_rng_fill_uniform(r, W, -bound, bound);
  tf_rng_fill_uniform(r, b, -bound, bound);
}

static void layered_init(tf_subnet *s, tf_rng *r) {
  layered *n = (layered *)s;
  for (int l = 0; l < n->n_layers; l++) init_layer(r, n->W[l], n->b[l], l + 1 == n->n_layers);
  if (n->Wc) {
    const double bound = 1.0 / sqrt((double)n->sh.edim);
    tf_rng_fill_uniform(r, n->Wc, -bound, bound);
  }
}

static int layered_has_tangent(const tf_subnet *s, const tf_ctx *ctx) {
  const layered *n = (const layered *)s;
  for (int l = 0; l < n->n_layers; l++)
    if (tf_tangent(ctx, n->W[l]) || tf_tangent(ctx, n->b[l])) return 1;
  return n->Wc && tf_tangent(ctx, n->Wc);
}

/* ---- MLP: [x_a | e(c)] -> hidden (SiLU) -> ... -> theta ------------------------------------ */

static int mlp_check(int64_t D, const int lattice[2]) {
  (void)D;
  (void)lattice;
  return TF_OK;
}

static void mlp_split(int64_t D, const int lattice[2], int permute, int k, tf_rng *r,
                      int64_t *perm) {
  (void)lattice;
  (void)k;
  if (permute)
    tf_rng_permutation(r, perm, D);
  else
    for (int64_t i = 0; i < D; i++) perm[i] = D - 1 - i;
}

static tf_subnet *mlp_create(const tf_subnet_shape *sh, tf_params *p, const char *prefix);

static tf_tensor *mlp_rows(tf_subnet *s, tf_ctx *ctx, tf_tensor *h) {
  const layered *n = (const layered *)s;
  for (int l = 0; l < n->n_layers; l++) {
    h = tf_linear(ctx, h, n->W[l], n->b[l]);
    if (l + 1 < n->n_layers) h = tf_silu(ctx, h);
  }
  return h;
}

static tf_tensor *mlp_apply(tf_subnet *s, tf_ctx *ctx, tf_tensor *xa, tf_tensor *xl,
                            tf_tensor *e) {
  (void)xl;
  return mlp_rows(s, ctx, e ? tf_concat(ctx, 2, (tf_tensor *[]){xa, e}) : xa);
}

static const tf_subnet_type mlp_type = {
    .name = "mlp",
    .lattice_order = 0,
    .check = mlp_check,
    .split = mlp_split,
    .create = mlp_create,
    .destroy = layered_destroy,
    .init = layered_init,
    .apply = mlp_apply,
    .has_tangent = layered_has_tangent,
    .apply_rows = mlp_rows,
};

static tf_subnet *mlp_create(const tf_subnet_shape *sh, tf_params *p, const char *prefix) {
  layered *n = calloc(1, sizeof *n);
  if (!n) {
    tf_error(TF_ENOMEM, "subnet: out of memory");
    return NULL;
  }
  n->base.type = &mlp_type;
  n->sh = *sh;
  n->n_layers = sh->n_hidden + 1;
  if (declare_layers(n, p, prefix, 0, sh->da + sh->edim, sh->P * sh->db) != TF_OK) {
    layered_destroy(&n->base);
    return NULL;
  }
  return &n->base;
}

/* ---- periodic 3x3 convolutions on an L1 x L2 lattice with a checkerboard split -------------- */

static int conv_check(int64_t D, const int lattice[2]) {
  const int L1 = lattice[0], L2 = lattice[1];
  if (L1 < 2 || L2 < 2 || L1 % 2 || L2 % 2 || (int64_t)L1 * L2 != D)
    return tf_error(TF_EINVAL,
                    "flow: conv subnets need an even L1 x L2 lattice with L1 * L2 = dim "
                    "(got %d x %d, dim %lld)", L1, L2, (long long)D);
  return TF_OK;
}

/* block k keeps the sites with (i + j) % 2 == k % 2 passive */
static void conv_split(int64_t D, const int lattice[2], int permute, int k, tf_rng *r,
                       int64_t *perm) {
  (void)permute;
  (void)r;
  int64_t np = 0, na = D / 2;
  for (int i = 0; i < lattice[0]; i++)
    for (int j = 0; j < lattice[1]; j++) {
      const int64_t site = (int64_t)i * lattice[1] + j;
      if ((i + j) % 2 == k % 2) perm[np++] = site;
      else perm[na++] = site;
    }
}

static tf_subnet *conv_create(const tf_subnet_shape *sh, tf_params *p, const char *prefix);

/* channels-last fields (N, L1, L2, C) throughout (see tf_conv2d_periodic) */
static tf_tensor *conv_apply(tf_subnet *s, tf_ctx *ctx, tf_tensor *xa, tf_tensor *xl,
                             tf_tensor *e) {
  (void)xa;
  const layered *n = (const layered *)s;
  if (!xl) return NULL;
  const int64_t N = xl->shape[0], L1 = n->sh.lattice[0], L2 = n->sh.lattice[1];
  const int64_t D = n->sh.D, H = n->sh.hidden, P = n->sh.P;
  tf_tensor *h = tf_reshape(ctx, tf_mul(ctx, xl, n->passive), 4, (int64_t[]){N, L1, L2, 1});
  for (int l = 0; l < n->n_layers; l++) {
    const int64_t C = n->b[l]->n;
    h = tf_add(ctx, tf_conv2d_periodic(ctx, h, n->W[l]), tf_reshape(ctx, n->b[l], 1, &C));
    if (l == 0 && e)
      h = tf_add(ctx, h, tf_reshape(ctx, tf_matmul(ctx, e, n->Wc, 0, 1), 4,
                                    (int64_t[]){N, 1, 1, H}));
    if (l + 1 < n->n_layers) h = tf_silu(ctx, h);
  }
  /* (N, L1 L2, P) -> the active sites, in the block's order: (N, db, P), the per-feature
   * layout; the affine coupling wants [s (db) | t (db)] */
  h = tf_gather(ctx, tf_reshape(ctx, h, 3, (int64_t[]){N, D, P}), 1, n->sh.perm + n->sh.da,
                n->sh.db);
  if (n->sh.affine_layout) h = tf_transpose(ctx, h);
  return tf_reshape(ctx, h, 2, (int64_t[]){N, P * n->sh.db});
}

static const tf_subnet_type conv_type = {
    .name = "conv",
    .lattice_order = 1,
    .check = conv_check,
    .split = conv_split,
    .create = conv_create,
    .destroy = layered_destroy,
    .init = layered_init,
    .apply = conv_apply,
    .has_tangent = layered_has_tangent,
};

static tf_subnet *conv_create(const tf_subnet_shape *sh, tf_params *p, const char *prefix) {
  layered *n = calloc(1, sizeof *n);
  if (!n) goto oom;
  n->base.type = &conv_type;
  n->sh = *sh;
  n->n_layers = sh->n_hidden + 1;
  n->passive = tf_tensor_create(2, (int64_t[]){1, sh->D});
  if (!n->passive) goto oom;
  for (int64_t i = 0; i < sh->da; i++) n->passive->data[sh->perm[i]] = 1;
  if (declare_layers(n, p, prefix, 1, 1, sh->P) != TF_OK) goto fail;
  char name[96];
  if (sh->edim) {
    snprintf(name, sizeof name, "%s.Wc", prefix);
    n->Wc = declare(p, name, 2, sh->hidden, sh->edim, 0, 0);
    if (!n->Wc) goto fail;
  }
  return &n->base;
oom:
  tf_error(TF_ENOMEM, "subnet: out of memory");
fail:
  if (n) layered_destroy(&n->base);
  return NULL;
}

/* ---- registry ------------------------------------------------------------------------------ */

static const tf_subnet_type *const types[] = {&mlp_type, &conv_type};

int tf_subnet_type_count(void) { return (int)(sizeof types / sizeof types[0]); }

const tf_subnet_type *tf_subnet_type_at(int kind) {
  return kind >= 0 && kind < tf_subnet_type_count() ? types[kind] : NULL;
}

int tf_subnet_kind_of(const char *name) {
  for (int i = 0; i < tf_subnet_type_count(); i++)
    if (!strcmp(types[i]->name, name)) return i;
  return -1;
}
