#include "gguf/gguf-reader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <stdexcept>

#include "common/error.h"
#include "common/mmap.h"

namespace pipeinfer {

using ull = unsigned long long;

// Bounds-checked cursor over the file bytes. Every read names the field it reads so that a
// truncated file reports what was being read, where, and how many bytes were missing.
class gguf_byte_reader {
public:
    gguf_byte_reader(const uint8_t* data, size_t size, const std::string& what)
        : data_(data), size_(size), what_(what) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }

    [[noreturn]] void fail(const std::string& msg) const { throw gguf_error(what_ + ": " + msg); }

    // Returns a pointer to the next n bytes and advances past them.
    const uint8_t* take(size_t n, const std::string& field) {
        if (n > remaining()) {
            fail(format("truncated file: %s needs %zu bytes at offset %zu, only %zu remain", field.c_str(), n,
                        pos_, remaining()));
        }
        const uint8_t* p = data_ + pos_;
        pos_ += n;
        return p;
    }

    uint8_t u8(const std::string& field) { return *take(1, field); }
    uint16_t u16(const std::string& field) { return static_cast<uint16_t>(load_le(take(2, field), 2)); }
    uint32_t u32(const std::string& field) { return static_cast<uint32_t>(load_le(take(4, field), 4)); }
    uint64_t u64(const std::string& field) { return load_le(take(8, field), 8); }

    // A GGUF string: u64 length then bytes. The length is bounded by 1 GiB and by the bytes left
    // before anything is allocated.
    std::string str(const std::string& field) { return str_named([&]() -> const std::string& { return field; }); }

    // As str, with the field's name made by name() only when the read fails: the strings of a
    // vocabulary are read by the hundred thousand, and formatting each one's name cost more than reading it.
    template <class Name>
    std::string str_named(const Name& name) {
        const size_t at = pos_;
        if (remaining() < 8) take(8, name() + " length");  // throws: truncated
        const uint64_t n = load_le(data_ + pos_, 8);
        pos_ += 8;
        if (n > GGUF_MAX_STRING) {
            fail(format("%s at offset %zu: string length %llu exceeds the 1 GiB limit", std::string(name()).c_str(),
                        at, (ull)n));
        }
        if (n > remaining()) {
            fail(format("truncated file: %s at offset %zu: string length %llu exceeds the %zu bytes remaining",
                        std::string(name()).c_str(), at, (ull)n, remaining()));
        }
        const uint8_t* p = data_ + pos_;
        pos_ += static_cast<size_t>(n);
        return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }

    static uint64_t load_le(const uint8_t* p, int n) {
        uint64_t v = 0;
        for (int k = n - 1; k >= 0; --k) v = (v << 8) | p[k];
        return v;
    }

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& what_;
};

namespace {

constexpr size_t k_header_size = 24;     // magic, version, n_tensors, n_kv
constexpr uint64_t k_min_kv_size = 14;   // key length 8 + key >= 1 + type 4 + value >= 1
constexpr uint64_t k_min_tinfo_size = 33;  // name length 8 + name >= 1 + n_dims 4 + ne 8 + type 4 + offset 8

// Up-front reservation for a count read from the file. The count is already bounded by the bytes
// left, but an entry object is larger than its smallest encoding (a std::string is 32 bytes, its
// encoding 8), so reserving the full count would let a file claim several times its size in memory
// before the entries are read. Beyond the cap, vectors grow only as entries are actually parsed.
size_t capped_reserve(uint64_t n) { return static_cast<size_t>(std::min<uint64_t>(n, 1u << 16)); }

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), as Python decodes it.
bool valid_utf8(const std::string& s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (n - i < len) return false;
        if (p[i + 1] < lo || p[i + 1] > hi) return false;
        for (size_t k = 2; k < len; ++k) {
            if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
        }
        i += len;
    }
    return true;
}

// Printable rendering of up to 4 magic bytes for messages ("GGML", "\x00\x01..").
std::string show_bytes(const uint8_t* p, size_t n) {
    std::string out;
    for (size_t k = 0; k < n; ++k) {
        if (p[k] >= 0x20 && p[k] < 0x7F && p[k] != '\\') {
            out += static_cast<char>(p[k]);
        } else {
            out += format("\\x%02x", p[k]);
        }
    }
    return out;
}

