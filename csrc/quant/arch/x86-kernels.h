// x86 SIMD kernels shared by the avx2 and avx512 files (256-bit vectors): the multi-row dots of every
// block type and the bit-exact q8 activation quantizers. Included ONLY by quant/arch/x86-*.cpp, each
// of which first defines `struct isa_ops` (its integer multiply-add primitives) and is compiled with
// its own ISA flags. Everything here has internal linkage (an anonymous namespace), so each including
// file gets its own copy built for its ISA; with external linkage the linker could keep the avx512
// build of an inline function and run it on an avx2-only CPU. Must not be included anywhere else.
//
// Exactness (tests/kernels/test_simd_kernels.py, test_batch_orders.py): the integer part of every dot
// (sums of quant products inside a block, scale and min sums of k-quants) is exact; only the f32
// accumulation across blocks and lanes of the one-row LANES k-quant dots (q2_K, q3_K, q5_K, q6_K) is
// reordered against quants-ref-k.cpp; the q4_K dots, the batch-order k-quant dots (vec_dot_x4,
// vec_dot_tiled), the 32-value block dots and the q8_0 / q8_1 / q8_K quantizers reproduce the
// reference bit for bit (same f32 operations in the same order, same rounding rules), which is ggml's
// x86 semantics.
//
// Precondition of the signed-weight dots (q4_0, q5_0, q8_0): activation quants are in [-127, 127], as
// every q8 quantizer produces (the sign trick below cannot negate -128).
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"
#include "quant/blocks.h"
#include "quant/type-traits.h"

namespace pipeinfer {
namespace {  // see the header comment: one copy per ISA file

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

inline float hsum_ps(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

inline int hsum_epi32(__m256i v) {
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 0, 3, 2)));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(x);
}

inline float f16_to_f32(fp16_bits h) { return _cvtsh_ss(h); }

inline __m256i loadu256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 32 4-bit quants of a q4/q5 block as bytes in value order: value k (low nibble of qs[k]) at byte k,
// value k + 16 (high nibble) at byte k + 16.
inline __m256i unpack_nibbles_32(const uint8_t* qs) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

// Byte k = 0xFF where bit k of the little-endian u32 at p is set, else 0 (k in [0, 32)).
inline __m256i bits_to_bytes_32(const uint8_t* p) {
    uint32_t bits;
    std::memcpy(&bits, p, sizeof(bits));
    // byte k takes source byte k / 8, then keeps only bit k % 8
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(static_cast<int>(bits)),
        _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

// Calls Kernel::template run<NR>(...) on groups of MAXR activation rows, then once on the rest.
template <class Kernel, int MAXR, int NR = MAXR>
inline void run_tail(int left, int64_t n, const void* x, const uint8_t* y, size_t ys, float* s) {
    if constexpr (NR >= 1) {
        if (left == NR) {
            Kernel::template run<NR>(n, x, y, ys, s);
            return;
        }
        run_tail<Kernel, MAXR, NR - 1>(left, n, x, y, ys, s);
    }
}

template <class Kernel, int MAXR>
void vec_dot_rows(int64_t n, const void* x, const void* vy, size_t ys, int n_act, float* s) {
    const uint8_t* y = static_cast<const uint8_t*>(vy);
    int j = 0;
    for (; j + MAXR <= n_act; j += MAXR) Kernel::template run<MAXR>(n, x, y + ys * j, ys, s + j);
    if (j < n_act) run_tail<Kernel, MAXR>(n_act - j, n, x, y + ys * j, ys, s + j);
}

// ---------------------------------------------------------------------------------------------
// 32-value blocks: q4_0, q4_1, q5_0, q5_1, q8_0 weights with q8_0 / q8_1 activations
// ---------------------------------------------------------------------------------------------
// A weight block is unpacked once into 32 bytes (signed for the symmetric types, unsigned for the
// ones with a min) and reused for every activation row.

struct w_q4_0 {
    using block = block_q4_0;
    using act = block_q8_0;
    static constexpr bool is_signed = true, has_min = false;
    static __m256i unpack(const block& b) { return _mm256_sub_epi8(unpack_nibbles_32(b.qs), _mm256_set1_epi8(8)); }
};
struct w_q4_1 {
    using block = block_q4_1;
    using act = block_q8_1;
    static constexpr bool is_signed = false, has_min = true;
    static __m256i unpack(const block& b) { return unpack_nibbles_32(b.qs); }
};
struct w_q5_0 {
    using block = block_q5_0;
    using act = block_q8_0;
    static constexpr bool is_signed = true, has_min = false;
    // q - 16 as a signed byte: the nibble with 0xF0 or'ed in where the fifth bit is clear.
    static __m256i unpack(const block& b) {
        return _mm256_or_si256(unpack_nibbles_32(b.qs), _mm256_andnot_si256(bits_to_bytes_32(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0))));
    }
};
struct w_q5_1 {
    using block = block_q5_1;
    using act = block_q8_1;
    static constexpr bool is_signed = false, has_min = true;
    static __m256i unpack(const block& b) {
        return _mm256_or_si256(unpack_nibbles_32(b.qs), _mm256_and_si256(bits_to_bytes_32(b.qh), _mm256_set1_epi8(0x10)));
    }
};
struct w_q8_0 {
    using block = block_q8_0;
    using act = block_q8_0;
    static constexpr bool is_signed = true, has_min = false;
    static __m256i unpack(const block& b) { return loadu256(b.qs); }
};

