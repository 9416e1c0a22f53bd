// AVX-512 versions of the k-quant dots (q2_K .. q6_K with q8_K activations) in the LANES, TWO_CHAINS,
// PAIR_CHAINS and TILED orders of x86-kernels.h: the integer part runs on 512-bit registers, two 32-value chunks
// per instruction, so each activation row costs one load, one maddubs and one dpwssd per 64 values.
// Included ONLY by quant/arch/x86-avx512.cpp, after x86-kernels.h (whose unpackers it reuses);
// internal linkage like it.
//
// Exactness: the f32 operations are those of dotk_kernel (x86-kernels.h), unchanged. Only integers are
// regrouped: a zmm holds chunk 2cp in its low half and chunk 2cp + 1 in its high half, so i32 lane k of
// each half collects the same products as lane k of the 256-bit kernel, and adding the halves (exact)
// gives exactly its (8,) i32 isum; every order then continues from that isum as before (PAIR_CHAINS
// from the exact sum of each pair's 16 lanes).
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>


namespace pipeinfer {
namespace {  // one copy per including ISA file (see x86-kernels.h)

inline __m512i join256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1); }

// Scale vector of chunks 2cp (low half) and 2cp + 1 (high half): join256(p.scale(2cp), p.scale(2cp + 1))
// in one permutation where the scales sit in one register (same lanes as the 256-bit scale(c)).
template <class P>
inline __m512i scale_z(const P& p, int cp) { return join256(p.scale(2 * cp), p.scale(2 * cp + 1)); }
// q4_K / q5_K: 8 scales as i32 (sc | sc << 16); lanes 0-7 take scale 2cp, lanes 8-15 scale 2cp + 1.
inline __m512i scale_z_sc32(__m256i sc32, int cp) {
    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                         _mm512_set1_epi32(2 * cp));
    return _mm512_permutexvar_epi32(idx, _mm512_zextsi256_si512(sc32));
}
template <>
inline __m512i scale_z(const w_q4_K::prep& p, int cp) { return scale_z_sc32(p.sc32, cp); }
template <>
inline __m512i scale_z(const w_q5_K::prep& p, int cp) { return scale_z_sc32(p.sc32, cp); }
// q2_K / q3_K / q6_K: 16 i16 scales of 16-value sub-blocks; i16 lane l takes scale 4cp + l / 8.
inline __m512i scale_z_sc16(__m256i sc16, int cp) {
    const __m512i idx = _mm512_add_epi16(
        _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
        _mm512_set1_epi16(static_cast<short>(4 * cp)));
    return _mm512_permutexvar_epi16(idx, _mm512_zextsi256_si512(sc16));
}
template <>
inline __m512i scale_z(const w_q2_K::prep& p, int cp) { return scale_z_sc16(p.sc16, cp); }
template <>
inline __m512i scale_z(const w_q3_K::prep& p, int cp) { return scale_z_sc16(p.sc16, cp); }
template <>
inline __m512i scale_z(const w_q6_K::prep& p, int cp) { return scale_z_sc16(p.sc16, cp); }

// Lane r = the sum of the 8 i32 lanes of v[r], r < 8 (exact integers, any order): one transposing
// reduction for 8 rows instead of 8 horizontal sums.
inline __m256i hsum8x8_epi32(const __m256i* v) {
    const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]);  // [v0 01 23, v1 01 23 | v0 45 67, v1 45 67]
    const __m256i h23 = _mm256_hadd_epi32(v[2], v[3]);
    const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]);
    const __m256i h67 = _mm256_hadd_epi32(v[6], v[7]);
    const __m256i a = _mm256_hadd_epi32(h01, h23);  // [v0..v3 lanes 0-3 | v0..v3 lanes 4-7]
    const __m256i b = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// Software prefetch distance of the multi-row k-quant dots (bytes of weights ahead).
constexpr size_t KQ_PREFETCH_BYTES = 4096;

