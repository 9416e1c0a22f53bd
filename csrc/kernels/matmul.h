// The one matmul driver: y = x · Wᵀ for a weight matrix W of any type in the traits table.
// Activations are quantized once per call to the weight type's vec_dot_type, then output rows are
// split across the stage's thread pool; each weight row is read once for all activation rows (in
// tiles of up to 16 rows for prompt batches). Owns no threads and no model state; the kernels
// themselves live in the traits table (quant/).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/type-traits.h"

namespace pipeinfer {

class thread_pool;

// A 2-D weight matrix in GGUF orientation: ne0 = n_in (contiguous), ne1 = n_out rows of row_bytes.
struct weight_view {
    ggml_type type = ggml_type::F32;
    int64_t n_in = 0;          // ne0
    int64_t n_out = 0;         // ne1
    const uint8_t* data = nullptr;
    size_t row_bytes = 0;      // row_size(type, n_in)
    // The same matrix row-interleaved (quant/repack.h, repack_bytes(type, n_in, n_out) bytes), or null.
    // When set, matmul multiplies this copy in the repacked summation order (every row exact).
    const uint8_t* repacked = nullptr;
};

// Scratch reused across calls (quantized activations); owned by the caller, one per stage.
struct matmul_scratch {
    std::vector<uint8_t> act;  // (n_rows, row_size(vec_dot_type, n_in)) bytes
    std::vector<int32_t> act_side; // (n_rows, repack_act_ints) repacked-dot activation side data
};

// x: (n_rows, n_in) f32 row-major; y: (n_rows, n_out) f32 row-major. n_rows >= 1.
// Throws shape_error/unsupported_type for unusable shapes or types.
// Repacked weights (w.repacked) take the order of quant/repack.h for every row and ignore exact_rows
// (their rows are always exact).
// exact_rows = true: every output row is bit-identical to a one-row call (vec_dot only). false: the
// rows that llama.cpp computes with a batched kernel (repacked-weight gemm, tiled k-quant matmul) take
// that kernel's summation order (type_traits::vec_dot_x4 / vec_dot_tiled), so a prompt batch gives
// llama.cpp's results bit for bit; a row's result then depends on the batch size and its index.
void matmul(const weight_view& w, const float* x, int64_t n_rows, float* y, thread_pool& pool,
            matmul_scratch& scratch, bool exact_rows = false);

// ys[i] = x · ws[i]ᵀ for n_w weights that read the same activations x (Q/K/V, gate/up): each result
// equals a matmul call bit for bit, but the activations are quantized once for consecutive weights
// that share a dot type (and n_in).
void matmul_same_x(const weight_view* const* ws, float* const* ys, int n_w, const float* x, int64_t n_rows,
                   thread_pool& pool, matmul_scratch& scratch, bool exact_rows = false);

// Scalar reference of the same product: dequantizes each weight row to f32 and accumulates in double.
// For tests and as the oracle of the SIMD paths.
void matmul_ref(const weight_view& w, const float* x, int64_t n_rows, float* y);

// Memory-bandwidth baseline for the matmul benchmarks: reads n bytes once, split across the pool in
// contiguous ranges, and returns the wrapping sum of its 64-bit words (a result so the reads cannot be
// optimized away). A matvec on a weight larger than the cache cannot be faster than this.
uint64_t stream_read_sum(const uint8_t* buf, size_t n, thread_pool& pool);

} // namespace pipeinfer
