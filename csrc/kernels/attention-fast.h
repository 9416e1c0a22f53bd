// Attention of the default (repacked, non-exact) mode: the query heads that share one KV head, for one
// row, over a list of KV-cache cells (kernels/attention.h describes attn_kv and the storage types).
// Knows nothing about layers, sequences or threads; the model calls it once per (row, KV head) item,
// or per (row, KV head, part of its query heads) when a batch has fewer items than threads (the heads
// are computed independently, so the split changes no result).
//
// Not llama.cpp's arithmetic (that is attend_f16, the exact mode): one fixed summation order chosen
// for speed. For each query head (q of head_dim values, rounded to f16 by the caller) and the n
// visible cells in position order, j = 0..n-1 being the index in that list:
//   s_j  = dot_j * scale, dot_j = one fma chain over the values in order: d = 0; d = fma(q[x], k_j[x], d)
//          for x = 0..head_dim-1 (k_j widened to f32 exactly: f16, or d * q for q8_0);
//   m    = the largest s_j (NaN scores are passed over; they make the output NaN through the sum);
//   e_j  = expf_ggml(s_j - m) (kernels/expf-ggml.h, the same operations in the scalar and SIMD paths);
//   sum  = 16 lanes: lane l = e_l + e_{l+16} + ... in increasing j (plain f32 adds from +0), then the
//          lanes combined by reduce16_ggml's pairwise tree;
//   a[t] = one fma chain over the cells in order: a = 0; a = fma(e_j, v_j[t], a) for j = 0..n-1;
//   out[t] = a[t] / sum.
// Every step depends only on the query and the visible cells' values in position order: not on the
// batch, the row's index, the thread count or where the cells sit in the cache. So a verification row
// equals a one-token step bit for bit, and a request's greedy output does not depend on its batch.
// The SIMD paths (kernels/arch/attention-fast-*.cpp, chosen at run time) run cells or values side by
// side, never reordering one chain, and must equal the scalar reference (attend_fast_ref) bit for bit
// (tests/kernels/test_attention_fast.py).
//
// Speed: each K and V tile is widened once per row and KV head and used for all its query heads; f16 K
// (stored transposed) is scored 32 cells side by side (two tiles of up to 16), each tile straight from
// the cache when it is a run of neighbouring cells (of any length from 4 to 16: the kv_cache hands a
// serving slot's cells out in blocks, so its list is made of runs), else from a copy of the stored
// halves of the cells up to the next run; V·e accumulates in head_dim-wide
// registers (64 values per step for a KV group of <= 4 heads on AVX-512), so a small group still runs
// enough independent FMA chains; nothing is cleared or reduced per cell. In a batched decode step the
// kernel streams the whole visible K and V of every row (f16: 2 bytes per value), which is
// where its time goes once the cache is larger than the L3 cache.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/attention.h"

namespace pipeinfer {

// Floats of scratch attend_fast needs for n_q query heads of head_dim and max_cells cells at most.
size_t attend_fast_scratch_floats(int64_t head_dim, int64_t n_q, int64_t max_cells);

// out (n_q, head_dim) = attention of each of the n_q query heads q (n_q, head_dim), all reading the KV
// head `kv`, over cells[0..n_vis) (in increasing position order); n_vis == 0 gives zeros. `scratch`
// holds attend_fast_scratch_floats(head_dim, n_q, n_vis) floats.
// Precondition: head_dim % 32 == 0 for Q8_0 storage.
void attend_fast(const float* q, int64_t n_q, int64_t head_dim, float scale, const attn_kv& kv, const int32_t* cells,
                 int64_t n_vis, float* scratch, float* out);

// The scalar reference (kernels/attention-fast-ref.cpp): the order above written out one head and one
// cell at a time; the definition the SIMD paths are tested against, and the path of CPUs without them.
void attend_fast_ref(const float* q, int64_t n_q, int64_t head_dim, float scale, const attn_kv& kv,
                     const int32_t* cells, int64_t n_vis, float* scratch, float* out);

namespace detail {

// The per-ISA steps of attend_fast (kernels/arch/attention-fast-*.cpp), entered after a cpuid check.
struct attend_fast_isa {
    // s[h * s_stride + t] (h < n_q, t < 16) = dot of head h of q (n_q, hd) with column t of the K tile
    // k[x * k_stride + t], times scale. The tile is f16 (k16) or f32 (k32); the other pointer is null.
    void (*scores16)(const float* q, int64_t n_q, int64_t hd, float scale, const uint16_t* k16, const float* k32,
                     int64_t k_stride, float* s, int64_t s_stride);
    // The same for 32 cells in two f16 tiles: columns t of ka[x * ka_stride + t] then of
    // kb[x * kb_stride + t] scored into s[h * s_stride + t] and then s[h * s_stride + b_col + t]
    // (b_col <= 16: tile b's scores overwrite tile a's columns from b_col on).
    void (*scores32)(const float* q, int64_t n_q, int64_t hd, float scale, const uint16_t* ka, int64_t ka_stride,
                     const uint16_t* kb, int64_t kb_stride, int64_t b_col, float* s, int64_t s_stride);
    // tile[x * 16 + t] = k[x * k_stride + cells[t]] for x < hd, t < m <= 16 (the f16 halves as stored),
    // 0 for t >= m; reads 4 bytes from each cell's value (the cache pads its K rows by at least 16 cells).
    void (*gather_f16)(const uint16_t* k, int64_t k_stride, const int32_t* cells, int64_t m, int64_t hd,
                       uint16_t* tile);
    // out (n_q, hd) = sum over j of e[h * e_stride + j] * V of cells[j], one chain per value (f16 rows).
    void (*pv_f16)(const float* e, int64_t e_stride, int64_t n_q, const uint16_t* v, int64_t v_stride,
                   const int32_t* cells, int64_t n, int64_t hd, float* out);
    // The same for q8_0 rows (v_stride in bytes).
    void (*pv_q8_0)(const float* e, int64_t e_stride, int64_t n_q, const uint8_t* v, int64_t v_stride,
                    const int32_t* cells, int64_t n, int64_t hd, float* out);
};
// Null where the CPU (or the build) has no SIMD path; hd % 16 == 0 is needed by every path.
const attend_fast_isa* attend_fast_isa_avx512();
const attend_fast_isa* attend_fast_isa_avx2();

} // namespace detail

// attend_fast on a given path (null: the scalar reference), for tests of each path on one CPU.
void attend_fast_with(const detail::attend_fast_isa* isa, const float* q, int64_t n_q, int64_t head_dim, float scale,
                      const attn_kv& kv, const int32_t* cells, int64_t n_vis, float* scratch, float* out);

// Which path attend_fast takes on this CPU: "avx512", "avx2" or "scalar".
const char* attend_fast_path();

} // namespace pipeinfer
