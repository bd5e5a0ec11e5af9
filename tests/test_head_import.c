// import-head reproduces the authors' head (issue 16).
// head_import() turns run.py's best_ckpt_step_N.pth (tests/data/torch/runpy_head_{cls,seg}.pth, made by
// the original SatDiFuser code) into a run folder; the head built from that folder's head_config.json +
// best.safetensors must give the logits the ORIGINAL head gives (torch.load + the original
// create_decoder + load_state_dict + eval) on the same feature files of `satdifuser extract`
// (weights_tools/make_import_check.py -> tests/data/torch/import_check/expected_*.safetensors).
// Tolerance: atol from the file (20 x max |f32 - f64| of the original, rounded up, floor 1e-5; the
// golden head cases' rule), rtol 1e-4. MoE (seg): the counters are not in the checkpoint, so a freshly
// loaded original starts them at 0 and this forward is dense (counter 1..3 < warmup 500); our imported
// folder has no moe_counter.json, so eval/predict start at 0 too - compared here (`dense.`), then with
// every counter set to 500 on both sides (`topk.`: top-1 in every call; the experts picked compared too).
// Also: the refusals (num_norm_groups left at run.py's 32; features of other layers; an existing run
// folder) write nothing, and num_norm_groups 1 - which the file cannot tell from 2 - gives other logits.
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "heads/head.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "train/head_import.h"
#include "tests/test_util.h"

#define TD "tests/data/torch"
#define IC TD "/import_check"

static char g_tmp[256];

static int exists(const char *dir, const char *file) {
    char p[512];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    return stat(p, &sb) == 0;
}

