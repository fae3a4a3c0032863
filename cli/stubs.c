/* stubs.c - commands whose library parts are not merged yet. */
#include "cli.h"
#define CLI_STUB(fn, name) int fn(int argc, char **argv) { (void)argc; (void)argv; return cli_fail(name, "not implemented yet"); }
CLI_STUB(cmd_init, "init")
CLI_STUB(cmd_info, "info")
CLI_STUB(cmd_forward, "forward")
CLI_STUB(cmd_train, "train")
CLI_STUB(cmd_sample, "sample")
CLI_STUB(cmd_eval, "eval")
CLI_STUB(cmd_distill, "distill")
CLI_STUB(cmd_trajectories, "trajectories")
CLI_STUB(cmd_compare, "compare")
