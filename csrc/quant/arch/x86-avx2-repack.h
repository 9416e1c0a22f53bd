// AVX2 dots over row-interleaved weights (quant/repack.h): the type_traits::vec_dot_repacked entries
// for CPUs without AVX-512 (all six repacked types). Included ONLY by quant/arch/x86-avx2.cpp (internal linkage).
//
// A 256-bit register holds 8 of a group's 16 rows (bytes 0-31 of each 64-byte chunk: rows 0-7, bytes
// 32-63: rows 8-15), so each group is passed twice, once per half, with up to 4 activation rows in
// registers. Integer products go through maddubs + madd (u8 * s8 pairs into i16, then i32): q4_0 /
// q4_1 / q5_0 quants are at most 31, so the i16 pairs cannot saturate; q8_0's stored q + 128 is turned
// back into the signed q and multiplied as |q| * (y with q's sign), which gives sum(q * y) =
// sum((q + 128) * y) - 128 * sum(y) directly (the same integer as the reference's corrected sum). The
// float side per lane is the reference's: d_x * d_y, one fma, and the q4_1 min fma.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "quant/repack.h"

namespace pipeinfer {
namespace {  // one copy per including ISA file

constexpr int REPACK_ACT_AVX2 = 4;  // activation rows per pass (16 ymm registers)

inline void unpack_nibble_half(const uint8_t* qs, int h, __m256i w[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
        const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 64 * c + 32 * h));
        w[c] = _mm256_and_si256(z, m4);
        w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(z, 4), m4);
    }
}

// 0x10 in byte i where bit i of m is set.
inline __m256i bits_to_0x10(uint32_t m) {
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(static_cast<int32_t>(m)),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

struct ry_q4_0 {
    using col = col_q4_0;
    using act = block_q8_0;
    static constexpr bool has_off = true;
    static constexpr bool signed_q = false;
    static void unpack(const col& c, int h, __m256i w[8]) { unpack_nibble_half(c.qs, h, w); }
};
struct ry_q4_1 {
    using col = col_q4_1;
    using act = block_q8_1;
    static constexpr bool has_off = false;
    static constexpr bool signed_q = false;
    static void unpack(const col& c, int h, __m256i w[8]) { unpack_nibble_half(c.qs, h, w); }
};
struct ry_q5_0 {
    using col = col_q5_0;
    using act = block_q8_0;
    static constexpr bool has_off = true;
    static constexpr bool signed_q = false;
    static void unpack(const col& c, int h, __m256i w[8]) {
        unpack_nibble_half(c.qs, h, w);
        for (int g = 0; g < 8; ++g) {
            uint64_t m;
            std::memcpy(&m, c.qh + 8 * g, 8);
            w[g] = _mm256_add_epi8(w[g], bits_to_0x10(static_cast<uint32_t>(m >> (32 * h))));
        }
    }
};
struct ry_q8_0 {
    using col = col_q8_0;
    using act = block_q8_0;
    static constexpr bool has_off = false;  // the signed product needs no correction
    static constexpr bool signed_q = true;
    static void unpack(const col& c, int h, __m256i w[8]) {
        const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
        for (int g = 0; g < 8; ++g) {
            w[g] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.qs + 64 * g + 32 * h)), flip);
        }
    }
};

// (8,) i32: for each row lane, the dot of its 4 quants in w with the 4 activation quants in y4.
template <bool SIGNED>
inline __m256i dot4(__m256i w, __m256i y4) {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (SIGNED) {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y4, w)), ones);
    } else {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(w, y4), ones);
    }
}

template <class T, int K>
void repack_dot_half(int64_t nb, const typename T::col* cols, int h, const uint8_t* y, size_t y_stride,
                     const int32_t* corr, size_t corr_stride, float* s) {
    __m256 acc[K];
    for (int a = 0; a < K; ++a) acc[a] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const auto& c = cols[b];
        __m256i w[8];
        T::unpack(c, h, w);
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.d + 8 * h)));
        for (int a = 0; a < K; ++a) {
            const auto& yb = reinterpret_cast<const typename T::act*>(y + a * y_stride)[b];
            __m256i isum = _mm256_setzero_si256();
            for (int g = 0; g < 8; ++g) {
                int32_t v;
                std::memcpy(&v, yb.qs + 4 * g, 4);
                isum = _mm256_add_epi32(isum, dot4<T::signed_q>(w[g], _mm256_set1_epi32(v)));
            }
            if constexpr (T::has_off) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(corr[a * corr_stride + b]));
            const __m256 dd = _mm256_mul_ps(dx, _mm256_set1_ps(_cvtsh_ss(yb.d)));
            acc[a] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(isum), acc[a]);
            if constexpr (std::is_same_v<T, ry_q4_1>) {
                const __m256 mx = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.m + 8 * h)));
                acc[a] = _mm256_fmadd_ps(mx, _mm256_set1_ps(_cvtsh_ss(yb.s)), acc[a]);
            }
        }
    }
    for (int a = 0; a < K; ++a) _mm256_storeu_ps(s + a * REPACK_ROWS + 8 * h, acc[a]);
}

