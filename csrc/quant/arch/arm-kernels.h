// AArch64 NEON kernels shared by arm-neon.cpp (Armv8.0 Advanced SIMD) and arm-neon-dotprod.cpp
// (Armv8.2 dot product): the q8 activation quantizers, the dots of the 32-value block types and of
// q4_K / q5_K / q6_K, and the dots over row-interleaved weights (quant/repack.h). Included ONLY by
// those two files, each of which first defines `struct isa_ops` (its int8 dot primitives) and is
// compiled with its own -march; everything here has internal linkage, so each file gets its own copy
// (see x86-kernels.h for why). Must not be included anywhere else.
//
// Exactness (tests/native/kernel-check.cpp, run under qemu by .ci/arm-kernels.sh): every kernel here
// is bit-exact with the scalar reference (quants-ref*.cpp, repack.cpp). The integer sums are exact in
// any order; every f32 operation is the reference's, in the reference's order: the SIMD part only
// computes the integer dots and the per-lane FMAs that the reference also does per lane.
#pragma once
#include <arm_neon.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"
#include "quant/blocks.h"
#include "quant/repack.h"
#include "quant/type-traits.h"

namespace pipeinfer {
namespace {  // one copy per ISA file

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

inline float f16(fp16_bits h) { return fp16_to_fp32(h); }

// (4,) f32 of 4 consecutive f16 values.
inline float32x4_t load_f16x4(const fp16_bits* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

// Sum of the 4 lanes, exact for integers.
inline int hsum(int32x4_t v) { return vaddvq_s32(v); }

// Byte i = 0xFF where bit i of the 16-bit mask is set (i in [0, 16)).
inline uint8x16_t bits_to_bytes_16(uint32_t mask) {
    const uint8x16_t bytes = vcombine_u8(vdup_n_u8(static_cast<uint8_t>(mask)), vdup_n_u8(static_cast<uint8_t>(mask >> 8)));
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    return vtstq_u8(bytes, vld1q_u8(bit));
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers (bit-exact with quants-ref.cpp / quants-ref-k.cpp)
// ---------------------------------------------------------------------------------------------

// 32 floats -> round-half-even(x * id) as int8 (|x * id| <= 127 by construction); returns their sum.
inline int quantize_32(const float* x, float id, int8_t* q) {
    int16x8_t h[4];
    for (int k = 0; k < 4; ++k) {
        const int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8 * k), id));
        const int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8 * k + 4), id));
        h[k] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
    }
    vst1q_s8(q, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
    vst1q_s8(q + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
    return vaddvq_s16(vaddq_s16(vaddq_s16(h[0], h[1]), vaddq_s16(h[2], h[3])));
}

// Largest |x| of n floats (n a multiple of 4); NaN ignored like std::fmax.
inline float amax_n(const float* x, int n) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int k = 0; k < n; k += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + k)));
    return vmaxnmvq_f32(m);
}

template <bool WITH_SUM, class Block>
void quantize_row_q8(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<Block*>(dst);
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float* x = src + i * QK8_0;
        const float amax = amax_n(x, QK8_0);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = fp32_to_fp16(d);
        const int sum = quantize_32(x, id, y[i].qs);
        if constexpr (WITH_SUM) y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
    }
}

void quantize_row_q8_0_neon(const float* src, void* dst, int64_t n) { quantize_row_q8<false, block_q8_0>(src, dst, n); }
void quantize_row_q8_1_neon(const float* src, void* dst, int64_t n) { quantize_row_q8<true, block_q8_1>(src, dst, n); }

// q8_K: the value of largest magnitude (first one on ties, as the reference's scan), q = min(127,
// round-half-even(-127 / max * x)), bsums of 16, d = 1 / iscale.
void quantize_row_q8_K_neon(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q8_K*>(dst);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float* x = src + i * QK_K;
        const float amax = amax_n(x, QK_K);
        if (amax == 0.0f) {
            y[i].d = 0.0f;
            std::memset(y[i].qs, 0, sizeof(y[i].qs));
            std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
            continue;
        }
        int at = 0;
        while (std::fabs(x[at]) != amax) ++at;
        const float iscale = -127.0f / x[at];
        const int32x4_t hi = vdupq_n_s32(127);
        for (int j = 0; j < QK_K / 16; ++j) {
            int16x8_t h[2];
            for (int k = 0; k < 2; ++k) {
                const int32x4_t a = vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 16 * j + 8 * k), iscale)), hi);
                const int32x4_t b = vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 16 * j + 8 * k + 4), iscale)), hi);
                h[k] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
            }
            vst1q_s8(y[i].qs + 16 * j, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
            y[i].bsums[j] = static_cast<int16_t>(vaddvq_s16(vaddq_s16(h[0], h[1])));
        }
        y[i].d = 1.0f / iscale;
    }
}

