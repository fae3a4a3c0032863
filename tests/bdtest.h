/* bdtest.h - the tiny test harness every tests/test_*.c uses.
   A test is a function returning void; BDT_CHECK records failures.  main()
   calls BDT_RUN(fn) for each and ends with BDT_SUMMARY(), which prints
   "<binary>: N passed, M failed" and returns nonzero on any failure. */
#ifndef BDTEST_H
#define BDTEST_H
#include <math.h>
#include <stdio.h>
#include <string.h>

static int bdt_failed_checks = 0, bdt_tests_passed = 0, bdt_tests_failed = 0;
static const char *bdt_current = "";

#define BDT_CHECK(cond)                                                                   \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            bdt_failed_checks++;                                                          \
            printf("  FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, bdt_current, #cond);    \
        }                                                                                 \
    } while (0)

#define BDT_CHECKF(cond, ...)                                                             \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            bdt_failed_checks++;                                                          \
            printf("  FAIL %s:%d [%s]: %s: ", __FILE__, __LINE__, bdt_current, #cond);    \
            printf(__VA_ARGS__);                                                          \
            printf("\n");                                                                 \
        }                                                                                 \
    } while (0)

#define BDT_RUN(fn)                                                                       \
    do {                                                                                  \
        int before_ = bdt_failed_checks;                                                  \
        bdt_current = #fn;                                                                \
        fn();                                                                             \
        if (bdt_failed_checks == before_) {                                               \
            bdt_tests_passed++;                                                           \
            printf("PASS %s\n", #fn);                                                     \
        } else {                                                                          \
            bdt_tests_failed++;                                                           \
            printf("FAIL %s\n", #fn);                                                     \
        }                                                                                 \
        fflush(stdout);                                                                   \
    } while (0)

#define BDT_SUMMARY(name)                                                                 \
    (printf("%s: %d passed, %d failed\n", name, bdt_tests_passed, bdt_tests_failed),      \
     bdt_tests_failed ? 1 : 0)

/* max |a-b| / (atol + rtol |b|) over n; > 1 means mismatch */
static double bdt_close_ratio(const float *a, const float *b, long n, double atol, double rtol,
                              double *max_abs) {
    double worst = 0.0, mabs = 0.0;
    long i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double r = d / (atol + rtol * fabs((double)b[i]));
        if (d != d) r = 1e30;
        if (r > worst) worst = r;
        if (d > mabs) mabs = d;
    }
    if (max_abs) *max_abs = mabs;
    return worst;
}
#endif
