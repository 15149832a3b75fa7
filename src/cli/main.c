/* main.c — the `tradeflow` command: dispatch to subcommands (tf_cli_main).  Only the front end
 * exits.  The executable's main (tradeflow.c) is one line, so that a program bringing its
 * own model families can register them and run the same front end. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "tradeflow/error.h"
#include "tradeflow/tensor.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: tradeflow COMMAND [options]\n"
          "\n"
          "commands:\n"
          "  train CONFIG [--set section.key=value ...] [--resume]\n"
          "        train a flow: NLL, TRADE, reverse KL, reweighting (tradeflow train --help)\n"
          "  sample CHECKPOINT --n N --out FILE.h5 [--condition C]\n"
          "        draw samples with their log-densities (tradeflow sample --help)\n"
          "  eval CHECKPOINT --data FILE.h5 [--condition C]\n"
          "        NLL of the flow on samples, with errors (tradeflow eval --help)\n"
          "  eval CHECKPOINT [--conditions C1,C2,...] [--n N] [--out RESULT.h5]\n"
          "        ESS, log Z, KL and observables over conditions against the run's physics\n"
          "  plot RESULT.h5 [RESULT2.h5 ...] [--labels a,b,...] --out DIR\n"
          "        gnuplot plots of evaluation results against the condition\n"
          "  profile CHECKPOINT --condition C --out FILE.dat [--coord K] [--range A,B]\n"
          "        free-energy profile along one coordinate, reweighted, against the exact one\n"
          "  mcmc CONFIG [--set section.key=value ...]\n"
          "        reference Markov chains (HMC, MALA) of the config's physics at mcmc.conditions\n"
          "  efficiency CHECKPOINT --condition C [--n N] [--mcmc-n M]\n"
          "        effective samples per second: flow independence Metropolis against MCMC\n"
          "  demo [--steps N] [--seed S] [--batch B]\n"
          "        fit a small MLP to a 1-D function with the tensor engine (end-to-end check)\n"
          "  version\n"
          "        print the version and the network precision\n"
          "\n"
          "train and sample run on every rank of an MPI job (mpirun -np N tradeflow ..., srun\n"
          "tradeflow ...; docs/MPI.md); the other commands are serial.\n"
          "File layouts: docs/FILES.md.  Exit status: 0 success, 1 failure during the work,\n"
          "2 bad usage/config/input (nothing run), 3 stopped on request with a checkpoint.\n");
}

static int serial_only(const char *cmd) {
  if (tf_cli_dist()->size == 1) return 0;
  fprintf(tf_cli_err(), "tradeflow %s is serial: run it without mpirun/srun (or on one rank); "
          "only train and sample use several ranks\n", cmd);
  return 1;
}

static int dispatch(int argc, char **argv) {
  const char *cmd = argv[1];
  if (!strcmp(cmd, "train")) return tf_cli_train(argc - 1, argv + 1);
  if (!strcmp(cmd, "sample")) return tf_cli_sample(argc - 1, argv + 1);
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("tradeflow %s (network precision %s)\n", TF_VERSION_STRING, TF_REAL_NAME);
    return 0;
  }
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  if (serial_only(cmd)) return TF_EXIT_USAGE;
  if (!strcmp(cmd, "demo")) return tf_cli_demo(argc - 1, argv + 1);
  if (!strcmp(cmd, "eval")) return tf_cli_eval(argc - 1, argv + 1);
  if (!strcmp(cmd, "plot")) return tf_cli_plot(argc - 1, argv + 1);
  if (!strcmp(cmd, "profile")) return tf_cli_profile(argc - 1, argv + 1);
  if (!strcmp(cmd, "mcmc")) return tf_cli_mcmc(argc - 1, argv + 1);
  if (!strcmp(cmd, "efficiency")) return tf_cli_efficiency(argc - 1, argv + 1);
  fprintf(stderr, "tradeflow: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}

int tf_cli_main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (tf_cli_dist_init(&argc, &argv) != TF_OK) {
    fprintf(stderr, "tradeflow: %s\n", tf_errmsg());
    return TF_EXIT_FAIL;
  }
  const int status = dispatch(argc, argv);
  tf_cli_dist_finalize();
  return status;
}
