// Run-time CPU feature detection for kernel dispatch: each check covers every ISA flag its arch/ file
// is compiled with (csrc/CMakeLists.txt), so a kernel file never runs on a CPU missing one of them.
#include "quant/arch/arch.h"

#if defined(PIPEINFER_ARM)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace pipeinfer {

#if defined(PIPEINFER_X86)
bool cpu_has_avx2() {
    __builtin_cpu_init();
    // The avx2 file is also compiled with -mf16c and -mbmi2 (the compiler may emit BMI2 shifts anywhere
    // in it), so all four are required.
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
           __builtin_cpu_supports("bmi2");
}
bool cpu_has_avx512() {
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
}
#else
bool cpu_has_avx2() { return false; }
bool cpu_has_avx512() { return false; }
#endif

#if defined(PIPEINFER_ARM)
bool cpu_has_neon() { return true; }  // mandatory in AArch64
bool cpu_has_dotprod() { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
#else
bool cpu_has_neon() { return false; }
bool cpu_has_dotprod() { return false; }
#endif

} // namespace pipeinfer