// ---------------------------------------------------------------------------------------------
// 32-value blocks: q4_0, q4_1, q5_0, q5_1, q8_0 (the reference's lane_acc8 order)
// ---------------------------------------------------------------------------------------------

// Weight quants of a block as two int8x16 (values 0..15, 16..31): signed for the symmetric types,
// unsigned (fits int8) for the types with a min.
inline void nibbles(const uint8_t* qs, uint8x16_t* lo, uint8x16_t* hi) {
    const uint8x16_t q = vld1q_u8(qs);
    *lo = vandq_u8(q, vdupq_n_u8(0x0F));
    *hi = vshrq_n_u8(q, 4);
}
// Adds bit 4 from qh (bit k of the little-endian u32 = value k).
inline void fifth_bits(const uint8_t* qh_bytes, uint8x16_t* lo, uint8x16_t* hi) {
    uint32_t qh;
    std::memcpy(&qh, qh_bytes, 4);
    *lo = vorrq_u8(*lo, vandq_u8(bits_to_bytes_16(qh & 0xFFFF), vdupq_n_u8(0x10)));
    *hi = vorrq_u8(*hi, vandq_u8(bits_to_bytes_16(qh >> 16), vdupq_n_u8(0x10)));
}

struct n_q4_0 {
    using block = block_q4_0;
    using act = block_q8_0;
    static constexpr bool has_min = false;
    static void unpack(const block& b, int8x16_t* w) {
        uint8x16_t lo, hi;
        nibbles(b.qs, &lo, &hi);
        w[0] = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(8));
        w[1] = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(8));
    }
};
struct n_q4_1 {
    using block = block_q4_1;
    using act = block_q8_1;
    static constexpr bool has_min = true;
    static void unpack(const block& b, int8x16_t* w) {
        uint8x16_t lo, hi;
        nibbles(b.qs, &lo, &hi);
        w[0] = vreinterpretq_s8_u8(lo);
        w[1] = vreinterpretq_s8_u8(hi);
    }
};
struct n_q5_0 {
    using block = block_q5_0;
    using act = block_q8_0;
    static constexpr bool has_min = false;
    static void unpack(const block& b, int8x16_t* w) {
        uint8x16_t lo, hi;
        nibbles(b.qs, &lo, &hi);
        fifth_bits(b.qh, &lo, &hi);
        w[0] = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(16));
        w[1] = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(16));
    }
};
struct n_q5_1 {
    using block = block_q5_1;
    using act = block_q8_1;
    static constexpr bool has_min = true;
    static void unpack(const block& b, int8x16_t* w) {
        uint8x16_t lo, hi;
        nibbles(b.qs, &lo, &hi);
        fifth_bits(b.qh, &lo, &hi);
        w[0] = vreinterpretq_s8_u8(lo);
        w[1] = vreinterpretq_s8_u8(hi);
    }
};
struct n_q8_0 {
    using block = block_q8_0;
    using act = block_q8_0;
    static constexpr bool has_min = false;
    static void unpack(const block& b, int8x16_t* w) {
        w[0] = vld1q_s8(b.qs);
        w[1] = vld1q_s8(b.qs + 16);
    }
};

// Activation rows per pass: their lane accumulators stay in registers while a block is reused.
constexpr int ROWS_32 = 4;

