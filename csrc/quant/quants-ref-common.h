// Helpers shared by the scalar reference files (quants-ref.cpp, quants-ref-k.cpp): exact integer
// dots, activation block addressing, and filling one row of the traits table.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/type-traits.h"

namespace pipeinfer {
namespace ref {

// Integer dot product of n int8 pairs.
inline int dot_i8(const int8_t* a, const int8_t* b, int n) {
    int sum = 0;
    for (int i = 0; i < n; ++i) sum += static_cast<int>(a[i]) * static_cast<int>(b[i]);
    return sum;
}

// Block i of activation row j (rows y_stride bytes apart).
template <class Block>
inline const Block& act_block(const void* y, size_t y_stride, int j, int64_t i) {
    return reinterpret_cast<const Block*>(static_cast<const uint8_t*>(y) + y_stride * j)[i];
}

// The reference entries of one weight / activation type.
inline void set_row(type_traits* table, ggml_type t, to_float_fn to_float, from_float_fn from_float,
                    vec_dot_fn vec_dot, ggml_type vec_dot_type) {
    type_traits& r = table[static_cast<size_t>(t)];
    r.to_float = to_float;
    r.from_float = from_float;
    r.vec_dot = vec_dot;
    r.vec_dot_type = vec_dot_type;
}

} // namespace ref
} // namespace pipeinfer
