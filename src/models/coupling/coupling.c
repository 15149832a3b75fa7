/* coupling.c — the coupling flow (flow.h) as the model family "coupling" (model.h).
 *
 * Exported: tf_model_coupling, tf_flow_model_create, tf_flow_of.
 *
 * The family's [model] keys are those every config had before families existed, with the
 * same defaults, so old configs and checkpoints rebuild the same flow.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../subnet.h"
#include "tradeflow/error.h"
#include "tradeflow/flow.h"
#include "tradeflow/model.h"

#define UNB 1, 0 /* unbounded range */

static const tf_cfg_key keys[] = {
    {"model", "coupling", TF_CFG_CHOICE, "affine", UNB, "affine|spline", "coupling transform"},
    {"model", "blocks", TF_CFG_INT, "8", 1, 256, NULL, "coupling blocks"},
    {"model", "hidden", TF_CFG_INT, "128", 1, 65536, NULL,
     "subnet width (MLP units or conv channels)"},
    {"model", "layers", TF_CFG_INT, "2", 1, 15, NULL, "hidden layers per subnet"},
    {"model", "embed", TF_CFG_INT, "16", 0, 4096, NULL,
     "condition embedding width (0: log c fed directly)"},
    {"model", "clamp", TF_CFG_REAL, "2", 0, 100, NULL,
     "affine soft clamp k in s = k tanh(s/k); 0: none"},
    {"model", "spline_bins", TF_CFG_INT, "8", 2, 64, NULL, "spline bins K"},
    {"model", "spline_bound", TF_CFG_REAL, "5", 1e-3, 1e6, NULL,
     "spline interval [-B, B]; identity outside"},
    {"model", "actnorm", TF_CFG_BOOL, "false", UNB, NULL,
     "ActNorm with data-dependent initialisation in every block"},
    {"model", "subnet", TF_CFG_CHOICE, "mlp", UNB, "mlp|conv",
     "subnetworks: MLP, or periodic 3x3 convolutions on a lattice (checkerboard masks)"},
    {"model", "lattice_l1", TF_CFG_INT, "0", 0, 1 << 20, NULL, "lattice extent L1 (conv)"},
    {"model", "lattice_l2", TF_CFG_INT, "0", 0, 1 << 20, NULL, "lattice extent L2 (conv)"},
    {"model", "permute", TF_CFG_BOOL, "true", UNB, NULL,
     "MLP: random fixed permutation per block (false: reversal)"},
    {"model", "base_temperature", TF_CFG_BOOL, "false", UNB, NULL,
     "base N(0, c I) (latent temperature scaling) instead of N(0, I)"},
    {"model", "base_scale", TF_CFG_CHOICE, "temperature", UNB, "temperature|inverse",
     "base_temperature: base N(0, c I) (c a temperature) or N(0, I / c) (c = beta)"},
    {"model", "subnet_condition", TF_CFG_BOOL, "true", UNB, NULL,
     "feed e(c) to the subnets (false: c acts only through the base; needs base_temperature)"},
    {"model", "symmetry", TF_CFG_CHOICE, "none", UNB, "none|sign",
     "sign: the density (q(x) + q(-x)) / 2 of a Z2-symmetric target (e.g. phi^4), exact in "
     "samples, log p and d/dc log p; costs a second pass"},
};

