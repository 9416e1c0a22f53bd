// AVX-512 VNNI dots over row-interleaved weights (quant/repack.h): the type_traits::vec_dot_repacked
// entries. Included ONLY by quant/arch/x86-avx512.cpp (internal linkage, like x86-kernels.h).
//
// One 16-row block column is unpacked into 8 zmm of unsigned quants (zmm g holds values 4g..4g+3 of
// the 16 rows, one row per 32-bit lane); each activation row then needs 8 vpdpbusd with its 4-byte
// groups broadcast, which leave the 16 rows' exact block dot products in 16 lanes, and three float
// operations for the scale. Per lane these are exactly the operations of the scalar reference in
// repack.cpp (exact integer sum, d_x * d_y exact, one fma, plus the q4_1 min fma), so results are
// bit-identical to it (tests/kernels/test_repack.py).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "quant/repack.h"

namespace pipeinfer {
namespace {  // one copy per including ISA file

// Columns this far ahead are prefetched: one sequential stream per thread needs several KiB in flight
// to reach the memory bandwidth here (a 4-column distance reached half of it on a q4_1 matvec).
constexpr size_t REPACK_PREFETCH_BYTES = 5120;

inline void unpack_nibble_cols(const uint8_t* qs, __m512i w[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
        const __m512i z = _mm512_loadu_si512(qs + 64 * c);
        w[c] = _mm512_and_si512(z, m4);
        w[c + 4] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
    }
}

struct rz_q4_0 {
    using col = col_q4_0;
    using act = block_q8_0;
    static constexpr bool has_off = true;
    static void unpack(const col& c, __m512i w[8]) { unpack_nibble_cols(c.qs, w); }
};
struct rz_q4_1 {
    using col = col_q4_1;
    using act = block_q8_1;
    static constexpr bool has_off = false;
    static void unpack(const col& c, __m512i w[8]) { unpack_nibble_cols(c.qs, w); }
};
struct rz_q5_0 {
    using col = col_q5_0;
    using act = block_q8_0;
    static constexpr bool has_off = true;
    static void unpack(const col& c, __m512i w[8]) {
        unpack_nibble_cols(c.qs, w);
        const __m512i bit4 = _mm512_set1_epi8(0x10);
        for (int g = 0; g < 8; ++g) {
            uint64_t m;
            std::memcpy(&m, c.qh + 8 * g, 8);
            w[g] = _mm512_mask_add_epi8(w[g], _cvtu64_mask64(m), w[g], bit4);
        }
    }
};
struct rz_q8_0 {
    using col = col_q8_0;
    using act = block_q8_0;
    static constexpr bool has_off = true;
    static void unpack(const col& c, __m512i w[8]) {
        for (int g = 0; g < 8; ++g) w[g] = _mm512_loadu_si512(c.qs + 64 * g);
    }
};

inline __m512i bcast_group(const int8_t* qs, int g) {
    int32_t v;
    std::memcpy(&v, qs + 4 * g, 4);
    return _mm512_set1_epi32(v);
}

template <class T, int K>
void repack_dot_k(int64_t nb, const typename T::col* cols, const uint8_t* y, size_t y_stride, const int32_t* corr,
                  size_t corr_stride, float* s) {
    __m512 acc[K];
#pragma GCC unroll 8
    for (int a = 0; a < K; ++a) acc[a] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const auto& c = cols[b];
        const char* ahead = reinterpret_cast<const char*>(&c) + REPACK_PREFETCH_BYTES;
#pragma GCC unroll 16
        for (size_t off = 0; off < sizeof(typename T::col); off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
        __m512i w[8];
        T::unpack(c, w);
        const __m512 dx = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.d)));
#pragma GCC unroll 8
        for (int a = 0; a < K; ++a) {
            const auto& yb = reinterpret_cast<const typename T::act*>(y + a * y_stride)[b];
            // two chains of 4 multiply-adds (latency), summed: integer addition, exact in any order
            __m512i i0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], bcast_group(yb.qs, 0));
            __m512i i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], bcast_group(yb.qs, 1));
            i0 = _mm512_dpbusd_epi32(i0, w[2], bcast_group(yb.qs, 2));
            i1 = _mm512_dpbusd_epi32(i1, w[3], bcast_group(yb.qs, 3));
            i0 = _mm512_dpbusd_epi32(i0, w[4], bcast_group(yb.qs, 4));
            i1 = _mm512_dpbusd_epi32(i1, w[5], bcast_group(yb.qs, 5));
            i0 = _mm512_dpbusd_epi32(i0, w[6], bcast_group(yb.qs, 6));
            i1 = _mm512_dpbusd_epi32(i1, w[7], bcast_group(yb.qs, 7));
            __m512i isum = _mm512_add_epi32(i0, i1);
            if constexpr (T::has_off) isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(corr[a * corr_stride + b]));
            const __m512 dd = _mm512_mul_ps(dx, _mm512_set1_ps(_cvtsh_ss(yb.d)));
            acc[a] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(isum), acc[a]);
            if constexpr (!T::has_off) {  // q4_1: the min term
                const __m512 mx = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.m)));
                acc[a] = _mm512_fmadd_ps(mx, _mm512_set1_ps(_cvtsh_ss(yb.s)), acc[a]);
            }
        }
    }
