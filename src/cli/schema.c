/* schema.c — the settings of `tradeflow train` and their translation into library configs.
 *
 * A run config's schema is the [model] keys of its model family (model.h: the common keys,
 * then the family's own) followed by this file's table of the other sections.  [model] comes
 * first so that the model can be rebuilt from a checkpoint's recorded config alone
 * (tf_cli_model_text), without the data file or output directory of the run that wrote it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tradeflow/error.h"

#define UNB 1, 0 /* unbounded range */

const tf_cfg_key tf_cli_run_keys[] = {
    /* ---- [physics]: the target family (must follow [model]) ---- */
    {"physics", "name", TF_CFG_STRING, "", UNB, NULL,
     "physics module (tradeflow physics lists them); empty: none (data-only NLL)"},
    {"physics", "dim", TF_CFG_INT, "0", 0, 1e7, NULL,
     "dimension for modules that take one (double_well, multiwell); 0: module default"},
    {"physics", "L", TF_CFG_INT, "0", 0, 1024, NULL,
     "lattice extent L of lattice modules (phi4, phi4_mass; the field has L * L sites); 0: "
     "module default (8)"},
    {"physics", "lambda", TF_CFG_REAL, "-1", -1, 100, NULL,
     "quartic coupling lambda of phi4 / phi4_mass; -1: module default (0.02 / 0)"},
    {"physics", "c_min", TF_CFG_REAL, "0", 0, 1e300, NULL,
     "lower end of the condition range; 0: the module's default range"},
    {"physics", "c_max", TF_CFG_REAL, "0", 0, 1e300, NULL,
     "upper end of the condition range; 0: the module's default"},
    {"physics", "c0", TF_CFG_REAL, "0", 0, 1e300, NULL,
     "boundary condition value (where data or the boundary loss lives); 0: module default"},
    /* ---- [mcmc]: reference chains (tradeflow mcmc; must follow [physics]) ---- */
    {"mcmc", "conditions", TF_CFG_REAL_LIST, "", UNB, NULL,
     "conditions to sample, e.g. 0.25, 0.29; empty: physics.c0"},
    {"mcmc", "samples", TF_CFG_INT, "10000", 1, 1e10, NULL,
     "recorded states per condition, over all chains (rounded up to a multiple of chains)"},
    {"mcmc", "chains", TF_CFG_INT, "4", 1, 1e6, NULL, "independent chains per condition"},
    {"mcmc", "burn_in", TF_CFG_INT, "1000", 0, 1e10, NULL,
     "updates per chain before recording (step size tuned here, then frozen)"},
    {"mcmc", "thin", TF_CFG_INT, "1", 1, 1e6, NULL,
     "updates (HMC trajectories, MALA steps) between recorded states"},
    {"mcmc", "target_accept", TF_CFG_REAL, "0", 0, 0.99, NULL,
     "acceptance the step size is tuned to; 0: the sampler's default (HMC 0.8, MALA 0.6)"},
    {"mcmc", "fourier_accel", TF_CFG_BOOL, "true", UNB, NULL,
     "lattice HMC: Fourier acceleration (mass-preconditioned momenta); other samplers ignore it"},
    {"mcmc", "seed", TF_CFG_INT, "1", 0, 9.007199254740992e15, NULL,
     "random stream of the chains"},
    {"mcmc", "out", TF_CFG_STRING, "", UNB, NULL,
     "output file of tradeflow mcmc (tradeflow-mcmc layout, docs/FILES.md), relative to the "
     "working directory; checked by tradeflow mcmc only"},
    /* ---- [data] ---- */
    {"data", "file", TF_CFG_PATH_IN, "", UNB, NULL,
     "HDF5 file with the training samples (empty: exact samples from the physics module, "
     "or no data for losses that need none)"},
    {"data", "exact_samples", TF_CFG_INT, "0", 0, 1e9, NULL,
     "without a file: this many exact samples at physics.c0 from the module's sampler"},
    {"data", "dataset", TF_CFG_STRING, "x", UNB, NULL, "dataset of x, (N, D) or (N)"},
    {"data", "condition_dataset", TF_CFG_STRING, "", UNB, NULL,
     "dataset of per-sample conditions (N); empty: data.condition for all"},
    {"data", "condition", TF_CFG_REAL, "1", 1e-300, 1e300, NULL,
     "the condition c of every sample when there is no condition_dataset (default with "
     "physics: physics.c0)"},
    {"data", "augment", TF_CFG_BOOL, "false", UNB, NULL,
     "replace every training batch by random symmetry images of its rows (the physics "
     "module's group, e.g. particle permutations and rotations for dw4 / lj13)"},
    {"data", "max_rows", TF_CFG_INT, "0", 0, 9.007199254740992e15, NULL,
     "use only the first rows; 0: all"},
    /* ---- [loss] (DESIGN.md section 4; include/tradeflow/train.h) ---- */
    {"loss", "kind", TF_CFG_CHOICE, "nll", UNB, "nll|trade|reverse_kl|reweight",
     "objective: NLL on data, TRADE, reverse KL over the range, reweighting baseline"},
    {"loss", "variant", TF_CFG_CHOICE, "grid", UNB, "grid|continuous", "TRADE variant"},
    {"loss", "boundary", TF_CFG_CHOICE, "nll", UNB, "nll|reverse_kl",
     "TRADE boundary term at c0: NLL on the data or reverse KL"},
    {"loss", "boundary_batch", TF_CFG_INT, "256", 1, 1e7, NULL,
     "reverse-KL samples per step for the boundary term"},
    {"loss", "grid_points", TF_CFG_INT, "16", 2, 64, NULL,
     "TRADE grid: log-spaced conditions (c0 added)"},
    {"loss", "grid_samples", TF_CFG_INT, "512", 2, 1e7, NULL,
     "flow samples per grid point for <A>_c, ESS and running losses"},
    {"loss", "refresh", TF_CFG_INT, "10", 1, 1e9, NULL, "steps between grid refreshes"},
    {"loss", "ema", TF_CFG_REAL, "0.9", 0, 0.999, NULL,
     "weight of the previous <A>_c in the exponential average"},
    {"loss", "causality", TF_CFG_REAL, "1", 0, 1e6, NULL,
     "causality epsilon: grid weights exp(-eps S_k); 0: uniform"},
    {"loss", "offpolicy", TF_CFG_REAL, "0", 0, 1, NULL,
     "grid TRADE: fraction of evaluation points sampled at another grid point (drawn from "
     "the same weights) and evaluated at their own; 0: all sampled at their own"},
    {"loss", "noise", TF_CFG_REAL, "0", 0, 1e6, NULL,
     "grid TRADE: sd of Gaussian noise added to every coordinate of the evaluation points"},
    {"loss", "augment", TF_CFG_BOOL, "false", UNB, NULL,
     "grid TRADE: evaluation points replaced by random symmetry images (physics module)"},
    {"loss", "points", TF_CFG_INT, "256", 1, 1e7, NULL,
     "TRADE evaluation points (reverse KL: samples) per step"},
    {"loss", "groups", TF_CFG_INT, "4", 1, 1e6, NULL,
     "conditions per step (continuous TRADE, reweighting)"},
    {"loss", "widen_steps", TF_CFG_INT, "1000", 0, 1e12, NULL,
     "continuous TRADE: steps until the full range is reached"},
    {"loss", "continuous_source", TF_CFG_CHOICE, "flow", UNB, "flow|data",
     "continuous TRADE: evaluation points from flow samples or data at c0"},
    {"loss", "residual", TF_CFG_CHOICE, "log", UNB, "log|linear",
     "penalise the residual in log c (c r) or in c (r)"},
    {"loss", "penalty", TF_CFG_CHOICE, "square", UNB, "square|huber", "residual penalty"},
    {"loss", "huber_delta", TF_CFG_REAL, "1", 1e-12, 1e12, NULL, "Huber delta"},
    {"loss", "lambda", TF_CFG_REAL, "1", 0, 1e12, NULL, "final weight of the TRADE term"},
    {"loss", "lambda_warmup", TF_CFG_INT, "200", 0, 1e12, NULL, "steps with lambda = 0"},
    {"loss", "lambda_ramp", TF_CFG_INT, "500", 0, 1e12, NULL,
     "steps of the cosine ramp of lambda after the warm-up"},
    {"loss", "adaptive", TF_CFG_BOOL, "false", UNB, NULL,
     "scale lambda by the running ratio of the terms' gradient norms"},
    {"loss", "energy_free", TF_CFG_BOOL, "false", UNB, NULL,
     "TRADE without energies: the target at c is the flow at c0 tempered (a physics module "
     "is then used only for evaluation)"},
    {"loss", "energy_free_param", TF_CFG_CHOICE, "temperature", UNB, "temperature|inverse",
     "energy_free: c is a temperature (q = p0^(c0/c)) or inverse temperature (q = p0^(c/c0))"},
    /* ---- [train] ---- */
    {"train", "steps", TF_CFG_INT, "10000", 0, 1e12, NULL, "optimizer steps in total"},
    {"train", "batch", TF_CFG_INT, "256", 1, 1e8, NULL,
     "minibatch size per rank (an MPI run's global batch is batch x ranks)"},
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
    {"train", "ema", TF_CFG_REAL, "0", 0, 0.999999, NULL,
     "parameter averaging: decay of the moving average the finished model is used with "
     "(validation, sample, eval, efficiency, profile); 0: off"},
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
    {"train", "check_every", TF_CFG_INT, "1000", 0, 1e12, NULL,
     "MPI runs: verify every this many steps that all replicas are bit-identical; 0: only "
     "at the end and on resume"},
    /* ---- [output] ---- */
    {"output", "dir", TF_CFG_PATH_OUT, "run", UNB, NULL,
     "run directory (created): checkpoint.h5, config.ini"},
    {"output", "checkpoint_every", TF_CFG_INT, "1000", 0, 1e12, NULL,
     "checkpoint every this many steps; 0: at the end only"},
};
const int tf_cli_run_n = sizeof tf_cli_run_keys / sizeof tf_cli_run_keys[0];