std::string shape_str(const gguf_tensor_info& t) {
    std::string s = "[";
    for (uint32_t j = 0; j < t.n_dims; ++j) {
        if (j) s += ", ";
        s += std::to_string(t.ne[j]);
    }
    return s + "]";
}

// Reads one scalar of type t into v (t is a valid, non-array type).
void read_scalar(gguf_byte_reader& r, gguf_value_type t, gguf_value& v, const std::string& ctx) {
    const size_t at = r.pos();
    switch (t) {
    case gguf_value_type::UINT8: v.u = r.u8(ctx); break;
    case gguf_value_type::UINT16: v.u = r.u16(ctx); break;
    case gguf_value_type::UINT32: v.u = r.u32(ctx); break;
    case gguf_value_type::UINT64: v.u = r.u64(ctx); break;
    case gguf_value_type::INT8: v.i = static_cast<int8_t>(r.u8(ctx)); break;
    case gguf_value_type::INT16: v.i = static_cast<int16_t>(r.u16(ctx)); break;
    case gguf_value_type::INT32: v.i = static_cast<int32_t>(r.u32(ctx)); break;
    case gguf_value_type::INT64: v.i = static_cast<int64_t>(r.u64(ctx)); break;
    case gguf_value_type::FLOAT32: {
        const uint32_t bits = r.u32(ctx);
        float f;
        std::memcpy(&f, &bits, 4);
        v.f = f;
        break;
    }
    case gguf_value_type::FLOAT64: {
        const uint64_t bits = r.u64(ctx);
        std::memcpy(&v.f, &bits, 8);
        break;
    }
    case gguf_value_type::BOOL:
        v.u = r.u8(ctx);
        if (v.u > 1) r.fail(format("%s at offset %zu: bool must be 0 or 1, found %llu", ctx.c_str(), at, (ull)v.u));
        break;
    case gguf_value_type::STRING: v.s = r.str(ctx); break;
    default: r.fail(format("%s: internal: not a scalar type", ctx.c_str()));
    }
}

void read_array(gguf_byte_reader& r, gguf_value& v, const std::string& ctx) {
    const size_t at = r.pos();
    const uint32_t et = r.u32(ctx + " array element type");
    if (!gguf_value_type_valid(et)) {
        r.fail(format("%s at offset %zu: unknown array element type %u (expected 0..12)", ctx.c_str(), at, et));
    }
    v.arr_type = static_cast<gguf_value_type>(et);
    if (v.arr_type == gguf_value_type::ARRAY) {
        r.fail(format("%s at offset %zu: arrays of arrays are not supported", ctx.c_str(), at));
    }
    const size_t count_at = r.pos();
    const uint64_t n = r.u64(ctx + " array count");
    if (v.arr_type == gguf_value_type::STRING) {
        // Every string costs at least its 8-byte length, so n is bounded before reserving.
        if (n > r.remaining() / 8) {
            r.fail(format("%s at offset %zu: string array count %llu needs at least 8 bytes per element, "
                          "only %zu bytes remain",
                          ctx.c_str(), count_at, (ull)n, r.remaining()));
        }
        v.arr_n = n;
        v.arr_str.reserve(capped_reserve(n));
        for (uint64_t k = 0; k < n; ++k) {
            v.arr_str.push_back(r.str_named([&] { return format("%s element %llu", ctx.c_str(), (ull)k); }));
        }
        return;
    }
    const size_t es = gguf_value_type_size(v.arr_type);
    if (n > r.remaining() / es) {
        r.fail(format("%s at offset %zu: array of %llu %s elements (%zu bytes each) does not fit in the %zu "
                      "bytes remaining",
                      ctx.c_str(), count_at, (ull)n, gguf_value_type_name(v.arr_type), es, r.remaining()));
    }
    const size_t nbytes = static_cast<size_t>(n) * es;
    const uint8_t* p = r.take(nbytes, ctx + " array data");
    if (v.arr_type == gguf_value_type::BOOL) {
        for (size_t k = 0; k < nbytes; ++k) {
            if (p[k] > 1) {
                r.fail(format("%s element %zu at offset %zu: bool must be 0 or 1, found %u", ctx.c_str(), k,
                              r.pos() - nbytes + k, p[k]));
            }
        }
    }
    v.arr_n = n;
    v.arr_raw.assign(p, p + nbytes);
}

