// THE table of tensor element types (ggml_type ids as stored in GGUF). One row per type: name, block
// size, bytes per block, and the function pointers the matmul driver and the model use. The scalar
// reference functions (quants-ref.cpp) fill every row first; per-ISA files (arch/) then override the
// entries their CPU supports, chosen at run time by init_type_traits(). Nothing else in the engine
// switches on a quant type.
//
// Type ids and block layouts follow ggml (ggml/include/ggml.h, ggml/src/ggml-common.h); the layouts
// are declared with size asserts in quant/blocks.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pipeinfer {

enum class ggml_type : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, /* 4, 5 removed */ Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    /* 31..33 removed */ TQ1_0 = 34, TQ2_0 = 35, /* 36..38 removed */ MXFP4 = 39,
    COUNT = 40,
};

// Dequantizes n values (n a multiple of block_size) from blocks at src into dst.
using to_float_fn = void (*)(const void* src, float* dst, int64_t n);
// Quantizes n floats (n a multiple of block_size) into blocks at dst (ggml's quantize_row_*_ref rounding).
using from_float_fn = void (*)(const float* src, void* dst, int64_t n);
// Dot products of one weight row x (n values, this type) with n_act activation rows y (vec_dot_type),
// each y row y_stride bytes apart; s[j] = dot(x, y_j). n is a multiple of block_size. Reading x once
// for all activation rows is what makes speculative verification cheap (small-batch matmul).
using vec_dot_fn = void (*)(int64_t n, const void* x, const void* y, size_t y_stride, int n_act, float* s);
// The same dots for n_w weight rows (x + w * x_stride; n_w a multiple of 4, taken 4 at a time):
// s[j * s_stride + w] = dot(x_w, y_j) for w < n_w, j < n_act, each bit-identical to vec_dot's result.
using vec_dot_4w_fn = void (*)(int64_t n, const void* x, size_t x_stride, int n_w, const void* y, size_t y_stride,
                               int n_act, float* s, size_t s_stride);
// Dots of one repacked group of 16 weight rows (quant/repack.h; n values per row) with n_act <=
// REPACK_ACT_MAX activation rows y + j * y_stride (vec_dot_type) and their side data
// side + j * side_stride (repack_act_side; null for types that need none):
// s[j * 16 + r] = dot(row r, y_j) in the summation order defined in quant/repack.h.
using repack_dot_fn = void (*)(int64_t n, const void* group, const void* y, size_t y_stride, const int32_t* side,
                               size_t side_stride, int n_act, float* s);

struct type_traits {
    const char* name = nullptr;     // GGUF/ggml spelling, lower case: "q4_0", "f16", "bf16", "q4_k"
    int64_t block_size = 0;         // values per block; 0 = removed/unknown id
    size_t type_size = 0;           // bytes per block
    bool is_quantized = false;
    to_float_fn to_float = nullptr;          // null if this build cannot dequantize the type
    from_float_fn from_float = nullptr;      // null if the type is never an activation/quant target
    vec_dot_fn vec_dot = nullptr;            // null if the type cannot be a matmul weight here
    ggml_type vec_dot_type = ggml_type::F32; // activation type vec_dot expects
    // The same dot in the summation order of one of llama.cpp's batched x86 kernels (same signature and
    // activations as vec_dot; every row's result still depends on that row alone). matmul uses them only
    // for batches that need not be row-exact, on the rows llama.cpp gives to those kernels (matmul.h).
    vec_dot_fn vec_dot_x4 = nullptr;    // repacked-weight gemm (ggml repack.cpp, e.g. ggml_gemm_q4_K_8x8_q8_K)
    vec_dot_fn vec_dot_tiled = nullptr; // tiled k-quant matmul (ggml-cpu tiled.cpp, VNNI microkernel)
    // vec_dot for weight rows 4 at a time (independent FMA chains, wider registers, activation side data
    // prepared once per call); null where the ISA has none. Same results as vec_dot, bit for bit: matmul
    // uses it for the row-exact rows of each chunk.
    vec_dot_4w_fn vec_dot_4w = nullptr;
    // Dot over row-interleaved weights (quant/repack.h); null for types without a repacked layout.
    repack_dot_fn vec_dot_repacked = nullptr;
};

// Fills the table (reference kernels, then the best ISA overrides for this CPU). Idempotent and
// thread-safe; called by get_type_traits.
void init_type_traits();

// Row for a type id. Any id (even an unknown one) is accepted; unknown ids give a row with
// block_size == 0 and name "unknown".
const type_traits& get_type_traits(ggml_type t);
const type_traits& get_type_traits(uint32_t id);

// Bytes of a row of n values; throws shape_error if n is not a multiple of the block size and
// unsupported_type for an unknown id.
size_t row_size(ggml_type t, int64_t n);

// Name of the SIMD level chosen at run time for the kernels ("scalar", "avx2", "avx512" on x86-64;
// "scalar", "neon", "dotprod" on AArch64).
const char* kernel_isa();
// Forces the reference kernels (isa = "scalar") or a level up to the CPU's best; returns the
// level in force. Used by tests to compare SIMD paths with the reference.
const char* set_kernel_isa(const char* isa);

} // namespace pipeinfer