template <class T>
void vec_dot_repacked_avx2(int64_t n, const void* group, const void* y, size_t y_stride, const int32_t* corr,
                           size_t corr_stride, int n_act, float* s) {
    const int64_t nb = n / QK8_0;
    const auto* cols = static_cast<const typename T::col*>(group);
    const auto* yb = static_cast<const uint8_t*>(y);
    for (int a0 = 0; a0 < n_act; a0 += REPACK_ACT_AVX2) {
        const uint8_t* ya = yb + a0 * y_stride;
        const int32_t* ca = corr != nullptr ? corr + a0 * corr_stride : nullptr;
        float* sa = s + a0 * REPACK_ROWS;
        for (int h = 0; h < 2; ++h) {
            switch (n_act - a0 < REPACK_ACT_AVX2 ? n_act - a0 : REPACK_ACT_AVX2) {
            case 1: repack_dot_half<T, 1>(nb, cols, h, ya, y_stride, ca, corr_stride, sa); break;
            case 2: repack_dot_half<T, 2>(nb, cols, h, ya, y_stride, ca, corr_stride, sa); break;
            case 3: repack_dot_half<T, 3>(nb, cols, h, ya, y_stride, ca, corr_stride, sa); break;
            default: repack_dot_half<T, 4>(nb, cols, h, ya, y_stride, ca, corr_stride, sa); break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// k-quants: the same half-group passes, 8 rows per register, the orders of repack.h.
// ---------------------------------------------------------------------------------------------

inline __m256i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

// (8,) i32: sum over groups g < N of each row lane's 4 quants in w[g] times y's 4-byte group g.
template <int N>
inline __m256i dot_groups_avx2(const __m256i* w, const int8_t* yq) {
    __m256i isum = dot4<false>(w[0], bcast4(yq));
    for (int g = 1; g < N; ++g) isum = _mm256_add_epi32(isum, dot4<false>(w[g], bcast4(yq + 4 * g)));
    return isum;
}

template <int K>
void repack_half_q4_K(int64_t nb, const col_q4_K* cols, int h, const uint8_t* y, size_t y_stride, float* s) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[K];
    for (int a = 0; a < K; ++a) acc[a] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const col_q4_K& c = cols[b];
        __m256i sumi[K];
        for (int a = 0; a < K; ++a) sumi[a] = _mm256_setzero_si256();
        for (int j = 0; j < 8; ++j) {
            __m256i w[8];
            for (int g = 0; g < 8; ++g) {
                const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.qs + 64 * (8 * (j / 2) + g) + 32 * h));
                w[g] = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(z, 4) : z, m4);
            }
            const __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c.sc[j] + 8 * h)));
            for (int a = 0; a < K; ++a) {
                const auto& yb = reinterpret_cast<const block_q8_K*>(y + a * y_stride)[b];
                sumi[a] = _mm256_add_epi32(sumi[a], _mm256_mullo_epi32(dot_groups_avx2<8>(w, yb.qs + 32 * j), sc));
            }
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.d + 8 * h)));
        const __m256 dmx = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.dmin + 8 * h)));
        for (int a = 0; a < K; ++a) {
            const auto& yb = reinterpret_cast<const block_q8_K*>(y + a * y_stride)[b];
            __m256i summ = _mm256_setzero_si256();
            for (int t = 0; t < 4; ++t) {
                const __m256i mp = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.m[t][8 * h])));
                const int32_t b0 = yb.bsums[4 * t] + yb.bsums[4 * t + 1];
                const int32_t b1 = yb.bsums[4 * t + 2] + yb.bsums[4 * t + 3];
                const __m256i pair = _mm256_set1_epi32(static_cast<int32_t>((static_cast<uint32_t>(b0) & 0xFFFFu) |
                                                                            (static_cast<uint32_t>(b1) << 16)));
                summ = _mm256_add_epi32(summ, _mm256_madd_epi16(mp, pair));
            }
            const __m256 dy = _mm256_set1_ps(yb.d);
            acc[a] = _mm256_fmadd_ps(_mm256_mul_ps(dx, dy), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
            acc[a] = _mm256_fnmadd_ps(_mm256_mul_ps(dmx, dy), _mm256_cvtepi32_ps(summ), acc[a]);
        }
    }
    for (int a = 0; a < K; ++a) _mm256_storeu_ps(s + a * REPACK_ROWS + 8 * h, acc[a]);
}

