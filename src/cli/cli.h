/* Subcommands of the tradeflow front end and the helpers they share.  Each command returns a
 * process exit status: 0 success, 1 a failure during the work (I/O, numerics), 2 a usage or
 * config error found before any work started, 3 a run stopped on request (SIGTERM, SIGINT or
 * train.max_steps_per_run) with a checkpoint to resume from. */
#ifndef TRADEFLOW_CLI_H
#define TRADEFLOW_CLI_H

#include <stdio.h>

#include "tradeflow/config.h"
#include "tradeflow/dist.h"
#include "tradeflow/h5io.h"
#include "tradeflow/model.h"
#include "tradeflow/physics.h"
#include "tradeflow/train.h"

enum { TF_EXIT_OK = 0, TF_EXIT_FAIL = 1, TF_EXIT_USAGE = 2, TF_EXIT_STOPPED = 3 };

/* common.c: the process group of this run (MPI_COMM_WORLD under a launcher, else serial).
 * On ranks other than 0, stdout goes to /dev/null: one progress stream per job. */
int tf_cli_dist_init(int *argc, char ***argv);
void tf_cli_dist_finalize(void);
const tf_dist *tf_cli_dist(void);
/* Where messages for the user go: stderr on rank 0, a null stream on the other ranks (errors
 * found on them reach rank 0 through tf_dist_agree). */
FILE *tf_cli_err(void);
/* Monotonic wall clock, seconds (progress lines and timings). */
double tf_cli_now(void);

/* main.c: the whole front end, `tradeflow COMMAND ...`: MPI set-up, dispatch, finalize.
 * Returns the exit status.  Model families registered before the call (tf_model_register)
 * are available to every subcommand. */
int tf_cli_main(int argc, char **argv);

int tf_cli_demo(int argc, char **argv);
int tf_cli_train(int argc, char **argv);
int tf_cli_sample(int argc, char **argv);
int tf_cli_eval(int argc, char **argv);
int tf_cli_plot(int argc, char **argv);
int tf_cli_profile(int argc, char **argv);
int tf_cli_mcmc(int argc, char **argv);
int tf_cli_efficiency(int argc, char **argv);

/* schema.c: the run config.  Its schema is the [model] keys of the config's model family
 * (common keys, then the family's; n_model of them) followed by tf_cli_run_keys ([physics]
 * first, then [mcmc], [data], [loss], [train], [output]). */
extern const tf_cfg_key tf_cli_run_keys[];
extern const int tf_cli_run_n;
typedef struct {
  const tf_model_type *type;
  const tf_cfg_key *keys; /* owned by schema.c, valid for the life of the process */
  int n, n_model;
} tf_cli_schema;
/* The schema of family `family` (TF_EINVAL with the known families named if there is none). */
int tf_cli_schema_get(const char *family, tf_cli_schema *out);
/* A run config file with --set overrides, checked against the schema of the family it names
 * (model.family, default coupling).  NULL on error (message set). */
tf_config *tf_cli_config_load(const char *path, int n_set, const char *const *set);
/* `tradeflow train --help-config`: the common [model] keys, each family's, then the rest
 * (malloc'd). */
char *tf_cli_help_config(void);
/* Trainer settings from [train] and [output] (paths and outputs are set by the caller). */
int tf_cli_train_config(const tf_config *c, tf_train_config *out);
/* The [model] section(s) of INI text (malloc'd). */
char *tf_cli_model_text(const char *text);
/* The [section] block(s) of INI text (malloc'd; "" when absent). */
char *tf_cli_section_text(const char *text, const char *section);
/* The [physics] entries open tf_cli_run_keys (tf_cli_physics_n of them), and the [mcmc]
 * entries follow them (tf_cli_mcmc_n). */
int tf_cli_physics_n(void);
int tf_cli_mcmc_n(void);
/* The model config recorded in a checkpoint (its [model] part); *full_text (optional) gets the
 * whole recorded config (malloc'd).  NULL on error (message set). */
tf_config *tf_cli_load_model(const char *checkpoint, char **full_text);

/* A model (any family), rebuilt from a checkpoint and its parameters loaded.  The weights are the
 * checkpoint's parameter average when it holds one (train.ema), else its parameters;
 * TRADEFLOW_WEIGHTS=raw in the environment selects the raw parameters (=average, the default,
 * the average where there is one).  `weights` says which for the commands' header lines: ""
 * (no average in the file), " (averaged parameters)" or " (raw parameters)". */