// The accumulation order is ggml's x86 one (ggml_vec_dot_*_q8_* in ggml-cpu/arch/x86/quants.c and
// llamafile's tinyBLAS_Q0_AVX), so results are bit-identical with llama.cpp and with quants-ref.cpp:
// per block, the (8,) i32 sums of 4 adjacent products are converted to f32 and added with one FMA,
// acc += (d_x * d_y) * lanes; the row result is hsum_ps(acc) (+ an f32 FMA chain of m_x * s_y).
template <class W>
struct dot32_kernel {
    using A = typename W::act;

    static __m256i weight_abs(__m256i w) { return W::is_signed ? _mm256_sign_epi8(w, w) : w; }

    // Integer dot of unpacked weight block (w, |w|) with activation block b: (8,) i32 partial sums.
    static __m256i block_dot(__m256i w, __m256i wa, const A& b) {
        __m256i q = loadu256(b.qs);
        if (W::is_signed) q = _mm256_sign_epi8(q, w);  // moves w's sign onto the activation
        return isa_ops::dot_u8s8(wa, q);
    }

    template <int NR>
    static void run(int64_t n, const void* vx, const uint8_t* y, size_t ys, float* s) {
        const auto* x = static_cast<const typename W::block*>(vx);
        __m256 acc[NR];   // (NR, 8) f32 lane accumulators
        float summs[NR];  // (NR,) f32 sums of m_x * s_y
        for (int r = 0; r < NR; ++r) {
            acc[r] = _mm256_setzero_ps();
            summs[r] = 0.0f;
        }
        for (int64_t i = 0; i < n / 32; ++i) {
            const __m256i w = W::unpack(x[i]);
            const __m256i wa = weight_abs(w);
            const float dx = f16_to_f32(x[i].d);
            for (int r = 0; r < NR; ++r) {
                const A& b = reinterpret_cast<const A*>(y + ys * r)[i];
                const __m256 lanes = _mm256_cvtepi32_ps(block_dot(w, wa, b));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx * f16_to_f32(b.d)), lanes, acc[r]);
                if constexpr (W::has_min) summs[r] = std::fmaf(f16_to_f32(x[i].m), f16_to_f32(b.s), summs[r]);
            }
        }
        for (int r = 0; r < NR; ++r) s[r] = hsum_ps(acc[r]) + summs[r];
    }
};

// ---------------------------------------------------------------------------------------------
// k-quants: q2_K, q3_K, q4_K, q5_K, q6_K weights with q8_K activations
// ---------------------------------------------------------------------------------------------
// A super-block is seen as 8 chunks of 32 values (chunk c = values 32c .. 32c+31, matching
// y.qs + 32c). Each type unpacks its quants into unsigned bytes chunk pair by chunk pair, gives an
// i16 scale vector per chunk (lanes 0-7 scale values 0-15 of the chunk, lanes 8-15 values 16-31) and
// a correction vector over the 16 bsums groups. Per activation row:
//     isum = sum_c madd(maddubs(u_c, y_c), scale_c)       exact i32
//     corr = madd(bsums, cvec)                            exact i32
//     s   += d_y * d * isum - d_y * dm * corr
// where the correction is the weight min (q2_K, q4_K, q5_K: dm = dmin) or the quant offset times
// the scale (q3_K: 4, q6_K: 32; dm = d, and isum - corr is taken in integers).

