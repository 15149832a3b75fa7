/* Subcommands of the tradeflow front end.  Each returns a process exit status. */
#ifndef TRADEFLOW_CLI_H
#define TRADEFLOW_CLI_H

int tf_cli_demo(int argc, char **argv);

#endif