template <class T>
void vec_dot_32_neon(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const typename T::block*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    for (int j0 = 0; j0 < n_act; j0 += ROWS_32) {
        const int nr = n_act - j0 < ROWS_32 ? n_act - j0 : ROWS_32;
        float32x4_t acc_lo[ROWS_32], acc_hi[ROWS_32];  // lanes 0..3 and 4..7 of the reference's 8
        float summs[ROWS_32];
        for (int r = 0; r < ROWS_32; ++r) {
            acc_lo[r] = acc_hi[r] = vdupq_n_f32(0.0f);
            summs[r] = 0.0f;
        }
        for (int64_t i = 0; i < n / 32; ++i) {
            int8x16_t w[2];
            T::unpack(x[i], w);
            const float dx = f16(x[i].d);
            for (int r = 0; r < nr; ++r) {
                const auto& yb = reinterpret_cast<const typename T::act*>(y + y_stride * (j0 + r))[i];
                if constexpr (T::has_min) summs[r] = std::fmaf(f16(x[i].m), f16(yb.s), summs[r]);
                const float d = dx * f16(yb.d);
                const int32x4_t lo = isa_ops::dot(vdupq_n_s32(0), w[0], vld1q_s8(yb.qs));
                const int32x4_t hi = isa_ops::dot(vdupq_n_s32(0), w[1], vld1q_s8(yb.qs + 16));
                acc_lo[r] = vfmaq_n_f32(acc_lo[r], vcvtq_f32_s32(lo), d);
                acc_hi[r] = vfmaq_n_f32(acc_hi[r], vcvtq_f32_s32(hi), d);
            }
        }
        for (int r = 0; r < nr; ++r) {
            // hsum_float_8: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), then + summs
            const float32x4_t t = vaddq_f32(acc_lo[r], acc_hi[r]);
            const float32x2_t u = vadd_f32(vget_low_f32(t), vget_high_f32(t));
            s[j0 + r] = (vget_lane_f32(u, 0) + vget_lane_f32(u, 1)) + summs[r];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// k-quants: q4_K, q5_K, q6_K weights with q8_K activations (integer sums here, the reference's f32
// steps in kquant_* below)
// ---------------------------------------------------------------------------------------------

// A super-block unpacked to 256 int8 quants in value order (offsets applied where the format has one)
// and its integer sub-block scales / mins, as the reference's unpacked_k.
struct unpacked_n {
    int8_t q[QK_K];
    int scale[16];
    int min[16];
};

inline void scale_min_k4_n(const uint8_t* q, int* sc, int* m) {
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            sc[j] = q[j] & 63;
            m[j] = q[j + 4] & 63;
        } else {
            sc[j] = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
            m[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }
}

// q4_K: value 64c + 32h + l = nibble h of qs[32c + l].
inline void unpack_q4_K_n(const block_q4_K& b, unpacked_n* u) {
    for (int c = 0; c < 4; ++c) {
        for (int k = 0; k < 2; ++k) {
            const uint8x16_t q = vld1q_u8(b.qs + 32 * c + 16 * k);
            vst1q_u8(reinterpret_cast<uint8_t*>(u->q) + 64 * c + 16 * k, vandq_u8(q, vdupq_n_u8(0x0F)));
            vst1q_u8(reinterpret_cast<uint8_t*>(u->q) + 64 * c + 32 + 16 * k, vshrq_n_u8(q, 4));
        }
    }
    scale_min_k4_n(b.scales, u->scale, u->min);
}

// q5_K: q4_K's nibbles plus bit 4 of value v = bit v / 32 of qh[v % 32].
inline void unpack_q5_K_n(const block_q5_K& b, unpacked_n* u) {
    for (int c = 0; c < 4; ++c) {
        for (int k = 0; k < 2; ++k) {
            const uint8x16_t q = vld1q_u8(b.qs + 32 * c + 16 * k);
            const uint8x16_t h = vld1q_u8(b.qh + 16 * k);
            const uint8x16_t b0 = vandq_u8(vshlq_u8(h, vdupq_n_s8(static_cast<int8_t>(4 - 2 * c))), vdupq_n_u8(0x10));
            const uint8x16_t b1 = vandq_u8(vshlq_u8(h, vdupq_n_s8(static_cast<int8_t>(3 - 2 * c))), vdupq_n_u8(0x10));
            vst1q_u8(reinterpret_cast<uint8_t*>(u->q) + 64 * c + 16 * k, vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0F)), b0));
            vst1q_u8(reinterpret_cast<uint8_t*>(u->q) + 64 * c + 32 + 16 * k, vorrq_u8(vshrq_n_u8(q, 4), b1));
        }
    }
    scale_min_k4_n(b.scales, u->scale, u->min);
}