// Reads n_dims and ne[] of tensor t; the element count must be representable in int64.
void read_shape(gguf_byte_reader& r, gguf_tensor_info& t, const std::string& ctx) {
    const size_t dims_at = r.pos();
    t.n_dims = r.u32(ctx + " n_dims");
    if (t.n_dims < 1 || t.n_dims > GGUF_MAX_DIMS) {
        r.fail(format("%s at offset %zu: n_dims must be in 1..%u, found %u", ctx.c_str(), dims_at,
                      GGUF_MAX_DIMS, t.n_dims));
    }
    for (uint32_t j = 0; j < t.n_dims; ++j) {
        const size_t at = r.pos();
        const uint64_t raw = r.u64(format("%s ne[%u]", ctx.c_str(), j));
        if (raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            r.fail(format("%s at offset %zu: dimension %u is negative (%lld)", ctx.c_str(), at, j,
                          (long long)static_cast<int64_t>(raw)));
        }
        t.ne[j] = static_cast<int64_t>(raw);
    }
    // Element count must be representable in int64: check each factor by division.
    int64_t n_elem = 1;
    for (uint32_t j = 0; j < GGUF_MAX_DIMS; ++j) {
        if (t.ne[j] != 0 && n_elem > std::numeric_limits<int64_t>::max() / t.ne[j]) {
            r.fail(format("%s: element count of shape %s overflows int64", ctx.c_str(), shape_str(t).c_str()));
        }
        n_elem *= t.ne[j];
    }
}

size_t tensor_nbytes(gguf_byte_reader& r, const gguf_tensor_info& t, const type_traits& tt, size_t alignment,
                     const std::string& ctx) {
    // Byte size = (ne0 / block_size) * type_size * ne1 * ne2 * ne3, each step checked, and the
    // size padded to the alignment must still fit (the GGML_PAD wrap of reliability §1.1).
    const uint64_t max = std::numeric_limits<size_t>::max();
    uint64_t nbytes = static_cast<uint64_t>(t.ne[0] / tt.block_size);
    const uint64_t factors[4] = {tt.type_size, (uint64_t)t.ne[1], (uint64_t)t.ne[2], (uint64_t)t.ne[3]};
    for (uint64_t f : factors) {
        if (f != 0 && nbytes > max / f) {
            r.fail(format("%s: byte size of shape %s in type %s overflows size_t", ctx.c_str(),
                          shape_str(t).c_str(), tt.name));
        }
        nbytes *= f;
    }
    if (nbytes > max - (alignment - 1)) {
        r.fail(format("%s: byte size %llu of shape %s overflows size_t after padding to the alignment %zu",
                      ctx.c_str(), (ull)nbytes, shape_str(t).c_str(), alignment));
    }
    return static_cast<size_t>(nbytes);
}

} // namespace

gguf_file::~gguf_file() = default;

void gguf_file::release_pages(const void* p, size_t n) const {
    if (map_) map_->release(p, n);
}

void gguf_file::check_unchanged() const {
    if (map_) map_->check_unchanged();
}

std::unique_ptr<gguf_file> gguf_file::from_buffer(const uint8_t* data, size_t size, const std::string& what) {
    std::unique_ptr<gguf_file> f(new gguf_file());
    f->base_ = data;
    f->size_ = size;
    f->what_ = what;
    f->parse();
    return f;
}

std::unique_ptr<gguf_file> gguf_file::from_path(const std::string& path) {
    std::unique_ptr<gguf_file> f(new gguf_file());
    f->map_ = std::make_unique<mapped_file>(path);
    f->base_ = f->map_->data();
    f->size_ = f->map_->size();
    f->what_ = path;
    f->parse();
    return f;
}

