// AArch64 Advanced SIMD (Armv8.0, every AArch64 CPU) overrides for the traits table (see
// quant/arch/arch.h): the kernels of arm-kernels.h with int8 dots built from widening multiplies and
// pairwise adds. Chosen at run time when the CPU lacks the dot-product extension (arm-neon-dotprod.cpp).
#include <arm_neon.h>

#include "quant/arch/arch.h"

namespace pipeinfer {
namespace {

// Int8 dot primitives of this ISA, used by arm-kernels.h.
struct isa_ops {
    // (4,) i32: acc + sums of 4 adjacent a * b products (int16 products are exact for int8 inputs).
    static int32x4_t dot(int32x4_t acc, int8x16_t a, int8x16_t b) {
        const int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        const int16x8_t p1 = vmull_high_s8(a, b);
        return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
    }
    // The same with the 4 bytes of group L of b (bytes 4L..4L+3) against every group of a.
    template <int L>
    static int32x4_t dot_lane(int32x4_t acc, int8x16_t a, int8x16_t b) {
        return dot(acc, a, vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(b), L)));
    }
};

} // namespace
} // namespace pipeinfer

#include "quant/arch/arm-kernels.h"

namespace pipeinfer {

void register_kernels_neon(type_traits* table) { register_arm_common(table); }

} // namespace pipeinfer
