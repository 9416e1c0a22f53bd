#include "kernels/ops.h"

#include <cmath>

#include "common/fp16.h"

namespace pipeinfer {

void rmsnorm_row(const float* x, const float* w, int64_t n, float eps, float* out) {
    double sum = 0.0;  // ggml accumulates the sum of squares in double (ggml_float)
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void rope_apply(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int32_t pos, float freq_base,
                rope_mode mode) {
    const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
    for (int64_t h = 0; h < n_head; ++h) {
        float* v = x + h * head_dim;
        float theta = static_cast<float>(pos);
        for (int64_t i = 0; i < n_rot / 2; ++i) {
            const float c = std::cos(theta);
            const float s = std::sin(theta);
            const int64_t i0 = (mode == rope_mode::NEOX) ? i : 2 * i;
            const int64_t i1 = (mode == rope_mode::NEOX) ? i + n_rot / 2 : 2 * i + 1;
            const float a = v[i0];
            const float b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = a * s + b * c;
            theta *= theta_scale;
        }
    }
}

void swiglu_inplace(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void add_inplace(float* y, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += b[i];
}

void round_to_f16(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}

} // namespace pipeinfer
