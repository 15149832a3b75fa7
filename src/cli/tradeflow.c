/* tradeflow.c — the `tradeflow` executable: the front end of main.c with the built-in model
 * families. */
#include "cli.h"

int main(int argc, char **argv) { return tf_cli_main(argc, argv); }
