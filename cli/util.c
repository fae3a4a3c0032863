/* util.c - option parsing, messages, progress bar, file helpers. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(BDENSE_USE_CBLAS)
#include <cblas.h>
#endif

/* ---------------------------------------------------------------------- */
/* option parsing                                                         */
/* ---------------------------------------------------------------------- */
void cli_args_init(cli_args *a, const char *cmd, const char *summary, const char *details) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->summary = summary;
    a->details = details;
    a->threads = 0;
    a->device = NULL;
    a->quiet = 0;
}

static cli_opt *cli__add(cli_args *a, const char *name, cli_type type, void *dst, const char *meta,
                         const char *help) {
    cli_opt *o;
    if (a->n >= CLI_MAX_OPTS) {
        fprintf(stderr, "bdense: internal error: too many options for %s\n", a->cmd);
        exit(70);
    }
    o = &a->opts[a->n++];
    memset(o, 0, sizeof *o);
    o->name = name;
    o->type = type;
    o->dst = dst;
    o->meta = meta;
    o->help = help;
    return o;
}

cli_opt *cli_add_str(cli_args *a, const char *name, const char **dst, const char *meta, const char *help) {
    cli_opt *o = cli__add(a, name, CLI_STR, (void *)dst, meta, help);
    if (*dst) snprintf(o->defval, sizeof o->defval, "%s", *dst);
    return o;
}
cli_opt *cli_add_int(cli_args *a, const char *name, int64_t *dst, const char *meta, const char *help) {
    cli_opt *o = cli__add(a, name, CLI_INT, (void *)dst, meta, help);
    snprintf(o->defval, sizeof o->defval, "%lld", (long long)*dst);
    return o;
}
/* a seed: any integer in 0..2^63-1 (negative seeds are refused, not wrapped) */
cli_opt *cli_add_seed(cli_args *a, int64_t *dst, const char *help) {
    return cli_range(cli_add_int(a, "seed", dst, "S", help), 0, 9223372036854775807.0);
}
cli_opt *cli_add_num(cli_args *a, const char *name, double *dst, const char *meta, const char *help) {
    cli_opt *o = cli__add(a, name, CLI_NUM, (void *)dst, meta, help);
    snprintf(o->defval, sizeof o->defval, "%g", *dst);
    return o;
}
cli_opt *cli_add_flag(cli_args *a, const char *name, int *dst, const char *help) {
    return cli__add(a, name, CLI_FLAG, (void *)dst, NULL, help);
}
cli_opt *cli_add_choice(cli_args *a, const char *name, const char **dst, const char *choices,
                        const char *help) {
    cli_opt *o = cli__add(a, name, CLI_CHOICE, (void *)dst, NULL, help);
    o->choices = choices;
    if (*dst) snprintf(o->defval, sizeof o->defval, "%s", *dst);
    return o;
}
cli_opt *cli_add_list(cli_args *a, const char *name, cli_list *dst, const char *meta, const char *help) {
    return cli__add(a, name, CLI_LIST, (void *)dst, meta, help);
}
cli_opt *cli_range(cli_opt *o, double lo, double hi) {
    o->lo = lo;
    o->hi = hi;
    o->has_range = 1;
    return o;
}
cli_opt *cli_nodefault(cli_opt *o) {
    o->defval[0] = 0;
    return o;
}
cli_opt *cli_required(cli_opt *o) {
    o->required = 1;
    return o;
}

int cli_choice_index(const char *choices, const char *s) {
    const char *p = choices;
    int i = 0;
    size_t n = strlen(s);
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0) return i;
        i++;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

static size_t cli__edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), i, j;
    size_t row[64 + 1];
    if (lb > 64) lb = 64;
    for (j = 0; j <= lb; j++) row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0], tmp;
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t best = diag + (a[i - 1] == b[j - 1] ? 0u : 1u);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            tmp = row[j];
            row[j] = best;
            diag = tmp;
        }
    }
    return row[lb];
}

static const char *cli__type_meta(const cli_opt *o) {
    if (o->meta) return o->meta;
    switch (o->type) {
    case CLI_INT: return "N";
    case CLI_NUM: return "X";
    case CLI_STR: return "S";
    case CLI_LIST: return "S...";
    case CLI_CHOICE: return o->choices;
    default: return "";
    }
}

