/* tradeflow — evaluating a model against its physics target at a set of conditions: the
 * metrics of DESIGN.md section 4 ("Metrics") into a tf_eval_result (result.h).
 * Nothing here is collective; call from one rank.
 */
#ifndef TRADEFLOW_EVALUATE_H
#define TRADEFLOW_EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include "tradeflow/model.h"
#include "tradeflow/physics.h"
#include "tradeflow/result.h"
#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================ evaluation at one condition =================================
 *
 * tf_eval_condition fills row `row` of a result for the flow p_theta(x | c) against the target
 * q(x | c) of a physics module (DESIGN.md section 4, "Metrics"):
 *   - N samples x ~ p_theta(. | c), drawn in chunks with gradient recording off, latents from
 *     the stream (seed, 0, TF_RNG_LATENT, index); log w = log q - log p_theta.  Samples with a
 *     non-finite x or log p_theta, or a NaN / +inf log w, are dropped and counted
 *     (n_valid = N - dropped; a note says how many);
 *   - Kish ESS/N and log Zhat with bootstrap errors (B resamples, stream (seed, 0,
 *     TF_RNG_USER + 1, index)), the exact log Z and the difference when the module has one;
 *   - every observable reweighted (SNIS, bootstrap error, same resamples) and along an
 *     independence-Metropolis chain over the first imh_n valid samples (uniforms from
 *     (seed, 0, TF_RNG_MCMC, index)), with tau_int per observable and the error
 *     sd sqrt(2 tau / n);
 *   - reference samples: `ref` when given (rows of a reference file at this c, error of the
 *     means with tau_int in file order, since such files are often Markov chains), else n_ref
 *     exact samples when the module has an exact sampler at c (stream (seed, 0,
 *     TF_RNG_USER + 2, index); plain standard errors): the flow's NLL on them and the
 *     observable means;
 *   - KL(p_exact || p_theta) for D = 2 when log Z is known, by the midpoint rule on a
 *     kl_grid x kl_grid grid over the box mean +- 8 sd per axis of the reweighted samples,
 *     widened 1.5x about its centre (up to 10 times) until the exact mass inside is
 *     >= 1 - 1e-6; kl_err = |KL(h) - KL(2h)| from the every-other-point subgrid.
 * Uses ctx (reset on return).  Deterministic in (seed, index) and independent of the chunk
 * size.  `note` (may be NULL) receives warnings ("" if none), separated by "; ", among them
 * one whenever ESS/N < 0.1: below it the error bars of both estimators can be too small. */
typedef struct {
  int64_t n;         /* flow samples (>= 2) */
  int64_t chunk;     /* sampling batch (0: 256; the results do not depend on it) */
  uint64_t seed;
  int64_t imh_n;     /* IMH chain length, <= n (0: no IMH; < 0: all valid samples) */
  int64_t bootstrap; /* resamples B (>= 2) */
  int kl_grid;       /* points per axis (0: no KL) */
  int64_t n_ref;     /* exact reference samples when the module can draw them (0: none) */
} tf_eval_config;

/* Reference samples at the condition, in the module's coordinates (n, D) row-major. */
typedef struct {
  int64_t n;
  const double *x;
} tf_eval_ref;

tf_eval_config tf_eval_defaults(void); /* N 20000, chunk 256, seed 1, IMH all, B 200, grid 400 */

/* r: allocated for >= row + 1 conditions and tf_physics_n_obs(p) + tf_physics_n_derived(p)
 * observables.  Writes column
 * TF_EV_C = c and every other column and table row it can (NaN stays where nothing applies).
 * TF_EINVAL when the flow's dimension is not the module's; the physics error for a c outside
 * the module's range; TF_ENUMERIC when fewer than 2 samples are valid. */
int tf_eval_condition(tf_model *model, tf_ctx *ctx, const tf_physics *p, double c, int64_t index,
                      const tf_eval_config *cfg, const tf_eval_ref *ref, tf_eval_result *r,
                      int64_t row, char *note, size_t note_len);

/* The KL method as a sentence, for the kl_method attribute and the help text. */
const char *tf_eval_kl_method(void);

#ifdef __cplusplus
}
#endif
#endif
