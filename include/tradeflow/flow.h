/* tradeflow — conditional normalizing flows p(x | c).
 *
 * A flow is a stack of blocks, each [fixed permutation] -> coupling, mapping data x (N, D) to
 * latent z (N, D) with  log p(x | c) = log p_base(z | c) + log|det dz/dx|.
 *
 * Coupling (DESIGN.md section 3): x = [x_a, x_b] with x_a the first D/2 features after the
 * block's permutation; (s_raw, t) = NN([x_a, e(c)]); s = k tanh(s_raw / k) (soft clamp);
 * z_b = x_b exp(s) + t; log|det| = sum s.  The subnetwork's last layer starts at zero, so a
 * new flow is the identity.
 *
 * Condition: c > 0 (a temperature, an inverse temperature, a coupling...) enters as log c
 * through a small embedding MLP shared by all blocks, concatenated to every subnet input.
 * Conditions are (N, 1) tensors; put a tangent on c (tf_set_tangent) and every output below
 * carries d/dc of itself — d/dc log p(x | c) at fixed x is what TRADE needs.
 *
 * Base: N(0, I), or N(0, c I) with latent temperature scaling (cfg.base_temperature = 1).
 *
 * Units and conventions: log-densities in nats, per sample, shape (N, 1).
 * Ownership: the flow declares its parameters in the caller's tf_params (which owns them) and
 * owns only its structure; destroy the flow before the params.
 */
#ifndef TRADEFLOW_FLOW_H
#define TRADEFLOW_FLOW_H

#include "tradeflow/params.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

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
  uint64_t seed;        /* permutations and initialisation */
} tf_flow_config;

/* Sensible defaults for dimension D (8 blocks, 2 x 128 SiLU subnets, clamp 2, embedding 16). */
tf_flow_config tf_flow_defaults(int dim);

typedef struct tf_flow tf_flow;

/* Declares parameters in `params` (which must not be finalized yet).  NULL on error. */
tf_flow *tf_flow_create(const tf_flow_config *cfg, tf_params *params);
void tf_flow_destroy(tf_flow *f);

/* Random initialisation (after tf_params_finalize): He-uniform hidden layers, zero last layer
 * (identity map).  Deterministic in cfg.seed. */
int tf_flow_init(tf_flow *f);

const tf_flow_config *tf_flow_get_config(const tf_flow *f);

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

#ifdef __cplusplus
}
#endif
#endif