void gguf_file::parse() {
    try {
        gguf_byte_reader r(base_, size_, what_);
        uint64_t n_tensors = 0, n_kv = 0;
        parse_header(r, n_tensors, n_kv);
        parse_kv(r, n_kv);
        parse_tensor_infos(r, n_tensors);
        // The data section starts at the first alignment boundary after the tensor infos; pos <=
        // size_ and alignment <= 1 MiB, so the sum cannot wrap.
        data_offset_ = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
        check_data_layout();
    } catch (const std::bad_alloc&) {
        throw gguf_error(what_ + ": out of memory while parsing the GGUF metadata");
    } catch (const std::length_error& e) {
        throw gguf_error(what_ + ": allocation too large while parsing the GGUF metadata (" + e.what() + ")");
    }
}

void gguf_file::parse_header(gguf_byte_reader& r, uint64_t& n_tensors, uint64_t& n_kv) {
    if (size_ >= 4) {
        const uint8_t* m = base_;
        if (std::memcmp(m, "FUGG", 4) == 0) {
            r.fail("magic is 'FUGG' (byte-swapped 'GGUF'): endianness mismatch (big-endian file?); only "
                   "little-endian GGUF files are supported");
        }
        if (std::memcmp(m, "GGUF", 4) != 0) {
            r.fail(format("not a GGUF file: magic at offset 0 is '%s', expected 'GGUF'", show_bytes(m, 4).c_str()));
        }
    }
    if (size_ < k_header_size) {
        r.fail(format("truncated header: the file is %zu bytes, a GGUF header needs %zu", size_, k_header_size));
    }
    r.u32("magic");
    const uint32_t version = r.u32("version");
    if (version == 0) {
        r.fail(format("invalid GGUF version 0 at offset 4; supported versions are %u and %u", GGUF_MIN_VERSION,
                      GGUF_MAX_VERSION));
    }
    if ((version & 0xFFFFu) == 0) {
        r.fail(format("GGUF version 0x%08x at offset 4 looks byte-swapped: endianness mismatch (big-endian "
                      "file?); supported versions are %u and %u (little-endian)",
                      version, GGUF_MIN_VERSION, GGUF_MAX_VERSION));
    }
    if (version == 1) {
        r.fail(format("GGUF version 1 is obsolete and not supported; supported versions are %u and %u",
                      GGUF_MIN_VERSION, GGUF_MAX_VERSION));
    }
    if (version > GGUF_MAX_VERSION) {
        r.fail(format("unsupported GGUF version %u; supported versions are %u and %u", version, GGUF_MIN_VERSION,
                      GGUF_MAX_VERSION));
    }
    version_ = version;
    n_tensors = r.u64("n_tensors");
    n_kv = r.u64("n_kv");
    // Bound both counts by the bytes that are left before anything is reserved.
    const uint64_t rem = r.remaining();
    if (n_tensors > rem / k_min_tinfo_size) {
        r.fail(format("n_tensors %llu at offset 8 cannot fit in the %llu bytes after the header (a tensor "
                      "info needs at least %llu bytes)",
                      (ull)n_tensors, (ull)rem, (ull)k_min_tinfo_size));
    }
    if (n_kv > rem / k_min_kv_size) {
        r.fail(format("n_kv %llu at offset 16 cannot fit in the %llu bytes after the header (a key/value "
                      "pair needs at least %llu bytes)",
                      (ull)n_kv, (ull)rem, (ull)k_min_kv_size));
    }
    if (n_tensors * k_min_tinfo_size + n_kv * k_min_kv_size > rem) {
        r.fail(format("n_tensors %llu and n_kv %llu cannot fit in the %llu bytes after the header",
                      (ull)n_tensors, (ull)n_kv, (ull)rem));
    }
}

