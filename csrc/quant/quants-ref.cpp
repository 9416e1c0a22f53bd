// Scalar reference kernels: the oracle every SIMD path (quant/arch/) is tested against. This file
// holds the float types (f32, f16, bf16) and the 32-value block types (q4_0, q4_1, q5_0, q5_1, q8_0,
// q8_1); quants-ref-k.cpp holds the 256-value k-quants. register_kernels_ref fills every row of the
// traits table that this build can handle.
//
// Exactness contract (tested in tests/quant):
// - to_float is bit-exact with gguf-py's numpy gguf.quants.dequantize: the same f32 operations in the
//   same order (e.g. q4_0 is d * float(q - 8), q4_1 is (d * q) + m with two roundings).
// - from_float is bit-exact with ggml's quantize_row_*_ref (ggml/src/ggml-quants.c), which gguf-py
//   reproduces for the types it can quantize.
// - from_float of the activation types q8_0 / q8_1 follows ggml's x86 kernels instead (see
//   quantize_row_q8_0 below), because that is what llama.cpp runs on the CPUs we target.
// - vec_dot of the 32-value block types reproduces ggml's x86 kernels bit for bit
//   (ggml-cpu/arch/x86/quants.c ggml_vec_dot_{q4_0,q4_1,q5_0,q5_1,q8_0}_q8_*, and llamafile's
//   tinyBLAS_Q0_AVX, which uses the same order): per block, 8 lanes each holding the integer sum of 4
//   adjacent products, acc[k] = fma(d_x * d_y, lane_k, acc[k]); the result is the pairwise sum of the
//   8 lanes (hsum_float_8), plus, for the types with a min, a separate fma chain of m_x * s_y.
//   The float types keep products in f32 and sums in f64. Each weight block is read once for all
//   activation rows (blocks outer, rows inner).
#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include <cmath>
#include <cstring>
#include <vector>

#include "common/fp16.h"
#include "quant/blocks.h"
#include "quant/quants-ref-common.h"
#include "quant/type-traits.h"

namespace pipeinfer {

// k-quants (quants-ref-k.cpp).
void register_kernels_ref_k(type_traits* table);
// Repacked (row-interleaved) weight dots (repack.cpp).
void register_kernels_repack_ref(type_traits* table);

namespace {

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

using ref::act_block;
using ref::dot_i8;
using ref::set_row;

// ggml's x86 accumulator for the 32-value block dots (see the header comment): 8 f32 lanes, one fma
// per lane and block, and a separate f32 fma chain for the min terms.
struct lane_acc8 {
    float acc[8] = {};  // (8,) f32 lane accumulators
    float summs = 0.0f; // sum of m_x * s_y (types with a min)

