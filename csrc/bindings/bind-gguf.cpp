// _core.GGUFFile: the strict GGUF reader (gguf/gguf-reader.h) seen from Python. Converts metadata to
// Python values and exposes tensor bytes as read-only zero-copy numpy views; parses nothing itself.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bindings/register.h"
#include "common/error.h"
#include "gguf/gguf-reader.h"

namespace py = pybind11;

namespace pipeinfer {

namespace {

// The Python object: the parsed file plus whatever keeps its bytes alive. For a path the mapping is
// owned by `file`; for from_bytes, `owner` holds the bytes object the parser points into.
struct py_gguf_file {
    std::unique_ptr<gguf_file> file;
    py::object owner = py::none();  // bytes object (from_bytes) or None
    py::object path = py::none();   // str (constructor) or None
};

// numpy dtype of one array element, explicitly little-endian as stored in the file.
const char* numpy_dtype(gguf_value_type t) {
    switch (t) {
    case gguf_value_type::UINT8: return "<u1";
    case gguf_value_type::INT8: return "<i1";
    case gguf_value_type::UINT16: return "<u2";
    case gguf_value_type::INT16: return "<i2";
    case gguf_value_type::UINT32: return "<u4";
    case gguf_value_type::INT32: return "<i4";
    case gguf_value_type::FLOAT32: return "<f4";
    case gguf_value_type::BOOL: return "?";
    case gguf_value_type::UINT64: return "<u8";
    case gguf_value_type::INT64: return "<i8";
    case gguf_value_type::FLOAT64: return "<f8";
    default: return nullptr;
    }
}

// String metadata may hold any bytes; invalid UTF-8 becomes U+FFFD rather than an error.
py::object decode_str(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
}

py::object to_python(const gguf_value& v) {
    switch (v.type) {
    case gguf_value_type::UINT8:
    case gguf_value_type::UINT16:
    case gguf_value_type::UINT32:
    case gguf_value_type::UINT64: return py::int_(v.u);
    case gguf_value_type::INT8:
    case gguf_value_type::INT16:
    case gguf_value_type::INT32:
    case gguf_value_type::INT64: return py::int_(v.i);
    case gguf_value_type::FLOAT32:
    case gguf_value_type::FLOAT64: return py::float_(v.f);
    case gguf_value_type::BOOL: return py::bool_(v.u != 0);
    case gguf_value_type::STRING: return decode_str(v.s);
    case gguf_value_type::ARRAY: break;
    default: throw gguf_error("internal: unknown metadata value type");
    }
    if (v.arr_type == gguf_value_type::STRING) {
        py::list out(v.arr_str.size());
        for (size_t k = 0; k < v.arr_str.size(); ++k) out[k] = decode_str(v.arr_str[k]);
        return std::move(out);
    }
    // (arr_n,) numeric array, a copy of the raw little-endian bytes.
    const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(v.arr_n)};
    py::array out(py::dtype(numpy_dtype(v.arr_type)), shape);
    if (!v.arr_raw.empty()) std::memcpy(out.mutable_data(), v.arr_raw.data(), v.arr_raw.size());
    return std::move(out);
}

py::dict tensor_dict(const gguf_file& f, const gguf_tensor_info& t) {
    py::dict d;
    d["name"] = py::str(t.name);
    d["type"] = py::str(get_type_traits(t.type).name);
    d["type_id"] = static_cast<uint32_t>(t.type);
    py::list shape;
    for (uint32_t j = 0; j < t.n_dims; ++j) shape.append(t.ne[j]);
    d["shape"] = shape;
    d["offset"] = static_cast<uint64_t>(f.data_offset() + t.offset);
    d["nbytes"] = static_cast<uint64_t>(t.nbytes);
    return d;
}

} // namespace

std::string path_bytes(const py::handle& path) {
    return py::module_::import("os").attr("fsencode")(path).cast<std::string>();
}

