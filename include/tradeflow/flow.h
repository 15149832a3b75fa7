/* tradeflow — conditional normalizing flows p(x | c).
 *
 * A flow is a stack of blocks mapping data x (N, D) to latent z (N, D) with
 *   log p(x | c) = log p_base(z | c) + log|det dz/dx|.
 * Block k, in the direction x -> z:
 *   [ActNorm]  y = (x + loc) * exp(log_scale), per feature; log|det| = sum log_scale.
 *              Data-dependent initialisation (tf_flow_data_init) makes the first batch
 *              zero-mean, unit-variance at every ActNorm.
 *   split      x_a (passive, da = D/2 features) and x_b (active, db = D - da) by
 *              - MLP subnets: a fixed random permutation (cfg.permute) or a reversal;
 *              - CONV subnets (lattice fields, D = L1 L2, both even): a checkerboard, block k
 *                keeping the sites with (i + j) % 2 == k % 2 passive.
 *   subnet     theta = NN(x_a, e(c)); MLP: [x_a, e(c)] -> hidden (SiLU) -> ...; CONV: periodic
 *              3x3 convolutions of the field with the active sites zeroed, e(c) entering the
 *              first layer as a per-sample bias, so theta exists per lattice site.
 *   coupling   affine: x_b exp(s) + t, s = k tanh(s_raw / k) (soft clamp), log|det| = sum s;
 *              spline: monotone rational-quadratic spline per active feature (Durkan et al.
 *              2019) with K bins on [-B, B], bin widths and heights by softmax (minimum 1e-3
 *              of the interval), inner knot derivatives by softplus (minimum 1e-3), derivative
 *              1 at +-B and the identity outside (linear tails); inverse by the quadratic
 *              formula.  theta holds 3K - 1 numbers per active feature: K width logits, K
 *              height logits, K - 1 derivative pre-activations.
 * The subnetwork's last layer starts at zero and the spline's derivative pre-activations are
 * offset so that zero means derivative 1: a new flow is the identity map.
 *
 * Condition: c > 0 (a temperature, an inverse temperature, a coupling...) enters as log c
 * through a small embedding MLP shared by all blocks (or raw log c with embed_dim = 0).
 * Conditions are (N, 1) tensors; put a tangent on c (tf_set_tangent) and every output below
 * carries d/dc of itself — d/dc log p(x | c) at fixed x is what TRADE needs.  Spline bin
 * choices are piecewise constant in every input, so these derivatives are exact.
 *
 * Base: N(0, I), or with latent temperature scaling (cfg.base_temperature = 1) N(0, c I) for a
 * temperature c, N(0, I / c) for an inverse temperature (cfg.base_inverse = 1).
 *
 * Sign symmetry (cfg.sign_symmetric): for targets invariant under x -> -x (phi^4's Z2) the
 * flow is the mixture p(x | c) = (q(x | c) + q(-x | c)) / 2 of the bijection's density q and
 * its mirror image.  In a broken phase the target has two well separated modes, which a
 * bijection from a unimodal base can only bridge with a nearly singular Jacobian; the mixture
 * lets q cover one mode.  tf_flow_log_prob evaluates both terms (a second pass over x),
 * tf_flow_sample draws x ~ q and then a fair sign; both are exact, differentiable in the
 * parameters and carry d/dc.  tf_flow_forward / tf_flow_inverse stay the bijection q.
 *
 * Units and conventions: log-densities in nats, per sample, shape (N, 1).
 * Ownership: the flow declares its parameters in the caller's tf_params (which owns them) and
 * owns only its structure; destroy the flow before the params.
 */
#ifndef TRADEFLOW_FLOW_H
#define TRADEFLOW_FLOW_H

#include "tradeflow/model.h"
#include "tradeflow/params.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TF_COUPLING_AFFINE = 0, TF_COUPLING_SPLINE = 1 } tf_coupling_kind;
typedef enum { TF_SUBNET_MLP = 0, TF_SUBNET_CONV = 1 } tf_subnet_kind;