// Scale vector for chunk c from 16 i16 scales of 16-value sub-blocks: lanes 0-7 = sc[2c],
// lanes 8-15 = sc[2c + 1]. The i32 lane c of sc16 holds exactly that pair.
inline __m256i scale_pair16(__m256i sc16, int c) {
    const __m256i pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(c));
    const __m256i bcast = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,  //
                                           2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    return _mm256_shuffle_epi8(pair, bcast);
}

// Scale vector for chunk c from 8 scales of 32-value sub-blocks held as i32 (sc | sc << 16).
inline __m256i scale_one32(__m256i sc32, int c) { return _mm256_permutevar8x32_epi32(sc32, _mm256_set1_epi32(c)); }

// 6-bit scales and mins of q4_K / q5_K (12 packed bytes; layout in quant/blocks.h): returns the 8
// scales as i32 (sc | sc << 16) and the correction vector (16 i16 lanes: min of group g / 2).
inline void decode_scales_k4(const uint8_t* q, __m256i* sc32, __m256i* cvec) {
    // Byte j of the words: sc[j] = q[j] & 63, mn[j] = q[j + 4] & 63 (j < 4); sc[j + 4] = low nibble of
    // q[j + 8] | (q[j] >> 6) << 4, mn[j + 4] = high nibble of q[j + 8] | (q[j + 4] >> 6) << 4; four
    // bytes at a time in 32-bit words (no carries cross bytes: every mask keeps bits inside their byte).
    uint32_t u[3];
    std::memcpy(u, q, 12);
    const uint32_t m6 = 0x3F3F3F3Fu, m4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    const uint32_t sc_lo = u[0] & m6, mn_lo = u[1] & m6;
    const uint32_t sc_hi = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);
    const uint32_t mn_hi = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
    const uint64_t s8 = sc_lo | (static_cast<uint64_t>(sc_hi) << 32);
    const uint64_t m8 = mn_lo | (static_cast<uint64_t>(mn_hi) << 32);
    const __m256i s = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(s8)));
    *sc32 = _mm256_or_si256(s, _mm256_slli_epi32(s, 16));
    const __m256i m = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(m8)));
    *cvec = _mm256_or_si256(m, _mm256_slli_epi32(m, 16));  // group g uses min g / 2
}

// The scales, mins and super-block factors shared by q4_K and q5_K (packed 6-bit scales and mins).
struct prep_k4 {
    __m256i sc32, cvec;
    float d, dm;
    template <class Block>
    explicit prep_k4(const Block& b) {
        decode_scales_k4(b.scales, &sc32, &cvec);
        d = f16_to_f32(b.d);
        dm = f16_to_f32(b.dmin);
    }
    __m256i scale(int c) const { return scale_one32(sc32, c); }
};

struct w_q4_K {
    using block = block_q4_K;
    static constexpr bool corr_in_int = false;
    struct prep : prep_k4 {
        explicit prep(const block& b) : prep_k4(b) {}
        // chunks 2cp (low nibbles of qs[32cp ..]) and 2cp + 1 (high nibbles)
        void pair(const block& b, int cp, __m256i* u0, __m256i* u1) const {
            const __m256i q = loadu256(b.qs + 32 * cp);
            const __m256i m = _mm256_set1_epi8(0x0F);
            *u0 = _mm256_and_si256(q, m);
            *u1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), m);
        }
    };
};

struct w_q5_K {
    using block = block_q5_K;
    static constexpr bool corr_in_int = false;
    struct prep : prep_k4 {
        __m256i qh;
        explicit prep(const block& b) : prep_k4(b), qh(loadu256(b.qh)) {}
        // as q4_K, plus bit c of qh[l] as bit 4 of value 32c + l
        void pair(const block& b, int cp, __m256i* u0, __m256i* u1) const {
            const __m256i q = loadu256(b.qs + 32 * cp);
            const __m256i m = _mm256_set1_epi8(0x0F);
            const __m256i one = _mm256_set1_epi8(1);
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * cp), one);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * cp + 1), one);
            *u0 = _mm256_or_si256(_mm256_and_si256(q, m), _mm256_slli_epi16(h0, 4));
            *u1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m), _mm256_slli_epi16(h1, 4));
        }
    };
};

