/* cmd_train.c — `tradeflow train CONFIG [--set section.key=value ...] [--resume]`.
 *
 * Everything that can be checked is checked before the first step: the config (syntax, keys,
 * types, ranges, input paths), the data (shape, finiteness, conditions), the model settings
 * against the data, and the run directory (a fresh run never overwrites a checkpoint; a
 * resumed run must match the checkpoint's architecture).
 *
 * Under MPI every rank runs this same set-up on the same inputs; its outcome is agreed once
 * (tf_dist_agree) before the collective part begins, so a rank that cannot read its input
 * stops the whole job with that rank's message.  Rank 0 alone writes config.ini and the
 * checkpoints and prints.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "tradeflow/rng.h"
#include "tradeflow/error.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow train CONFIG [--set section.key=value ...] [--resume]\n"
          "       tradeflow train --help-config     (every setting, its range and default)\n"
          "\n"
          "Trains a flow by maximum likelihood on the samples of [data] and writes\n"
          "<output.dir>/checkpoint.h5 and <output.dir>/config.ini.  --resume continues the run\n"
          "in output.dir from its checkpoint (bit-identical to an uninterrupted run).\n"
          "Exit status: 0 done, 1 failed during training, 2 bad usage/config/data (nothing\n"
          "was run), 3 stopped on request (SIGTERM/SIGINT/SIGUSR1, train.max_steps_per_run) with a\n"
          "checkpoint to resume from.\n");
}

/* Every [model] key must agree between the checkpoint and this run, except the name. */
static int same_model(const tf_config *now, const tf_config *rec, const char *ckpt) {
  tf_cli_schema sc;
  const char *fa = tf_config_str(now, "model", "family"), *fb = tf_config_str(rec, "model", "family");
  if (strcmp(fa, fb))
    return tf_error(TF_EINVAL, "cannot resume: model.family is '%s' in %s but '%s' in this "
                    "config (%s); the architecture of a resumed run must not change",
                    fb, ckpt, fa, tf_config_where(now, "model", "family"));
  if (tf_cli_schema_get(fa, &sc) != TF_OK) return TF_EINVAL;
  for (int i = 0; i < sc.n_model; i++) {
    const char *key = sc.keys[i].key;
    if (!strcmp(key, "name")) continue;
    const char *a = tf_config_str(now, "model", key), *b = tf_config_str(rec, "model", key);
    if (strcmp(a, b))
      return tf_error(TF_EINVAL, "cannot resume: model.%s is '%s' in %s but '%s' in this "
                      "config (%s); the architecture of a resumed run must not change",
                      key, b, ckpt, a, tf_config_where(now, "model", key));
  }
  return TF_OK;
}

static int write_text_atomic(const char *path, const char *text) {
  tf_cli_afile a;
  int st = tf_cli_afile_open(&a, path);
  if (st != TF_OK) return st;
  fputs(text, a.f);
  return tf_cli_afile_commit(&a);
}

typedef struct {
  double *x, *c;
  int64_t n, d;
} data_t;

/* Exact samples of the physics module at c0 (data.exact_samples of them), drawn from a stream
 * of their own so that they do not change with the training seed's other uses. */
static int exact_data(const tf_config *cfg, const tf_physics *phys, double c0, data_t *dt) {
  const int64_t n = tf_config_int(cfg, "data", "exact_samples");
  if (!phys)
    return tf_error(TF_EINVAL, "%s: data.exact_samples = %lld needs a physics module "
                    "(physics.name)", tf_config_where(cfg, "data", "exact_samples"), (long long)n);
  if (!tf_physics_has_sampler(phys, c0))
    return tf_error(TF_EINVAL, "%s: data.exact_samples: module %s has no exact sampler at %s = %g; "
                    "give data.file",
                    tf_config_where(cfg, "data", "exact_samples"), tf_physics_describe(phys),
                    tf_physics_param(phys), c0);
  dt->d = tf_physics_dim(phys);
  dt->n = n;
  dt->x = malloc((size_t)(n * dt->d) * sizeof(double));
  if (!dt->x) return tf_error(TF_ENOMEM, "out of memory for %lld exact samples", (long long)n);
  tf_rng r;
  tf_rng_init(&r, (uint64_t)tf_config_int(cfg, "train", "seed"), 0, TF_RNG_USER + 300, 0);
  return tf_physics_sample(phys, c0, n, &r, dt->x);
}

