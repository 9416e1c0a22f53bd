// An allocator of memory aligned to a 64-byte cache line, for std::vector buffers whose rows must
// start on a line (the KV cache: an f16 K row of 32 neighbouring cells is then exactly one line).
// Owns nothing else; C++17 aligned operator new does the work.
#pragma once
#include <cstddef>
#include <new>

namespace pipeinfer {

constexpr size_t cache_line_bytes = 64;

template <class T>
struct line_allocator {
    using value_type = T;
    line_allocator() = default;
    template <class U>
    line_allocator(const line_allocator<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{cache_line_bytes})); }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{cache_line_bytes}); }
    template <class U>
    bool operator==(const line_allocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const line_allocator<U>&) const { return false; }
};

} // namespace pipeinfer
