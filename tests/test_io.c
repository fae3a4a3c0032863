/* test_io.c - file formats and data: safetensors, JSON, .npy, gzip/inflate,
   IDX, PNG, plots, CSV, built-in shapes, atomic writes, fuzz regressions.
   Reference files in tests/data/io/ come from tools/gen_io_vectors.py
   (numpy, Python's gzip/zlib, the safetensors library). */
#define _POSIX_C_SOURCE 200809L /* dirent, setrlimit, signal: test-only */
#include <dirent.h>
#include <sys/stat.h>
#ifdef __linux__
#include <signal.h>
#include <sys/resource.h>
#endif
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

static bd_context *ctx;
static char tmpdir[256];

/* ---------------------------------------------------------------- helpers */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long e;
    *n = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    e = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (unsigned char *)malloc((size_t)e + 1);
    if (b && fread(b, 1, (size_t)e, f) != (size_t)e) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)e;
    return b;
}
static int spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}
static void tpath(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }
/* number of directory entries whose name starts with prefix */
static int count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int c = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) c++;
    closedir(d);
    return c;
}
static int msg_has(const char *s) { return strstr(bd_context_message(ctx), s) != NULL; }

/* counting allocator that can fail the N-th call (fail_at < 0: never) */
typedef struct { long calls, live, fail_at; } counting;
static void *c_alloc(size_t n, void *u) {
    counting *c = (counting *)u;
    void *p;
    if (c->fail_at >= 0 && c->calls == c->fail_at) { c->calls++; return NULL; }
    c->calls++;
    p = malloc(n);
    if (p) c->live++;
    return p;
}
static void c_free(void *p, void *u) {
    counting *c = (counting *)u;
    if (p) { c->live--; free(p); }
}

/* ------------------------------------------------------------ safetensors */
static float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void test_st_roundtrip(void) {
    static float a[2 * 3 * 4 * 5], b[7], s0 = -0.0f, z[1];
    bd_st_write_tensor t[5];
    bd_st_kv kv[4] = {{"zkey", "plain"}, {"akey", "quote\" back\\ nl\n tab\t"},
                      {"unicode", "\xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82"}, {"empty", ""}};
    bd_safetensors *st = NULL;
    char path[300];
    void *mem = NULL;
    size_t memn = 0, filen = 0;
    unsigned char *file;
    uint64_t hl;
    int i;
    bd_rng rng = bd_rng_init(5);
    for (i = 0; i < 120; i++) a[i] = (float)bd_rng_normal1(&rng);
    a[0] = bits_f(0x7fc00001u); /* a NaN payload must survive bit-exactly */
    a[1] = bits_f(0x7f800000u); /* +Inf */
    a[2] = bits_f(0x00000001u); /* smallest denormal */
    for (i = 0; i < 7; i++) b[i] = (float)i - 3.5f;
    memset(t, 0, sizeof t);
    t[0].name = "m.weight"; t[0].data = a; t[0].ndim = 4;
    t[0].shape[0] = 2; t[0].shape[1] = 3; t[0].shape[2] = 4; t[0].shape[3] = 5;
    t[1].name = "a.bias"; t[1].data = b; t[1].ndim = 1; t[1].shape[0] = 7;
    t[2].name = "scalar"; t[2].data = &s0; t[2].ndim = 0;
    t[3].name = "empty"; t[3].data = NULL; t[3].ndim = 2; t[3].shape[0] = 0; t[3].shape[1] = 9;
    t[4].name = "\xe2\x82\xac \"quoted\""; t[4].data = z; t[4].ndim = 1; t[4].shape[0] = 1;
    tpath(path, sizeof path, "rt.safetensors");
    BDT_CHECK(bd_safetensors_write(ctx, path, t, 5, kv, 4) == BD_SUCCESS);
    BDT_CHECK(bd_safetensors_write_memory(ctx, t, 5, kv, 4, &mem, &memn) == BD_SUCCESS);
    file = slurp(path, &filen);
    BDT_CHECK(file && filen == memn && memcmp(file, mem, memn) == 0);
    hl = 0;
    for (i = 7; i >= 0; i--) hl = (hl << 8) | file[i];
    BDT_CHECK(hl % 8 == 0);
    BDT_CHECK(filen == 8 + hl + (120 + 7 + 1 + 1) * 4);
    BDT_CHECK(bd_safetensors_load(ctx, path, &st) == BD_SUCCESS);
    if (st) {
        const bd_st_tensor *m = bd_safetensors_find(st, "m.weight");
        const bd_st_tensor *e = bd_safetensors_find(st, "empty");
        const bd_st_tensor *s = bd_safetensors_find(st, "scalar");
        BDT_CHECK(st->n_tensors == 5 && st->n_metadata == 4);
        for (i = 1; i < st->n_tensors; i++) BDT_CHECK(strcmp(st->tensors[i - 1].name, st->tensors[i].name) < 0);
        BDT_CHECK(m && m->ndim == 4 && m->shape[3] == 5 && m->numel == 120 && memcmp(m->data, a, sizeof a) == 0);
        BDT_CHECK(e && e->ndim == 2 && e->numel == 0 && e->shape[1] == 9);
        BDT_CHECK(s && s->ndim == 0 && s->numel == 1 && memcmp(s->data, &s0, 4) == 0);
        BDT_CHECK(bd_safetensors_find(st, t[4].name) != NULL);
        BDT_CHECK(bd_safetensors_find(st, "nope") == NULL);
        for (i = 0; i < 4; i++) {
            const char *v = bd_safetensors_meta(st, kv[i].key);
            BDT_CHECKF(v && strcmp(v, kv[i].value) == 0, "meta %s", kv[i].key);
        }
        BDT_CHECK(bd_safetensors_meta(st, "missing") == NULL);
        bd_safetensors_free(st);
        st = NULL;
    }
    BDT_CHECK(bd_safetensors_load_memory(ctx, mem, memn, &st) == BD_SUCCESS);
    if (st) {
        BDT_CHECK(memcmp(bd_safetensors_find(st, "a.bias")->data, b, sizeof b) == 0);
        bd_safetensors_free(st);
    }
    /* no tensors, no metadata: "{}" padded */
    {
        void *m0; size_t n0;
        BDT_CHECK(bd_safetensors_write_memory(ctx, NULL, 0, NULL, 0, &m0, &n0) == BD_SUCCESS);
        BDT_CHECK(n0 == 16 && memcmp((char *)m0 + 8, "{}      ", 8) == 0);
        st = NULL;
        BDT_CHECK(bd_safetensors_load_memory(ctx, m0, n0, &st) == BD_SUCCESS && st && st->n_tensors == 0);
        bd_safetensors_free(st);
        bd_free(ctx, m0);
    }
    /* writer argument errors */
    {
        bd_st_write_tensor d[2];
        bd_st_kv dk[2] = {{"k", "1"}, {"k", "2"}};
        void *m0; size_t n0;
        memcpy(d, t, sizeof d);
        d[1].name = d[0].name;
        BDT_CHECK(bd_safetensors_write_memory(ctx, d, 2, NULL, 0, &m0, &n0) == BD_ERROR_INVALID_ARGUMENT && msg_has("duplicate"));
        BDT_CHECK(bd_safetensors_write_memory(ctx, t, 1, dk, 2, &m0, &n0) == BD_ERROR_INVALID_ARGUMENT && msg_has("duplicate"));
        d[1].name = "__metadata__";
        BDT_CHECK(bd_safetensors_write_memory(ctx, d, 2, NULL, 0, &m0, &n0) == BD_ERROR_INVALID_ARGUMENT);
        d[1].name = "bad\xff";
        BDT_CHECK(bd_safetensors_write_memory(ctx, d, 2, NULL, 0, &m0, &n0) == BD_ERROR_INVALID_ARGUMENT);
        d[1] = t[1]; d[1].data = NULL;
        BDT_CHECK(bd_safetensors_write_memory(ctx, d, 2, NULL, 0, &m0, &n0) == BD_ERROR_INVALID_ARGUMENT);
        d[1] = t[1]; d[1].ndim = 9;
        BDT_CHECK(bd_safetensors_write_memory(ctx, d, 2, NULL, 0, &m0, &n0) == BD_ERROR_INVALID_ARGUMENT);
        d[1] = t[1]; d[1].shape[0] = -1;
        BDT_CHECK(bd_safetensors_write_memory(ctx, d, 2, NULL, 0, &m0, &n0) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_safetensors_write(ctx, "", t, 1, NULL, 0) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_safetensors_write(NULL, path, t, 1, NULL, 0) == BD_ERROR_INVALID_ARGUMENT);
    }
    /* every truncation is rejected as FORMAT, from memory and (sampled) from a file */
    {
        size_t cut;
        int bad = 0;
        char tp[300];
        tpath(tp, sizeof tp, "trunc.safetensors");
        for (cut = 0; cut < memn; cut++) {
            bd_result r;
            st = NULL;
            r = bd_safetensors_load_memory(ctx, mem, cut, &st);
            if (r != BD_ERROR_FORMAT || st) bad++;
            if (cut % 37 == 0 || cut + 1 == memn) {
                spit(tp, mem, cut);
                r = bd_safetensors_load(ctx, tp, &st);
                if (r != BD_ERROR_FORMAT || st) bad++;
            }
        }
        BDT_CHECKF(bad == 0, "%d truncations not rejected", bad);
    }
    /* every single-byte corruption of the header: a clean result, never a crash */
    {
        unsigned char *c = (unsigned char *)malloc(memn);
        size_t k;
        int odd = 0;
        for (k = 0; k < 8 + hl; k++) {
            bd_result r;
            memcpy(c, mem, memn);
            c[k] ^= (unsigned char)(0x5a + k);
            st = NULL;
            r = bd_safetensors_load_memory(ctx, c, memn, &st);
            if (r != BD_SUCCESS && r != BD_ERROR_FORMAT && r != BD_ERROR_UNSUPPORTED) odd++;
            if ((r == BD_SUCCESS) != (st != NULL)) odd++;
            bd_safetensors_free(st);
        }
        BDT_CHECKF(odd == 0, "%d corruptions gave an unexpected result", odd);
        free(c);
    }
    free(file);
    bd_free(ctx, mem);
}

