// Internal to the matmul driver (matmul.cpp and matmul-repacked.cpp); not part of its interface.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/matmul.h"

namespace pipeinfer {

// Upper bound of the weight bytes of one chunk of output rows handed to a thread: a chunk stays in L2
// while a prompt's activation tiles pass over it. Small chunks (tens of KiB) cost bandwidth with 2
// threads: their interleaved short streams reached only 24 of 35 GB/s on a q4_0 matvec, 1 MiB chunks all.
constexpr size_t CHUNK_MAX_BYTES = size_t(1) << 20;

// x (n_rows, n_in) f32 quantized to tt's vec_dot_type in scratch.act (or x itself for f32 dots);
// act_stride gets the bytes per row.
const uint8_t* quantize_activations(const type_traits& tt, const float* x, int64_t n_in, int64_t n_rows,
                                    thread_pool& pool, matmul_scratch& scratch, size_t& act_stride);

// y = x · Wᵀ over w.repacked (quant/repack.h) from already quantized activations.
void matmul_repacked(const weight_view& w, const uint8_t* act, size_t act_stride, int64_t n_rows, float* y,
                     thread_pool& pool, matmul_scratch& scratch);

} // namespace pipeinfer
