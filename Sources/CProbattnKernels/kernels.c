#include "probattn_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__) && defined(__linux__)
#define PROBATTN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PROBATTN_CLONES
#endif

// exp(x) for x ≤ ~88: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 Taylor polynomial (relative error
// < 1e-8, below float32 rounding), 2^n through the exponent bits. x < −87.3 gives 0.
static inline float exp_poly(float x) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    const float shifter = 12582912.0f;   // 1.5·2^23: adding and subtracting rounds to the nearest integer
    float underflow = x < -87.3f ? 0.0f : 1.0f;
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * log2e + shifter) - shifter;
    float r = x - n * ln2_hi - n * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale * underflow;
}

PROBATTN_CLONES
void probattn_exp(float *x, int n) {
    for (int i = 0; i < n; i++) x[i] = exp_poly(x[i]);
}

PROBATTN_CLONES
void probattn_softmax_strip(float *x, int rows, int cols, int ld, const float *bias, float eps,
                            float *row_log_normaliser) {
    enum { LANES = 16 };
    for (int r = 0; r < rows; r++) {
        float *row = x + (long)r * ld;
        if (bias) {
            for (int j = 0; j < cols; j++) row[j] += bias[j];
        }
        float lane_max[LANES];
        for (int k = 0; k < LANES; k++) lane_max[k] = -INFINITY;
        int j = 0;
        for (; j + LANES <= cols; j += LANES) {
            for (int k = 0; k < LANES; k++) lane_max[k] = row[j + k] > lane_max[k] ? row[j + k] : lane_max[k];
        }
        float m = -INFINITY;
        for (int k = 0; k < LANES; k++) m = lane_max[k] > m ? lane_max[k] : m;
        for (; j < cols; j++) m = row[j] > m ? row[j] : m;
        if (m == -INFINITY) {
            for (int c = 0; c < cols; c++) row[c] = 0.0f;
            if (row_log_normaliser) row_log_normaliser[r] = -INFINITY;
            continue;
        }
        for (int c = 0; c < cols; c++) row[c] = exp_poly(row[c] - m);
        float lane_sum[LANES];
        for (int k = 0; k < LANES; k++) lane_sum[k] = 0.0f;
        j = 0;
        for (; j + LANES <= cols; j += LANES) {
            for (int k = 0; k < LANES; k++) lane_sum[k] += row[j + k];
        }
        float sum = 0.0f;
        for (int k = 0; k < LANES; k++) sum += lane_sum[k];
        for (; j < cols; j++) sum += row[j];
        if (row_log_normaliser) row_log_normaliser[r] = m + logf(sum + eps);
        float scale = 1.0f / (sum + eps);
        for (int c = 0; c < cols; c++) row[c] *= scale;
    }
}
