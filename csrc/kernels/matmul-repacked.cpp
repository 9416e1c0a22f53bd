// The matmul driver over row-interleaved weights (quant/repack.h): groups of 16 output rows are handed
// to the pool's threads in chunks; each group is multiplied with up to REPACK_ACT_MAX activation rows
// per kernel call, so a verification batch of k <= 8 drafts reads every weight byte exactly once.
#include <algorithm>
#include <atomic>

#include "common/error.h"
#include "kernels/matmul-repacked.h"
#include "kernels/thread-pool.h"
#include "quant/repack.h"

namespace pipeinfer {

void matmul_repacked(const weight_view& w, const uint8_t* act, size_t act_stride, int64_t n_rows, float* y,
                     thread_pool& pool, matmul_scratch& scratch) {
    const type_traits& tt = get_type_traits(w.type);
    if (!repack_supported(w.type) || tt.vec_dot_repacked == nullptr) {
        throw unsupported_type(format("matmul: weight type %s has no repacked kernel", tt.name));
    }
    const int64_t n_in = w.n_in;
    const int64_t n_out = w.n_out;
    const int64_t nb = n_in / repack_column_values(w.type);
    const size_t group_bytes = static_cast<size_t>(nb) * repack_column_bytes(w.type);

    // activation side data (repack_act_side), once for all weight groups
    const int64_t n_side = repack_act_ints(w.type, n_in);
    const int32_t* side = nullptr;
    if (n_side > 0) {
        scratch.act_side.resize(static_cast<size_t>(n_rows * n_side));
        for (int64_t r = 0; r < n_rows; ++r) {
            repack_act_side(w.type, act + static_cast<size_t>(r) * act_stride, n_in, scratch.act_side.data() + r * n_side);
        }
        side = scratch.act_side.data();
    }

    const int64_t n_groups = (n_out + REPACK_ROWS - 1) / REPACK_ROWS;
    const int nth_total = pool.n_threads();
    int64_t chunk = std::max<int64_t>(1, (n_groups + nth_total * 4 - 1) / (nth_total * 4));
    chunk = std::min<int64_t>(chunk, std::max<int64_t>(4, static_cast<int64_t>(CHUNK_MAX_BYTES / group_bytes)));
    const int64_t n_chunks = (n_groups + chunk - 1) / chunk;
    std::atomic<int64_t> next_chunk{0};

    pool.parallel_for([&](int, int) {
        float s[REPACK_ACT_MAX * REPACK_ROWS];  // (act rows, 16) results of one group
        for (int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed); c < n_chunks;
             c = next_chunk.fetch_add(1, std::memory_order_relaxed)) {
            const int64_t g1 = std::min(n_groups, (c + 1) * chunk);
            // activation tiles outer: the chunk's groups stay in L2 while a prompt's tiles pass over them
            for (int64_t t0 = 0; t0 < n_rows; t0 += REPACK_ACT_MAX) {
                const int nt = static_cast<int>(std::min<int64_t>(REPACK_ACT_MAX, n_rows - t0));
                for (int64_t g = c * chunk; g < g1; ++g) {
                    tt.vec_dot_repacked(n_in, w.repacked + static_cast<size_t>(g) * group_bytes,
                                        act + static_cast<size_t>(t0) * act_stride, act_stride,
                                        side != nullptr ? side + t0 * n_side : nullptr, static_cast<size_t>(n_side), nt, s);
                    const int64_t r0 = g * REPACK_ROWS;
                    const int nr = static_cast<int>(std::min<int64_t>(REPACK_ROWS, n_out - r0));
                    for (int j = 0; j < nt; ++j) {
                        std::copy(s + j * REPACK_ROWS, s + j * REPACK_ROWS + nr, y + (t0 + j) * n_out + r0);
                    }
                }
            }
        }
    });
}

} // namespace pipeinfer
