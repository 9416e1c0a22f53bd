// fp-contract is off: the ggml operations being reproduced fuse exactly where std::fmaf is written.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/ops.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"

// The hot loops below are built three times on x86-64 with GCC: for x86-64-v4 (AVX-512: a 16-lane loop
// is one instruction), x86-64-v3 (AVX2 + FMA, where std::fmaf is one vfmadd instruction and the lane
// loops vectorize) and the baseline (where std::fmaf is a libm call), the loader picking one by cpuid
// (an ifunc). An FMA is exactly rounded either way and the lane
// loops only run independent lanes side by side, so every build gives identical results.
#if defined(PIPEINFER_X86) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define PI_FMA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PI_FMA_CLONES
#endif

namespace pipeinfer {

namespace {

// 2^k for k in [-126, 127] (a normal f32, built exactly).
inline float pow2_normal(int k) {
    const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
}

// j * 2^n with one rounding (as vscalefps and ldexp) for a normal j and |n| <= 192: outside the normal
// exponent range the first product is an exact exponent shift and only the second one rounds.
inline float scale_pow2(float j, int n) {
    if (n < -126) return (j * pow2_normal(n + 100)) * pow2_normal(-100);
    if (n > 127) return (j * pow2_normal(n - 100)) * pow2_normal(100);
    return j * pow2_normal(n);
}

// Constants and steps of ggml_v_expf (ggml-cpu/vec.h, AVX-512 variant, "adapted from arm limited
// optimized routine"): n = round(x / ln 2) via the 1.5 * 2^23 shift, b = x - n ln 2 in two parts,
// j = polynomial in b, result = j * 2^n; |n| > 192 gives 0 (n <= 0) or +inf. Inlined into each
// caller's build (see PI_FMA_CLONES).
__attribute__((always_inline)) inline float expf_ggml_inline(float x) {
    const float shift = 0x1.8p23f;
    const float z = std::fmaf(x, 0x1.715476p+0f, shift);
    const float n = z - shift;
    const float b = std::fmaf(-n, 0x1.7f7d1cp-20f, std::fmaf(-n, 0x1.62e4p-1f, x));
    if (std::isnan(n)) return n;
    if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    const float u = b * b;
    const float p_hi = std::fmaf(std::fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f));
    const float j = std::fmaf(p_hi, u, std::fmaf(0x1.ffffecp-1f, b, 1.0f));
    return scale_pow2(j, static_cast<int>(n));
}

} // namespace

void rmsnorm_row(const float* x, const float* w, int64_t n, float eps, float* out) {
    double sum = 0.0;  // ggml: f32 squares summed in double (ggml_float)
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

// The angles of the n_rot / 2 pairs are the same for every head: each is computed once (the same f32
// steps as per head) and applied to all heads.
PI_FMA_CLONES
void rope_apply(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int32_t pos, float freq_base,
                rope_mode mode) {
    const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
    float theta = static_cast<float>(pos);
    for (int64_t i = 0; i < n_rot / 2; ++i) {
        const float c = std::cos(theta);
        const float s = std::sin(theta);
        const int64_t i0 = (mode == rope_mode::NEOX) ? i : 2 * i;
        const int64_t i1 = (mode == rope_mode::NEOX) ? i + n_rot / 2 : 2 * i + 1;
        for (int64_t h = 0; h < n_head; ++h) {
            float* v = x + h * head_dim;
            const float a = v[i0];
            const float b = v[i1];
            v[i0] = std::fmaf(a, c, -(b * s));
            v[i1] = std::fmaf(a, s, b * c);
        }
        theta *= theta_scale;
    }
}

PI_FMA_CLONES
void swiglu_inplace(float* gate, const float* up, int64_t n) {
    const int64_t n_vec = n - n % 16;  // values the 16-wide ggml_v_silu covers
    int64_t i = 0;
    for (; i < n_vec; ++i) {
        const float g = gate[i];
        gate[i] = (g / (1.0f + expf_ggml_inline(0.0f - g))) * up[i];
    }
    for (; i < n; ++i) {
        const float g = gate[i];
        gate[i] = (g / (1.0f + std::exp(-g))) * up[i];
    }
}

PI_FMA_CLONES
float expf_ggml(float x) { return expf_ggml_inline(x); }

PI_FMA_CLONES
float dot_f16_ggml_gemm(const float* a, const float* b, int64_t n) {
    float lane[16] = {};  // (16,) f32 lane accumulators
    for (int64_t i = 0; i < n; i += 16) {
        for (int l = 0; l < 16; ++l) lane[l] = std::fmaf(a[i + l], b[i + l], lane[l]);
    }
    return reduce16_ggml(lane);
}

PI_FMA_CLONES
float dot_f16_ggml_vec(const float* a, const float* b, int64_t n) {
    float acc[4][16] = {};  // (4, 16) f32: GGML_F16_ARR accumulators
    const int64_t np = n - n % 64;
    for (int64_t i = 0; i < np; i += 64) {
        for (int j = 0; j < 4; ++j) {
            for (int l = 0; l < 16; ++l) acc[j][l] = std::fmaf(a[i + 16 * j + l], b[i + 16 * j + l], acc[j][l]);
        }
    }
    float r[16];
    for (int l = 0; l < 16; ++l) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    double sum = np > 0 ? static_cast<double>(reduce16_ggml(r)) : 0.0;
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
    return static_cast<float>(sum);
}

PI_FMA_CLONES
void fma_strided(float p, const float* v, int64_t n, float* acc, int64_t stride) {
    for (int64_t t = 0; t < n; ++t) acc[t * stride] = std::fmaf(p, v[t], acc[t * stride]);
}

void add_inplace(float* y, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += b[i];
}

void round_to_f16(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}

} // namespace pipeinfer
