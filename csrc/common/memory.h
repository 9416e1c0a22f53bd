// How much memory this process may still allocate, for checks made before a large allocation (the
// KV cache): the kernel's MemAvailable estimate, lowered to the room left under a cgroup memory limit
// when the process runs in one (containers, CI runners). Reads /proc and /sys only; Linux-specific,
// with a sysconf fallback elsewhere. Must not allocate large buffers or cache its answer (memory
// changes between calls).
#pragma once
#include <cstdint>
#include <string>

namespace pipeinfer {

// Bytes available now (0 if nothing could be determined; callers then skip the check).
uint64_t available_memory_bytes();

// Throws memory_error if `bytes` exceeds available_memory_bytes(); `what` names the allocation and
// its dimensions in the message (e.g. "KV cache (n_ctx 4096, 24 layers, f16)").
void check_fits_in_memory(uint64_t bytes, const std::string& what);

} // namespace pipeinfer
