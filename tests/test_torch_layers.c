/* test_torch_layers.c - every layer, forward and backward, against PyTorch.

   tests/ref/make_layer_refs.py (Debian torch, float64 evaluation of float32
   inputs) writes tests/ref/data/layers.bdref; its format is documented at the
   top of that script and read by the small self-contained reader below.  For
   every case the C kernels run on the stored inputs with the stored upstream
   gradient `dout`, and every output, cache and gradient is compared with
       |c - ref| <= ATOL + RTOL * |ref|      (ATOL 1e-5, RTOL 1e-4)
   printing the first values and the max difference per tensor. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <stdlib.h>

#define ATOL 1e-5
#define RTOL 1e-4
#define REF_PATH "tests/ref/data/layers.bdref"

/* ---- reader ------------------------------------------------------------- */
typedef struct ref_rec {
    char name[64];
    int ndim;
    int64_t dims[8];
    int64_t numel;
    float *data;
} ref_rec;

typedef struct ref_file {
    ref_rec *recs;
    uint32_t count;
} ref_file;

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd_u64(const unsigned char *p) {
    return (uint64_t)rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32);
}
static float rd_f32(const unsigned char *p) {
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void ref_free(ref_file *rf) {
    uint32_t i;
    if (!rf->recs) return;
    for (i = 0; i < rf->count; i++) free(rf->recs[i].data);
    free(rf->recs);
    rf->recs = NULL;
    rf->count = 0;
}

/* Parses a whole file image; returns 0 on success, -1 on any malformation. */
static int ref_parse(ref_file *rf, const unsigned char *buf, size_t size) {
    size_t pos = 12;
    uint32_t i, count;
    memset(rf, 0, sizeof *rf);
    if (size < 12 || memcmp(buf, "BDREF001", 8) != 0) return -1;
    count = rd_u32(buf + 8);
    if (count > 100000) return -1;
    rf->recs = (ref_rec *)calloc(count ? count : 1, sizeof(ref_rec));
    if (!rf->recs) return -1;
    rf->count = count;
    for (i = 0; i < count; i++) {
        ref_rec *r = &rf->recs[i];
        uint32_t nl, nd, d;
        int64_t numel = 1, j;
        if (size - pos < 4) goto bad;
        nl = rd_u32(buf + pos); pos += 4;
        if (nl == 0 || nl >= sizeof r->name || size - pos < nl) goto bad;
        memcpy(r->name, buf + pos, nl); r->name[nl] = 0; pos += nl;
        if (size - pos < 4) goto bad;
        nd = rd_u32(buf + pos); pos += 4;
        if (nd > 8 || size - pos < (size_t)nd * 8) goto bad;
        r->ndim = (int)nd;
        for (d = 0; d < nd; d++) {
            uint64_t v = rd_u64(buf + pos);
            pos += 8;
            if (v > (1u << 24)) goto bad;
            r->dims[d] = (int64_t)v;
            numel *= (int64_t)v;
            if (numel > (1 << 24)) goto bad;
        }
        r->numel = numel;
        if ((size - pos) / 4 < (size_t)numel) goto bad;
        r->data = (float *)malloc((size_t)(numel ? numel : 1) * sizeof(float));
        if (!r->data) goto bad;
        for (j = 0; j < numel; j++) r->data[j] = rd_f32(buf + pos + 4 * (size_t)j);
        pos += 4 * (size_t)numel;
    }
    if (pos != size) goto bad;
    return 0;
bad:
    ref_free(rf);
    return -1;
}

static int ref_load(ref_file *rf, const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long size;
    int rc;
    memset(rf, 0, sizeof *rf);
    if (!f) return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return -1;
    }
    buf = (unsigned char *)malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    rc = ref_parse(rf, buf, (size_t)size);
    free(buf);
    return rc;
}

static ref_file g_ref;
static int g_tensors_compared;
static double g_worst_ratio;

