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

#include <cstddef>
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

// acc + dpbusd(w, the 4 bytes at p broadcast to every lane), with the broadcast folded into the
// instruction's memory operand (GCC emits a separate vpbroadcastd for _mm512_set1_epi32 here, one
// more instruction per multiply-add in a loop that issues little else).
inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t* p) {
#if defined(__GNUC__)
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(p)));
    return acc;
#else
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(v));
#endif
}

// init + sum over groups g < N of dpbusd(w[g], y's 4-byte group g), one chain: the callers keep
// several activation rows' chains in flight, which hides the latency.
template <int N>
inline __m512i dot_chain(__m512i init, const __m512i* w, const int8_t* yq) {
#pragma GCC unroll 8
    for (int g = 0; g < N; ++g) init = dpbusd_bcast(init, w[g], yq + 4 * g);
    return init;
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
            // the offset correction is the chain's start value (integer sums: exact in any order)
            const __m512i isum = dot_chain<8>(
                T::has_off ? _mm512_set1_epi32(-corr[a * corr_stride + b]) : _mm512_setzero_si512(), w, yb.qs);
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

// ---------------------------------------------------------------------------------------------
// k-quants (256-value super-blocks, q8_K activations): up to REPACK_ACT_K activation rows per pass,
// each with an integer accumulator per super-block and an f32 result (the q4_K mins are summed after
// the sub-blocks, so 8 rows fit in the 32 registers).
// ---------------------------------------------------------------------------------------------
constexpr int REPACK_ACT_K = 8;

// Prefetch of the k-quant kernels. q4_K: prefetcht0 two columns ahead, each 512-byte chunk of that
// column as the kernel reaches the same chunk of the current one. q6_K: prefetcht1 (into L2 only)
// about 10 KB ahead, one slice of 448 bytes per step of the column, so that the requests go out at the
// rate the bytes are used. Measured on the dev machine (Zen 4, one thread, load 4-6), old and new
// kernels alternated inside one process: the q6_K prefetch above (with the unrolled kernel below)
// made a Qwen2.5-Coder-1.5B decode ~1.1x faster than prefetcht0 of the whole column two columns
// ahead (a burst of 53 prefetches, which held the L1 miss buffers), and the one-row q6_K matvec on
// 128 MiB 1.15-1.5x faster; the same L2 prefetch for q4_K was no faster on 128 MiB and ~7% slower in
// the decode, so q4_K keeps its own. Past the group the prefetches fall in the next group (groups
// are contiguous); past the matrix a prefetch is harmless.
constexpr int64_t PF_COLS = 2;                          // q4_K, prefetcht0
constexpr size_t PF_Q6_K_BYTES = 3 * sizeof(col_q6_K);  // 10080, prefetcht1

inline void prefetch_span(const void* p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(static_cast<const char*>(p) + off, _MM_HINT_T0);
}

// prefetcht1 of the bytes [p, p + BYTES), one instruction per 64-byte line.
template <size_t BYTES>
inline void prefetch_l2(const void* p) {
#pragma GCC unroll 16
    for (size_t off = 0; off < BYTES; off += 64) _mm_prefetch(static_cast<const char*>(p) + off, _MM_HINT_T1);
}

template <int K>
void repack_dot_q4_K_k(int64_t nb, const col_q4_K* cols, const uint8_t* y, size_t y_stride, const int32_t* side,
                       size_t side_stride, float* s) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[K];
    for (int a = 0; a < K; ++a) acc[a] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const col_q4_K& c = cols[b];
        const col_q4_K& ahead = cols[b + PF_COLS];  // past the group: the next group; past the matrix: harmless
        prefetch_span(&ahead, offsetof(col_q4_K, qs));
        __m512i sumi[K];
        for (int a = 0; a < K; ++a) sumi[a] = _mm512_setzero_si512();
        for (int ch = 0; ch < 4; ++ch) {
            prefetch_span(ahead.qs + 512 * ch, 512);
#pragma GCC unroll 2
            for (int hi = 0; hi < 2; ++hi) {
                const int j = 2 * ch + hi;
                __m512i w[8];
                for (int g = 0; g < 8; ++g) {
                    const __m512i z = _mm512_loadu_si512(c.qs + 64 * (8 * ch + g));
                    w[g] = _mm512_and_si512(hi ? _mm512_srli_epi16(z, 4) : z, m4);
                }
                const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.sc[j])));
#pragma GCC unroll 8
                for (int a = 0; a < K; ++a) {
                    const auto& yb = reinterpret_cast<const block_q8_K*>(y + a * y_stride)[b];
                    sumi[a] = _mm512_add_epi32(sumi[a], _mm512_mullo_epi32(dot_chain<8>(_mm512_setzero_si512(), w, yb.qs + 32 * j), sc));
                }
            }
        }
        const __m512 dx = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.d)));
        const __m512 dmx = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.dmin)));
        __m512i mp[4];  // (m_2t, m_2t+1) i16 pairs per row lane
        for (int t = 0; t < 4; ++t) mp[t] = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.m[t])));
