#pragma once

// PI_FMA_CLONES: the hot loops of kernels/ are built three times on x86-64 with GCC: for x86-64-v4 (AVX-512: a 16-lane loop
// is one instruction), x86-64-v3 (AVX2 + FMA, where std::fmaf is one vfmadd instruction and the lane
// loops vectorize) and the baseline (where std::fmaf is a libm call), the loader picking one by cpuid
// (an ifunc). An FMA is exactly rounded either way and the lane
// loops only run independent lanes side by side, so every build gives identical results.
#if defined(PIPEINFER_X86) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define PI_FMA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PI_FMA_CLONES
#endif
