// AVX-512 dots of FOUR weight rows at once for the 32-value block types (q4_0, q4_1, q5_0, q5_1, q8_0)
// with up to MAXR activation rows: the type_traits::vec_dot_4w entries. Included ONLY by
// quant/arch/x86-avx512.cpp, after x86-kernels.h (whose helpers it uses); internal linkage like it.
//
// Why: one weight row at a time, every output is one serial chain of FMAs (4-cycle latency per 32-value
// block), and the 256-bit unpacking costs more instructions than memory delivers bytes; a q4 matvec then
// reaches half the streaming bandwidth. Four rows in flight give four independent chains, and a 512-bit
// register holds two rows side by side (row a in lanes 0-7, row b in lanes 8-15), halving the
// instruction count of unpack, integer dot, conversion and FMA.
//
// Exactness (the contract of vec_dot, tests/kernels/test_simd_kernels.py): each output's f32 operations
// are exactly those of dot32_kernel in x86-kernels.h (ggml's x86 order): per block, the 8 i32 lanes of
// 4-product sums (exact integers) are converted and added with acc = fma(d_x * d_y, lanes, acc); the
// result is hsum_ps(acc) (+ the f32 FMA chain of m_x * s_y). Only the integer side differs: weights are
// unpacked as unsigned bytes u = q + off and the lanes are sum(u * y) - off * sum(y), the same integers.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace pipeinfer {
namespace {  // one copy per including ISA file (see x86-kernels.h)

// Unsigned unpacking of two weight rows a, b into one zmm: bytes 0-31 = row a's 32 values in order,
// bytes 32-63 = row b's. OFF is what was added to make them unsigned (lanes get - OFF * sum(y)).
inline __m512i unpack_nibbles_2rows(const uint8_t* qa, const uint8_t* qb) {
    const __m256i q = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(qb), reinterpret_cast<const __m128i*>(qa));
    // [qa, qa, qb, qb] in 128-bit lanes; the odd lanes shifted right by 4 give the high nibbles
    const __m512i z = _mm512_shuffle_i64x2(_mm512_zextsi256_si512(q), _mm512_zextsi256_si512(q), _MM_SHUFFLE(1, 1, 0, 0));
    const __m512i s = _mm512_mask_srli_epi16(z, 0xFF00FF00u, z, 4);
    return _mm512_and_si512(s, _mm512_set1_epi8(0x0F));
}

inline uint64_t qh_2rows(const uint8_t* qa, const uint8_t* qb) {
    uint32_t a, b;
    std::memcpy(&a, qa, 4);
    std::memcpy(&b, qb, 4);
    return static_cast<uint64_t>(a) | (static_cast<uint64_t>(b) << 32);
}

// 5-bit weights of two rows: the low nibbles plus 16 where the row's qh bit is set.
template <class Block>
inline __m512i unpack_5bit_2rows(const Block& a, const Block& b) {
    const __m512i lo = unpack_nibbles_2rows(a.qs, b.qs);
    return _mm512_mask_add_epi8(lo, _cvtu64_mask64(qh_2rows(a.qh, b.qh)), lo, _mm512_set1_epi8(0x10));
}

