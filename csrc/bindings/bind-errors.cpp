// Maps the C++ exception types of common/error.h to Python classes. Each subclasses the built-in that
// generic handlers expect (ValueError for bad input, RuntimeError for runtime faults) and the
// package-wide pipeinfer.PipeinferError.
#include <pybind11/pybind11.h>

#include <cstring>

#include "bindings/register.h"
#include "common/error.h"

namespace py = pybind11;

namespace pipeinfer {

namespace {

// The message as a Python str. Messages quote names and values read from files (GGUF strings, paths),
// which may hold any bytes: invalid UTF-8 is shown as \xNN escapes, so that translating the error can
// never fail with a UnicodeDecodeError of its own.
py::str message_of(const std::exception& e) {
    const char* what = e.what();
    PyObject* s = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace");
    if (s == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(s);
}

void set_error(const py::object& type, const std::exception& e) { PyErr_SetObject(type.ptr(), message_of(e).ptr()); }

} // namespace

void register_errors(py::module_& m) {
    static py::exception<std::exception> base(m, "PipeinferError", PyExc_Exception);
    auto make = [&](const char* name, PyObject* builtin) {
        py::tuple bases = py::make_tuple(base, py::handle(builtin));
        py::object cls = py::reinterpret_steal<py::object>(
            PyErr_NewException((std::string("pipeinfer.") + name).c_str(), bases.ptr(), nullptr));
        m.attr(name) = cls;
        return cls;
    };
    static py::object gguf = make("GGUFError", PyExc_ValueError);
    static py::object shape = make("ShapeError", PyExc_ValueError);
    static py::object unsup = make("UnsupportedError", PyExc_ValueError);
    static py::object model = make("ModelError", PyExc_ValueError);
    static py::object kvfull = make("KVCacheFullError", PyExc_RuntimeError);
    static py::object transport = make("TransportError", PyExc_RuntimeError);
    static py::object memory = make("InsufficientMemoryError", PyExc_MemoryError);

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const gguf_error& e) {
            set_error(gguf, e);
        } catch (const shape_error& e) {
            set_error(shape, e);
        } catch (const unsupported_type& e) {
            set_error(unsup, e);
        } catch (const model_error& e) {
            set_error(model, e);
        } catch (const kv_full_error& e) {
            set_error(kvfull, e);
        } catch (const memory_error& e) {
            set_error(memory, e);
        } catch (const transport_error& e) {
            py::object exc = transport(message_of(e));
            exc.attr("rank") = e.rank;
            exc.attr("code") = e.code;
            PyErr_SetObject(transport.ptr(), exc.ptr());
        } catch (const py::builtin_exception&) {
            throw;  // pybind11's own (value_error, stop_iteration, ...): its translator handles them
        } catch (const std::overflow_error&) {
            throw;  // OverflowError, as pybind11 translates it
        } catch (const std::range_error&) {
            throw;  // ValueError, as pybind11 translates it
        } catch (const std::invalid_argument& e) {
            // Plain engine errors, translated as pybind11 would (ValueError / RuntimeError) but with the
            // message escaped.
            set_error(py::reinterpret_borrow<py::object>(PyExc_ValueError), e);
        } catch (const std::runtime_error& e) {
            set_error(py::reinterpret_borrow<py::object>(PyExc_RuntimeError), e);
        }
    });
}

} // namespace pipeinfer