int tf_cli_physics_n(void) {
  int n = 0;
  while (n < tf_cli_run_n && !strcmp(tf_cli_run_keys[n].section, "physics")) n++;
  return n;
}

int tf_cli_mcmc_n(void) {
  const int m = tf_cli_physics_n();
  int n = 0;
  while (m + n < tf_cli_run_n && !strcmp(tf_cli_run_keys[m + n].section, "mcmc")) n++;
  return n;
}

/* One schema per family, built on first use and kept for the process: loaded configs point
 * into it. */
enum { MAX_SCHEMAS = 32, MAX_MODEL_KEYS = 128 };
static struct {
  const tf_model_type *type;
  tf_cfg_key *keys;
  int n, n_model;
} schemas[MAX_SCHEMAS];
static int n_schemas;

static void free_schemas(void) {
  for (int i = 0; i < n_schemas; i++) free(schemas[i].keys);
  n_schemas = 0;
}

int tf_cli_schema_get(const char *family, tf_cli_schema *out) {
  const tf_model_type *t = tf_model_type_find(family);
  if (!t) return TF_EINVAL;
  int i = 0;
  while (i < n_schemas && schemas[i].type != t) i++;
  if (i == n_schemas) {
    if (n_schemas == MAX_SCHEMAS) return tf_error(TF_EINVAL, "too many model families");
    tf_cfg_key *k = malloc((size_t)(MAX_MODEL_KEYS + tf_cli_run_n) * sizeof *k);
    if (!k) return tf_error(TF_ENOMEM, "out of memory");
    const int nm = tf_model_schema(t, k, MAX_MODEL_KEYS);
    if (nm < 0) {
      free(k);
      return tf_error(TF_EINVAL, "model family %s has more than %d keys", t->name,
                      MAX_MODEL_KEYS);
    }
    memcpy(k + nm, tf_cli_run_keys, (size_t)tf_cli_run_n * sizeof *k);
    if (!n_schemas) atexit(free_schemas);
    schemas[n_schemas].type = t;
    schemas[n_schemas].keys = k;
    schemas[n_schemas].n_model = nm;
    schemas[n_schemas].n = nm + tf_cli_run_n;
    n_schemas++;
  }
  out->type = t;
  out->keys = schemas[i].keys;
  out->n = schemas[i].n;
  out->n_model = schemas[i].n_model;
  return TF_OK;
}

