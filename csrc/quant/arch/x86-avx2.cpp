// avx2 overrides for the traits table (see quant/arch/arch.h).
#include "quant/arch/arch.h"

namespace pipeinfer {

void register_kernels_avx2(type_traits* table) {
    (void)table;
}

} // namespace pipeinfer
