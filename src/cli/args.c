/* args.c — the option parsing every subcommand shares (getopt_long over a table).
 *
 * One prologue for all subcommands: --help/-h prints the usage on stdout; an unknown option,
 * an option without its value, a malformed or out-of-range number, or too many positional
 * arguments is one message on tf_cli_err() naming the option and the value, then the usage,
 * and exit status 2 before any work.  Options may come before or after the positional
 * arguments; "--" ends the options; "--opt=value" works for every option with a value.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int bad(const char *cmd, void (*usage)(FILE *), const char *fmt, const char *a,
               const char *b) {
  FILE *e = tf_cli_err();
  fprintf(e, "tradeflow %s: ", cmd);
  fprintf(e, fmt, a, b);
  fprintf(e, "\n\n");
  if (usage) usage(e);
  return TF_EXIT_USAGE;
}

static int take(const char *cmd, const tf_cli_arg *a, const char *val, void (*usage)(FILE *)) {
  char opt[80];
  snprintf(opt, sizeof opt, "--%s", a->name);
  if (a->given) ++*a->given;
  switch (a->kind) {
  case TF_ARG_I64: {
    /* ranges are doubles in the table; (double)INT64_MAX rounds up to 2^63 */
    const int64_t hi = a->hi >= 0x1p63 ? INT64_MAX : (int64_t)a->hi;
    return tf_cli_parse_i64(cmd, opt, val, (int64_t)a->lo, hi, a->out) ? -1 : TF_EXIT_USAGE;
  }
  case TF_ARG_F64:
    return tf_cli_parse_f64(cmd, opt, val, a->lo, a->hi, a->out) ? -1 : TF_EXIT_USAGE;
  case TF_ARG_F64_LIST:
    return tf_cli_parse_f64_list(cmd, opt, val, a->lo, a->hi, a->max, a->out, a->n)
               ? -1 : TF_EXIT_USAGE;
  case TF_ARG_STR:
    *(const char **)a->out = val;
    return -1;
  case TF_ARG_MULTI:
    if (*a->n == a->max) {
      char m[32];
      snprintf(m, sizeof m, "%d", a->max);
      return bad(cmd, usage, "%s is given more than %s times", opt, m);
    }
    ((const char **)a->out)[(*a->n)++] = val;
    return -1;
  case TF_ARG_FLAG:
    *(int *)a->out = 1;
    return -1;
  }
  return -1;
}

int tf_cli_args(const char *cmd, int argc, char **argv, const tf_cli_arg *args, int n_args,
                const char **pos, int max_pos, int *n_pos, void (*usage)(FILE *)) {
  struct option *lo = calloc((size_t)n_args + 2, sizeof *lo);
  if (!lo) {
    fprintf(tf_cli_err(), "tradeflow %s: out of memory\n", cmd);
    return TF_EXIT_FAIL;
  }
  enum { FIRST = 256 };
  for (int i = 0; i < n_args; i++) {
    lo[i].name = args[i].name;
    lo[i].has_arg = args[i].kind == TF_ARG_FLAG ? no_argument : required_argument;
    lo[i].val = FIRST + i;
  }
  lo[n_args].name = "help";
  lo[n_args].val = 'h';
  int status = -1;
  opterr = 0;  /* our messages, not getopt's */
  optind = 0;  /* a full reinitialisation (glibc): tf_cli_main may run more than once */
  while (status < 0) {
    const int c = getopt_long(argc, argv, ":h", lo, NULL);
    if (c == -1) break;
    /* the element just consumed (getopt moves the positional arguments, not the options) */
    const char *where = optind > 1 && optind <= argc ? argv[optind - 1] : "";
    if (c == 'h') {
      if (usage) usage(stdout);
      status = TF_EXIT_OK;
    } else if (c == ':') {
      char name[80];
      if (optopt >= FIRST && optopt < FIRST + n_args)
        snprintf(name, sizeof name, "--%s", args[optopt - FIRST].name);
      else
        snprintf(name, sizeof name, "%s", where);
      status = bad(cmd, usage, "option '%s' needs a value%s", name, "");
    } else if (c == '?') {
      status = bad(cmd, usage, "unknown or ambiguous option '%s'%s", where, "");
    } else {
      status = take(cmd, &args[c - FIRST], optarg, usage);
    }
  }
  free(lo);
  if (status >= 0) return status;
  *n_pos = 0;
  for (int i = optind; i < argc; i++) {
    if (*n_pos == max_pos) {
      char m[48];
      if (max_pos == 0) snprintf(m, sizeof m, "this command takes none");
      else snprintf(m, sizeof m, "at most %d", max_pos);
      return bad(cmd, usage, "unexpected argument '%s' (%s besides the options)", argv[i], m);
    }
    pos[(*n_pos)++] = argv[i];
  }
  return -1;
}
