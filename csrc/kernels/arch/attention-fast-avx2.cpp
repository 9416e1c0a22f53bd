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

void gather_f16(const uint16_t* k, int64_t ks, const int32_t* cells, int64_t m, int64_t hd, uint16_t* tile) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(m)), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(m) - 8), lane);
    const __m256i i0 = _mm256_maskload_epi32(cells, m0), i1 = _mm256_maskload_epi32(cells + 8, m1);
    const __m256i lo16 = _mm256_set1_epi32(0xffff);
    for (int64_t x = 0; x < hd; ++x) {
        const int* row = reinterpret_cast<const int*>(k + x * ks);
        const __m256i w0 = _mm256_and_si256(_mm256_mask_i32gather_epi32(_mm256_setzero_si256(), row, i0, m0, 2), lo16);
        const __m256i w1 = _mm256_and_si256(_mm256_mask_i32gather_epi32(_mm256_setzero_si256(), row, i1, m1, 2), lo16);
        // packus: per 128-bit lane (w0 low 4, w1 low 4, w0 high 4, w1 high 4); the permute puts w0 first
        const __m256i h = _mm256_permute4x64_epi64(_mm256_packus_epi32(w0, w1), _MM_SHUFFLE(3, 1, 2, 0));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + x * 16), h);
    }
}

constexpr int kScoreHeads = 6;  // heads scored side by side: 12 accumulators (2 registers of 8 cells each)
constexpr int kPvHeads32 = 2;   // heads in a V·e step of 32 values: 8 accumulators
constexpr int kScoreHeads32 = 2;  // heads scored over two tiles side by side: 8 accumulators
constexpr int kPvHeads64 = 0;     // no V·e step of 64 values (its 8 accumulators per head would spill)

#include "kernels/arch/attention-fast-simd.inc"

} // namespace

const detail::attend_fast_isa* detail::attend_fast_isa_avx2() { return cpu_has_avx2() ? &kIsa : nullptr; }

} // namespace pipeinfer