static const ref_rec *ref_get(const char *cs, const char *tn) {
    char full[128];
    uint32_t i;
    snprintf(full, sizeof full, "%s.%s", cs, tn);
    for (i = 0; i < g_ref.count; i++)
        if (strcmp(g_ref.recs[i].name, full) == 0) return &g_ref.recs[i];
    return NULL;
}

/* the record's data, or a failed check and NULL when missing */
static float *ref_data(const char *cs, const char *tn, int64_t expect_numel) {
    const ref_rec *r = ref_get(cs, tn);
    BDT_CHECKF(r != NULL, "record %s.%s missing", cs, tn);
    if (!r) return NULL;
    if (expect_numel >= 0) {
        BDT_CHECKF(r->numel == expect_numel, "%s.%s has %lld values, expected %lld", cs, tn,
                   (long long)r->numel, (long long)expect_numel);
        if (r->numel != expect_numel) return NULL;
    }
    return r->data;
}

static int64_t dim(const char *cs, const char *tn, int i) {
    const ref_rec *r = ref_get(cs, tn);
    return (r && i < r->ndim) ? r->dims[i] : 0;
}

static float *zeros(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static void compare(const char *cs, const char *tn, const float *got, int64_t n) {
    const float *want = ref_data(cs, tn, n);
    double mabs = 0.0, ratio;
    int64_t i;
    char label[96];
    if (!want) return;
    ratio = bdt_close_ratio(got, want, (long)n, ATOL, RTOL, &mabs);
    snprintf(label, sizeof label, "%s.%s", cs, tn);
    printf("  %-26s n=%-5lld c=[", label, (long long)n);
    for (i = 0; i < n && i < 3; i++) printf("%s%.6g", i ? " " : "", got[i]);
    printf("] ref=[");
    for (i = 0; i < n && i < 3; i++) printf("%s%.6g", i ? " " : "", want[i]);
    printf("] max|diff| %.3g  ratio %.3g\n", mabs, ratio);
    BDT_CHECKF(ratio <= 1.0, "%s: max|diff| %.3g exceeds atol %g + rtol %g |ref| (ratio %.3g)",
               label, mabs, ATOL, RTOL, ratio);
    g_tensors_compared++;
    if (ratio > g_worst_ratio) g_worst_ratio = ratio;
}

#define REF_OR_RETURN(var, cs, tn)                  \
    const float *var = ref_data(cs, tn, -1);        \
    if (!var) return

/* ---- cases -------------------------------------------------------------- */
static void test_linear(void) {
    const char *cs = "linear";
    int64_t N = dim(cs, "x", 0), In = dim(cs, "x", 1), Out = dim(cs, "w", 0);
    float *out, *dx, *dw, *db;
    REF_OR_RETURN(x, cs, "x");
    REF_OR_RETURN(w, cs, "w");
    REF_OR_RETURN(b, cs, "b");
    REF_OR_RETURN(dout, cs, "dout");
    out = zeros(N * Out); dx = zeros(N * In); dw = zeros(Out * In); db = zeros(Out);
    bd_linear_forward(out, x, w, b, N, In, Out);
    bd_linear_backward(dx, dw, db, dout, x, w, N, In, Out);
    compare(cs, "out", out, N * Out);
    compare(cs, "dx", dx, N * In);
    compare(cs, "dw", dw, Out * In);
    compare(cs, "db", db, Out);
    free(out); free(dx); free(dw); free(db);
}

static void test_silu(void) {
    const char *cs = "silu";
    int64_t n = dim(cs, "x", 0) * dim(cs, "x", 1) * dim(cs, "x", 2) * dim(cs, "x", 3);
    float *out, *dx;
    REF_OR_RETURN(x, cs, "x");
    REF_OR_RETURN(dout, cs, "dout");
    out = zeros(n); dx = zeros(n);
    bd_silu_forward(out, x, n);
    bd_silu_backward(dx, dout, x, n);
    compare(cs, "out", out, n);
    compare(cs, "dx", dx, n);
    free(out); free(dx);
}

static void conv_case(const char *cs) {
    int64_t N = dim(cs, "x", 0), Cin = dim(cs, "x", 1), H = dim(cs, "x", 2), W = dim(cs, "x", 3);
    int64_t Cout = dim(cs, "w", 0), k = dim(cs, "w", 2), s, p, Ho, Wo, ws;
    float *out, *dx, *dw, *db, *col;
    REF_OR_RETURN(cfg, cs, "cfg");
    REF_OR_RETURN(x, cs, "x");
    REF_OR_RETURN(w, cs, "w");
    REF_OR_RETURN(b, cs, "b");
    REF_OR_RETURN(dout, cs, "dout");
    s = (int64_t)cfg[0]; p = (int64_t)cfg[1];
    Ho = (H + 2 * p - k) / s + 1; Wo = (W + 2 * p - k) / s + 1;
    BDT_CHECK(dim(cs, "out", 2) == Ho && dim(cs, "out", 3) == Wo);
    ws = bd_conv2d_workspace_floats(Cin, H, W, k, s, p);
    col = ws ? (float *)malloc((size_t)ws * sizeof(float)) : NULL;
    out = zeros(N * Cout * Ho * Wo); dx = zeros(N * Cin * H * W); dw = zeros(Cout * Cin * k * k);
    db = zeros(Cout);
    bd_conv2d_forward(out, col, x, w, b, N, Cin, H, W, Cout, k, s, p);
    bd_conv2d_backward(dx, dw, db, col, dout, x, w, N, Cin, H, W, Cout, k, s, p);
    compare(cs, "out", out, N * Cout * Ho * Wo);
    compare(cs, "dx", dx, N * Cin * H * W);
    compare(cs, "dw", dw, Cout * Cin * k * k);
    compare(cs, "db", db, Cout);
    free(out); free(dx); free(dw); free(db); free(col);
}
static void test_conv2d(void) {
    conv_case("conv_k3s1p1");
    conv_case("conv_k3s2p1");
    conv_case("conv_k3s2p1_even");
    conv_case("conv_k1s1p0");
    conv_case("conv_k3s1p0");
}

static void gn_case(const char *cs) {
    int64_t N = dim(cs, "x", 0), C = dim(cs, "x", 1), HW = dim(cs, "x", 2) * dim(cs, "x", 3), G;
    float *out, *mean, *rstd, *dx, *dg, *dbeta;
    REF_OR_RETURN(cfg, cs, "cfg");
    REF_OR_RETURN(x, cs, "x");
    REF_OR_RETURN(gamma, cs, "weight");
    REF_OR_RETURN(beta, cs, "bias");
    REF_OR_RETURN(dout, cs, "dout");
    G = (int64_t)cfg[0];
    out = zeros(N * C * HW); mean = zeros(N * G); rstd = zeros(N * G); dx = zeros(N * C * HW);
    dg = zeros(C); dbeta = zeros(C);
    bd_groupnorm_forward(out, mean, rstd, x, gamma, beta, N, C, HW, G);
    bd_groupnorm_backward(dx, dg, dbeta, dout, x, mean, rstd, gamma, N, C, HW, G);
    compare(cs, "out", out, N * C * HW);
    compare(cs, "mean", mean, N * G);
    compare(cs, "rstd", rstd, N * G);
    compare(cs, "dx", dx, N * C * HW);
    compare(cs, "dweight", dg, C);
    compare(cs, "dbias", dbeta, C);
    free(out); free(mean); free(rstd); free(dx); free(dg); free(dbeta);
}
static void test_groupnorm(void) {
    gn_case("gn_g4");
    gn_case("gn_g1");
    gn_case("gn_g8");
}

static void test_upsample(void) {
    const char *cs = "up";
    int64_t N = dim(cs, "x", 0), C = dim(cs, "x", 1), H = dim(cs, "x", 2), W = dim(cs, "x", 3);
    float *out, *dx;
    REF_OR_RETURN(x, cs, "x");
    REF_OR_RETURN(dout, cs, "dout");
    out = zeros(N * C * 4 * H * W); dx = zeros(N * C * H * W);
    bd_upsample2x_forward(out, x, N, C, H, W);
    bd_upsample2x_backward(dx, dout, N, C, H, W);
    compare(cs, "out", out, N * C * 4 * H * W);
    compare(cs, "dx", dx, N * C * H * W);
    free(out); free(dx);
}

static void test_concat(void) {
    const char *cs = "cat";
    int64_t N = dim(cs, "a", 0), C1 = dim(cs, "a", 1), C2 = dim(cs, "b", 1);
    int64_t HW = dim(cs, "a", 2) * dim(cs, "a", 3);
    float *out, *da, *db;
    REF_OR_RETURN(a, cs, "a");
    REF_OR_RETURN(b, cs, "b");
    REF_OR_RETURN(dout, cs, "dout");
    out = zeros(N * (C1 + C2) * HW); da = zeros(N * C1 * HW); db = zeros(N * C2 * HW);
    bd_concat_forward(out, a, b, N, C1, C2, HW);
    bd_concat_backward(da, db, dout, N, C1, C2, HW);
    compare(cs, "out", out, N * (C1 + C2) * HW);
    compare(cs, "da", da, N * C1 * HW);
    compare(cs, "db", db, N * C2 * HW);
    free(out); free(da); free(db);
}

static void test_add_channel(void) {
    const char *cs = "addch";
    int64_t N = dim(cs, "x", 0), C = dim(cs, "x", 1), HW = dim(cs, "x", 2) * dim(cs, "x", 3);
    float *out, *dx, *de;
    REF_OR_RETURN(x, cs, "x");
    REF_OR_RETURN(e, cs, "e");
    REF_OR_RETURN(dout, cs, "dout");
    out = zeros(N * C * HW); dx = zeros(N * C * HW); de = zeros(N * C);
    memcpy(out, x, (size_t)(N * C * HW) * sizeof(float));
    bd_add_channel_forward(out, e, N, C, HW);
    bd_add_backward(dx, NULL, dout, N * C * HW); /* x passes through (caller) */
    bd_add_channel_backward(de, dout, N, C, HW);
    compare(cs, "out", out, N * C * HW);
    compare(cs, "dx", dx, N * C * HW);
    compare(cs, "de", de, N * C);
    free(out); free(dx); free(de);
}

static void test_add(void) {
    const char *cs = "add";
    int64_t n = dim(cs, "a", 0) * dim(cs, "a", 1) * dim(cs, "a", 2);
    float *out, *da, *db;
    REF_OR_RETURN(a, cs, "a");
    REF_OR_RETURN(b, cs, "b");
    REF_OR_RETURN(dout, cs, "dout");
    out = zeros(n); da = zeros(n); db = zeros(n);
    bd_add_forward(out, a, b, n);
    bd_add_backward(da, db, dout, n);
    compare(cs, "out", out, n);
    compare(cs, "da", da, n);
    compare(cs, "db", db, n);
    free(out); free(da); free(db);
}

static void attn_case(const char *cs) {
    int64_t N = dim(cs, "qkv", 0), C = dim(cs, "qkv", 1) / 3, HW = dim(cs, "qkv", 2), heads;
    float *out, *att, *dqkv, *scratch;
    REF_OR_RETURN(cfg, cs, "cfg");
    REF_OR_RETURN(qkv, cs, "qkv");
    REF_OR_RETURN(dout, cs, "dout");
    heads = (int64_t)cfg[0];
    out = zeros(N * C * HW); att = zeros(N * heads * HW * HW); dqkv = zeros(N * 3 * C * HW);
    scratch = zeros(HW * HW);
    bd_attention_forward(out, att, qkv, N, C, HW, heads);
    bd_attention_backward(dqkv, scratch, dout, qkv, att, N, C, HW, heads);
    compare(cs, "out", out, N * C * HW);
    compare(cs, "att", att, N * heads * HW * HW);
    compare(cs, "dqkv", dqkv, N * 3 * C * HW);
    free(out); free(att); free(dqkv); free(scratch);
}
static void test_attention(void) {
    attn_case("attn_h1");
    attn_case("attn_h2");
    attn_case("attn_h4_peaky");
}

static void test_timestep_embedding(void) {
    const char *cs = "temb";
    int64_t N = dim(cs, "c_noise", 0), D;
    float *out;
    REF_OR_RETURN(cfg, cs, "cfg");
    REF_OR_RETURN(c, cs, "c_noise");
    D = (int64_t)cfg[0];
    out = zeros(N * D);
    bd_timestep_embedding_forward(out, c, N, D);
    compare(cs, "out", out, N * D);
    free(out);
}

static void mse_case(const char *cs) {
    int64_t N = dim(cs, "pred", 0), D = dim(cs, "pred", 1);
    float loss, *dp;
    REF_OR_RETURN(cfg, cs, "cfg");
    REF_OR_RETURN(pred, cs, "pred");
    REF_OR_RETURN(target, cs, "target");
    REF_OR_RETURN(w, cs, "w");
    dp = zeros(N * D);
    loss = (float)bd_mse_forward(pred, target, cfg[0] != 0.0f ? w : NULL, N, D);
    bd_mse_backward(dp, pred, target, cfg[0] != 0.0f ? w : NULL, N, D);
    compare(cs, "out", &loss, 1);
    compare(cs, "dpred", dp, N * D);
    free(dp);
}
static void test_mse(void) {
    mse_case("mse_plain");
    mse_case("mse_weighted");
}

/* the reader rejects damaged files instead of reading out of bounds */
static void test_reader_rejects_corruption(void) {
    FILE *f = fopen(REF_PATH, "rb");
    unsigned char *buf;
    long size, cut;
    ref_file rf;
    int bad = 0, tries = 0;
    if (!f) { BDT_CHECK(0); return; }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (unsigned char *)malloc((size_t)size);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) size = 0;
    fclose(f);
    BDT_CHECK(ref_parse(&rf, buf, (size_t)size) == 0 && rf.count == g_ref.count);
    ref_free(&rf);
    for (cut = 0; cut < size; cut += 1 + size / 97) {
        tries++;
        if (ref_parse(&rf, buf, (size_t)cut) != 0) bad++;
        ref_free(&rf);
    }
    BDT_CHECKF(bad == tries, "%d of %d truncations accepted", tries - bad, tries);
    buf[3] = 'X';
    BDT_CHECK(ref_parse(&rf, buf, (size_t)size) != 0);
    free(buf);
}

int main(void) {
    if (ref_load(&g_ref, REF_PATH) != 0) {
        printf("cannot read %s (run from the repository root; regenerate with "
               "/usr/bin/python3 tests/ref/make_layer_refs.py)\n", REF_PATH);
        bdt_tests_failed++;
        return BDT_SUMMARY("test_torch_layers");
    }
    printf("%s: %u records; tolerance |c - ref| <= %g + %g |ref|\n", REF_PATH, g_ref.count,
           ATOL, RTOL);
    BDT_RUN(test_linear);
    BDT_RUN(test_silu);
    BDT_RUN(test_conv2d);
    BDT_RUN(test_groupnorm);
    BDT_RUN(test_upsample);
    BDT_RUN(test_concat);
    BDT_RUN(test_add_channel);
    BDT_RUN(test_add);
    BDT_RUN(test_attention);
    BDT_RUN(test_timestep_embedding);
    BDT_RUN(test_mse);
    BDT_RUN(test_reader_rejects_corruption);
    printf("%d tensors compared, worst |diff| / (atol + rtol |ref|) = %.3g\n", g_tensors_compared,
           g_worst_ratio);
    ref_free(&g_ref);
    return BDT_SUMMARY("test_torch_layers");
}
