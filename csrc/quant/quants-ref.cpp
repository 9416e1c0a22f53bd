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

// Integer dot product of n int8 pairs.
inline int dot_i8(const int8_t* a, const int8_t* b, int n) {
    int sum = 0;
    for (int i = 0; i < n; ++i) sum += static_cast<int>(a[i]) * static_cast<int>(b[i]);
    return sum;
}

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

// Block i of activation row j (rows y_stride bytes apart).
template <class Block>
inline const Block& act_block(const void* y, size_t y_stride, int j, int64_t i) {
    return reinterpret_cast<const Block*>(static_cast<const uint8_t*>(y) + y_stride * j)[i];
}

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
// q4_0: value = d * (q - 8)
// ---------------------------------------------------------------------------------------------

void dequantize_row_q4_0(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const block_q4_0*>(src);
    uint8_t q[QK4_0];
    for (int64_t i = 0; i < n / QK4_0; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        unpack_nibbles_32(x[i].qs, q);
        for (int k = 0; k < QK4_0; ++k) dst[i * QK4_0 + k] = d * static_cast<float>(q[k] - 8);
    }
}

// ggml quantize_row_q4_0_ref: d = (value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5)).
void quantize_row_q4_0(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q4_0*>(dst);
    for (int64_t i = 0; i < n / QK4_0; ++i) {
        const float* x = src + i * QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int k = 0; k < QK4_0; ++k) {
            if (amax < std::fabs(x[k])) {
                amax = std::fabs(x[k]);
                max = x[k];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int k = 0; k < QK4_0 / 2; ++k) {
            const int q0 = static_cast<int8_t>(x[k] * id + 8.5f);
            const int q1 = static_cast<int8_t>(x[k + QK4_0 / 2] * id + 8.5f);
            y[i].qs[k] = static_cast<uint8_t>((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

void vec_dot_q4_0_q8_0(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const block_q4_0*>(vx);
    std::vector<lane_acc8> acc(static_cast<size_t>(n_act));  // (n_act,) one accumulator per activation row
    uint8_t u[QK4_0];
    int8_t w[QK4_0];  // (32,) weight quants with the offset applied
    for (int64_t i = 0; i < n / QK4_0; ++i) {
        unpack_nibbles_32(x[i].qs, u);
        for (int k = 0; k < QK4_0; ++k) w[k] = static_cast<int8_t>(u[k] - 8);
        const float dx = fp16_to_fp32(x[i].d);
        for (int j = 0; j < n_act; ++j) {
            const auto& yb = act_block<block_q8_0>(vy, y_stride, j, i);
            acc[j].add_block(w, yb.qs, dx * fp16_to_fp32(yb.d));
        }
    }
    for (int j = 0; j < n_act; ++j) s[j] = acc[j].result();
}

// ---------------------------------------------------------------------------------------------
// q4_1: value = d * q + m
// ---------------------------------------------------------------------------------------------

void dequantize_row_q4_1(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const block_q4_1*>(src);
    uint8_t q[QK4_1];
    for (int64_t i = 0; i < n / QK4_1; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const float m = fp16_to_fp32(x[i].m);
        unpack_nibbles_32(x[i].qs, q);
        for (int k = 0; k < QK4_1; ++k) dst[i * QK4_1 + k] = d * static_cast<float>(q[k]) + m;
    }
}

// Min and max of a block (ggml starts from +-FLT_MAX; the first element gives the same result).
inline void block_min_max(const float* x, int n, float* mn, float* mx) {
    float lo = x[0], hi = x[0];
    for (int k = 1; k < n; ++k) {
        if (x[k] < lo) lo = x[k];
        if (x[k] > hi) hi = x[k];
    }
    *mn = lo;
    *mx = hi;
}

// ggml quantize_row_q4_1_ref: d = (max - min) / 15, m = min, q = min(15, trunc((x - min)/d + 0.5)).
void quantize_row_q4_1(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q4_1*>(dst);
    for (int64_t i = 0; i < n / QK4_1; ++i) {
        const float* x = src + i * QK4_1;
        float min, max;
        block_min_max(x, QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        for (int k = 0; k < QK4_1 / 2; ++k) {
            const int q0 = static_cast<int8_t>((x[k] - min) * id + 0.5f);
            const int q1 = static_cast<int8_t>((x[k + QK4_1 / 2] - min) * id + 0.5f);
            y[i].qs[k] = static_cast<uint8_t>((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

void vec_dot_q4_1_q8_1(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const block_q4_1*>(vx);
    std::vector<lane_acc8> acc(static_cast<size_t>(n_act));  // (n_act,) one accumulator per activation row
    uint8_t u[QK4_1];
    int8_t w[QK4_1];  // (32,) weight quants in [0, 15]
    for (int64_t i = 0; i < n / QK4_1; ++i) {
        unpack_nibbles_32(x[i].qs, u);
        for (int k = 0; k < QK4_1; ++k) w[k] = static_cast<int8_t>(u[k]);
        const float dx = fp16_to_fp32(x[i].d);
        const float mx = fp16_to_fp32(x[i].m);
        for (int j = 0; j < n_act; ++j) {
            const auto& yb = act_block<block_q8_1>(vy, y_stride, j, i);
            acc[j].add_min(mx, fp16_to_fp32(yb.s));
            acc[j].add_block(w, yb.qs, dx * fp16_to_fp32(yb.d));
        }
    }
    for (int j = 0; j < n_act; ++j) s[j] = acc[j].result();
}

// ---------------------------------------------------------------------------------------------
// q5_0: value = d * (q - 16)
// ---------------------------------------------------------------------------------------------

void dequantize_row_q5_0(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const block_q5_0*>(src);
    uint8_t q[QK5_0];
    for (int64_t i = 0; i < n / QK5_0; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        unpack_5bit_32(x[i].qs, x[i].qh, q);
        for (int k = 0; k < QK5_0; ++k) dst[i * QK5_0 + k] = d * static_cast<float>(q[k] - 16);
    }
}

// Packs 32 5-bit quants into the qs/qh fields of a q5_0 / q5_1 block.
inline void pack_5bit_32(const int* q, uint8_t* qs, uint8_t* qh_bytes) {
    uint32_t qh = 0;
    for (int k = 0; k < 16; ++k) {
        qs[k] = static_cast<uint8_t>((q[k] & 0x0F) | ((q[k + 16] & 0x0F) << 4));
    }
    for (int k = 0; k < 32; ++k) qh |= static_cast<uint32_t>((q[k] >> 4) & 1) << k;
    std::memcpy(qh_bytes, &qh, sizeof(qh));
}

// ggml quantize_row_q5_0_ref: d = (value of largest magnitude) / -16, q = min(31, trunc(x/d + 16.5)).
void quantize_row_q5_0(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q5_0*>(dst);
    int q[QK5_0];
    for (int64_t i = 0; i < n / QK5_0; ++i) {
        const float* x = src + i * QK5_0;
        float amax = 0.0f, max = 0.0f;
        for (int k = 0; k < QK5_0; ++k) {
            if (amax < std::fabs(x[k])) {
                amax = std::fabs(x[k]);
                max = x[k];
            }
        }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int k = 0; k < QK5_0; ++k) {
            const int v = static_cast<int8_t>(x[k] * id + 16.5f);
            q[k] = v < 31 ? v : 31;
        }
        pack_5bit_32(q, y[i].qs, y[i].qh);
    }
}

void vec_dot_q5_0_q8_0(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const block_q5_0*>(vx);
    std::vector<lane_acc8> acc(static_cast<size_t>(n_act));  // (n_act,) one accumulator per activation row
    uint8_t u[QK5_0];
    int8_t w[QK5_0];  // (32,) weight quants with the offset applied
    for (int64_t i = 0; i < n / QK5_0; ++i) {
        unpack_5bit_32(x[i].qs, x[i].qh, u);
        for (int k = 0; k < QK5_0; ++k) w[k] = static_cast<int8_t>(u[k] - 16);
        const float dx = fp16_to_fp32(x[i].d);
        for (int j = 0; j < n_act; ++j) {
            const auto& yb = act_block<block_q8_0>(vy, y_stride, j, i);
            acc[j].add_block(w, yb.qs, dx * fp16_to_fp32(yb.d));
        }
    }
    for (int j = 0; j < n_act; ++j) s[j] = acc[j].result();
}

// ---------------------------------------------------------------------------------------------
// q5_1: value = d * q + m
// ---------------------------------------------------------------------------------------------

void dequantize_row_q5_1(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const block_q5_1*>(src);
    uint8_t q[QK5_1];
    for (int64_t i = 0; i < n / QK5_1; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const float m = fp16_to_fp32(x[i].m);
        unpack_5bit_32(x[i].qs, x[i].qh, q);
        for (int k = 0; k < QK5_1; ++k) dst[i * QK5_1 + k] = d * static_cast<float>(q[k]) + m;
    }
}

// ggml quantize_row_q5_1_ref: d = (max - min) / 31, m = min, q = min(31, trunc((x - min)/d + 0.5)).
void quantize_row_q5_1(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q5_1*>(dst);
    int q[QK5_1];
    for (int64_t i = 0; i < n / QK5_1; ++i) {
        const float* x = src + i * QK5_1;
        float min, max;
        block_min_max(x, QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        for (int k = 0; k < QK5_1; ++k) {
            const int v = static_cast<int8_t>((x[k] - min) * id + 0.5f);
            q[k] = v < 31 ? v : 31;
        }
        pack_5bit_32(q, y[i].qs, y[i].qh);
    }
}

void vec_dot_q5_1_q8_1(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const block_q5_1*>(vx);
    std::vector<lane_acc8> acc(static_cast<size_t>(n_act));  // (n_act,) one accumulator per activation row
    uint8_t u[QK5_1];
    int8_t w[QK5_1];  // (32,) weight quants in [0, 31]
    for (int64_t i = 0; i < n / QK5_1; ++i) {
        unpack_5bit_32(x[i].qs, x[i].qh, u);
        for (int k = 0; k < QK5_1; ++k) w[k] = static_cast<int8_t>(u[k]);
        const float dx = fp16_to_fp32(x[i].d);
        const float mx = fp16_to_fp32(x[i].m);
        for (int j = 0; j < n_act; ++j) {
            const auto& yb = act_block<block_q8_1>(vy, y_stride, j, i);
            acc[j].add_min(mx, fp16_to_fp32(yb.s));
            acc[j].add_block(w, yb.qs, dx * fp16_to_fp32(yb.d));
        }
    }
    for (int j = 0; j < n_act; ++j) s[j] = acc[j].result();
}

// ---------------------------------------------------------------------------------------------
// q8_0 / q8_1: value = d * q
// ---------------------------------------------------------------------------------------------

void dequantize_row_q8_0(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const block_q8_0*>(src);
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int k = 0; k < QK8_0; ++k) dst[i * QK8_0 + k] = static_cast<float>(x[i].qs[k]) * d;
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

void vec_dot_q8_0_q8_0(int64_t n, const void* vx, const void* vy, size_t y_stride, int n_act, float* s) {
    const auto* x = static_cast<const block_q8_0*>(vx);
    std::vector<lane_acc8> acc(static_cast<size_t>(n_act));  // (n_act,) one accumulator per activation row
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const float dx = fp16_to_fp32(x[i].d);
        for (int j = 0; j < n_act; ++j) {
            const auto& yb = act_block<block_q8_0>(vy, y_stride, j, i);
            acc[j].add_block(x[i].qs, yb.qs, dx * fp16_to_fp32(yb.d));
        }
    }
    for (int j = 0; j < n_act; ++j) s[j] = acc[j].result();
}

void dequantize_row_q8_1(const void* src, float* dst, int64_t n) {
    const auto* x = static_cast<const block_q8_1*>(src);
    for (int64_t i = 0; i < n / QK8_1; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int k = 0; k < QK8_1; ++k) dst[i * QK8_1 + k] = static_cast<float>(x[i].qs[k]) * d;
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

void set_row(type_traits* table, ggml_type t, to_float_fn to_float, from_float_fn from_float, vec_dot_fn vec_dot,
             ggml_type vec_dot_type) {
    type_traits& r = table[static_cast<size_t>(t)];
    r.to_float = to_float;
    r.from_float = from_float;
    r.vec_dot = vec_dot;
    r.vec_dot_type = vec_dot_type;
}

} // namespace

void register_kernels_ref(type_traits* table) {
    using T = ggml_type;
    set_row(table, T::F32, dequantize_row_f32, quantize_row_f32, vec_dot_float<float, f32_identity>, T::F32);
    set_row(table, T::F16, dequantize_row_f16, quantize_row_f16, vec_dot_float<fp16_bits, fp16_to_fp32>, T::F16);
    set_row(table, T::BF16, dequantize_row_bf16, quantize_row_bf16, vec_dot_float<bf16_bits, bf16_to_fp32>,
            T::BF16);
    set_row(table, T::Q4_0, dequantize_row_q4_0, quantize_row_q4_0, vec_dot_q4_0_q8_0, T::Q8_0);
    set_row(table, T::Q4_1, dequantize_row_q4_1, quantize_row_q4_1, vec_dot_q4_1_q8_1, T::Q8_1);
    set_row(table, T::Q5_0, dequantize_row_q5_0, quantize_row_q5_0, vec_dot_q5_0_q8_0, T::Q8_0);
    set_row(table, T::Q5_1, dequantize_row_q5_1, quantize_row_q5_1, vec_dot_q5_1_q8_1, T::Q8_1);
    set_row(table, T::Q8_0, dequantize_row_q8_0, quantize_row_q8_0, vec_dot_q8_0_q8_0, T::Q8_0);
    // q8_1 is an activation type only: ggml has no q8_1 x q8_1 dot.
    set_row(table, T::Q8_1, dequantize_row_q8_1, quantize_row_q8_1, nullptr, T::Q8_1);
    register_kernels_ref_k(table);
    register_kernels_repack_ref(table);
}

} // namespace pipeinfer