void gguf_file::parse_kv(gguf_byte_reader& r, uint64_t n_kv) {
    kv_.reserve(capped_reserve(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
        const size_t key_at = r.pos();
        const std::string idx = format("KV #%llu", (ull)i);
        std::string key = r.str(idx + " key");
        if (key.empty()) r.fail(format("%s at offset %zu: empty key", idx.c_str(), key_at));
        if (!valid_utf8(key)) {
            r.fail(format("%s at offset %zu: key is not valid UTF-8", idx.c_str(), key_at));
        }
        const std::string ctx = idx + " '" + key + "'";
        auto dup = kv_index_.find(key);
        if (dup != kv_index_.end()) {
            r.fail(format("%s at offset %zu: duplicate key (first defined by KV #%zu)", ctx.c_str(), key_at,
                          dup->second));
        }
        const size_t type_at = r.pos();
        const uint32_t t = r.u32(ctx + " value type");
        if (!gguf_value_type_valid(t)) {
            r.fail(format("%s at offset %zu: unknown value type %u (expected 0..12)", ctx.c_str(), type_at, t));
        }
        gguf_value v;
        v.type = static_cast<gguf_value_type>(t);
        if (v.type == gguf_value_type::ARRAY) {
            read_array(r, v, ctx);
        } else {
            read_scalar(r, v.type, v, ctx);
        }
        if (key == "general.alignment") {
            if (v.type != gguf_value_type::UINT32) {
                r.fail(format("%s at offset %zu: expected type u32, found %s", ctx.c_str(), type_at,
                              gguf_value_type_name(v.type)));
            }
            if (v.u == 0 || (v.u & (v.u - 1)) != 0 || v.u > GGUF_MAX_ALIGNMENT) {
                r.fail(format("%s: alignment must be a power of two in [1, %u], found %llu", ctx.c_str(),
                              GGUF_MAX_ALIGNMENT, (ull)v.u));
            }
            alignment_ = static_cast<size_t>(v.u);
        }
        kv_index_.emplace(key, kv_.size());
        kv_.emplace_back(std::move(key), std::move(v));
    }
}

void gguf_file::parse_tensor_infos(gguf_byte_reader& r, uint64_t n_tensors) {
    tensors_.reserve(capped_reserve(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const size_t name_at = r.pos();
        const std::string idx = format("tensor #%llu", (ull)i);
        gguf_tensor_info t;
        t.name = r.str(idx + " name");
        if (t.name.empty()) r.fail(format("%s at offset %zu: empty tensor name", idx.c_str(), name_at));
        if (t.name.size() >= GGUF_MAX_NAME) {
            r.fail(format("%s at offset %zu: name is %zu bytes long, the limit is %llu", idx.c_str(), name_at,
                          t.name.size(), (ull)(GGUF_MAX_NAME - 1)));
        }
        if (!valid_utf8(t.name)) r.fail(format("%s at offset %zu: name is not valid UTF-8", idx.c_str(), name_at));
        const std::string ctx = "tensor '" + t.name + "'";
        auto dup = tensor_index_.find(t.name);
        if (dup != tensor_index_.end()) {
            r.fail(format("%s (#%llu) at offset %zu: duplicate tensor name (first defined by tensor #%zu)",
                          ctx.c_str(), (ull)i, name_at, dup->second));
        }

        read_shape(r, t, ctx);

        const size_t type_at = r.pos();
        const uint32_t type_id = r.u32(ctx + " type");
        const type_traits& tt = get_type_traits(type_id);
        if (tt.block_size == 0) {
            r.fail(format("%s at offset %zu: unknown or removed ggml type id %u", ctx.c_str(), type_at, type_id));
        }
        t.type = static_cast<ggml_type>(type_id);
        if (t.ne[0] % tt.block_size != 0) {
            r.fail(format("%s: type %s needs a row length (ne0) that is a multiple of %lld, found %lld",
                          ctx.c_str(), tt.name, (long long)tt.block_size, (long long)t.ne[0]));
        }
        t.nbytes = tensor_nbytes(r, t, tt, alignment_, ctx);

        const size_t off_at = r.pos();
        t.offset = r.u64(ctx + " offset");
        if (t.offset % alignment_ != 0) {
            r.fail(format("%s at offset %zu: data offset %llu is not a multiple of the alignment %zu", ctx.c_str(),
                          off_at, (ull)t.offset, alignment_));
        }
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }
}

void gguf_file::check_data_layout() {
    if (tensors_.empty()) return;
    if (data_offset_ > size_) {
        throw gguf_error(format("%s: truncated file: the data section starts at offset %zu, past the end of the "
                                "file (%zu bytes)",
                                what_.c_str(), data_offset_, size_));
    }
    const size_t avail = size_ - data_offset_;  // bytes in the data section
    for (auto& t : tensors_) {
        if (t.offset > avail || t.nbytes > avail - t.offset) {
            throw gguf_error(format("%s: tensor '%s': data of %zu bytes at data-section offset %llu extends past "
                                    "the end of the file (data section holds %zu bytes from file offset %zu; "
                                    "file size %zu)",
                                    what_.c_str(), t.name.c_str(), t.nbytes, (ull)t.offset, avail, data_offset_,
                                    size_));
        }
        t.data = base_ + data_offset_ + t.offset;
    }
    // llama.cpp's dense packing (gguf.cpp): tensors lie one after another in declaration order, each
    // at the aligned end of the previous one, and the file ends within the last one's padding. So the
    // bytes between two offsets are exactly what the type and shape say: a corrupted type, dimension
    // or offset cannot silently reinterpret another tensor's bytes or leave some unread.
    size_t expected = 0;  // data-section offset where the next tensor must start
    for (const auto& t : tensors_) {
        if (t.offset != expected) {
            throw gguf_error(format("%s: tensor '%s': data at data-section offset %llu, expected %zu (tensors are "
                                    "stored one after another in declaration order, each padded to %zu bytes; a "
                                    "different offset means a wrong offset, type or shape in this or an earlier "
                                    "tensor)",
                                    what_.c_str(), t.name.c_str(), (ull)t.offset, expected, alignment_));
        }
        expected = t.offset + t.nbytes;
        expected += (alignment_ - expected % alignment_) % alignment_;  // cannot wrap: bounded by the file size
    }
    if (avail > expected) {
        throw gguf_error(format("%s: %zu bytes after the end of the last tensor's data (data section of %zu bytes, "
                                "tensors end at %zu with padding): a wrong type or shape in the last tensor, or "
                                "a damaged file",
                                what_.c_str(), avail - expected, avail, expected));
    }
}

// ---- lookups and typed getters ------------------------------------------------------------------

std::string gguf_type_spelling(const gguf_value& v) {
    if (v.type != gguf_value_type::ARRAY) return gguf_value_type_name(v.type);
    return format("arr[%s,%llu]", gguf_value_type_name(v.arr_type), (ull)v.arr_n);
}

const gguf_value* gguf_file::find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const gguf_tensor_info* gguf_file::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const gguf_value& gguf_file::require(const std::string& key) const {
    const gguf_value* v = find(key);
    if (v == nullptr) throw gguf_error(format("%s: missing key '%s'", what_.c_str(), key.c_str()));
    return *v;
}

namespace {

[[noreturn]] void wrong_type(const std::string& what, const std::string& key, const char* expected,
                             const gguf_value& v) {
    throw gguf_error(format("%s: key '%s': expected %s, found %s", what.c_str(), key.c_str(), expected,
                            gguf_type_spelling(v).c_str()));
}

// Element k of an integer array as int64; too_big is set for unsigned values above INT64_MAX.
int64_t array_int(const gguf_value& v, size_t k, bool& too_big) {
    const size_t es = gguf_value_type_size(v.arr_type);
    const uint64_t raw = gguf_byte_reader::load_le(v.arr_raw.data() + k * es, static_cast<int>(es));
    too_big = false;
    switch (v.arr_type) {
    case gguf_value_type::INT8: return static_cast<int8_t>(raw);
    case gguf_value_type::INT16: return static_cast<int16_t>(raw);
    case gguf_value_type::INT32: return static_cast<int32_t>(raw);
    case gguf_value_type::INT64: return static_cast<int64_t>(raw);
    default:
        too_big = raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
        return static_cast<int64_t>(raw);
    }
}

} // namespace

std::string gguf_file::get_str(const std::string& key) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_value_type::STRING) wrong_type(what_, key, "str", v);
    return v.s;
}