// Chunks 2cp and 2cp + 1 of the 2-bit field shared by q2_K and q3_K: chunk c = 4h + t has quant
// (qs[32h + l] >> 2t) & 3.
inline void unpack_2bit_pair(const uint8_t* qs, int cp, __m256i* u0, __m256i* u1) {
    const __m256i q = loadu256(qs + 32 * (cp / 2));
    const int t = 2 * (cp % 2);
    const __m256i m = _mm256_set1_epi8(3);
    *u0 = _mm256_and_si256(_mm256_srli_epi16(q, 2 * t), m);
    *u1 = _mm256_and_si256(_mm256_srli_epi16(q, 2 * t + 2), m);
}

struct w_q2_K {
    using block = block_q2_K;
    static constexpr bool corr_in_int = false;
    struct prep {
        __m256i sc16, cvec;
        float d, dm;
        explicit prep(const block& b) {
            const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
            const __m128i m = _mm_set1_epi8(0x0F);
            sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m));
            cvec = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m));
            d = f16_to_f32(b.d);
            dm = f16_to_f32(b.dmin);
        }
        __m256i scale(int c) const { return scale_pair16(sc16, c); }
        void pair(const block& b, int cp, __m256i* u0, __m256i* u1) const { unpack_2bit_pair(b.qs, cp, u0, u1); }
    };
};

struct w_q3_K {
    using block = block_q3_K;
    static constexpr bool corr_in_int = true;
    struct prep {
        __m256i sc16, cvec, hm;
        float d, dm;
        explicit prep(const block& b) {
            // scale j: low nibble of byte j % 8 (bits 0-3 for j < 8, 4-7 after), high 2 bits of byte
            // 8 + j % 4 at shift 2 * (j / 4); stored with +32.
            uint64_t lo8;
            uint32_t hi4;
            std::memcpy(&lo8, b.scales, 8);
            std::memcpy(&hi4, b.scales + 8, 4);
            const __m128i v = _mm_cvtsi64_si128(static_cast<long long>(lo8));
            const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(v, _mm_srli_epi16(v, 4)), _mm_set1_epi8(0x0F));
            const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(static_cast<int>(hi4)), _mm_setr_epi32(0, 2, 4, 6)),
                                             _mm_set1_epi8(3));
            const __m128i sc8 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
            sc16 = _mm256_cvtepi8_epi16(sc8);
            cvec = _mm256_slli_epi16(sc16, 2);  // offset 4 times the scale
            hm = loadu256(b.hmask);
            d = f16_to_f32(b.d);
            dm = d;
        }
        __m256i scale(int c) const { return scale_pair16(sc16, c); }
        // low 2 bits as q2_K, plus 4 where bit c of hmask[l] is set: quant + 4 in [0, 7]
        void pair(const block& b, int cp, __m256i* u0, __m256i* u1) const {
            unpack_2bit_pair(b.qs, cp, u0, u1);
            const __m256i one = _mm256_set1_epi8(1);
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hm, 2 * cp), one);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hm, 2 * cp + 1), one);
            *u0 = _mm256_or_si256(*u0, _mm256_slli_epi16(h0, 2));
            *u1 = _mm256_or_si256(*u1, _mm256_slli_epi16(h1, 2));
        }
    };
};

