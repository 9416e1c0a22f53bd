// Scalar reference kernels (the oracle for every SIMD path). Owner: quant reference work.
#include "quant/type-traits.h"

namespace pipeinfer {

void register_kernels_ref(type_traits* table) {
    (void)table;
}

} // namespace pipeinfer
