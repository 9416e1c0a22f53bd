// pipeinfer._core: the private extension module. The public API is the pipeinfer package.
#include "bindings/register.h"

PYBIND11_MODULE(_core, m) {
    m.doc() = "pipeinfer native core (private; use the pipeinfer package)";
    pipeinfer::register_errors(m);
    pipeinfer::register_gguf(m);
    pipeinfer::register_quant(m);
    pipeinfer::register_kernels(m);
    pipeinfer::register_kv(m);
    pipeinfer::register_transport(m);
    pipeinfer::register_draft(m);
    pipeinfer::register_model(m);
    pipeinfer::register_log(m);
}