struct w_q6_K {
    using block = block_q6_K;
    static constexpr bool corr_in_int = true;
    struct prep {
        __m256i sc16, cvec;
        float d, dm;
        explicit prep(const block& b) {
            sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
            cvec = _mm256_slli_epi16(sc16, 5);  // offset 32 times the scale
            d = f16_to_f32(b.d);
            dm = d;
        }
        __m256i scale(int c) const { return scale_pair16(sc16, c); }
        // chunk c = 4h + t: low nibble (t < 2) or high nibble (t >= 2) of ql[64h + 32(t % 2) + l],
        // high 2 bits (qh[32h + l] >> 2t) & 3; quant + 32 in [0, 63]
        void pair(const block& b, int cp, __m256i* u0, __m256i* u1) const {
            const int h = cp / 2, t = 2 * (cp % 2);
            const __m256i l0 = loadu256(b.ql + 64 * h);
            const __m256i l1 = loadu256(b.ql + 64 * h + 32);
            const __m256i qh = loadu256(b.qh + 32 * h);
            const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
            const __m256i lo0 = _mm256_and_si256(_mm256_srli_epi16(l0, 2 * t), m4);  // t = 0: shift 0, t = 2: 4
            const __m256i lo1 = _mm256_and_si256(_mm256_srli_epi16(l1, 2 * t), m4);
            const __m256i hi0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * t), 4), m2);
            const __m256i hi1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * t + 2), 4), m2);
            *u0 = _mm256_or_si256(lo0, hi0);
            *u1 = _mm256_or_si256(lo1, hi1);
        }
    };
};

// Summation orders of the k-quant dots across super-blocks; each reproduces one llama.cpp x86 kernel
// bit for bit (the scalar twins in quants-ref-k.cpp name the ggml source of each):
//   LANES        8 f32 lanes per row, one FMA per lane and super-block, then hsum_ps (ggml_vec_dot_*_q8_K)
//   TWO_CHAINS   q4_K one-row (ggml_gemv_q4_K_8x8_q8_K): per super-block the exact integers isum and
//                corr, s = sum fma(isum, d * d_y) - sum fma(corr, dmin * d_y)
//   PAIR_CHAINS  q4_K rows in groups of 4 (ggml_gemm_q4_K_8x8_q8_K): the same two chains with one FMA
//                per 64-value pair of sub-blocks
//   TILED        tiled k-quant matmul: r = isum * d (- dmin * corr fused), s = sum fma(r, d_y)
enum class k_order { LANES, TWO_CHAINS, PAIR_CHAINS, TILED };

// PAIR_CHAINS side data of super-block i for NR activation rows: the min corrections of each 32
// values (i32 bsums * scaled mins) and the two chains' f32 scale products d * d_y, dmin * d_y.
template <int NR, class Prep>
inline void pair_chains_side(const Prep& p, const uint8_t* y, size_t ys, int64_t i, int32_t (*corr8)[8], float* dd,
                             float* dm) {
    for (int r = 0; r < NR; ++r) {
        const block_q8_K& b = reinterpret_cast<const block_q8_K*>(y + ys * r)[i];
        _mm256_store_si256(reinterpret_cast<__m256i*>(corr8[r]), _mm256_madd_epi16(loadu256(b.bsums), p.cvec));
        dd[r] = p.d * b.d;
        dm[r] = p.dm * b.d;
    }
}

// Sums of the 8 i32 lanes of a and of b in one reduction (exact integers, any order).
inline void hsum2_epi32(__m256i a, __m256i b, int* sa, int* sb) {
    const __m256i h = _mm256_hadd_epi32(a, b);  // [a01 a23 b01 b23 | a45 a67 b45 b67]
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    x = _mm_hadd_epi32(x, x);  // [a, b, a, b]
    *sa = _mm_cvtsi128_si32(x);
    *sb = _mm_extract_epi32(x, 1);
}

// One super-block's f32 steps for one weight row x activation row in order O (see k_order), from the
// exact (8,) i32 sums `isum` of scale * (quant . activation) per lane; the min corrections come from
// b.bsums. Shared by the 256- and 512-bit kernels (which differ only in how they form isum).
template <class K, k_order O>
inline void kq_superblock(const typename K::prep& p, const block_q8_K& b, __m256i isum, __m256& acc, float& acc_s,
                          float& acc_m) {
    const __m256i corr = _mm256_madd_epi16(loadu256(b.bsums), p.cvec);
    if constexpr (O == k_order::TWO_CHAINS) {
        int si, sc;
        hsum2_epi32(isum, corr, &si, &sc);
        acc_s = std::fmaf(static_cast<float>(si), p.d * b.d, acc_s);
        acc_m = std::fmaf(static_cast<float>(sc), p.dm * b.d, acc_m);
    } else if constexpr (O == k_order::TILED) {
        float t;
        if constexpr (K::corr_in_int) {
            t = static_cast<float>(hsum_epi32(_mm256_sub_epi32(isum, corr))) * p.d;
        } else {
            t = std::fmaf(-p.dm, static_cast<float>(hsum_epi32(corr)), static_cast<float>(hsum_epi32(isum)) * p.d);
        }
        acc_s = std::fmaf(t, b.d, acc_s);
    } else if constexpr (K::corr_in_int) {
        const __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, corr));
        acc = _mm256_fmadd_ps(v, _mm256_set1_ps(b.d * p.d), acc);
    } else {
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(b.d * p.d), acc);
        acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(corr), _mm256_set1_ps(b.d * p.dm), acc);
    }
}

