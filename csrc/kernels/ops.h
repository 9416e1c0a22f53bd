// Element-wise and row-wise operations of the transformer forward pass (everything but the weight
// matmuls): RMSNorm, rotary position embedding, SwiGLU, bias add, and the exp / f16-dot primitives of
// attention. Row-major f32 buffers; shapes are given by the arguments. Must not allocate per call or
// know about layers.
//
// Exactness: every operation reproduces, bit for bit, what llama.cpp's CPU backend computes on an
// x86-64 CPU with AVX-512 (ggml-cpu/ops.cpp, vec.h/vec.cpp, llamafile sgemm.cpp): the same f32
// operations, the same fused multiply-adds (std::fmaf), the same summation orders. Quantized
// activations amplify any last-bit difference through the layers, so "close" is not enough to give
// llama.cpp's greedy continuations. (On x86-64 the hot loops also get an AVX2 + FMA build chosen at
// load time; see ops.cpp. Results are identical on every CPU.)
#pragma once
#include <cstdint>

namespace pipeinfer {

// out[i] = (x[i] * (1 / sqrtf(mean + eps))) * w[i] for one row of n values, mean = f64 sum of the
// f32 squares / n (ggml_rms_norm, then ggml_mul).
void rmsnorm_row(const float* x, const float* w, int64_t n, float eps, float* out);

enum class rope_mode : int {
    NORMAL = 0,  // rotate adjacent pairs (2i, 2i+1): llama GGUFs (q/k rows permuted by the converter)
    NEOX = 2,    // rotate (i, i + n_rot/2): qwen2, gemma
};

// Rotates the first n_rot values of each of n_head vectors of head_dim values in x (one token at
// position pos), in place. theta_i = pos * freq_base^(-2i/n_rot) by repeated f32 products, divided by
// freq_factors[i] when given (llama 3's rope_freqs, ggml_rope_ext's c argument); a pair (x0, x1)
// becomes (fma(x0, cos, -(x1 * sin)), fma(x0, sin, x1 * cos)) as ggml's rotate_pairs compiles.
void rope_apply(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int32_t pos, float freq_base,
                rope_mode mode, const float* freq_factors = nullptr);

// gate[i] = silu(gate[i]) * up[i] for ONE row of n values (ggml_vec_swiglu_f32): the values of each
// full group of 16 from the row start use silu(x) = x / (1 + expf_ggml(0 - x)), the rest x / (1 + expf(-x)).
void swiglu_inplace(float* gate, const float* up, int64_t n);

// gate[i] = gelu(gate[i]) * up[i] for one row of n values (ggml_vec_geglu_f32 with GGML_GELU_FP16):
// x <= -10 gives 0, x >= 10 gives x * up, otherwise the tanh-approximated GELU of x rounded to f16 is
// looked up in the table of all 65536 f16 inputs (each entry ggml_gelu_f32 rounded to f16, with the
// fused multiply-add GCC makes of its 1 + a*x*x) and widened back.
void geglu_inplace(float* gate, const float* up, int64_t n);

// exp(x) as one lane of ggml's AVX-512 ggml_v_expf (vec.h; used by llama.cpp's softmax and SiLU):
// a degree-5 polynomial after range reduction by ln 2, not the C library's expf.
float expf_ggml(float x);

// Sum of 16 values in _mm512_reduce_add_ps order: halves added pairwise (v[i] + v[i + 8], then + 4,
// + 2, + 1). Inline: attention calls it once per output value (head_dim times per head and token).
inline float reduce16_ggml(const float* v) {
    float t8[8], t4[4];
    for (int k = 0; k < 8; ++k) t8[k] = v[k + 8] + v[k];
    for (int k = 0; k < 4; ++k) t4[k] = t8[k + 4] + t8[k];
    return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

// Dot product of two f16-valued f32 vectors of n values in llamafile tinyBLAS order (llama.cpp's f16
// matmuls with more than one activation row): lane l (l < 16) accumulates the products of elements
// l, l + 16, ... by fma, then reduce16_ggml. Precondition: n % 16 == 0.
float dot_f16_ggml_gemm(const float* a, const float* b, int64_t n);

// The same in ggml_vec_dot_f16 order (one activation row): 4 accumulators of 16 lanes over steps of
// 64 elements, combined as (acc0 + acc2) + (acc1 + acc3), reduced, then the n % 64 tail added in f64.
float dot_f16_ggml_vec(const float* a, const float* b, int64_t n);

// acc[t * stride] = fma(p, v[t], acc[t * stride]) for t < n: one cell's term of the lane accumulators of
// an f16 V·P product (each lane sums its cells in cell order by fma, as the ggml kernels do).
void fma_strided(float p, const float* v, int64_t n, float* acc, int64_t stride);

// y[i] += b[i] for n values.
void add_inplace(float* y, const float* b, int64_t n);

// Rounds every value to the nearest f16 (as stored by an f16 tensor), in place.
void round_to_f16(float* x, int64_t n);

} // namespace pipeinfer
