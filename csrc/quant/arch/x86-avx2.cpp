// AVX2 (+ FMA, F16C) overrides for the traits table (see quant/arch/arch.h): the kernels of
// x86-kernels.h with the plain AVX2 integer multiply-adds, and the dots over row-interleaved weights
// (x86-avx2-repack.h). Chosen at run time when cpu_has_avx2().
#include <immintrin.h>

#include <cstdint>

#include "quant/arch/arch.h"

namespace pipeinfer {
namespace {

// Integer multiply-add primitives of this ISA, used by x86-kernels.h.
struct isa_ops {
    // (8,) i32: sums of 4 adjacent u8 * s8 products (maddubs's i16 pairs cannot saturate for
    // |u| <= 128 and |s| <= 127).
    static __m256i dot_u8s8(__m256i u, __m256i s) {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
    }
    // acc + (8,) i32 sums of adjacent i16 * i16 products.
    static __m256i madd_acc(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
};

} // namespace
} // namespace pipeinfer

#include "quant/arch/x86-kernels.h"
#include "quant/arch/x86-avx2-repack.h"

namespace pipeinfer {

void register_kernels_avx2(type_traits* table) {
    // 16 vector registers: 4 activation rows per pass keep the accumulators in registers.
    register_x86_common<4, 4>(table);
    // Dots over row-interleaved weights (Pipeline(repack=True)): 8 rows per register, 2 passes per group.
    register_repack_avx2(table);
}

} // namespace pipeinfer
