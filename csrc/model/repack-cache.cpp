#include "model/repack-cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "common/error.h"
#include "quant/repack.h"

namespace pipeinfer {

namespace {

constexpr char MAGIC[8] = {'P', 'I', 'R', 'E', 'P', 'A', 'C', 'K'};
constexpr uint32_t FORMAT_VERSION = 2;  // 2: samples every 8 MiB (1: every MiB)
constexpr size_t DATA_ALIGN = 4096;
constexpr size_t SAMPLE_BYTES = 64;
constexpr size_t SAMPLE_EVERY = size_t(8) << 20;
constexpr uint64_t MAX_SOURCE_LEN = 4096;
constexpr uint64_t MAX_ENTRIES = 1u << 20;

struct file_header {
    char magic[8];
    uint32_t format_version;
    uint32_t layout_version;
    uint64_t identity;
    uint64_t file_size;
    uint64_t n_entries;
    uint64_t sample_checksum;
    uint64_t header_checksum;
    uint64_t source_len;
};
struct file_entry {
    uint32_t type;
    uint32_t pad;
    int64_t n_in;
    int64_t n_out;
    uint64_t offset;
    uint64_t bytes;
};
static_assert(sizeof(file_header) == 64 && sizeof(file_entry) == 40, "cache file layout");

size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

uint64_t fnv1a(uint64_t h, const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 1099511628211ull;  // FNV-1a 64 prime
    }
    return h;
}
constexpr uint64_t FNV_BASIS = 1469598103934665603ull;

// Bytes of header + source path + entry table (the data starts at align_up(this, DATA_ALIGN)).
size_t table_bytes(uint64_t source_len, uint64_t n_entries) {
    return sizeof(file_header) + align_up(source_len, 8) + n_entries * sizeof(file_entry);
}

uint64_t header_checksum(const uint8_t* table, size_t n) {
    // the table with the checksum field taken as zero
    const size_t at = offsetof(file_header, header_checksum);
    const uint8_t zero[sizeof(uint64_t)] = {};
    uint64_t h = fnv1a(FNV_BASIS, table, at);
    h = fnv1a(h, zero, sizeof(zero));
    return fnv1a(h, table + at + sizeof(zero), n - at - sizeof(zero));
}

// The sample checksum over the bytes `read(at, n, buf)` gives for each sampled span (at: file offset).
template <class Read>
uint64_t sample_checksum(const std::vector<size_t>& offsets, const std::vector<size_t>& bytes, Read read) {
    uint64_t h = FNV_BASIS;
    uint8_t buf[SAMPLE_BYTES];
    for (size_t i = 0; i < offsets.size(); ++i) {
        const size_t n = bytes[i];
        const size_t k = std::min(SAMPLE_BYTES, n);
        for (size_t o = 0; o + k <= n; o += SAMPLE_EVERY) {
            if (!read(offsets[i] + o, k, buf)) return 0;
            h = fnv1a(h, buf, k);
        }
        if (!read(offsets[i] + n - k, k, buf)) return 0;
        h = fnv1a(h, buf, k);
    }
    return h;
}

// Data offsets of the entries, laid out after a table of table_len bytes; returns the file size.
size_t layout(const std::vector<repack_entry>& entries, size_t table_len, std::vector<size_t>& offsets,
              std::vector<size_t>& bytes) {
    size_t at = align_up(table_len, DATA_ALIGN);
    for (const repack_entry& e : entries) {
        offsets.push_back(at);
        bytes.push_back(repack_bytes(e.type, e.n_in, e.n_out));
        at = align_up(at + bytes.back(), DATA_ALIGN);
    }
    return at;
}

bool read_all(int fd, void* dst, size_t n, off_t at) {
    auto* p = static_cast<uint8_t*>(dst);
    while (n > 0) {
        const ssize_t got = ::pread(fd, p, n, at);
        if (got <= 0) {
            if (got < 0 && errno == EINTR) continue;
            return false;
        }
        p += got;
        n -= static_cast<size_t>(got);
        at += got;
    }
    return true;
}

struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

} // namespace