static int load_data(const tf_config *cfg, const tf_physics *phys, double c0, data_t *dt) {
  const char *file = tf_config_str(cfg, "data", "file");
  const char *dset = tf_config_str(cfg, "data", "dataset");
  if (!file[0]) {
    if (tf_config_int(cfg, "data", "exact_samples") > 0) return exact_data(cfg, phys, c0, dt);
    return TF_OK; /* no data: the loss must do without (checked by the trainer) */
  }
  int rc = tf_h5_read_matrix(file, dset, TF_H5_FINITE, &dt->n, &dt->d, &dt->x);
  if (rc != TF_OK) return rc;
  if (phys && dt->d != tf_physics_dim(phys)) {
    /* e.g. Cartesian coordinates with the centre of mass into the module's coordinates */
    double *x = malloc((size_t)(dt->n * tf_physics_dim(phys)) * sizeof(double));
    if (!x) return tf_error(TF_ENOMEM, "out of memory");
    rc = tf_physics_import(phys, dt->n, dt->d, dt->x, x);
    free(dt->x);
    dt->x = x;
    if (rc != TF_OK) return tf_error(rc, "%s:%s: %s", file, dset, tf_errmsg());
    dt->d = tf_physics_dim(phys);
  }
  const char *cset = tf_config_str(cfg, "data", "condition_dataset");
  if (cset[0]) {
    int64_t n, k;
    rc = tf_h5_read_matrix(file, cset, TF_H5_FINITE, &n, &k, &dt->c);
    if (rc != TF_OK) return rc;
    if (n != dt->n || k != 1)
      return tf_error(TF_EFORMAT, "%s: condition dataset '%s' is (%lld, %lld), expected (%lld) "
                      "to match '%s'", file, cset, (long long)n, (long long)k,
                      (long long)dt->n, dset);
  }
  const int64_t max = tf_config_int(cfg, "data", "max_rows");
  if (max > 0 && max < dt->n) dt->n = max;
  return TF_OK;
}

static int make_dir(const char *dir) {
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return tf_error(TF_EIO, "output.dir %s exists and is not a directory", dir);
    return TF_OK;
  }
  if (mkdir(dir, 0777) != 0) return tf_error(TF_EIO, "output.dir %s: %s", dir, strerror(errno));
  return TF_OK;
}

