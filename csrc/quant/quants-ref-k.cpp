// Scalar reference kernels of the k-quants (256-value super-blocks): q2_K, q3_K, q4_K, q5_K, q6_K
// weights and the q8_K activation type. Part of the oracle described in quants-ref.cpp; the same
// exactness contract holds (to_float bit-exact with gguf-py's numpy dequantize, q8_K quantization
// bit-exact with ggml's quantize_row_q8_K_ref, dots with integer sums per super-block and f32 sums
// across super-blocks). The q4_K dots (one-row and x4) and every vec_dot_tiled follow llama.cpp's x86
// kernels bit for bit, and the SIMD kernels reproduce them exactly; the other one-row k-quant dots
// are only close to the SIMD ones (see quant/arch/x86-kernels.h).
//
// Each weight super-block is first unpacked into signed 8-bit quants in value order plus integer
// sub-block scales (the unpack_* functions below, which also define the bit layouts precisely);
// dequantize and vec_dot both work from that unpacked form, so the layout logic exists once.
#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include <cmath>
#include <cstring>
#include <vector>

#include "common/fp16.h"
#include "quant/blocks.h"
#include "quant/quants-ref-common.h"
#include "quant/type-traits.h"
#include "quant/unpack-k.h"

namespace pipeinfer {

namespace {

using ref::dot_i8;
using ref::set_row;

// Block i of q8_K activation row j.
inline const block_q8_K& act_block(const void* y, size_t y_stride, int j, int64_t i) {
    return ref::act_block<block_q8_K>(y, y_stride, j, i);
}

// 6-bit scale and min of sub-block j (of 8) from the 12 packed bytes of q4_K / q5_K
// (ggml-quants.c get_scale_min_k4): bytes 0..3 hold scales 0..3 (+ top bits of scales 4..7 in
// bits 6..7), bytes 4..7 mins 0..3 (+ top bits of mins 4..7), bytes 8..11 the low nibbles of
// scales 4..7 (bits 0..3) and mins 4..7 (bits 4..7).
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// q2_K: value v = 128h + 32s + l has quant (qs[32h + l] >> 2s) & 3, sub-block v / 16.
void unpack_q2_K(const block_q2_K& b, unpacked_k* u) {
    for (int v = 0; v < QK_K; ++v) {
        const int h = v / 128, s = (v % 128) / 32, l = v % 32;
        u->q[v] = static_cast<int8_t>((b.qs[32 * h + l] >> (2 * s)) & 3);
    }
    for (int j = 0; j < 16; ++j) {
        u->scale[j] = b.scales[j] & 0x0F;
        u->min[j] = b.scales[j] >> 4;
    }
}

// q3_K: low 2 bits as q2_K; value v = 32k + l has its high bit at bit k of hmask[l]; quant =
// low - 4 when that bit is clear. Scale j (6 bits, stored with +32): low nibble from byte j % 8
// (bits 0..3 for j < 8, 4..7 otherwise), high 2 bits from byte 8 + j % 4 at shift 2 * (j / 4).
void unpack_q3_K(const block_q3_K& b, unpacked_k* u) {
    for (int v = 0; v < QK_K; ++v) {
        const int h = v / 128, s = (v % 128) / 32, l = v % 32, k = v / 32;
        const int low = (b.qs[32 * h + l] >> (2 * s)) & 3;
        const int hbit = (b.hmask[l] >> k) & 1;
        u->q[v] = static_cast<int8_t>(low - (hbit ? 0 : 4));
    }
    for (int j = 0; j < 16; ++j) {
        const int lo = (b.scales[j % 8] >> (4 * (j / 8))) & 0x0F;
        const int hi = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        u->scale[j] = (lo | (hi << 4)) - 32;
        u->min[j] = 0;
    }
}

} // namespace

// q4_K: value v = 64c + 32h + l has quant (qs[32c + l] >> 4h) & 15, sub-block v / 32.
void unpack_q4_K(const block_q4_K& b, unpacked_k* u) {
    for (int v = 0; v < QK_K; ++v) {
        const int c = v / 64, h = (v % 64) / 32, l = v % 32;
        u->q[v] = static_cast<int8_t>((b.qs[32 * c + l] >> (4 * h)) & 0x0F);
    }
    for (int j = 0; j < 8; ++j) scale_min_k4(j, b.scales, &u->scale[j], &u->min[j]);
}

namespace {

// q5_K: low 4 bits as q4_K; bit 4 of value v is bit v / 32 of qh[v % 32].
void unpack_q5_K(const block_q5_K& b, unpacked_k* u) {
    for (int v = 0; v < QK_K; ++v) {
        const int c = v / 64, h = (v % 64) / 32, l = v % 32;
        const int low = (b.qs[32 * c + l] >> (4 * h)) & 0x0F;
        const int high = (b.qh[l] >> (v / 32)) & 1;
        u->q[v] = static_cast<int8_t>(low | (high << 4));
    }
    for (int j = 0; j < 8; ++j) scale_min_k4(j, b.scales, &u->scale[j], &u->min[j]);
}

} // namespace

// q6_K: value v = 128h + r: low 4 bits (ql[64h + r % 64] >> 4 * (r / 64)) & 15, high 2 bits
// (qh[32h + r % 32] >> 2 * (r / 32)) & 3; quant = that 6-bit number - 32; sub-block v / 16.
void unpack_q6_K(const block_q6_K& b, unpacked_k* u) {
    for (int v = 0; v < QK_K; ++v) {
        const int h = v / 128, r = v % 128;
        const int low = (b.ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
        const int high = (b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
        u->q[v] = static_cast<int8_t>((low | (high << 4)) - 32);
    }
    for (int j = 0; j < 16; ++j) {
        u->scale[j] = b.scales[j];
        u->min[j] = 0;
    }
}

namespace {

// ---------------------------------------------------------------------------------------------
// Dequantization (f32 operation order of gguf-py's dequantize_blocks)
// ---------------------------------------------------------------------------------------------

// d * sc * q (- dmin * m) per value, sub-blocks of SUB values; the f32 steps of gguf-py:
// dl = d * sc, ml = dmin * m, value = dl * q - ml (or dl * q without mins).
template <class Block, void (*unpack)(const Block&, unpacked_k*), int SUB, bool HAS_MIN>
void dequantize_row_k(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const Block*>(src);
    unpacked_k u;
    for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
        unpack(x[i], &u);
        const float d = fp16_to_fp32(x[i].d);
        for (int v = 0; v < QK_K; ++v) {
            const float dl = d * static_cast<float>(u.scale[v / SUB]);
            if constexpr (HAS_MIN) {
                const float ml = fp16_to_fp32(x[i].dmin) * static_cast<float>(u.min[v / SUB]);
                dst[v] = dl * static_cast<float>(u.q[v]) - ml;
            } else {
                dst[v] = dl * static_cast<float>(u.q[v]);
            }
        }
    }
}

void dequantize_row_q8_K(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const block_q8_K*>(src);
    for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
        for (int v = 0; v < QK_K; ++v) dst[v] = x[i].d * static_cast<float>(x[i].qs[v]);
    }
}

// ---------------------------------------------------------------------------------------------
// q8_K quantization (ggml quantize_row_q8_K_ref)
// ---------------------------------------------------------------------------------------------

// Round to nearest, ties to even, by the 1.5 * 2^23 trick of ggml's nearest_int (|v| < 2^22).
inline int nearest_int(float v) {
    const float t = v + 12582912.0f;
    int32_t i;
    std::memcpy(&i, &t, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

// d = max / -127 where max is the value of largest magnitude (so d may be negative);
// q = min(127, nearest_int(-127 / max * x)); an all-zero block gets d = 0 and zero quants.
void quantize_row_q8_K(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q8_K*>(dst);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float* x = src + i * QK_K;
        float amax = 0.0f, max = 0.0f;
        for (int v = 0; v < QK_K; ++v) {
            const float ax = std::fabs(x[v]);
            if (ax > amax) {
                amax = ax;
                max = x[v];
            }
        }
        if (amax == 0.0f) {
            y[i].d = 0.0f;
            std::memset(y[i].qs, 0, sizeof(y[i].qs));
            std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
            continue;
        }
        const float iscale = -127.0f / max;
        for (int v = 0; v < QK_K; ++v) {
            const int q = nearest_int(iscale * x[v]);
            y[i].qs[v] = static_cast<int8_t>(q < 127 ? q : 127);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int k = 0; k < 16; ++k) sum += y[i].qs[16 * j + k];
            y[i].bsums[j] = static_cast<int16_t>(sum);
        }
        y[i].d = 1.0f / iscale;
    }
}

// ---------------------------------------------------------------------------------------------
// Dots with q8_K activations
// ---------------------------------------------------------------------------------------------

// Sum over sub-blocks of scale * (integer dot of the sub-block), for sub-blocks of sub_len values.
inline int scaled_dot(const unpacked_k& u, const int8_t* y, int sub_len) {
    int isum = 0;
    for (int j = 0; j < QK_K / sub_len; ++j) {
        isum += u.scale[j] * dot_i8(u.q + sub_len * j, y + sub_len * j, sub_len);
    }
    return isum;
}

// Sum over sub-blocks of min * (sum of the activation quants of the sub-block), from bsums.
inline int min_dot(const unpacked_k& u, const int16_t* bsums, int sub_len) {
    const int per = sub_len / 16;  // bsums entries per sub-block
    int sum = 0;
    for (int j = 0; j < QK_K / sub_len; ++j) {
        int b = 0;
        for (int k = 0; k < per; ++k) b += bsums[per * j + k];
        sum += u.min[j] * b;
    }
    return sum;
}

// Sub-blocks of SUB values, per super-block isum = sum(sc * q . y) and msum = sum(m * bsum) (exact
// integers), then the f32 steps of one of two orders:
// - TILED = false, the one-row dot of every k-quant but q4_K:
//   s += (d * dy) * isum, minus (dmin * dy) * msum for the types with mins;
// - TILED = true, ggml's tiled k-quant matmul (ggml-cpu tiled.cpp, AVX-512 VNNI microkernel), which
//   llama.cpp runs for batches of 8 or more rows on k-quant weights it has not repacked
//   (type_traits::vec_dot_tiled): r = isum * d, for the types with mins r = fma(-dmin, msum, r), then
//   s = fma(r, dy, s). Verified against llama.cpp's q6_K outputs (tests/model).
template <class Block, void (*unpack)(const Block&, unpacked_k*), int SUB, bool HAS_MIN, bool TILED>
void vec_dot_k(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const Block*>(vx);
    for (int j = 0; j < n_act; ++j) s[j] = 0.0f;
    unpacked_k u;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        unpack(x[i], &u);
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < n_act; ++j) {
            const block_q8_K& yb = act_block(vy, y_stride, j, i);
            const float isum = static_cast<float>(scaled_dot(u, yb.qs, SUB));
            if constexpr (TILED) {
                float r = isum * d;
                if constexpr (HAS_MIN) {
                    r = std::fmaf(-fp16_to_fp32(x[i].dmin), static_cast<float>(min_dot(u, yb.bsums, SUB)), r);
                }
                s[j] = std::fmaf(r, yb.d, s[j]);
            } else if constexpr (HAS_MIN) {
                const float msum = static_cast<float>(min_dot(u, yb.bsums, SUB));
                s[j] += (yb.d * d) * isum - (yb.d * fp16_to_fp32(x[i].dmin)) * msum;
            } else {
                s[j] += (d * yb.d) * isum;
            }
        }
    }
}