struct w4_q4_0 {
    using block = block_q4_0;
    using act = block_q8_0;
    static constexpr int OFF = 8;
    static constexpr bool has_min = false;
    static constexpr bool exact_lanes_x_dy = true;  // |lane| <= 4 * 8 * 127 < 2^13
    static __m512i unpack(const block& a, const block& b) { return unpack_nibbles_2rows(a.qs, b.qs); }
};
struct w4_q4_1 {
    using block = block_q4_1;
    using act = block_q8_1;
    static constexpr int OFF = 0;
    static constexpr bool has_min = true;
    static constexpr bool exact_lanes_x_dy = true;  // |lane| <= 4 * 15 * 127 < 2^13
    static __m512i unpack(const block& a, const block& b) { return unpack_nibbles_2rows(a.qs, b.qs); }
};
struct w4_q5_0 {
    using block = block_q5_0;
    using act = block_q8_0;
    static constexpr int OFF = 16;
    static constexpr bool has_min = false;
    static constexpr bool exact_lanes_x_dy = true;  // |lane| <= 4 * 16 * 127 < 2^13
    static __m512i unpack(const block& a, const block& b) { return unpack_5bit_2rows(a, b); }
};
struct w4_q5_1 {
    using block = block_q5_1;
    using act = block_q8_1;
    static constexpr int OFF = 0;
    static constexpr bool has_min = true;
    static constexpr bool exact_lanes_x_dy = false;  // lanes up to 4 * 31 * 127 need 14 bits
    static __m512i unpack(const block& a, const block& b) { return unpack_5bit_2rows(a, b); }
};
struct w4_q8_0 {
    using block = block_q8_0;
    using act = block_q8_0;
    static constexpr int OFF = 128;  // q + 128 as u8 is q xor 0x80
    static constexpr bool has_min = false;
    static constexpr bool exact_lanes_x_dy = false;  // lanes up to 4 * 128 * 127 need 16 bits
    static __m512i unpack(const block& a, const block& b) {
        const __m512i z = _mm512_inserti64x4(_mm512_zextsi256_si512(loadu256(a.qs)), loadu256(b.qs), 1);
        return _mm512_xor_si512(z, _mm512_set1_epi8(static_cast<char>(0x80)));
    }
};

// f16 scale (and min) of block i of the 4 rows as f32: lanes 2w (d of row w) and 2w + 1 (m of row w,
// or junk for the types without a min).
template <class W>
inline __m256 scales_4rows(const typename W::block* const* x, int64_t i) {
    uint32_t dm[4];
    for (int w = 0; w < 4; ++w) std::memcpy(&dm[w], &x[w][i], 4);  // d (+ m, or the next 2 bytes)
    const __m128i h = _mm_setr_epi32(static_cast<int>(dm[0]), static_cast<int>(dm[1]), static_cast<int>(dm[2]),
                                     static_cast<int>(dm[3]));
    return _mm256_cvtph_ps(h);
}

// Software prefetch distance of the 4-row kernels, rounded up to whole groups of 4 rows: about twice the
// bytes that arrive from memory during one DRAM latency at full bandwidth (~30 GB/s x ~130 ns). Measured
// on Zen 5: 4 KiB reached only 24 of 30 GB/s on 896-value q5_0 rows, 8 KiB the full 30.
constexpr size_t PREFETCH_BYTES = 8192;

// What the 4-row kernels need of one activation block besides its quants, computed once per call (for
// all weight rows of the call) instead of once per group of 4 rows.
struct act_side {
    alignas(32) int32_t neg_corr[8];  // (8,) i32: -OFF * (sum of the 4 quants of lane k) (+ MAGIC_BITS)
    float d;                          // f32 of the block's f16 scale (exact)
    float s;                          // f32 of the block's f16 d * sum (q8_1 only)
    float neg_magic_d;                // -MAGIC * d (exact: MAGIC has 2 significant bits, d 11)
};

// The integer-to-float trick of the exact_lanes_x_dy types: an i32 lane accumulated onto the bits of
// MAGIC = 1.5 * 2^23 reads, as an f32, MAGIC + lane exactly (|lane| < 2^22). Then
// fma(MAGIC + lane, d_y, -MAGIC * d_y) = lane * d_y, rounded once; that product is exact (a lane of
// at most 13 bits times an f16 scale of 11 fits in 24), and fma(d_x, lane * d_y, acc) equals ggml's
// fma(d_x * d_y, (float)lane, acc) bit for bit (d_x * d_y is exact too: both round only the same real
// acc + d_x * d_y * lane). One fma replaces the conversion and the scale product.
constexpr float MAGIC = 12582912.0f;
constexpr int32_t MAGIC_BITS = 0x4B400000;

