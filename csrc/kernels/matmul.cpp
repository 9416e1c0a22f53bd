#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "common/error.h"
#include "kernels/fma-clones.h"
#include "kernels/matmul-repacked.h"
#include "kernels/thread-pool.h"

namespace pipeinfer {

namespace {

// Activation rows per vec_dot call. Bounds the per-call result buffer (and the kernels' per-row
// accumulators) while still reading each weight block once for up to this many rows; prompt batches
// of hundreds of rows are processed as a sequence of such tiles.
constexpr int ACT_TILE = 16;

// Quantizing fewer rows than this is left to the caller thread (a dispatch costs more than the work).
constexpr int64_t PARALLEL_QUANTIZE_MIN_ROWS = 4;

void check_args(const weight_view& w, const type_traits& tt, const float* x, int64_t n_rows, const float* y) {
    if (tt.block_size == 0) {
        throw unsupported_type(format("matmul: unknown weight type id %u", static_cast<unsigned>(w.type)));
    }
    if (w.n_in <= 0 || w.n_out <= 0) {
        throw shape_error(format("matmul: weight (%s) must have n_in > 0 and n_out > 0, got n_in=%lld n_out=%lld",
                                 tt.name, static_cast<long long>(w.n_in), static_cast<long long>(w.n_out)));
    }
    const size_t want = row_size(w.type, w.n_in);  // throws shape_error on a partial block
    if (w.row_bytes != want) {
        throw shape_error(format("matmul: weight (%s, n_in=%lld) rows must be %zu bytes, got %zu", tt.name,
                                 static_cast<long long>(w.n_in), want, w.row_bytes));
    }
    if (n_rows < 1) {
        throw shape_error(format("matmul: need at least one activation row, got %lld", static_cast<long long>(n_rows)));
    }
    if (w.data == nullptr || x == nullptr || y == nullptr) {
        throw shape_error("matmul: null weight, activation or output buffer");
    }
}

// Which rows of a batch llama.cpp computes with which kernel order on x86 (ggml-cpu, AVX-512 build), so a
// prompt gives its results bit for bit. Rows [0, n_batch) take batch_dot, the others vec_dot.
// - Weights llama.cpp repacks (the types with vec_dot_x4; ggml repack.cpp repacks them when n_out is a
//   multiple of 8) go through its gemm for the rows that fill groups of 4 and its gemv for the rest.
// - Other k-quant weights go through its tiled matmul when the batch has at least 8 rows.
// - Everything else is row-exact (llamafile's tinyBLAS sums the 32-value block types in the one-row
//   order), and so is every row when the caller asks for exact rows.
constexpr int64_t REPACK_N_OUT_MULTIPLE = 8;
constexpr int64_t REPACK_ROW_GROUP = 4;
constexpr int64_t TILED_MIN_ROWS = 8;

struct row_plan {
    vec_dot_fn batch_dot = nullptr;
    int64_t n_batch = 0;  // leading rows that use batch_dot
};

row_plan plan_rows(const type_traits& tt, int64_t n_out, int64_t n_rows, bool exact_rows) {
    row_plan plan;
    if (exact_rows) return plan;
    if (tt.vec_dot_x4 != nullptr && n_out % REPACK_N_OUT_MULTIPLE == 0) {
        plan.batch_dot = tt.vec_dot_x4;
        plan.n_batch = n_rows - n_rows % REPACK_ROW_GROUP;
    } else if (tt.vec_dot_tiled != nullptr && n_rows >= TILED_MIN_ROWS) {
        plan.batch_dot = tt.vec_dot_tiled;
        plan.n_batch = n_rows;
    }
    return plan;
}

} // namespace

const uint8_t* quantize_activations(const type_traits& tt, const float* x, int64_t n_in, int64_t n_rows,
                                    thread_pool& pool, matmul_scratch& scratch, size_t& act_stride) {
    // Activations in the weight type's vec_dot_type: (n_rows, act_stride) bytes.
    act_stride = static_cast<size_t>(n_in) * sizeof(float);
    if (tt.vec_dot_type == ggml_type::F32) return reinterpret_cast<const uint8_t*>(x);
    const type_traits& at = get_type_traits(tt.vec_dot_type);
    if (at.from_float == nullptr) {
        throw unsupported_type(format("matmul: weight type %s needs %s activations, which this build cannot "
                                      "quantize", tt.name, at.name));
    }
    act_stride = row_size(tt.vec_dot_type, n_in);
    scratch.act.resize(static_cast<size_t>(n_rows) * act_stride);
    uint8_t* q = scratch.act.data();
    auto quantize_rows = [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) at.from_float(x + r * n_in, q + r * act_stride, n_in);
    };
    if (n_rows >= PARALLEL_QUANTIZE_MIN_ROWS && pool.n_threads() > 1) {
        pool.parallel_for([&](int ith, int nth) { quantize_rows(n_rows * ith / nth, n_rows * (ith + 1) / nth); });
    } else {
        quantize_rows(0, n_rows);
    }
    return q;
}