static void remove_run(const char *dir) {
    const char *files[] = {"head_config.json", "best.safetensors", "features_meta.json"};
    char p[512];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

// head_import into g_tmp/<name>; 0 on success.
static int import(const char *ckpt, const char *features, const char *name, int groups, char *out_dir, size_t size) {
    snprintf(out_dir, size, "%s/%s", g_tmp, name);
    HeadImportOptions o = {0};
    o.checkpoint = ckpt;
    o.features = features;
    o.out_dir = out_dir;
    o.num_norm_groups = groups;
    char summary[256] = "";
    sd_clear_error();
    int rc = head_import(&o, summary, sizeof(summary));
    if (rc == 0) printf("  imported %s: %s\n", name, summary);
    return rc;
}

// The batch of images (expected file's "images", in order) as a FusionInput; bufs[i * S + s] malloc'd.
typedef struct {
    FusionInput in;
    float *bufs[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
    int nbufs;
} Batch;

static int load_batch(const char *feat_dir, const JsonValue *images, const HeadConfig *hc, Batch *b) {
    memset(b, 0, sizeof(*b));
    int B = images->count, T = hc->layout.num_timesteps, S = hc->layout.num_scales;
    b->in.B = B;
    for (int j = 0; j < B; j++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s.safetensors", feat_dir, images->items[j].string);
        SafeTensors st;
        if (st_open(&st, p)) return SD_FAIL;
        for (int i = 0; i < T; i++)
            for (int s = 0; s < S; s++) {
                char name[32];
                const StEntry *e;
                snprintf(name, sizeof(name), "feat.%d.%d", i, s);
                if (st_require(&st, name, &e)) { st_close(&st); return SD_FAIL; }
                int C = hc->layout.scale_channels[s], H = (int)e->shape[2], W = (int)e->shape[3];
                if (e->ndim != 4 || e->shape[0] != 1 || e->shape[1] != C || W != hc->layout.width[s]) {
                    st_close(&st);
                    return sd_errorf("%s: %s is not (1, %d, w, %d)", p, name, C, hc->layout.width[s]);
                }
                float **buf = &b->bufs[i * S + s];
                if (!*buf) {
                    *buf = (float *)malloc((size_t)B * e->numel * sizeof(float));
                    if (!*buf) { st_close(&st); return sd_errorf("out of memory"); }
                    b->nbufs = i * S + s + 1 > b->nbufs ? i * S + s + 1 : b->nbufs;
                }
                st_entry_to_f32(e, *buf + (size_t)j * e->numel);
                b->in.feat[i][s] = *buf;
                b->in.H[s] = H;
                b->in.W[s] = W;
                b->in.C[s] = C;
            }
        st_close(&st);
    }
    return 0;
}

static void free_batch(Batch *b) {
    for (int i = 0; i < FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES; i++) free(b->bufs[i]);
}

// The head of a run folder, as eval/predict build it.
static int open_head(const char *run, HeadModel *m, HeadConfig *hc) {
    char p[512];
    JsonValue j;
    snprintf(p, sizeof(p), "%s/head_config.json", run);
    if (json_parse_file(p, &j)) return SD_FAIL;
    int rc = head_config_from_json(hc, &j);
    json_free(&j);
    if (rc) return SD_FAIL;
    if (head_model_init(m, hc)) return SD_FAIL;
    snprintf(p, sizeof(p), "%s/best.safetensors", run);
    if (head_model_load(m, p)) { head_model_free(m); return SD_FAIL; }
    head_model_set_mode(m, 0, 0);
    return 0;
}

static float *load_f32(const SafeTensors *st, const char *name, int64_t *numel) {
    const StEntry *e = st_find(st, name);
    if (!e) return NULL;
    float *x = (float *)malloc((size_t)e->numel * sizeof(float));
    if (x) st_entry_to_f32(e, x);
    *numel = e->numel;
    return x;
}

static double meta_double(const SafeTensors *st, const char *key) {
    const char *v = st_metadata(st, key);
    return v ? atof(v) : -1.0;
}

// Compares got (the head's logits, gathered at the expected positions) with `<prefix>logits`; returns
// the number of values out of tolerance (or -1 when the file lacks something).
static long compare_logits(const char *what, const SafeTensors *exp, const char *prefix, const float *got,
                           int64_t n, double *max_abs_out) {
    char name[64], key[64];
    int64_t n32 = 0, n64 = 0;
    snprintf(name, sizeof(name), "%slogits", prefix);
    float *want = load_f32(exp, name, &n32);
    snprintf(name, sizeof(name), "%slogits_f64", prefix);
    float *want64 = load_f32(exp, name, &n64);
    snprintf(key, sizeof(key), "%satol", prefix);
    double atol = meta_double(exp, key);
    snprintf(key, sizeof(key), "%srtol", prefix);
    double rtol = meta_double(exp, key);
    long bad = -1;
    if (want && want64 && n32 == n && n64 == n && atol > 0 && rtol > 0) {
        bad = 0;
        double m32 = 0, m64 = 0, mx = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = fabs((double)got[i] - want[i]);
            if (!(d <= atol + rtol * fabs(want[i]))) bad++;
            if (!(d <= m32)) m32 = d;
            double d64 = fabs((double)got[i] - want64[i]);
            if (!(d64 <= m64)) m64 = d64;
            if (fabs(want[i]) > mx) mx = fabs(want[i]);
        }
        printf("  %-34s %lld values (max |logit| %.3g): max |C - original f32| %.3g, |C - original f64| %.3g "
               "(atol %g, rtol %g; original f32 vs f64 %s)\n", what, (long long)n, mx, m32, m64, atol, rtol,
               st_metadata(exp, (snprintf(key, sizeof(key), "%serr_f32_f64", prefix), key)));
        *max_abs_out = m32;
    }
    free(want);
    free(want64);
    return bad;
}

// ---------------------------------------------------------------------------------------------

static void test_cls(void) {
    char run[512], bad_run[512];
    CHECK(import(TD "/runpy_head_cls.pth", IC "/features_cls", "cls", 2, run, sizeof(run)) == 0, "import cls: %s",
          sd_last_error());
    CHECK(exists(run, "head_config.json") && exists(run, "best.safetensors") && exists(run, "features_meta.json"),
          "the cls run folder is incomplete");
    SafeTensors exp;
    if (st_open(&exp, IC "/expected_cls.safetensors")) { CHECK(0, "%s", sd_last_error()); return; }
    JsonValue images;
    const char *im = st_metadata(&exp, "images");
    if (!im || json_parse(im, strlen(im), "images", &images)) { CHECK(0, "expected_cls: no images"); st_close(&exp); return; }
    HeadModel m;
    HeadConfig hc;
    Batch b;
    if (open_head(run, &m, &hc)) { CHECK(0, "cls head: %s", sd_last_error()); json_free(&images); st_close(&exp); return; }
    // what the checkpoint's config and state_dict say (runpy_head_cls.note.json)
    CHECK(hc.task == TASK_CLASSIFICATION && hc.fuser.kind == FUSER_GW && hc.num_classes == 10 && hc.projection_dim == 8 &&
              hc.fuser.projection_dim == 8 && hc.fuser.num_norm_groups == 2 && hc.layout.num_scales == 4 &&
              hc.layout.num_timesteps == 3 && hc.layout.timesteps[0] == 47 && hc.layout.timesteps[2] == 40,
          "cls config: task %d fuser %d classes %d projection %d/%d groups %d", hc.task, hc.fuser.kind, hc.num_classes,
          hc.projection_dim, hc.fuser.projection_dim, hc.fuser.num_norm_groups);
    double mx = 0;
    if (load_batch(IC "/features_cls", &images, &hc, &b) || head_model_forward(&m, &b.in)) {
        CHECK(0, "cls forward: %s", sd_last_error());
    } else {
        long bad = compare_logits("cls (GW + linear)", &exp, "", head_model_logits(&m), (int64_t)b.in.B * hc.num_classes, &mx);
        CHECK(bad == 0, "cls logits: %ld values out of tolerance (max abs %.3g)", bad, mx);
        // num_norm_groups is not in the file: 1 imports as well (same shapes) but is another model
        HeadModel m1;
        HeadConfig hc1;
        CHECK(import(TD "/runpy_head_cls.pth", IC "/features_cls", "cls_g1", 1, bad_run, sizeof(bad_run)) == 0,
              "import with 1 group: %s", sd_last_error());
        if (open_head(bad_run, &m1, &hc1) == 0) {
            if (head_model_forward(&m1, &b.in) == 0) {
                double mx1 = 0;
                long bad1 = compare_logits("cls with num_norm_groups 1", &exp, "", head_model_logits(&m1),
                                           (int64_t)b.in.B * hc.num_classes, &mx1);
                CHECK(bad1 > 0, "num_norm_groups 1 gives the same logits as 2 (max abs %.3g): the check is blind", mx1);
            }
            head_model_free(&m1);
        }
        remove_run(bad_run);
    }
    free_batch(&b);
    head_model_free(&m);
    json_free(&images);
    st_close(&exp);
    remove_run(run);
}

// The seg head's logits (B, classes, H, W) at rows x cols into out (B, classes, R, C).
static int gather(const float *logits, int B, int K, int H, int W, const int64_t *rows, int R, const int64_t *cols, int C,
                  float *out) {
    for (int r = 0; r < R; r++)
        if (rows[r] < 0 || rows[r] >= H) return -1;
    for (int c = 0; c < C; c++)
        if (cols[c] < 0 || cols[c] >= W) return -1;
    for (int b = 0; b < B * K; b++)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++)
                out[((int64_t)b * R + r) * C + c] = logits[((int64_t)b * H + rows[r]) * W + cols[c]];
    return 0;
}

