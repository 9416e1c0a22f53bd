// attend_fast's AVX-512 steps (16 lanes; kernels/arch/attention-fast-simd.inc). Compiled with the
// AVX-512 flags (csrc/CMakeLists.txt) and used only after cpu_has_avx512().
#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "common/fp16.h"
#include "kernels/attention-fast.h"
#include "quant/arch/arch.h"
#include "quant/blocks.h"

// GCC 12 reports its own AVX-512 intrinsics (their _mm512_undefined_* pass-through operands) as
// uninitialized once inlined (GCC bug 105593); silenced for this file, as in quant/arch/x86-avx512.cpp.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace pipeinfer {
namespace {

struct V {
    static constexpr int W = 16;
    using reg = __m512;
    static reg zero() { return _mm512_setzero_ps(); }
    static reg set1(float x) { return _mm512_set1_ps(x); }
    static reg load(const float* p) { return _mm512_loadu_ps(p); }
    static reg load_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
    static reg load_q8(const int8_t* q, float d) {
        const __m512i w = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(w), _mm512_set1_ps(d));
    }
    static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
    static void store(float* p, reg a) { _mm512_storeu_ps(p, a); }
};

void gather_f16(const uint16_t* k, int64_t ks, const int32_t* cells, int64_t m, int64_t hd, uint16_t* tile) {
    const __mmask16 mk = static_cast<__mmask16>((1u << m) - 1u);
    const __m512i idx = _mm512_maskz_loadu_epi32(mk, cells);
    for (int64_t x = 0; x < hd; ++x) {
        const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mk, idx, k + x * ks, 2);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + x * 16), _mm512_cvtepi32_epi16(w));
    }
}

constexpr int kScoreHeads = 8;  // heads scored side by side: 8 accumulators of 16 cells
constexpr int kPvHeads32 = 8;   // heads in a V·e step of 32 values: 16 accumulators
constexpr int kScoreHeads32 = 8;  // heads scored over two tiles side by side: 16 accumulators
constexpr int kPvHeads64 = 4;     // heads in a V·e step of 64 values: 16 accumulators

#include "kernels/arch/attention-fast-simd.inc"

} // namespace

const detail::attend_fast_isa* detail::attend_fast_isa_avx512() { return cpu_has_avx512() ? &kIsa : nullptr; }

} // namespace pipeinfer