#pragma GCC unroll 8
        for (int a = 0; a < K; ++a) {
            const int32_t* pairs = side + a * side_stride + 4 * b;  // (bs_2t, bs_2t+1) i16 pairs, t < 4
            __m512i summ = _mm512_setzero_si512();
            for (int t = 0; t < 4; ++t) summ = _mm512_dpwssd_epi32(summ, mp[t], _mm512_set1_epi32(pairs[t]));
            const __m512 dy = _mm512_set1_ps(reinterpret_cast<const block_q8_K*>(y + a * y_stride)[b].d);
            acc[a] = _mm512_fmadd_ps(_mm512_mul_ps(dx, dy), _mm512_cvtepi32_ps(sumi[a]), acc[a]);
            acc[a] = _mm512_fnmadd_ps(_mm512_mul_ps(dmx, dy), _mm512_cvtepi32_ps(summ), acc[a]);
        }
    }
    for (int a = 0; a < K; ++a) _mm512_storeu_ps(s + a * REPACK_ROWS, acc[a]);
}

// The 8 (unsigned 6-bit) weight vectors of step (H, SG) of a q6_K column: values 128 H + 32 SG + 4 g
// + j of the 16 rows, low 4 bits from ql (chunk 2 H + SG / 2, low or high nibble), high 2 bits from qh
// (bits 2 SG, 2 SG + 1 of chunk H) moved to bits 4-5. H and SG are template arguments so that every
// shift and offset is a constant: with them as loop counters GCC 12 kept the loops, with a variable
// shift, index arithmetic and a branch per vector (about 1.7x the instructions per column).
template <int H, int SG>
inline void unpack_q6_K_step(const col_q6_K& c, __m512i w[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    constexpr int ch = 2 * H + SG / 2;
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
        const __m512i z = _mm512_loadu_si512(c.ql + 64 * (8 * ch + g));
        const __m512i lo = _mm512_and_si512(SG % 2 ? _mm512_srli_epi16(z, 4) : z, m4);
        const __m512i qh = _mm512_loadu_si512(c.qh + 64 * (8 * H + g));
        const __m512i hb = SG == 3 ? _mm512_srli_epi16(qh, 2) : SG == 2 ? qh : _mm512_slli_epi16(qh, 4 - 2 * SG);
        w[g] = _mm512_ternarylogic_epi32(hb, m30, lo, 0xEA);  // (hb & m30) | lo
    }
}

// Step (H, SG) of a q6_K column for K activation rows: sub-blocks j0 = 8 H + 2 SG (groups 0-3) and
// j0 + 1 (groups 4-7), each chain starting from its -32 * bsums correction, scaled, added to sumi.
template <int K, int H, int SG>
inline void q6_K_step(const col_q6_K& c, const uint8_t* y, size_t y_stride, int64_t b, __m512i* sumi) {
    __m512i w[8];
    unpack_q6_K_step<H, SG>(c, w);
    constexpr int j0 = 8 * H + 2 * SG;
    const __m512i sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.sc[j0])));
    const __m512i sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.sc[j0 + 1])));
#pragma GCC unroll 8
    for (int a = 0; a < K; ++a) {
        const auto& yb = reinterpret_cast<const block_q8_K*>(y + a * y_stride)[b];
        const int8_t* yq = yb.qs + 128 * H + 32 * SG;
        const __m512i i0 = dot_chain<4>(_mm512_set1_epi32(-32 * yb.bsums[j0]), w, yq);
        const __m512i i1 = dot_chain<4>(_mm512_set1_epi32(-32 * yb.bsums[j0 + 1]), w + 4, yq + 16);
        sumi[a] = _mm512_add_epi32(sumi[a], _mm512_add_epi32(_mm512_mullo_epi32(i0, sc0), _mm512_mullo_epi32(i1, sc1)));
    }
}

