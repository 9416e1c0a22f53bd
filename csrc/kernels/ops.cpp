#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include "kernels/ops.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"
#include "kernels/expf-ggml.h"
#include "kernels/fma-clones.h"

namespace pipeinfer {

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
                rope_mode mode, const float* freq_factors) {
    const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
    float theta = static_cast<float>(pos);
    for (int64_t i = 0; i < n_rot / 2; ++i) {
        const float t = freq_factors != nullptr ? theta / freq_factors[i] : theta;
        const float c = std::cos(t);
        const float s = std::sin(t);
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
        gate[i] = (g / (1.0f + detail::expf_ggml_inline(0.0f - g))) * up[i];
    }
    for (; i < n; ++i) {
        const float g = gate[i];
        gate[i] = (g / (1.0f + std::exp(-g))) * up[i];
    }
}

namespace {

// ggml_table_gelu_f16: f16(gelu(f16 value)) for every f16 bit pattern (ggml-cpu.c ggml_cpu_init), with
// ggml_gelu_f32's expression as GCC compiles it for an FMA machine: 1 + (a*x)*x is one fused
// multiply-add (checked against llama.cpp's table: all 65536 entries equal).
struct gelu_f16_table {
    uint16_t v[1 << 16];
    gelu_f16_table() {
        const float a = 0.044715f, sqrt_2_over_pi = 0.79788456080286535587989211986876f;
        for (uint32_t i = 0; i < (1u << 16); ++i) {
            const float x = fp16_to_fp32(static_cast<uint16_t>(i));
            const float inner = std::fmaf(a * x, x, 1.0f);
            v[i] = fp32_to_fp16((0.5f * x) * (1.0f + std::tanh((sqrt_2_over_pi * x) * inner)));
        }
    }
};

const gelu_f16_table& gelu_table() {
    static const gelu_f16_table t;  // built once, on first use (thread-safe static init)
    return t;
}

} // namespace

void geglu_inplace(float* gate, const float* up, int64_t n) {
    const uint16_t* t = gelu_table().v;
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        if (g <= -10.0f) {
            gate[i] = 0.0f;
        } else if (g >= 10.0f) {
            gate[i] = g * up[i];
        } else {
            gate[i] = fp16_to_fp32(t[fp32_to_fp16(g)]) * up[i];
        }
    }
}

PI_FMA_CLONES
float expf_ggml(float x) { return detail::expf_ggml_inline(x); }

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

// fp16_to_fp32(fp32_to_fp16(x)) without branches (every case computed, one selected), so the loop
// vectorizes: normal f16 results round the f32 bits to 11 significant bits (to nearest even),
// subnormal ones round x * 2^24 to an integer, too large ones become inf, NaN a quiet NaN.
PI_FMA_CLONES
void round_to_f16(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t b = fp32_to_bits(x[i]);
        const uint32_t sign = b & 0x80000000u;
        const uint32_t ax = b & 0x7fffffffu;
        const uint32_t normal = (ax + 0xfffu + ((ax >> 13) & 1u)) & 0xffffe000u;
        float v = fp32_from_bits(ax) * 16777216.0f;  // subnormal result: an integer multiple of 2^-24
        v = (v + 12582912.0f) - 12582912.0f;
        const uint32_t sub = fp32_to_bits(v * 5.9604644775390625e-08f);
        uint32_t r = ax < 0x38800000u ? sub : normal;
        r = ax >= 0x477ff000u ? 0x7f800000u : r;
        r = ax > 0x7f800000u ? 0x7fc00000u : r;
        x[i] = fp32_from_bits(sign | r);
    }
}

} // namespace pipeinfer
