#include "common/memory.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace pipeinfer {

namespace {

// The first number in a file ("max" or a missing file: 0).
uint64_t read_u64(const char* path) {
    std::ifstream in(path);
    std::string word;
    if (!(in >> word) || word.empty() || word[0] < '0' || word[0] > '9') return 0;
    try {
        return std::stoull(word);
    } catch (const std::exception&) {
        return 0;
    }
}

uint64_t meminfo_available() {
    std::ifstream in("/proc/meminfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.compare(0, 13, "MemAvailable:") != 0) continue;
        std::istringstream fields(line.substr(13));
        uint64_t kib = 0;
        if (fields >> kib) return kib * 1024;
    }
    return 0;
}

// Room left under the cgroup memory limit (v2, then v1); 0 if unlimited or unknown.
uint64_t cgroup_room() {
    const uint64_t limit2 = read_u64("/sys/fs/cgroup/memory.max");
    if (limit2 > 0) {
        const uint64_t used = read_u64("/sys/fs/cgroup/memory.current");
        return limit2 > used ? limit2 - used : 1;
    }
    const uint64_t limit1 = read_u64("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (limit1 > 0 && limit1 < (uint64_t{1} << 60)) {  // v1 reports "no limit" as a huge number
        const uint64_t used = read_u64("/sys/fs/cgroup/memory/memory.usage_in_bytes");
        return limit1 > used ? limit1 - used : 1;
    }
    return 0;
}

} // namespace

uint64_t available_memory_bytes() {
    uint64_t avail = meminfo_available();
    if (avail == 0) {
        const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0) avail = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
    }
    const uint64_t room = cgroup_room();
    if (room > 0) avail = avail > 0 ? std::min(avail, room) : room;
    return avail;
}

void check_fits_in_memory(uint64_t bytes, const std::string& what) {
    const uint64_t avail = available_memory_bytes();
    if (avail > 0 && bytes > avail) {
        throw memory_error(format("%s needs %llu bytes (%.2f GiB) but only %llu bytes (%.2f GiB) are available; "
                                  "use a smaller n_ctx or kv_type='q8_0'",
                                  what.c_str(), (unsigned long long)bytes, bytes / 1073741824.0,
                                  (unsigned long long)avail, avail / 1073741824.0));
    }
}

} // namespace pipeinfer