int tf_cli_train(int argc, char **argv) {
  const char *path = NULL;
  int resume = 0, n_set = 0;
  const char **set = calloc((size_t)argc + 1, sizeof *set);
  if (!set) return TF_EXIT_FAIL;
  int help_config = 0;
  const tf_cli_arg args[] = {
      {"set", TF_ARG_MULTI, set, 0, 0, argc, &n_set, NULL},
      {"resume", TF_ARG_FLAG, &resume, 0, 0, 0, NULL, NULL},
      {"help-config", TF_ARG_FLAG, &help_config, 0, 0, 0, NULL, NULL},
  };
  int npos;
  const int rc = tf_cli_args("train", argc, argv, args, 3, &path, 1, &npos, usage);
  if (rc >= 0 || help_config) {
    char *h = rc < 0 ? tf_cli_help_config() : NULL;
    if (h) fputs(h, stdout);
    free(h);
    free(set);
    return rc >= 0 ? rc : TF_EXIT_OK;
  }
  if (!path) {
    usage(tf_cli_err());
    free(set);
    return TF_EXIT_USAGE;
  }

  /* before set-up: a SLURM warning signal that arrives while the data load must not kill the
   * job; the request is honoured at the first step boundary (checkpoint, exit 3) */
  tf_train_install_signals();
  int status = TF_EXIT_USAGE, setup_ok = 0;
  const tf_dist *dist = tf_cli_dist();
  char ranks_note[64] = "";
  if (dist->size > 1)
    snprintf(ranks_note, sizeof ranks_note, " on %d ranks", dist->size);
  tf_config *cfg = NULL, *rec = NULL;
  data_t dt = {0};
  tf_model *model = NULL;
  tf_trainer *tr = NULL;
  char *text = NULL, ckpt[4200], cfgout[4200], dimset[64];
  tf_train_config tc;
  tf_physics *phys = NULL;
  tf_cli_range range = {0, 0, 0};

  cfg = tf_cli_config_load(path, n_set, set);
  if (!cfg || tf_cli_physics_create(cfg, &phys, &range) != TF_OK ||
      tf_cli_train_config(cfg, &tc) != TF_OK ||
      tf_cli_loss_config(cfg, phys, phys ? &range : NULL, &tc.loss) != TF_OK ||
      load_data(cfg, phys, range.c0, &dt) != TF_OK)
    goto set_up;
  if (!dt.x && tf_loss_uses_data(&tc.loss)) {
    tf_error(TF_EINVAL, "%s: no training data: data.file is missing and data.exact_samples is "
             "0; loss.kind = %s%s needs samples at c0 (give data.file, or data.exact_samples "
             "with a physics module that has an exact sampler)", path,
             tf_config_str(cfg, "loss", "kind"),
             tc.loss.kind == TF_LOSS_TRADE ? " with an NLL boundary" : "");
    goto set_up;
  }
  tc.augment = tf_config_bool(cfg, "data", "augment");
  if (tc.augment && (!phys || !tf_physics_augment_group(phys) || !dt.x)) {
    tf_error(TF_EINVAL, "%s: data.augment = true needs training data and a physics module with "
             "a symmetry group (%s%s%s)", tf_config_where(cfg, "data", "augment"),
             !phys ? "no physics.name given" : !dt.x ? "this loss reads no data" : "module ",
             phys && dt.x ? tf_physics_name(phys) : "", phys && dt.x ? " has none" : "");
    goto set_up;
  }
  if (tf_model_from_config(cfg, dt.d ? dt.d : phys ? tf_physics_dim(phys) : 0, &model) != TF_OK)
    goto set_up;
  const double data_c = phys && !tf_config_is_set(cfg, "data", "condition")
                            ? range.c0 : tf_config_real(cfg, "data", "condition");
  if (tf_config_int(cfg, "model", "dim") == 0) {
    /* record the dimension taken from the data, so the checkpoint rebuilds without it */
    snprintf(dimset, sizeof dimset, "model.dim=%lld", (long long)tf_model_dim(model));
    set[n_set++] = dimset;
    tf_config_destroy(cfg);
    cfg = tf_cli_config_load(path, n_set, set);
    if (!cfg) goto set_up;
  }
  const char *dir = tf_config_str(cfg, "output", "dir");
  if (snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", dir) >= (int)sizeof ckpt ||
      snprintf(cfgout, sizeof cfgout, "%s/config.ini", dir) >= (int)sizeof cfgout) {
    tf_error(TF_EINVAL, "output.dir is too long: %s", dir);
    goto set_up;
  }
  if (resume) {
    if (access(ckpt, F_OK) != 0) {
      tf_error(TF_EIO, "--resume: no checkpoint %s (output.dir = %s, %s)", ckpt, dir,
               tf_config_where(cfg, "output", "dir"));
      goto set_up;
    }
    rec = tf_cli_load_model(ckpt, NULL);
    if (!rec || same_model(cfg, rec, ckpt) != TF_OK) goto set_up;
  } else if (access(ckpt, F_OK) == 0) {
    tf_error(TF_EIO, "%s exists: pass --resume to continue that run, or set another "
             "output.dir (%s); tradeflow does not overwrite a checkpoint", ckpt,
             tf_config_where(cfg, "output", "dir"));
    goto set_up;
  }
  if (dist->rank == 0 && make_dir(dir) != TF_OK) goto set_up;
  text = tf_config_text(cfg);
  if (!text) {
    tf_error(TF_ENOMEM, "out of memory");
    goto set_up;
  }

  if (tf_model_init(model) != TF_OK) goto set_up;
  tc.checkpoint = ckpt;
  tc.config_text = text;
  tc.model_name = tf_config_str(cfg, "model", "name");
  tc.log = dist->rank == 0 ? stdout : NULL;
  tc.dist = dist;
  tf_dataset ds = {dt.n, dt.d, dt.x, dt.c, data_c};
  tr = tf_trainer_create(&tc, model, dt.x ? &ds : NULL);
  if (!tr) goto set_up;
  setup_ok = 1;
set_up:
  /* the set-up's outcome on every rank: from here on, failures are collective */
  if (tf_dist_agree(dist, setup_ok ? TF_OK : TF_EINVAL) != TF_OK) goto report;
  if (resume && tf_trainer_resume(tr, ckpt) != TF_OK) goto report;
  if (tf_dist_agree(dist, dist->rank == 0 ? write_text_atomic(cfgout, text) : TF_OK) != TF_OK)
    goto report;

  char arch[128];
  tf_model_describe(model, arch, sizeof arch);
  printf("tradeflow train: %s, D = %d, loss %s, %s, %lld samples from %s:%s, "
         "%lld parameters (%s), %s; %s step %lld of %lld%s\n",
         tc.model_name, tf_model_dim(model), tf_config_str(cfg, "loss", "kind"),
         phys ? tf_physics_describe(phys) : "no physics", (long long)dt.n,
         tf_config_str(cfg, "data", "file")[0] ? tf_config_str(cfg, "data", "file") : "exact",
         tf_config_str(cfg, "data", "dataset"), (long long)tf_params_size(tf_model_params(model)),
         TF_REAL_NAME, arch, resume ? "resuming at" : "starting at", (long long)tf_trainer_step(tr),
         (long long)tc.steps, ranks_note);
  fflush(stdout);
  status = TF_EXIT_FAIL; /* from here on, failures happen during the work */
  if (tf_trainer_run(tr) != TF_OK) goto report;
  status = tf_trainer_stopped(tr) ? TF_EXIT_STOPPED : TF_EXIT_OK;
  goto done;
report:
  fprintf(tf_cli_err(), "tradeflow train: %s\n", tf_errmsg());
done:
  tf_trainer_destroy(tr);
  tf_model_destroy(model);
  tf_config_destroy(rec);
  tf_config_destroy(cfg);
  tf_physics_destroy(phys);
  free(text);
  free(dt.x);
  free(dt.c);
  free(set);
  return status;
}
