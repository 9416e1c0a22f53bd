// The fast weight layout of a stage: row-interleaved copies (quant/repack.h) of every matrix of a
// repackable type, made at load or mapped from the on-disk cache (model/repack-cache.h) that the first
// load of the same model file and layer range wrote. Owns the choice between the two and the progress
// messages of a slow load; the layouts and kernels live in quant/.
#pragma once
#include <cstddef>
#include <string>

#include "model/weights.h"

namespace pipeinfer {

class gguf_file;
class thread_pool;

struct repack_options {
    bool enabled = false;   // false: keep llama.cpp's layout (the exact mode)
    std::string cache_dir;  // directory of the repack cache; "" repacks in memory at every load
};

// Gives every matrix of a repackable type (q4_0, q4_1, q5_0, q8_0, q4_K, q6_K) a row-interleaved copy
// (weight_view::repacked); matmuls then take the repacked order. With a cache directory the copies
// come from a valid cache file (mapped, nothing repacked), or are repacked into a new one (written
// atomically; loads that cannot write it repack in memory and say why in the log). In-memory copies
// release the file's pages they copied, except the token embedding's, whose rows the lookup keeps
// reading. Returns the bytes of row-interleaved copies in use.
size_t repack_stage_weights(stage_weights& sw, thread_pool& pool, const gguf_file& file, const repack_options& opt);

// The cache file of a stage of `file` (layers [layer_begin, layer_end), head included or not) in dir.
std::string repack_cache_path(const std::string& dir, const gguf_file& file, int64_t layer_begin, int64_t layer_end,
                              bool has_head);

} // namespace pipeinfer
