#include "common/mmap.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

namespace pipeinfer {

mapped_file::mapped_file(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw gguf_error(format("cannot open '%s': %s", path.c_str(), std::strerror(errno)));
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw gguf_error(format("'%s' is not a regular file", path.c_str()));
    }
    size_ = static_cast<size_t>(st.st_size);
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
