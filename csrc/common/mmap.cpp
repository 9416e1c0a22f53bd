#include "common/mmap.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

namespace pipeinfer {

namespace {

const char* file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int64_t mtime_ns(const struct stat& st) {
    return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

} // namespace

mapped_file::mapped_file(const std::string& path) : path_(path) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer for ever. It has no
    // effect on a regular file, the only kind mapped.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        throw gguf_error(format("cannot open '%s': %s", path.c_str(), std::strerror(errno)));
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        throw gguf_error(format("cannot stat '%s': %s", path.c_str(), std::strerror(e)));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw gguf_error(format("'%s' is %s, not a regular file", path.c_str(), file_kind(st.st_mode)));
    }
    size_ = static_cast<size_t>(st.st_size);
    dev_ = static_cast<uint64_t>(st.st_dev);
    ino_ = static_cast<uint64_t>(st.st_ino);
    mtime_ns_ = mtime_ns(st);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            throw gguf_error(format("cannot map '%s' (%zu bytes): %s", path.c_str(), size_, std::strerror(e)));
        }
        data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
}

mapped_file::~mapped_file() {
    if (data_ != nullptr) {
        ::munmap(const_cast<uint8_t*>(data_), size_);
    }
}

void mapped_file::check_unchanged() const {
    struct stat st{};
    if (::stat(path_.c_str(), &st) != 0) {
        throw gguf_error(format("'%s' changed while it was being loaded: it can no longer be read (%s)", path_.c_str(),
                                std::strerror(errno)));
    }
    if (static_cast<uint64_t>(st.st_dev) != dev_ || static_cast<uint64_t>(st.st_ino) != ino_) {
        throw gguf_error(format("'%s' changed while it was being loaded: it was replaced by another file",
                                path_.c_str()));
    }
    if (static_cast<size_t>(st.st_size) != size_ || mtime_ns(st) != mtime_ns_) {
        throw gguf_error(format("'%s' changed while it was being loaded: %zu bytes when mapped, now %lld bytes%s "
                                "(a file being written or truncated cannot be used; truncating a file under a "
                                "running pipeline kills the process with SIGBUS)",
                                path_.c_str(), size_, (long long)st.st_size,
                                static_cast<size_t>(st.st_size) == size_ ? ", modified since" : ""));
    }
}

void mapped_file::prefetch(size_t offset, size_t n) const {
    if (data_ == nullptr || offset >= size_) return;
    if (n > size_ - offset) n = size_ - offset;
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t start = offset / page * page;
    ::madvise(const_cast<uint8_t*>(data_) + start, n + (offset - start), MADV_WILLNEED);
}

void mapped_file::release(const void* p, size_t n) const {
    const auto* b = static_cast<const uint8_t*>(p);
    if (data_ == nullptr || b < data_ || b >= data_ + size_) return;
    if (n > static_cast<size_t>(data_ + size_ - b)) n = static_cast<size_t>(data_ + size_ - b);
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t off = static_cast<size_t>(b - data_);
    const size_t first = (off + page - 1) / page * page;  // whole pages only: neighbours keep theirs
    const size_t last = (off + n) / page * page;
    if (last > first) ::madvise(const_cast<uint8_t*>(data_) + first, last - first, MADV_DONTNEED);
}

} // namespace pipeinfer
