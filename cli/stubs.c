/* stubs.c - while bd_model (unet branch) is not merged, the commands that
   need it say so.  Removed once CLI_HAVE_MODEL is gone. */
#include "cli.h"
#ifndef CLI_HAVE_MODEL
#define CLI_STUB(fn, name)                                                                                            \
    int fn(int argc, char **argv) {                                                                                   \
        (void)argc, (void)argv;                                                                                       \
        return cli_fail(name, "not available in this build yet (needs the UNet/bd_model branch)");                    \
    }
CLI_STUB(cmd_init, "init")
CLI_STUB(cmd_info, "info")
CLI_STUB(cmd_forward, "forward")
CLI_STUB(cmd_train, "train")
CLI_STUB(cmd_sample, "sample")
CLI_STUB(cmd_eval, "eval")
CLI_STUB(cmd_distill, "distill")
CLI_STUB(cmd_trajectories, "trajectories")
CLI_STUB(cmd_compare, "compare")
#else
typedef int cli__stubs_unused;
#endif
