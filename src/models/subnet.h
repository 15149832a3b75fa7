/* subnet.h — private to src/models: the networks inside a model family, as descriptors.
 *
 * A coupling block computes theta = NN(passive features, e(c)) and couples the active
 * features with it.  What NN is — an MLP, periodic 3x3 convolutions on a lattice, and later
 * Bayesian linear layers, an equivariant graph network or a parametrised quantum circuit — is
 * a tf_subnet_type: a const descriptor with hooks, so a new kind is a new entry of the table
 * in subnet.c, not a new branch in the families that use it.
 *
 * A subnet also decides the block's split (which features are passive), because the two go
 * together: an MLP takes any permutation, a convolution needs a checkerboard to keep the
 * passive sites' neighbours active.
 *
 * Shapes: xa (N, da) the passive features in the block's order (perm[0..da)), xl (N, D) the
 * whole state in lattice order (lattice_order subnets only; the active sites are the
 * subnet's to mask), e (N, edim) the condition embedding or NULL.  The output theta is
 * (N, P * db): P numbers per active feature, contiguous per feature, or, with affine_layout,
 * [s (db) | t (db)] (P = 2).
 * Parameters are declared in the caller's tf_params under "<prefix>.W<l>", "<prefix>.b<l>"
 * (and "<prefix>.Wc" for a convolution's condition weights): the checkpoint names.
 */
#ifndef TRADEFLOW_MODELS_SUBNET_H
#define TRADEFLOW_MODELS_SUBNET_H

#include <stdint.h>

#include "tradeflow/params.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

enum { TF_SUBNET_MAX_LAYERS = 16 };

typedef struct {
  int64_t D, da, db;    /* state width, passive and active widths */
  int64_t P;            /* outputs per active feature */
  int affine_layout;    /* theta as [s (db) | t (db)] */
  int64_t edim;         /* width of e(c); 0: none */
  int64_t hidden;       /* hidden width (units or channels) */
  int n_hidden;         /* hidden layers, 1 .. TF_SUBNET_MAX_LAYERS - 1 */
  int lattice[2];       /* L1, L2 for lattice subnets */
  const int64_t *perm;  /* the block's split (D entries, first da passive); borrowed */
} tf_subnet_shape;

typedef struct tf_subnet tf_subnet;

typedef struct tf_subnet_type {
  const char *name;     /* the model.subnet value */
  int lattice_order;    /* 1: reads xl (the state in lattice order), and the block returns the
                           state to lattice order; 0: reads xa */
  /* TF_OK or an error naming what the state width and lattice must satisfy. */
  int (*check)(int64_t D, const int lattice[2]);
  /* Block k's split into perm[0..D): passive first.  permute: a random permutation drawn
   * from r (subnets that allow any split), else a fixed rule. */
  void (*split)(int64_t D, const int lattice[2], int permute, int k, tf_rng *r, int64_t *perm);
  tf_subnet *(*create)(const tf_subnet_shape *sh, tf_params *p, const char *prefix);
  void (*destroy)(tf_subnet *s);
  /* torch's default initialisation, in declaration order, the last layer zero (so that a new
   * flow is the identity) */
  void (*init)(tf_subnet *s, tf_rng *r);
  tf_tensor *(*apply)(tf_subnet *s, tf_ctx *ctx, tf_tensor *xa, tf_tensor *xl, tf_tensor *e);
  /* 1 if a parameter carries a tangent (then no derivative-free fast path applies) */
  int (*has_tangent)(const tf_subnet *s, const tf_ctx *ctx);
  /* Optional fast path: the network on the ready input rows h = [xa | e] (N, da + edim). */
  tf_tensor *(*apply_rows)(tf_subnet *s, tf_ctx *ctx, tf_tensor *h);
} tf_subnet_type;

/* Every subnet instance starts with its type. */
struct tf_subnet {
  const tf_subnet_type *type;
};

/* The registry: TF_SUBNET_MLP = 0, TF_SUBNET_CONV = 1 (flow.h's tf_subnet_kind) index it. */
int tf_subnet_type_count(void);
const tf_subnet_type *tf_subnet_type_at(int kind);
/* The index of the type named `name`, or -1. */
int tf_subnet_kind_of(const char *name);

#endif