int64_t gguf_file::get_int(const std::string& key) const {
    const gguf_value& v = require(key);
    if (!gguf_value_type_is_int(v.type)) wrong_type(what_, key, "an integer", v);
    switch (v.type) {
    case gguf_value_type::UINT8:
    case gguf_value_type::UINT16:
    case gguf_value_type::UINT32:
    case gguf_value_type::UINT64:
        if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            throw gguf_error(format("%s: key '%s': value %llu does not fit in int64", what_.c_str(), key.c_str(),
                                    (ull)v.u));
        }
        return static_cast<int64_t>(v.u);
    default: return v.i;
    }
}

double gguf_file::get_float(const std::string& key) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_value_type::FLOAT32 && v.type != gguf_value_type::FLOAT64) {
        wrong_type(what_, key, "f32 or f64", v);
    }
    return v.f;
}

bool gguf_file::get_bool(const std::string& key) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_value_type::BOOL) wrong_type(what_, key, "bool", v);
    return v.u != 0;
}

std::vector<std::string> gguf_file::get_str_array(const std::string& key) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_value_type::ARRAY || v.arr_type != gguf_value_type::STRING) {
        wrong_type(what_, key, "arr[str]", v);
    }
    return v.arr_str;
}

std::vector<float> gguf_file::get_f32_array(const std::string& key) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_value_type::ARRAY ||
        (v.arr_type != gguf_value_type::FLOAT32 && v.arr_type != gguf_value_type::FLOAT64)) {
        wrong_type(what_, key, "arr[f32] or arr[f64]", v);
    }
    std::vector<float> out(static_cast<size_t>(v.arr_n));
    const bool f64 = v.arr_type == gguf_value_type::FLOAT64;
    for (size_t k = 0; k < out.size(); ++k) {
        if (f64) {
            const uint64_t bits = gguf_byte_reader::load_le(v.arr_raw.data() + 8 * k, 8);
            double d;
            std::memcpy(&d, &bits, 8);
            if (std::isfinite(d) && std::fabs(d) > std::numeric_limits<float>::max()) {
                throw gguf_error(format("%s: key '%s': element %zu (%g) does not fit in f32", what_.c_str(),
                                        key.c_str(), k, d));
            }
            out[k] = static_cast<float>(d);
        } else {
            const uint32_t bits = static_cast<uint32_t>(gguf_byte_reader::load_le(v.arr_raw.data() + 4 * k, 4));
            std::memcpy(&out[k], &bits, 4);
        }
    }
    return out;
}