template <class K, k_order O>
struct dotk_z_kernel {
    template <int NR>
    static void run(int64_t n, const void* vx, const uint8_t* y, size_t ys, float* s) {
        const auto* x = static_cast<const typename K::block*>(vx);
        __m256 acc[NR];              // (NR, 8) f32 lane accumulators (LANES)
        float acc_s[NR], acc_m[NR];  // (NR,) f32 chains (TWO_CHAINS: scaled sums and mins; TILED: acc_s)
        __m256 acc_sv = _mm256_setzero_ps(), acc_mv = _mm256_setzero_ps();  // (8,) TWO_CHAINS, NR >= 2
        static_assert(NR <= 8, "the TWO_CHAINS row lanes hold 8 rows");
        for (int r = 0; r < NR; ++r) {
            acc[r] = _mm256_setzero_ps();
            acc_s[r] = acc_m[r] = 0.0f;
        }
        const int64_t nb = n / QK_K;
        for (int64_t i = 0; i < nb; ++i) {
            // The computation per super-block outlasts the hardware prefetcher's lead (with several
            // activation rows the activations also crowd L1): fetch the weights KQ_PREFETCH_BYTES ahead.
            // With one row too: a q4_K matvec ran about 5% faster with it (A/B, one core).
            {
                const char* pf = reinterpret_cast<const char*>(&x[i]) + KQ_PREFETCH_BYTES;
                for (size_t off = 0; off < sizeof(typename K::block); off += 64) _mm_prefetch(pf + off, _MM_HINT_T0);
            }
            const typename K::prep p(x[i]);
            __m512i isz[NR];  // (NR, 16) i32: halves = chunks 2cp and 2cp + 1
            alignas(32) int32_t corr8[NR][8];  // (NR, 8) i32: min corrections per 32 values (PAIR_CHAINS)
            float dd[NR], dm[NR];              // (NR,) f32: d * d_y and dmin * d_y (PAIR_CHAINS)
            for (int r = 0; r < NR; ++r) isz[r] = _mm512_setzero_si512();
            if constexpr (O == k_order::PAIR_CHAINS) pair_chains_side<NR>(p, y, ys, i, corr8, dd, dm);
            for (int cp = 0; cp < 4; ++cp) {
                __m256i u0, u1;
                p.pair(x[i], cp, &u0, &u1);
                const __m512i uz = join256(u0, u1);
                const __m512i sz = scale_z(p, cp);
                for (int r = 0; r < NR; ++r) {
                    const block_q8_K& b = reinterpret_cast<const block_q8_K*>(y + ys * r)[i];
                    const __m512i yq = _mm512_loadu_si512(b.qs + 64 * cp);
                    if constexpr (O == k_order::PAIR_CHAINS) {
                        // the pair's exact integer sum, then one FMA per chain (as dotk_kernel)
                        const __m512i t = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_maddubs_epi16(uz, yq), sz);
                        const int msum = corr8[r][2 * cp] + corr8[r][2 * cp + 1];
                        acc_s[r] = std::fmaf(static_cast<float>(_mm512_reduce_add_epi32(t)), dd[r], acc_s[r]);
                        acc_m[r] = std::fmaf(static_cast<float>(msum), dm[r], acc_m[r]);
                    } else {
                        isz[r] = _mm512_dpwssd_epi32(isz[r], _mm512_maddubs_epi16(uz, yq), sz);
                    }
                }
            }
            if constexpr (O == k_order::PAIR_CHAINS) continue;
            if constexpr (O == k_order::TWO_CHAINS && NR >= 2) {
                // The rows' chains side by side (lane r = row r): the same f32 operations per row as
                // below, with the 2 x NR horizontal integer sums done as two transposing reductions.
                __m256i isum8[8], corr8v[8];
                alignas(32) float bd[8] = {};
                for (int r = 0; r < 8; ++r) isum8[r] = corr8v[r] = _mm256_setzero_si256();
                for (int r = 0; r < NR; ++r) {
                    const block_q8_K& b = reinterpret_cast<const block_q8_K*>(y + ys * r)[i];
                    isum8[r] = _mm256_add_epi32(_mm512_castsi512_si256(isz[r]), _mm512_extracti64x4_epi64(isz[r], 1));
                    corr8v[r] = _mm256_madd_epi16(loadu256(b.bsums), p.cvec);
                    bd[r] = b.d;
                }
                const __m256 bdv = _mm256_load_ps(bd);
                acc_sv = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hsum8x8_epi32(isum8)), _mm256_mul_ps(_mm256_set1_ps(p.d), bdv), acc_sv);
                acc_mv = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hsum8x8_epi32(corr8v)), _mm256_mul_ps(_mm256_set1_ps(p.dm), bdv), acc_mv);
                continue;
            }
            for (int r = 0; r < NR; ++r) {
                const __m256i isum = _mm256_add_epi32(_mm512_castsi512_si256(isz[r]), _mm512_extracti64x4_epi64(isz[r], 1));
                kq_superblock<K, O>(p, reinterpret_cast<const block_q8_K*>(y + ys * r)[i], isum, acc[r], acc_s[r],
                                    acc_m[r]);
            }
        }
        if constexpr (O == k_order::TWO_CHAINS && NR >= 2) {
            alignas(32) float d[8];
            _mm256_store_ps(d, _mm256_sub_ps(acc_sv, acc_mv));
            for (int r = 0; r < NR; ++r) s[r] = d[r];
            return;
        }
        for (int r = 0; r < NR; ++r) s[r] = kq_result<O>(acc[r], acc_s[r], acc_m[r]);
    }
};

template <int MAXR>
void register_kquants_avx512(type_traits* table) {
    using T = ggml_type;
    using O = k_order;
    auto row = [&](T t) -> type_traits& { return table[static_cast<size_t>(t)]; };
    row(T::Q2_K).vec_dot = vec_dot_rows<dotk_z_kernel<w_q2_K, O::LANES>, MAXR>;
    row(T::Q3_K).vec_dot = vec_dot_rows<dotk_z_kernel<w_q3_K, O::LANES>, MAXR>;
    row(T::Q4_K).vec_dot = vec_dot_rows<dotk_z_kernel<w_q4_K, O::TWO_CHAINS>, MAXR>;
    row(T::Q5_K).vec_dot = vec_dot_rows<dotk_z_kernel<w_q5_K, O::LANES>, MAXR>;
    row(T::Q6_K).vec_dot = vec_dot_rows<dotk_z_kernel<w_q6_K, O::LANES>, MAXR>;
    row(T::Q4_K).vec_dot_x4 = vec_dot_rows<dotk_z_kernel<w_q4_K, O::PAIR_CHAINS>, MAXR>;
    row(T::Q2_K).vec_dot_tiled = vec_dot_rows<dotk_z_kernel<w_q2_K, O::TILED>, MAXR>;
    row(T::Q3_K).vec_dot_tiled = vec_dot_rows<dotk_z_kernel<w_q3_K, O::TILED>, MAXR>;
    row(T::Q4_K).vec_dot_tiled = vec_dot_rows<dotk_z_kernel<w_q4_K, O::TILED>, MAXR>;
    row(T::Q5_K).vec_dot_tiled = vec_dot_rows<dotk_z_kernel<w_q5_K, O::TILED>, MAXR>;
    row(T::Q6_K).vec_dot_tiled = vec_dot_rows<dotk_z_kernel<w_q6_K, O::TILED>, MAXR>;
}

} // namespace
} // namespace pipeinfer

