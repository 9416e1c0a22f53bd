// The on-disk cache of a stage's row-interleaved weights (quant/repack.h): one file per (model file,
// layer range), written once and then mapped read-only by every later load, so that loading the fast
// layout costs about as much as mapping the GGUF file. Owns the file format, its validation and the
// atomic, concurrency-safe write; knows nothing about models beyond a list of matrices.
//
// File format (little-endian, every field naturally aligned):
//   header   char magic[8] = "PIREPACK", u32 format version, u32 layout version (REPACK_LAYOUT_VERSION),
//            u64 identity (the model file and layer range, computed by the caller), u64 file size,
//            u64 n_entries, u64 sample checksum, u64 header checksum, u64 source path length, then the
//            source path (the GGUF file, for eviction) padded to 8 bytes
//   entries  n_entries x { u32 ggml type, u32 0, i64 n_in, i64 n_out, u64 offset, u64 bytes }
//   data     each entry's repack_bytes(type, n_in, n_out) at its offset (multiples of 4096, increasing)
// The header checksum (FNV-1a 64) covers the header and entries with the field itself zero. The sample
// checksum covers 64 bytes at every 8 MiB of each entry's data and its last 64 bytes: a file whose pages
// never reached the disk (a crash between write-back and rename) reads as zeros there and is rejected,
// without reading the whole file at load.
//
// Writers create a new file under a unique temporary name next to the final one (never touching a file
// another process may map), fill it through a shared mapping, flush it, and rename it into place: a
// reader sees either no file, an older complete file or the new complete one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quant/type-traits.h"

namespace pipeinfer {

struct repack_entry {
    ggml_type type = ggml_type::F32;
    int64_t n_in = 0;
    int64_t n_out = 0;
};

class repack_cache_file {
public:
    // Maps `path` if it is a complete cache file with this identity and exactly these entries; null if
    // there is no such file (*why empty) or it is unusable (*why says why: corrupt, stale, truncated).
    static std::unique_ptr<repack_cache_file> open(const std::string& path, uint64_t identity,
                                                   const std::vector<repack_entry>& entries, std::string* why);
    // Creates a temporary file next to `path` with room for `entries` (space reserved on disk first, so
    // a full disk fails here and not with SIGBUS later), mapped writable; `source` is the GGUF path
    // recorded for eviction. Throws std::runtime_error with the reason (the caller repacks in memory).
    static std::unique_ptr<repack_cache_file> create(const std::string& path, uint64_t identity,
                                                     const std::vector<repack_entry>& entries,
                                                     const std::string& source);
    ~repack_cache_file();
    repack_cache_file(const repack_cache_file&) = delete;
    repack_cache_file& operator=(const repack_cache_file&) = delete;

    // Entry i's bytes (valid for the life of this object; writable only before commit of a created file).
    const uint8_t* data(size_t i) const;
    uint8_t* mutable_data(size_t i);
    // A created file whose data is complete: writes checksums and header, flushes it to disk and
    // renames it into place. Throws std::runtime_error on failure (the mapping stays usable).
    void commit();
    size_t size() const { return size_; }

private:
    repack_cache_file() = default;

    std::string path_;            // final name
    std::string tmp_path_;        // created, not yet committed: the temporary name ("" otherwise)
    int fd_ = -1;                 // created files: open until commit
    uint8_t* map_ = nullptr;      // (size_) bytes, the whole file
    size_t size_ = 0;
    std::vector<size_t> offsets_; // (n_entries) data offsets
    std::vector<size_t> bytes_;   // (n_entries) data sizes
};

// Removes, from `dir`, cache files whose source GGUF file no longer exists and temporary files left by
// writers that died more than an hour ago. Best effort: errors are ignored.
void repack_cache_evict(const std::string& dir);

} // namespace pipeinfer