// q4_K in the orders of llama.cpp's x86 kernels for it, which accumulate the scaled sums and the min
// corrections in two separate f32 FMA chains over groups of G 32-value sub-blocks, subtracting them at
// the end: s = sum_g fma(isum_g, d * dy) - sum_g fma(msum_g, dmin * dy).
// - G = 8 (one FMA per super-block): the one-row kernel (llama.cpp repacks q4_K weights, ggml
//   repack.cpp ggml_gemv_q4_K_8x8_q8_K).
// - G = 2 (one per 64-value pair): ggml_gemm_q4_K_8x8_q8_K (ggml-cpu/arch/x86/repack.cpp), which
//   llama.cpp runs for the activation rows of a batch that fill groups of 4 (type_traits::vec_dot_x4).
template <int G>
void vec_dot_q4_K_chains(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const block_q4_K*>(vx);
    std::vector<float> acc(static_cast<size_t>(2 * n_act), 0.0f);  // (n_act, 2) f32: scaled sums, mins
    unpacked_k u;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        unpack_q4_K(x[i], &u);
        const float d = fp16_to_fp32(x[i].d);
        const float dmin = fp16_to_fp32(x[i].dmin);
        for (int j = 0; j < n_act; ++j) {
            const block_q8_K& yb = act_block(vy, y_stride, j, i);
            const float dd = d * yb.d;
            const float dm = dmin * yb.d;
            for (int g0 = 0; g0 < 8; g0 += G) {
                int isum = 0, msum = 0;
                for (int sb = g0; sb < g0 + G; ++sb) {
                    isum += u.scale[sb] * dot_i8(u.q + 32 * sb, yb.qs + 32 * sb, 32);
                    msum += u.min[sb] * (yb.bsums[2 * sb] + yb.bsums[2 * sb + 1]);
                }
                acc[2 * j] = std::fmaf(static_cast<float>(isum), dd, acc[2 * j]);
                acc[2 * j + 1] = std::fmaf(static_cast<float>(msum), dm, acc[2 * j + 1]);
            }
        }
    }
    for (int j = 0; j < n_act; ++j) s[j] = acc[2 * j] - acc[2 * j + 1];
}

} // namespace