void cli_usage(const cli_args *a, FILE *f) {
    int i;
    fprintf(f, "usage: bdense %s [options]\n\n%s\n\noptions:\n", a->cmd, a->summary);
    for (i = 0; i < a->n; i++) {
        const cli_opt *o = &a->opts[i];
        char head[160];
        if (o->type == CLI_FLAG)
            snprintf(head, sizeof head, "  --%s", o->name);
        else
            snprintf(head, sizeof head, "  --%s %s", o->name, cli__type_meta(o));
        if (strlen(head) > 24)
            fprintf(f, "%s\n%26s", head, "");
        else
            fprintf(f, "%-26s", head);
        fprintf(f, "%s", o->help ? o->help : "");
        if (o->required)
            fprintf(f, " (required)");
        else if (o->defval[0])
            fprintf(f, " [default: %s]", o->defval);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-24s%s\n", "--threads N", "compute threads (default: all cores, BDENSE_THREADS)");
    fprintf(f, "  %-24s%s\n", "--device cpu|cuda", "where train, sample and distill compute (cuda: make CUDA=1)");
    fprintf(f, "  %-24s%s\n", "--quiet", "no progress output");
    fprintf(f, "  %-24s%s\n", "--help", "this text");
    if (a->details) fprintf(f, "\n%s\n", a->details);
}

static cli_opt *cli__find(cli_args *a, const char *name, size_t len) {
    int i;
    for (i = 0; i < a->n; i++)
        if (strlen(a->opts[i].name) == len && strncmp(a->opts[i].name, name, len) == 0) return &a->opts[i];
    return NULL;
}

int cli_given(const cli_args *a, const char *name) {
    int i;
    for (i = 0; i < a->n; i++)
        if (strcmp(a->opts[i].name, name) == 0) return a->opts[i].seen;
    return 0;
}

/* The one number parser of every numeric option: plain decimal only
   ([+-]digits[.digits][e[+-]digits]); no hex, inf, nan, spaces or empty
   strings.  0 = ok, 1 = not a number, 2 = beyond a double (overflow, or an
   underflow to 0 or a denormal). */
int cli_parse_number(const char *v, double *out) {
    const char *p = v;
    char *end = NULL;
    double x;
    int digits = 0;
    if (!v) return 1;
    if (*p == '+' || *p == '-') p++;
    for (; *p >= '0' && *p <= '9'; p++) digits++;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++) digits++;
    if (!digits) return 1;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return 1;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p) return 1;
    errno = 0;
    x = strtod(v, &end);
    if (end == v || *end) return 1;
    if (errno == ERANGE || !isfinite(x)) return 2;
    *out = x;
    return 0;
}

/* an integer: decimal digits, or an exact integer in the number form
   (1e4); 0 = ok, 1 = not an integer, 2 = beyond int64 */
int cli_parse_integer(const char *v, int64_t *out) {
    const char *p = v;
    double d = 0;
    int e;
    if (!v) return 1;
    if (*p == '+' || *p == '-') p++;
    if (*p >= '0' && *p <= '9') {
        while (*p >= '0' && *p <= '9') p++;
        if (!*p) {
            char *end;
            long long x;
            errno = 0;
            x = strtoll(v, &end, 10);
            if (errno == ERANGE) return 2;
            if (*end) return 1;
            *out = (int64_t)x;
            return 0;
        }
    }
    e = cli_parse_number(v, &d);
    if (e) return e;
    if (d != floor(d)) return 1;
    if (fabs(d) > 9.2e18) return 2;
    *out = (int64_t)d;
    return 0;
}

static int cli__set(cli_args *a, cli_opt *o, const char *v) {
    switch (o->type) {
    case CLI_STR:
        if (!*v) {
            fprintf(stderr, "bdense %s: error: --%s needs a non-empty value\n", a->cmd, o->name);
            return 2;
        }
        *(const char **)o->dst = v;
        return 0;
    case CLI_CHOICE:
        if (cli_choice_index(o->choices, v) < 0) {
            fprintf(stderr, "bdense %s: error: --%s '%s' is not one of %s\n", a->cmd, o->name, v,
                    o->choices);
            return 2;
        }
        *(const char **)o->dst = v;
        return 0;
    case CLI_INT: {
        int64_t x = 0;
        int e = cli_parse_integer(v, &x);
        if (e == 2 || (e == 0 && o->has_range && ((double)x < o->lo || (double)x > o->hi))) {
            if (o->has_range)
                fprintf(stderr, "bdense %s: error: --%s %s is out of range: expected an integer in %.15g..%.15g\n",
                        a->cmd, o->name, v, o->lo, o->hi);
            else
                fprintf(stderr, "bdense %s: error: --%s %s does not fit in a 64-bit integer\n", a->cmd, o->name, v);
            return 2;
        }
        if (e) {
            fprintf(stderr, "bdense %s: error: --%s expects an integer (decimal digits), got '%s'\n", a->cmd, o->name,
                    v);
            return 2;
        }
        *(int64_t *)o->dst = x;
        return 0;
    }
    case CLI_NUM: {
        double x = 0;
        int e = cli_parse_number(v, &x);
        if (e == 2) {
            fprintf(stderr, "bdense %s: error: --%s %s is beyond the range of a double\n", a->cmd, o->name, v);
            return 2;
        }
        if (e) {
            fprintf(stderr, "bdense %s: error: --%s expects a finite decimal number (e.g. 0.5, 2e-4), got '%s'\n",
                    a->cmd, o->name, v);
            return 2;
        }
        if (o->has_range && (x < o->lo || x > o->hi)) {
            fprintf(stderr, "bdense %s: error: --%s %s is out of range: expected a number in [%g, %g]\n", a->cmd,
                    o->name, v, o->lo, o->hi);
            return 2;
        }
        *(double *)o->dst = x;
        return 0;
    }
    default: break;
    }
    return 2;
}