tf_config *tf_cli_config_load(const char *path, int n_set, const char *const *set) {
  char *text = NULL, family[64];
  if (tf_config_read_text(path, &text) != TF_OK) return NULL;
  tf_model_family_of(text, n_set, set, family, sizeof family);
  free(text);
  tf_cli_schema sc;
  if (tf_cli_schema_get(family, &sc) != TF_OK) {
    tf_error(TF_EINVAL, "%s: model.family: %s", path, tf_errmsg());
    return NULL;
  }
  return tf_config_load(path, sc.keys, sc.n, n_set, set);
}

/* s appended to *buf (malloc'd, *len bytes used); frees s; 0 on allocation failure */
static int append(char **buf, size_t *len, char *s) {
  if (!s) return 0;
  const size_t n = strlen(s);
  char *q = realloc(*buf, *len + n + 1);
  if (q) {
    memcpy(q + *len, s, n + 1);
    *buf = q;
    *len += n;
  }
  free(s);
  return q != NULL;
}

static char *dup_printf(const char *fmt, const char *a, const char *b) {
  const int n = snprintf(NULL, 0, fmt, a, b);
  char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (s) snprintf(s, (size_t)n + 1, fmt, a, b);
  return s;
}

char *tf_cli_help_config(void) {
  /* the common [model] keys, each family's, then the other sections */
  char *out = NULL;
  size_t len = 0;
  int ok = append(&out, &len, strdup("[model] keys of every family (model.family = one of the "
                                     "families below; default coupling):\n"));
  ok = ok && append(&out, &len, tf_config_help(tf_model_common_keys, tf_model_common_n));
  for (int i = 0; ok && i < tf_model_type_count(); i++) {
    const tf_model_type *t = tf_model_type_at(i);
    ok = append(&out, &len, dup_printf("\n[model] keys of family %s: %s\n", t->name,
                                       t->help ? t->help : ""));
    if (ok && t->n_keys) ok = append(&out, &len, tf_config_help(t->keys, t->n_keys));
  }
  ok = ok && append(&out, &len, strdup("\n"));
  ok = ok && append(&out, &len, tf_config_help(tf_cli_run_keys, tf_cli_run_n));
  if (!ok) {
    free(out);
    return NULL;
  }
  return out;
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
  t.optim.ema_decay = tf_config_real(c, "train", "ema");
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
  t.check_every = tf_config_int(c, "train", "check_every");
  t.ckpt_every = tf_config_int(c, "output", "checkpoint_every");
  *out = t;
  return TF_OK;
}

