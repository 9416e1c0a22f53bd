#include "bindings/register.h"

namespace py = pybind11;

namespace pipeinfer {

void register_transport(py::module_& m) {
}

} // namespace pipeinfer