void register_gguf(py::module_& m) {
    py::class_<py_gguf_file>(m, "GGUFFile",
                             "A GGUF file parsed by the strict reader. Malformed files raise GGUFError.")
        .def(py::init([](py::object path) {
                 auto self = std::make_unique<py_gguf_file>();
                 self->path = py::module_::import("os").attr("fsdecode")(path);
                 const std::string p = path_bytes(path);
                 {
                     // Safe: from_path only reads `p` (a C++ copy) and the mapped file; it touches
                     // no Python object, and the result is stored only after the GIL is back.
                     py::gil_scoped_release nogil;
                     self->file = gguf_file::from_path(p);
                 }
                 return self;
             }),
             py::arg("path"), "Maps and parses the GGUF file at `path` (str or os.PathLike).")
        .def_static(
            "from_bytes",
            [](py::bytes data) {
                auto self = std::make_unique<py_gguf_file>();
                char* buf = nullptr;
                Py_ssize_t n = 0;
                if (PyBytes_AsStringAndSize(data.ptr(), &buf, &n) != 0) throw py::error_already_set();
                self->owner = data;
                {
                    // Safe: bytes objects are immutable and `owner` holds a reference, so the buffer
                    // stays valid and unchanged while the parser reads it without the GIL.
                    py::gil_scoped_release nogil;
                    self->file = gguf_file::from_buffer(reinterpret_cast<const uint8_t*>(buf),
                                                        static_cast<size_t>(n), "<bytes>");
                }
                return self;
            },
            py::arg("data"), "Parses a GGUF image held in a bytes object (kept alive by the result).")
        .def_property_readonly("version", [](const py_gguf_file& s) { return s.file->version(); })
        .def_property_readonly("alignment", [](const py_gguf_file& s) { return s.file->alignment(); })
        .def_property_readonly("data_offset", [](const py_gguf_file& s) { return s.file->data_offset(); })
        .def_property_readonly("file_size", [](const py_gguf_file& s) { return s.file->file_size(); })
        .def_property_readonly("path", [](const py_gguf_file& s) { return s.path; })
        .def("check_unchanged", [](const py_gguf_file& s) { s.file->check_unchanged(); },
             "Raises GGUFError if the file was replaced, resized or modified since it was parsed.")
        .def(
            "metadata",
            [](const py_gguf_file& s) {
                py::dict out;  // insertion order = file order
                for (const auto& kv : s.file->kv()) out[py::str(kv.first)] = to_python(kv.second);
                return out;
            },
            "Metadata in file order: str, int, float, bool, numpy arrays (numeric arrays) and list[str].")
        .def(
            "metadata_types",
            [](const py_gguf_file& s) {
                py::dict out;
                for (const auto& kv : s.file->kv()) out[py::str(kv.first)] = py::str(gguf_type_spelling(kv.second));
                return out;
            },
            "Key -> type spelling: 'u32', 'f32', 'str', 'arr[str,151936]', ...")
        .def(
            "tensors",
            [](const py_gguf_file& s) {
                py::list out;
                for (const auto& t : s.file->tensors()) out.append(tensor_dict(*s.file, t));
                return out;
            },
            "Tensor table in file order: dicts {name, type, type_id, shape (ne0 first), offset "
            "(absolute), nbytes}.")
        .def(
            "tensor_data",
            [](py::object self_obj, const std::string& name) {
                const py_gguf_file& s = self_obj.cast<const py_gguf_file&>();
                const gguf_tensor_info* t = s.file->find_tensor(name);
                if (t == nullptr) throw py::key_error("no tensor named '" + name + "' in the GGUF file");
                // (nbytes,) uint8 view into the file; its base is this GGUFFile, which keeps the
                // mapping (or the bytes object) alive.
                const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(t->nbytes)};
                const std::vector<py::ssize_t> strides{1};
                py::array view(py::dtype("uint8"), shape, strides, t->data, self_obj);
                view.attr("setflags")(py::arg("write") = false);
                return view;
            },
            py::arg("name"), "Read-only zero-copy uint8 view of a tensor's bytes (KeyError if absent).")
        // The C++ typed getters, as the model loader sees them (GGUFError on a missing key, a wrong
        // type or a value that does not fit; default=None means the key is required).
        .def(
            "get_str",
            [](const py_gguf_file& s, const std::string& key, py::object dflt) -> py::object {
                if (!dflt.is_none() && s.file->find(key) == nullptr) return dflt;
                return decode_str(s.file->get_str(key));
            },
            py::arg("key"), py::arg("default") = py::none())
        .def(
            "get_int",
            [](const py_gguf_file& s, const std::string& key, py::object dflt) -> py::object {
                if (!dflt.is_none() && s.file->find(key) == nullptr) return dflt;
                return py::int_(s.file->get_int(key));
            },
            py::arg("key"), py::arg("default") = py::none())
        .def(
            "get_float",
            [](const py_gguf_file& s, const std::string& key, py::object dflt) -> py::object {
                if (!dflt.is_none() && s.file->find(key) == nullptr) return dflt;
                return py::float_(s.file->get_float(key));
            },
            py::arg("key"), py::arg("default") = py::none())
        .def(
            "get_bool",
            [](const py_gguf_file& s, const std::string& key, py::object dflt) -> py::object {
                if (!dflt.is_none() && s.file->find(key) == nullptr) return dflt;
                return py::bool_(s.file->get_bool(key));
            },
            py::arg("key"), py::arg("default") = py::none())
        .def(
            "get_str_array",
            [](const py_gguf_file& s, const std::string& key) {
                py::list out;
                for (const auto& x : s.file->get_str_array(key)) out.append(decode_str(x));
                return out;
            },
            py::arg("key"))
        .def(
            "get_f32_array",
            [](const py_gguf_file& s, const std::string& key) {
                const std::vector<float> v = s.file->get_f32_array(key);
                return py::array_t<float>(static_cast<py::ssize_t>(v.size()), v.data());
            },
            py::arg("key"))
        .def(
            "get_i32_array",
            [](const py_gguf_file& s, const std::string& key) {
                const std::vector<int32_t> v = s.file->get_i32_array(key);
                return py::array_t<int32_t>(static_cast<py::ssize_t>(v.size()), v.data());
            },
            py::arg("key"))
        .def("__repr__", [](const py_gguf_file& s) {
            return "<GGUFFile " + s.file->source() + " v" + std::to_string(s.file->version()) + ", " +
                   std::to_string(s.file->kv().size()) + " keys, " + std::to_string(s.file->tensors().size()) +
                   " tensors>";
        });
}

} // namespace pipeinfer