// q6_K: value 128h + r: low 4 bits = nibble r / 64 of ql[64h + r % 64], high 2 bits = bits 2 (r / 32)
// of qh[32h + r % 32]; quant = that - 32.
inline void unpack_q6_K_n(const block_q6_K& b, unpacked_n* u) {
    for (int h = 0; h < 2; ++h) {
        for (int k = 0; k < 2; ++k) {  // r % 32 in [16k, 16k + 16)
            const uint8x16_t qh = vld1q_u8(b.qh + 32 * h + 16 * k);
            const uint8x16_t l0 = vld1q_u8(b.ql + 64 * h + 16 * k);       // r = 16k + i (low), 64 + 16k + i (high)
            const uint8x16_t l1 = vld1q_u8(b.ql + 64 * h + 32 + 16 * k);  // r = 32 + 16k + i, 96 + 16k + i
            const uint8x16_t lows[4] = {vandq_u8(l0, vdupq_n_u8(0x0F)), vandq_u8(l1, vdupq_n_u8(0x0F)), vshrq_n_u8(l0, 4),
                                        vshrq_n_u8(l1, 4)};
            for (int sg = 0; sg < 4; ++sg) {  // r = 32 sg + 16k + i
                const uint8x16_t hi = vandq_u8(vshlq_u8(qh, vdupq_n_s8(static_cast<int8_t>(4 - 2 * sg))), vdupq_n_u8(0x30));
                const int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lows[sg], hi)), vdupq_n_s8(32));
                vst1q_s8(u->q + 128 * h + 32 * sg + 16 * k, v);
            }
        }
    }
    for (int j = 0; j < 16; ++j) {
        u->scale[j] = b.scales[j];
        u->min[j] = 0;
    }
}

// Integer dot of `len` (a multiple of 16) quants with activation quants.
inline int dot_n(const int8_t* a, const int8_t* b, int len) {
    int32x4_t acc = vdupq_n_s32(0);
    for (int k = 0; k < len; k += 16) acc = isa_ops::dot(acc, vld1q_s8(a + k), vld1q_s8(b + k));
    return hsum(acc);
}

// Per super-block and activation row: isum = sum over sub-blocks of scale * dot, msum = sum of
// min * (activation sum of the sub-block), exact, as quants-ref-k.cpp scaled_dot / min_dot.
template <int SUB>
inline void kquant_sums(const unpacked_n& u, const block_q8_K& yb, int* isum, int* msum) {
    int is = 0, ms = 0;
    constexpr int per = SUB / 16;
    for (int j = 0; j < QK_K / SUB; ++j) {
        is += u.scale[j] * dot_n(u.q + SUB * j, yb.qs + SUB * j, SUB);
        int b = 0;
        for (int k = 0; k < per; ++k) b += yb.bsums[per * j + k];
        ms += u.min[j] * b;
    }
    *isum = is;
    *msum = ms;
}

// quants-ref-k.cpp vec_dot_k (TILED = false: one-row order; true: ggml's tiled order).
template <class Block, void (*unpack)(const Block&, unpacked_n*), int SUB, bool HAS_MIN, bool TILED>
void vec_dot_k_neon(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const Block*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    for (int j = 0; j < n_act; ++j) s[j] = 0.0f;
    unpacked_n u;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        unpack(x[i], &u);
        const float d = f16(x[i].d);
        for (int j = 0; j < n_act; ++j) {
            const block_q8_K& yb = reinterpret_cast<const block_q8_K*>(y + y_stride * j)[i];
            int is, ms;
            kquant_sums<SUB>(u, yb, &is, &ms);
            const float isum = static_cast<float>(is);
            if constexpr (TILED) {
                float r = isum * d;
                if constexpr (HAS_MIN) r = std::fmaf(-f16(x[i].dmin), static_cast<float>(ms), r);
                s[j] = std::fmaf(r, yb.d, s[j]);
            } else if constexpr (HAS_MIN) {
                const float msum = static_cast<float>(ms);
                const float a = (yb.d * d) * isum;
                const float b = (yb.d * f16(x[i].dmin)) * msum;
                s[j] += a - b;
            } else {
                const float a = (d * yb.d) * isum;
                s[j] += a;
            }
        }
    }
}

// quants-ref-k.cpp vec_dot_q4_K_chains: two f32 FMA chains over groups of G sub-blocks of 32.
template <int G>
void vec_dot_q4_K_chains_neon(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const block_q4_K*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    constexpr int MAXR = 8;
    unpacked_n u;
    for (int j0 = 0; j0 < n_act; j0 += MAXR) {
        const int nr = n_act - j0 < MAXR ? n_act - j0 : MAXR;
        float acc[MAXR][2] = {};  // (rows, 2) f32: scaled sums, mins
        for (int64_t i = 0; i < n / QK_K; ++i) {
            unpack_q4_K_n(x[i], &u);
            const float d = f16(x[i].d);
            const float dmin = f16(x[i].dmin);
            for (int r = 0; r < nr; ++r) {
                const block_q8_K& yb = reinterpret_cast<const block_q8_K*>(y + y_stride * (j0 + r))[i];
                const float dd = d * yb.d;
                const float dm = dmin * yb.d;
                for (int g0 = 0; g0 < 8; g0 += G) {
                    int isum = 0, msum = 0;
                    for (int sb = g0; sb < g0 + G; ++sb) {
                        isum += u.scale[sb] * dot_n(u.q + 32 * sb, yb.qs + 32 * sb, 32);
                        msum += u.min[sb] * (yb.bsums[2 * sb] + yb.bsums[2 * sb + 1]);
                    }
                    acc[r][0] = std::fmaf(static_cast<float>(isum), dd, acc[r][0]);
                    acc[r][1] = std::fmaf(static_cast<float>(msum), dm, acc[r][1]);
                }
            }
        }
        for (int r = 0; r < nr; ++r) s[j0 + r] = acc[r][0] - acc[r][1];
    }
}