int tf_cli_loss_config(const tf_config *c, const tf_physics *phys, const tf_cli_range *range,
                       tf_loss_config *out) {
  tf_loss_config l = tf_loss_defaults();
  const char *kind = tf_config_str(c, "loss", "kind");
  l.kind = !strcmp(kind, "trade") ? TF_LOSS_TRADE : !strcmp(kind, "reverse_kl") ? TF_LOSS_REVERSE_KL
           : !strcmp(kind, "reweight") ? TF_LOSS_REWEIGHT : TF_LOSS_NLL;
  l.physics = phys;
  if (range) {
    l.c_min = range->c_min;
    l.c_max = range->c_max;
    l.c0 = range->c0;
  } else {
    l.c_min = tf_config_real(c, "physics", "c_min");
    l.c_max = tf_config_real(c, "physics", "c_max");
    l.c0 = tf_config_real(c, "physics", "c0");
  }
  l.variant = !strcmp(tf_config_str(c, "loss", "variant"), "continuous") ? TF_TRADE_CONTINUOUS
                                                                         : TF_TRADE_GRID;
  l.boundary = !strcmp(tf_config_str(c, "loss", "boundary"), "reverse_kl") ? TF_BOUNDARY_RKL
                                                                           : TF_BOUNDARY_NLL;
  l.boundary_batch = tf_config_int(c, "loss", "boundary_batch");
  l.grid_points = (int)tf_config_int(c, "loss", "grid_points");
  l.grid_samples = tf_config_int(c, "loss", "grid_samples");
  l.refresh = tf_config_int(c, "loss", "refresh");
  l.ema = tf_config_real(c, "loss", "ema");
  l.causality = tf_config_real(c, "loss", "causality");
  l.offpolicy = tf_config_real(c, "loss", "offpolicy");
  l.noise = tf_config_real(c, "loss", "noise");
  l.augment = tf_config_bool(c, "loss", "augment");
  l.points = tf_config_int(c, "loss", "points");
  l.groups = tf_config_int(c, "loss", "groups");
  l.widen_steps = tf_config_int(c, "loss", "widen_steps");
  l.continuous_data = !strcmp(tf_config_str(c, "loss", "continuous_source"), "data");
  l.log_residual = !strcmp(tf_config_str(c, "loss", "residual"), "log");
  l.penalty = !strcmp(tf_config_str(c, "loss", "penalty"), "huber") ? TF_PENALTY_HUBER
                                                                    : TF_PENALTY_SQUARE;
  l.huber_delta = tf_config_real(c, "loss", "huber_delta");
  l.lambda = tf_config_real(c, "loss", "lambda");
  l.lambda_warmup = tf_config_int(c, "loss", "lambda_warmup");
  l.lambda_ramp = tf_config_int(c, "loss", "lambda_ramp");
  l.adaptive = tf_config_bool(c, "loss", "adaptive");
  l.energy_free = tf_config_bool(c, "loss", "energy_free");
  l.energy_free_inverse = !strcmp(tf_config_str(c, "loss", "energy_free_param"), "inverse");
  if (l.kind != TF_LOSS_NLL && !phys && !(l.kind == TF_LOSS_TRADE && l.energy_free))
    return tf_error(TF_EINVAL, "%s: loss.kind = %s needs a physics module (physics.name)%s",
                    tf_config_where(c, "loss", "kind"), kind,
                    l.kind == TF_LOSS_TRADE ? " or loss.energy_free = true" : "");
  if (l.kind != TF_LOSS_NLL && !tf_config_bool(c, "model", "conditional"))
    return tf_error(TF_EINVAL, "%s: loss.kind = %s learns p(x | c) over a range of c: set "
                    "model.conditional = true", tf_config_where(c, "model", "conditional"), kind);
  *out = l;
  return TF_OK;
}

