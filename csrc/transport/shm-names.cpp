#include "transport/shm-names.h"

#include <cerrno>
#include <fstream>
#include <set>
#include <sys/mman.h>

namespace pipeinfer {

namespace {

// The segment names MPICH gives its per-job slabs (ch4/shm/posix/posix_init.c: "/mpich_shm_%x_%d" and
// "/mpich_vci_%x_%d").
bool is_mpich_job_segment(const std::string& name) {
    return name.rfind("mpich_shm_", 0) == 0 || name.rfind("mpich_vci_", 0) == 0;
}

} // namespace

std::vector<std::string> unlink_mapped_mpich_shm() {
    std::vector<std::string> removed;
    try {
        std::ifstream maps("/proc/self/maps");
        std::set<std::string> names;
        const std::string dir = "/dev/shm/";
        for (std::string line; std::getline(maps, line);) {
            const size_t at = line.find(dir);
            if (at == std::string::npos) continue;
            std::string name = line.substr(at + dir.size());
            if (name.find(' ') != std::string::npos) continue;  // "(deleted)": already unlinked
            if (is_mpich_job_segment(name)) names.insert(name);
        }
        for (const std::string& name : names) {
            if (::shm_unlink(("/" + name).c_str()) == 0 || errno == ENOENT) removed.push_back(name);
        }
    } catch (...) {
        // best effort (see the header)
    }
    return removed;
}

} // namespace pipeinfer
