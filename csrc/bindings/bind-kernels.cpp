// Python bindings of the compute path: the matmul driver (kernels/matmul.h) for tests and benchmarks,
// the streaming-read bandwidth baseline, and a ThreadPool handle for thread-pool tests. Arguments are
// converted and validated here; the work is done in kernels/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/register.h"
#include "common/error.h"
#include "common/fp16.h"
#include "kernels/attention-fast.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/thread-pool.h"
#include "quant/repack.h"
#include "quant/type-traits.h"

namespace py = pybind11;

namespace pipeinfer {

namespace {

using u8_array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using f32_array = py::array_t<float, py::array::c_style | py::array::forcecast>;

ggml_type type_from_name(const std::string& name) {
    for (uint32_t id = 0; id < static_cast<uint32_t>(ggml_type::COUNT); ++id) {
        const type_traits& tt = get_type_traits(id);
        if (tt.block_size != 0 && name == tt.name) return static_cast<ggml_type>(id);
    }
    throw unsupported_type(format("unknown tensor type name '%s' (expected a ggml name such as 'q4_0')",
                                  name.c_str()));
}

// One pool and scratch per thread count, created on first use and reused by every call, so tests and
// benchmarks measure the kernels rather than thread creation. The mutex serializes Python threads that
// share a pool (a pool runs one parallel_for at a time). The cache is deliberately leaked: joining
// workers from a static destructor at interpreter exit buys nothing. After fork() the child has no
// workers, so a changed pid starts a fresh cache.
struct cached_pool {
    explicit cached_pool(int n) : pool(n) {}
    std::mutex mu;
    thread_pool pool;
    matmul_scratch scratch;
};

cached_pool& get_pool(int n_threads) {
    if (n_threads < 1 || n_threads > 1024) {
        throw std::invalid_argument(format("n_threads must be in [1, 1024], got %d", n_threads));
    }
    static std::mutex mu;
    static auto* cache = new std::map<int, std::unique_ptr<cached_pool>>();
    static pid_t owner = getpid();
    std::lock_guard<std::mutex> lock(mu);
    if (getpid() != owner) {
        cache = new std::map<int, std::unique_ptr<cached_pool>>();  // the old pools' threads died in fork
        owner = getpid();
    }
    auto& slot = (*cache)[n_threads];
    if (!slot) slot = std::make_unique<cached_pool>(n_threads);
    return *slot;
}

py::array_t<uint8_t> py_repack(const std::string& type_name, const u8_array& w, int64_t n_in) {
    const ggml_type type = type_from_name(type_name);
    if (w.ndim() != 2) {
        throw shape_error(format("repack: w must be 2-D (n_out, row_bytes) uint8, got %d dims", (int)w.ndim()));
    }
    const size_t bytes = repack_bytes(type, n_in, w.shape(0));  // validates type and shape
    py::array_t<uint8_t> out(static_cast<py::ssize_t>(bytes));
    repack_rows(type, w.data(), static_cast<size_t>(w.shape(1)), n_in, w.shape(0), out.mutable_data());
    return out;
}

py::array_t<float> py_matmul(const std::string& type_name, const u8_array& w, int64_t n_in, const f32_array& x,
                             int n_threads, bool ref, bool exact_rows, const std::optional<u8_array>& repacked) {
    const ggml_type type = type_from_name(type_name);
    if (w.ndim() != 2) {
        throw shape_error(format("matmul: w must be 2-D (n_out, row_bytes) uint8, got %d dims", (int)w.ndim()));
    }
    if (x.ndim() != 2 || x.shape(1) != n_in) {
        throw shape_error(format("matmul: x must be 2-D (n_rows, n_in=%lld) float32, got %d dims with last %lld",
                                 (long long)n_in, (int)x.ndim(), (long long)(x.ndim() >= 1 ? x.shape(x.ndim() - 1) : 0)));
    }
    weight_view wv;
    wv.type = type;
    wv.n_in = n_in;
    wv.n_out = w.shape(0);
    wv.data = w.data();
    wv.row_bytes = static_cast<size_t>(w.shape(1));
    if (repacked.has_value()) {
        const size_t want = repack_bytes(type, n_in, wv.n_out);
        if (repacked->ndim() != 1 || static_cast<size_t>(repacked->size()) != want) {
            throw shape_error(format("matmul: repacked must be the 1-D uint8 array repack() returns (%zu bytes)", want));
        }
        wv.repacked = repacked->data();
    }
    const int64_t n_rows = x.shape(0);
    py::array_t<float> y({static_cast<py::ssize_t>(n_rows), static_cast<py::ssize_t>(wv.n_out)});
    float* yp = y.mutable_data();
    const float* xp = x.data();
    cached_pool* cp = ref ? nullptr : &get_pool(n_threads);
    {
        // Safe without the GIL: w, x and y are held by this frame (numpy cannot free or resize a
        // referenced buffer), only raw pointers are used below, and no Python object is touched.
        py::gil_scoped_release nogil;
        if (ref) {
            matmul_ref(wv, xp, n_rows, yp);
        } else {
            std::lock_guard<std::mutex> lock(cp->mu);
            matmul(wv, xp, n_rows, yp, cp->pool, cp->scratch, exact_rows);
        }
    }
    return y;
}

double py_stream_read_gbps(const u8_array& buf, int n_threads, int repeats) {
    if (repeats < 1) throw std::invalid_argument(format("stream_read_gbps: repeats must be >= 1, got %d", repeats));
    if (buf.size() == 0) throw shape_error("stream_read_gbps: empty buffer");
    cached_pool& cp = get_pool(n_threads);
    const uint8_t* p = buf.data();
    const size_t n = static_cast<size_t>(buf.size());
    double best = 1e30;
    uint64_t check = 0;
    {
        // Safe without the GIL: buf is held by this frame and only read through a raw pointer.
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(cp.mu);
        for (int r = 0; r < repeats; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            check ^= stream_read_sum(p, n, cp.pool);
            const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
            best = std::min(best, dt.count());
        }
    }
    (void)check;  // stream_read_sum lives in another translation unit, so the reads are not elided
    return static_cast<double>(n) / best / 1e9;
}

uint64_t py_stream_read_sum(const u8_array& buf, int n_threads) {
    cached_pool& cp = get_pool(n_threads);
    const uint8_t* p = buf.data();
    const size_t n = static_cast<size_t>(buf.size());
    // Safe without the GIL: buf is held by this frame and only read through a raw pointer.
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(cp.mu);
    return stream_read_sum(p, n, cp.pool);
}

// Runs n_calls parallel_for calls; each ith bumps its own counter and checks nth. Returns the counts
// (every entry must equal n_calls). throw_ith >= 0 makes that ith throw on the last call.
py::array_t<int64_t> py_pool_smoke(thread_pool& pool, int n_calls, int throw_ith) {
    const int n = pool.n_threads();
    std::vector<int64_t> counts(static_cast<size_t>(n) * 8, 0);  // (n, 8) padded to a cache line each
    std::vector<int> bad_nth(static_cast<size_t>(n) * 16, 0);
    {
        // Safe without the GIL: only the local vectors and the pool are used.
        py::gil_scoped_release nogil;
        for (int c = 0; c < n_calls; ++c) {
            pool.parallel_for([&](int ith, int nth) {
                if (nth != n) bad_nth[static_cast<size_t>(ith) * 16] = 1;
                counts[static_cast<size_t>(ith) * 8] += 1;
                if (ith == throw_ith && c == n_calls - 1) {
                    throw std::runtime_error(format("thread_pool smoke: ith %d failed on call %d", ith, c));
                }
            });
        }
    }
    py::array_t<int64_t> out(n);
    for (int i = 0; i < n; ++i) {
        if (bad_nth[static_cast<size_t>(i) * 16]) throw std::logic_error("thread_pool smoke: wrong nth seen");
        out.mutable_at(i) = counts[static_cast<size_t>(i) * 8];
    }
    return out;
}

using i32_array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// A small cache given row-major for the attention kernels' tests: k, v (n_cells, head_dim), cell_pos
// (n_cells,), cells (n_vis,) the visible cells in position order; k and v are stored as the cache stores
// them (kv_type "f16": rounded, K transposed into padded rows; "q8_0": quantized rows).
struct test_kv {
    attn_kv kv;
    std::vector<uint16_t> kt, vh;  // f16: (hd, stride) transposed K, (n_cells, hd) V
    std::vector<uint8_t> kq, vq;   // q8_0: (n_cells, row bytes) K and V
};

void fill_test_kv(test_kv& t, const f32_array& k, const f32_array& v, const i32_array& cell_pos,
                  const i32_array& cells, int64_t hd, const std::string& kv_type_s) {
    if (k.ndim() != 2 || v.ndim() != 2 || cell_pos.ndim() != 1 || cells.ndim() != 1) {
        throw shape_error("attention: cell_pos and cells must be 1-d, k and v 2-d");
    }
    const int64_t n_cells = k.shape(0);
    if (hd < 1 || k.shape(1) != hd || v.shape(0) != n_cells || v.shape(1) != hd || cell_pos.shape(0) != n_cells) {
        throw shape_error("attention: k and v must be (n_cells, head_dim) and cell_pos (n_cells,)");
    }
    const int64_t n = cells.shape(0);
    for (int64_t j = 0; j < n; ++j) {
        if (cells.at(j) < 0 || cells.at(j) >= n_cells) throw shape_error(format("attention: cell %d out of range", cells.at(j)));
        if (cell_pos.at(cells.at(j)) < 0) throw shape_error("attention: a visible cell has a negative position");
    }
    attn_kv& kv = t.kv;
    kv.cell_pos = cell_pos.data();
    if (kv_type_s == "q8_0") {
        if (hd % 32 != 0) throw shape_error("attention: q8_0 storage needs head_dim % 32 == 0");
        const size_t rb = kv_row_bytes(kv_type::Q8_0, hd);
        t.kq.resize(rb * static_cast<size_t>(n_cells));
        t.vq.resize(rb * static_cast<size_t>(n_cells));
        const from_float_fn quantize = get_type_traits(ggml_type::Q8_0).from_float;
        for (int64_t c = 0; c < n_cells; ++c) {
            quantize(k.data(c, 0), t.kq.data() + rb * static_cast<size_t>(c), hd);
            quantize(v.data(c, 0), t.vq.data() + rb * static_cast<size_t>(c), hd);
        }
        kv.type = kv_type::Q8_0;
        kv.k = t.kq.data();
        kv.v = t.vq.data();
        kv.k_stride = kv.v_stride = static_cast<int64_t>(rb);
    } else if (kv_type_s == "f16") {
        const int64_t stride = n_cells + 16;  // as the cache: padded rows
        t.kt.assign(static_cast<size_t>(hd * stride), 0);
        t.vh.resize(static_cast<size_t>(n_cells * hd));
        for (int64_t c = 0; c < n_cells; ++c) {
            for (int64_t x = 0; x < hd; ++x) {
                t.kt[x * stride + c] = fp32_to_fp16(k.at(c, x));
                t.vh[c * hd + x] = fp32_to_fp16(v.at(c, x));
            }
        }
        kv.k = t.kt.data();
        kv.k_stride = stride;
        kv.v = t.vh.data();
        kv.v_stride = hd;
    } else {
        throw std::invalid_argument(format("attention: kv_type must be 'f16' or 'q8_0', got '%s'", kv_type_s.c_str()));
    }
}

// One attention item of the exact mode (attend_f16) over a small test cache (test_kv).
py::array_t<float> py_attention(const f32_array& q, const f32_array& k, const f32_array& v, const i32_array& cell_pos,
                                const i32_array& cells, float scale, bool one_row, bool ref, const std::string& kv_type_s) {
    if (q.ndim() != 1) throw shape_error("attention: q, cell_pos and cells must be 1-d, k and v 2-d");
    const int64_t hd = q.shape(0), n = cells.ndim() == 1 ? cells.shape(0) : 0;
    test_kv t;
    fill_test_kv(t, k, v, cell_pos, cells, hd, kv_type_s);
    py::array_t<float> out(hd);
    if (ref) {
        attend_f16_ref(q.data(), hd, scale, t.kv, cells.data(), n, one_row, out.mutable_data());
    } else {
        std::vector<float> scratch(attend_scratch_floats(hd, n));
        attend_f16(q.data(), hd, scale, t.kv, cells.data(), n, one_row, scratch.data(), out.mutable_data());
    }
    return out;
}

// The SIMD paths of attend_fast this CPU has, by name.
std::vector<std::string> attention_fast_paths() {
    std::vector<std::string> out;
    if (detail::attend_fast_isa_avx512() != nullptr) out.emplace_back("avx512");
    if (detail::attend_fast_isa_avx2() != nullptr) out.emplace_back("avx2");
    return out;
}

// The query heads q (n_q, head_dim) of one KV head over a small test cache, by the default mode's
// kernel (attend_fast) on `path`: "auto" (the path in force), "ref", "avx512" or "avx2".
py::array_t<float> py_attention_fast(const f32_array& q, const f32_array& k, const f32_array& v,
                                     const i32_array& cell_pos, const i32_array& cells, float scale,
                                     const std::string& path, const std::string& kv_type_s) {
    if (q.ndim() != 2 || q.shape(0) < 1) throw shape_error("attention_fast: q must be (n_q, head_dim) with n_q >= 1");
    const int64_t n_q = q.shape(0), hd = q.shape(1), n = cells.ndim() == 1 ? cells.shape(0) : 0;
    test_kv t;
    fill_test_kv(t, k, v, cell_pos, cells, hd, kv_type_s);
    py::array_t<float> out({n_q, hd});
    std::vector<float> scratch(attend_fast_scratch_floats(hd, n_q, n));
    const detail::attend_fast_isa* isa = nullptr;
    if (path == "avx512" || path == "avx2") {
        isa = path == "avx512" ? detail::attend_fast_isa_avx512() : detail::attend_fast_isa_avx2();
        if (isa == nullptr) throw std::invalid_argument("attention_fast: this CPU has no " + path + " path");
    } else if (path == "auto") {
        attend_fast(q.data(), n_q, hd, scale, t.kv, cells.data(), n, scratch.data(), out.mutable_data());
        return out;
    } else if (path != "ref") {
        throw std::invalid_argument("attention_fast: path must be 'auto', 'ref', 'avx512' or 'avx2', got '" + path + "'");
    }
    attend_fast_with(isa, q.data(), n_q, hd, scale, t.kv, cells.data(), n, scratch.data(), out.mutable_data());
    return out;
}

// The branch-free f16 widening the attention kernel uses (common/fp16.h), for an exhaustive test.
py::array_t<float> py_fp16_to_fp32_fast(const py::array_t<uint16_t, py::array::c_style | py::array::forcecast>& h) {
    py::array_t<float> out(h.size());
    for (ssize_t i = 0; i < h.size(); ++i) out.mutable_data()[i] = fp16_to_fp32_fast(h.data()[i]);
    return out;
}

py::array_t<float> py_round_to_f16(const f32_array& x) {
    py::array_t<float> out(x.size());
    std::memcpy(out.mutable_data(), x.data(), static_cast<size_t>(x.size()) * sizeof(float));
    round_to_f16(out.mutable_data(), x.size());
    return out;
}

} // namespace

void register_kernels(py::module_& m) {
    m.def("attention", &py_attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("cell_pos"), py::arg("cells"),
          py::arg("scale"), py::arg("one_row") = false, py::arg("ref") = false, py::arg("kv_type") = "f16",
          "Attention of one query (head_dim,) over cells (visible cells in position order) of k, v\n"
          "(n_cells, head_dim) with positions cell_pos, in llama.cpp's f16 arithmetic, k and v stored as\n"
          "kv_type ('f16' or 'q8_0'); ref=True runs the scalar reference instead of the tiled kernel (the\n"
          "two must agree bit for bit).");
    m.def("attention_fast", &py_attention_fast, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("cell_pos"),
          py::arg("cells"), py::arg("scale"), py::arg("path") = "auto", py::arg("kv_type") = "f16",
          "Attention of the query heads q (n_q, head_dim) that share one KV head over cells of k, v\n"
          "(n_cells, head_dim) with positions cell_pos, by the default mode's kernel (attend_fast); path:\n"
          "'auto' (the one in force), 'ref' (the scalar reference), 'avx512' or 'avx2' (ValueError if\n"
          "this CPU lacks it). Returns (n_q, head_dim) float32.");
    m.def("attention_fast_paths", &attention_fast_paths,
          "The SIMD paths of the default mode's attention kernel this CPU can run ('avx512', 'avx2').");
    m.def("attention_fast_path", &attend_fast_path,
          "The path the default mode's attention kernel takes on this CPU ('avx512', 'avx2' or 'scalar').");
    m.def("fp16_to_fp32_fast", &py_fp16_to_fp32_fast, py::arg("h"),
          "f16 bit patterns (uint16) widened to float32 by the attention kernel's branch-free conversion.");
    m.def("round_to_f16", &py_round_to_f16, py::arg("x"),
          "Each value of x (float32, flattened) rounded to the nearest f16, as the KV cache stores it.");
    m.def("matmul", &py_matmul, py::arg("type"), py::arg("w"), py::arg("n_in"), py::arg("x"),
          py::arg("n_threads") = 1, py::arg("ref") = false, py::arg("exact_rows") = false,
          py::arg("repacked") = py::none(),
          "y = x @ W.T for a weight W of a ggml type given as raw rows (n_out, row_bytes) uint8 and\n"
          "x (n_rows, n_in) float32; returns (n_rows, n_out) float32. ref=True uses the double-precision\n"
          "reference (dequantized weights, unquantized activations) instead of the kernels in force.\n"
          "exact_rows=True makes every output row bit-identical to a one-row call (speculative\n"
          "verification); False lets prompt-sized batches take llama.cpp's batched summation orders.\n"
          "repacked: repack(type, w, n_in) of the same w; the product then runs over it in the repacked\n"
          "summation order (quant/repack.h), every row exact.");
    m.def("repack", &py_repack, py::arg("type"), py::arg("w"), py::arg("n_in"),
          "Row-interleaved copy (1-D uint8) of weight rows w (n_out, row_bytes) of a ggml type with a\n"
          "repacked layout (q4_0, q4_1, q5_0, q8_0), for matmul(..., repacked=...).");
    m.def("stream_read_gbps", &py_stream_read_gbps, py::arg("buf"), py::arg("n_threads") = 1,
          py::arg("repeats") = 3,
          "Best-of-`repeats` GB/s (1e9 bytes/s) of a plain streaming read of buf on n_threads threads:\n"
          "the memory-bandwidth baseline for matvec benchmarks.");
    m.def("stream_read_sum", &py_stream_read_sum, py::arg("buf"), py::arg("n_threads") = 1,
          "The streaming-read kernel itself: wrapping uint64 sum of buf's little-endian 8-byte words plus\n"
          "its trailing bytes (for checking the kernel and timing it from Python).");
    py::class_<thread_pool>(m, "ThreadPool", "Persistent worker threads (for tests of the pool itself).")
        .def(py::init<int>(), py::arg("n_threads"))
        .def_property_readonly("n_threads", &thread_pool::n_threads)
        .def("smoke", &py_pool_smoke, py::arg("n_calls"), py::arg("throw_ith") = -1,
             "Runs n_calls parallel_for calls; returns per-ith run counts (n_threads,) int64. throw_ith\n"
             "makes that thread raise on the last call, which must surface here as RuntimeError.");
}

} // namespace pipeinfer