// ---------------------------------------------------------------------------------------------
// Row-interleaved weights (quant/repack.h): 16 rows of a group in 4 int32x4 / float32x4 lane sets
// ---------------------------------------------------------------------------------------------

// acc[k] (rows 4k..4k+3) += integer dots of 4 values per row, the bytes of w (4 per row) against the
// 4 activation quants of group L of y.
template <int L>
inline void dot_rows(int32x4_t* acc, const uint8x16_t* w, int8x16_t y) {
    for (int k = 0; k < 4; ++k) acc[k] = isa_ops::dot_lane<L>(acc[k], vreinterpretq_s8_u8(w[k]), y);
}

// Integer block sums of one 32-value column for 16 rows: u * y summed per row, u from `unpack`, which
// gives for chunk c (values 4c..4c+3 and 16+4c..16+4c+3 of every row) 4 vectors of 16 bytes (rows
// 4k..4k+3, 4 values each) for the low and the high values.
template <class Unpack>
inline void column_sums_32(const Unpack& unpack, const int8_t* yq, int32x4_t* isum) {
    const int8x16_t y_lo = vld1q_s8(yq), y_hi = vld1q_s8(yq + 16);
    for (int k = 0; k < 4; ++k) isum[k] = vdupq_n_s32(0);
    uint8x16_t lo[4], hi[4];
    unpack(0, lo, hi);
    dot_rows<0>(isum, lo, y_lo);
    dot_rows<0>(isum, hi, y_hi);
    unpack(1, lo, hi);
    dot_rows<1>(isum, lo, y_lo);
    dot_rows<1>(isum, hi, y_hi);
    unpack(2, lo, hi);
    dot_rows<2>(isum, lo, y_lo);
    dot_rows<2>(isum, hi, y_hi);
    unpack(3, lo, hi);
    dot_rows<3>(isum, lo, y_lo);
    dot_rows<3>(isum, hi, y_hi);
}

