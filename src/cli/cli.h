/* Subcommands of the tradeflow front end and the helpers they share.  Each command returns a
 * process exit status: 0 success, 1 a failure during the work (I/O, numerics), 2 a usage or
 * config error found before any work started, 3 a run stopped on request (SIGTERM, SIGINT or
 * train.max_steps_per_run) with a checkpoint to resume from. */
#ifndef TRADEFLOW_CLI_H
#define TRADEFLOW_CLI_H

#include "tradeflow/config.h"
#include "tradeflow/flow.h"
#include "tradeflow/h5io.h"
#include "tradeflow/train.h"

enum { TF_EXIT_OK = 0, TF_EXIT_FAIL = 1, TF_EXIT_USAGE = 2, TF_EXIT_STOPPED = 3 };

int tf_cli_demo(int argc, char **argv);
int tf_cli_train(int argc, char **argv);
int tf_cli_sample(int argc, char **argv);
int tf_cli_eval(int argc, char **argv);

/* schema.c: the run config.  Its [model] entries come first (tf_cli_model_n of them). */
extern const tf_cfg_key tf_cli_schema[];
extern const int tf_cli_schema_n;
int tf_cli_model_n(void);
/* Flow settings from [model]; data_dim is the data's D (0: none at hand). */
int tf_cli_flow_config(const tf_config *c, int64_t data_dim, tf_flow_config *out);
/* Trainer settings from [train] and [output] (paths and outputs are set by the caller). */
int tf_cli_train_config(const tf_config *c, tf_train_config *out);
/* The [model] section(s) of INI text (malloc'd). */
char *tf_cli_model_text(const char *text);
/* The model config recorded in a checkpoint (its [model] part); *full_text (optional) gets the
 * whole recorded config (malloc'd).  NULL on error (message set). */
tf_config *tf_cli_load_model(const char *checkpoint, char **full_text);

/* A flow and its parameters, rebuilt from a checkpoint and loaded. */
typedef struct {
  tf_config *model_cfg;
  tf_flow_config fc;
  tf_params *params;
  tf_flow *flow;
  char *config_text;
  char name[64];
} tf_cli_model;
int tf_cli_model_open(tf_cli_model *m, const char *checkpoint);
void tf_cli_model_close(tf_cli_model *m);

/* Option parsing: strict numbers with the option named in the message. */
int tf_cli_parse_i64(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi,
                     int64_t *out);
int tf_cli_parse_f64(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out);

#endif