std::unique_ptr<repack_cache_file> repack_cache_file::open(const std::string& path, uint64_t identity,
                                                           const std::vector<repack_entry>& entries, std::string* why) {
    why->clear();
    fd_guard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (fd.fd < 0) {
        if (errno != ENOENT) *why = format("cannot open it: %s", std::strerror(errno));
        return nullptr;
    }
    struct stat st{};
    if (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        return nullptr;
    }
    const size_t size = static_cast<size_t>(st.st_size);
    file_header h{};
    if (size < sizeof(h) || !read_all(fd.fd, &h, sizeof(h), 0) || std::memcmp(h.magic, MAGIC, 8) != 0 ||
        h.format_version != FORMAT_VERSION) {
        *why = "not a repack cache file of this format";
        return nullptr;
    }
    if (h.layout_version != REPACK_LAYOUT_VERSION) {
        *why = format("made for repacked layout version %u, this build has %u", h.layout_version, REPACK_LAYOUT_VERSION);
        return nullptr;
    }
    if (h.identity != identity || h.n_entries != entries.size()) {
        *why = "stale: made from another version of the model file";
        return nullptr;
    }
    if (h.file_size != size || h.source_len > MAX_SOURCE_LEN || h.n_entries > MAX_ENTRIES) {
        *why = format("truncated or corrupt (%zu bytes, header says %llu)", size, (unsigned long long)h.file_size);
        return nullptr;
    }
    const size_t table_len = table_bytes(h.source_len, h.n_entries);
    std::vector<uint8_t> table(table_len);
    if (table_len > size || !read_all(fd.fd, table.data(), table_len, 0) ||
        header_checksum(table.data(), table_len) != h.header_checksum) {
        *why = "corrupt header";
        return nullptr;
    }
    std::unique_ptr<repack_cache_file> f(new repack_cache_file());
    const size_t want_size = layout(entries, table_len, f->offsets_, f->bytes_);
    const auto* fe = reinterpret_cast<const file_entry*>(table.data() + table_len - entries.size() * sizeof(file_entry));
    for (size_t i = 0; i < entries.size(); ++i) {
        file_entry e;
        std::memcpy(&e, fe + i, sizeof(e));
        if (e.type != static_cast<uint32_t>(entries[i].type) || e.n_in != entries[i].n_in ||
            e.n_out != entries[i].n_out || e.offset != f->offsets_[i] || e.bytes != f->bytes_[i]) {
            *why = format("stale: entry %zu describes another matrix", i);
            return nullptr;
        }
    }
    if (want_size != size) {
        *why = "corrupt: entries do not fill the file";
        return nullptr;
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.fd, 0);
    if (p == MAP_FAILED) {
        *why = format("cannot map it: %s", std::strerror(errno));
        return nullptr;
    }
    f->map_ = static_cast<uint8_t*>(p);
    f->size_ = size;
    f->path_ = path;
    // read with pread, not through the mapping: a sample read through it faults its page in, with the
    // kernel's fault-around, which made the load about 10% slower than mapping the GGUF alone
    const uint64_t sampled = sample_checksum(f->offsets_, f->bytes_, [&fd](size_t at, size_t n, uint8_t* buf) {
        return read_all(fd.fd, buf, n, static_cast<off_t>(at));
    });
    if (sampled != h.sample_checksum) {
        *why = "corrupt data (sample checksum mismatch)";
        return nullptr;  // the destructor unmaps
    }
    return f;
}