// The repacked 32-value dots: isum (exact: the signed quants against y, equal to the reference's
// u * y - off * sum y), acc = fma(d_x * d_y, float(isum), acc), q4_1 also acc = fma(m_x, s_y, acc).
template <ggml_type T>
void vec_dot_repacked_32_neon(int64_t n, const void* group, const void* vy, size_t y_stride, const int32_t*, size_t,
                              int n_act, float* s) {
    using col = std::conditional_t<T == ggml_type::Q4_0, col_q4_0,
                std::conditional_t<T == ggml_type::Q4_1, col_q4_1, std::conditional_t<T == ggml_type::Q5_0, col_q5_0, col_q8_0>>>;
    using act = std::conditional_t<T == ggml_type::Q4_1, block_q8_1, block_q8_0>;
    const auto* cols = static_cast<const col*>(group);
    const int64_t nb = n / QK8_0;
    for (int a = 0; a < n_act; ++a) {
        const act* ya = reinterpret_cast<const act*>(static_cast<const uint8_t*>(vy) + a * y_stride);
        float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        for (int64_t b = 0; b < nb; ++b) {
            const col& c = cols[b];
            int32x4_t isum[4];
            if constexpr (T == ggml_type::Q8_0) {
                // byte 64g + 4r + j: value 4g + j of row r, plus 128
                const int8x16_t y_lo = vld1q_s8(ya[b].qs), y_hi = vld1q_s8(ya[b].qs + 16);
                for (int k = 0; k < 4; ++k) isum[k] = vdupq_n_s32(0);
                uint8x16_t w[4];
                auto load = [&](int g) {
                    for (int k = 0; k < 4; ++k) w[k] = veorq_u8(vld1q_u8(c.qs + 64 * g + 16 * k), vdupq_n_u8(0x80));
                };
                load(0); dot_rows<0>(isum, w, y_lo);
                load(1); dot_rows<1>(isum, w, y_lo);
                load(2); dot_rows<2>(isum, w, y_lo);
                load(3); dot_rows<3>(isum, w, y_lo);
                load(4); dot_rows<0>(isum, w, y_hi);
                load(5); dot_rows<1>(isum, w, y_hi);
                load(6); dot_rows<2>(isum, w, y_hi);
                load(7); dot_rows<3>(isum, w, y_hi);
            } else {
                column_sums_32([&](int ch, uint8x16_t* lo, uint8x16_t* hi) {
                    for (int k = 0; k < 4; ++k) {
                        const uint8x16_t v = vld1q_u8(c.qs + 64 * ch + 16 * k);
                        lo[k] = vandq_u8(v, vdupq_n_u8(0x0F));
                        hi[k] = vshrq_n_u8(v, 4);
                        if constexpr (T == ggml_type::Q5_0) {
                            // bit 4r + j of mask g: the fifth bit of value 4g + j of row r; rows 4k..4k+3
                            // are bits 16k..16k+15 of the mask
                            uint64_t mlo, mhi;
                            std::memcpy(&mlo, c.qh + 8 * ch, 8);
                            std::memcpy(&mhi, c.qh + 8 * (4 + ch), 8);
                            const uint8x16_t f = vdupq_n_u8(0x10);
                            lo[k] = vorrq_u8(lo[k], vandq_u8(bits_to_bytes_16(static_cast<uint32_t>(mlo >> (16 * k)) & 0xFFFF), f));
                            hi[k] = vorrq_u8(hi[k], vandq_u8(bits_to_bytes_16(static_cast<uint32_t>(mhi >> (16 * k)) & 0xFFFF), f));
                            lo[k] = vsubq_u8(lo[k], f);  // signed q = u - 16 (as two's complement bytes)
                            hi[k] = vsubq_u8(hi[k], f);
                        } else if constexpr (T == ggml_type::Q4_0) {
                            lo[k] = vsubq_u8(lo[k], vdupq_n_u8(8));
                            hi[k] = vsubq_u8(hi[k], vdupq_n_u8(8));
                        }
                    }
                }, ya[b].qs, isum);
            }
            const float dy = f16(ya[b].d);
            for (int k = 0; k < 4; ++k) {
                const float32x4_t dd = vmulq_n_f32(load_f16x4(c.d + 4 * k), dy);
                acc[k] = vfmaq_f32(acc[k], dd, vcvtq_f32_s32(isum[k]));
                if constexpr (T == ggml_type::Q4_1) acc[k] = vfmaq_n_f32(acc[k], load_f16x4(c.m + 4 * k), f16(ya[b].s));
            }
        }
        for (int k = 0; k < 4; ++k) vst1q_f32(s + a * REPACK_ROWS + 4 * k, acc[k]);
    }
}

