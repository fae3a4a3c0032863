/* test_atomic_save.c - a checkpoint on disk survives SIGKILL at any moment.

   A child process saves checkpoints in a loop (version v = v0, v0+1, ...),
   acknowledging each completed save through a pipe.  The parent kills it
   with SIGKILL after a random delay, many times, and after every kill loads
   the file: it must load and validate completely, its content must be
   exactly the checkpoint its metadata names, and that version must be the
   last acknowledged one (old) or the next (new: killed between rename and
   acknowledgement).  The next child continues from there.  Done for
   safetensors (the checkpoint format) and .npy files, and once starting
   with no file at all.

   Killed writers leave their temporary file ("<path>.tmpXXXXXXXX") behind;
   the library cannot clean up after SIGKILL.  The test counts them (a
   kill that leaves one landed mid-write, which shows the test hits the
   window it is about) and removes them.

   Last, training itself is killed at random moments and resumed from the
   checkpoint on disk each time; the end state must equal an uninterrupted
   run bit for bit.  POSIX only (fork, kill). */
#define _POSIX_C_SOURCE 200809L
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NW (48 * 1024) /* floats per checkpoint tensor: 192 KiB */

static char g_dir[128];

static float value_of(int64_t v, int64_t i) { return (float)((double)(v % 100000) + (double)(i % 977) * 1e-3); }

static void fill(float *w, int64_t v) {
    int64_t i;
    for (i = 0; i < NW; i++) w[i] = value_of(v, i);
}

/* ---- one save / one check per format ---------------------------------- */
static bd_result save_st(bd_context *ctx, const char *path, const float *w, int64_t v) {
    bd_st_write_tensor t[2];
    bd_st_kv kv;
    char vs[32];
    memset(t, 0, sizeof t);
    t[0].name = "w"; t[0].data = w; t[0].ndim = 2; t[0].shape[0] = NW / 64; t[0].shape[1] = 64;
    t[1].name = "b"; t[1].data = w + 7; t[1].ndim = 1; t[1].shape[0] = 5;
    snprintf(vs, sizeof vs, "%lld", (long long)v);
    kv.key = "version"; kv.value = vs;
    return bd_safetensors_write(ctx, path, t, 2, &kv, 1);
}

/* -1: missing, -2: corrupt or wrong content, else the version */
static int64_t check_st(bd_context *ctx, const char *path) {
    bd_safetensors *st;
    const bd_st_tensor *w, *b;
    const char *vs;
    int64_t v, i, res;
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    if (bd_safetensors_load(ctx, path, &st) != BD_SUCCESS) {
        printf("  load failed: %s\n", bd_context_message(ctx));
        return -2;
    }
    w = bd_safetensors_find(st, "w");
    b = bd_safetensors_find(st, "b");
    vs = bd_safetensors_meta(st, "version");
    res = -2;
    if (w && b && vs && w->numel == NW && b->numel == 5 && st->n_tensors == 2) {
        v = strtoll(vs, NULL, 10);
        for (i = 0; i < NW; i++)
            if (w->data[i] != value_of(v, i)) break;
        if (i == NW && memcmp(b->data, w->data + 7, 5 * sizeof(float)) == 0) res = v;
    }
    bd_safetensors_free(st);
    return res;
}

static bd_result save_npy(bd_context *ctx, const char *path, const float *w, int64_t v) {
    int64_t shape[2] = {NW / 32, 32};
    (void)v;
    return bd_npy_write(ctx, path, w, 2, shape);
}
static int64_t check_npy(bd_context *ctx, const char *path) {
    bd_npy a;
    int64_t v, i;
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    if (bd_npy_read(ctx, path, &a) != BD_SUCCESS) {
        printf("  npy read failed: %s\n", bd_context_message(ctx));
        return -2;
    }
    if (a.numel != NW || a.ndim != 2) { bd_npy_free(ctx, &a); return -2; }
    v = (int64_t)a.data[0]; /* value_of(v, 0) = v % 100000 */
    for (i = 0; i < NW; i++)
        if (a.data[i] != value_of(v, i)) break;
    bd_npy_free(ctx, &a);
    return i == NW ? v : -2;
}

