#include "gguf/gguf-types.h"

namespace pipeinfer {

namespace {

struct value_type_row {
    const char* name;
    size_t size;
    bool is_int;
};

// Indexed by gguf_value_type (ggml/docs/gguf.md, "gguf_metadata_value_type").
constexpr value_type_row k_rows[] = {
    {"u8", 1, true},   {"i8", 1, true},  {"u16", 2, true},  {"i16", 2, true}, {"u32", 4, true},
    {"i32", 4, true},  {"f32", 4, false}, {"bool", 1, false}, {"str", 0, false}, {"arr", 0, false},
    {"u64", 8, true},  {"i64", 8, true},  {"f64", 8, false},
};
static_assert(sizeof(k_rows) / sizeof(k_rows[0]) == static_cast<size_t>(gguf_value_type::COUNT),
              "one row per GGUF value type");

} // namespace

const char* gguf_value_type_name(gguf_value_type t) {
    const auto id = static_cast<uint32_t>(t);
    return gguf_value_type_valid(id) ? k_rows[id].name : "unknown";
}

size_t gguf_value_type_size(gguf_value_type t) {
    const auto id = static_cast<uint32_t>(t);
    return gguf_value_type_valid(id) ? k_rows[id].size : 0;
}

bool gguf_value_type_is_int(gguf_value_type t) {
    const auto id = static_cast<uint32_t>(t);
    return gguf_value_type_valid(id) && k_rows[id].is_int;
}

} // namespace pipeinfer