// A row's result from its accumulators in order O.
template <k_order O>
inline float kq_result(__m256 acc, float acc_s, float acc_m) {
    if constexpr (O == k_order::LANES) return hsum_ps(acc);
    if constexpr (O == k_order::TILED) return acc_s;
    return acc_s - acc_m;
}

template <class K, k_order O>
struct dotk_kernel {
    template <int NR>
    static void run(int64_t n, const void* vx, const uint8_t* y, size_t ys, float* s) {
        const auto* x = static_cast<const typename K::block*>(vx);
        __m256 acc[NR];                 // (NR, 8) f32 lane accumulators (LANES)
        float acc_s[NR], acc_m[NR];     // (NR,) f32 chains: scaled sums and mins (the other orders)
        for (int r = 0; r < NR; ++r) {
            acc[r] = _mm256_setzero_ps();
            acc_s[r] = acc_m[r] = 0.0f;
        }
        const int64_t nb = n / QK_K;
        for (int64_t i = 0; i < nb; ++i) {
            const typename K::prep p(x[i]);
            __m256i isum[NR];
            alignas(32) int32_t corr8[NR][8];  // (NR, 8) i32: min corrections per 32 values (PAIR_CHAINS)
            float dd[NR], dm[NR];              // (NR,) f32: d * d_y and dmin * d_y (PAIR_CHAINS)
            for (int r = 0; r < NR; ++r) isum[r] = _mm256_setzero_si256();
            if constexpr (O == k_order::PAIR_CHAINS) pair_chains_side<NR>(p, y, ys, i, corr8, dd, dm);
            for (int cp = 0; cp < 4; ++cp) {
                __m256i u0, u1;
                p.pair(x[i], cp, &u0, &u1);
                const __m256i s0 = p.scale(2 * cp), s1 = p.scale(2 * cp + 1);
                for (int r = 0; r < NR; ++r) {
                    const block_q8_K& b = reinterpret_cast<const block_q8_K*>(y + ys * r)[i];
                    const __m256i p0 = _mm256_maddubs_epi16(u0, loadu256(b.qs + 64 * cp));
                    const __m256i p1 = _mm256_maddubs_epi16(u1, loadu256(b.qs + 64 * cp + 32));
                    if constexpr (O == k_order::PAIR_CHAINS) {
                        const __m256i t = isa_ops::madd_acc(isa_ops::madd_acc(_mm256_setzero_si256(), p0, s0), p1, s1);
                        const int msum = corr8[r][2 * cp] + corr8[r][2 * cp + 1];
                        acc_s[r] = std::fmaf(static_cast<float>(hsum_epi32(t)), dd[r], acc_s[r]);
                        acc_m[r] = std::fmaf(static_cast<float>(msum), dm[r], acc_m[r]);
                    } else {
                        isum[r] = isa_ops::madd_acc(isum[r], p0, s0);
                        isum[r] = isa_ops::madd_acc(isum[r], p1, s1);
                    }
                }
            }
            if constexpr (O == k_order::PAIR_CHAINS) continue;
            for (int r = 0; r < NR; ++r) {
                kq_superblock<K, O>(p, reinterpret_cast<const block_q8_K*>(y + ys * r)[i], isum[r], acc[r], acc_s[r],
                                    acc_m[r]);
            }
        }
        for (int r = 0; r < NR; ++r) s[r] = kq_result<O>(acc[r], acc_s[r], acc_m[r]);
    }
};

// ---------------------------------------------------------------------------------------------
// Float weights: f32, f16, bf16 (activations of the same type), products and sums in f32
// ---------------------------------------------------------------------------------------------