static void test_seg(void) {
    char run[512];
    CHECK(import(TD "/runpy_head_seg.pth", IC "/features_seg", "seg", 2, run, sizeof(run)) == 0, "import seg: %s",
          sd_last_error());
    SafeTensors exp;
    if (st_open(&exp, IC "/expected_seg.safetensors")) { CHECK(0, "%s", sd_last_error()); return; }
    JsonValue images;
    const char *im = st_metadata(&exp, "images");
    if (!im || json_parse(im, strlen(im), "images", &images)) { CHECK(0, "expected_seg: no images"); st_close(&exp); return; }
    const StEntry *er = st_find(&exp, "rows"), *ec = st_find(&exp, "cols"), *ech = st_find(&exp, "topk.choice");
    HeadModel m;
    HeadConfig hc;
    Batch b;
    memset(&b, 0, sizeof(b));
    if (!er || !ec || !ech || open_head(run, &m, &hc)) {
        CHECK(0, "seg: %s", er && ec && ech ? sd_last_error() : "expected_seg lacks rows/cols/topk.choice");
        json_free(&images);
        st_close(&exp);
        return;
    }
    CHECK(hc.task == TASK_SEGMENTATION && hc.fuser.kind == FUSER_MOE && hc.num_classes == 7 && hc.projection_dim == 8 &&
              hc.fuser.projection_dim == 8 && hc.fuser.num_norm_groups == 2 && hc.fuser.num_experts == 2 &&
              hc.fuser.top_k == 1 && hc.fuser.warmup_steps == 500 && hc.channels == 8 && hc.output_h == 256 &&
              hc.output_w == 256 && hc.layout.num_scales == 4 && hc.layout.num_streams[0] == 3,
          "seg config: fuser %d classes %d projection %d/%d groups %d experts %d top_k %d warmup %d channels %d out %dx%d",
          hc.fuser.kind, hc.num_classes, hc.projection_dim, hc.fuser.projection_dim, hc.fuser.num_norm_groups,
          hc.fuser.num_experts, hc.fuser.top_k, hc.fuser.warmup_steps, hc.channels, hc.output_h, hc.output_w);
    int R = (int)er->numel, C = (int)ec->numel, B = images.count, K = hc.num_classes, T = hc.layout.num_timesteps;
    int S = hc.layout.num_scales;
    int64_t *rows = (int64_t *)malloc((size_t)R * sizeof(int64_t)), *cols = (int64_t *)malloc((size_t)C * sizeof(int64_t));
    int64_t *choice = (int64_t *)malloc((size_t)ech->numel * sizeof(int64_t));
    float *got = (float *)malloc((size_t)B * K * R * C * sizeof(float));
    st_entry_to_i64(&exp, er, rows);
    st_entry_to_i64(&exp, ec, cols);
    st_entry_to_i64(&exp, ech, choice);
    int fresh = 1;
    for (int s = 0; s < m.fuser.moe.num_scales; s++) fresh &= m.fuser.moe.scales[s].global_step == 0;
    CHECK(fresh, "the MoE counters of a newly built head are not 0");
    if (load_batch(IC "/features_seg", &images, &hc, &b)) {
        CHECK(0, "seg features: %s", sd_last_error());
    } else {
        // 1. counters as after loading (0): dense in every call, as the freshly loaded original
        double mx = 0;
        if (head_model_forward(&m, &b.in) || gather(head_model_logits(&m), B, K, hc.output_h, hc.output_w, rows, R, cols, C, got)) {
            CHECK(0, "seg forward: %s", sd_last_error());
        } else {
            int dense = 1;
            for (int c = 0; c < S * T; c++) dense &= !m.fuser.moe.calls[c].topk_active;
            CHECK(dense, "a call at counter <= 3 used top-k");
            long bad = compare_logits("seg (MoE + UPerNet), counter 0", &exp, "dense.", got, (int64_t)B * K * R * C, &mx);
            CHECK(bad == 0, "seg logits (dense): %ld values out of tolerance (max abs %.3g)", bad, mx);
            int after = 1;  // one call per scale per timestep, as the original's global_step += 1
            for (int s = 0; s < S; s++) after &= m.fuser.moe.scales[s].global_step == T;
            CHECK(after, "MoE counters after one forward are not %d", T);
        }
        // 2. every counter 500 (= warmup_steps) before the forward: top-1 in every call
        moe_set_global_step(&m.fuser.moe, 500);
        if (head_model_forward(&m, &b.in) || gather(head_model_logits(&m), B, K, hc.output_h, hc.output_w, rows, R, cols, C, got)) {
            CHECK(0, "seg forward: %s", sd_last_error());
        } else {
            int same = ech->numel == (int64_t)S * T * B, active = 1;
            for (int s = 0; s < S && same; s++)
                for (int k = 0; k < T; k++) {
                    const MoECall *cl = &m.fuser.moe.calls[s * T + k];
                    active &= cl->topk_active;
                    for (int j = 0; j < B; j++) same &= cl->topk_idx.data[j * hc.fuser.top_k] == choice[(s * T + k) * B + j];
                }
            CHECK(active && same, "top-1 calls: active %d, experts as the original's %d", active, same);
            long bad = compare_logits("seg (MoE + UPerNet), counter 500", &exp, "topk.", got, (int64_t)B * K * R * C, &mx);
            CHECK(bad == 0, "seg logits (top-1): %ld values out of tolerance (max abs %.3g)", bad, mx);
        }
    }
    free(rows);
    free(cols);
    free(choice);
    free(got);
    free_batch(&b);
    head_model_free(&m);
    json_free(&images);
    st_close(&exp);
    remove_run(run);
}

