// attend_fast's AVX2 steps (8 lanes; kernels/arch/attention-fast-simd.inc). Compiled with the AVX2,
// FMA and F16C flags (csrc/CMakeLists.txt) and used only after cpu_has_avx2().
#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "common/fp16.h"
#include "kernels/attention-fast.h"
#include "quant/arch/arch.h"
#include "quant/blocks.h"

namespace pipeinfer {
namespace {

struct V {
    static constexpr int W = 8;
    using reg = __m256;
    static reg zero() { return _mm256_setzero_ps(); }
    static reg set1(float x) { return _mm256_set1_ps(x); }
    static reg load(const float* p) { return _mm256_loadu_ps(p); }
    static reg load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
    static reg load_q8(const int8_t* q, float d) {
        const __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(w), _mm256_set1_ps(d));
    }
    static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
    static void store(float* p, reg a) { _mm256_storeu_ps(p, a); }
};

constexpr int kScoreHeads = 6;  // heads scored side by side: 12 accumulators (2 registers of 8 cells each)
constexpr int kPvHeads32 = 2;   // heads in a V·e step of 32 values: 8 accumulators
constexpr int kScoreHeads32 = 2;  // heads scored over two tiles side by side: 8 accumulators
constexpr int kPvHeads64 = 0;     // no V·e step of 64 values (its 8 accumulators per head would spill)

#include "kernels/arch/attention-fast-simd.inc"

} // namespace

const detail::attend_fast_isa* detail::attend_fast_isa_avx2() { return cpu_has_avx2() ? &kIsa : nullptr; }

} // namespace pipeinfer