typedef bd_result (*save_fn)(bd_context *, const char *, const float *, int64_t);
typedef int64_t (*check_fn)(bd_context *, const char *);

static void child_loop(save_fn save, const char *path, int64_t v0, int fd) {
    bd_context_config cc = bd_context_config_init();
    bd_context *ctx;
    float *w = (float *)malloc(NW * sizeof(float));
    int64_t v;
    if (!w || bd_context_init(&cc, &ctx) != BD_SUCCESS) _exit(3);
    for (v = v0;; v++) {
        fill(w, v);
        if (save(ctx, path, w, v) != BD_SUCCESS) _exit(4);
        if (write(fd, &v, sizeof v) != (ssize_t)sizeof v) _exit(5);
    }
}

static int remove_temps(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    int n = 0;
    if (!d) return 0;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            remove(p);
            n++;
        }
    closedir(d);
    return n;
}

static void sleep_us(long us) {
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* kills: how many children to kill; start_empty: no file before the first */
static void kill_loop(const char *name, save_fn save, check_fn check, int kills, int start_empty, uint64_t seed) {
    bd_context_config cc = bd_context_config_init();
    bd_context *ctx;
    char path[256];
    float *w = (float *)malloc(NW * sizeof(float));
    bd_rng rng = bd_rng_init(seed);
    int64_t on_disk, acked, v;
    int k, bad = 0, mid_write = 0, old = 0, newer = 0, total_saves = 0;
    if (!w || bd_context_init(&cc, &ctx) != BD_SUCCESS) { BDT_CHECK(0); free(w); return; }
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    remove(path);
    on_disk = -1;
    if (!start_empty) {
        fill(w, 0);
        BDT_CHECK(save(ctx, path, w, 0) == BD_SUCCESS);
        on_disk = 0;
    }
    /* the kill moments are random: if none of the planned kills landed
       inside a save (slow runs, e.g. under valgrind), keep going until one
       does, up to 20x the plan */
    for (k = 0; k < kills || (mid_write == 0 && k < 20 * kills); k++) {
        int fds[2], st;
        pid_t pid;
        ssize_t got;
        /* kill after 0..25 ms: from before the first byte to many saves in */
        long delay = (long)(bd_rng_uniform(&rng) * 25000.0);
        if (pipe(fds) != 0) { BDT_CHECK(0); break; }
        fflush(stdout);
        pid = fork();
        if (pid < 0) { BDT_CHECK(0); close(fds[0]); close(fds[1]); break; }
        if (pid == 0) {
            close(fds[0]);
            child_loop(save, path, on_disk + 1, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        sleep_us(delay);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
            BDT_CHECKF(0, "%s: child %d ended by itself (status %d)", name, k, st);
            bad++;
        }
        acked = on_disk;
        while ((got = read(fds[0], &v, sizeof v)) == (ssize_t)sizeof v) {
            acked = v;
            total_saves++;
        }
        close(fds[0]);
        v = check(ctx, path);
        if (remove_temps(g_dir) > 0) mid_write++;
        if (v == acked) old++;
        else if (v == acked + 1) newer++;
        else {
            bad++;
            BDT_CHECKF(0, "%s kill %d after %ld us: file holds version %lld, last acknowledged %lld", name, k, delay,
                       (long long)v, (long long)acked);
        }
        if (v >= 0) on_disk = v;
        else if (v == -2) break;
    }
    printf("  %s: %d kills, %d saves completed, file = last acked %d times, = the one in flight %d times, "
           "%d kills mid-write, %d bad\n", name, k, total_saves, old, newer, mid_write, bad);
    BDT_CHECKF(mid_write > 0, "%s: no kill landed while a save was in progress", name);
    remove(path);
    bd_context_free(ctx);
    free(w);
}


/* ---- training killed and resumed, again and again ----------------------
   A child trains an MLP and writes a full checkpoint (bd_model_save with
   the trainer: EMA, raw weights, Adam moments and step, both RNG streams)
   after every step.  It is killed at random moments; each new child
   resumes from whatever checkpoint is on disk.  When the step count is
   reached, the weights, EMA and Adam state on disk must equal those of one
   uninterrupted run bit for bit: a kill never loses more than the step in
   flight, and resuming never changes the trajectory. */
#define RD 4
#define RB 16
static bd_result ring(void *ud, float *x, int64_t n, bd_rng *rng) {
    int64_t i, j;
    (void)ud;
    for (i = 0; i < n; i++) {
        double a = 2.0 * BD__PI * bd_rng_uniform(rng);
        for (j = 0; j < RD; j++) x[i * RD + j] = (float)(j % 2 ? sin(a + (double)j) : cos(a + (double)j));
    }
    return BD_SUCCESS;
}
static bd_trainer_config resume_tc(void) {
    bd_trainer_config tc = bd_trainer_config_init();
    tc.seed = 4242;
    tc.adam.lr = 3e-3;
    tc.adam.warmup_steps = 5;
    return tc;
}
/* a fresh model + trainer, or both resumed from path when it exists */
static bd_result resume_open(bd_context *ctx, const char *path, bd_model **m, bd_trainer **tr) {
    bd_trainer_config tc = resume_tc();
    struct stat sb;
    bd_result r;
    *m = NULL; *tr = NULL;
    if (stat(path, &sb) == 0) {
        if ((r = bd_model_load(ctx, path, m)) != BD_SUCCESS) return r;
        if ((r = bd_trainer_init(ctx, (*m)->net, &tc, RB, tr)) != BD_SUCCESS) return r;
        return bd_model_resume(ctx, path, *m, *tr);
    } else {
        bd_mlp_config mc = bd_mlp_config_init(RD);
        bd_rng rng = bd_rng_init(17);
        bd_denoiser *net;
        mc.hidden = 32; mc.depth = 2; mc.temb_dim = 8;
        if ((r = bd_mlp_create(ctx, &mc, &rng, &net)) != BD_SUCCESS) return r;
        if ((r = bd_model_init(ctx, net, BD_PARAM_V, BD_SCHEDULE_COSINE, m)) != BD_SUCCESS) return r;
        return bd_trainer_init(ctx, (*m)->net, &tc, RB, tr);
    }
}

/* field by field: the struct has padding */
static int rng_same(const bd_rng *a, const bd_rng *b) {
    return memcmp(a->s, b->s, sizeof a->s) == 0 && a->has_spare == b->has_spare &&
           (!a->has_spare || memcmp(&a->spare, &b->spare, sizeof a->spare) == 0);
}

static void test_kill_training_and_resume(void) {
    bd_context_config cc = bd_context_config_init();
    bd_context *ctx;
    bd_model *ref = NULL, *m = NULL;
    bd_trainer *rtr = NULL, *tr = NULL;
    char path[256];
    bd_rng rng = bd_rng_init(5);
    const int64_t T = getenv("TEST_QUICK") ? 25 : 80;
    int kills = 0, resumes = 0, guard = 0, same = 0, stalled = 0;
    int64_t last = -1;
    /* longest delay before the kill; grows while kills make no progress
       (a slow machine or valgrind: loading and one step can take longer) */
    double max_delay = getenv("TEST_QUICK") ? 4000.0 : 12000.0;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) { BDT_CHECK(0); return; }
    snprintf(path, sizeof path, "%s/train.safetensors", g_dir);
    remove(path);
    /* the uninterrupted reference (no file: starts fresh) */
    BDT_CHECK(resume_open(ctx, "/nonexistent/none", &ref, &rtr) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_run(rtr, T, RB, ring, NULL, NULL, NULL) == BD_SUCCESS);
    while (guard++ < 2000) {
        pid_t pid;
        int st;
        long delay = (long)(bd_rng_uniform(&rng) * max_delay);
        fflush(stdout);
        pid = fork();
        if (pid < 0) { BDT_CHECK(0); break; }
        if (pid == 0) {
            bd_context *c;
            bd_model *cm;
            bd_trainer *ct;
            if (bd_context_init(&cc, &c) != BD_SUCCESS) _exit(3);
            if (resume_open(c, path, &cm, &ct) != BD_SUCCESS) _exit(4);
            while (ct->adam.step < T) {
                if (bd_trainer_run(ct, 1, RB, ring, NULL, NULL, NULL) != BD_SUCCESS) _exit(5);
                if (bd_model_save(c, cm, path, ct) != BD_SUCCESS) _exit(6);
            }
            _exit(0);
        }
        sleep_us(delay);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        remove_temps(g_dir);
        if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
            BDT_CHECKF(0, "training child failed with status %d", WEXITSTATUS(st));
            break;
        }
        if (WIFSIGNALED(st)) kills++;
        /* whatever is on disk must resume */
        if (resume_open(ctx, path, &m, &tr) != BD_SUCCESS) {
            BDT_CHECKF(0, "cannot resume after kill %d: %s", kills, bd_context_message(ctx));
            bd_trainer_free(tr);
            bd_model_free(m);
            break;
        }
        resumes++;
        BDT_CHECKF(tr->adam.step >= last, "checkpoint went back from step %lld to %lld", (long long)last,
                   (long long)tr->adam.step);
        if (tr->adam.step == last && ++stalled >= 3 && max_delay < 5e6) {
            max_delay *= 2.0;
            stalled = 0;
        }
        last = tr->adam.step;
        if (tr->adam.step >= T) {
            size_t b = (size_t)m->net->n_params * sizeof(float);
            same = tr->adam.step == T && memcmp(m->net->params, ref->net->params, b) == 0 &&
                   memcmp(tr->ema, rtr->ema, b) == 0 && memcmp(tr->adam.m, rtr->adam.m, b) == 0 &&
                   memcmp(tr->adam.v, rtr->adam.v, b) == 0 &&
                   rng_same(&tr->rng, &rtr->rng) && rng_same(&tr->data_rng, &rtr->data_rng);
            bd_trainer_free(tr);
            bd_model_free(m);
            break;
        }
        bd_trainer_free(tr);
        bd_model_free(m);
        tr = NULL; m = NULL;
    }
    printf("  %lld steps: %d kills, %d resumes (kill delays up to %.0f ms); final state %s the uninterrupted run\n",
           (long long)T, kills, resumes, max_delay / 1000.0, same ? "bit-identical to" : "DIFFERENT from");
    BDT_CHECK(same);
    BDT_CHECKF(kills >= 2, "only %d kills landed", kills);
    remove(path);
    bd_trainer_free(rtr);
    bd_model_free(ref);
    bd_context_free(ctx);
}

static int kills_wanted(void) { return getenv("TEST_QUICK") ? 30 : 150; }

static void test_kill_safetensors(void) { kill_loop("ck.safetensors", save_st, check_st, kills_wanted(), 0, 1); }
static void test_kill_npy(void) { kill_loop("x.npy", save_npy, check_npy, kills_wanted() / 3, 0, 2); }
static void test_kill_first_save(void) {
    /* no file before: after the kill it is absent (-1 == acked -1) or complete */
    kill_loop("first.safetensors", save_st, check_st, 10, 1, 3);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "build/atomic_%ld", (long)getpid());
    mkdir("build", 0777);
    if (mkdir(g_dir, 0777) != 0) { printf("cannot create %s\n", g_dir); return 1; }
    BDT_RUN(test_kill_safetensors);
    BDT_RUN(test_kill_npy);
    BDT_RUN(test_kill_first_save);
    BDT_RUN(test_kill_training_and_resume);
    (void)bdt_close_ratio;
    remove_temps(g_dir);
    rmdir(g_dir);
    return BDT_SUMMARY("test_atomic_save");
}