struct load_f32 {
    using elem = float;
    static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
    static float one(float v) { return v; }
};
struct load_f16 {
    using elem = fp16_bits;
    static __m256 load8(const fp16_bits* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
    static float one(fp16_bits v) { return fp16_to_fp32(v); }
};
struct load_bf16 {
    using elem = bf16_bits;
    static __m256 load8(const bf16_bits* p) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    static float one(bf16_bits v) { return bf16_to_fp32(v); }
};

template <class L>
struct dot_float_kernel {
    template <int NR>
    static void run(int64_t n, const void* vx, const uint8_t* y, size_t ys, float* s) {
        using E = typename L::elem;
        const E* x = static_cast<const E*>(vx);
        __m256 a0[NR], a1[NR];  // two accumulators per row hide the FMA latency
        for (int r = 0; r < NR; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            const __m256 w0 = L::load8(x + i), w1 = L::load8(x + i + 8);
            for (int r = 0; r < NR; ++r) {
                const E* yr = reinterpret_cast<const E*>(y + ys * r);
                a0[r] = _mm256_fmadd_ps(w0, L::load8(yr + i), a0[r]);
                a1[r] = _mm256_fmadd_ps(w1, L::load8(yr + i + 8), a1[r]);
            }
        }
        for (int r = 0; r < NR; ++r) {
            const E* yr = reinterpret_cast<const E*>(y + ys * r);
            float tail = 0.0f;
            for (int64_t k = i; k < n; ++k) tail += L::one(x[k]) * L::one(yr[k]);
            s[r] = hsum_ps(_mm256_add_ps(a0[r], a1[r])) + tail;
        }
    }
};

// ---------------------------------------------------------------------------------------------
// Activation quantizers (bit-exact with quants-ref*.cpp)
// ---------------------------------------------------------------------------------------------

inline float hmax_ps(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// Packs 4 x 8 i32 (values in i8 range) into 32 i8 in order.
inline __m256i pack_i32x32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b);
    const __m256i cd = _mm256_packs_epi32(c, d);
    const __m256i abcd = _mm256_packs_epi16(ab, cd);  // 128-bit lanes interleaved by the packs
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One block of 32 as q8_0 / q8_1 quants with ggml's x86 semantics (quantize_row_q8_0 / _q8_1 in
// ggml-cpu/arch/x86/quants.c, as in quants-ref.cpp): d = amax / 127, q = round-half-even(x * (127 /
// amax)); returns the quants and stores d; *sum (if given) gets the sum of the quants.
inline __m256i quantize_q8_32(const float* x, float* d_out, int* sum) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, abs_ps(v[k]));
    }
    const float m = hmax_ps(amax);
    const float id = m != 0.0f ? 127.0f / m : 0.0f;
    *d_out = m / 127.0f;
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
        const __m256 t = _mm256_round_ps(_mm256_mul_ps(v[k], _mm256_set1_ps(id)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q[k] = _mm256_cvtps_epi32(t);
    }
    if (sum) *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    return pack_i32x32_to_i8(q[0], q[1], q[2], q[3]);
}

void quantize_row_q8_0_simd(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q8_0*>(dst);
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        float d;
        const __m256i q = quantize_q8_32(src + i * QK8_0, &d, nullptr);
        y[i].d = fp32_to_fp16(d);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), q);
    }
}

void quantize_row_q8_1_simd(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q8_1*>(dst);
    for (int64_t i = 0; i < n / QK8_1; ++i) {
        float d;
        int sum;
        const __m256i q = quantize_q8_32(src + i * QK8_1, &d, &sum);
        y[i].d = fp32_to_fp16(d);
        y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), q);
    }
}

