// Exception types of the engine. Every error caused by an input (a file, an argument, a message from
// another rank) or by the environment is thrown as one of these and becomes a typed Python exception
// in bindings/bind-errors.cpp. Nothing here prints, exits or aborts.
#pragma once
#include <stdexcept>
#include <string>

namespace pipeinfer {

// A GGUF file that is malformed, truncated or inconsistent. Python: pipeinfer.GGUFError (ValueError).
struct gguf_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A tensor or buffer whose shape does not fit the operation. Python: pipeinfer.ShapeError (ValueError).
struct shape_error : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// A quant type or model architecture this build cannot run. Python: pipeinfer.UnsupportedError (ValueError).
struct unsupported_type : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// A model whose hyperparameters or tensors do not describe a runnable network.
// Python: pipeinfer.ModelError (ValueError).
struct model_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The KV cache has no room for a batch. Python: pipeinfer.KVCacheFullError (RuntimeError).
struct kv_full_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// An allocation that does not fit in the memory available to the process, found before allocating
// (common/memory.h). Python: pipeinfer.InsufficientMemoryError (MemoryError).
struct memory_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A failure between ranks or stages: MPI error, dead or hung peer, malformed message.
// Python: pipeinfer.TransportError (RuntimeError); rank is the peer involved, or -1.
struct transport_error : std::runtime_error {
    transport_error(const std::string& what, int rank = -1, int code = 0)
        : std::runtime_error(what), rank(rank), code(code) {}
    int rank;
    int code;
};

// Formats a message like printf. Used to build exception texts.
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

} // namespace pipeinfer