template <class W>
void fill_act_side(const uint8_t* y, size_t ys, int nr, int64_t nb, act_side* side) {
    using A = typename W::act;
    const __m256i off = _mm256_set1_epi8(static_cast<char>(W::OFF));
    for (int r = 0; r < nr; ++r) {
        const A* b = reinterpret_cast<const A*>(y + ys * r);
        for (int64_t i = 0; i < nb; ++i) {
            act_side& a = side[i * nr + r];  // (nb, nr) block-major: one block's rows side by side
            const __m256i corr = _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, loadu256(b[i].qs));
            const __m256i base = _mm256_set1_epi32(W::exact_lanes_x_dy ? MAGIC_BITS : 0);
            _mm256_store_si256(reinterpret_cast<__m256i*>(a.neg_corr), _mm256_sub_epi32(base, corr));
            a.d = f16_to_f32(b[i].d);
            a.neg_magic_d = -MAGIC * a.d;
            if constexpr (W::has_min) a.s = f16_to_f32(b[i].s);
        }
    }
}

template <class W>
struct dot32_rows4_kernel {
    using A = typename W::act;
    using B = typename W::block;

    // Rows w < 4 of x (x_stride bytes apart) against NR activation rows whose side data is side
    // ((nb, NR) act_side); s[r * ss + w].
    template <int NR>
    static void run(int64_t n, const uint8_t* xb, size_t x_stride, const uint8_t* y, size_t ys, const act_side* side,
                    float* s, size_t ss) {
        const B* x[4];
        for (int w = 0; w < 4; ++w) x[w] = reinterpret_cast<const B*>(xb + x_stride * w);
        __m512 acc[2][NR];   // (pair, act row) x 16 f32: lanes 0-7 the first row of the pair, 8-15 the second
        __m256 summs[NR];    // (act row) x 8 f32: lane 2w + 1 = m * s chain of weight row w (has_min)
        for (int r = 0; r < NR; ++r) {
            acc[0][r] = acc[1][r] = _mm512_setzero_ps();
            summs[r] = _mm256_setzero_ps();
        }
        const __m512i pat0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
        const __m512i pat1 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
        // whole groups of 4 rows ahead, at least PREFETCH_BYTES (see the prefetch below)
        const size_t group = 4 * x_stride;
        const size_t ahead = (PREFETCH_BYTES + group - 1) / group * group;
        for (int64_t i = 0; i < n / 32; ++i) {
            // Four short streams (one per row) defeat the hardware prefetcher, which would follow a
            // single row-after-row stream: fetch later groups' rows while computing this one.
            for (int w = 0; w < 4; ++w) {
                _mm_prefetch(reinterpret_cast<const char*>(&x[w][i]) + ahead, _MM_HINT_T0);
            }
            const __m512i u0 = W::unpack(x[0][i], x[1][i]);
            const __m512i u1 = W::unpack(x[2][i], x[3][i]);
            const __m256 dm = scales_4rows<W>(x, i);
            const __m512 dz = _mm512_zextps256_ps512(dm);
            const __m512 d0 = _mm512_permutexvar_ps(pat0, dz);  // d of rows 0 | 1
            const __m512 d1 = _mm512_permutexvar_ps(pat1, dz);  // d of rows 2 | 3
            const act_side* as = side + i * NR;
            for (int r = 0; r < NR; ++r) {
                const A& b = reinterpret_cast<const A*>(y + ys * r)[i];
                const __m512i yz = _mm512_broadcast_i64x4(loadu256(b.qs));
                __m512i base = _mm512_setzero_si512();
                if constexpr (W::OFF != 0 || W::exact_lanes_x_dy) {
                    base = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(as[r].neg_corr)));
                }
                const __m512 dy = _mm512_set1_ps(as[r].d);
                if constexpr (W::exact_lanes_x_dy) {  // see MAGIC
                    const __m512 nm = _mm512_set1_ps(as[r].neg_magic_d);
                    const __m512 f0 = _mm512_castsi512_ps(_mm512_dpbusd_epi32(base, u0, yz));
                    const __m512 f1 = _mm512_castsi512_ps(_mm512_dpbusd_epi32(base, u1, yz));
                    acc[0][r] = _mm512_fmadd_ps(d0, _mm512_fmadd_ps(f0, dy, nm), acc[0][r]);
                    acc[1][r] = _mm512_fmadd_ps(d1, _mm512_fmadd_ps(f1, dy, nm), acc[1][r]);
                } else {
                    const __m512 l0 = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(base, u0, yz));
                    const __m512 l1 = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(base, u1, yz));
                    acc[0][r] = _mm512_fmadd_ps(_mm512_mul_ps(d0, dy), l0, acc[0][r]);
                    acc[1][r] = _mm512_fmadd_ps(_mm512_mul_ps(d1, dy), l1, acc[1][r]);
                }
                if constexpr (W::has_min) summs[r] = _mm256_fmadd_ps(dm, _mm256_set1_ps(as[r].s), summs[r]);
            }
        }
        for (int r = 0; r < NR; ++r) {
            alignas(32) float m[8];
            _mm256_store_ps(m, summs[r]);
            float* sr = s + ss * r;
            for (int p = 0; p < 2; ++p) {
                const float a = hsum_ps(_mm512_castps512_ps256(acc[p][r]));
                const float b = hsum_ps(_mm512_extractf32x8_ps(acc[p][r], 1));
                sr[2 * p] = W::has_min ? a + m[4 * p + 1] : a;
                sr[2 * p + 1] = W::has_min ? b + m[4 * p + 3] : b;
            }
        }
    }
};