// q4_K: per super-block sumi = sum_j sc[j][r] * isum_j, summ = sum_j m[j][r] * bs_j (exact), then
// acc = fma(d * dy, sumi, acc); acc = fma(-(dmin * dy), summ, acc).
void vec_dot_repacked_q4_K_neon(int64_t n, const void* group, const void* vy, size_t y_stride, const int32_t*, size_t,
                                int n_act, float* s) {
    const auto* cols = static_cast<const col_q4_K*>(group);
    for (int a = 0; a < n_act; ++a) {
        const auto* ya = reinterpret_cast<const block_q8_K*>(static_cast<const uint8_t*>(vy) + a * y_stride);
        float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        for (int64_t b = 0; b < n / QK_K; ++b) {
            const col_q4_K& c = cols[b];
            int32x4_t sumi[4], summ[4];
            for (int k = 0; k < 4; ++k) sumi[k] = summ[k] = vdupq_n_s32(0);
            for (int cc = 0; cc < 4; ++cc) {  // values 64cc..64cc+63: sub-blocks 2cc (low) and 2cc+1 (high)
                int32x4_t is_lo[4], is_hi[4];
                for (int k = 0; k < 4; ++k) is_lo[k] = is_hi[k] = vdupq_n_s32(0);
                for (int g2 = 0; g2 < 2; ++g2) {  // g = 4 g2 + lane: the activation's 16 values 64cc + 16 g2 ..
                    const int8x16_t y_lo = vld1q_s8(ya[b].qs + 64 * cc + 16 * g2);
                    const int8x16_t y_hi = vld1q_s8(ya[b].qs + 64 * cc + 32 + 16 * g2);
                    uint8x16_t lo[4], hi[4];
                    auto load = [&](int g) {
                        for (int k = 0; k < 4; ++k) {
                            const uint8x16_t v = vld1q_u8(c.qs + 64 * (8 * cc + g) + 16 * k);
                            lo[k] = vandq_u8(v, vdupq_n_u8(0x0F));
                            hi[k] = vshrq_n_u8(v, 4);
                        }
                    };
                    load(4 * g2 + 0); dot_rows<0>(is_lo, lo, y_lo); dot_rows<0>(is_hi, hi, y_hi);
                    load(4 * g2 + 1); dot_rows<1>(is_lo, lo, y_lo); dot_rows<1>(is_hi, hi, y_hi);
                    load(4 * g2 + 2); dot_rows<2>(is_lo, lo, y_lo); dot_rows<2>(is_hi, hi, y_hi);
                    load(4 * g2 + 3); dot_rows<3>(is_lo, lo, y_lo); dot_rows<3>(is_hi, hi, y_hi);
                }
                const int j0 = 2 * cc, j1 = 2 * cc + 1;
                const int32_t bs0 = ya[b].bsums[2 * j0] + ya[b].bsums[2 * j0 + 1];
                const int32_t bs1 = ya[b].bsums[2 * j1] + ya[b].bsums[2 * j1 + 1];
                for (int k = 0; k < 4; ++k) {
                    const int32x4_t sc0 = vmovl_s16(vget_low_s16(vreinterpretq_s16_u16(vmovl_u8(vld1_u8(c.sc[j0] + 4 * k)))));
                    const int32x4_t sc1 = vmovl_s16(vget_low_s16(vreinterpretq_s16_u16(vmovl_u8(vld1_u8(c.sc[j1] + 4 * k)))));
                    sumi[k] = vmlaq_s32(sumi[k], sc0, is_lo[k]);
                    sumi[k] = vmlaq_s32(sumi[k], sc1, is_hi[k]);
                    // m[cc][r] = (m_2cc, m_2cc+1) of row r: 8 bytes for rows 4k..4k+3
                    const uint8x8_t mm = vld1_u8(&c.m[cc][4 * k][0]);
                    const uint8x8x2_t sp = vuzp_u8(mm, mm);  // val[0]: m_2cc of the 4 rows, val[1]: m_2cc+1
                    const int32x4_t m0 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(sp.val[0]))));
                    const int32x4_t m1 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(sp.val[1]))));
                    summ[k] = vmlaq_n_s32(summ[k], m0, bs0);
                    summ[k] = vmlaq_n_s32(summ[k], m1, bs1);
                }
            }
            const float dy = ya[b].d;
            for (int k = 0; k < 4; ++k) {
                const float32x4_t dd = vmulq_n_f32(load_f16x4(c.d + 4 * k), dy);
                const float32x4_t dm = vnegq_f32(vmulq_n_f32(load_f16x4(c.dmin + 4 * k), dy));
                acc[k] = vfmaq_f32(acc[k], dd, vcvtq_f32_s32(sumi[k]));
                acc[k] = vfmaq_f32(acc[k], dm, vcvtq_f32_s32(summ[k]));
            }
        }
        for (int k = 0; k < 4; ++k) vst1q_f32(s + a * REPACK_ROWS + 4 * k, acc[k]);
    }
}

