// Include FIRST in a .cpp whose float operations must match a reference bit for bit: switches off
// floating-point contraction (a*b + c fused into one FMA) for the rest of the file, whatever the build
// flags (CMake also passes -ffp-contract=off); such files fuse exactly where std::fmaf is written.
#pragma once
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
