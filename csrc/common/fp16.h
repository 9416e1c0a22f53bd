// Scalar IEEE half (f16) and bfloat16 conversions, exact (round-to-nearest-even on the way down).
// Used by the reference kernels, the KV cache and tests; SIMD files use the hardware instructions.
#pragma once
#include <cstdint>
#include <cstring>

namespace pipeinfer {

inline float fp32_from_bits(uint32_t w) { float f; std::memcpy(&f, &w, 4); return f; }
inline uint32_t fp32_to_bits(float f) { uint32_t w; std::memcpy(&w, &f, 4); return w; }

// f16 -> f32, exact for every input including subnormals, inf and NaN.
inline float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        if (mant == 0) return fp32_from_bits(sign);
        // subnormal: value = mant * 2^-24
        const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
        return (sign != 0) ? -v : v;
    }
    if (exp == 31) return fp32_from_bits(sign | 0x7f800000u | (mant << 13));
    return fp32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

// f16 -> f32 without branches (selects only), so that loops over it vectorize; the same result as
// fp16_to_fp32 for every input (the exponent is rebased by one multiply by 2^-112, which is exact;
// subnormals come from a magic-number subtraction, also exact), after Maratyszcza's FP16 library.
inline float fp16_to_fp32_fast(uint16_t h) {
    const uint32_t w = static_cast<uint32_t>(h) << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normal = fp32_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float subnormal = fp32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    return fp32_from_bits(sign | fp32_to_bits(two_w < (1u << 27) ? subnormal : normal));
}

// f32 -> f16, round to nearest even, overflow to inf, NaN kept quiet.
inline uint16_t fp32_to_fp16(float f) {
    const uint32_t x = fp32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (ax < 0x38800000u) {  // result is subnormal or zero: value * 2^24 rounded to an integer
        const float v = fp32_from_bits(ax) * 16777216.0f;
        // nearbyint under the default rounding mode (to nearest even)
        float r = v + 12582912.0f;  // 1.5 * 2^23
        r -= 12582912.0f;
        return static_cast<uint16_t>(sign | static_cast<uint32_t>(r));
    }
    const uint32_t mant_odd = (ax >> 13) & 1u;
    const uint32_t rounded = ax + 0xfffu + mant_odd;
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits(static_cast<uint32_t>(h) << 16); }

// f32 -> bf16, round to nearest even; NaN stays NaN (quiet).
inline uint16_t fp32_to_bf16(float f) {
    const uint32_t x = fp32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 64u);
    return static_cast<uint16_t>((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

} // namespace pipeinfer