template <int K>
void repack_dot_q6_K_k(int64_t nb, const col_q6_K* cols, const uint8_t* y, size_t y_stride, const int32_t*, size_t,
                       float* s) {
    constexpr size_t PF_SLICE = 448;  // 8 slices per column (3360 bytes)
    __m512 acc[K];
    for (int a = 0; a < K; ++a) acc[a] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const col_q6_K& c = cols[b];
        const char* ahead = reinterpret_cast<const char*>(&c) + PF_Q6_K_BYTES;
        __m512i sumi[K];
        for (int a = 0; a < K; ++a) sumi[a] = _mm512_setzero_si512();
        prefetch_l2<PF_SLICE>(ahead + 0 * PF_SLICE); q6_K_step<K, 0, 0>(c, y, y_stride, b, sumi);
        prefetch_l2<PF_SLICE>(ahead + 1 * PF_SLICE); q6_K_step<K, 0, 1>(c, y, y_stride, b, sumi);
        prefetch_l2<PF_SLICE>(ahead + 2 * PF_SLICE); q6_K_step<K, 0, 2>(c, y, y_stride, b, sumi);
        prefetch_l2<PF_SLICE>(ahead + 3 * PF_SLICE); q6_K_step<K, 0, 3>(c, y, y_stride, b, sumi);
        prefetch_l2<PF_SLICE>(ahead + 4 * PF_SLICE); q6_K_step<K, 1, 0>(c, y, y_stride, b, sumi);
        prefetch_l2<PF_SLICE>(ahead + 5 * PF_SLICE); q6_K_step<K, 1, 1>(c, y, y_stride, b, sumi);
        prefetch_l2<PF_SLICE>(ahead + 6 * PF_SLICE); q6_K_step<K, 1, 2>(c, y, y_stride, b, sumi);
        prefetch_l2<PF_SLICE>(ahead + 7 * PF_SLICE); q6_K_step<K, 1, 3>(c, y, y_stride, b, sumi);
        const __m512 dx = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.d)));
#pragma GCC unroll 8
        for (int a = 0; a < K; ++a) {
            const float dy = reinterpret_cast<const block_q8_K*>(y + a * y_stride)[b].d;
            acc[a] = _mm512_fmadd_ps(_mm512_mul_ps(dx, _mm512_set1_ps(dy)), _mm512_cvtepi32_ps(sumi[a]), acc[a]);
        }
    }
    for (int a = 0; a < K; ++a) _mm512_storeu_ps(s + a * REPACK_ROWS, acc[a]);
}

template <class Col, template <int> class Kern>
void vec_dot_repacked_k_avx512(int64_t n, const void* group, const void* y, size_t y_stride, const int32_t* side,
                               size_t side_stride, int n_act, float* s) {
    const int64_t nb = n / QK_K;
    const auto* cols = static_cast<const Col*>(group);
    const auto* yb = static_cast<const uint8_t*>(y);
    for (int a0 = 0; a0 < n_act; a0 += REPACK_ACT_K) {
        const uint8_t* ya = yb + a0 * y_stride;
        const int32_t* sd = side != nullptr ? side + a0 * side_stride : nullptr;
        float* sa = s + a0 * REPACK_ROWS;
        switch (n_act - a0 < REPACK_ACT_K ? n_act - a0 : REPACK_ACT_K) {
        case 1: Kern<1>::run(nb, cols, ya, y_stride, sd, side_stride, sa); break;
        case 2: Kern<2>::run(nb, cols, ya, y_stride, sd, side_stride, sa); break;
        case 3: Kern<3>::run(nb, cols, ya, y_stride, sd, side_stride, sa); break;
        case 4: Kern<4>::run(nb, cols, ya, y_stride, sd, side_stride, sa); break;
        case 5: Kern<5>::run(nb, cols, ya, y_stride, sd, side_stride, sa); break;
        case 6: Kern<6>::run(nb, cols, ya, y_stride, sd, side_stride, sa); break;
        case 7: Kern<7>::run(nb, cols, ya, y_stride, sd, side_stride, sa); break;
        default: Kern<8>::run(nb, cols, ya, y_stride, sd, side_stride, sa); break;
        }
    }
}
template <int K>
struct kern_q4_K {
    static void run(int64_t nb, const col_q4_K* c, const uint8_t* y, size_t ys, const int32_t* sd, size_t ss, float* s) {
        repack_dot_q4_K_k<K>(nb, c, y, ys, sd, ss, s);
    }
};
template <int K>
struct kern_q6_K {
    static void run(int64_t nb, const col_q6_K* c, const uint8_t* y, size_t ys, const int32_t* sd, size_t ss, float* s) {
        repack_dot_q6_K_k<K>(nb, c, y, ys, sd, ss, s);
    }
};

void register_repack_avx512(type_traits* table) {
    table[static_cast<size_t>(ggml_type::Q4_0)].vec_dot_repacked = vec_dot_repacked_avx512<rz_q4_0>;
    table[static_cast<size_t>(ggml_type::Q4_1)].vec_dot_repacked = vec_dot_repacked_avx512<rz_q4_1>;
    table[static_cast<size_t>(ggml_type::Q5_0)].vec_dot_repacked = vec_dot_repacked_avx512<rz_q5_0>;
    table[static_cast<size_t>(ggml_type::Q8_0)].vec_dot_repacked = vec_dot_repacked_avx512<rz_q8_0>;
    table[static_cast<size_t>(ggml_type::Q4_K)].vec_dot_repacked = vec_dot_repacked_k_avx512<col_q4_K, kern_q4_K>;
    table[static_cast<size_t>(ggml_type::Q6_K)].vec_dot_repacked = vec_dot_repacked_k_avx512<col_q6_K, kern_q6_K>;
}

} // namespace
} // namespace pipeinfer
