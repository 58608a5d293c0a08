/* test_synth.c — the synthetic weight formula against the values golden/synthetic records (incl. index > 2^31). */
#include "test.h"

#include <cjson/cJSON.h>

#include "format/safetensors.h"
#include "synth/synth_weights.h"

static void check_file(const char *golden, const char *shape, int hidden) {
    char path[4200];
    snprintf(path, sizeof path, "%s/synthetic/%s.safetensors", golden, shape);
    g4_st_file *f;
    g4_err err = {0};
    if (g4_st_open(path, &f, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const char *checks = g4_st_metadata(f, "generator_checks");
    CHECK(checks != NULL, "no generator_checks in %s", path);
    cJSON *root = checks ? cJSON_Parse(checks) : NULL;
    int n = 0;
    for (cJSON *t = root ? root->child : NULL; t; t = t->next) {
        /* Shapes only matter for fan-in; these two tensors have known widths. */
        int64_t shape[2] = {1, strstr(t->string, "per_layer") ? 256 : hidden};
        g4_synth_rule r;
        CHECK(g4_synth_rule_for(t->string, shape, 2, hidden, &r), "no rule for %s", t->string);
        cJSON *pair;
        cJSON_ArrayForEach(pair, t) {
            uint64_t index = (uint64_t)cJSON_GetArrayItem(pair, 0)->valuedouble;
            float want = (float)cJSON_GetArrayItem(pair, 1)->valuedouble;
            float got = g4_bf16_to_f32(g4_synth_value_bf16(&r, index));
            CHECK(got == want, "%s[%llu] = %g, reference %g", t->string, (unsigned long long)index, got, want);
            n++;
        }
    }
    CHECK(n >= 10, "only %d generator checks", n);
    printf("%s: %d generator values identical\n", shape, n);
    cJSON_Delete(root);
    g4_st_close(f);
}

int main(void) {
    CHECK(g4_synth_seed("") == 0x811C9DC5u, "FNV offset basis");
    CHECK(g4_synth_seed("a") == 0xE40C292Cu, "FNV-1a of 'a'");
    const char *golden = g4t_require_golden();
    check_file(golden, "e4b", 2560);
    check_file(golden, "e2b", 1536);
    return g4t_finish("test_synth");
}