std::vector<int32_t> gguf_file::get_i32_array(const std::string& key) const {
    const gguf_value& v = require(key);
    if (v.type != gguf_value_type::ARRAY || !gguf_value_type_is_int(v.arr_type)) {
        wrong_type(what_, key, "an integer array", v);
    }
    std::vector<int32_t> out(static_cast<size_t>(v.arr_n));
    for (size_t k = 0; k < out.size(); ++k) {
        bool too_big = false;
        const int64_t x = array_int(v, k, too_big);
        if (too_big || x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max()) {
            throw gguf_error(format("%s: key '%s': element %zu does not fit in int32", what_.c_str(), key.c_str(), k));
        }
        out[k] = static_cast<int32_t>(x);
    }
    return out;
}

int64_t gguf_file::get_int(const std::string& key, int64_t dflt) const {
    return find(key) ? get_int(key) : dflt;
}

double gguf_file::get_float(const std::string& key, double dflt) const {
    return find(key) ? get_float(key) : dflt;
}

bool gguf_file::get_bool(const std::string& key, bool dflt) const {
    return find(key) ? get_bool(key) : dflt;
}

std::string gguf_file::get_str(const std::string& key, const std::string& dflt) const {
    return find(key) ? get_str(key) : dflt;
}

} // namespace pipeinfer
