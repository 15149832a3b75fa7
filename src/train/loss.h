/* loss.h — private to src/train: the losses beyond plain NLL (TRADE, reverse KL, reweighting).
 *
 * The trainer owns one tf_loss_state when cfg.loss.kind != TF_LOSS_NLL.  Per step it calls
 * tf_loss_prepare (grid refreshes, which reset the context), then builds the data batch and
 * calls tf_loss_terms for the two terms of the step's objective
 *   L = boundary + lambda * extra.
 * Everything random is drawn from Philox streams named by the step, and the running state
 * (grid estimates) is saved with the checkpoint, so resumption stays bit-identical.
 */
#ifndef TRADEFLOW_TRAIN_LOSS_H
#define TRADEFLOW_TRAIN_LOSS_H

#include <stddef.h>

#include "tradeflow/dist.h"
#include "tradeflow/h5io.h"
#include "tradeflow/train.h"

typedef struct tf_loss_state tf_loss_state;

/* Checks the settings against the model (its family's capabilities: TRADE refuses a family
 * without d/dc log p) and the data (have_data: a data set exists). */
int tf_loss_check(const tf_loss_config *cfg, const tf_model *model, int have_data);

/* NULL on error.  seed names the random streams; dist (copied; NULL: serial) the ranks over
 * which the condition range is stratified (loss.c).  tf_loss_prepare is then collective. */
tf_loss_state *tf_loss_create(const tf_loss_config *cfg, tf_model *model, uint64_t seed,
                              const tf_dist *dist);
void tf_loss_destroy(tf_loss_state *ls);

/* Work done before the step's graph (resets ctx): the grid refresh every `refresh` steps;
 * monitor = 1 asks for a refresh now for the progress line only. */
int tf_loss_prepare(tf_loss_state *ls, tf_ctx *ctx, int64_t step, int monitor);

/* The step's terms.  x, c: the data batch (NULL when the loss uses no data).  *boundary and
 * *extra are scalars or NULL; *lambda the weight of extra at this step. */
int tf_loss_terms(tf_loss_state *ls, tf_ctx *ctx, int64_t step, tf_tensor *x, tf_tensor *c,
                  tf_tensor **boundary, tf_tensor **extra, double *lambda);

/* Remember the values of the last step's terms for the progress line (lambda_eff: the weight
 * actually applied, after adaptive scaling). */
void tf_loss_record(tf_loss_state *ls, double boundary, double extra, double lambda_eff);

/* Adaptive weighting: running average of |g_boundary| / |g_extra| (updated by the caller's
 * measurement); returns the factor to apply. */
double tf_loss_adapt(tf_loss_state *ls, double g_boundary, double g_extra);

/* Checkpoint state (extra scalars "loss.*"). */
int tf_loss_save(const tf_loss_state *ls, tf_checkpoint_meta *m);
int tf_loss_load(tf_loss_state *ls, const tf_checkpoint_meta *m);

/* Progress text: the terms and the ESS at c_min, c0 and c_max from the last refresh. */
void tf_loss_summary(const tf_loss_state *ls, char *buf, size_t len);

#endif