namespace {

const type_traits& checked_traits(const weight_view& w, const float* x, int64_t n_rows, const float* y) {
    const type_traits& tt = get_type_traits(w.type);
    check_args(w, tt, x, n_rows, y);
    if (tt.vec_dot == nullptr) {
        throw unsupported_type(format("matmul: weight type %s has no dot kernel in this build", tt.name));
    }
    return tt;
}

// The product from activations already in tt's vec_dot_type (act, act_stride bytes per row).
void matmul_from_act(const weight_view& w, const type_traits& tt, const uint8_t* act, size_t act_stride,
                     int64_t n_rows, float* y, thread_pool& pool, matmul_scratch& scratch, bool exact_rows) {
    const int64_t n_in = w.n_in;
    const int64_t n_out = w.n_out;
    if (w.repacked != nullptr) {
        matmul_repacked(w, act, act_stride, n_rows, y, pool, scratch);
        return;
    }

    // Output rows are handed out in chunks from a shared counter, so a thread slowed (or not yet
    // scheduled) by other load on the machine takes fewer chunks. Within a chunk, activation tiles are
    // the outer loop so the chunk's weight rows stay in L2 across tiles when n_rows is large. Chunks are
    // multiples of 4 rows: the one-row-order rows go through vec_dot_4w in groups of 4 where the ISA
    // has it (same results as vec_dot, bit for bit).
    const int nth_total = pool.n_threads();
    // About 4 chunks per thread, but at most CHUNK_MAX_BYTES of weights (matmul-repacked.h).
    int64_t chunk = std::max<int64_t>(8, (n_out + nth_total * 4 - 1) / (nth_total * 4));
    chunk = std::min<int64_t>(chunk, std::max<int64_t>(64, static_cast<int64_t>(CHUNK_MAX_BYTES / w.row_bytes)));
    chunk = (chunk + 3) / 4 * 4;
    const int64_t n_chunks = (n_out + chunk - 1) / chunk;
    std::atomic<int64_t> next_chunk{0};
    const row_plan plan = plan_rows(tt, n_out, n_rows, exact_rows);

    pool.parallel_for([&](int, int) {
        float s[ACT_TILE];  // (ACT_TILE,) f32 dot results of one weight row
        for (int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed); c < n_chunks;
             c = next_chunk.fetch_add(1, std::memory_order_relaxed)) {
            const int64_t r0 = c * chunk;
            const int64_t r1 = std::min(n_out, r0 + chunk);
            for (int64_t t0 = 0; t0 < n_rows; t0 += ACT_TILE) {
                const int nt = static_cast<int>(std::min<int64_t>(ACT_TILE, n_rows - t0));
                // the tile's first nb rows take the batch kernel (plan_rows), the rest the one-row kernel
                const int nb = static_cast<int>(std::clamp<int64_t>(plan.n_batch - t0, 0, nt));
                const uint8_t* a = act + static_cast<size_t>(t0) * act_stride;
                int64_t r = r0;
                const int64_t n4 = tt.vec_dot_4w != nullptr && nb < nt ? (r1 - r0) / 4 * 4 : 0;
                if (n4 > 0) {
                    for (int64_t k = 0; nb > 0 && k < n4; ++k) {
                        plan.batch_dot(n_in, w.data + static_cast<size_t>(r0 + k) * w.row_bytes, a, act_stride, nb, s);
                        for (int j = 0; j < nb; ++j) y[(t0 + j) * n_out + r0 + k] = s[j];
                    }
                    tt.vec_dot_4w(n_in, w.data + static_cast<size_t>(r0) * w.row_bytes, w.row_bytes, static_cast<int>(n4),
                                  a + static_cast<size_t>(nb) * act_stride, act_stride, nt - nb,
                                  y + (t0 + nb) * n_out + r0, static_cast<size_t>(n_out));
                    r = r0 + n4;
                }
                for (; r < r1; ++r) {
                    const uint8_t* wr = w.data + static_cast<size_t>(r) * w.row_bytes;
                    if (nb > 0) plan.batch_dot(n_in, wr, a, act_stride, nb, s);
                    if (nb < nt) tt.vec_dot(n_in, wr, a + static_cast<size_t>(nb) * act_stride, act_stride, nt - nb, s + nb);
                    for (int j = 0; j < nt; ++j) y[(t0 + j) * n_out + r] = s[j];
                }
            }
        }
    });
}

} // namespace

void matmul(const weight_view& w, const float* x, int64_t n_rows, float* y, thread_pool& pool,
            matmul_scratch& scratch, bool exact_rows) {
    const type_traits& tt = checked_traits(w, x, n_rows, y);
    size_t act_stride = 0;
    const uint8_t* act = quantize_activations(tt, x, w.n_in, n_rows, pool, scratch, act_stride);
    matmul_from_act(w, tt, act, act_stride, n_rows, y, pool, scratch, exact_rows);
}

