/* tradeflow — model families behind one descriptor (DESIGN.md section 11).
 *
 * A family (coupling flow, free-form flow, Gaussianization...) is a const tf_model_type: a
 * name, its [model] config keys, capability flags and hooks.  An instance, tf_model, owns its
 * parameter slab (tf_params) and the family's state.  The trainer, the losses, the evaluator
 * and the command line see only tf_model, so a family plugs in by defining a type and
 * registering it; nothing above this header names a family.
 *
 * Life cycle:
 *   const tf_model_type *t = tf_model_type_find("coupling");
 *   tf_model *m = tf_model_create(t, &spec);     ...declares and allocates the parameters
 *   tf_model_init(m);                            ...random initialisation (not on resume)
 *   ...tf_model_log_prob / tf_model_sample / tf_trainer_create(cfg, m, data)...
 *   tf_model_destroy(m);
 * or, from a loaded config, tf_model_from_config(cfg, data_dim, &m).
 *
 * Conventions shared by every family: x (N, D) and c (N, 1) tensors in the network precision
 * (c NULL for an unconditional model); log-densities in nats per sample, (N, 1).  A model with
 * TF_MODEL_DC carries d/dc through log_prob and sample when c has a tangent (tf_set_tangent),
 * which is what TRADE needs.
 *
 * Config: every run config has the common [model] keys of tf_model_common_keys (name,
 * family, dim, conditional, seed); a family adds its own (tf_model_type.keys, section
 * "model").  tf_model_schema() puts the two together; `family = coupling` is the default, so
 * a config or checkpoint written before families existed means a coupling flow.
 * docs/ARCHITECTURE.md says how to add a family.
 *
 * Nothing here is collective.  Errors: functions returning int give TF_OK or a status with a
 * message in tf_errmsg(); functions returning pointers give NULL and set the message (tensor
 * hooks: the context's status).
 */
#ifndef TRADEFLOW_MODEL_H
#define TRADEFLOW_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tradeflow/config.h"
#include "tradeflow/params.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Capability flags of a family (tf_model_type.caps). */
enum {
  TF_MODEL_LOG_PROB = 1u << 0,  /* exact log p(x | c) (log_prob) */
  TF_MODEL_DC = 1u << 1,        /* log_prob and sample carry d/dc under a tangent: TRADE */
  TF_MODEL_SAMPLE = 1u << 2,    /* sample, reparametrised: x and log p differentiable in the
                                   parameters (reverse KL, TRADE's flow samples) */
  TF_MODEL_GRADIENT = 1u << 3,  /* trained by gradient steps on train_term */
  TF_MODEL_LAYERWISE = 1u << 4, /* fitted layer by layer (fit_layer), no backpropagation */
  TF_MODEL_LATENT = 1u << 5     /* latent dimension < data dimension (encode/decode) */
};

/* Samples in memory: x (n, d) row-major and their conditions c (n), or the one condition c0
 * for all rows when c is NULL (ignored by an unconditional model).  Borrowed views. */
typedef struct {
  int64_t n, d;
  const double *x;
  const double *c;
  double c0;
} tf_dataset;

/* Settings every family shares, read from the common keys. */
typedef struct {
  int64_t dim;     /* D of x (model.dim, or the data's when that is 0) */
  int conditional; /* 1: p(x | c) */
  uint64_t seed;   /* initialisation and any fixed random structure */
} tf_model_common;

/* What a training step tells train_term, so that a family drawing random numbers (Hutchinson
 * vectors, noise) can name its streams and stay reproducible and resumable: stream
 * (seed, rank, TF_RNG_MODEL, step). */
typedef struct {
  uint64_t seed;
  int rank;
  int64_t step;
} tf_model_step;

typedef struct tf_model tf_model;

typedef struct tf_model_type {
  const char *name; /* model.family value: lower case, no spaces */
  const char *help; /* one line */
  const tf_cfg_key *keys; /* the family's own keys, all in section "model" */
  int n_keys;
  unsigned caps;    /* TF_MODEL_* */
  size_t spec_size; /* bytes of the family's settings struct (configure's and create's spec) */

  /* Settings from a loaded config (its [model] keys) into spec (spec_size bytes, zeroed);
   * common already read.  Messages name the key and where it was set (tf_config_where). */
  int (*configure)(const tf_config *cfg, const tf_model_common *common, void *spec);
  /* Build the structure and declare the parameters in tf_model_params(m) (not finalized yet);
   * set the shape (tf_model_set_shape) and the state (tf_model_set_state). */
  int (*create)(tf_model *m, const void *spec);
  void (*destroy)(tf_model *m); /* free the state; NULL: free(state) */
  /* Random initialisation after the parameters are allocated; deterministic in the seed. */
  int (*init)(tf_model *m);
  /* Optional: data-dependent initialisation from the first batch (ActNorm); before training,
   * not on resume.  May use and must leave ctx's arena for the caller to reset. */
  int (*data_init)(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c);
  /* log p(x | c), (N, 1) (TF_MODEL_LOG_PROB). */
  tf_tensor *(*log_prob)(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c);
  /* n samples x ~ p(. | c), (n, D); *log_p (n, 1) their log-density if log_p is not NULL
   * (TF_MODEL_SAMPLE). */
  tf_tensor *(*sample)(tf_model *m, tf_ctx *ctx, tf_tensor *c, int64_t n, tf_rng *rng,
                       tf_tensor **log_p);
  /* Optional: the scalar a gradient step minimises on a batch (x, c); NULL: -mean log p. */
  tf_tensor *(*train_term)(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c,
                           const tf_model_step *st);
  /* Optional (TF_MODEL_LAYERWISE): fit layer `layer` on the data pushed through the layers
   * before it. */
  int (*fit_layer)(tf_model *m, tf_ctx *ctx, const tf_dataset *data, int layer);
  /* Optional: x (N, D) -> z (N, latent), z -> x. */
  tf_tensor *(*encode)(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c);
  tf_tensor *(*decode)(tf_model *m, tf_ctx *ctx, tf_tensor *z, tf_tensor *c);
  /* Optional: a short description for progress headers ("affine coupling, 8 blocks"). */
  void (*describe)(const tf_model *m, char *buf, size_t len);
} tf_model_type;