#pragma GCC unroll 8
    for (int a = 0; a < K; ++a) _mm512_storeu_ps(s + a * REPACK_ROWS, acc[a]);
}

template <class T>
void vec_dot_repacked_avx512(int64_t n, const void* group, const void* y, size_t y_stride, const int32_t* corr,
                             size_t corr_stride, int n_act, float* s) {
    const int64_t nb = n / QK8_0;
    const auto* cols = static_cast<const typename T::col*>(group);
    const auto* yb = static_cast<const uint8_t*>(y);
    for (int a0 = 0; a0 < n_act; a0 += REPACK_ACT_MAX) {
        const uint8_t* ya = yb + a0 * y_stride;
        const int32_t* ca = corr != nullptr ? corr + a0 * corr_stride : nullptr;
        float* sa = s + a0 * REPACK_ROWS;
        switch (n_act - a0 < REPACK_ACT_MAX ? n_act - a0 : REPACK_ACT_MAX) {
        case 1: repack_dot_k<T, 1>(nb, cols, ya, y_stride, ca, corr_stride, sa); break;
        case 2: repack_dot_k<T, 2>(nb, cols, ya, y_stride, ca, corr_stride, sa); break;
        case 3: repack_dot_k<T, 3>(nb, cols, ya, y_stride, ca, corr_stride, sa); break;
        case 4: repack_dot_k<T, 4>(nb, cols, ya, y_stride, ca, corr_stride, sa); break;
        case 5: repack_dot_k<T, 5>(nb, cols, ya, y_stride, ca, corr_stride, sa); break;
        case 6: repack_dot_k<T, 6>(nb, cols, ya, y_stride, ca, corr_stride, sa); break;
        case 7: repack_dot_k<T, 7>(nb, cols, ya, y_stride, ca, corr_stride, sa); break;
        default: repack_dot_k<T, 8>(nb, cols, ya, y_stride, ca, corr_stride, sa); break;
        }
    }
}

void register_repack_avx512(type_traits* table) {
    table[static_cast<size_t>(ggml_type::Q4_0)].vec_dot_repacked = vec_dot_repacked_avx512<rz_q4_0>;
    table[static_cast<size_t>(ggml_type::Q4_1)].vec_dot_repacked = vec_dot_repacked_avx512<rz_q4_1>;
    table[static_cast<size_t>(ggml_type::Q5_0)].vec_dot_repacked = vec_dot_repacked_avx512<rz_q5_0>;
    table[static_cast<size_t>(ggml_type::Q8_0)].vec_dot_repacked = vec_dot_repacked_avx512<rz_q8_0>;
}

} // namespace
} // namespace pipeinfer
