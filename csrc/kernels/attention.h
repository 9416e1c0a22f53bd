// Attention of one query vector of one head over a list of KV-cache cells (f16-valued f32 cache):
// scores = K·q * scale, softmax, out = V·p. Knows nothing about layers, sequences or threads; the
// model calls it once per (token, head) item.
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
// Speed: K is read transposed (kv_cache::k_t), so the scores of 16 cells are computed side by side:
// lane l of cell c accumulates in vector l, lane by lane the same fma chain as the one-cell kernels,
// and the 16-lane reductions run across cells. V·p accumulates lane-major (one row of head_dim values
// per lane), so each cell's term is a vector fma. Neither changes a single rounding.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pipeinfer {

// Where one KV head's keys and values sit.
struct attn_kv {
    const float* k_t = nullptr;    // value x of cell c at k_t[x * k_stride + c] (head_dim rows)
    int64_t k_stride = 0;          // row stride of k_t (>= the number of cells)
    const float* v = nullptr;      // value t of cell c at v[c * v_stride + t]
    int64_t v_stride = 0;
    const int32_t* cell_pos = nullptr;  // position of each cell
};

// Floats of scratch attend_f16 needs for n_vis cells at most.
size_t attend_scratch_floats(int64_t head_dim, int64_t max_cells);

// out (head_dim) = attention of q (head_dim) over cells[0..n_vis) (in increasing position order);
// n_vis == 0 gives zeros. `scratch` holds attend_scratch_floats(head_dim, n_vis) floats.
void attend_f16(const float* q, int64_t head_dim, float scale, const attn_kv& kv, const int32_t* cells,
                int64_t n_vis, bool one_row, float* scratch, float* out);

// The scalar reference (kernels/attention-ref.cpp): the same result, one cell at a time; for tests.
void attend_f16_ref(const float* q, int64_t head_dim, float scale, const attn_kv& kv, const int32_t* cells,
                    int64_t n_vis, bool one_row, float* out);

} // namespace pipeinfer