std::unique_ptr<repack_cache_file> repack_cache_file::create(const std::string& path, uint64_t identity,
                                                             const std::vector<repack_entry>& entries,
                                                             const std::string& source) {
    if (source.size() > MAX_SOURCE_LEN) throw std::runtime_error("source path too long for the cache header");
    std::unique_ptr<repack_cache_file> f(new repack_cache_file());
    const size_t table_len = table_bytes(source.size(), entries.size());
    f->size_ = layout(entries, table_len, f->offsets_, f->bytes_);
    f->path_ = path;
    const auto salt = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                      reinterpret_cast<uintptr_t>(f.get());
    const std::string tmp = format("%s.tmp.%ld.%llx", path.c_str(), static_cast<long>(::getpid()), salt);
    f->fd_ = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f->fd_ < 0) throw std::runtime_error(format("cannot create '%s': %s", tmp.c_str(), std::strerror(errno)));
    f->tmp_path_ = tmp;
    const int rc = ::posix_fallocate(f->fd_, 0, static_cast<off_t>(f->size_));
    if (rc != 0) {
        throw std::runtime_error(format("cannot reserve %zu bytes for '%s': %s", f->size_, tmp.c_str(), std::strerror(rc)));
    }
    void* p = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd_, 0);
    if (p == MAP_FAILED) throw std::runtime_error(format("cannot map '%s': %s", tmp.c_str(), std::strerror(errno)));
    f->map_ = static_cast<uint8_t*>(p);

    // header and table now (the checksums at commit)
    file_header h{};
    std::memcpy(h.magic, MAGIC, 8);
    h.format_version = FORMAT_VERSION;
    h.layout_version = REPACK_LAYOUT_VERSION;
    h.identity = identity;
    h.file_size = f->size_;
    h.n_entries = entries.size();
    h.source_len = source.size();
    std::memcpy(f->map_, &h, sizeof(h));
    std::memcpy(f->map_ + sizeof(h), source.data(), source.size());
    auto* fe = f->map_ + table_len - entries.size() * sizeof(file_entry);
    for (size_t i = 0; i < entries.size(); ++i) {
        const file_entry e{static_cast<uint32_t>(entries[i].type), 0, entries[i].n_in, entries[i].n_out, f->offsets_[i],
                           f->bytes_[i]};
        std::memcpy(fe + i * sizeof(file_entry), &e, sizeof(e));
    }
    return f;
}

repack_cache_file::~repack_cache_file() {
    if (map_ != nullptr) ::munmap(map_, size_);
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

const uint8_t* repack_cache_file::data(size_t i) const { return map_ + offsets_.at(i); }

uint8_t* repack_cache_file::mutable_data(size_t i) {
    if (tmp_path_.empty()) throw std::logic_error("repack cache: writing to a committed or read-only file");
    return map_ + offsets_.at(i);
}

void repack_cache_file::commit() {
    if (tmp_path_.empty()) throw std::logic_error("repack cache: commit of a file not created here");
    file_header h;
    std::memcpy(&h, map_, sizeof(h));
    h.sample_checksum = sample_checksum(offsets_, bytes_, [this](size_t at, size_t n, uint8_t* buf) {
        std::memcpy(buf, map_ + at, n);
        return true;
    });
    std::memcpy(map_, &h, sizeof(h));
    const size_t table_len = table_bytes(h.source_len, h.n_entries);
    h.header_checksum = header_checksum(map_, table_len);
    std::memcpy(map_ + offsetof(file_header, header_checksum), &h.header_checksum, sizeof(uint64_t));
    // On disk before the name appears: a reader never maps a file whose pages may still be lost.
    if (::msync(map_, size_, MS_SYNC) != 0 || ::fdatasync(fd_) != 0) {
        throw std::runtime_error(format("cannot flush '%s': %s", tmp_path_.c_str(), std::strerror(errno)));
    }
    if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
        throw std::runtime_error(format("cannot rename '%s' to '%s': %s", tmp_path_.c_str(), path_.c_str(),
                                        std::strerror(errno)));
    }
    tmp_path_.clear();
    ::close(fd_);
    fd_ = -1;
    ::mprotect(map_, size_, PROT_READ);  // from now on shared with readers of the cache: read-only
}

void repack_cache_evict(const std::string& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return;
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const long long now_s = std::chrono::duration_cast<std::chrono::seconds>(now).count();
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        const std::string full = dir + "/" + name;
        if (name.find(".repack.tmp.") != std::string::npos) {
            struct stat st{};
            if (::stat(full.c_str(), &st) == 0 && now_s - static_cast<long long>(st.st_mtime) > 3600) {
                ::unlink(full.c_str());
            }
            continue;
        }
        if (name.size() < 7 || name.compare(name.size() - 7, 7, ".repack") != 0) continue;
        fd_guard fd{::open(full.c_str(), O_RDONLY | O_CLOEXEC)};
        file_header h{};
        if (fd.fd < 0 || !read_all(fd.fd, &h, sizeof(h), 0) || std::memcmp(h.magic, MAGIC, 8) != 0 ||
            h.source_len > MAX_SOURCE_LEN) {
            continue;  // not ours, or unreadable: leave it
        }
        std::string source(h.source_len, '\0');
        if (!read_all(fd.fd, &source[0], source.size(), sizeof(h))) continue;
        struct stat st{};
        if (::stat(source.c_str(), &st) != 0 && errno == ENOENT) ::unlink(full.c_str());
    }
    ::closedir(d);
}

} // namespace pipeinfer