typedef struct {
  int dim;              /* D >= 2 */
  int conditional;      /* 1: p(x | c); 0: p(x) (c arguments ignored, may be NULL) */
  int embed_dim;        /* width of the condition embedding (0: feed log c directly) */
  int n_blocks;         /* coupling blocks */
  int hidden;           /* subnet hidden width */
  int n_hidden;         /* subnet hidden layers (>= 1) */
  double clamp;         /* soft clamp k of s = k tanh(s_raw / k); <= 0: no clamp */
  int permute;          /* 1: a fixed random permutation before each block; 0: reverse order */
  int base_temperature; /* 1: base N(0, c I); 0: N(0, I) */
  int base_inverse;     /* with base_temperature: 1 gives N(0, I / c) (c an inverse
                           temperature, beta), 0 gives N(0, c I) (c a temperature) */
  int subnet_condition; /* 1 (default): e(c) feeds the subnets; 0: c enters only through the
                           base (needs base_temperature = 1): the "latent temperature scaling"
                           baseline, a flow trained at c0 and moved to c by its base alone */
  int coupling;         /* tf_coupling_kind */
  int spline_bins;      /* K >= 2 (spline) */
  double spline_bound;  /* B > 0 (spline): the spline acts on [-B, B] */
  int actnorm;          /* 1: ActNorm at the start of every block */
  int subnet;           /* tf_subnet_kind; CONV needs lattice[0] * lattice[1] == dim */
  int lattice[2];       /* L1, L2 (CONV): x[n, i * L2 + j] is site (i, j); both even */
  int sign_symmetric;   /* 1: the flow's density is p(x | c) = (q(x | c) + q(-x | c)) / 2, q the
                           bijection's; see "Sign symmetry" above */
  uint64_t seed;        /* permutations and initialisation */
} tf_flow_config;

/* Sensible defaults for dimension D: affine coupling, 8 blocks, 2 x 128 SiLU MLP subnets,
 * clamp 2, embedding 16, no ActNorm; spline settings K = 8, B = 5 ready for coupling = spline. */
tf_flow_config tf_flow_defaults(int dim);

typedef struct tf_flow tf_flow;

/* Declares parameters in `params` (which must not be finalized yet).  NULL on error. */
tf_flow *tf_flow_create(const tf_flow_config *cfg, tf_params *params);
void tf_flow_destroy(tf_flow *f);

/* Random initialisation (after tf_params_finalize): He-uniform hidden layers, zero last layer
 * (identity map).  Deterministic in cfg.seed. */
int tf_flow_init(tf_flow *f);

const tf_flow_config *tf_flow_get_config(const tf_flow *f);

/* Data-dependent initialisation of the ActNorm layers from a batch x (N, D), c (N, 1):
 * block by block, each ActNorm is set so its output has zero mean and unit variance per
 * feature over the batch.  Call once, after tf_flow_init and before training (not on resume);
 * a no-op without ActNorm.  Uses the context's arena (reset it afterwards). */
int tf_flow_data_init(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c);

/* x (N, D) -> z (N, D); *logdet (N, 1) = log|det dz/dx|.  c (N, 1) or NULL if unconditional. */
tf_tensor *tf_flow_forward(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c,
                           tf_tensor **logdet);
/* z (N, D) -> x (N, D); *logdet (N, 1) = log|det dx/dz| (= minus the forward one at x). */
tf_tensor *tf_flow_inverse(tf_flow *f, tf_ctx *ctx, tf_tensor *z, tf_tensor *c,
                           tf_tensor **logdet);
/* log p_base(z | c), (N, 1). */
tf_tensor *tf_flow_base_log_prob(tf_flow *f, tf_ctx *ctx, tf_tensor *z, tf_tensor *c);
/* log p(x | c), (N, 1). */
tf_tensor *tf_flow_log_prob(tf_flow *f, tf_ctx *ctx, tf_tensor *x, tf_tensor *c);
/* n samples x ~ p(. | c) (c is (n, 1)); *log_p (N, 1) gets their log-density if not NULL. */
tf_tensor *tf_flow_sample(tf_flow *f, tf_ctx *ctx, tf_tensor *c, int64_t n, tf_rng *rng,
                          tf_tensor **log_p);

/* ---- the coupling flow as a model family (model.h) -----------------------------------------
 * Family "coupling": its [model] keys are the settings above (model.coupling, blocks, hidden,
 * layers, embed, clamp, spline_bins, spline_bound, actnorm, subnet, lattice_l1, lattice_l2,
 * permute, base_temperature, base_scale, subnet_condition, symmetry); encode is the forward
 * map x -> z, decode the inverse. */
extern const tf_model_type tf_model_coupling;

/* A coupling model with its own parameters (tf_model_create of the family); NULL on error. */
tf_model *tf_flow_model_create(const tf_flow_config *cfg);
/* The flow inside a coupling model (owned by it), or NULL for a model of another family. */
tf_flow *tf_flow_of(const tf_model *m);

#ifdef __cplusplus
}
#endif
#endif
