// Python access to the traits table of quant/type-traits.h, for tests and tools: the table itself,
// dequantize / quantize of raw block bytes, one weight row's vec_dot against several activation
// rows, and the kernel ISA switch. No algorithms here: every call goes through a table row, so the
// functions test exactly what the engine runs (reference or SIMD, whichever is in force).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>
#include <vector>

#include "bindings/register.h"
#include "common/error.h"
#include "quant/type-traits.h"

namespace py = pybind11;

namespace pipeinfer {

namespace {

// Row of the traits table for a type name ("q4_k"; case-insensitive). Throws unsupported_type.
const type_traits& traits_by_name(const std::string& name, ggml_type* id_out = nullptr) {
    std::string key = name;
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string known;
    for (uint32_t id = 0; id < static_cast<uint32_t>(ggml_type::COUNT); ++id) {
        const type_traits& tt = get_type_traits(id);
        if (tt.block_size == 0) continue;
        if (key == tt.name) {
            if (id_out) *id_out = static_cast<ggml_type>(id);
            return tt;
        }
        known += known.empty() ? "" : ", ";
        known += tt.name;
    }
    throw unsupported_type(format("unknown quant type '%s' (known: %s)", name.c_str(), known.c_str()));
}

// Bytes of any C-contiguous buffer (bytes, bytearray, memoryview, numpy array), copied into
// memory aligned for every block struct. The copy also makes the data safe to read with the GIL
// released.
std::vector<uint8_t> buffer_bytes(const py::object& obj, const char* what) {
    if (!PyObject_CheckBuffer(obj.ptr())) {
        throw shape_error(format("%s: expected bytes or a numpy uint8 array, got %s", what,
                                 std::string(py::str(py::type::of(obj).attr("__name__"))).c_str()));
    }
    // numpy arrays with strides are made contiguous; other buffers must already be.
    const py::object src = py::isinstance<py::array>(obj) ? py::object(py::array::ensure(obj, py::array::c_style)) : obj;
    const py::buffer buf = py::reinterpret_borrow<py::buffer>(src);
    py::buffer_info info = buf.request();
    size_t nbytes = static_cast<size_t>(info.itemsize);
    ssize_t expect = info.itemsize;
    for (ssize_t d = info.ndim - 1; d >= 0; --d) {
        if (info.shape[d] != 1 && info.strides[d] != expect) {
            throw shape_error(format("%s: buffer must be C-contiguous", what));
        }
        expect *= info.shape[d];
    }
    for (ssize_t d = 0; d < info.ndim; ++d) nbytes *= static_cast<size_t>(info.shape[d]);
    std::vector<uint8_t> out(nbytes);
    if (nbytes) std::memcpy(out.data(), info.ptr, nbytes);
    return out;
}

void check_row_bytes(const type_traits& tt, ggml_type t, int64_t n, size_t got, const char* what) {
    if (n < 0) throw shape_error(format("%s: n must be >= 0, got %lld", what, static_cast<long long>(n)));
    const size_t want = row_size(t, n);  // throws shape_error if n is not a multiple of the block size
    if (got != want) {
        throw shape_error(format("%s: %lld values of type %s need %zu bytes (%lld blocks of %zu), got %zu", what,
                                 static_cast<long long>(n), tt.name, want,
                                 static_cast<long long>(n / tt.block_size), tt.type_size, got));
    }
}

py::list quant_types() {
    py::list out;
    for (uint32_t id = 0; id < static_cast<uint32_t>(ggml_type::COUNT); ++id) {
        const type_traits& tt = get_type_traits(id);
        if (tt.block_size == 0) continue;
        py::dict row;
        row["name"] = tt.name;
        row["id"] = id;
        row["block_size"] = tt.block_size;
        row["type_size"] = tt.type_size;
        row["vec_dot_type"] = tt.vec_dot ? py::object(py::str(get_type_traits(tt.vec_dot_type).name)) : py::none();
        row["can_dequantize"] = tt.to_float != nullptr;
        row["can_quantize"] = tt.from_float != nullptr;
        row["can_dot"] = tt.vec_dot != nullptr;
        out.append(row);
    }
    return out;
}

py::array_t<float> dequantize(const std::string& type, const py::object& data, int64_t n) {
    ggml_type t;
    const type_traits& tt = traits_by_name(type, &t);
    if (!tt.to_float) throw unsupported_type(format("dequantize: type %s cannot be dequantized here", tt.name));
    const std::vector<uint8_t> bytes = buffer_bytes(data, "dequantize: data");
    check_row_bytes(tt, t, n, bytes.size(), "dequantize");
    py::array_t<float> out(n);  // (n,) f32
    float* dst = out.mutable_data();
    {
        // Safe: inputs are owned copies and dst was obtained above; no Python object is touched.
        py::gil_scoped_release release;
        tt.to_float(bytes.data(), dst, n);
    }
    return out;
}

py::array_t<uint8_t> quantize(const std::string& type, const py::array_t<float, py::array::c_style | py::array::forcecast>& x) {
    ggml_type t;
    const type_traits& tt = traits_by_name(type, &t);
    if (!tt.from_float) throw unsupported_type(format("quantize: type %s has no quantizer here", tt.name));
    if (x.ndim() != 1) {
        throw shape_error(format("quantize: x must be 1-D float32, got %lld dimensions", static_cast<long long>(x.ndim())));
    }
    const int64_t n = x.shape(0);
    const size_t nbytes = row_size(t, n);  // throws shape_error if n is not a multiple of the block size
    std::vector<float> src(x.data(), x.data() + n);
    py::array_t<uint8_t> out(static_cast<py::ssize_t>(nbytes));  // (row bytes,) u8 blocks
    std::vector<uint8_t> dst(nbytes);  // aligned scratch for the block structs
    {
        // Safe: src/dst are owned C++ buffers; no Python object is touched.
        py::gil_scoped_release release;
        tt.from_float(src.data(), dst.data(), n);
    }
    if (nbytes) std::memcpy(out.mutable_data(), dst.data(), nbytes);
    return out;
}

py::array_t<float> vec_dot(const std::string& type, const py::object& w_row, const py::object& act, int64_t n) {
    ggml_type t;
    const type_traits& tt = traits_by_name(type, &t);
    if (!tt.vec_dot) throw unsupported_type(format("vec_dot: type %s cannot be a matmul weight here", tt.name));
    const type_traits& at = get_type_traits(tt.vec_dot_type);
    const std::vector<uint8_t> w = buffer_bytes(w_row, "vec_dot: w_row");
    check_row_bytes(tt, t, n, w.size(), "vec_dot: w_row");
    const size_t act_row = row_size(tt.vec_dot_type, n);
    if (!py::isinstance<py::array>(act)) {
        throw shape_error(format("vec_dot: act must be a 2-D numpy uint8 array (n_act, %zu), one %s row each",
                                 act_row, at.name));
    }
    const py::array a = py::reinterpret_borrow<py::array>(act);
    if (a.ndim() != 2 || a.itemsize() != 1) {
        throw shape_error(format("vec_dot: act must be a 2-D uint8 array (n_act, %zu) of %s rows, got %lld-D with "
                                 "%lld-byte items",
                                 act_row, at.name, static_cast<long long>(a.ndim()),
                                 static_cast<long long>(a.itemsize())));
    }
    if (static_cast<size_t>(a.shape(1)) != act_row) {
        throw shape_error(format("vec_dot: act rows of %lld values of type %s need %zu bytes, got %lld",
                                 static_cast<long long>(n), at.name, act_row, static_cast<long long>(a.shape(1))));
    }
    const int n_act = static_cast<int>(a.shape(0));
    const std::vector<uint8_t> y = buffer_bytes(a, "vec_dot: act");
    py::array_t<float> out(n_act);  // (n_act,) f32
    float* s = out.mutable_data();
    if (n_act > 0) {
        // Safe: w/y are owned copies and s was obtained above; no Python object is touched.
        py::gil_scoped_release release;
        tt.vec_dot(n, w.data(), y.data(), act_row, n_act, s);
    }
    return out;
}

} // namespace

void register_quant(py::module_& m) {
    m.def("quant_types", &quant_types,
          "Rows of the type-traits table: list of dicts {name, id, block_size, type_size, vec_dot_type "
          "(name or None), can_dequantize, can_quantize, can_dot}.");
    m.def("dequantize", &dequantize, py::arg("type"), py::arg("data"), py::arg("n"),
          "Dequantizes n values of `type` from raw block bytes (bytes or uint8 array) -> float32[n].");
    m.def("quantize", &quantize, py::arg("type"), py::arg("x"),
          "Quantizes a 1-D float32 array into raw blocks of `type` -> uint8[row bytes].");
    m.def("vec_dot", &vec_dot, py::arg("type"), py::arg("w_row"), py::arg("act"), py::arg("n"),
          "Dot products of one weight row (n values of `type`, raw bytes) with each row of act "
          "(uint8 (n_act, row bytes of the type's vec_dot_type)) -> float32[n_act].");
    m.def("kernel_isa", []() { return std::string(kernel_isa()); },
          "SIMD level of the kernels in force: 'scalar', 'avx2' or 'avx512'.");
    m.def("set_kernel_isa", [](const std::string& isa) { return std::string(set_kernel_isa(isa.c_str())); },
          py::arg("isa"),
          "Selects the kernels: 'scalar' (reference) or a SIMD level capped by the CPU; returns the level in force.");
}

} // namespace pipeinfer