/* the reference library's file loads, and bdense writes the same bytes */
static void test_st_python_reference(void) {
    size_t n = 0;
    unsigned char *ref = slurp("tests/data/io/st_ref.safetensors", &n);
    bd_safetensors *st = NULL;
    BDT_CHECK(ref != NULL);
    if (!ref) return;
    BDT_CHECK(bd_safetensors_load_memory(ctx, ref, n, &st) == BD_SUCCESS);
    if (st) {
        const bd_st_tensor *w = bd_safetensors_find(st, "b.weight"), *bi = bd_safetensors_find(st, "a.bias");
        const bd_st_tensor *sc = bd_safetensors_find(st, "c.scalar"), *em = bd_safetensors_find(st, "d.empty");
        const bd_st_tensor *cv = bd_safetensors_find(st, "e.conv");
        int i, ok = 1;
        BDT_CHECK(w && w->ndim == 2 && w->shape[0] == 3 && w->shape[1] == 4);
        BDT_CHECK(bi && bi->numel == 3 && sc && sc->ndim == 0 && em && em->numel == 0 && em->shape[1] == 3);
        BDT_CHECK(cv && cv->ndim == 4 && cv->shape[0] == 2 && cv->shape[3] == 3);
        if (w && bi && sc && cv) {
            for (i = 0; i < 12; i++) ok &= w->data[i] == i * 0.5f - 2;
            for (i = 0; i < 3; i++) ok &= bi->data[i] == i * -1.25f;
            for (i = 0; i < 18; i++) ok &= cv->data[i] == i / 8.0f;
            ok &= sc->data[0] == 7.0f;
            BDT_CHECK(ok);
        }
        BDT_CHECK(strcmp(bd_safetensors_meta(st, "bdense.version"), "0.1.0") == 0);
        /* write it back: byte-identical to the reference library's output */
        {
            bd_st_write_tensor t[5];
            bd_st_kv kv = {"bdense.version", "0.1.0"};
            void *mem; size_t mn;
            memset(t, 0, sizeof t);
            for (i = 0; i < 5; i++) {
                const bd_st_tensor *s = &st->tensors[4 - i]; /* reversed on purpose */
                t[i].name = s->name; t[i].data = s->data; t[i].ndim = s->ndim;
                memcpy(t[i].shape, s->shape, sizeof t[i].shape);
            }
            BDT_CHECK(bd_safetensors_write_memory(ctx, t, 5, &kv, 1, &mem, &mn) == BD_SUCCESS);
            BDT_CHECKF(mn == n && memcmp(mem, ref, n) == 0, "bdense wrote %zu bytes, reference %zu", mn, n);
            bd_free(ctx, mem);
        }
        bd_safetensors_free(st);
    }
    free(ref);
}

typedef struct {
    const char *json;
    size_t data_len;
    bd_result want;
    const char *msg; /* substring of the message, or NULL */
} st_case;

static bd_result st_try(const char *json, size_t data_len, int64_t hlen_override, size_t cut) {
    size_t jl = strlen(json), n = 8 + jl + data_len;
    unsigned char *b = (unsigned char *)calloc(n + 1, 1);
    uint64_t hl = hlen_override >= 0 ? (uint64_t)hlen_override : jl;
    bd_safetensors *st = NULL;
    bd_result r;
    int i;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)(hl >> (8 * i));
    memcpy(b + 8, json, jl);
    r = bd_safetensors_load_memory(ctx, b, cut ? cut : n, &st);
    if (r == BD_SUCCESS) BDT_CHECK(st != NULL);
    else BDT_CHECK(st == NULL);
    bd_safetensors_free(st);
    free(b);
    return r;
}

