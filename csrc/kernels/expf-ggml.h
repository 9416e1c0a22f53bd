// ggml's AVX-512 exp (ggml_v_expf), one lane at a time, for inlining into the FMA-cloned hot loops of
// ops.cpp and attention.cpp (each clone gets its own copy, so std::fmaf is one instruction there).
// Internal to kernels/: include only from .cpp files built with -ffp-contract=off.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace pipeinfer {
namespace detail {

// 2^k for k in [-126, 127] (a normal f32, built exactly).
inline float pow2_normal(int k) {
    const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
}

// j * 2^n with one rounding (as vscalefps and ldexp) for a normal j and |n| <= 192: outside the normal
// exponent range the first product is an exact exponent shift and only the second one rounds.
inline float scale_pow2(float j, int n) {
    if (n < -126) return (j * pow2_normal(n + 100)) * pow2_normal(-100);
    if (n > 127) return (j * pow2_normal(n - 100)) * pow2_normal(100);
    return j * pow2_normal(n);
}

// Constants and steps of ggml_v_expf (ggml-cpu/vec.h, AVX-512 variant, "adapted from arm limited
// optimized routine"): n = round(x / ln 2) via the 1.5 * 2^23 shift, b = x - n ln 2 in two parts,
// j = polynomial in b, result = j * 2^n; |n| > 192 gives 0 (n <= 0) or +inf. Inlined into each
// caller's build (see PI_FMA_CLONES).
__attribute__((always_inline)) inline float expf_ggml_inline(float x) {
    const float shift = 0x1.8p23f;
    const float z = std::fmaf(x, 0x1.715476p+0f, shift);
    const float n = z - shift;
    const float b = std::fmaf(-n, 0x1.7f7d1cp-20f, std::fmaf(-n, 0x1.62e4p-1f, x));
    if (std::isnan(n)) return n;
    if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    const float u = b * b;
    const float p_hi = std::fmaf(std::fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f));
    const float j = std::fmaf(p_hi, u, std::fmaf(0x1.ffffecp-1f, b, 1.0f));
    return scale_pow2(j, static_cast<int>(n));
}

// ggml_v_expf lane by lane without branches (selects instead), so the loop over a row vectorizes;
// the same operations and results as expf_ggml_inline (attention.cpp, attention-fast*.cpp).
__attribute__((always_inline)) inline float expf_ggml_select(float x) {
    const float shift = 0x1.8p23f;
    const float z = std::fmaf(x, 0x1.715476p+0f, shift);
    const float n = z - shift;
    const float b = std::fmaf(-n, 0x1.7f7d1cp-20f, std::fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float p_hi = std::fmaf(std::fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                 std::fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f));
    const float j = std::fmaf(p_hi, u, std::fmaf(0x1.ffffecp-1f, b, 1.0f));
    // j * 2^n with one rounding (detail::scale_pow2): outside the normal exponent range the first
    // product is an exact exponent shift of 100 and only the second one rounds.
    const float nc = n > -200.0f ? n : -200.0f;                  // NaN -> -200 (as std::fmax), as selects that
    const int ni = static_cast<int>(nc < 200.0f ? nc : 200.0f);  // vectorize
    const int sh = ni < -126 ? 100 : (ni > 127 ? -100 : 0);
    const float r = (j * detail::pow2_normal(ni + sh)) * detail::pow2_normal(-sh);
    const float big = n <= 0.0f ? 0.0f : INFINITY;
    const float e = std::fabs(n) > 192.0f ? big : r;
    return std::isnan(n) ? n : e;
}

} // namespace detail
} // namespace pipeinfer
