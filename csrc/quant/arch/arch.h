// Entry points of the per-ISA kernel files. Each overrides the rows of the traits table that it
// implements (to_float / from_float / vec_dot); it is called by init_type_traits only after a cpuid
// check says the CPU has the ISA. These files are the only ones compiled with ISA flags.
#pragma once
#include "quant/type-traits.h"

namespace pipeinfer {
// table has (size_t)ggml_type::COUNT rows.
void register_kernels_avx2(type_traits* table);
void register_kernels_avx512(type_traits* table);
void register_kernels_neon(type_traits* table);          // AArch64 Advanced SIMD
void register_kernels_neon_dotprod(type_traits* table);  // + the Armv8.2 dot product
// CPU feature checks (run time).
bool cpu_has_avx2();      // AVX2 + FMA + F16C
bool cpu_has_avx512();    // AVX-512 F, BW, VL, DQ and VNNI
bool cpu_has_neon();      // AArch64 Advanced SIMD (every AArch64 CPU)
bool cpu_has_dotprod();   // AArch64 SDOT/UDOT (HWCAP_ASIMDDP)
} // namespace pipeinfer