int cli_parse(cli_args *a, int argc, char **argv) {
    int i;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *name, *eq, *val = NULL;
        size_t len;
        cli_opt *o;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cli_usage(a, stdout);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == 0) {
            fprintf(stderr, "bdense %s: error: unexpected argument '%s' (options start with --; see bdense %s --help)\n",
                    a->cmd, arg, a->cmd);
            return 2;
        }
        name = arg + 2;
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        if (eq) val = eq + 1;
        if (len == 5 && strncmp(name, "quiet", 5) == 0 && !eq) {
            a->quiet = 1;
            continue;
        }
        if (len == 6 && strncmp(name, "device", 6) == 0) {
            if (!val) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "bdense %s: error: --device needs a value (cpu or cuda)\n", a->cmd);
                    return 2;
                }
                val = argv[++i];
            }
            if (strcmp(val, "cpu") != 0 && strcmp(val, "cuda") != 0) {
                fprintf(stderr, "bdense %s: error: --device expects cpu or cuda, got '%s'\n", a->cmd, val);
                return 2;
            }
            if (strcmp(val, "cuda") == 0 && strcmp(a->cmd, "train") != 0 && strcmp(a->cmd, "sample") != 0 &&
                strcmp(a->cmd, "distill") != 0) {
                fprintf(stderr, "bdense %s: error: --device cuda is available for train, sample and distill; "
                        "%s runs on the CPU\n", a->cmd, a->cmd);
                return 2;
            }
            a->device = val;
            continue;
        }
        if (len == 7 && strncmp(name, "threads", 7) == 0) {
            int64_t t64 = 0;
            if (!val) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "bdense %s: error: --threads needs a value\n", a->cmd);
                    return 2;
                }
                val = argv[++i];
            }
            if (cli_parse_integer(val, &t64) != 0 || t64 < 1 || t64 > 256) {
                fprintf(stderr, "bdense %s: error: --threads expects an integer in 1..256, got '%s'\n", a->cmd, val);
                return 2;
            }
            a->threads = t64;
            continue;
        }
        o = cli__find(a, name, len);
        if (!o) {
            int j;
            const char *best = NULL;
            size_t bestd = 3;
            char buf[128];
            snprintf(buf, sizeof buf, "%.*s", (int)(len < 100 ? len : 100), name);
            for (j = 0; j < a->n; j++) {
                size_t d = cli__edit_distance(buf, a->opts[j].name);
                if (d < bestd || (strncmp(a->opts[j].name, buf, strlen(buf)) == 0 && !best)) {
                    bestd = d;
                    best = a->opts[j].name;
                }
            }
            if (best)
                fprintf(stderr, "bdense %s: error: unknown option --%s; did you mean --%s? (bdense %s --help lists all)\n",
                        a->cmd, buf, best, a->cmd);
            else
                fprintf(stderr, "bdense %s: error: unknown option --%s (bdense %s --help lists all)\n", a->cmd, buf,
                        a->cmd);
            return 2;
        }
        if (o->seen && o->type != CLI_LIST) {
            fprintf(stderr, "bdense %s: error: --%s given twice\n", a->cmd, o->name);
            return 2;
        }
        o->seen = 1;
        if (o->type == CLI_FLAG) {
            if (val) {
                fprintf(stderr, "bdense %s: error: --%s is a flag and takes no value\n", a->cmd, o->name);
                return 2;
            }
            *(int *)o->dst = 1;
            continue;
        }
        if (o->type == CLI_LIST) {
            cli_list *l = (cli_list *)o->dst;
            if (val) {
                if (l->n >= CLI_MAX_LIST) goto too_many;
                l->items[l->n++] = val;
            }
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                if (l->n >= CLI_MAX_LIST) goto too_many;
                l->items[l->n++] = argv[++i];
            }
            if (l->n == 0) {
                fprintf(stderr, "bdense %s: error: --%s needs at least one value\n", a->cmd, o->name);
                return 2;
            }
            continue;
        too_many:
            fprintf(stderr, "bdense %s: error: --%s takes at most %d values\n", a->cmd, o->name, CLI_MAX_LIST);
            return 2;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "bdense %s: error: --%s needs a value (%s)\n", a->cmd, o->name, cli__type_meta(o));
                return 2;
            }
            val = argv[++i];
        }
        if (cli__set(a, o, val)) return 2;
    }
    for (i = 0; i < a->n; i++) {
        if (a->opts[i].required && !a->opts[i].seen) {
            fprintf(stderr, "bdense %s: error: --%s %s is required (see bdense %s --help)\n", a->cmd,
                    a->opts[i].name, cli__type_meta(&a->opts[i]), a->cmd);
            return 2;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* messages, context                                                      */
/* ---------------------------------------------------------------------- */
int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "bdense %s: error: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 1;
}

int cli_fail_bd(const char *cmd, bd_context *ctx, bd_result r, const char *what) {
    const char *msg = ctx ? bd_context_message(ctx) : "";
    if (msg && *msg)
        return cli_fail(cmd, "%s: %s (%s)", what, msg, bd_result_string(r));
    return cli_fail(cmd, "%s: %s", what, bd_result_string(r));
}

void cli_note(const cli_args *a, const char *fmt, ...) {
    va_list ap;
    if (a && a->quiet) return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

int cli_gpu(const cli_args *a, bd_context **gpu) {
    *gpu = NULL;
    if (!a->device || strcmp(a->device, "cuda") != 0) return 0;
#ifdef BDENSE_CUDA
    {
        bd_context_config cc = bd_context_config_init();
        bd_result r = bd_context_init(&cc, gpu);
        if (r != BD_SUCCESS) return cli_fail(a->cmd, "cannot create a context: %s", bd_result_string(r));
        r = bd_cuda_init(*gpu, 0);
        if (r != BD_SUCCESS) {
            cli_fail(a->cmd, "--device cuda: %s", bd_context_message(*gpu));
            bd_context_free(*gpu);
            *gpu = NULL;
            return 1;
        }
        return 0;
    }
#else
    return cli_fail(a->cmd, "--device cuda: this bdense was built without CUDA (build it with make CUDA=1)");
#endif
}

int cli_context(const cli_args *a, bd_context **ctx) {
    bd_context_config cc = bd_context_config_init();
    long threads = (long)a->threads;
    bd_result r;
    if (threads <= 0) {
        const char *env = getenv("BDENSE_THREADS");
        int64_t t64 = 0;
        if (env && *env) {
            if (cli_parse_integer(env, &t64) == 0 && t64 >= 1 && t64 <= 256)
                threads = (long)t64;
            else
                fprintf(stderr, "bdense %s: warning: BDENSE_THREADS='%s' is not an integer in 1..256; ignored\n",
                        a->cmd, env);
        }
    }
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? n : 1;
    }
    if (threads > 256) threads = 256;
    cc.n_threads = (int)threads;
    r = bd_context_init(&cc, ctx);
    if (r != BD_SUCCESS) return cli_fail(a->cmd, "cannot create a context: %s", bd_result_string(r));
#if defined(BDENSE_USE_CBLAS) && defined(OPENBLAS_VERSION)
    openblas_set_num_threads((int)threads);
#endif
    return 0;
}

/* ---------------------------------------------------------------------- */
/* time and progress                                                      */
/* ---------------------------------------------------------------------- */
double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_format_duration(char *buf, size_t n, double s) {
    long long t;
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "--:--");
        return;
    }
    t = (long long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%lld:%02lld", t / 60, t % 60);
}