typedef struct {
  tf_config *model_cfg;
  tf_model *model;
  char *config_text;
  char name[64];
  const char *weights;
} tf_cli_model;
int tf_cli_model_open(tf_cli_model *m, const char *checkpoint);
void tf_cli_model_close(tf_cli_model *m);

/* physics_cfg.c: the target family of a run.  `cfg` holds [physics] (a full run config, or
 * one loaded with tf_cli_physics_load).  *out = NULL and TF_OK when physics.name is empty.
 * The condition range: physics.c_min/c_max/c0 where set, else the module's defaults; checked
 * to lie in the module's valid interval with c_min <= c0 <= c_max. */
typedef struct {
  double c_min, c_max, c0;
} tf_cli_range;
int tf_cli_physics_create(const tf_config *cfg, tf_physics **out, tf_cli_range *range);
/* Loss settings from [loss]; the range from `range` (NULL: physics.c_* as written). */
int tf_cli_loss_config(const tf_config *c, const tf_physics *phys, const tf_cli_range *range,
                       tf_loss_config *out);
/* The [physics] part of recorded config text (a checkpoint's), loaded against the schema. */
tf_config *tf_cli_physics_load(const char *text, const char *origin);
/* The physics module of checkpoint `m` (opened from `ckpt`) for a command that needs a target
 * (`why` completes "records no physics module: ..."), checked to have the flow's dimension and
 * cond (if finite) inside its valid range; *range (if not NULL) gets the run's condition range.
 * On TF_OK the caller owns *pc and *p (destroy both; on error they are NULL). */
int tf_cli_model_physics(const tf_cli_model *m, const char *ckpt, const char *why, double cond,
                         tf_config **pc, tf_physics **p, tf_cli_range *range);

/* args.c: a subcommand's options, parsed with getopt_long from a table.  name is the long
 * option without its dashes ("n" for --n).  out: int64_t * (I64), double * (F64), const char **
 * (STR), int * (FLAG, set to 1), double[max] with *n elements (F64_LIST, comma-separated),
 * const char *[max] with *n elements (MULTI: every occurrence).  lo, hi: the range of numbers
 * (and of each list element).  given, if not NULL, is incremented at every occurrence. */
typedef enum { TF_ARG_I64, TF_ARG_F64, TF_ARG_STR, TF_ARG_FLAG, TF_ARG_F64_LIST, TF_ARG_MULTI } tf_arg_kind;
typedef struct {
  const char *name;
  tf_arg_kind kind;
  void *out;
  double lo, hi;
  int max;
  int *n;
  int *given;
} tf_cli_arg;
/* Parses argv[1..argc) (argv[0] the subcommand): options by the table, positional arguments
 * into pos[0..max_pos) (*n_pos of them).  Returns -1 to go on, or the exit status to return
 * at once: TF_EXIT_OK after --help (usage on stdout), TF_EXIT_USAGE after one message naming
 * the bad argument and the usage on tf_cli_err().  Permutes argv. */
int tf_cli_args(const char *cmd, int argc, char **argv, const tf_cli_arg *args, int n_args,
                const char **pos, int max_pos, int *n_pos, void (*usage)(FILE *));

/* Option parsing: strict numbers with the option named in the message. */
int tf_cli_parse_i64(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi,
                     int64_t *out);
int tf_cli_parse_f64(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out);
/* A comma-separated list of at most `max` such numbers into out[0..*k); 1 on success, else 0
 * after one message naming the option and the offending value. */
int tf_cli_parse_f64_list(const char *cmd, const char *opt, const char *s, double lo,
                          double hi, int max, double *out, int *k);

/* Text output written atomically: the stream goes to "<path>.tmp.<pid>", which commit fsyncs
 * and renames over path, so a reader (or a rerun that skips finished outputs) never sees a
 * half-written file.  open/commit return TF_OK or an error naming the file; abort (also after
 * a failed commit: a no-op then) closes and removes the temporary. */
typedef struct {
  FILE *f;
  char path[4096], tmp[4200];
} tf_cli_afile;
int tf_cli_afile_open(tf_cli_afile *a, const char *path);
int tf_cli_afile_commit(tf_cli_afile *a);
void tf_cli_afile_abort(tf_cli_afile *a);

#endif
