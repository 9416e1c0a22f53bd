// Attention of one query vector of one head over a list of KV-cache cells: scores = K·q * scale,
// softmax, out = V·p. The cells are stored as f16 (llama.cpp's default cache) or q8_0 (kv_type);
// every stored value is widened to f32 exactly before the arithmetic below. Knows nothing about
// layers, sequences or threads; the model calls it once per (token, head) item.
//
// Exactness: the result is bit for bit what llama.cpp's CPU backend computes (non-flash attention on
// x86 AVX-512). K·q and V·p are f16 matmuls, in ggml_vec_dot_f16 order for a one-row product
// (`one_row`: 4 accumulators x 16 lanes over steps of 64 values) and in llamafile tinyBLAS order
// otherwise (16 lanes); the softmax takes exp with ggml_v_expf, sums each 16-cell group pairwise and
// the groups in f64, and p is rounded to f16 for V·p. ggml assigns lanes and groups by cell index; we
// assign them by the cell's position (the cells come in position order), which is the same thing for a
// single sequence filled from cell 0, and makes the result independent of where the cells of a
// sequence sit (speculative buffers, committed drafts).
//
// q8_0 storage: the same arithmetic on the dequantized values (d * q, one f32 product each); not
// llama.cpp's arithmetic for a quantized cache (it multiplies q8_0 by q8_0 integers, and only with
// flash attention), so only the f16 cache is llama.cpp-exact.
//
// Speed: f16 K is stored transposed (kv_cache), so the scores of 16 cells are computed side by side:
// lane l of cell c accumulates in vector l, lane by lane the same fma chain as the one-cell kernels,
// and the 16-lane reductions run across cells. V·p accumulates lane-major (one row of head_dim values
// per lane), so each cell's term is a vector fma. Neither changes a single rounding.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pipeinfer {

// How K and V values are stored.
enum class kv_type : int {
    F16 = 0,   // IEEE half; K transposed (one row per value, cells side by side), V one row per cell
    Q8_0 = 1,  // ggml's block_q8_0 (32 values: f16 scale d, 32 int8 q; value = d * q), one row per cell
};
const char* kv_type_name(kv_type t);
// Bytes one cell's n values take (n % 32 == 0 for Q8_0).
size_t kv_row_bytes(kv_type t, int64_t n);

// Where one KV head's keys and values sit.
struct attn_kv {
    kv_type type = kv_type::F16;
    // F16: value x of cell c at ((const uint16_t*)k)[x * k_stride + c] (head_dim rows, k_stride >= cells);
    // Q8_0: the head_dim values of cell c in q8_0 blocks at (const uint8_t*)k + c * k_stride (bytes).
    const void* k = nullptr;
    int64_t k_stride = 0;
    // F16: value t of cell c at ((const uint16_t*)v)[c * v_stride + t];
    // Q8_0: the head_dim values of cell c in q8_0 blocks at (const uint8_t*)v + c * v_stride (bytes).
    const void* v = nullptr;
    int64_t v_stride = 0;
    const int32_t* cell_pos = nullptr;  // position of each cell
};

// Floats of scratch attend_f16 needs for n_vis cells at most.
size_t attend_scratch_floats(int64_t head_dim, int64_t max_cells);

// out (head_dim) = attention of q (head_dim) over cells[0..n_vis) (in increasing position order);
// n_vis == 0 gives zeros. `scratch` holds attend_scratch_floats(head_dim, n_vis) floats.
// Precondition: head_dim % 32 == 0 for Q8_0 storage.
void attend_f16(const float* q, int64_t head_dim, float scale, const attn_kv& kv, const int32_t* cells,
                int64_t n_vis, bool one_row, float* scratch, float* out);

// The scalar reference (kernels/attention-ref.cpp): the same result, one cell at a time; for tests.
void attend_f16_ref(const float* q, int64_t head_dim, float scale, const attn_kv& kv, const int32_t* cells,
                    int64_t n_vis, bool one_row, float* out);

} // namespace pipeinfer