static void test_st_bad_files(void) {
    static char deep[400];
    static const st_case cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_SUCCESS, NULL},
        {"{\"a\":{\"data_offsets\":[0,8],\"shape\":[2],\"dtype\":\"F32\"}}  ", 8, BD_SUCCESS, NULL},
        {"{}", 0, BD_SUCCESS, NULL},
        {"", 0, BD_ERROR_FORMAT, "bad JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, BD_ERROR_FORMAT, "bad JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8, BD_ERROR_FORMAT, "bad JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "bad JSON"},
        {"{'a':{}}", 0, BD_ERROR_FORMAT, "bad JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}x", 8, BD_ERROR_FORMAT, "trailing"},
        {"[1]", 0, BD_ERROR_FORMAT, "not a JSON object"},
        {"{\"a\":[]}", 0, BD_ERROR_FORMAT, "not an object"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8, BD_ERROR_UNSUPPORTED, "'a' has dtype F16"},
        {"{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, BD_ERROR_UNSUPPORTED, "I64"},
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "unknown dtype"},
        {"{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "needs 12 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, BD_ERROR_FORMAT, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, BD_ERROR_FORMAT, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, BD_ERROR_FORMAT, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, BD_ERROR_FORMAT, "gap of 4 bytes"},
        {"{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, BD_ERROR_FORMAT, "gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, BD_ERROR_FORMAT, "belong to no tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, BD_ERROR_FORMAT, "duplicate tensor name"},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, BD_ERROR_FORMAT, "duplicate metadata key"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, BD_ERROR_FORMAT, "duplicate __metadata__"},
        {"{\"__metadata__\":{\"k\":1}}", 0, BD_ERROR_FORMAT, "not a string"},
        {"{\"__metadata__\":{\"k\":null}}", 0, BD_ERROR_FORMAT, "not a string"},
        {"{\"__metadata__\":\"x\"}", 0, BD_ERROR_FORMAT, "__metadata__ is not an object"},
        {"{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, BD_ERROR_FORMAT, "U+0000"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, BD_ERROR_FORMAT, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,0]}}", 0, BD_ERROR_FORMAT, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, BD_ERROR_FORMAT, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "not an array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_UNSUPPORTED, "dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, BD_ERROR_FORMAT, "lacks data_offsets"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "lacks dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, BD_ERROR_FORMAT, "unknown field"},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "repeats a field"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, BD_ERROR_FORMAT, "pair"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}}", 8, BD_ERROR_FORMAT, "pair"},
        {"{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "U+0000"},
        {"{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "UTF-8"},
        {"{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "UTF-8"},
        {"{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "surrogate"},
        {"{\"\\udc00\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "surrogate"},
        {"{\"\\ud83d\\ude42\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_SUCCESS, NULL},
        {"{\"a\tb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "control character"},
        {"{\"a\\x\":{}}", 0, BD_ERROR_FORMAT, "invalid escape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, BD_ERROR_FORMAT, "bad JSON"},
        {"{\"a\":tru}", 0, BD_ERROR_FORMAT, "bad JSON"},
        {"{\"a\":1e}", 0, BD_ERROR_FORMAT, "bad exponent"},
    };
    size_t i;
    int failures = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bd_result r = st_try(cases[i].json, cases[i].data_len, -1, 0);
        if (r != cases[i].want || (cases[i].msg && !msg_has(cases[i].msg))) {
            failures++;
            printf("  case %zu: got %s (%s), want %s with '%s'\n", i, bd_result_string(r),
                   bd_context_message(ctx), bd_result_string(cases[i].want), cases[i].msg ? cases[i].msg : "");
        }
    }
    BDT_CHECKF(failures == 0, "%d of %zu hand-made files misjudged", failures, sizeof cases / sizeof cases[0]);
    /* header length against the file and the cap */
    BDT_CHECK(st_try("{}", 0, 1000, 0) == BD_ERROR_FORMAT && msg_has("exceeds the file size"));
    BDT_CHECK(st_try("{}", 0, (int64_t)BD_ST_MAX_HEADER + 1, 0) == BD_ERROR_FORMAT && msg_has("limit"));
    BDT_CHECK(st_try("{}", 0, INT64_MAX, 0) == BD_ERROR_FORMAT);
    BDT_CHECK(st_try("{}", 0, -1, 5) == BD_ERROR_FORMAT && msg_has("shorter than"));
    /* nesting deeper than the limit, and just inside it */
    {
        int d;
        char *p = deep;
        p += sprintf(p, "{\"__metadata__\":{},\"x\":");
        for (d = 0; d < 100; d++) *p++ = '[';
        for (d = 0; d < 100; d++) *p++ = ']';
        strcpy(p, "}");
        BDT_CHECK(st_try(deep, 0, -1, 0) == BD_ERROR_FORMAT && msg_has("too deep"));
        BDT_CHECK(bd_json_validate(ctx, deep, strlen(deep)) == BD_ERROR_FORMAT);
        p = deep;
        for (d = 0; d < 64; d++) *p++ = '[';
        for (d = 0; d < 64; d++) *p++ = ']';
        *p = 0;
        BDT_CHECK(bd_json_validate(ctx, deep, strlen(deep)) == BD_SUCCESS);
        deep[0] = '{';
        BDT_CHECK(bd_json_validate(ctx, deep, strlen(deep)) == BD_ERROR_FORMAT);
    }
    /* a header of millions of tiny values is refused before its token table is allocated */
    {
        size_t k, cnt = ((size_t)1 << 22) + 8, len = 7 + 2 * cnt + 2;
        char *big = (char *)malloc(len + 1), *q = big;
        q += sprintf(q, "{\"x\":[");
        for (k = 0; k < cnt; k++) { *q++ = '0'; *q++ = ','; }
        q[-1] = ']';
        *q++ = '}';
        *q = 0;
        BDT_CHECK(st_try(big, 0, -1, 0) == BD_ERROR_FORMAT && msg_has("more than the limit"));
        free(big);
    }
    /* file-level: missing file, file shorter than 8 bytes */
    {
        bd_safetensors *st = NULL;
        char p[300];
        tpath(p, sizeof p, "short.safetensors");
        spit(p, "abc", 3);
        BDT_CHECK(bd_safetensors_load(ctx, p, &st) == BD_ERROR_FORMAT && !st);
        tpath(p, sizeof p, "does-not-exist.safetensors");
        BDT_CHECK(bd_safetensors_load(ctx, p, &st) == BD_ERROR_IO && !st);
        BDT_CHECK(bd_safetensors_load(ctx, NULL, &st) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_safetensors_load(ctx, p, NULL) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_safetensors_load_memory(ctx, NULL, 10, &st) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_safetensors_find(NULL, "a") == NULL && bd_safetensors_meta(NULL, "a") == NULL);
        bd_safetensors_free(NULL);
    }
}

static void test_json(void) {
    static const char *good[] = {"0", "-0", "1.5e+10", "-12.25E-3", "\"\"", "\"\\u00e9\\n\\/\"", "[]", "{}",
                                 " [1, {\"a\": [true, false, null]}] ", "\"\xf0\x9f\x99\x82\"",
                                 "{\"a\":{\"b\":{\"c\":[]}}}", "\"\\ud83d\\ude42\""};
    static const char *bad[] = {"", " ", "01", "1.", ".5", "+1", "-", "1e", "[1,]", "[,1]", "{,}", "{\"a\"}",
                                "{\"a\":}", "{\"a\" 1}", "{1:2}", "[1 2]", "\"abc", "\"\\u12\"", "\"\\u12G4\"",
                                "\"\\ud800\\u0041\"", "\"\x01\"", "nul", "truex", "[]]", "[][]", "\"\xed\xa0\x80\"",
                                "\"\xf4\x90\x80\x80\"", "\"\xe0\x80\x80\"", "NaN", "Infinity", "[1,2", "{\"a\":1"};
    size_t i;
    for (i = 0; i < sizeof good / sizeof good[0]; i++)
        BDT_CHECKF(bd_json_validate(ctx, good[i], strlen(good[i])) == BD_SUCCESS, "good %zu: %s", i, bd_context_message(ctx));
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        BDT_CHECKF(bd_json_validate(ctx, bad[i], strlen(bad[i])) == BD_ERROR_FORMAT, "bad %zu accepted", i);
    /* an embedded NUL is not JSON whitespace */
    BDT_CHECK(bd_json_validate(ctx, "[1]\0", 4) == BD_ERROR_FORMAT);
}

/* atomic writes: the old file survives every failure, no temp is left */
static void write_small(const char *path, float v, int64_t n, bd_result *r) {
    static float buf[1 << 14];
    bd_st_write_tensor t;
    int64_t i;
    for (i = 0; i < n; i++) buf[i] = v;
    memset(&t, 0, sizeof t);
    t.name = "w"; t.data = buf; t.ndim = 1; t.shape[0] = n;
    *r = bd_safetensors_write(ctx, path, &t, 1, NULL, 0);
}
static void test_st_atomic(void) {
    char path[300], dirpath[300];
    unsigned char *old, *now;
    size_t oldn, nown;
    bd_result r;
    tpath(path, sizeof path, "atomic.safetensors");
    write_small(path, 1.0f, 16, &r);
    BDT_CHECK(r == BD_SUCCESS);
    old = slurp(path, &oldn);
    BDT_CHECK(old != NULL);
    /* (a) an allocator that fails at allocation k, for every k */
    {
        counting cnt;
        bd_context_config cc = bd_context_config_init();
        bd_context *fctx;
        long k;
        int done = 0, ok = 1;
        cc.allocator.alloc = c_alloc;
        cc.allocator.free = c_free;
        cc.allocator.user_data = &cnt;
        for (k = 1; k < 100 && !done; k++) { /* call 0 is the context itself */
            bd_st_write_tensor t;
            float v[4] = {9, 9, 9, 9};
            cnt.calls = 0; cnt.live = 0; cnt.fail_at = k;
            if (bd_context_init(&cc, &fctx) != BD_SUCCESS) { ok = 0; break; }
            memset(&t, 0, sizeof t);
            t.name = "w"; t.data = v; t.ndim = 1; t.shape[0] = 4;
            r = bd_safetensors_write(fctx, path, &t, 1, NULL, 0);
            bd_context_free(fctx);
            if (cnt.live != 0) { ok = 0; printf("  leak of %ld blocks at k=%ld\n", cnt.live, k); }
            if (r == BD_SUCCESS) { done = 1; break; }
            if (r != BD_ERROR_OUT_OF_MEMORY) { ok = 0; printf("  k=%ld: %s\n", k, bd_result_string(r)); }
            now = slurp(path, &nown);
            if (!now || nown != oldn || memcmp(now, old, oldn) != 0) ok = 0;
            free(now);
        }
        BDT_CHECK(ok && done && k > 2);
        BDT_CHECK(count_prefix(tmpdir, "atomic.safetensors.tmp") == 0);
        /* the successful write replaced it: restore the old one */
        write_small(path, 1.0f, 16, &r);
    }
    /* (b) rename fails: the target is a non-empty directory */
    {
        char inner[320];
        tpath(dirpath, sizeof dirpath, "isadir.safetensors");
        mkdir(dirpath, 0755);
        snprintf(inner, sizeof inner, "%s/keep", dirpath);
        spit(inner, "x", 1);
        write_small(dirpath, 2.0f, 16, &r);
        BDT_CHECK(r == BD_ERROR_IO && msg_has("rename"));
        BDT_CHECK(count_prefix(tmpdir, "isadir.safetensors.tmp") == 0);
        now = slurp(inner, &nown);
        BDT_CHECK(now && nown == 1);
        free(now);
        remove(inner);
        remove(dirpath);
    }
    /* (c) the directory does not exist */
    {
        char p[320];
        tpath(p, sizeof p, "no/such/dir/x.safetensors");
        write_small(p, 2.0f, 16, &r);
        BDT_CHECK(r == BD_ERROR_IO);
    }
#ifdef __linux__
    /* (d) the disk "fills up" mid-write: a file-size limit makes fwrite fail */
    {
        struct rlimit old_lim, lim;
        void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
        getrlimit(RLIMIT_FSIZE, &old_lim);
        lim = old_lim;
        lim.rlim_cur = 4096;
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            write_small(path, 3.0f, 1 << 14, &r); /* 64 KiB > 4 KiB */
            setrlimit(RLIMIT_FSIZE, &old_lim);
            BDT_CHECK(r == BD_ERROR_IO);
            now = slurp(path, &nown);
            BDT_CHECK(now && nown == oldn && memcmp(now, old, oldn) == 0);
            free(now);
            BDT_CHECK(count_prefix(tmpdir, "atomic.safetensors.tmp") == 0);
        }
        signal(SIGXFSZ, old_sig);
    }
#endif
    /* and a good write replaces it */
    write_small(path, 4.0f, 8, &r);
    BDT_CHECK(r == BD_SUCCESS);
    now = slurp(path, &nown);
    BDT_CHECK(now && nown != oldn);
    free(now);
    free(old);
}

/* ------------------------------------------------------------------ .npy */
static void test_npy(void) {
    static const char *files[] = {"npy_f4_le.npy", "npy_f4_be.npy", "npy_f8_le.npy", "npy_f8_be.npy", "npy_v2.npy"};
    size_t f;
    bd_npy a;
    char path[300];
    int nd;
    for (f = 0; f < sizeof files / sizeof files[0]; f++) {
        char p[300];
        int i, ok = 1;
        snprintf(p, sizeof p, "tests/data/io/%s", files[f]);
        BDT_CHECKF(bd_npy_read(ctx, p, &a) == BD_SUCCESS, "%s: %s", files[f], bd_context_message(ctx));
        BDT_CHECK(a.ndim == 3 && a.shape[0] == 2 && a.shape[1] == 3 && a.shape[2] == 4 && a.numel == 24);
        for (i = 0; i < 24 && a.data; i++) ok &= a.data[i] == i * 0.25f - 3.0f;
        BDT_CHECKF(ok, "%s values", files[f]);
        bd_npy_free(ctx, &a);
    }
    BDT_CHECK(bd_npy_read(ctx, "tests/data/io/npy_scalar.npy", &a) == BD_SUCCESS && a.ndim == 0 &&
              a.numel == 1 && a.data[0] == 1.5f);
    bd_npy_free(ctx, &a);
    BDT_CHECK(bd_npy_read(ctx, "tests/data/io/npy_fortran.npy", &a) == BD_ERROR_UNSUPPORTED && msg_has("Fortran"));
    BDT_CHECK(bd_npy_read(ctx, "tests/data/io/npy_i4.npy", &a) == BD_ERROR_UNSUPPORTED && msg_has("<i4"));
    BDT_CHECK(a.data == NULL);
    /* round trips, 0..4 dims, zero-size dims */
    tpath(path, sizeof path, "rt.npy");
    for (nd = 0; nd <= 4; nd++) {
        int64_t shape[4] = {3, 1, 4, 2}, i, n = 1;
        float v[24];
        bd_npy b;
        size_t fn;
        unsigned char *raw;
        for (i = 0; i < nd; i++) n *= shape[i];
        for (i = 0; i < n; i++) v[i] = (float)i / 3.0f - 1.0f;
        BDT_CHECK(bd_npy_write(ctx, path, v, nd, shape) == BD_SUCCESS);
        raw = slurp(path, &fn);
        BDT_CHECK(raw && fn % 64 == (size_t)(n * 4) % 64 && (fn - (size_t)n * 4) % 64 == 0 && raw[fn - (size_t)n * 4 - 1] == '\n');
        free(raw);
        memset(&b, 0, sizeof b);
        BDT_CHECK(bd_npy_read(ctx, path, &b) == BD_SUCCESS && b.ndim == nd && b.numel == n);
        for (i = 0; i < nd; i++) BDT_CHECK(b.shape[i] == shape[i]);
        BDT_CHECK(b.data && memcmp(b.data, v, (size_t)n * 4) == 0);
        bd_npy_free(ctx, &b);
    }
    {
        int64_t shape[2] = {0, 5};
        bd_npy b;
        BDT_CHECK(bd_npy_write(ctx, path, NULL, 2, shape) == BD_SUCCESS);
        BDT_CHECK(bd_npy_read(ctx, path, &b) == BD_SUCCESS && b.numel == 0 && b.shape[1] == 5);
        bd_npy_free(ctx, &b);
        shape[0] = -1;
        BDT_CHECK(bd_npy_write(ctx, path, NULL, 2, shape) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_npy_write(ctx, path, NULL, 5, shape) == BD_ERROR_INVALID_ARGUMENT);
    }
    /* hand-made headers */
    {
        typedef struct { const char *hdr; int pad_data; bd_result want; const char *msg; } npy_case;
        static const npy_case cases[] = {
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, BD_SUCCESS, NULL},
            {"{\"descr\": \"<f4\", \"shape\": (1, 2), \"fortran_order\": False}", 8, BD_SUCCESS, NULL},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8, BD_ERROR_FORMAT, "comma"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, BD_ERROR_FORMAT, "data is 12 bytes"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 4, BD_ERROR_FORMAT, "data is 4 bytes"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, BD_ERROR_FORMAT, "non-negative"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,3,), }", 24, BD_SUCCESS, NULL},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,2), }", 8, BD_ERROR_UNSUPPORTED, "dimensions"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8, BD_ERROR_FORMAT, "overflow"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 8, BD_ERROR_FORMAT, "overflow"},
            {"{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8, BD_ERROR_UNSUPPORTED, "Fortran"},
            {"{'descr': '<f2', 'fortran_order': False, 'shape': (4,), }", 8, BD_ERROR_UNSUPPORTED, "'<f2'"},
            {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8, BD_ERROR_FORMAT, "True or False"},
            {"{'descr': '<f4', 'shape': (2,), }", 8, BD_ERROR_FORMAT, "lacks fortran_order"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, BD_ERROR_FORMAT, "closed"},
            {"{'descr': '<f4', 'descr': '<f4', 'shape': (2,)}", 8, BD_ERROR_FORMAT, "repeated"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 8, BD_ERROR_FORMAT, "tuple"},
            {"['descr']", 8, BD_ERROR_FORMAT, "start"},
            {"{'descr: '<f4'}", 8, BD_ERROR_FORMAT, NULL},
        };
        size_t i;
        int failures = 0;
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            unsigned char buf[512];
            size_t hl = strlen(cases[i].hdr), n;
            bd_npy b;
            bd_result r;
            memcpy(buf, "\x93NUMPY\x01\x00", 8);
            memcpy(buf + 10, cases[i].hdr, hl);
            buf[10 + hl++] = '\n';
            buf[8] = (unsigned char)hl; buf[9] = 0;
            n = 10 + hl;
            memset(buf + n, 0, (size_t)cases[i].pad_data);
            n += (size_t)cases[i].pad_data;
            r = bd_npy_read_memory(ctx, buf, n, &b);
            if (r != cases[i].want || (cases[i].msg && !msg_has(cases[i].msg))) {
                failures++;
                printf("  npy case %zu: got %s (%s)\n", i, bd_result_string(r), bd_context_message(ctx));
            }
            if (r == BD_SUCCESS) bd_npy_free(ctx, &b);
            else if (b.data) failures++;
            if (i == 0) { /* no final newline */
                buf[10 + hl - 1] = ' ';
                BDT_CHECK(bd_npy_read_memory(ctx, buf, n, &b) == BD_ERROR_FORMAT && msg_has("'\\n'"));
                buf[10 + hl - 1] = '\n';
                buf[6] = 9; /* version 9.0 */
                BDT_CHECK(bd_npy_read_memory(ctx, buf, n, &b) == BD_ERROR_UNSUPPORTED);
                buf[6] = 1; buf[8] = 0xff; /* header length past the file */
                BDT_CHECK(bd_npy_read_memory(ctx, buf, n, &b) == BD_ERROR_FORMAT && msg_has("exceeds"));
                buf[0] = 'X';
                BDT_CHECK(bd_npy_read_memory(ctx, buf, n, &b) == BD_ERROR_FORMAT && msg_has("magic"));
            }
        }
        BDT_CHECKF(failures == 0, "%d npy cases misjudged", failures);
    }
    /* every truncation of a real file fails */
    {
        size_t n, cut;
        int bad = 0;
        unsigned char *raw = slurp("tests/data/io/npy_f8_be.npy", &n);
        for (cut = 0; raw && cut < n; cut++) {
            bd_npy b;
            if (bd_npy_read_memory(ctx, raw, cut, &b) != BD_ERROR_FORMAT || b.data) bad++;
        }
        BDT_CHECK(raw && bad == 0);
        free(raw);
    }
}

/* ------------------------------------------------------- gzip, CRC, IDX */
static void test_checksums(void) {
    BDT_CHECK(bd_crc32(0, "123456789", 9) == 0xCBF43926u);
    BDT_CHECK(bd_crc32(bd_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
    BDT_CHECK(bd_crc32(0, "", 0) == 0);
    BDT_CHECK(bd_adler32(1, "Wikipedia", 9) == 0x11E60398u);
    BDT_CHECK(bd_adler32(bd_adler32(1, "Wiki", 4), "pedia", 5) == 0x11E60398u);
}

static unsigned char expected_px(int i, int r, int c) { return (unsigned char)((i * 7 + r * 3 + c * 5 + (r * c) / 9) % 256); }

static void test_gzip(void) {
    static const char *gz[] = {"idx_images_l9.gz", "idx_images_l0.gz", "idx_images_fixed.gz"};
    size_t f;
    unsigned char *ref = NULL;
    size_t refn = 0;
    for (f = 0; f < 3; f++) {
        char p[300];
        size_t n, on, cut;
        unsigned char *raw, *out;
        int bad = 0;
        snprintf(p, sizeof p, "tests/data/io/%s", gz[f]);
        raw = slurp(p, &n);
        BDT_CHECK(raw != NULL);
        if (!raw) continue;
        BDT_CHECKF(bd_gunzip(ctx, raw, n, 1 << 20, &out, &on) == BD_SUCCESS, "%s: %s", gz[f], bd_context_message(ctx));
        BDT_CHECK(on == 16 + 5 * 784);
        if (f == 0) { ref = (unsigned char *)malloc(on); memcpy(ref, out, on); refn = on; }
        else BDT_CHECK(on == refn && memcmp(out, ref, on) == 0);
        bd_free(ctx, out);
        /* the limit guards against bombs */
        BDT_CHECK(bd_gunzip(ctx, raw, n, 1000, &out, &on) == BD_ERROR_FORMAT && msg_has("limit"));
        /* every truncation fails */
        for (cut = 0; cut < n; cut++) {
            bd_result r = bd_gunzip(ctx, raw, cut, 1 << 20, &out, &on);
            if (r == BD_SUCCESS) { bad++; bd_free(ctx, out); }
        }
        BDT_CHECKF(bad == 0, "%s: %d truncations accepted", gz[f], bad);
        /* every byte flip: an error, or (flip in padding bits) the same output */
        for (cut = 0; cut < n; cut++) {
            bd_result r;
            raw[cut] ^= 0x21;
            r = bd_gunzip(ctx, raw, n, 1 << 20, &out, &on);
            if (r == BD_SUCCESS) {
                if (on != refn || memcmp(out, ref, on) != 0) bad++;
                bd_free(ctx, out);
            } else if (r != BD_ERROR_FORMAT && r != BD_ERROR_UNSUPPORTED) bad++;
            raw[cut] ^= 0x21;
        }
        BDT_CHECKF(bad == 0, "%s: %d corruptions accepted", gz[f], bad);
        /* trailer checks name the defect */
        raw[n - 6] ^= 1;
        BDT_CHECK(bd_gunzip(ctx, raw, n, 1 << 20, &out, &on) == BD_ERROR_FORMAT && msg_has("CRC-32"));
        raw[n - 6] ^= 1;
        raw[n - 2] ^= 1;
        BDT_CHECK(bd_gunzip(ctx, raw, n, 1 << 20, &out, &on) == BD_ERROR_FORMAT && msg_has("length"));
        raw[n - 2] ^= 1;
        free(raw);
    }
    free(ref);
    /* header flags (FEXTRA, FNAME, FCOMMENT, FHCRC) and two members */
    {
        size_t n, on, ln;
        unsigned char *lab = slurp("tests/data/io/idx_labels.idx", &ln), *raw, *out;
        raw = slurp("tests/data/io/idx_labels_flags.gz", &n);
        BDT_CHECK(raw && bd_gunzip(ctx, raw, n, 1 << 20, &out, &on) == BD_SUCCESS && on == ln && memcmp(out, lab, ln) == 0);
        if (raw) {
            bd_free(ctx, out);
            raw[25] ^= 1; /* inside the comment: the header CRC catches it */
            BDT_CHECK(bd_gunzip(ctx, raw, n, 1 << 20, &out, &on) == BD_ERROR_FORMAT && msg_has("header CRC"));
        }
        free(raw);
        raw = slurp("tests/data/io/idx_labels_2members.gz", &n);
        BDT_CHECK(raw && bd_gunzip(ctx, raw, n, 1 << 20, &out, &on) == BD_SUCCESS && on == ln && memcmp(out, lab, ln) == 0);
        if (raw) bd_free(ctx, out);
        free(raw);
        free(lab);
    }
    /* raw deflate corner cases */
    {
        static const unsigned char stored_empty[] = {0x01, 0x00, 0x00, 0xff, 0xff};
        static const unsigned char bad_nlen[] = {0x01, 0x01, 0x00, 0x00, 0x00, 0x41};
        static const unsigned char type3[] = {0x07};
        static const unsigned char far_back[] = {0x03, 0x02, 0x00}; /* fixed block: <len 3, dist 1> first */
        unsigned char *out;
        size_t on, used;
        BDT_CHECK(bd_inflate(ctx, stored_empty, 5, 10, &out, &on, &used) == BD_SUCCESS && on == 0 && used == 5);
        if (on == 0) bd_free(ctx, out);
        BDT_CHECK(bd_inflate(ctx, bad_nlen, 6, 10, &out, &on, NULL) == BD_ERROR_FORMAT && msg_has("stored block"));
        BDT_CHECK(bd_inflate(ctx, type3, 1, 10, &out, &on, NULL) == BD_ERROR_FORMAT && msg_has("block type"));
        BDT_CHECK(bd_inflate(ctx, far_back, 3, 100, &out, &on, NULL) == BD_ERROR_FORMAT && msg_has("too far back"));
        BDT_CHECK(bd_inflate(ctx, NULL, 0, 10, &out, &on, NULL) == BD_ERROR_FORMAT);
        BDT_CHECK(bd_gunzip(ctx, "\x1f\x8b\x09", 3, 10, &out, &on) == BD_ERROR_FORMAT);
    }
}

/* the real data set when the machine has it (Debian: dataset-fashion-mnist) */
static void test_idx_fashion_mnist(void) {
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lab = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    bd_tensor t;
    uint8_t *l;
    int64_t n, i, hist[10] = {0};
    FILE *f = fopen(img, "rb");
    if (!f) { printf("  (Fashion-MNIST not installed: skipped)\n"); return; }
    fclose(f);
    BDT_CHECKF(bd_idx_read_images(ctx, img, &t) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECK(t.n == 10000 && t.c == 1 && t.h == 28 && t.w == 28);
    bd_tensor_free(ctx, &t);
    if (bd_idx_read_labels(ctx, lab, &l, &n) == BD_SUCCESS) {
        for (i = 0; i < n; i++) hist[l[i] < 10 ? l[i] : 0]++;
        BDT_CHECK(n == 10000 && hist[0] == 1000 && hist[9] == 1000); /* balanced test set */
        bd_free(ctx, l);
    } else {
        BDT_CHECK(0);
    }
}

static void test_idx(void) {
    bd_tensor img;
    char p[300];
    size_t n;
    unsigned char *raw;
    uint8_t *lab;
    int64_t nl;
    int ok = 1, i, r, c;
    const char *gz[] = {"tests/data/io/idx_images_l9.gz", "tests/data/io/idx_images_l0.gz"};
    /* the raw file: made here from the gzip reference */
    raw = slurp(gz[0], &n);
    {
        unsigned char *dec = NULL;
        size_t dn = 0;
        BDT_CHECK(raw && bd_gunzip(ctx, raw, n, 1 << 20, &dec, &dn) == BD_SUCCESS);
        tpath(p, sizeof p, "images.idx");
        spit(p, dec, dn);
        bd_free(ctx, dec);
    }
    free(raw);
    for (i = 0; i < 3; i++) {
        const char *path = i == 0 ? p : gz[i - 1];
        BDT_CHECKF(bd_idx_read_images(ctx, path, &img) == BD_SUCCESS, "%s: %s", path, bd_context_message(ctx));
        BDT_CHECK(img.n == 5 && img.c == 1 && img.h == 28 && img.w == 28 && img.owned);
        for (c = 0; c < 5 && img.data; c++)
            for (r = 0; r < 28 * 28; r++)
                ok &= img.data[c * 784 + r] == (float)expected_px(c, r / 28, r % 28) / 127.5f - 1.0f;
        bd_tensor_free(ctx, &img);
    }
    BDT_CHECK(ok);
    BDT_CHECK(bd_idx_read_labels(ctx, "tests/data/io/idx_labels.idx", &lab, &nl) == BD_SUCCESS && nl == 5 &&
              lab[0] == 3 && lab[4] == 5);
    bd_free(ctx, lab);
    BDT_CHECK(bd_idx_read_labels(ctx, "tests/data/io/idx_labels_flags.gz", &lab, &nl) == BD_SUCCESS && nl == 5 && lab[2] == 4);
    bd_free(ctx, lab);
    /* wrong kind of file for the call */
    BDT_CHECK(bd_idx_read_images(ctx, "tests/data/io/idx_labels.idx", &img) == BD_ERROR_FORMAT && msg_has("expected 3"));
    BDT_CHECK(img.data == NULL);
    BDT_CHECK(bd_idx_read_labels(ctx, p, &lab, &nl) == BD_ERROR_FORMAT && lab == NULL);
    BDT_CHECK(bd_idx_read_images(ctx, "tests/data/io/nope.idx", &img) == BD_ERROR_IO);
    {
        unsigned char h[32] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5};
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 20, &img) == BD_SUCCESS && img.data[3] == 4 / 127.5f - 1);
        bd_tensor_free(ctx, &img);
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 21, &img) == BD_ERROR_FORMAT && msg_has("payload"));
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 19, &img) == BD_ERROR_FORMAT);
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 10, &img) == BD_ERROR_FORMAT && msg_has("header"));
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 2, &img) == BD_ERROR_FORMAT);
        h[2] = 0x0D;
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 20, &img) == BD_ERROR_UNSUPPORTED);
        h[2] = 0x42;
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 20, &img) == BD_ERROR_FORMAT);
        h[2] = 8; h[0] = 1;
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 20, &img) == BD_ERROR_FORMAT && msg_has("magic"));
        h[0] = 0;
        memset(h + 4, 0xff, 12); /* 2^32-1 cubed */
        BDT_CHECK(bd_idx_read_images_memory(ctx, h, 20, &img) == BD_ERROR_FORMAT);
    }
}