void matmul_same_x(const weight_view* const* ws, float* const* ys, int n_w, const float* x, int64_t n_rows,
                   thread_pool& pool, matmul_scratch& scratch, bool exact_rows) {
    for (int i = 0; i < n_w; ++i) {
        checked_traits(*ws[i], x, n_rows, ys[i]);
        if (ws[i]->n_in != ws[0]->n_in) {
            throw shape_error(format("matmul_same_x: weights read %lld and %lld values per activation row",
                                     static_cast<long long>(ws[0]->n_in), static_cast<long long>(ws[i]->n_in)));
        }
    }
    const uint8_t* act = nullptr;
    size_t act_stride = 0;
    for (int i = 0; i < n_w; ++i) {
        const type_traits& tt = get_type_traits(ws[i]->type);
        const bool same = i > 0 && get_type_traits(ws[i - 1]->type).vec_dot_type == tt.vec_dot_type;
        if (!same) act = quantize_activations(tt, x, ws[i]->n_in, n_rows, pool, scratch, act_stride);
        matmul_from_act(*ws[i], tt, act, act_stride, n_rows, ys[i], pool, scratch, exact_rows);
    }
}

void matmul_ref(const weight_view& w, const float* x, int64_t n_rows, float* y) {
    const type_traits& tt = get_type_traits(w.type);
    check_args(w, tt, x, n_rows, y);
    if (tt.to_float == nullptr) {
        throw unsupported_type(format("matmul_ref: weight type %s cannot be dequantized in this build", tt.name));
    }
    std::vector<float> row(static_cast<size_t>(w.n_in));  // (n_in,) f32 one dequantized weight row
    for (int64_t r = 0; r < w.n_out; ++r) {
        tt.to_float(w.data + static_cast<size_t>(r) * w.row_bytes, row.data(), w.n_in);
        for (int64_t i = 0; i < n_rows; ++i) {
            const float* xi = x + i * w.n_in;
            double acc = 0.0;
            for (int64_t k = 0; k < w.n_in; ++k) acc += static_cast<double>(row[k]) * xi[k];
            y[i * w.n_out + r] = static_cast<float>(acc);
        }
    }
}

namespace {

// The software prefetch distance of the repacked kernels (x86-avx512-repack.h): with it one thread
// streams as fast as they do.
constexpr size_t STREAM_PREFETCH_BYTES = 5120;

// Wrapping sum of the 64-bit words [w0, w1) of buf: 256 bytes per iteration in 32 independent lanes
// (built for the widest ISA by PI_FMA_CLONES: 4 zmm loads and adds per iteration with AVX-512), so the
// loop issues little more than the loads and the baseline is the memory's, not the loop's (a 64-byte
// SSE2 loop capped one thread at ~20 GB/s here, below what the matvecs read).
PI_FMA_CLONES
uint64_t stream_range_sum(const uint8_t* buf, size_t w0, size_t w1) {
    constexpr size_t LANES = 32;
    uint64_t acc[LANES] = {};
    size_t i = w0;
    for (; i + LANES <= w1; i += LANES) {
        __builtin_prefetch(buf + i * 8 + STREAM_PREFETCH_BYTES);
        __builtin_prefetch(buf + i * 8 + STREAM_PREFETCH_BYTES + 64);
        __builtin_prefetch(buf + i * 8 + STREAM_PREFETCH_BYTES + 128);
        __builtin_prefetch(buf + i * 8 + STREAM_PREFETCH_BYTES + 192);
        uint64_t v[LANES];
        std::memcpy(v, buf + i * 8, sizeof(v));
        for (size_t k = 0; k < LANES; ++k) acc[k] += v[k];
    }
    for (; i < w1; ++i) {
        uint64_t v;
        std::memcpy(&v, buf + i * 8, 8);
        acc[0] += v;
    }
    uint64_t sum = 0;
    for (uint64_t a : acc) sum += a;
    return sum;
}

} // namespace

uint64_t stream_read_sum(const uint8_t* buf, size_t n, thread_pool& pool) {
    const size_t n_words = n / 8;
    std::vector<uint64_t> partial(static_cast<size_t>(pool.n_threads()) * 8, 0);  // (nth, 8) padded per thread
    pool.parallel_for([&](int ith, int nth) {
        partial[static_cast<size_t>(ith) * 8] = stream_range_sum(buf, n_words * ith / nth, n_words * (ith + 1) / nth);
    });
    uint64_t sum = 0;
    for (int t = 0; t < pool.n_threads(); ++t) sum += partial[static_cast<size_t>(t) * 8];
    for (size_t i = n_words * 8; i < n; ++i) sum += buf[i];  // tail bytes
    return sum;
}

} // namespace pipeinfer
