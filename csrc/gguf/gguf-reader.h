// Strict GGUF (v2, v3) parser. Owns the parsed metadata and tensor table of one file; the tensor bytes
// stay in the caller's buffer/mapping (zero copy). Every size, count and offset read from the file is
// untrusted: checked arithmetic, bounded by the bytes that remain, and every failure is a gguf_error
// naming the key or tensor, what was expected and what was found (see ../../shared reliability notes,
// section 1.2; the format is described in gguf-types.h). Never allocates more than the file could
// describe (a metadata array of n elements is only allocated once n elements fit in the bytes left).
// Must not know about models or architectures.
//
// Checks, in file order:
//   header   magic "GGUF" (a byte-swapped magic or version is reported as an endianness mismatch);
//            version 2 or 3 (1 is obsolete); n_kv and n_tensors small enough for the remaining bytes.
//   metadata keys non-empty, valid UTF-8, unique; value type < 13; arrays of arrays rejected; strings
//            <= 1 GiB and <= remaining bytes; array byte sizes checked for overflow and against the
//            remaining bytes before any allocation; bools are 0 or 1; general.alignment is a u32
//            power of two in [1, 1 MiB].
//   tensors  name non-empty, < 64 bytes, valid UTF-8, unique; n_dims in 1..4; every ne >= 0; element
//            count fits int64 (division checks per dimension); type id known (block size != 0);
//            ne0 a multiple of the block size; byte size (and byte size padded to the alignment)
//            fits size_t; offset a multiple of the alignment; data starts at the aligned end of the
//            tensor infos; [offset, offset + nbytes) inside the file (subtraction, no overflow).
//   layout   as llama.cpp: tensors densely packed in declaration order (each at the aligned end of
//            the previous one, the first at 0) and nothing after the last one's padding. Gaps and
//            other orders were once accepted, but then one corrupted type id or dimension made a
//            tensor silently reinterpret bytes meant for another (found by tests/gguf/
//            test_gguf_mutations.py): with dense packing every byte is accounted for.
//   zero-size dimensions (ne[j] == 0) are accepted here; the model loader rejects zero-size weights.
// Allocation failures (std::bad_alloc, std::length_error) are turned into gguf_error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf-types.h"
#include "quant/type-traits.h"

namespace pipeinfer {

class mapped_file;
class gguf_byte_reader;  // gguf-reader.cpp: bounds-checked little-endian cursor

// One metadata value. Scalars live in the matching field; arrays in arr (element type arr_type).
struct gguf_value {
    gguf_value_type type = gguf_value_type::UINT8;
    uint64_t u = 0;            // UINT8..UINT64, BOOL
    int64_t i = 0;             // INT8..INT64
    double f = 0.0;            // FLOAT32, FLOAT64
    std::string s;             // STRING
    gguf_value_type arr_type = gguf_value_type::UINT8;  // ARRAY element type
    // ARRAY payload: numbers are kept as raw little-endian bytes (n_elem × elem size) so that a
    // 150k-entry vocab costs one allocation; strings are kept in arr_str.
    uint64_t arr_n = 0;
    std::vector<uint8_t> arr_raw;
    std::vector<std::string> arr_str;
};

// Type as spelled in messages and by `pipeinfer info`: "u32", "str", "arr[str,151936]".
std::string gguf_type_spelling(const gguf_value& v);

struct gguf_tensor_info {
    std::string name;
    uint32_t n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};   // ne[0] is the contiguous dimension
    ggml_type type = ggml_type::F32;
    uint64_t offset = 0;            // relative to the data section
    size_t nbytes = 0;              // row_size(type, ne0) * ne1 * ne2 * ne3
    const uint8_t* data = nullptr;  // absolute pointer into the buffer
};

class gguf_file {
public:
    // Parses an in-memory buffer that must outlive this object. `what` names the source in errors.
    static std::unique_ptr<gguf_file> from_buffer(const uint8_t* data, size_t size, const std::string& what);
    // Maps and parses a file; the mapping is owned by the result.
    static std::unique_ptr<gguf_file> from_path(const std::string& path);
    ~gguf_file();

    uint32_t version() const { return version_; }
    size_t alignment() const { return alignment_; }
    size_t data_offset() const { return data_offset_; }
    size_t file_size() const { return size_; }
    const std::string& source() const { return what_; }

    // Metadata in file order.
    const std::vector<std::pair<std::string, gguf_value>>& kv() const { return kv_; }
    const gguf_value* find(const std::string& key) const;  // nullptr if absent
    // Typed getters: throw gguf_error naming the key if absent or of another type (integers of any
    // width/sign convert when the value fits). get_float takes f32/f64 only (no integers);
    // get_f32_array takes arr[f32] or arr[f64] (an f64 beyond the f32 range is an error);
    // get_i32_array takes any integer array whose elements all fit int32.
    std::string get_str(const std::string& key) const;
    int64_t get_int(const std::string& key) const;
    double get_float(const std::string& key) const;
    bool get_bool(const std::string& key) const;
    std::vector<std::string> get_str_array(const std::string& key) const;
    std::vector<float> get_f32_array(const std::string& key) const;
    std::vector<int32_t> get_i32_array(const std::string& key) const;
    // Optional variants return the default when the key is absent (still throw on a wrong type).
    int64_t get_int(const std::string& key, int64_t dflt) const;
    double get_float(const std::string& key, double dflt) const;
    bool get_bool(const std::string& key, bool dflt) const;
    std::string get_str(const std::string& key, const std::string& dflt) const;

    const std::vector<gguf_tensor_info>& tensors() const { return tensors_; }
    const gguf_tensor_info* find_tensor(const std::string& name) const;  // nullptr if absent

    // The whole file's bytes (for checksums and prefetch).
    const uint8_t* bytes() const { return base_; }
    // Drops the mapped pages wholly inside [p, p + n) (mapped_file::release); no-op for a buffer.
    void release_pages(const void* p, size_t n) const;
    // Throws gguf_error if the mapped file was replaced, resized or modified since it was mapped
    // (mapped_file::check_unchanged); no-op for a buffer. Loaders call it once they are done.
    void check_unchanged() const;

private:
    gguf_file() = default;
    void parse();
    void parse_header(gguf_byte_reader& r, uint64_t& n_tensors, uint64_t& n_kv);
    void parse_kv(gguf_byte_reader& r, uint64_t n_kv);
    void parse_tensor_infos(gguf_byte_reader& r, uint64_t n_tensors);
    void check_data_layout();
    const gguf_value& require(const std::string& key) const;

    std::unique_ptr<mapped_file> map_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    std::string what_;
    uint32_t version_ = 0;
    size_t alignment_ = 32;
    size_t data_offset_ = 0;
    std::vector<std::pair<std::string, gguf_value>> kv_;
    std::map<std::string, size_t> kv_index_;
    std::vector<gguf_tensor_info> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

} // namespace pipeinfer