/* ------------------------------------------------------------------ PNG */
/* Reads a PNG back with the library's own inflate: checks the signature,
   every chunk CRC, the zlib header and Adler-32; returns the pixels. */
static unsigned char *png_decode(const char *path, int64_t *w, int64_t *h, int *ch, int *crc_ok) {
    size_t n, pos = 8, zn = 0, on;
    unsigned char *f = slurp(path, &n), *z, *out, *px;
    int ct = -1, n_plte = 0;
    unsigned char plte[768];
    int64_t y;
    *crc_ok = 1;
    if (!f || n < 8 || memcmp(f, "\x89PNG\r\n\x1a\n", 8) != 0) { free(f); return NULL; }
    z = (unsigned char *)malloc(n);
    while (pos + 12 <= n) {
        uint32_t len = ((uint32_t)f[pos] << 24) | ((uint32_t)f[pos + 1] << 16) | ((uint32_t)f[pos + 2] << 8) | f[pos + 3];
        uint32_t crc;
        const unsigned char *d = f + pos + 8, *t = f + pos + 4;
        if (pos + 12 + len > n) { *crc_ok = 0; break; }
        crc = ((uint32_t)d[len] << 24) | ((uint32_t)d[len + 1] << 16) | ((uint32_t)d[len + 2] << 8) | d[len + 3];
        if (bd_crc32(0, t, len + 4) != crc) *crc_ok = 0;
        if (memcmp(t, "IHDR", 4) == 0) {
            *w = ((int64_t)d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3];
            *h = ((int64_t)d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7];
            ct = d[9];
        } else if (memcmp(t, "PLTE", 4) == 0 && len <= sizeof plte && len % 3 == 0) {
            memcpy(plte, d, len);
            n_plte = (int)(len / 3);
        } else if (memcmp(t, "IDAT", 4) == 0) {
            memcpy(z + zn, d, len);
            zn += len;
        }
        pos += 12 + len;
    }
    free(f);
    *ch = ct == 0 || ct == 3 ? 1 : ct == 4 ? 2 : ct == 2 ? 3 : ct == 6 ? 4 : 0; /* 3: indices first */
    if (zn < 6 || z[0] != 0x78 || ((z[0] << 8) | z[1]) % 31 != 0 ||
        bd_inflate(ctx, z + 2, zn - 2, 1 << 26, &out, &on, NULL) != BD_SUCCESS) { free(z); return NULL; }
    if (bd_adler32(1, out, on) != (((uint32_t)z[zn - 4] << 24) | ((uint32_t)z[zn - 3] << 16) | ((uint32_t)z[zn - 2] << 8) | z[zn - 1]))
        *crc_ok = 0;
    free(z);
    if (on != (size_t)(*h * (*w * *ch + 1))) { bd_free(ctx, out); return NULL; }
    px = (unsigned char *)malloc((size_t)(*h * *w * *ch));
    for (y = 0; y < *h; y++) { /* undo the row filters (PNG spec 9.2) */
        int64_t rb = *w * *ch, x, bpp = *ch;
        const unsigned char *f = out + y * (rb + 1) + 1;
        unsigned char *cur = px + y * rb, *up = y ? cur - rb : NULL;
        int ft = out[y * (rb + 1)];
        if (ft > 4) *crc_ok = 0;
        for (x = 0; x < rb; x++) {
            int a = x >= bpp ? cur[x - bpp] : 0, b = up ? up[x] : 0, c = (x >= bpp && up) ? up[x - bpp] : 0, pr = 0;
            if (ft == 1) pr = a;
            else if (ft == 2) pr = b;
            else if (ft == 3) pr = (a + b) / 2;
            else if (ft == 4) {
                int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
                pr = (pa <= pb && pa <= pc) ? a : pb <= pc ? b : c;
            }
            cur[x] = (unsigned char)(f[x] + pr);
        }
    }
    bd_free(ctx, out);
    if (ct == 3) { /* indexed: expand through the palette */
        unsigned char *rgb = (unsigned char *)malloc((size_t)(*h * *w * 3));
        int64_t i;
        for (i = 0; i < *h * *w; i++) {
            if (px[i] >= n_plte) *crc_ok = 0;
            memcpy(rgb + 3 * i, plte + 3 * (px[i] < n_plte ? px[i] : 0), 3);
        }
        free(px);
        px = rgb;
        *ch = 3;
    }
    return px;
}

