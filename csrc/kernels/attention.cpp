#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include "kernels/attention.h"

#include <algorithm>
#include <cmath>

#include "common/fp16.h"
#include "kernels/attention-kv.h"
#include "kernels/expf-ggml.h"
#include "kernels/fma-clones.h"
#include "kernels/ops.h"

namespace pipeinfer {

const char* kv_type_name(kv_type t) { return t == kv_type::Q8_0 ? "q8_0" : "f16"; }

size_t kv_row_bytes(kv_type t, int64_t n) {
    return t == kv_type::Q8_0 ? static_cast<size_t>(n / QK8_0) * sizeof(block_q8_0) : static_cast<size_t>(n) * 2;
}

namespace {

constexpr int64_t kTile = 16;  // cells scored side by side

int64_t round_up16(int64_t n) { return (n + kTile - 1) / kTile * kTile; }

// s[t] = reduce16_ggml(a[0][t], ..., a[15][t]) for 16 columns t at once (the same pairwise tree).
__attribute__((always_inline)) inline void reduce_lanes16(const float (&a)[16][16], float* s) {
    float t8[8][16], t4[4][16];
    for (int k = 0; k < 8; ++k) {
        for (int t = 0; t < 16; ++t) t8[k][t] = a[k + 8][t] + a[k][t];
    }
    for (int k = 0; k < 4; ++k) {
        for (int t = 0; t < 16; ++t) t4[k][t] = t8[k + 4][t] + t8[k][t];
    }
    for (int t = 0; t < 16; ++t) s[t] = (t4[0][t] + t4[2][t]) + (t4[1][t] + t4[3][t]);
}

// Scores of 16 cells whose K columns are rows x of `kt` (kt[x * stride + t], t < 16), tinyBLAS order:
// lane l accumulates values l, l + 16, ... by fma, then the 16 lanes are reduced.
__attribute__((always_inline)) inline void scores16_gemm(const float* q, int64_t hd, const float* kt,
                                                         int64_t stride, float* s) {
    float a[16][16] = {};  // (lane, cell)
    for (int64_t x0 = 0; x0 < hd; x0 += 16) {
        for (int l = 0; l < 16; ++l) {
            const float qx = q[x0 + l];
            const float* r = kt + (x0 + l) * stride;
#pragma GCC unroll 1
            for (int t = 0; t < 16; ++t) a[l][t] = std::fmaf(qx, r[t], a[l][t]);
        }
    }
    reduce_lanes16(a, s);
}

// The same in ggml_vec_dot_f16 order (hd % 64 == 0): 4 accumulators of 16 lanes over steps of 64,
// combined as (acc0 + acc2) + (acc1 + acc3), then reduced.
__attribute__((always_inline)) inline void scores16_vec(const float* q, int64_t hd, const float* kt,
                                                        int64_t stride, float* s) {
    float a[4][16][16] = {};  // (accumulator, lane, cell)
    for (int64_t x0 = 0; x0 < hd; x0 += 64) {
        for (int j = 0; j < 4; ++j) {
            for (int l = 0; l < 16; ++l) {
                const float qx = q[x0 + 16 * j + l];
                const float* r = kt + (x0 + 16 * j + l) * stride;
#pragma GCC unroll 1
                for (int t = 0; t < 16; ++t) a[j][l][t] = std::fmaf(qx, r[t], a[j][l][t]);
            }
        }
    }
    for (int l = 0; l < 16; ++l) {
        for (int t = 0; t < 16; ++t) a[0][l][t] = (a[0][l][t] + a[2][l][t]) + (a[1][l][t] + a[3][l][t]);
    }
    reduce_lanes16(a[0], s);
}

// Whether cells[0..16) hold positions p, p + 1, ..., p + 15 (one whole softmax group, in lane order).
bool full_group(const int32_t* cell_pos, const int32_t* cells) {
    const int32_t p = cell_pos[cells[0]];
    for (int t = 1; t < 16; ++t) {
        if (cell_pos[cells[t]] != p + t) return false;
    }
    return true;
}

PI_FMA_CLONES
void exp_shifted_row(float* x, int64_t n, float mx) {
    for (int64_t j = 0; j < n; ++j) x[j] = detail::expf_ggml_select(x[j] - mx);
}

// K of up to 16 cells (cells[0..m)) widened to f32 into tile (hd, 16): tile[x * 16 + t] = value x of
// cell t, zeros for t >= m.
PI_FMA_CLONES
void load_k_tile(const attn_kv& kv, const int32_t* cells, int64_t m, int64_t hd, float* tile) {
    if (kv.type == kv_type::Q8_0) {
        widen_k_tile_q8_0(kv, cells, m, hd, tile);
        return;
    }
    const uint16_t* k = static_cast<const uint16_t*>(kv.k);
    const int32_t c0 = cells[0];
    bool contiguous = m == kTile && c0 + kTile <= kv.k_stride;
    for (int64_t t = 1; t < m && contiguous; ++t) contiguous = cells[t] == c0 + t;
    if (contiguous) {  // the common case: 16 neighbouring cells, one f16 vector per value
        for (int64_t x = 0; x < hd; ++x) {
            const uint16_t* row = k + x * kv.k_stride + c0;
            for (int64_t t = 0; t < kTile; ++t) tile[x * kTile + t] = fp16_to_fp32_fast(row[t]);
        }
        return;
    }
    for (int64_t x = 0; x < hd; ++x) {  // cells of other sequences between them, a short tail
        const uint16_t* row = k + x * kv.k_stride;
        for (int64_t t = 0; t < kTile; ++t) tile[x * kTile + t] = t < m ? fp16_to_fp32_fast(row[cells[t]]) : 0.0f;
    }
}

// Scores of cells[0..n) into sc (scaled by `scale`); returns their maximum.
PI_FMA_CLONES
float scores_tiled(const float* q, int64_t hd, float scale, const attn_kv& kv, const int32_t* cells, int64_t n,
                   bool vec_order, float* tile, float* sc) {
    float mx = -INFINITY;
    float s[16];
    for (int64_t j0 = 0; j0 < n; j0 += kTile) {
        const int64_t m = std::min(kTile, n - j0);
        load_k_tile(kv, cells + j0, m, hd, tile);
        if (vec_order) {
            scores16_vec(q, hd, tile, kTile, s);
        } else {
            scores16_gemm(q, hd, tile, kTile, s);
        }
        for (int64_t t = 0; t < m; ++t) {
            sc[j0 + t] = s[t] * scale;
            mx = std::max(mx, sc[j0 + t]);
        }
    }
    return mx;
}

// V·p into lanes (lane_w, hd), lane = position % lane_w; each cell's term is one fma per value.
// `row` is scratch for one dequantized q8_0 row (hd).
PI_FMA_CLONES
void pv_lanes(const float* p, const attn_kv& kv, const int32_t* cells, int64_t n, int64_t hd, int lane_w,
              float* lanes, float* row) {
    std::fill(lanes, lanes + lane_w * hd, 0.0f);
    for (int64_t j = 0; j < n; ++j) {
        float* acc = lanes + (kv.cell_pos[cells[j]] % lane_w) * hd;
        const float pj = p[j];
        if (kv.type == kv_type::Q8_0) {
            dequantize_kv_q8_0(static_cast<const uint8_t*>(kv.v) + static_cast<int64_t>(cells[j]) * kv.v_stride, hd,
                               row, 1);
            for (int64_t t = 0; t < hd; ++t) acc[t] = std::fmaf(pj, row[t], acc[t]);
        } else {
            const uint16_t* vr = static_cast<const uint16_t*>(kv.v) + static_cast<int64_t>(cells[j]) * kv.v_stride;
            for (int64_t t = 0; t < hd; ++t) acc[t] = std::fmaf(pj, fp16_to_fp32_fast(vr[t]), acc[t]);
        }
    }
}

// out[t] = reduce16_ggml over the 16 lane rows (lane_w == 16), or over (acc0 + acc2) + (acc1 + acc3) of
// the 4 x 16 lane rows (lane_w == 64, ggml_vec_dot_f16's combination).
PI_FMA_CLONES
void reduce_lanes(float* lanes, int64_t hd, int lane_w, float* out) {
    if (lane_w == 64) {
        for (int l = 0; l < 16; ++l) {
            float* r0 = lanes + l * hd;
            const float* r1 = lanes + (16 + l) * hd;
            const float* r2 = lanes + (32 + l) * hd;
            const float* r3 = lanes + (48 + l) * hd;
            for (int64_t t = 0; t < hd; ++t) r0[t] = (r0[t] + r2[t]) + (r1[t] + r3[t]);
        }
    }
    for (int64_t t0 = 0; t0 < hd; t0 += 16) {
        const int64_t m = std::min<int64_t>(16, hd - t0);
        float a[16][16];
        for (int l = 0; l < 16; ++l) {
            for (int64_t t = 0; t < 16; ++t) a[l][t] = t < m ? lanes[l * hd + t0 + t] : 0.0f;
        }
        float s[16];
        reduce_lanes16(a, s);
        for (int64_t t = 0; t < m; ++t) out[t0 + t] = s[t];
    }
}

} // namespace

size_t attend_scratch_floats(int64_t head_dim, int64_t max_cells) {
    return static_cast<size_t>(round_up16(max_cells) + head_dim * kTile + 64 * head_dim + head_dim);
}

void attend_f16(const float* q, int64_t hd, float scale, const attn_kv& kv, const int32_t* cells, int64_t n,
                bool one_row, float* scratch, float* out) {
    if (n <= 0) {
        std::fill(out, out + hd, 0.0f);
        return;
    }
    float* sc = scratch;                      // (n) scores, then exp values, then p
    float* tile = sc + round_up16(n);         // (hd, 16) K of 16 cells, widened to f32
    float* lanes = tile + hd * kTile;         // (lane_w, hd) V·p lane accumulators
    float* col = lanes + 64 * hd;             // (hd) one cell's K or V, widened to f32
    const bool vec_order = one_row || hd % 16 != 0;
    float mx = -INFINITY;
    if (!vec_order || hd % 64 == 0) {
        mx = scores_tiled(q, hd, scale, kv, cells, n, vec_order, tile, sc);
    } else {  // ggml_vec_dot_f16 with a tail of hd % 64 values: one cell at a time
        for (int64_t j = 0; j < n; ++j) {
            load_kv_k(kv, cells[j], hd, col);
            sc[j] = dot_f16_ggml_vec(q, col, hd) * scale;
            mx = std::max(mx, sc[j]);
        }
    }
    exp_shifted_row(sc, n, mx);
    // ggml_vec_soft_max_f32: each 16-cell group (by position) summed pairwise, the groups in f64
    double sum = 0.0;
    float grp[16] = {};
    for (int64_t j = 0; j < n; ++j) {
        const int32_t pj = kv.cell_pos[cells[j]];
        if (pj % 16 == 0 && j + 16 <= n && full_group(kv.cell_pos, cells + j)) {  // lanes = sc[j..j+16)
            sum += static_cast<double>(reduce16_ggml(sc + j));
            j += 15;
            continue;
        }
        grp[pj % 16] = sc[j];
        if (j + 1 == n || kv.cell_pos[cells[j + 1]] / 16 != pj / 16) {
            sum += static_cast<double>(reduce16_ggml(grp));
            std::fill(grp, grp + 16, 0.0f);
        }
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < n; ++j) sc[j] *= inv;
    round_to_f16(sc, n);
    const int lane_w = one_row ? 64 : 16;  // 4 accumulators x 16 (vec_dot_f16) or 16 (tinyBLAS)
    pv_lanes(sc, kv, cells, n, hd, lane_w, lanes, col);
    reduce_lanes(lanes, hd, lane_w, out);
}

} // namespace pipeinfer
