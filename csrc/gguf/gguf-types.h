// GGUF format constants.
//
// File layout (little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
//   u32 magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
//   n_kv × { string key | u32 value_type | value }
//   n_tensors × { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (u32, power of two, default 32) | tensor data section
// string = u64 length + bytes (no NUL). array = u32 elem_type + u64 count + elements.
// Tensor offsets are relative to the data section and must be multiples of the alignment.
#pragma once
#include <cstdint>

namespace pipeinfer {

constexpr uint32_t GGUF_MAGIC = 0x46554747u;  // "GGUF" read as little-endian u32
constexpr uint32_t GGUF_DEFAULT_ALIGNMENT = 32;
constexpr uint32_t GGUF_MAX_DIMS = 4;
constexpr uint64_t GGUF_MAX_NAME = 64;         // tensor name length limit (ggml GGML_MAX_NAME), exclusive

enum class gguf_value_type : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
    COUNT = 13,
};

const char* gguf_value_type_name(gguf_value_type t);

} // namespace pipeinfer
