// Little-endian byte packing for runtime messages: a writer that appends fixed-size values and
// arrays, and a reader that bounds-checks every read against the message length and reports a
// malformed message as transport_error naming the sender and the field. No allocation is sized
// from an unchecked count.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "common/error.h"

namespace pipeinfer {

class wire_writer {
public:
    template <typename T>
    void put(T v) {
        static_assert(std::is_trivially_copyable<T>::value, "plain values only");
        const size_t at = buf_.size();
        buf_.resize(at + sizeof(T));
        std::memcpy(buf_.data() + at, &v, sizeof(T));
    }
    template <typename T>
    void put_array(const T* p, size_t n) {
        put<uint64_t>(n);
        const size_t at = buf_.size();
        buf_.resize(at + n * sizeof(T));
        if (n) std::memcpy(buf_.data() + at, p, n * sizeof(T));
    }
    void put_string(const std::string& s) { put_array(s.data(), s.size()); }
    std::vector<uint8_t> take() { return std::move(buf_); }

private:
    std::vector<uint8_t> buf_;
};

class wire_reader {
public:
    wire_reader(const std::vector<uint8_t>& data, int src, const char* what)
        : p_(data.data()), n_(data.size()), src_(src), what_(what) {}

    template <typename T>
    T get(const char* field) {
        need(sizeof(T), field);
        T v;
        std::memcpy(&v, p_ + at_, sizeof(T));
        at_ += sizeof(T);
        return v;
    }
    // Reads an array of at most max_n elements.
    template <typename T>
    std::vector<T> get_array(const char* field, uint64_t max_n) {
        const uint64_t n = get<uint64_t>(field);
        if (n > max_n) fail(field, format("count %llu exceeds the limit %llu", (unsigned long long)n,
                                          (unsigned long long)max_n));
        if (n > (n_ - at_) / sizeof(T)) fail(field, "count larger than the message");
        std::vector<T> out(static_cast<size_t>(n));
        if (n) std::memcpy(out.data(), p_ + at_, static_cast<size_t>(n) * sizeof(T));
        at_ += static_cast<size_t>(n) * sizeof(T);
        return out;
    }
    std::string get_string(const char* field, uint64_t max_n) {
        std::vector<char> v = get_array<char>(field, max_n);
        return std::string(v.begin(), v.end());
    }
    void expect_end() {
        if (at_ != n_) fail("end", format("%zu trailing bytes", n_ - at_));
    }
    [[noreturn]] void fail(const char* field, const std::string& why) const {
        throw transport_error(format("malformed %s message from rank %d: field '%s': %s", what_, src_, field,
                                     why.c_str()),
                              src_);
    }

private:
    void need(size_t k, const char* field) const {
        if (k > n_ - at_) fail(field, "message too short");
    }
    const uint8_t* p_;
    size_t n_;
    size_t at_ = 0;
    int src_;
    const char* what_;
};

} // namespace pipeinfer
