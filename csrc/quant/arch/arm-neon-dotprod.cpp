// AArch64 Advanced SIMD with the Armv8.2 dot-product extension (SDOT; most Arm CPUs since Cortex-A55
// / Neoverse N1, Apple M1) overrides for the traits table (see quant/arch/arch.h): the kernels of
// arm-kernels.h with vdotq_s32. Chosen at run time when cpu_has_dotprod().
#include <arm_neon.h>

#include "quant/arch/arch.h"

namespace pipeinfer {
namespace {

// Int8 dot primitives of this ISA, used by arm-kernels.h.
struct isa_ops {
    // (4,) i32: acc + sums of 4 adjacent a * b products, one SDOT.
    static int32x4_t dot(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
    // The same with the 4 bytes of group L of b (bytes 4L..4L+3) against every group of a.
    template <int L>
    static int32x4_t dot_lane(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_laneq_s32(acc, a, b, L); }
};

} // namespace
} // namespace pipeinfer

#include "quant/arch/arm-kernels.h"

namespace pipeinfer {

void register_kernels_neon_dotprod(type_traits* table) { register_arm_common(table); }

} // namespace pipeinfer
