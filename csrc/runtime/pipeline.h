// The pipeline the Python API drives: the model's layers split into stages, KV commands applied to
// every stage in issue order, and logits returned to the head. This file currently runs all stages
// in the caller's process, one after another (the single-process engine); transports that put stages
// on other threads or MPI ranks plug in under the same interface. Knows nothing about Python,
// sampling or speculation policy.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/llama.h"

namespace pipeinfer {

class gguf_file;

struct pipeline_config {
    std::string model_path;
    int64_t n_ctx = 0;                   // KV cells per stage; 0 = min(context_length, 4096)
    int n_seq_max = 1;                   // KV sequence ids available
    int n_threads = 1;                   // threads per stage
    std::vector<int64_t> stage_layers;   // layers per stage (sums to n_layer); empty = one stage
};

class pipeline {
public:
    explicit pipeline(const pipeline_config& cfg);
    ~pipeline();

    // Evaluates a batch through every stage; returns (n_outputs, n_vocab) f32 logits of the flagged
    // rows. The buffer is reused by the next call.
    const std::vector<float>& decode(const batch& b);

    void kv_seq_rm(int32_t seq, int32_t p0, int32_t p1);
    void kv_seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1);
    void kv_seq_keep(int32_t seq);
    void kv_clear();
    int32_t kv_seq_pos_max(int32_t seq) const;
    int64_t kv_n_used() const;

    const llama_hparams& hparams() const { return stages_.front()->hparams(); }
    int64_t n_vocab() const { return stages_.front()->n_vocab(); }
    int64_t n_ctx() const { return n_ctx_; }
    int n_seq_max() const { return n_seq_max_; }
    int n_stages() const { return static_cast<int>(stages_.size()); }
    const llama_stage& stage(int i) const { return *stages_[static_cast<size_t>(i)]; }
    const gguf_file& file() const { return *file_; }

private:
    std::shared_ptr<const gguf_file> file_;
    std::vector<std::unique_ptr<llama_stage>> stages_;
    std::vector<float> act_[2];  // (n_tokens, n_embd) activations between stages
    std::vector<float> logits_;  // (n_outputs, n_vocab)
    int64_t n_ctx_ = 0;
    int n_seq_max_ = 1;
};

// Splits n_layer layers into n_stages contiguous ranges, balancing weight bytes (per-layer bytes
// given); every stage gets at least one layer. Throws std::invalid_argument if n_stages is not in
// [1, n_layer].
std::vector<int64_t> split_layers_by_bytes(const std::vector<size_t>& layer_bytes, int n_stages);

} // namespace pipeinfer
