// AVX-512 (F, BW, VL, DQ, VNNI) overrides for the traits table (see quant/arch/arch.h): the kernels of
// x86-kernels.h with VNNI multiply-adds (vpdpbusd: u8 * s8 summed by 4 into i32 in one instruction;
// vpdpwssd: i16 * i16 pairs accumulated into i32) on 256-bit vectors (AVX512VL), more activation rows
// per pass thanks to the 32 vector registers, and f16 block scales gathered 8 at a time with word
// permutes. Chosen at run time when cpu_has_avx512().
#include <immintrin.h>

#include <cstdint>

#include "quant/arch/arch.h"

namespace pipeinfer {
namespace {

// Integer multiply-add primitives of this ISA, used by x86-kernels.h.
struct isa_ops {
    // (8,) i32: sums of 4 adjacent u8 * s8 products (exact, no i16 intermediate).
    static __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
    // acc + (8,) i32 sums of adjacent i16 * i16 products.
    static __m256i madd_acc(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }
    // (8,) f32 from 8 f16 values STRIDE bytes apart (the scales of 8 consecutive blocks): the words
    // they span are loaded as up to 4 zmm (the last one masked, so nothing past the 8th value is
    // touched) and picked out with word permutes.
    template <int STRIDE>
    static __m256 load_f16x8(const uint8_t* p) {
        static_assert(STRIDE % 2 == 0 && 7 * (STRIDE / 2) + 1 <= 128, "stride must be even and at most 36 bytes");
        constexpr int SW = STRIDE / 2;      // stride in words
        constexpr int NEED = 7 * SW + 1;    // words spanned
        const __m512i idx = _mm512_load_si512(word_index<SW>::v);
        auto load = [&](int z) {            // zmm z of the span: words 32z .. 32z + 31
            const int left = NEED - 32 * z;
            const __mmask32 m = left >= 32 ? ~__mmask32(0) : ((__mmask32(1) << left) - 1);
            return _mm512_maskz_loadu_epi16(m, p + 64 * z);
        };
        __m512i r;
        if constexpr (NEED <= 32) {
            r = _mm512_permutexvar_epi16(idx, load(0));
        } else if constexpr (NEED <= 64) {
            r = _mm512_permutex2var_epi16(load(0), idx, load(1));
        } else {
            const __m512i lo = _mm512_permutex2var_epi16(load(0), idx, load(1));
            const __m512i hi = _mm512_permutex2var_epi16(load(2), idx, NEED > 96 ? load(3) : _mm512_setzero_si512());
            r = _mm512_mask_mov_epi16(lo, word_index<SW>::high_mask, hi);  // lanes whose word index is >= 64
        }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's own zmm -> xmm cast header code
        return _mm256_cvtph_ps(_mm512_castsi512_si128(r));
#pragma GCC diagnostic pop
    }
    // Word indices k * SW (k < 8) for the permutes, and the lanes that come from words 64 and up.
    template <int SW>
    struct word_index {
        alignas(64) static constexpr uint16_t v[32] = {0, SW, 2 * SW, 3 * SW, 4 * SW, 5 * SW, 6 * SW, 7 * SW};
        static constexpr __mmask32 high_mask = (SW * 0 >= 64 ? 1u : 0u) | (SW * 1 >= 64 ? 2u : 0u) |
                                               (SW * 2 >= 64 ? 4u : 0u) | (SW * 3 >= 64 ? 8u : 0u) |
                                               (SW * 4 >= 64 ? 16u : 0u) | (SW * 5 >= 64 ? 32u : 0u) |
                                               (SW * 6 >= 64 ? 64u : 0u) | (SW * 7 >= 64 ? 128u : 0u);
    };
};

} // namespace
} // namespace pipeinfer

#include "quant/arch/x86-kernels.h"

namespace pipeinfer {

void register_kernels_avx512(type_traits* table) {
    // 8 rows per pass for the 32-value blocks; the k-quant kernels keep an i32 and an f32 accumulator per
    // row plus the unpacked chunk pair, and measured faster at 4 rows per pass (8 spills).
    register_x86_common<8, 4>(table);
}

} // namespace pipeinfer
