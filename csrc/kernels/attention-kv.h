// Reading stored K/V values back as f32 (kernels/attention.h, kv_type), shared by the tiled attention
// kernel and its scalar reference so that both see the same values. Every conversion is exact: an f16
// widens exactly, and a q8_0 value d * q is one f32 product of two exactly represented numbers, as
// ggml's dequantize_row_q8_0 computes it.
#pragma once
#include <cstdint>

#include "common/fp16.h"
#include "kernels/attention.h"
#include "quant/blocks.h"

namespace pipeinfer {

// out[i * out_stride] = value i of a q8_0 row of n values (n % 32 == 0).
inline void dequantize_kv_q8_0(const uint8_t* row, int64_t n, float* out, int64_t out_stride) {
    const block_q8_0* b = reinterpret_cast<const block_q8_0*>(row);
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK8_0; ++j) out[(i * QK8_0 + j) * out_stride] = static_cast<float>(b[i].qs[j]) * d;
    }
}

// q8_0 K of up to 16 cells (cells[0..m)) widened into tile (hd, 16): tile[x * 16 + t] = value x of cell
// t, zeros for t >= m. Both attention kernels score 16 cells from such a tile.
inline void widen_k_tile_q8_0(const attn_kv& kv, const int32_t* cells, int64_t m, int64_t hd, float* tile) {
    for (int64_t i = 0; i < hd * 16; ++i) tile[i] = 0.0f;
    for (int64_t t = 0; t < m; ++t) {
        dequantize_kv_q8_0(static_cast<const uint8_t*>(kv.k) + static_cast<int64_t>(cells[t]) * kv.k_stride, hd,
                           tile + t, 16);
    }
}

// out (hd) = K of `cell`.
inline void load_kv_k(const attn_kv& kv, int32_t cell, int64_t hd, float* out) {
    if (kv.type == kv_type::Q8_0) {
        dequantize_kv_q8_0(static_cast<const uint8_t*>(kv.k) + static_cast<int64_t>(cell) * kv.k_stride, hd, out, 1);
        return;
    }
    const uint16_t* k = static_cast<const uint16_t*>(kv.k);
    for (int64_t x = 0; x < hd; ++x) out[x] = fp16_to_fp32(k[x * kv.k_stride + cell]);
}

// out (hd) = V of `cell`.
inline void load_kv_v(const attn_kv& kv, int32_t cell, int64_t hd, float* out) {
    if (kv.type == kv_type::Q8_0) {
        dequantize_kv_q8_0(static_cast<const uint8_t*>(kv.v) + static_cast<int64_t>(cell) * kv.v_stride, hd, out, 1);
        return;
    }
    const uint16_t* v = static_cast<const uint16_t*>(kv.v) + static_cast<int64_t>(cell) * kv.v_stride;
    for (int64_t t = 0; t < hd; ++t) out[t] = fp16_to_fp32(v[t]);
}

} // namespace pipeinfer