static void test_png(void) {
    char p[300];
    int64_t w, h, i;
    int ch, crc_ok, ok = 1;
    unsigned char *px;
    float img[3 * 5 * 7];
    for (i = 0; i < 3 * 35; i++) img[i] = (float)i / 52.0f - 1.0f;
    img[0] = -5.0f; img[1] = 5.0f; img[2] = bits_f(0x7fc00000u);
    tpath(p, sizeof p, "rgb.png");
    BDT_CHECK(bd_png_write(ctx, p, img, 3, 5, 7) == BD_SUCCESS);
    px = png_decode(p, &w, &h, &ch, &crc_ok);
    BDT_CHECK(px && crc_ok && w == 7 && h == 5 && ch == 3);
    for (i = 0; px && i < 35; i++) {
        int c;
        for (c = 0; c < 3; c++) {
            float v = img[c * 35 + i];
            int want = v != v ? 0 : v <= -1 ? 0 : v >= 1 ? 255 : (int)((v + 1) * 127.5f + 0.5f);
            ok &= px[i * 3 + c] == want;
        }
    }
    BDT_CHECK(ok && px && px[0] == 0 && px[3 + 1] != 0);
    free(px);
    /* a large grey image: many stored blocks and several IDAT chunks */
    {
        int64_t W = 1100, H = 1000;
        uint8_t *g = (uint8_t *)malloc((size_t)(W * H));
        for (i = 0; i < W * H; i++) g[i] = (uint8_t)((i * 31) ^ (i >> 7));
        tpath(p, sizeof p, "big.png");
        BDT_CHECK(bd_png_write_u8(ctx, p, g, W, H, 1) == BD_SUCCESS);
        px = png_decode(p, &w, &h, &ch, &crc_ok);
        BDT_CHECK(px && crc_ok && w == W && h == H && ch == 1 && memcmp(px, g, (size_t)(W * H)) == 0);
        free(px);
        free(g);
    }
    BDT_CHECK(bd_png_write_u8(ctx, p, NULL, 2, 2, 1) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_png_write(ctx, p, img, 2, 5, 7) == BD_ERROR_INVALID_ARGUMENT);
    /* grid: 5 tiles of 3x4, 3 columns, pad 2 */
    {
        float x[5 * 12], *g;
        int64_t gh, gw, t, yy, xx;
        int gok = 1;
        for (i = 0; i < 60; i++) x[i] = (float)i / 60.0f;
        bd_image_grid(NULL, &gh, &gw, x, 5, 1, 3, 4, 3, 2, -0.5f);
        BDT_CHECK(gh == 2 * 5 + 2 && gw == 3 * 6 + 2);
        g = (float *)malloc(sizeof(float) * (size_t)(gh * gw));
        bd_image_grid(g, &gh, &gw, x, 5, 1, 3, 4, 3, 2, -0.5f);
        for (t = 0; t < 6; t++)
            for (yy = 0; yy < 3; yy++)
                for (xx = 0; xx < 4; xx++) {
                    float v = g[(2 + (t / 3) * 5 + yy) * gw + 2 + (t % 3) * 6 + xx];
                    gok &= t < 5 ? v == x[t * 12 + yy * 4 + xx] : v == -0.5f;
                }
        gok &= g[0] == -0.5f && g[gw * 4 + 1] == -0.5f;
        BDT_CHECK(gok);
        free(g);
        tpath(p, sizeof p, "grid.png");
        BDT_CHECK(bd_png_write_grid(ctx, p, x, 5, 1, 3, 4, 0, 1) == BD_SUCCESS);
        px = png_decode(p, &w, &h, &ch, &crc_ok);
        BDT_CHECK(px && crc_ok && w == 3 * 5 + 1 && h == 2 * 4 + 1 && ch == 1 && px[0] == 128);
        free(px);
    }
}

