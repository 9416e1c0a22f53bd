// Read-only memory mapping of a whole file. Owns the mapping; the GGUF reader and the model keep
// pointers into it. Must not interpret the bytes.
//
// A mapping is only as stable as the file under it: if another process truncates the file while it is
// mapped, touching a page past the new end kills this process with SIGBUS (llama.cpp behaves the same;
// there is no portable way to turn that into an error). check_unchanged() detects a file that was
// replaced, truncated or extended since it was mapped, so a load can refuse it instead.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pipeinfer {

class mapped_file {
public:
    // Maps `path` read-only. Throws gguf_error naming the path if it cannot be opened or mapped, or
    // if it is not a regular file (a FIFO, device, socket or directory: checked without blocking, so
    // a named pipe cannot hang the open). An empty file maps to data() == nullptr, size() == 0.
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

    // Throws gguf_error if the file at path() is no longer the file that was mapped, unchanged: another
    // file (device, inode), another size, or a later modification time.
    void check_unchanged() const;

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    uint64_t dev_ = 0, ino_ = 0;   // identity of the mapped file
    int64_t mtime_ns_ = 0;         // its modification time when mapped
};

} // namespace pipeinfer
