// Maps the C++ exception types of common/error.h to Python classes. Each subclasses the built-in that
// generic handlers expect (ValueError for bad input, RuntimeError for runtime faults) and the
// package-wide pipeinfer.PipeinferError.
#include <pybind11/pybind11.h>

#include "bindings/register.h"
#include "common/error.h"

namespace py = pybind11;

namespace pipeinfer {

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
            PyErr_SetString(gguf.ptr(), e.what());
        } catch (const shape_error& e) {
            PyErr_SetString(shape.ptr(), e.what());
        } catch (const unsupported_type& e) {
            PyErr_SetString(unsup.ptr(), e.what());
        } catch (const model_error& e) {
            PyErr_SetString(model.ptr(), e.what());
        } catch (const kv_full_error& e) {
            PyErr_SetString(kvfull.ptr(), e.what());
        } catch (const memory_error& e) {
            PyErr_SetString(memory.ptr(), e.what());
        } catch (const transport_error& e) {
            py::object exc = transport(e.what());
            exc.attr("rank") = e.rank;
            exc.attr("code") = e.code;
            PyErr_SetObject(transport.ptr(), exc.ptr());
        }
    });
}

} // namespace pipeinfer