void register_kernels_ref_k(type_traits* table) {
    using T = ggml_type;
    // Weight types: ggml's k-quant reference quantizers (make_qx_quants searches) are not ported;
    // models arrive quantized, and activations use q8_K.
    set_row(table, T::Q2_K, dequantize_row_k<block_q2_K, unpack_q2_K, 16, true>, nullptr,
            vec_dot_k<block_q2_K, unpack_q2_K, 16, true, false>, T::Q8_K);
    set_row(table, T::Q3_K, dequantize_row_k<block_q3_K, unpack_q3_K, 16, false>, nullptr,
            vec_dot_k<block_q3_K, unpack_q3_K, 16, false, false>, T::Q8_K);
    set_row(table, T::Q4_K, dequantize_row_k<block_q4_K, unpack_q4_K, 32, true>, nullptr, vec_dot_q4_K_chains<8>, T::Q8_K);
    set_row(table, T::Q5_K, dequantize_row_k<block_q5_K, unpack_q5_K, 32, true>, nullptr,
            vec_dot_k<block_q5_K, unpack_q5_K, 32, true, false>, T::Q8_K);
    set_row(table, T::Q6_K, dequantize_row_k<block_q6_K, unpack_q6_K, 16, false>, nullptr,
            vec_dot_k<block_q6_K, unpack_q6_K, 16, false, false>, T::Q8_K);
    table[static_cast<size_t>(T::Q4_K)].vec_dot_x4 = vec_dot_q4_K_chains<2>;
    table[static_cast<size_t>(T::Q2_K)].vec_dot_tiled = vec_dot_k<block_q2_K, unpack_q2_K, 16, true, true>;
    table[static_cast<size_t>(T::Q3_K)].vec_dot_tiled = vec_dot_k<block_q3_K, unpack_q3_K, 16, false, true>;
    table[static_cast<size_t>(T::Q4_K)].vec_dot_tiled = vec_dot_k<block_q4_K, unpack_q4_K, 32, true, true>;
    table[static_cast<size_t>(T::Q5_K)].vec_dot_tiled = vec_dot_k<block_q5_K, unpack_q5_K, 32, true, true>;
    table[static_cast<size_t>(T::Q6_K)].vec_dot_tiled = vec_dot_k<block_q6_K, unpack_q6_K, 16, false, true>;
    // q8_K is an activation type only.
    set_row(table, T::Q8_K, dequantize_row_q8_K, quantize_row_q8_K, nullptr, T::Q8_K);
}

} // namespace pipeinfer