static void test_plot_csv(void) {
    char p[300];
    double x[100], y1[100], y2[100];
    int64_t i, w, h;
    int ch, crc_ok, blue = 0;
    unsigned char *px;
    bd_plot_series s[3];
    bd_plot_config cfg = bd_plot_config_init();
    for (i = 0; i < 100; i++) {
        x[i] = (double)i * 5;
        y1[i] = exp(-(double)i / 20.0);
        y2[i] = i == 50 ? NAN : 0.5 * exp(-(double)i / 50.0);
    }
    s[0].x = x; s[0].y = y1; s[0].n = 100;
    s[1].x = NULL; s[1].y = y2; s[1].n = 100;
    s[2].x = NULL; s[2].y = y1; s[2].n = 0;
    tpath(p, sizeof p, "plot.png");
    BDT_CHECK(bd_plot_png(ctx, p, &cfg, s, 3) == BD_SUCCESS);
    px = png_decode(p, &w, &h, &ch, &crc_ok);
    BDT_CHECK(px && crc_ok && w == 640 && h == 400 && ch == 3);
    for (i = 0; px && i < w * h; i++) blue += px[i * 3] < 80 && px[i * 3 + 2] > 150; /* series 0 colour */
    BDT_CHECKF(blue > 200, "%d blue pixels", blue);
    free(px);
    cfg.log_y = 1;
    y1[3] = -1.0; /* not on a log axis: skipped */
    BDT_CHECK(bd_plot_png(ctx, p, &cfg, s, 2) == BD_SUCCESS);
    BDT_CHECK(bd_plot_png(ctx, p, &cfg, s, 0) == BD_SUCCESS); /* empty plot */
    /* hostile values: no hang, no undefined behaviour, a valid PNG */
    {
        static const double ex[][6] = {{1e308, -1e308, 1e-308, 0, NAN, INFINITY},
                                       {1e20, 1e20, 1e20, 1e20, 1e20, 1e20},
                                       {1e20, 1e20 + 1e4, 1e20, 1e20, 1e20, 1e20},
                                       {-INFINITY, NAN, NAN, NAN, NAN, 5},
                                       {1e-300, 2e-300, 3e-300, 1e-300, 1e-300, 1e-300}};
        int e, l;
        for (l = 0; l < 2; l++)
            for (e = 0; e < 5; e++) {
                bd_plot_series hs[2];
                hs[0].x = ex[e]; hs[0].y = ex[(e + 1) % 5]; hs[0].n = 6;
                hs[1].x = NULL; hs[1].y = ex[e]; hs[1].n = 6;
                cfg.log_y = l;
                BDT_CHECKF(bd_plot_png(ctx, p, &cfg, hs, 2) == BD_SUCCESS, "extreme series %d log %d", e, l);
            }
        px = png_decode(p, &w, &h, &ch, &crc_ok);
        BDT_CHECK(px && crc_ok);
        free(px);
    }
    /* labelled: title, axis labels, legend; an indexed PNG far below the
       768 KB of the stored-block writer (issue 14) */
    {
        static const char *const names[2] = {"loss", "smoothed"};
        size_t n = 0;
        unsigned char *f;
        int64_t dark_title = 0, dark_ylab = 0, dark_legend = 0, xx, yy;
        bd_plot_config lc = bd_plot_config_init();
        lc.log_y = 1;
        lc.title = "Teacher training loss";
        lc.x_label = "training step";
        lc.y_label = "loss (MSE, log scale)";
        lc.legend = names;
        y1[3] = 0.5;
        tpath(p, sizeof p, "labelled.png");
        BDT_CHECK(bd_plot_png(ctx, p, &lc, s, 2) == BD_SUCCESS);
        f = slurp(p, &n);
        BDT_CHECKF(f && n > 100 && n < 30000, "labelled plot is %zu bytes", n);
        BDT_CHECK(f && n > 26 && f[25] == 3); /* colour type 3: indexed */
        free(f);
        px = png_decode(p, &w, &h, &ch, &crc_ok);
        BDT_CHECK(px && crc_ok && w == 640 && h == 400 && ch == 3);
        for (yy = 0; px && yy < h; yy++)
            for (xx = 0; xx < w; xx++) {
                const unsigned char *q = px + (yy * w + xx) * 3;
                int dark = q[0] < 80 && q[1] < 80 && q[2] < 80;
                if (!dark) continue;
                if (yy < 26 && xx > 200 && xx < 440) dark_title++;
                if (xx < 16 && yy > 100 && yy < 300) dark_ylab++;
                if (yy > 35 && yy < 70 && xx > 480) dark_legend++;
            }
        BDT_CHECKF(dark_title > 100 && dark_ylab > 50 && dark_legend > 50, "text pixels: title %lld, y label %lld, "
                   "legend %lld", (long long)dark_title, (long long)dark_ylab, (long long)dark_legend);
        free(px);
        /* every printable character has a glyph; bytes outside draw as '?' */
        {
            char all[96];
            int k;
            for (k = 0; k < 95; k++) all[k] = (char)(32 + k);
            all[95] = 0;
            lc.title = all;
            lc.x_label = "\x01\xff\x80 non-ASCII";
            lc.width = 1200;
            BDT_CHECK(bd_plot_png(ctx, p, &lc, s, 2) == BD_SUCCESS);
        }
    }
    /* a labelled grid: names left of the rows, a title line */
    {
        float g[6 * 8 * 8];
        static const char *const rows[3] = {"teacher", NULL, "student K=2"};
        int64_t dark_left = 0, xx, yy;
        for (i = 0; i < 6 * 64; i++) g[i] = (float)(i % 64) / 32.0f - 1.0f;
        tpath(p, sizeof p, "lgrid.png");
        BDT_CHECK(bd_png_write_grid_labeled(ctx, p, g, 6, 1, 8, 8, 2, 4, "title", rows, 3) == BD_SUCCESS);
        px = png_decode(p, &w, &h, &ch, &crc_ok);
        BDT_CHECK(px && crc_ok && ch == 1 && h == 7 + 10 + (3 * 9 + 1) * 4 && w > (2 * 9 + 1) * 4 + 60);
        for (yy = 0; px && yy < h; yy++)
            for (xx = 0; xx < w - (2 * 9 + 1) * 4; xx++) dark_left += px[yy * w + xx] < 80;
        BDT_CHECKF(dark_left > 100, "%lld dark pixels left of the grid", (long long)dark_left);
        free(px);
        BDT_CHECK(bd_png_write_grid_labeled(ctx, p, g, 6, 1, 8, 8, 2, 0, NULL, NULL, 0) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_png_write_grid_labeled(ctx, p, g, 6, 1, 8, 8, 2, 1, NULL, NULL, 2) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_png_write_grid_labeled(ctx, p, g, 6, 1, 8, 8, 2, 1, NULL, NULL, 0) == BD_SUCCESS);
    }
    /* compression: a white 640x400 RGB page is a few hundred bytes */
    {
        uint8_t *white = (uint8_t *)malloc(640 * 400 * 3);
        size_t n = 0;
        unsigned char *f;
        memset(white, 255, 640 * 400 * 3);
        white[1000] = 7; /* two colours: indexed */
        tpath(p, sizeof p, "white.png");
        BDT_CHECK(bd_png_write_u8(ctx, p, white, 640, 400, 3) == BD_SUCCESS);
        f = slurp(p, &n);
        BDT_CHECKF(n > 0 && n < 2000, "white page: %zu bytes", n);
        free(f);
        px = png_decode(p, &w, &h, &ch, &crc_ok);
        BDT_CHECK(px && crc_ok && memcmp(px, white, 640 * 400 * 3) == 0);
        free(px);
        free(white);
    }
    cfg.width = 10;
    BDT_CHECK(bd_plot_png(ctx, p, &cfg, s, 2) == BD_ERROR_INVALID_ARGUMENT);
    /* CSV */
    {
        const char *names[2] = {"step", "loss"};
        const double *cols[2] = {x, y1};
        size_t n;
        char *t;
        tpath(p, sizeof p, "loss.csv");
        BDT_CHECK(bd_csv_write(ctx, p, names, cols, 2, 3) == BD_SUCCESS);
        t = (char *)slurp(p, &n);
        BDT_CHECK(t && n == strlen("step,loss\n0,1\n5,0.951229425\n10,0.904837418\n") &&
                  memcmp(t, "step,loss\n0,1\n5,0.951229425\n10,0.904837418\n", n) == 0);
        free(t);
        names[1] = "a,b";
        BDT_CHECK(bd_csv_write(ctx, p, names, cols, 2, 3) == BD_ERROR_INVALID_ARGUMENT);
    }
}

