/*
 * uniform.c: the `uniform` attention variant, a complete probattn plugin in plain C.
 *
 * It is the example for plugin authors outside the project (docs/PLUGINS.md walks through it). What it computes is
 * deliberately trivial, attention with every weight equal:
 *   - no fixed values: every token gets the mean of the unit values,  v_i = (1/M) * sum_j mu_j;
 *   - fixed values:    every token gets the mean of the fixed values weighted by their indicators,
 *                      v_i = sum_k m_k v*_k / sum_k m_k   (when sum_k m_k > 0; otherwise as without fixed values);
 *   - option clamp_fixed (default true): a fixed token's own output is blended towards its fixed value,
 *                      v_i <- (1 - m_i) v_i + m_i v*_i.
 * It adapts neither keys nor values, so it leaves adapted_keys/adapted_values alone.
 *
 * Build outside the project (one file, no dependency but the header):
 *     cc -O2 -shared -fPIC -I path/to/Sources/CProbattnPlugin/include uniform.c -o libprobattn-uniform.so
 */
#include <stdio.h>
#include <string.h>

#include "probattn_plugin.h"

/* 1. The ABI version this plugin was compiled against. The host refuses the file when it differs from its own. */
const uint32_t probattn_plugin_abi_version = PROBATTN_PLUGIN_ABI_VERSION;

/* 2. The options: name, type, default (as YAML text), one line of meaning. The host checks and fills them in. */
static const probattn_option_spec uniform_options[] = {
    {"clamp_fixed", PROBATTN_OPTION_BOOL, "true", "blend each fixed token's output towards its fixed value by m_i"},
};

/* Finds an option by name in what the host passed (it passes every option, defaults filled in). */
static const probattn_option_value *find_option(const probattn_attend_input *input, const char *name) {
    for (int64_t k = 0; k < input->option_count; k++) {
        if (strcmp(input->options[k].name, name) == 0) return &input->options[k];
    }
    return NULL;
}

/* 3. The attention call. Reentrant: it only touches its arguments and the stack. Returns 0 on success; on failure,
 *    writes a message into output->error and returns non-zero. */
static int32_t uniform_attend(const probattn_attend_input *input, probattn_attend_output *output) {
    const int64_t H = input->tokens, M = input->units, Cv = input->value_channels;
    const probattn_option_value *clamp = find_option(input, "clamp_fixed");
    if (clamp == NULL || clamp->type != PROBATTN_OPTION_BOOL) {
        snprintf(output->error, sizeof output->error, "option clamp_fixed missing or not a bool");
        return 1;
    }
    if (Cv > 4096) {
        snprintf(output->error, sizeof output->error, "at most 4096 value channels, got %lld", (long long)Cv);
        return 1;
    }

    /* The value every token gets, accumulated in double. */
    double mean[4096];
    double total_weight = 0.0;
    for (int64_t c = 0; c < Cv; c++) mean[c] = 0.0;
    if (input->fixed != NULL) {
        for (int64_t i = 0; i < H; i++) {
            const float *row = input->fixed + i * (Cv + 1);
            const double m = row[Cv];            /* the indicator, a weight in [0, 1] */
            if (m <= 0.0) continue;              /* channels of free tokens carry no information */
            for (int64_t c = 0; c < Cv; c++) mean[c] += m * row[c];
            total_weight += m;
        }
    }
    if (total_weight > 0.0) {
        for (int64_t c = 0; c < Cv; c++) mean[c] /= total_weight;
    } else {
        for (int64_t j = 0; j < M; j++)
            for (int64_t c = 0; c < Cv; c++) mean[c] += input->values[j * Cv + c];
        for (int64_t c = 0; c < Cv; c++) mean[c] /= (double)M;
    }

    for (int64_t i = 0; i < H; i++) {
        float *out = output->token_values + i * Cv;
        const float *row = input->fixed != NULL ? input->fixed + i * (Cv + 1) : NULL;
        const double m = (row != NULL && clamp->int_value) ? row[Cv] : 0.0;
        for (int64_t c = 0; c < Cv; c++) out[c] = (float)((1.0 - m) * mean[c] + (m > 0.0 ? m * row[c] : 0.0));
    }
    return 0;
}

/* 4. The variant table: name (the config's `type:`), summary, options, requirements (none), attend, and what the
 *    variant is (capabilities: none of the flags, since any number of units works and it gives no W); no option
 *    checks beyond the types (validate_options NULL). */
static const probattn_variant uniform_variant = {
    .name = "uniform",
    .summary = "every token gets the mean unit value, or the indicator-weighted mean of the fixed values (example C plugin)",
    .options = uniform_options,
    .option_count = (int32_t)(sizeof uniform_options / sizeof uniform_options[0]),
    .requirements = 0,
    .attend = uniform_attend,
    .capabilities = 0,
    .validate_options = NULL,
};

/* 5. The entry the host calls once after checking the ABI version: register every variant this file provides. */
int32_t probattn_plugin_register(const probattn_registrar *registrar) {
    registrar->register_variant(registrar->host, &uniform_variant);
    return 0;
}