// q8_K: max = the first value of largest magnitude, iscale = -127 / max, q = min(127, rne(iscale * x)),
// d = 1 / iscale, bsums = sums of 16.
void quantize_row_q8_K_simd(const float* src, void* dst, int64_t n) {
    auto* y = static_cast<block_q8_K*>(dst);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float* x = src + i * QK_K;
        __m256 amax_v = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8) amax_v = _mm256_max_ps(amax_v, abs_ps(_mm256_loadu_ps(x + k)));
        const float amax = hmax_ps(amax_v);
        if (amax == 0.0f) {
            y[i].d = 0.0f;
            std::memset(y[i].qs, 0, sizeof(y[i].qs));
            std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
            continue;
        }
        float max = 0.0f;
        const __m256 target = _mm256_set1_ps(amax);
        for (int k = 0; k < QK_K; k += 8) {
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + k)), target, _CMP_EQ_OQ));
            if (m != 0) {
                max = x[k + __builtin_ctz(static_cast<unsigned>(m))];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        const __m256i cap = _mm256_set1_epi32(127);
        for (int k = 0; k < QK_K; k += 32) {
            __m256i q[4];
            for (int t = 0; t < 4; ++t) {
                q[t] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + k + 8 * t))), cap);
            }
            y[i].bsums[k / 16] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(q[0], q[1])));
            y[i].bsums[k / 16 + 1] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(q[2], q[3])));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + k), pack_i32x32_to_i8(q[0], q[1], q[2], q[3]));
        }
        y[i].d = 1.0f / iscale;
    }
}

// Enters the kernels above into the table; MAXR_32 / MAXR_K are the activation rows kept in registers.
template <int MAXR_32, int MAXR_K>
void register_x86_common(type_traits* table) {
    auto set_dot = [&](ggml_type t, vec_dot_fn f) { table[static_cast<size_t>(t)].vec_dot = f; };
    using T = ggml_type;
    set_dot(T::F32, vec_dot_rows<dot_float_kernel<load_f32>, MAXR_32>);
    set_dot(T::F16, vec_dot_rows<dot_float_kernel<load_f16>, MAXR_32>);
    set_dot(T::BF16, vec_dot_rows<dot_float_kernel<load_bf16>, MAXR_32>);
    set_dot(T::Q4_0, vec_dot_rows<dot32_kernel<w_q4_0>, MAXR_32>);
    set_dot(T::Q4_1, vec_dot_rows<dot32_kernel<w_q4_1>, MAXR_32>);
    set_dot(T::Q5_0, vec_dot_rows<dot32_kernel<w_q5_0>, MAXR_32>);
    set_dot(T::Q5_1, vec_dot_rows<dot32_kernel<w_q5_1>, MAXR_32>);
    set_dot(T::Q8_0, vec_dot_rows<dot32_kernel<w_q8_0>, MAXR_32>);
    using O = k_order;
    set_dot(T::Q2_K, vec_dot_rows<dotk_kernel<w_q2_K, O::LANES>, MAXR_K>);
    set_dot(T::Q3_K, vec_dot_rows<dotk_kernel<w_q3_K, O::LANES>, MAXR_K>);
    set_dot(T::Q4_K, vec_dot_rows<dotk_kernel<w_q4_K, O::TWO_CHAINS>, MAXR_K>);
    set_dot(T::Q5_K, vec_dot_rows<dotk_kernel<w_q5_K, O::LANES>, MAXR_K>);
    set_dot(T::Q6_K, vec_dot_rows<dotk_kernel<w_q6_K, O::LANES>, MAXR_K>);
    table[static_cast<size_t>(T::Q4_K)].vec_dot_x4 = vec_dot_rows<dotk_kernel<w_q4_K, O::PAIR_CHAINS>, MAXR_K>;
    table[static_cast<size_t>(T::Q2_K)].vec_dot_tiled = vec_dot_rows<dotk_kernel<w_q2_K, O::TILED>, MAXR_K>;
    table[static_cast<size_t>(T::Q3_K)].vec_dot_tiled = vec_dot_rows<dotk_kernel<w_q3_K, O::TILED>, MAXR_K>;
    table[static_cast<size_t>(T::Q4_K)].vec_dot_tiled = vec_dot_rows<dotk_kernel<w_q4_K, O::TILED>, MAXR_K>;
    table[static_cast<size_t>(T::Q5_K)].vec_dot_tiled = vec_dot_rows<dotk_kernel<w_q5_K, O::TILED>, MAXR_K>;
    table[static_cast<size_t>(T::Q6_K)].vec_dot_tiled = vec_dot_rows<dotk_kernel<w_q6_K, O::TILED>, MAXR_K>;
    table[static_cast<size_t>(T::Q8_0)].from_float = quantize_row_q8_0_simd;
    table[static_cast<size_t>(T::Q8_1)].from_float = quantize_row_q8_1_simd;
    table[static_cast<size_t>(T::Q8_K)].from_float = quantize_row_q8_K_simd;
}

} // namespace
} // namespace pipeinfer