/* ---- the registry ------------------------------------------------------------------------ */

/* The built-in families and those added with tf_model_register, in registration order. */
int tf_model_type_count(void);
const tf_model_type *tf_model_type_at(int i);
/* NULL with a message listing the known families when `name` is not one. */
const tf_model_type *tf_model_type_find(const char *name);
/* Adds a family (for a program or test that brings its own; the type must outlive every
 * model).  TF_EINVAL for a duplicate name, an incomplete type or a full registry. */
int tf_model_register(const tf_model_type *t);

/* The common [model] keys (name, family, dim, conditional, seed). */
extern const tf_cfg_key tf_model_common_keys[];
extern const int tf_model_common_n;

/* The [model] schema of family `t` into out[0..max): the common keys but the seed, t's keys,
 * then the seed (the order of the [model] section of configs written before families existed,
 * which tf_config_text follows).  Returns the count, or -1 if max is too small. */
int tf_model_schema(const tf_model_type *t, tf_cfg_key *out, int max);

/* The family a config names in [model] family, read without a schema from config text
 * (NULL: none) and --set overrides (as tf_config_load takes them): "coupling" when it names
 * none.  The name is copied to out (len bytes). */
void tf_model_family_of(const char *text, int n_set, const char *const *set, char *out,
                        size_t len);

/* ---- instances --------------------------------------------------------------------------- */

/* A model of family t from its settings (t->spec_size bytes): structure built, parameters
 * declared and allocated (zero).  NULL on error. */
tf_model *tf_model_create(const tf_model_type *t, const void *spec);
/* The family named by cfg's model.family, configured from cfg (loaded with that family's
 * schema) for data of data_dim columns (0: none at hand, model.dim must be set). */
int tf_model_from_config(const tf_config *cfg, int64_t data_dim, tf_model **out);
void tf_model_destroy(tf_model *m); /* NULL is harmless */

int tf_model_init(tf_model *m);
/* A no-op for families without data_init. */
int tf_model_data_init(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c);
tf_tensor *tf_model_log_prob(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c);
tf_tensor *tf_model_sample(tf_model *m, tf_ctx *ctx, tf_tensor *c, int64_t n, tf_rng *rng,
                           tf_tensor **log_p);
/* The family's train_term, or -mean log p(x | c) when it has none; a scalar tensor. */
tf_tensor *tf_model_train_term(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c,
                               const tf_model_step *st);
int tf_model_fit_layer(tf_model *m, tf_ctx *ctx, const tf_dataset *data, int layer);
tf_tensor *tf_model_encode(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c);
tf_tensor *tf_model_decode(tf_model *m, tf_ctx *ctx, tf_tensor *z, tf_tensor *c);

const tf_model_type *tf_model_type_of(const tf_model *m);
const char *tf_model_family(const tf_model *m);
unsigned tf_model_caps(const tf_model *m);
int tf_model_dim(const tf_model *m);
int tf_model_latent_dim(const tf_model *m);
int tf_model_conditional(const tf_model *m);
tf_params *tf_model_params(const tf_model *m); /* owned by the model */
/* "affine coupling, 8 blocks" (the family's describe) or the family name. */
void tf_model_describe(const tf_model *m, char *buf, size_t len);
/* TF_OK if the model has every flag in caps; else TF_EUNSUP with a message naming `who`,
 * the family and what it lacks ("loss trade: model family 'x' has no d/dc log p(x | c)"). */
int tf_model_require(const tf_model *m, unsigned caps, const char *who);

/* For family implementations (create, hooks). */
void *tf_model_state(const tf_model *m);
void tf_model_set_state(tf_model *m, void *state);
void tf_model_set_shape(tf_model *m, int dim, int latent_dim, int conditional);

/* ---- what every family gets for free ------------------------------------------------------ */

/* log p(x_i | c_i) (nats) of rows[0..n) of a data set (rows NULL: rows 0..n-1) into
 * log_p[0..n), in chunks with recording off; resets ctx.  A non-finite density is returned
 * as is (the caller decides); TF_OK or the context's error. */
int tf_dataset_log_prob(tf_model *m, tf_ctx *ctx, const tf_dataset *data, const int64_t *rows,
                        int64_t n, double *log_p);

/* n samples x ~ p_theta(. | c) into x (n, D) (double) and log p_theta into log_p (n), drawn
 * from rng in order in pieces of `chunk` rows, at most max(1, 16384 / D), with recording off
 * (small pieces keep the intermediates in cache; the values do not depend on chunk); resets
 * ctx.  c is ignored by an unconditional model.  TF_OK or the context's error, with a message
 * naming c. */
int tf_model_draw(tf_model *m, tf_ctx *ctx, double c, int64_t n, int64_t chunk, tf_rng *rng,
                  double *x, double *log_p);

/* x (n, D) and c (n, 1) (NULL for an unconditional model) tensors of rows[0..n) of a data set,
 * or of rows first..first+n-1 when rows is NULL, in the network precision; NULL on allocation
 * failure (the context's status). */
void tf_dataset_gather(tf_ctx *ctx, const tf_dataset *d, int conditional, const int64_t *rows,
                       int64_t first, int64_t n, tf_tensor **x, tf_tensor **c);

#ifdef __cplusplus
}
#endif
#endif