    // Adds one block: w and a are its 32 quants in value order, d = d_x * d_y (already rounded to f32).
    void add_block(const int8_t* w, const int8_t* a, float d) {
        for (int k = 0; k < 8; ++k) {
            const int lane = dot_i8(w + 4 * k, a + 4 * k, 4);
            acc[k] = std::fmaf(d, static_cast<float>(lane), acc[k]);
        }
    }
    void add_min(float m, float s) { summs = std::fmaf(m, s, summs); }
    // hsum_float_8: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), then + summs.
    float result() const {
        const float t0 = acc[4] + acc[0], t1 = acc[5] + acc[1], t2 = acc[6] + acc[2], t3 = acc[7] + acc[3];
        return ((t0 + t2) + (t1 + t3)) + summs;
    }
};

// Unpacks 32 4-bit quants (value k in the low nibble of qs[k], value k + 16 in the high nibble).
inline void unpack_nibbles_32(const uint8_t* qs, uint8_t* q) {
    for (int k = 0; k < 16; ++k) {
        q[k] = qs[k] & 0x0F;
        q[k + 16] = qs[k] >> 4;
    }
}

// Unpacks 32 5-bit quants: low bits from qs, bit 4 of value k from bit k of qh (little-endian u32).
inline void unpack_5bit_32(const uint8_t* qs, const uint8_t* qh_bytes, uint8_t* q) {
    uint32_t qh;
    std::memcpy(&qh, qh_bytes, sizeof(qh));
    unpack_nibbles_32(qs, q);
    for (int k = 0; k < 32; ++k) q[k] |= static_cast<uint8_t>(((qh >> k) & 1u) << 4);
}

// ggml's roundf use in quantize_row_q8_*_ref: round half away from zero.
inline int8_t round_i8(float v) { return static_cast<int8_t>(std::roundf(v)); }

// ---------------------------------------------------------------------------------------------
// Float types
// ---------------------------------------------------------------------------------------------

void dequantize_row_f32(const void* src, float* dst, int64_t n) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void quantize_row_f32(const float* src, void* dst, int64_t n) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void dequantize_row_f16(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const fp16_bits*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(x[i]);
}
void quantize_row_f16(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<fp16_bits*>(dst);
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(src[i]);
}

void dequantize_row_bf16(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const bf16_bits*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(x[i]);
}
void quantize_row_bf16(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<bf16_bits*>(dst);
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(src[i]);
}

// Float dots: products in f32, sums in f64 (ggml_vec_dot_f16 / _bf16 use ggml_float = double).
// The weight row is converted chunk by chunk and each chunk is used for up to ROWS activation rows.
template <class T, float (*to_f32)(T)>
void vec_dot_float(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    constexpr int64_t CHUNK = 256;
    constexpr int ROWS = 32;
    const T* x = static_cast<const T*>(vx);
    float xf[CHUNK];  // (CHUNK,) f32: converted weights
    for (int j0 = 0; j0 < n_act; j0 += ROWS) {
        const int nr = (n_act - j0 < ROWS) ? n_act - j0 : ROWS;
        double acc[ROWS] = {};
        for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
            const int64_t nc = (n - i0 < CHUNK) ? n - i0 : CHUNK;
            for (int64_t i = 0; i < nc; ++i) xf[i] = to_f32(x[i0 + i]);
            for (int r = 0; r < nr; ++r) {
                const T* y = reinterpret_cast<const T*>(static_cast<const uint8_t*>(vy) + y_stride * (j0 + r));
                double a = acc[r];
                for (int64_t i = 0; i < nc; ++i) a += static_cast<double>(xf[i] * to_f32(y[i0 + i]));
                acc[r] = a;
            }
        }
        for (int r = 0; r < nr; ++r) s[j0 + r] = static_cast<float>(acc[r]);
    }
}

inline float f32_identity(float v) { return v; }

// ---------------------------------------------------------------------------------------------
// q4_0: value = d * (q - 8); q4_1: value = d * q + m; q5_0: d * (q - 16); q5_1: d * q + m
// ---------------------------------------------------------------------------------------------
// One template per operation over these four types. OFF is the offset of the symmetric types (0 for
// the types with a min); q is stored unsigned, 4 bits (q4_*) or 5 bits (q5_*). The dot template also
// serves q8_0 (t_q8_0 below), whose stored quants are already the signed weights.

// Packs 32 5-bit quants into the qs/qh fields of a q5_0 / q5_1 block.
inline void pack_5bit_32(const int* q, uint8_t* qs, uint8_t* qh_bytes) {
    uint32_t qh = 0;
    for (int k = 0; k < 16; ++k) {
        qs[k] = static_cast<uint8_t>((q[k] & 0x0F) | ((q[k + 16] & 0x0F) << 4));
    }
    for (int k = 0; k < 32; ++k) qh |= static_cast<uint32_t>((q[k] >> 4) & 1) << k;
    std::memcpy(qh_bytes, &qh, sizeof(qh));
}

// Packs 32 4-bit quants: value k in the low nibble of qs[k], value k + 16 in the high nibble.
inline void pack_nibbles_32(const int* q, uint8_t* qs) {
    for (int k = 0; k < 16; ++k) qs[k] = static_cast<uint8_t>(q[k] | (q[k + 16] << 4));
}

struct t_q4_0 {
    using block = block_q4_0;
    using act = block_q8_0;
    static constexpr int OFF = 8, QMAX = 15;
    static constexpr bool HAS_MIN = false;
    static void unpack(const block& b, uint8_t* q) { unpack_nibbles_32(b.qs, q); }
    static void pack(const int* q, block& b) { pack_nibbles_32(q, b.qs); }
};
struct t_q4_1 {
    using block = block_q4_1;
    using act = block_q8_1;
    static constexpr int OFF = 0, QMAX = 15;
    static constexpr bool HAS_MIN = true;
    static void unpack(const block& b, uint8_t* q) { unpack_nibbles_32(b.qs, q); }
    static void pack(const int* q, block& b) { pack_nibbles_32(q, b.qs); }
};
struct t_q5_0 {
    using block = block_q5_0;
    using act = block_q8_0;
    static constexpr int OFF = 16, QMAX = 31;
    static constexpr bool HAS_MIN = false;
    static void unpack(const block& b, uint8_t* q) { unpack_5bit_32(b.qs, b.qh, q); }
    static void pack(const int* q, block& b) { pack_5bit_32(q, b.qs, b.qh); }
};
struct t_q5_1 {
    using block = block_q5_1;
    using act = block_q8_1;
    static constexpr int OFF = 0, QMAX = 31;
    static constexpr bool HAS_MIN = true;
    static void unpack(const block& b, uint8_t* q) { unpack_5bit_32(b.qs, b.qh, q); }
    static void pack(const int* q, block& b) { pack_5bit_32(q, b.qs, b.qh); }
};

// gguf-py's order: d * float(q - OFF), or (d * q) + m with two roundings.
template <class T>
void dequantize_row_32(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const typename T::block*>(src);
    uint8_t q[32];
    for (int64_t i = 0; i < n / 32; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        T::unpack(x[i], q);
        if constexpr (!T::HAS_MIN) {
            for (int k = 0; k < 32; ++k) dst[i * 32 + k] = d * static_cast<float>(q[k] - T::OFF);
        } else {
            const float m = fp16_to_fp32(x[i].m);
            for (int k = 0; k < 32; ++k) dst[i * 32 + k] = d * static_cast<float>(q[k]) + m;
        }
    }
}

// Smallest and largest of n floats (ggml's loop: both start at x[0]).
inline void block_min_max(const float* x, int n, float* mn, float* mx) {
    float lo = x[0], hi = x[0];
    for (int k = 1; k < n; ++k) {
        if (x[k] < lo) lo = x[k];
        if (x[k] > hi) hi = x[k];
    }
    *mn = lo;
    *mx = hi;
}

// ggml quantize_row_q{4,5}_{0,1}_ref.
// - Symmetric (q4_0, q5_0): d = (value of largest magnitude) / -OFF, q = min(QMAX, trunc(x/d + OFF + 0.5)).
// - With a min (q4_1, q5_1): d = (max - min) / QMAX, m = min, q = min(QMAX, trunc((x - min)/d + 0.5)).
template <class T>
void quantize_row_32(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<typename T::block*>(dst);
    int q[32];
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* x = src + i * 32;
        float d, base = 0.0f;  // base: the min subtracted before scaling (types with a min)
        const float bias = static_cast<float>(T::OFF) + 0.5f;
        if constexpr (!T::HAS_MIN) {
            float amax = 0.0f, max = 0.0f;
            for (int k = 0; k < 32; ++k) {
                if (amax < std::fabs(x[k])) {
                    amax = std::fabs(x[k]);
                    max = x[k];
                }
            }
            d = max / static_cast<float>(-T::OFF);
        } else {
            float max;
            block_min_max(x, 32, &base, &max);
            d = (max - base) / static_cast<float>(T::QMAX);
            y[i].m = fp32_to_fp16(base);
        }
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int k = 0; k < 32; ++k) {
            const int v = !T::HAS_MIN ? static_cast<int8_t>(x[k] * id + bias)
                                      : static_cast<int8_t>((x[k] - base) * id + bias);
            q[k] = v < T::QMAX ? v : T::QMAX;
        }
        T::pack(q, y[i]);
    }
}