/* ------------------------------------------------------------- built-in */
static void test_builtin(void) {
    enum { N = 400, S = 28 };
    static float a[N * S * S], b[N * S * S];
    uint8_t lab[N];
    int counts[4] = {0, 0, 0, 0}, i, ok = 1, dark = 1;
    BDT_CHECK(bd_builtin_shapes_ex(ctx, a, lab, 0, N, S, 7) == BD_SUCCESS);
    BDT_CHECK(bd_builtin_shapes(ctx, b, N, S, 7) == BD_SUCCESS);
    BDT_CHECK(memcmp(a, b, sizeof a) == 0);
    BDT_CHECK(bd_builtin_shapes(NULL, b, N, S, 8) == BD_SUCCESS);
    BDT_CHECK(memcmp(a, b, sizeof a) != 0);
    /* sample i depends only on (seed, index) */
    BDT_CHECK(bd_builtin_shapes_ex(ctx, b, NULL, 123, 10, S, 7) == BD_SUCCESS);
    BDT_CHECK(memcmp(a + 123 * S * S, b, 10 * S * S * sizeof(float)) == 0);
    for (i = 0; i < N; i++) {
        const float *o = a + i * S * S;
        float mx = -2, mn = 2;
        int k, bg = 0;
        for (k = 0; k < S * S; k++) {
            if (!(o[k] >= -1.0f && o[k] <= 1.0f)) ok = 0;
            if (o[k] > mx) mx = o[k];
            if (o[k] < mn) mn = o[k];
            bg += o[k] == -1.0f;
        }
        if (!(mx > -0.2f) || mn != -1.0f || bg < S * S / 3) dark = 0;
        if (lab[i] < 4) counts[lab[i]]++;
        else ok = 0;
    }
    BDT_CHECK(ok && dark);
    BDT_CHECKF(counts[0] > 70 && counts[1] > 70 && counts[2] > 70 && counts[3] > 70, "classes %d %d %d %d",
               counts[0], counts[1], counts[2], counts[3]);
    {
        float *big = (float *)malloc(sizeof(float) * 4 * 64 * 64);
        BDT_CHECK(bd_builtin_shapes(ctx, big, 4, 64, 1) == BD_SUCCESS);
        free(big);
    }
    BDT_CHECK(bd_builtin_shapes(ctx, a, 1, 4, 1) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_builtin_shapes(ctx, NULL, 1, 28, 1) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_builtin_shapes(ctx, a, -1, 28, 1) == BD_ERROR_INVALID_ARGUMENT);
}

/* ---------------------------------------------------------------- misuse */
/* NULL pointers, bad sizes, missing context: every IO entry point returns
   BD_ERROR_INVALID_ARGUMENT (with a message when there is a context) and
   never crashes. */
