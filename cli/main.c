/* main.c - the `bdense` command: subcommand dispatch.  This file holds the
   one BDENSE_IMPLEMENTATION of the program. */
#include "cli.h"

#include <string.h>

#define BDENSE_IMPLEMENTATION
#include "bdense.h"

typedef struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_command;

static const cli_command cli_commands[] = {
    {"init", cmd_init, "write a randomly initialised model (--config small|tiny)"},
    {"train", cmd_train, "train a diffusion teacher on builtin shapes, Fashion-MNIST or .npy data"},
    {"sample", cmd_sample, "draw samples from a teacher or a distilled student (.npy + PNG grid)"},
    {"forward", cmd_forward, "one network call on given inputs (all branches), for conformance checks"},
    {"info", cmd_info, "show a checkpoint's configuration, parameter count and training step"},
    {"eval", cmd_eval, "sample-quality number: Frechet distance (trained classifier or random features)"},
    {"distill", cmd_distill, "distil a teacher into a few-step (B-DENSE) student"},
    {"trajectories", cmd_trajectories, "cache teacher ODE trajectories to .npy for distillation"},
    {"compare", cmd_compare, "sample teacher and students from the same noise and print a table"},
    {"classifier", cmd_classifier, "train the labelled feature network of bdense eval --features (FD-CLF)"},
    {"data", cmd_data, "write images of a data source (builtin shapes, Fashion-MNIST, .npy) as .npy / PNG"},
};
#define CLI_NCOMMANDS (sizeof cli_commands / sizeof cli_commands[0])

static void cli_main_usage(FILE *f) {
    size_t i;
    fprintf(f,
            "bdense %s - diffusion training, B-DENSE distillation and fast sampling on the CPU\n\n"
            "usage: bdense <command> [options]     (bdense <command> --help for its options)\n\n"
            "commands:\n",
            BDENSE_VERSION_STRING);
    for (i = 0; i < CLI_NCOMMANDS; i++) fprintf(f, "  %-14s%s\n", cli_commands[i].name, cli_commands[i].summary);
    fprintf(f,
            "\nexample:\n"
            "  bdense train --data builtin --config tiny --steps 2000 --out teacher.safetensors\n"
            "  bdense sample --ckpt teacher.safetensors --n 64 --sampler dpmpp2m --steps 20 --grid s.png\n");
}

int main(int argc, char **argv) {
    size_t i;
    if (argc < 2) {
        cli_main_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        cli_main_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("bdense %s\n", BDENSE_VERSION_STRING);
        return 0;
    }
    for (i = 0; i < CLI_NCOMMANDS; i++)
        if (strcmp(argv[1], cli_commands[i].name) == 0) return cli_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "bdense: error: unknown command '%s'\n\n", argv[1]);
    cli_main_usage(stderr);
    return 2;
}