static void test_refusals(void) {
    char run[512];
    // run.py never sets num_norm_groups: the default (the constructors' 32) cannot build this head
    CHECK(import(TD "/runpy_head_cls.pth", IC "/features_cls", "r1", 0, run, sizeof(run)) != 0 &&
              strstr(sd_last_error(), "num-norm-groups") && !exists(run, "head_config.json") &&
              !exists(run, "best.safetensors"),
          "default num_norm_groups: %s", sd_last_error());
    remove_run(run);
    // the seg head was trained on conv2 only; features with attn1 too are refused, naming the option
    CHECK(import(TD "/runpy_head_seg.pth", IC "/features_cls", "r2", 2, run, sizeof(run)) != 0 &&
              strstr(sd_last_error(), "--layers conv2") && !exists(run, "head_config.json"),
          "seg head on attn1,conv2 features: %s", sd_last_error());
    remove_run(run);
    // and the other way round
    CHECK(import(TD "/runpy_head_cls.pth", IC "/features_seg", "r3", 2, run, sizeof(run)) != 0 &&
              strstr(sd_last_error(), "--layers attn1,conv2") && !exists(run, "head_config.json"),
          "cls head on conv2 features: %s", sd_last_error());
    remove_run(run);
    // an existing run folder is not replaced without force
    CHECK(import(TD "/runpy_head_cls.pth", IC "/features_cls", "r4", 2, run, sizeof(run)) == 0, "%s", sd_last_error());
    CHECK(import(TD "/runpy_head_seg.pth", IC "/features_seg", "r4", 2, run, sizeof(run)) != 0 &&
              strstr(sd_last_error(), "--force"),
          "an existing run folder: %s", sd_last_error());
    remove_run(run);
    // not a run.py checkpoint (a plain state_dict)
    CHECK(import(TD "/zip_f32.pt", IC "/features_cls", "r5", 2, run, sizeof(run)) != 0 && strstr(sd_last_error(), "config") &&
              !exists(run, "head_config.json"),
          "a plain state_dict: %s", sd_last_error());
    remove_run(run);
}

int main(void) {
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/satdifuser_test_head_import.XXXXXX");
    if (!mkdtemp(g_tmp)) { printf("mkdtemp failed\nRESULT 0 1\n"); return 1; }
    test_cls();
    test_seg();
    test_refusals();
    rmdir(g_tmp);
    return test_report("test_head_import");
}
