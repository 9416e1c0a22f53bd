// AVX-512 (F, BW, VL, DQ, VNNI) overrides for the traits table (see quant/arch/arch.h): the kernels of
// x86-kernels.h with VNNI multiply-adds (vpdpbusd: u8 * s8 summed by 4 into i32 in one instruction;
// vpdpwssd: i16 * i16 pairs accumulated into i32) on 256-bit vectors (AVX512VL), then the 512-bit
// kernels that replace the quant dots: 4 weight rows at a time for the 32-value blocks
// (x86-avx512-rows4.h, vec_dot_4w) and the k-quants (x86-avx512-kquants.h), and the dots over
// row-interleaved weights (x86-avx512-repack.h). Chosen at run time when
// cpu_has_avx512().
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
};

} // namespace
} // namespace pipeinfer

#include "quant/arch/x86-kernels.h"

// GCC 12 reports its own AVX-512 intrinsics (their _mm512_undefined_* pass-through operands) as
// uninitialized once inlined (GCC bug 105593); silenced for the 512-bit kernel headers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "quant/arch/x86-avx512-kquants.h"
#include "quant/arch/x86-avx512-rows4.h"
#include "quant/arch/x86-avx512-repack.h"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace pipeinfer {

void register_kernels_avx512(type_traits* table) {
    // The 256-bit kernels first (f16 / bf16 / f32 dots, activation quantizers, and the one-weight-row
    // 32-value dots used for leftover rows), then the 512-bit ones below override the quant dots.
    register_x86_common<8, 4>(table);
    // 4 weight rows x up to 8 activation rows: 16 zmm accumulators.
    register_rows4_avx512<8>(table);
    // k-quant dots on 512-bit integer registers, 8 activation rows per pass (one zmm i32 accumulator each;
    // with the weight prefetch, 8 rows per pass measured faster than 4 at k = 8).
    register_kquants_avx512<8>(table);
    // Dots over row-interleaved weights (Pipeline(repack=True)): 16 rows per zmm lane set.
    register_repack_avx512(table);
}

} // namespace pipeinfer