char *tf_cli_model_text(const char *text) { return tf_cli_section_text(text, "model"); }

char *tf_cli_section_text(const char *text, const char *section) {
  const size_t n = strlen(text), ls = strlen(section);
  char *out = malloc(n + 1);
  if (!out) return NULL;
  size_t k = 0;
  int in_section = 0;
  for (const char *p = text; *p;) {
    const char *e = strchr(p, '\n');
    const size_t len = e ? (size_t)(e - p) + 1 : strlen(p);
    const char *q = p;
    while (q < p + len && (*q == ' ' || *q == '\t')) q++;
    if (*q == '[') {
      const char *r = q + 1;
      while (*r == ' ' || *r == '\t') r++;
      in_section = !strncmp(r, section, ls) && (r[ls] == ']' || r[ls] == ' ' || r[ls] == '\t');
    }
    if (in_section) {
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
  char origin[4200], family[64];
  if (snprintf(origin, sizeof origin, "%s:/config", checkpoint) >= (int)sizeof origin)
    origin[sizeof origin - 1] = 0; /* only a name for messages */
  /* a checkpoint from before model families has no model.family: a coupling flow */
  tf_model_family_of(model, 0, NULL, family, sizeof family);
  tf_cli_schema sc;
  tf_config *c = NULL;
  if (tf_cli_schema_get(family, &sc) != TF_OK)
    tf_error(TF_EFORMAT, "%s: model.family: %s", origin, tf_errmsg());
  else
    c = tf_config_load_string(model, origin, sc.keys, sc.n_model, 0, NULL);
  free(model);
  if (c && full_text) *full_text = text;
  else free(text);
  return c;
}