template <int K>
void repack_half_q6_K(int64_t nb, const col_q6_K* cols, int h8, const uint8_t* y, size_t y_stride, float* s) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    __m256 acc[K];
    for (int a = 0; a < K; ++a) acc[a] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const col_q6_K& c = cols[b];
        __m256i sumi[K];
        for (int a = 0; a < K; ++a) sumi[a] = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            for (int sg = 0; sg < 4; ++sg) {
                const int ch = 2 * h + sg / 2;
                __m256i w[8];
                for (int g = 0; g < 8; ++g) {
                    const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.ql + 64 * (8 * ch + g) + 32 * h8));
                    const __m256i lo = _mm256_and_si256(sg % 2 ? _mm256_srli_epi16(z, 4) : z, m4);
                    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.qh + 64 * (8 * h + g) + 32 * h8));
                    const __m256i hb = sg == 3 ? _mm256_srli_epi16(qh, 2) : _mm256_sll_epi16(qh, _mm_cvtsi32_si128(4 - 2 * sg));
                    w[g] = _mm256_or_si256(lo, _mm256_and_si256(hb, m30));
                }
                const int j0 = 8 * h + 2 * sg;
                const __m256i sc0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c.sc[j0] + 8 * h8)));
                const __m256i sc1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c.sc[j0 + 1] + 8 * h8)));
                for (int a = 0; a < K; ++a) {
                    const auto& yb = reinterpret_cast<const block_q8_K*>(y + a * y_stride)[b];
                    const int8_t* yq = yb.qs + 128 * h + 32 * sg;
                    const __m256i i0 = _mm256_sub_epi32(dot_groups_avx2<4>(w, yq), _mm256_set1_epi32(32 * yb.bsums[j0]));
                    const __m256i i1 = _mm256_sub_epi32(dot_groups_avx2<4>(w + 4, yq + 16), _mm256_set1_epi32(32 * yb.bsums[j0 + 1]));
                    sumi[a] = _mm256_add_epi32(sumi[a], _mm256_add_epi32(_mm256_mullo_epi32(i0, sc0), _mm256_mullo_epi32(i1, sc1)));
                }
            }
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.d + 8 * h8)));
        for (int a = 0; a < K; ++a) {
            const float dy = reinterpret_cast<const block_q8_K*>(y + a * y_stride)[b].d;
            acc[a] = _mm256_fmadd_ps(_mm256_mul_ps(dx, _mm256_set1_ps(dy)), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
        }
    }
    for (int a = 0; a < K; ++a) _mm256_storeu_ps(s + a * REPACK_ROWS + 8 * h8, acc[a]);
}

template <class Col, void (*H1)(int64_t, const Col*, int, const uint8_t*, size_t, float*),
          void (*H2)(int64_t, const Col*, int, const uint8_t*, size_t, float*),
          void (*H3)(int64_t, const Col*, int, const uint8_t*, size_t, float*),
          void (*H4)(int64_t, const Col*, int, const uint8_t*, size_t, float*)>
void vec_dot_repacked_k_avx2(int64_t n, const void* group, const void* y, size_t y_stride, const int32_t*, size_t,
                             int n_act, float* s) {
    const int64_t nb = n / QK_K;
    const auto* cols = static_cast<const Col*>(group);
    const auto* yb = static_cast<const uint8_t*>(y);
    for (int a0 = 0; a0 < n_act; a0 += REPACK_ACT_AVX2) {
        const uint8_t* ya = yb + a0 * y_stride;
        float* sa = s + a0 * REPACK_ROWS;
        for (int h = 0; h < 2; ++h) {
            switch (n_act - a0 < REPACK_ACT_AVX2 ? n_act - a0 : REPACK_ACT_AVX2) {
            case 1: H1(nb, cols, h, ya, y_stride, sa); break;
            case 2: H2(nb, cols, h, ya, y_stride, sa); break;
            case 3: H3(nb, cols, h, ya, y_stride, sa); break;
            default: H4(nb, cols, h, ya, y_stride, sa); break;
            }
        }
    }
}

void register_repack_avx2(type_traits* table) {
    table[static_cast<size_t>(ggml_type::Q4_0)].vec_dot_repacked = vec_dot_repacked_avx2<ry_q4_0>;
    table[static_cast<size_t>(ggml_type::Q4_1)].vec_dot_repacked = vec_dot_repacked_avx2<ry_q4_1>;
    table[static_cast<size_t>(ggml_type::Q5_0)].vec_dot_repacked = vec_dot_repacked_avx2<ry_q5_0>;
    table[static_cast<size_t>(ggml_type::Q8_0)].vec_dot_repacked = vec_dot_repacked_avx2<ry_q8_0>;
    table[static_cast<size_t>(ggml_type::Q4_K)].vec_dot_repacked =
        vec_dot_repacked_k_avx2<col_q4_K, repack_half_q4_K<1>, repack_half_q4_K<2>, repack_half_q4_K<3>, repack_half_q4_K<4>>;
    table[static_cast<size_t>(ggml_type::Q6_K)].vec_dot_repacked =
        vec_dot_repacked_k_avx2<col_q6_K, repack_half_q6_K<1>, repack_half_q6_K<2>, repack_half_q6_K<3>, repack_half_q6_K<4>>;
}

} // namespace
} // namespace pipeinfer
