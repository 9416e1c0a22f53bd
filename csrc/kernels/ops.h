// Element-wise and row-wise operations of the transformer forward pass (everything but matmul and
// attention): RMSNorm, rotary position embedding, SwiGLU, bias add. Row-major f32 buffers; shapes are
// given by the arguments. Must not allocate per call or know about layers.
#pragma once
#include <cstdint>

namespace pipeinfer {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], for one row of n values (ggml_rms_norm then mul).
void rmsnorm_row(const float* x, const float* w, int64_t n, float eps, float* out);

enum class rope_mode : int {
    NORMAL = 0,  // rotate adjacent pairs (2i, 2i+1): llama GGUFs (q/k rows permuted by the converter)
    NEOX = 2,    // rotate (i, i + n_rot/2): qwen2, gemma
};

// Rotates the first n_rot values of each of n_head vectors of head_dim values in x (one token at
// position pos), in place. theta_i = pos * freq_base^(-2i/n_rot).
void rope_apply(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int32_t pos, float freq_base,
                rope_mode mode);

// gate[i] = silu(gate[i]) * up[i] for n values.
void swiglu_inplace(float* gate, const float* up, int64_t n);

// y[i] += b[i] for n values.
void add_inplace(float* y, const float* b, int64_t n);

// Rounds every value to the nearest f16 (as stored by an f16 tensor), in place.
void round_to_f16(float* x, int64_t n);

} // namespace pipeinfer
