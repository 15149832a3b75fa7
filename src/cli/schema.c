/* schema.c — the settings of `tradeflow train` and their translation into library configs.
 *
 * One table for the whole run config; its [model] entries come first so that the model can
 * be rebuilt from a checkpoint's recorded config alone (tf_cli_model_text), without the data
 * file or output directory of the run that wrote it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tradeflow/error.h"

#define UNB 1, 0 /* unbounded range */

const tf_cfg_key tf_cli_schema[] = {
    /* ---- [model]: everything that fixes the architecture (must come first) ---- */
    {"model", "name", TF_CFG_STRING, "flow", UNB, NULL, "model name recorded in output files"},
    {"model", "dim", TF_CFG_INT, "0", 0, 1e7, NULL,
     "dimension D of x; 0: taken from the data"},
    {"model", "conditional", TF_CFG_BOOL, "true", UNB, NULL,
     "p(x | c) with condition c > 0 (false: p(x))"},
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
    {"model", "seed", TF_CFG_INT, "1", 0, 9.007199254740992e15, NULL,
     "initialisation and permutations"},
    /* ---- [data] ---- */
    {"data", "file", TF_CFG_PATH_IN, NULL, UNB, NULL, "HDF5 file with the training samples"},
    {"data", "dataset", TF_CFG_STRING, "x", UNB, NULL, "dataset of x, (N, D) or (N)"},
    {"data", "condition_dataset", TF_CFG_STRING, "", UNB, NULL,
     "dataset of per-sample conditions (N); empty: data.condition for all"},
    {"data", "condition", TF_CFG_REAL, "1", 1e-300, 1e300, NULL,
     "the condition c of every sample when there is no condition_dataset"},
    {"data", "max_rows", TF_CFG_INT, "0", 0, 9.007199254740992e15, NULL,
     "use only the first rows; 0: all"},
    /* ---- [train] ---- */
    {"train", "steps", TF_CFG_INT, "10000", 0, 1e12, NULL, "optimizer steps in total"},
    {"train", "batch", TF_CFG_INT, "256", 1, 1e8, NULL, "minibatch size"},
    {"train", "optimizer", TF_CFG_CHOICE, "adam", UNB, "adam|adamw", "optimizer"},
    {"train", "lr", TF_CFG_REAL, "1e-3", 1e-12, 10, NULL, "learning rate (peak for onecycle)"},
    {"train", "lr_min", TF_CFG_REAL, "1e-5", 0, 10, NULL,
     "final learning rate (cosine, onecycle)"},
    {"train", "schedule", TF_CFG_CHOICE, "cosine", UNB, "constant|cosine|onecycle",
     "learning-rate schedule"},
    {"train", "warmup", TF_CFG_INT, "0", 0, 1e12, NULL,
     "linear warm-up steps (constant, cosine)"},
    {"train", "weight_decay", TF_CFG_REAL, "0", 0, 10, NULL, "decoupled weight decay (adamw)"},
    {"train", "beta1", TF_CFG_REAL, "0.9", 0, 0.999999, NULL, "Adam beta1"},
    {"train", "beta2", TF_CFG_REAL, "0.999", 0, 0.99999999, NULL, "Adam beta2"},
    {"train", "eps", TF_CFG_REAL, "1e-8", 1e-30, 1, NULL, "Adam epsilon"},
    {"train", "clip", TF_CFG_REAL, "10", 0, 1e12, NULL, "gradient-norm clipping; 0: off"},
    {"train", "val_fraction", TF_CFG_REAL, "0.1", 0, 0.9, NULL,
     "fraction of the rows held out for validation"},
    {"train", "val_every", TF_CFG_INT, "500", 0, 1e12, NULL,
     "validation NLL every this many steps; 0: at the end only"},
    {"train", "log_every", TF_CFG_INT, "100", 0, 1e12, NULL,
     "progress line every this many steps; 0: none"},
    {"train", "max_nonfinite", TF_CFG_INT, "20", 1, 1e9, NULL,
     "consecutive non-finite steps that stop the run"},
    {"train", "max_steps_per_run", TF_CFG_INT, "0", 0, 1e12, NULL,
     "stop with a checkpoint after this many steps (for time-limited jobs); 0: no limit"},
    {"train", "seed", TF_CFG_INT, "1", 0, 9.007199254740992e15, NULL,
     "validation split and batch order"},
    /* ---- [output] ---- */
    {"output", "dir", TF_CFG_PATH_OUT, "run", UNB, NULL,
     "run directory (created): checkpoint.h5, config.ini"},
    {"output", "checkpoint_every", TF_CFG_INT, "1000", 0, 1e12, NULL,
     "checkpoint every this many steps; 0: at the end only"},
};
const int tf_cli_schema_n = sizeof tf_cli_schema / sizeof tf_cli_schema[0];

int tf_cli_model_n(void) {
  int n = 0;
  while (n < tf_cli_schema_n && !strcmp(tf_cli_schema[n].section, "model")) n++;
  return n;
}