// q6_K: per super-block sumi = sum_j sc[j][r] * (isum_j - 32 bsums_j) (the signed quants u - 32
// against y give that directly), acc = fma(d * dy, sumi, acc).
void vec_dot_repacked_q6_K_neon(int64_t n, const void* group, const void* vy, size_t y_stride, const int32_t*, size_t,
                                int n_act, float* s) {
    const auto* cols = static_cast<const col_q6_K*>(group);
    for (int a = 0; a < n_act; ++a) {
        const auto* ya = reinterpret_cast<const block_q8_K*>(static_cast<const uint8_t*>(vy) + a * y_stride);
        float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        for (int64_t b = 0; b < n / QK_K; ++b) {
            const col_q6_K& c = cols[b];
            int32x4_t sumi[4];
            for (int k = 0; k < 4; ++k) sumi[k] = vdupq_n_s32(0);
            for (int v0 = 0; v0 < QK_K; v0 += 16) {  // sub-block j = v0 / 16: values v0..v0+15
                const int8x16_t yv = vld1q_s8(ya[b].qs + v0);
                int32x4_t is[4];
                for (int k = 0; k < 4; ++k) is[k] = vdupq_n_s32(0);
                uint8x16_t w[4];
                // values v0 + 4 lane + j: low nibbles from ql as q4_K's qs, high 2 bits from qh
                auto load = [&](int lane) {
                    const int v = v0 + 4 * lane;
                    const int cq = v / 64, wq = v % 64, gq = (wq % 32) / 4;
                    const int hh = v / 128, sg = (v % 128) / 32, gh = (v % 32) / 4;
                    for (int k = 0; k < 4; ++k) {
                        const uint8x16_t l = vld1q_u8(c.ql + 64 * (8 * cq + gq) + 16 * k);
                        const uint8x16_t lo = wq < 32 ? vandq_u8(l, vdupq_n_u8(0x0F)) : vshrq_n_u8(l, 4);
                        const uint8x16_t h = vld1q_u8(c.qh + 64 * (8 * hh + gh) + 16 * k);
                        const uint8x16_t hi = vandq_u8(vshlq_u8(h, vdupq_n_s8(static_cast<int8_t>(4 - 2 * sg))), vdupq_n_u8(0x30));
                        w[k] = vsubq_u8(vorrq_u8(lo, hi), vdupq_n_u8(32));  // signed q = u - 32
                    }
                };
                load(0); dot_rows<0>(is, w, yv);
                load(1); dot_rows<1>(is, w, yv);
                load(2); dot_rows<2>(is, w, yv);
                load(3); dot_rows<3>(is, w, yv);
                const int j = v0 / 16;
                for (int k = 0; k < 4; ++k) {
                    const int32x4_t sc = vmovl_s16(vget_low_s16(vmovl_s8(vld1_s8(c.sc[j] + 4 * k))));
                    sumi[k] = vmlaq_s32(sumi[k], sc, is[k]);
                }
            }
            const float dy = ya[b].d;
            for (int k = 0; k < 4; ++k) {
                acc[k] = vfmaq_f32(acc[k], vmulq_n_f32(load_f16x4(c.d + 4 * k), dy), vcvtq_f32_s32(sumi[k]));
            }
        }
        for (int k = 0; k < 4; ++k) vst1q_f32(s + a * REPACK_ROWS + 4 * k, acc[k]);
    }
}

// ---------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------

inline void register_arm_common(type_traits* table) {
    using T = ggml_type;
    auto row = [table](T t) -> type_traits& { return table[static_cast<size_t>(t)]; };
    row(T::Q8_0).from_float = quantize_row_q8_0_neon;
    row(T::Q8_1).from_float = quantize_row_q8_1_neon;
    row(T::Q8_K).from_float = quantize_row_q8_K_neon;
    row(T::Q4_0).vec_dot = vec_dot_32_neon<n_q4_0>;
    row(T::Q4_1).vec_dot = vec_dot_32_neon<n_q4_1>;
    row(T::Q5_0).vec_dot = vec_dot_32_neon<n_q5_0>;
    row(T::Q5_1).vec_dot = vec_dot_32_neon<n_q5_1>;
    row(T::Q8_0).vec_dot = vec_dot_32_neon<n_q8_0>;
    row(T::Q4_K).vec_dot = vec_dot_q4_K_chains_neon<8>;
    row(T::Q4_K).vec_dot_x4 = vec_dot_q4_K_chains_neon<2>;
    row(T::Q4_K).vec_dot_tiled = vec_dot_k_neon<block_q4_K, unpack_q4_K_n, 32, true, true>;
    row(T::Q5_K).vec_dot = vec_dot_k_neon<block_q5_K, unpack_q5_K_n, 32, true, false>;
    row(T::Q5_K).vec_dot_tiled = vec_dot_k_neon<block_q5_K, unpack_q5_K_n, 32, true, true>;
    row(T::Q6_K).vec_dot = vec_dot_k_neon<block_q6_K, unpack_q6_K_n, 16, false, false>;
    row(T::Q6_K).vec_dot_tiled = vec_dot_k_neon<block_q6_K, unpack_q6_K_n, 16, false, true>;
    row(T::Q4_0).vec_dot_repacked = vec_dot_repacked_32_neon<T::Q4_0>;
    row(T::Q4_1).vec_dot_repacked = vec_dot_repacked_32_neon<T::Q4_1>;
    row(T::Q5_0).vec_dot_repacked = vec_dot_repacked_32_neon<T::Q5_0>;
    row(T::Q8_0).vec_dot_repacked = vec_dot_repacked_32_neon<T::Q8_0>;
    row(T::Q4_K).vec_dot_repacked = vec_dot_repacked_q4_K_neon;
    row(T::Q6_K).vec_dot_repacked = vec_dot_repacked_q6_K_neon;
}

} // namespace
} // namespace pipeinfer
