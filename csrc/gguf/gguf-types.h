// GGUF format constants and the value-type table (names and sizes). Owns nothing but constants and
// pure lookups; must not read files (gguf-reader.cpp does that).
//
// File layout (little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
//   u32 magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
//   n_kv × { string key | u32 value_type | value }
//   n_tensors × { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (u32, power of two, default 32) | tensor data section
// string = u64 length + bytes (no NUL). array = u32 elem_type + u64 count + elements.
// Tensor offsets are relative to the data section and must be multiples of the alignment.
// Version 1 (u32 lengths and counts) is obsolete and not read.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pipeinfer {

constexpr uint32_t GGUF_MAGIC = 0x46554747u;  // "GGUF" read as little-endian u32
constexpr uint32_t GGUF_DEFAULT_ALIGNMENT = 32;
constexpr uint32_t GGUF_MAX_ALIGNMENT = 1u << 20;  // our cap (1 MiB): bounds padding, see reliability §1.5
constexpr uint32_t GGUF_MIN_VERSION = 2;
constexpr uint32_t GGUF_MAX_VERSION = 3;
constexpr uint32_t GGUF_MAX_DIMS = 4;
constexpr uint64_t GGUF_MAX_NAME = 64;         // tensor name length limit (ggml GGML_MAX_NAME), exclusive
constexpr uint64_t GGUF_MAX_STRING = 1ull << 30;  // 1 GiB, as ggml's gguf.cpp

enum class gguf_value_type : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
    COUNT = 13,
};

// Short spelling used in messages and by the Python binding: "u8", "i32", "f32", "bool", "str",
// "arr", "u64", "f64"; "unknown" for ids >= COUNT.
const char* gguf_value_type_name(gguf_value_type t);

// Bytes of one scalar of this type (1 for BOOL); 0 for STRING, ARRAY and unknown ids.
size_t gguf_value_type_size(gguf_value_type t);

// True for UINT8..INT64 (not BOOL).
bool gguf_value_type_is_int(gguf_value_type t);

// True for ids below COUNT.
inline bool gguf_value_type_valid(uint32_t id) { return id < static_cast<uint32_t>(gguf_value_type::COUNT); }

} // namespace pipeinfer
