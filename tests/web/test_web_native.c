/* test_web_native.c - the browser demo's C side (web/bdense_web.c), built
   natively (tests/web/run.sh: under ASan + UBSan), so the functions the
   page calls and the array layouts it draws from are checked without a
   browser: bad arguments fail with a message; training lowers the loss;
   the teacher's paths start at the drawn noise; after distillation both
   students beat the teacher's own DDIM at the same NFE; every recorded
   jump starts where the walk is, its target is the teacher state at
   sub-step i*Kt + (k+1)*Kt/K, and the final branch's landing is the next
   step's start. */
#include "../../web/bdense_web.c"
#include "../bdtest.h"

static int all_finite(const float *x, long n) {
    long i;
    for (i = 0; i < n; i++)
        if (!(x[i] == x[i]) || fabs((double)x[i]) > 1e6) return 0;
    return 1;
}

static void test_bad_arguments(void) {
    BDT_CHECK(bdw_init(2, 1, 64, 100) == -1);
    BDT_CHECK(strlen(bdw_message()) > 0);
    BDT_CHECK(bdw_init(0, 1, 4, 100) == -1);
    BDT_CHECK(bdw_distill_init(4, 0, 2, 10) == -1); /* no teacher */
    BDT_CHECK(bdw_train(1) != bdw_train(1));        /* NaN without init */
    BDT_CHECK(bdw_jumps(0) == NULL);
    BDT_CHECK(bdw_distill_steps(1) == -1);
    BDT_CHECK(bdw_init(0, 1, 32, 100) == 0);
    BDT_CHECK(bdw_distill_init(MAX_K + 1, 0, 2, 10) == -1);
    BDT_CHECK(bdw_distill_init(4, 6, 2, 10) == -1);
    BDT_CHECK(bdw_distill_init(4, 0, MAX_NFE + 1, 10) == -1);
    BDT_CHECK(bdw_train(0) != bdw_train(0));
    bdw_free();
}

static void check_jumps(int which, int64_t K) {
    const float *J = bdw_jumps(which), *g = bdw_gtraj();
    int64_t N = bdw_info(0), Kt = bdw_info(2), S = bdw_info(3), NS = bdw_info(4), i, k, j;
    float z[N_STUD * 2];
    BDT_CHECK(J != NULL && g != NULL);
    if (!J || !g) return;
    BDT_CHECK(S == N * Kt && Kt % K == 0);
    BDT_CHECK(all_finite(J, (long)(N * K * NS * 6)));
    for (j = 0; j < NS; j++) z[2 * j] = g[j * (S + 1) * 2], z[2 * j + 1] = g[j * (S + 1) * 2 + 1];
    for (i = 0; i < N; i++) {
        for (k = 0; k < K; k++)
            for (j = 0; j < NS; j++) {
                const float *e = J + ((i * K + k) * NS + j) * 6;
                const float *t = g + (j * (S + 1) + i * Kt + (k + 1) * (Kt / K)) * 2;
                BDT_CHECK(e[0] == z[2 * j] && e[1] == z[2 * j + 1]);
                BDT_CHECK(e[4] == t[0] && e[5] == t[1]);
            }
        for (j = 0; j < NS; j++) {
            const float *e = J + ((i * K + K - 1) * NS + j) * 6;
            z[2 * j] = e[2], z[2 * j + 1] = e[3];
        }
    }
}

static void test_train_and_distill(void) {
    const int64_t K = 3, nfe = 2;
    const float *paths, *data;
    double l0, l1 = 0, ddim, e0, e1, d0[2], d1[2];
    int i, s;
    BDT_CHECK(bdw_init(1, 7, 32, 300) == 0);
    BDT_CHECK(bdw_info(5) == N_TRAJ && bdw_info(6) == ODE_STEPS && bdw_info(7) == N_DATA);
    data = bdw_data();
    BDT_CHECK(all_finite(data, N_DATA * 2));
    l0 = bdw_train(20);
    for (i = 0; i < 14; i++) l1 = bdw_train(20);
    BDT_CHECK(bdw_teacher_steps() == 300);
    BDT_CHECKF(l1 < l0, "teacher loss %g -> %g", l0, l1);
    paths = bdw_teacher_paths();
    BDT_CHECK(paths != NULL);
    if (!paths) return;
    BDT_CHECK(all_finite(paths, N_TRAJ * (ODE_STEPS + 1) * 2));
    BDT_CHECK(paths[0] == W.noise[0] && paths[1] == W.noise[1]);

    BDT_CHECK(bdw_distill_init((int)K, BD_WEIGHTS_ADAPTIVE, (int)nfe, 80) == 0);
    BDT_CHECK(bdw_info(0) == nfe && bdw_info(1) == K && bdw_info(2) == K);
    ddim = bdw_ddim_mse();
    BDT_CHECK(ddim > 0 && ddim < 1);
    e0 = bdw_eval(1);
    for (s = 0; s < 2; s++) {
        d0[s] = bdw_distill(s, 5);
        for (i = 0; i < 15; i++) d1[s] = bdw_distill(s, 5);
        BDT_CHECK(bdw_distill_steps(s) == 80);
        BDT_CHECKF(d1[s] < d0[s] / 3, "student %d loss %g -> %g", s, d0[s], d1[s]);
    }
    e1 = bdw_eval(1);
    BDT_CHECKF(e1 < e0 && e1 < ddim / 10, "B-DENSE mse %g -> %g, ddim %g", e0, e1, ddim);
    BDT_CHECKF(bdw_eval(0) < ddim / 10, "sparse mse %g, ddim %g", bdw_eval(0), ddim);
    BDT_CHECK(bdw_weight(0, 0) == 1.0);
    BDT_CHECK(bdw_weight(1, 0) > 0 && bdw_weight(1, (int)K - 1) == 0.5); /* adaptive: w_K = 1/2 */
    BDT_CHECK(bdw_weight(1, (int)K) != bdw_weight(1, (int)K));
    check_jumps(0, 1);
    check_jumps(1, K);
    /* a second distillation on the same teacher (the page's Reset path
       re-inits everything; this frees and rebuilds the students) */
    BDT_CHECK(bdw_distill_init(1, BD_WEIGHTS_FINAL, 1, 10) == 0);
    BDT_CHECK(bdw_info(2) == 4 && bdw_info(3) == 4);
    BDT_CHECK(bdw_distill(1, 2) > 0);
    check_jumps(1, 1);
    bdw_free();
}

int main(void) {
    (void)bdt_close_ratio;
    BDT_RUN(test_bad_arguments);
    BDT_RUN(test_train_and_distill);
    return BDT_SUMMARY("test_web_native");
}
