#include "kv/kv-ring.h"

#include <stdexcept>

#include "common/assert.h"
#include "common/error.h"

namespace pipeinfer {

kv_ring::kv_ring(int n_buffers, int n_branches) : n_buffers_(n_buffers), n_branches_(n_branches) {
    if (n_buffers < 1 || n_buffers > 4096) {
        throw std::invalid_argument(format("speculative buffers must be in [1, 4096], got %d", n_buffers));
    }
    if (n_branches < 1 || n_branches > 64) {
        throw std::invalid_argument(format("branches per buffer must be in [1, 64], got %d", n_branches));
    }
    used_.assign(static_cast<size_t>(n_buffers), 0);
    for (int b = n_buffers - 1; b >= 0; --b) free_.push_back(b);
}

int kv_ring::acquire() {
    if (free_.empty()) return -1;
    const int b = free_.back();
    free_.pop_back();
    used_[static_cast<size_t>(b)] = 1;
    return b;
}

void kv_ring::release(int b) {
    if (b < 0 || b >= n_buffers_) throw std::invalid_argument(format("no speculative buffer %d", b));
    if (!used_[static_cast<size_t>(b)]) throw std::invalid_argument(format("speculative buffer %d is not in use", b));
    used_[static_cast<size_t>(b)] = 0;
    free_.push_back(b);
}

bool kv_ring::in_use(int b) const { return b >= 0 && b < n_buffers_ && used_[static_cast<size_t>(b)] != 0; }

int kv_ring::seq(int b, int j) const {
    if (b < 0 || b >= n_buffers_ || j < 0 || j >= n_branches_) {
        throw std::invalid_argument(format("no branch %d of speculative buffer %d", j, b));
    }
    return 1 + b * n_branches_ + j;
}

} // namespace pipeinfer