static void test_misuse(void) {
    float v[16] = {0};
    int64_t sh[2] = {2, 2};
    bd_safetensors *st = (bd_safetensors *)&v; /* must be overwritten with NULL */
    bd_npy a;
    bd_tensor t;
    uint8_t *l = (uint8_t *)v;
    int64_t n = 7;
    unsigned char *out = (unsigned char *)v;
    size_t on = 9;
    void *m;
    size_t mn;
    double d[2] = {1, 2};
    const double *cols[1] = {d};
    const char *names[1] = {"x"};
    bd_plot_series ps = {NULL, NULL, 2};
    bd_plot_config pc = bd_plot_config_init();
    char p[300];
    int bad = 0;
#define MU(call, want)                                                                 \
    do {                                                                               \
        bd_result r_ = (call);                                                         \
        if (r_ != (want)) { bad++; printf("  %s -> %s\n", #call, bd_result_string(r_)); } \
    } while (0)
    tpath(p, sizeof p, "misuse.out");
    MU(bd_safetensors_load(NULL, p, &st), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_safetensors_load(ctx, NULL, &st), BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(st == NULL);
    MU(bd_safetensors_load_memory(ctx, "x", 1, NULL), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_safetensors_write(ctx, NULL, NULL, 0, NULL, 0), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_safetensors_write(ctx, p, NULL, 2, NULL, 0), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_safetensors_write(ctx, p, NULL, 0, NULL, -1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_safetensors_write_memory(ctx, NULL, 0, NULL, 0, NULL, &mn), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_safetensors_write_memory(NULL, NULL, 0, NULL, 0, &m, &mn), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_json_validate(ctx, NULL, 5), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_npy_read(NULL, p, &a), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_npy_read_memory(ctx, "x", 1, NULL), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_npy_read_memory(ctx, NULL, 10, &a), BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(a.data == NULL);
    MU(bd_npy_write(ctx, p, NULL, 2, sh), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_npy_write(ctx, p, v, 2, NULL), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_npy_write(ctx, p, v, -1, sh), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_npy_write(ctx, NULL, v, 2, sh), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_inflate(ctx, NULL, 5, 10, &out, &on, NULL), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_inflate(ctx, "x", 1, 10, NULL, &on, NULL), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_gunzip(NULL, "x", 1, 10, &out, &on), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_gunzip(ctx, "x", 1, 10, &out, NULL), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_idx_read_images(ctx, "tests/data/io/idx_images_l9.gz", NULL), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_idx_read_images_memory(ctx, NULL, 4, &t), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_idx_read_labels(ctx, "tests/data/io/idx_labels.idx", NULL, &n), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_idx_read_labels_memory(ctx, "x", 1, &l, NULL), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_idx_read_labels(NULL, p, &l, &n), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_png_write_u8(ctx, p, (const uint8_t *)v, 0, 2, 1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_png_write_u8(ctx, p, (const uint8_t *)v, 2, 2, 5), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_png_write_u8(ctx, NULL, (const uint8_t *)v, 2, 2, 1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_png_write(ctx, p, NULL, 1, 2, 2), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_png_write(ctx, p, v, 1, -2, 2), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_png_write_grid(ctx, p, v, 0, 1, 2, 2, 0, 1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_png_write_grid(ctx, p, v, 4, 1, 2, 2, 0, -1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_png_write_grid(ctx, p, NULL, 4, 1, 2, 2, 0, 1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_plot_png(ctx, p, NULL, &ps, 1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_plot_png(ctx, p, &pc, &ps, 1), BD_ERROR_INVALID_ARGUMENT); /* y NULL */
    MU(bd_plot_png(ctx, p, &pc, NULL, 1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_plot_png(NULL, p, &pc, NULL, 0), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_csv_write(ctx, p, NULL, cols, 1, 2), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_csv_write(ctx, p, names, NULL, 1, 2), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_csv_write(ctx, p, names, cols, 0, 2), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_csv_write(ctx, p, names, cols, 1, -1), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_csv_write(ctx, NULL, names, cols, 1, 2), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_builtin_shapes_ex(ctx, v, NULL, -1, 1, 8, 0), BD_ERROR_INVALID_ARGUMENT);
    MU(bd_builtin_shapes(ctx, v, 1, 2000, 0), BD_ERROR_INVALID_ARGUMENT);
#undef MU
    BDT_CHECKF(bad == 0, "%d misuse calls misjudged", bad);
    BDT_CHECK(strlen(bd_context_message(ctx)) > 0);
    bd_image_grid(NULL, NULL, NULL, NULL, 0, 1, 2, 2, 0, 1, 0.0f); /* sizes only, no crash */
    bd_npy_free(ctx, NULL);
    bd_npy_free(NULL, &a);
    BDT_CHECK(count_prefix(tmpdir, "misuse.out") == 0); /* nothing written */
}

/* ------------------------------------------- allocation failure everywhere */
/* Each op runs on a context whose allocator fails its k-th call, for k = 1,
   2, ... until the op succeeds: every failure must be BD_ERROR_OUT_OF_MEMORY
   and leave no block allocated. */
static const unsigned char *af_bytes;
static size_t af_n;
static char af_path[300];
static bd_result op_st_load_mem(bd_context *c) {
    bd_safetensors *st = NULL;
    bd_result r = bd_safetensors_load_memory(c, af_bytes, af_n, &st);
    bd_safetensors_free(st);
    return r;
}
static bd_result op_st_load_file(bd_context *c) {
    bd_safetensors *st = NULL;
    bd_result r = bd_safetensors_load(c, af_path, &st);
    bd_safetensors_free(st);
    return r;
}
static bd_result op_st_write_mem(bd_context *c) {
    float v[3] = {1, 2, 3};
    bd_st_write_tensor t[2];
    bd_st_kv kv = {"k", "v"};
    void *m = NULL;
    size_t n;
    bd_result r;
    memset(t, 0, sizeof t);
    t[0].name = "b"; t[0].data = v; t[0].ndim = 1; t[0].shape[0] = 3;
    t[1].name = "a"; t[1].data = v; t[1].ndim = 0;
    r = bd_safetensors_write_memory(c, t, 2, &kv, 1, &m, &n);
    bd_free(c, m);
    return r;
}
static bd_result op_npy(bd_context *c) {
    bd_npy a;
    bd_result r = bd_npy_read(c, "tests/data/io/npy_f8_be.npy", &a);
    bd_npy_free(c, &a);
    return r;
}
static bd_result op_npy_write(bd_context *c) {
    float v[4] = {1, 2, 3, 4};
    int64_t sh[2] = {2, 2};
    return bd_npy_write(c, af_path, v, 2, sh);
}
static bd_result op_gunzip2(bd_context *c) {
    size_t n, on;
    unsigned char *raw = slurp("tests/data/io/idx_labels_2members.gz", &n), *out = NULL;
    bd_result r = bd_gunzip(c, raw, n, 1 << 20, &out, &on);
    if (r == BD_SUCCESS) bd_free(c, out);
    free(raw);
    return r;
}
static bd_result op_idx(bd_context *c) {
    bd_tensor t;
    bd_result r = bd_idx_read_images(c, "tests/data/io/idx_images_l9.gz", &t);
    bd_tensor_free(c, &t);
    return r;
}
static bd_result op_labels(bd_context *c) {
    uint8_t *l = NULL;
    int64_t n;
    bd_result r = bd_idx_read_labels(c, "tests/data/io/idx_labels_flags.gz", &l, &n);
    bd_free(c, l);
    return r;
}
static bd_result op_png_grid(bd_context *c) {
    float x[4 * 3 * 5 * 5];
    int i;
    for (i = 0; i < 300; i++) x[i] = (float)(i % 7) / 3.0f - 1.0f;
    return bd_png_write_grid(c, af_path, x, 4, 3, 5, 5, 2, 1);
}
static bd_result op_plot(bd_context *c) {
    double y[5] = {5, 3, 2, 1.5, 1.2};
    bd_plot_series s;
    bd_plot_config cfg = bd_plot_config_init();
    s.x = NULL; s.y = y; s.n = 5;
    cfg.width = 96; cfg.height = 64;
    return bd_plot_png(c, af_path, &cfg, &s, 1);
}
static bd_result op_csv(bd_context *c) {
    double a[3] = {1, 2, 3};
    const char *names[1] = {"a"};
    const double *cols[1] = {a};
    return bd_csv_write(c, af_path, names, cols, 1, 3);
}
static void test_alloc_failures(void) {
    static const struct { const char *name; bd_result (*op)(bd_context *); } ops[] = {
        {"safetensors_load_memory", op_st_load_mem}, {"safetensors_load", op_st_load_file},
        {"safetensors_write_memory", op_st_write_mem}, {"npy_read", op_npy}, {"npy_write", op_npy_write},
        {"gunzip (2 members)", op_gunzip2}, {"idx_read_images (gz)", op_idx}, {"idx_read_labels (gz)", op_labels},
        {"png_write_grid", op_png_grid}, {"plot_png", op_plot}, {"csv_write", op_csv}};
    size_t o;
    unsigned char *file;
    size_t n;
    char stp[300];
    tpath(stp, sizeof stp, "alloc.safetensors");
    {
        bd_context *c = ctx;
        float v[5] = {1, 2, 3, 4, 5};
        bd_st_write_tensor t;
        bd_st_kv kv = {"m", "x"};
        memset(&t, 0, sizeof t);
        t.name = "w"; t.data = v; t.ndim = 1; t.shape[0] = 5;
        bd_safetensors_write(c, stp, &t, 1, &kv, 1);
    }
    file = slurp(stp, &n);
    af_bytes = file; af_n = n;
    for (o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        counting cnt;
        bd_context_config cc = bd_context_config_init();
        long k;
        int ok = 1, done = 0;
        cc.allocator.alloc = c_alloc;
        cc.allocator.free = c_free;
        cc.allocator.user_data = &cnt;
        if (o == 1) snprintf(af_path, sizeof af_path, "%s", stp);
        else tpath(af_path, sizeof af_path, "alloc.out");
        for (k = 1; k < 200 && !done; k++) {
            bd_context *c;
            bd_result r;
            cnt.calls = 0; cnt.live = 0; cnt.fail_at = k;
            if (bd_context_init(&cc, &c) != BD_SUCCESS) { ok = 0; break; }
            r = ops[o].op(c);
            bd_context_free(c);
            if (cnt.live != 0) { ok = 0; printf("  %s: %ld blocks leaked when allocation %ld fails\n", ops[o].name, cnt.live, k); }
            if (r == BD_SUCCESS) done = 1;
            else if (r != BD_ERROR_OUT_OF_MEMORY) { ok = 0; printf("  %s, allocation %ld fails: %s\n", ops[o].name, k, bd_result_string(r)); }
        }
        BDT_CHECKF(ok && done, "%s (%ld allocation points)", ops[o].name, k - 1);
    }
    free(file);
}

/* -------------------------------------------- fuzz corpora and regressions */
/* Replays every committed fuzz input through its reader: each must give a
   clean result (the sanitizer build turns any memory error into a failure).
   In regress/ (strict) a file named ok_* must be accepted, any other
   rejected. */
static int replay_dir(const char *dir, int kind, int strict) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    if (!d) return 0;
    while ((e = readdir(d)) != NULL) {
        char p[600];
        size_t n;
        unsigned char *b;
        bd_result r = BD_SUCCESS, r_any;
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        b = slurp(p, &n);
        if (!b) continue;
        files++;
        if (kind == 0) {
            bd_safetensors *st = NULL;
            r = bd_safetensors_load_memory(ctx, b, n, &st);
            bd_safetensors_free(st);
        } else if (kind == 1) {
            bd_npy a;
            r = bd_npy_read_memory(ctx, b, n, &a);
            bd_npy_free(ctx, &a);
        } else if (kind == 2) {
            bd_tensor t;
            uint8_t *l;
            int64_t nl;
            r = bd_idx_read_images_memory(ctx, b, n, &t);
            bd_tensor_free(ctx, &t);
            if (r == BD_ERROR_FORMAT) {
                r = bd_idx_read_labels_memory(ctx, b, n, &l, &nl);
                bd_free(ctx, l);
            }
        } else {
            r = bd_json_validate(ctx, (const char *)b, n);
        }
        free(b);
        r_any = r;
        if (strict && (r == BD_SUCCESS) != (strncmp(e->d_name, "ok_", 3) == 0)) {
            printf("  %s: unexpectedly %s\n", p, r == BD_SUCCESS ? "accepted" : "rejected");
            files = -1000000;
        }
        if (r_any != BD_SUCCESS && r_any != BD_ERROR_FORMAT && r_any != BD_ERROR_UNSUPPORTED) {
            printf("  %s: %s\n", p, bd_result_string(r));
            files = -1000000;
        }
    }
    closedir(d);
    return files;
}
static void test_fuzz_replay(void) {
    static const char *names[] = {"safetensors", "npy", "idx", "json"};
    int k, total = 0;
    for (k = 0; k < 4; k++) {
        char dir[300];
        int a, b;
        snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", names[k]);
        a = replay_dir(dir, k, 0);
        snprintf(dir, sizeof dir, "tests/fuzz/regress/%s", names[k]);
        b = replay_dir(dir, k, 1);
        BDT_CHECKF(a >= 0 && b >= 0, "%s replay", names[k]);
        total += a + b;
    }
    printf("  replayed %d fuzz inputs\n", total);
    BDT_CHECK(total > 0);
}

int main(void) {
    bd_context_config cc = bd_context_config_init();
    (void)bdt_close_ratio;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bdense_test_io_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("cannot create %s\n", tmpdir);
        return 1;
    }
    BDT_RUN(test_st_roundtrip);
    BDT_RUN(test_st_python_reference);
    BDT_RUN(test_st_bad_files);
    BDT_RUN(test_json);
    BDT_RUN(test_st_atomic);
    BDT_RUN(test_npy);
    BDT_RUN(test_checksums);
    BDT_RUN(test_gzip);
    BDT_RUN(test_idx);
    BDT_RUN(test_idx_fashion_mnist);
    BDT_RUN(test_png);
    BDT_RUN(test_plot_csv);
    BDT_RUN(test_builtin);
    BDT_RUN(test_misuse);
    BDT_RUN(test_alloc_failures);
    BDT_RUN(test_fuzz_replay);
    {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    }
    bd_context_free(ctx);
    return BDT_SUMMARY("test_io");
}