int tf_cli_flow_config(const tf_config *c, int64_t data_dim, tf_flow_config *out) {
  int64_t dim = tf_config_int(c, "model", "dim");
  if (dim == 0) dim = data_dim;
  if (dim == 0)
    return tf_error(TF_EINVAL, "%s: model.dim = 0 means 'from the data', but there is no data "
                    "here; set model.dim", tf_config_where(c, "model", "dim"));
  if (data_dim && dim != data_dim)
    return tf_error(TF_EINVAL, "%s: model.dim = %lld, but the data have %lld columns",
                    tf_config_where(c, "model", "dim"), (long long)dim, (long long)data_dim);
  if (dim < 2)
    return tf_error(TF_EINVAL, "model.dim = %lld: coupling flows need D >= 2 (%s)",
                    (long long)dim, tf_config_where(c, "model", "dim"));
  tf_flow_config f = tf_flow_defaults((int)dim);
  f.conditional = tf_config_bool(c, "model", "conditional");
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
  f.subnet = !strcmp(tf_config_str(c, "model", "subnet"), "conv") ? TF_SUBNET_CONV : TF_SUBNET_MLP;
  f.lattice[0] = (int)tf_config_int(c, "model", "lattice_l1");
  f.lattice[1] = (int)tf_config_int(c, "model", "lattice_l2");
  f.permute = tf_config_bool(c, "model", "permute");
  f.base_temperature = tf_config_bool(c, "model", "base_temperature");
  f.seed = (uint64_t)tf_config_int(c, "model", "seed");
  if (f.subnet == TF_SUBNET_CONV &&
      ((int64_t)f.lattice[0] * f.lattice[1] != dim || f.lattice[0] % 2 || f.lattice[1] % 2 ||
       f.lattice[0] < 2 || f.lattice[1] < 2))
    return tf_error(TF_EINVAL, "%s: model.subnet = conv needs even model.lattice_l1 and "
                    "model.lattice_l2 with L1 * L2 = D = %lld (got %d x %d)",
                    tf_config_where(c, "model", "subnet"), (long long)dim, f.lattice[0],
                    f.lattice[1]);
  *out = f;
  return TF_OK;
}

int tf_cli_train_config(const tf_config *c, tf_train_config *out) {
  tf_train_config t = tf_train_defaults();
  t.steps = tf_config_int(c, "train", "steps");
  t.batch = tf_config_int(c, "train", "batch");
  const int adamw = !strcmp(tf_config_str(c, "train", "optimizer"), "adamw");
  t.optim = tf_optim_defaults(adamw ? TF_OPTIM_ADAMW : TF_OPTIM_ADAM);
  t.optim.beta1 = tf_config_real(c, "train", "beta1");
  t.optim.beta2 = tf_config_real(c, "train", "beta2");
  t.optim.eps = tf_config_real(c, "train", "eps");
  t.optim.clip_norm = tf_config_real(c, "train", "clip");
  t.optim.weight_decay = tf_config_real(c, "train", "weight_decay");
  if (!adamw && t.optim.weight_decay > 0)
    return tf_error(TF_EINVAL, "%s: train.weight_decay = %g needs train.optimizer = adamw "
                    "(Adam has no decoupled weight decay)",
                    tf_config_where(c, "train", "weight_decay"), t.optim.weight_decay);
  const char *s = tf_config_str(c, "train", "schedule");
  t.lr.kind = !strcmp(s, "constant") ? TF_LR_CONSTANT
              : !strcmp(s, "onecycle") ? TF_LR_ONECYCLE : TF_LR_COSINE;
  t.lr.lr = tf_config_real(c, "train", "lr");
  t.lr.lr_min = tf_config_real(c, "train", "lr_min");
  t.lr.warmup = tf_config_int(c, "train", "warmup");
  if (t.lr.lr_min > t.lr.lr)
    return tf_error(TF_EINVAL, "%s: train.lr_min = %g exceeds train.lr = %g",
                    tf_config_where(c, "train", "lr_min"), t.lr.lr_min, t.lr.lr);
  t.val_fraction = tf_config_real(c, "train", "val_fraction");
  t.val_every = tf_config_int(c, "train", "val_every");
  t.log_every = tf_config_int(c, "train", "log_every");
  t.max_nonfinite = tf_config_int(c, "train", "max_nonfinite");
  t.max_steps_per_run = tf_config_int(c, "train", "max_steps_per_run");
  t.seed = (uint64_t)tf_config_int(c, "train", "seed");
  t.ckpt_every = tf_config_int(c, "output", "checkpoint_every");
  *out = t;
  return TF_OK;
}

char *tf_cli_model_text(const char *text) {
  const size_t n = strlen(text);
  char *out = malloc(n + 1);
  if (!out) return NULL;
  size_t k = 0;
  int in_model = 0;
  for (const char *p = text; *p;) {
    const char *e = strchr(p, '\n');
    const size_t len = e ? (size_t)(e - p) + 1 : strlen(p);
    const char *q = p;
    while (q < p + len && (*q == ' ' || *q == '\t')) q++;
    if (*q == '[') {
      const char *r = q + 1;
      while (*r == ' ' || *r == '\t') r++;
      in_model = !strncmp(r, "model", 5) && (r[5] == ']' || r[5] == ' ' || r[5] == '\t');
    }
    if (in_model) {
      memcpy(out + k, p, len);
      k += len;
    }
    p += len;
  }
  out[k] = 0;
  return out;
}

tf_config *tf_cli_load_model(const char *checkpoint, char **full_text) {
  char *text = NULL;
  if (tf_checkpoint_read_config(checkpoint, &text) != TF_OK) return NULL;
  char *model = tf_cli_model_text(text);
  if (!model) {
    free(text);
    tf_error(TF_ENOMEM, "out of memory");
    return NULL;
  }
  char origin[4200];
  if (snprintf(origin, sizeof origin, "%s:/config", checkpoint) >= (int)sizeof origin)
    origin[sizeof origin - 1] = 0; /* only a name for messages */
  tf_config *c = tf_config_load_string(model, origin, tf_cli_schema, tf_cli_model_n(), 0, NULL);
  free(model);
  if (c && full_text) *full_text = text;
  else free(text);
  return c;
}
