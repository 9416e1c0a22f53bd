// One register_* function per concept; module.cpp calls them in order. Binding files convert
// arguments and translate results; they hold no algorithms.
#pragma once
#include <pybind11/pybind11.h>

namespace pipeinfer {
void register_errors(pybind11::module_& m);
void register_gguf(pybind11::module_& m);
void register_quant(pybind11::module_& m);
void register_kernels(pybind11::module_& m);
void register_kv(pybind11::module_& m);
void register_transport(pybind11::module_& m);
void register_model(pybind11::module_& m);
void register_draft(pybind11::module_& m);
// A path argument (str, bytes or os.PathLike) as the file system's bytes (os.fsencode), so that a
// file name that is not valid UTF-8 still opens.
std::string path_bytes(const pybind11::handle& path);
// Registers, once, the interpreter-exit hook of MPI transports (bind-transport.cpp); called before
// any binding creates one.
void register_mpi_exit_hook();
void register_log(pybind11::module_& m);
class pipeline;
// The head's draft-channel methods of _core.Pipeline (bind-draft.cpp), added by register_model.
void register_pipeline_draft(pybind11::class_<pipeline>& cls);
} // namespace pipeinfer