static int configure(const tf_config *c, const tf_model_common *co, void *spec) {
  if (co->dim < 2)
    return tf_error(TF_EINVAL, "model.dim = %lld: coupling flows need D >= 2 (%s)",
                    (long long)co->dim, tf_config_where(c, "model", "dim"));
  tf_flow_config f = tf_flow_defaults((int)co->dim);
  f.conditional = co->conditional;
  f.coupling = !strcmp(tf_config_str(c, "model", "coupling"), "spline") ? TF_COUPLING_SPLINE
                                                                        : TF_COUPLING_AFFINE;
  f.n_blocks = (int)tf_config_int(c, "model", "blocks");
  f.hidden = (int)tf_config_int(c, "model", "hidden");
  f.n_hidden = (int)tf_config_int(c, "model", "layers");
  f.embed_dim = (int)tf_config_int(c, "model", "embed");
  f.clamp = tf_config_real(c, "model", "clamp");
  f.spline_bins = (int)tf_config_int(c, "model", "spline_bins");
  f.spline_bound = tf_config_real(c, "model", "spline_bound");
  f.actnorm = tf_config_bool(c, "model", "actnorm");
  f.subnet = tf_subnet_kind_of(tf_config_str(c, "model", "subnet")); /* the schema's choices */
  f.lattice[0] = (int)tf_config_int(c, "model", "lattice_l1");
  f.lattice[1] = (int)tf_config_int(c, "model", "lattice_l2");
  f.permute = tf_config_bool(c, "model", "permute");
  f.base_temperature = tf_config_bool(c, "model", "base_temperature");
  f.subnet_condition = tf_config_bool(c, "model", "subnet_condition");
  f.base_inverse = !strcmp(tf_config_str(c, "model", "base_scale"), "inverse");
  f.sign_symmetric = !strcmp(tf_config_str(c, "model", "symmetry"), "sign");
  f.seed = co->seed;
  if (f.subnet == TF_SUBNET_CONV &&
      ((int64_t)f.lattice[0] * f.lattice[1] != co->dim || f.lattice[0] % 2 || f.lattice[1] % 2 ||
       f.lattice[0] < 2 || f.lattice[1] < 2))
    return tf_error(TF_EINVAL, "%s: model.subnet = conv needs even model.lattice_l1 and "
                    "model.lattice_l2 with L1 * L2 = D = %lld (got %d x %d)",
                    tf_config_where(c, "model", "subnet"), (long long)co->dim, f.lattice[0],
                    f.lattice[1]);
  memcpy(spec, &f, sizeof f);
  return TF_OK;
}

static int create(tf_model *m, const void *spec) {
  const tf_flow_config *fc = spec;
  tf_flow *f = tf_flow_create(fc, tf_model_params(m));
  if (!f) return TF_EINVAL;
  tf_model_set_state(m, f);
  tf_model_set_shape(m, fc->dim, fc->dim, fc->conditional);
  return TF_OK;
}

static void destroy(tf_model *m) { tf_flow_destroy(tf_model_state(m)); }

static int init(tf_model *m) { return tf_flow_init(tf_model_state(m)); }

static int data_init(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  return tf_flow_data_init(tf_model_state(m), ctx, x, c);
}

static tf_tensor *log_prob(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  return tf_flow_log_prob(tf_model_state(m), ctx, x, c);
}

static tf_tensor *sample(tf_model *m, tf_ctx *ctx, tf_tensor *c, int64_t n, tf_rng *rng,
                         tf_tensor **log_p) {
  return tf_flow_sample(tf_model_state(m), ctx, c, n, rng, log_p);
}

static tf_tensor *encode(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  return tf_flow_forward(tf_model_state(m), ctx, x, c, NULL);
}

static tf_tensor *decode(tf_model *m, tf_ctx *ctx, tf_tensor *z, tf_tensor *c) {
  return tf_flow_inverse(tf_model_state(m), ctx, z, c, NULL);
}

static void describe(const tf_model *m, char *buf, size_t len) {
  const tf_flow_config *fc = tf_flow_get_config(tf_model_state(m));
  snprintf(buf, len, "%s coupling, %d blocks",
           fc->coupling == TF_COUPLING_SPLINE ? "spline" : "affine", fc->n_blocks);
}

const tf_model_type tf_model_coupling = {
    .name = "coupling",
    .help = "coupling flow: affine or rational-quadratic spline couplings, ActNorm, MLP or "
            "periodic-conv subnets, conditional on log c (DESIGN.md section 3)",
    .keys = keys,
    .n_keys = sizeof keys / sizeof keys[0],
    .caps = TF_MODEL_LOG_PROB | TF_MODEL_DC | TF_MODEL_SAMPLE | TF_MODEL_GRADIENT,
    .spec_size = sizeof(tf_flow_config),
    .configure = configure,
    .create = create,
    .destroy = destroy,
    .init = init,
    .data_init = data_init,
    .log_prob = log_prob,
    .sample = sample,
    .encode = encode,
    .decode = decode,
    .describe = describe,
};

tf_model *tf_flow_model_create(const tf_flow_config *cfg) {
  return tf_model_create(&tf_model_coupling, cfg);
}

tf_flow *tf_flow_of(const tf_model *m) {
  return m && tf_model_type_of(m) == &tf_model_coupling ? tf_model_state(m) : NULL;
}
