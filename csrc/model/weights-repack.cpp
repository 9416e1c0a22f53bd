#include "model/weights-repack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "gguf/gguf-reader.h"
#include "kernels/thread-pool.h"
#include "model/repack-cache.h"
#include "quant/repack.h"

namespace pipeinfer {

namespace {

struct fnv {
    uint64_t h = 1469598103934665603ull;  // FNV-1a 64 offset basis
    void mix(const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        for (size_t i = 0; i < n; ++i) {
            h ^= b[i];
            h *= 1099511628211ull;  // FNV-1a 64 prime
        }
    }
    template <class T> void mix_value(const T& v) { mix(&v, sizeof(v)); }
};

std::vector<weight_view*> repackable_matrices(stage_weights& sw) {
    std::vector<weight_view*> mats = stage_matrices(sw);
    mats.erase(std::remove_if(mats.begin(), mats.end(),
                              [](const weight_view* w) { return !repack_supported(w->type) || w->repacked != nullptr; }),
               mats.end());
    return mats;
}

// Identity of what a stage's cache file was made from: the model file's size and modification time,
// the layer range, and per matrix its type, shape, file offset and 64 bytes at its start, middle and end.
// False if the file cannot be identified (not a file on disk).
bool stage_identity(const gguf_file& f, const stage_weights& sw, const std::vector<weight_view*>& mats, uint64_t* out) {
    // the samples are read with pread, not through the mapping: faulting their pages in (with the
    // kernel's fault-around) made a cached load measurably slower than mapping the GGUF alone
    const int fd = ::open(f.source().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st{};
    bool ok = ::fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) == f.file_size();
    fnv h;
    h.mix_value(static_cast<uint64_t>(st.st_size));
    h.mix_value(static_cast<int64_t>(st.st_mtim.tv_sec));
    h.mix_value(static_cast<int64_t>(st.st_mtim.tv_nsec));
    h.mix_value(sw.layer_begin);
    h.mix_value(sw.layer_end);
    h.mix_value(sw.has_head);
    uint8_t buf[64];
    for (size_t i = 0; ok && i < mats.size(); ++i) {
        const weight_view* w = mats[i];
        const size_t at = static_cast<size_t>(w->data - f.bytes());
        h.mix_value(static_cast<uint32_t>(w->type));
        h.mix_value(w->n_in);
        h.mix_value(w->n_out);
        h.mix_value(static_cast<uint64_t>(at));
        const size_t n = w->row_bytes * static_cast<size_t>(w->n_out);
        const size_t k = std::min<size_t>(sizeof(buf), n);
        for (size_t o : {size_t(0), (n - k) / 2, n - k}) {
            ok = ::pread(fd, buf, k, static_cast<off_t>(at + o)) == static_cast<ssize_t>(k);
            if (!ok) break;
            h.mix(buf, k);
        }
    }
    ::close(fd);
    *out = h.h;
    return ok;
}

// mkdir -p; false (errno set) on failure.
bool make_dirs(const std::string& dir) {
    for (size_t i = 1; i <= dir.size(); ++i) {
        if (i < dir.size() && dir[i] != '/') continue;
        const std::string part = dir.substr(0, i);
        if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
    struct stat st{};
    return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Repacks w into dst (repack_bytes(...) bytes) on the pool's threads, a share of the 16-row groups each.
void repack_matrix(const weight_view& w, uint8_t* dst, size_t bytes, thread_pool& pool) {
    const int64_t n_groups = (w.n_out + REPACK_ROWS - 1) / REPACK_ROWS;
    const size_t group_bytes = bytes / static_cast<size_t>(n_groups);
    pool.parallel_for([&](int ith, int nth) {
        const int64_t g0 = n_groups * ith / nth, g1 = n_groups * (ith + 1) / nth;
        if (g0 == g1) return;
        const int64_t r0 = g0 * REPACK_ROWS, r1 = std::min(w.n_out, g1 * REPACK_ROWS);
        repack_rows(w.type, w.data + static_cast<size_t>(r0) * w.row_bytes, w.row_bytes, w.n_in, r1 - r0,
                    dst + static_cast<size_t>(g0) * group_bytes);
    });
}

// A new cache file for the stage, or null (the reason logged) when it cannot be written.
std::unique_ptr<repack_cache_file> create_cache(const std::string& dir, const std::string& path, uint64_t identity,
                                                const std::vector<repack_entry>& entries, const gguf_file& file) {
    try {
        if (!make_dirs(dir)) throw std::runtime_error(format("cannot create directory '%s': %s", dir.c_str(), std::strerror(errno)));
        repack_cache_evict(dir);
        char real[PATH_MAX];
        const std::string source = ::realpath(file.source().c_str(), real) != nullptr ? real : file.source();
        return repack_cache_file::create(path, identity, entries, source);
    } catch (const std::exception& e) {
        log_msg(log_level::WARNING, "repack cache not written (%s); repacking in memory", e.what());
        return nullptr;
    }
}

} // namespace

std::string repack_cache_path(const std::string& dir, const gguf_file& file, int64_t layer_begin, int64_t layer_end,
                              bool has_head) {
    char real[PATH_MAX];
    const std::string source = ::realpath(file.source().c_str(), real) != nullptr ? real : file.source();
    fnv h;
    h.mix(source.data(), source.size());
    h.mix_value(layer_begin);
    h.mix_value(layer_end);
    h.mix_value(has_head);
    std::string stem = source.substr(source.find_last_of('/') + 1);
    if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".gguf") == 0) stem.resize(stem.size() - 5);
    return format("%s/%s.%016llx.repack", dir.c_str(), stem.c_str(), static_cast<unsigned long long>(h.h));
}

size_t repack_stage_weights(stage_weights& sw, thread_pool& pool, const gguf_file& file, const repack_options& opt) {
    if (!opt.enabled) return 0;
    std::vector<weight_view*> mats = repackable_matrices(sw);
    if (mats.empty()) return 0;
    std::vector<repack_entry> entries;
    size_t total = 0;
    for (const weight_view* w : mats) {
        entries.push_back({w->type, w->n_in, w->n_out});
        total += repack_bytes(w->type, w->n_in, w->n_out);
    }
    const double mib = static_cast<double>(total) / (1 << 20);

    std::unique_ptr<repack_cache_file> out;  // the new cache file being written, if any
    std::string path;
    uint64_t identity = 0;
    if (!opt.cache_dir.empty() && stage_identity(file, sw, mats, &identity)) {
        path = repack_cache_path(opt.cache_dir, file, sw.layer_begin, sw.layer_end, sw.has_head);
        std::string why;
        if (std::unique_ptr<repack_cache_file> cached = repack_cache_file::open(path, identity, entries, &why)) {
            for (size_t i = 0; i < mats.size(); ++i) mats[i]->repacked = cached->data(i);
            sw.repacked_file = std::shared_ptr<const repack_cache_file>(std::move(cached));
            log_msg(log_level::DEBUG, "mapped %.0f MiB of repacked weights from %s", mib, path.c_str());
            return total;
        }
        if (!why.empty()) log_msg(log_level::INFO, "repack cache %s not used: %s", path.c_str(), why.c_str());
        out = create_cache(opt.cache_dir, path, identity, entries, file);
    }
    log_msg(log_level::INFO, "repacking %.0f MiB of weights (layers %lld-%lld) into the fast layout%s%s", mib,
            static_cast<long long>(sw.layer_begin), static_cast<long long>(sw.layer_end - 1),
            out ? "; saved for the next load in " : " (exact=True skips this)", out ? path.c_str() : "");
    log_progress progress("repacking");
    size_t done = 0;
    for (size_t i = 0; i < mats.size(); ++i) {
        weight_view& w = *mats[i];
        const size_t bytes = repack_bytes(w.type, w.n_in, w.n_out);
        uint8_t* dst = nullptr;
        if (out) {
            dst = out->mutable_data(i);
        } else {
            sw.repacked_store.emplace_back(bytes);  // the vector's buffer stays put when the store grows
            dst = sw.repacked_store.back().data();
        }
        repack_matrix(w, dst, bytes, pool);
        w.repacked = dst;
        if (!(sw.has_embd && w.data == sw.token_embd.data)) file.release_pages(w.data, w.row_bytes * w.n_out);
        done += bytes;
        progress.update(static_cast<double>(done) / static_cast<double>(total));
    }
    if (out) {
        try {
            out->commit();
        } catch (const std::exception& e) {
            log_msg(log_level::WARNING, "repack cache not saved (%s)", e.what());
        }
        sw.repacked_file = std::shared_ptr<const repack_cache_file>(std::move(out));
    }
    progress.finish(format("%.0f MiB", mib));
    return total;
}

} // namespace pipeinfer
