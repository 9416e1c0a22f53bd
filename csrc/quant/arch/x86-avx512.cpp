// AVX-512 (F, BW, VL, DQ, VNNI) overrides for the traits table (see quant/arch/arch.h): the kernels of
// x86-kernels.h with VNNI multiply-adds (vpdpbusd: u8 * s8 summed by 4 into i32 in one instruction;
// vpdpwssd: i16 * i16 pairs accumulated into i32) on 256-bit vectors (AVX512VL), and more activation rows
// per pass thanks to the 32 vector registers. Chosen at run time when cpu_has_avx512().
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

namespace pipeinfer {

void register_kernels_avx512(type_traits* table) {
    // 8 rows per pass for the 32-value blocks; the k-quant kernels keep an i32 and an f32 accumulator per
    // row plus the unpacked chunk pair, and measured faster at 4 rows per pass (8 spills).
    register_x86_common<8, 4>(table);
}

} // namespace pipeinfer
