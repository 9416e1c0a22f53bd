// Entry points of the per-ISA kernel files. Each overrides the rows of the traits table that it
// implements (to_float / from_float / vec_dot); it is called by init_type_traits only after a cpuid
// check says the CPU has the ISA. These files are the only ones compiled with ISA flags.
#pragma once
#include "quant/type-traits.h"

namespace pipeinfer {
// table has (size_t)ggml_type::COUNT rows.
void register_kernels_avx2(type_traits* table);
void register_kernels_avx512(type_traits* table);
// CPU feature checks (run time).
bool cpu_has_avx2();      // AVX2 + FMA + F16C
bool cpu_has_avx512();    // AVX-512 F, BW, VL, DQ and VNNI
} // namespace pipeinfer