template <class Kernel, int MAXR, int NR = MAXR>
inline void run_tail_4w(int left, int64_t n, const uint8_t* x, size_t xs, const uint8_t* y, size_t ys,
                        const act_side* side, float* s, size_t ss) {
    if constexpr (NR >= 1) {
        if (left == NR) {
            Kernel::template run<NR>(n, x, xs, y, ys, side, s, ss);
            return;
        }
        run_tail_4w<Kernel, MAXR, NR - 1>(left, n, x, xs, y, ys, side, s, ss);
    }
}

// vec_dot_4w_fn: s[j * s_stride + w] = dot(weight row w, activation row j), w < n_w (a multiple of 4),
// j < n_act. Activation rows go in passes of up to MAXR; each pass prepares its side data once, then
// runs every group of 4 weight rows.
template <class W, int MAXR>
void vec_dot_4w(int64_t n, const void* vx, size_t x_stride, int n_w, const void* vy, size_t ys, int n_act, float* s,
                size_t s_stride) {
    using K = dot32_rows4_kernel<W>;
    const int64_t nb = n / 32;
    thread_local std::vector<act_side> side;  // (nb, MAXR) side data of the current pass
    if (side.size() < static_cast<size_t>(nb * MAXR)) side.resize(static_cast<size_t>(nb * MAXR));
    const uint8_t* xb = static_cast<const uint8_t*>(vx);
    const uint8_t* y = static_cast<const uint8_t*>(vy);
    for (int j = 0; j < n_act; j += MAXR) {
        const int nr = n_act - j < MAXR ? n_act - j : MAXR;
        fill_act_side<W>(y + ys * j, ys, nr, nb, side.data());
        for (int w = 0; w + 4 <= n_w; w += 4) {
            run_tail_4w<K, MAXR>(nr, n, xb + x_stride * w, x_stride, y + ys * j, ys, side.data(), s + s_stride * j + w,
                                 s_stride);
        }
    }
}

template <int MAXR>
void register_rows4_avx512(type_traits* table) {
    using T = ggml_type;
    table[static_cast<size_t>(T::Q4_0)].vec_dot_4w = vec_dot_4w<w4_q4_0, MAXR>;
    table[static_cast<size_t>(T::Q4_1)].vec_dot_4w = vec_dot_4w<w4_q4_1, MAXR>;
    table[static_cast<size_t>(T::Q5_0)].vec_dot_4w = vec_dot_4w<w4_q5_0, MAXR>;
    table[static_cast<size_t>(T::Q5_1)].vec_dot_4w = vec_dot_4w<w4_q5_1, MAXR>;
    table[static_cast<size_t>(T::Q8_0)].vec_dot_4w = vec_dot_4w<w4_q8_0, MAXR>;
}

} // namespace
} // namespace pipeinfer