// The 32 signed weight quants of a block (stored quants minus OFF).
template <class T>
inline void weights_32(const typename T::block& b, int8_t* w) {
    uint8_t u[32];
    T::unpack(b, u);
    for (int k = 0; k < 32; ++k) w[k] = static_cast<int8_t>(u[k] - T::OFF);
}

struct t_q8_0 {
    using block = block_q8_0;
    using act = block_q8_0;
    static constexpr bool HAS_MIN = false;  // stored quants are the signed weights (weights_32 below)
};
template <>
inline void weights_32<t_q8_0>(const block_q8_0& b, int8_t* w) {
    std::memcpy(w, b.qs, 32);
}

// ggml's x86 order (lane_acc8): per block the quants with the offset applied, one fma per lane with
// d_x * d_y, and for the types with a min a separate fma chain of m_x * s_y.
template <class T>
void vec_dot_32(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const typename T::block*>(vx);
    std::vector<lane_acc8> acc(static_cast<size_t>(n_act));  // (n_act,) one accumulator per activation row
    int8_t w[32];  // (32,) weight quants with the offset applied
    for (int64_t i = 0; i < n / 32; ++i) {
        weights_32<T>(x[i], w);
        const float dx = fp16_to_fp32(x[i].d);
        for (int j = 0; j < n_act; ++j) {
            const auto& yb = act_block<typename T::act>(vy, y_stride, j, i);
            if constexpr (T::HAS_MIN) acc[j].add_min(fp16_to_fp32(x[i].m), fp16_to_fp32(yb.s));
            acc[j].add_block(w, yb.qs, dx * fp16_to_fp32(yb.d));
        }
    }
    for (int j = 0; j < n_act; ++j) s[j] = acc[j].result();
}

