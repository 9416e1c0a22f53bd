// Read-only memory mapping of a whole file. Owns the mapping; the GGUF reader and the model keep
// pointers into it. Must not interpret the bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pipeinfer {

class mapped_file {
public:
    // Maps `path` read-only. Throws gguf_error naming the path if it cannot be opened or mapped.
    // An empty file maps to data() == nullptr, size() == 0.
    explicit mapped_file(const std::string& path);
    ~mapped_file();
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Advises the kernel that [offset, offset+n) will be read soon (pages of one pipeline stage).
    void prefetch(size_t offset, size_t n) const;

    // Drops the whole pages inside [p, p + n) of this mapping from the process (MADV_DONTNEED): they
    // are read from the file again if touched. For bytes that were copied elsewhere (repacked weights).
    void release(const void* p, size_t n) const;

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

} // namespace pipeinfer
