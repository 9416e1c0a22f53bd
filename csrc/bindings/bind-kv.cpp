// Python handle of one KV cache's bookkeeping (kv/kv-cache.h), for tests of the cell allocator and the
// sequence operations: cells, blocks and visible lists, with a one-layer cache of a few values per
// token (the K/V data is never read here). Arguments are converted and validated here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/register.h"
#include "common/error.h"
#include "kv/kv-cache.h"

namespace py = pybind11;

namespace pipeinfer {

namespace {

using i32_array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// The batch's per-token sequence lists; `pos` and `seqs` must have one entry per token.
seq_lists to_seq_lists(const std::vector<std::vector<int32_t>>& seqs, size_t n_tokens) {
    if (seqs.size() != n_tokens) {
        throw shape_error(format("KVCache: %zu positions but %zu sequence lists", n_tokens, seqs.size()));
    }
    seq_lists out;
    out.offsets.push_back(0);
    for (const std::vector<int32_t>& s : seqs) {
        out.ids.insert(out.ids.end(), s.begin(), s.end());
        out.offsets.push_back(static_cast<int32_t>(out.ids.size()));
    }
    return out;
}

std::vector<int32_t> to_vector(const i32_array& a) {
    if (a.ndim() != 1) throw shape_error("KVCache: positions must be 1-d");
    return std::vector<int32_t>(a.data(), a.data() + a.size());
}

py::array_t<int32_t> py_allocate(kv_cache& kv, const i32_array& pos, const std::vector<std::vector<int32_t>>& seqs) {
    const std::vector<int32_t> p = to_vector(pos);
    const std::vector<int32_t> cells = kv.allocate(p, to_seq_lists(seqs, p.size()));
    return py::array_t<int32_t>(static_cast<py::ssize_t>(cells.size()), cells.data());
}

std::vector<py::array_t<int32_t>> py_visible_cells(const kv_cache& kv, const i32_array& pos,
                                                   const std::vector<std::vector<int32_t>>& seqs) {
    const std::vector<int32_t> p = to_vector(pos);
    std::vector<std::vector<int32_t>> vis;
    kv.visible_cells(p, to_seq_lists(seqs, p.size()), vis);
    std::vector<py::array_t<int32_t>> out;
    for (const std::vector<int32_t>& v : vis) out.emplace_back(static_cast<py::ssize_t>(v.size()), v.data());
    return out;
}

py::array_t<int32_t> py_block_owners(const kv_cache& kv) {
    py::array_t<int32_t> out(kv.n_blocks());
    for (int64_t b = 0; b < kv.n_blocks(); ++b) out.mutable_data()[b] = kv.block_owner(b);
    return out;
}

// Byte offset within a 64-byte cache line of the first K value of every cell-0 row of each KV head
// (n_head_kv = n_embd / head_dim heads, head_dim rows each), f16 storage.
py::array_t<int64_t> py_k_row_line_offsets(const kv_cache& kv, int64_t head_dim) {
    if (head_dim < 1 || kv.n_embd_k() % head_dim != 0) {
        throw std::invalid_argument(format("KVCache: head_dim %lld does not divide n_embd %lld", (long long)head_dim,
                                           (long long)kv.n_embd_k()));
    }
    const int64_t n_head = kv.n_embd_k() / head_dim;
    py::array_t<int64_t> out(n_head * head_dim);
    for (int64_t g = 0; g < n_head; ++g) {
        const attn_kv v = kv.head_view(0, g, head_dim);
        for (int64_t x = 0; x < head_dim; ++x) {
            const auto* row = static_cast<const uint16_t*>(v.k) + x * v.k_stride;
            out.mutable_data()[g * head_dim + x] = static_cast<int64_t>(reinterpret_cast<uintptr_t>(row) % 64);
        }
    }
    return out;
}

py::array_t<int32_t> py_positions(const kv_cache& kv) {
    return py::array_t<int32_t>(kv.n_ctx(), kv.positions());
}

} // namespace

void register_kv(py::module_& m) {
    py::class_<kv_cache>(m, "KVCache",
                         "One KV cache's bookkeeping (test hook): a one-layer cache of n_ctx cells with n_embd\n"
                         "f16 values per token, sequence ids in [0, n_seq_max), sequence groups of seq_group ids.")
        .def(py::init([](int64_t n_ctx, int n_seq_max, int seq_group, int64_t n_embd) {
                 return new kv_cache(1, n_ctx, n_embd, n_embd, n_seq_max, seq_group);
             }),
             py::arg("n_ctx"), py::arg("n_seq_max"), py::arg("seq_group") = 0, py::arg("n_embd") = 8)
        .def("allocate", &py_allocate, py::arg("pos"), py::arg("seqs"),
             "Cells (int32) for tokens at positions pos, token i in the sequences seqs[i]; KVCacheFullError\n"
             "(nothing allocated) when fewer cells are free.")
        .def("visible_cells", &py_visible_cells, py::arg("pos"), py::arg("seqs"),
             "For each token, the cells it attends to, in position order.")
        .def("seq_rm", &kv_cache::seq_rm, py::arg("seq"), py::arg("p0"), py::arg("p1"))
        .def("seq_cp", &kv_cache::seq_cp, py::arg("src"), py::arg("dst"), py::arg("p0"), py::arg("p1"))
        .def("seq_keep", &kv_cache::seq_keep, py::arg("seq"))
        .def("clear", &kv_cache::clear)
        .def("seq_n_cells", &kv_cache::seq_n_cells, py::arg("seq"))
        .def("block_owners", &py_block_owners,
             "The group owning each block of block_cells cells (int32, -1: no cell of it in use).")
        .def("positions", &py_positions, "Position of every cell (int32, -1 where free).")
        .def("k_row_line_offsets", &py_k_row_line_offsets, py::arg("head_dim"),
             "Byte offset within a 64-byte line of each K row (cell 0) of each KV head (int64).")
        .def_property_readonly("k_t_stride", [](const kv_cache& kv) { return kv.k_t_stride(); })
        .def_property_readonly("n_used", &kv_cache::n_used)
        .def_property_readonly("n_free", &kv_cache::n_free)
        .def_property_readonly("used_end", &kv_cache::used_end)
        .def_property_readonly_static("block_cells", [](const py::object&) { return kv_cache::block_cells; });
}

} // namespace pipeinfer