void cli_progress_init(cli_progress *p, const char *label, int64_t first, int64_t total, int quiet) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->first = first;
    p->last = first;
    p->total = total;
    p->t0 = cli_now();
    p->quiet = quiet;
    p->tty = isatty(2) && !getenv("BDENSE_PLAIN_PROGRESS");
    /* a terminal shows the bar at once; a log file gets its first line
       after plain_every seconds (short jobs print only the final line) */
    p->last_print = p->tty ? -1e30 : p->t0;
    p->plain_every = 10.0;
    if (getenv("BDENSE_PROGRESS_EVERY")) {
        double e = -1;
        if (cli_parse_number(getenv("BDENSE_PROGRESS_EVERY"), &e) == 0 && e >= 0 && e <= 1e6) p->plain_every = e;
    }
}

double cli_progress_rate(const cli_progress *p, int64_t step) {
    double dt = cli_now() - p->t0;
    if (dt <= 0 || step <= p->first) return 0;
    return (double)(step - p->first) / dt;
}

static void cli__progress_print(cli_progress *p, int64_t step, const char *extra, int final) {
    char line[512], eta[48], el[32];
    double rate = cli_progress_rate(p, step), now = cli_now();
    double frac = p->total > 0 ? (double)step / (double)p->total : 0;
    int width = 24, filled, i, len;
    char bar[64];
    if (frac > 1) frac = 1;
    filled = (int)(frac * width + 0.5);
    for (i = 0; i < width; i++) bar[i] = i < filled ? '#' : '-';
    bar[width] = 0;
    cli_format_duration(el, sizeof el, now - p->t0);
    if (final)
        snprintf(eta, sizeof eta, "in %s", el);
    else if (rate > 0) {
        char d[24];
        cli_format_duration(d, sizeof d, (double)(p->total - step) / rate);
        snprintf(eta, sizeof eta, "ETA %s", d);
    } else
        snprintf(eta, sizeof eta, "ETA --:--");
    len = snprintf(line, sizeof line, "%s [%s] %lld/%lld %3d%%  %s%s%.2f it/s  %s", p->label, bar,
                   (long long)step, (long long)p->total, (int)(100 * frac), extra ? extra : "",
                   (extra && *extra) ? "  " : "", rate, eta);
    if (len < 0) len = 0;
    if (len > (int)sizeof line - 1) len = (int)sizeof line - 1;
    if (p->tty) {
        int pad = p->printed_len > len ? p->printed_len - len : 0;
        fprintf(stderr, "\r%s%*s%s", line, pad, "", final ? "\n" : "");
        p->printed_len = final ? 0 : len;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
    p->last_print = now;
}

void cli_progress_update(cli_progress *p, int64_t step, const char *extra) {
    double now;
    p->last = step;
    if (p->quiet) return;
    now = cli_now();
    if (p->tty) {
        if (now - p->last_print < 0.1) return;
    } else {
        if (now - p->last_print < p->plain_every) return;
    }
    cli__progress_print(p, step, extra, 0);
}

void cli_progress_done(cli_progress *p, const char *extra) {
    if (p->quiet) return;
    cli__progress_print(p, p->last, extra, 1);
}

/* ---------------------------------------------------------------------- */
/* files                                                                  */
/* ---------------------------------------------------------------------- */
int cli_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int cli_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int cli_prepare_output(const char *cmd, const char *path) {
    char dir[1024];
    char *slash, *p;
    if (!path) return 0;
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (!slash) return access(".", W_OK) == 0 ? 0 : cli_fail(cmd, "cannot write in the current directory");
    if (slash == dir) return 0;
    *slash = 0;
    for (p = dir + 1; *p; p++) { /* mkdir -p */
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            *p = '/';
            return cli_fail(cmd, "cannot create directory %s for %s: %s", dir, path, strerror(e));
        }
        *p = '/';
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return cli_fail(cmd, "cannot create directory %s for %s: %s", dir, path, strerror(errno));
    if (access(dir, W_OK) != 0) return cli_fail(cmd, "cannot write %s: directory %s is not writable", path, dir);
    return 0;
}

void cli_sibling(char *buf, size_t n, const char *path, const char *suffix) {
    static const char *exts[] = {".safetensors", ".npy", ".png", ".csv", NULL};
    size_t len = strlen(path);
    int i;
    for (i = 0; exts[i]; i++) {
        if (cli_ends_with(path, exts[i])) {
            len -= strlen(exts[i]);
            break;
        }
    }
    snprintf(buf, n, "%.*s%s", (int)len, path, suffix);
}

/* ---------------------------------------------------------------------- */
/* interrupts                                                             */
/* ---------------------------------------------------------------------- */
static volatile sig_atomic_t cli__interrupt_count = 0;

static void cli__on_signal(int sig) {
    cli__interrupt_count++;
    if (cli__interrupt_count >= 2) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

void cli_install_interrupt(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli__on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_interrupted(void) { return cli__interrupt_count > 0; }
