// The k-quant super-block unpacking of the scalar reference (quants-ref-k.cpp), shared with the
// repacker (repack.cpp): the bit layouts of q4_K and q6_K are decoded in one place.
#pragma once
#include <cstdint>

#include "quant/blocks.h"

namespace pipeinfer {

// A weight super-block unpacked for the reference kernels.
struct unpacked_k {
    int8_t q[QK_K];     // (256,) quants in value order, offsets applied where the format has one
    int scale[16];      // (n_sub,) integer sub-block scales (16 sub-blocks of 16, or 8 of 32)
    int min[16];        // (n_sub,) integer sub-block mins (q2_K, q4_K, q5_K only)
};

// q4_K: quants 0..15, 8 sub-blocks of 32 with 6-bit scale and min.
void unpack_q4_K(const block_q4_K& b, unpacked_k* u);
// q6_K: quants -32..31 (the stored 6-bit number minus 32), 16 sub-blocks of 16 with i8 scales.
void unpack_q6_K(const block_q6_K& b, unpacked_k* u);

} // namespace pipeinfer