// ---------------------------------------------------------------------------------------------
// q8_0 / q8_1: value = d * q
// ---------------------------------------------------------------------------------------------

// q8_0 and q8_1 (whose s field plays no part here).
template <class Block>
void dequantize_row_q8(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const Block*>(src);
    for (int64_t i = 0; i < n / 32; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int k = 0; k < 32; ++k) dst[i * 32 + k] = static_cast<float>(x[i].qs[k]) * d;
    }
}

// Activation quantization as ggml's x86 kernels do it (ggml-cpu arch/x86 quantize_row_q8_0, the
// path llama.cpp runs on the CPUs we target): d = amax / 127, q = round-half-even(x * (127 / amax)).
// (ggml's portable _ref variant multiplies by 1/d and rounds half away from zero; the two differ on
// a few values per row, and any such difference is amplified through the layers, so matching
// llama.cpp's greedy output needs the variant it actually runs.)
inline int8_t round_even_i8(float v) { return static_cast<int8_t>(std::nearbyintf(v)); }

void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q8_0*>(dst);
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float* x = src + i * QK8_0;
        float amax = 0.0f;
        for (int k = 0; k < QK8_0; ++k) amax = std::fmax(amax, std::fabs(x[k]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int k = 0; k < QK8_0; ++k) y[i].qs[k] = round_even_i8(x[k] * id);
    }
}

// As quantize_row_q8_0 (ggml x86 semantics), plus s = f16(sum(q) * d).
void quantize_row_q8_1(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q8_1*>(dst);
    for (int64_t i = 0; i < n / QK8_1; ++i) {
        const float* x = src + i * QK8_1;
        float amax = 0.0f;
        for (int k = 0; k < QK8_1; ++k) amax = std::fmax(amax, std::fabs(x[k]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = fp32_to_fp16(d);
        int sum = 0;
        for (int k = 0; k < QK8_1; ++k) {
            y[i].qs[k] = round_even_i8(x[k] * id);
            sum += y[i].qs[k];
        }
        y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
    }
}


} // namespace

void register_kernels_ref(type_traits* table) {
    using T = ggml_type;
    set_row(table, T::F32, dequantize_row_f32, quantize_row_f32, vec_dot_float<float, f32_identity>, T::F32);
    set_row(table, T::F16, dequantize_row_f16, quantize_row_f16, vec_dot_float<fp16_bits, fp16_to_fp32>, T::F16);
    set_row(table, T::BF16, dequantize_row_bf16, quantize_row_bf16, vec_dot_float<bf16_bits, bf16_to_fp32>,
            T::BF16);
    set_row(table, T::Q4_0, dequantize_row_32<t_q4_0>, quantize_row_32<t_q4_0>, vec_dot_32<t_q4_0>, T::Q8_0);
    set_row(table, T::Q4_1, dequantize_row_32<t_q4_1>, quantize_row_32<t_q4_1>, vec_dot_32<t_q4_1>, T::Q8_1);
    set_row(table, T::Q5_0, dequantize_row_32<t_q5_0>, quantize_row_32<t_q5_0>, vec_dot_32<t_q5_0>, T::Q8_0);
    set_row(table, T::Q5_1, dequantize_row_32<t_q5_1>, quantize_row_32<t_q5_1>, vec_dot_32<t_q5_1>, T::Q8_1);
    set_row(table, T::Q8_0, dequantize_row_q8<block_q8_0>, quantize_row_q8_0, vec_dot_32<t_q8_0>, T::Q8_0);
    // q8_1 is an activation type only: ggml has no q8_1 x q8_1 dot.
    set_row(table, T::Q8_1, dequantize_row_q8<block_q8_1>, quantize_row_q8_1, nullptr, T::Q8_1);
    register_kernels_ref_k(table);
    register_kernels_repack_ref(table);
}

} // namespace pipeinfer
