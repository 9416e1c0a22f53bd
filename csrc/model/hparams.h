// Hyperparameters of a decoder-only transformer, read from GGUF metadata ({arch}.* keys) and checked
// for consistency before any buffer is sized from them. One struct for every supported architecture;
// the per-architecture differences (rope mode, biases) are fields, not code paths.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/ops.h"

namespace pipeinfer {

class gguf_file;

enum class llm_arch : int { LLAMA, QWEN2 };

struct llama_hparams {
    llm_arch arch = llm_arch::LLAMA;
    std::string arch_name;     // general.architecture
    int64_t n_vocab = 0;       // rows of token_embd.weight
    int64_t n_ctx_train = 0;   // {arch}.context_length
    int64_t n_embd = 0;        // {arch}.embedding_length
    int64_t n_layer = 0;       // {arch}.block_count
    int64_t n_head = 0;        // {arch}.attention.head_count
    int64_t n_head_kv = 0;     // {arch}.attention.head_count_kv (default n_head)
    int64_t head_dim = 0;      // {arch}.attention.key_length (default n_embd / n_head)
    int64_t n_ff = 0;          // {arch}.feed_forward_length
    int64_t n_rot = 0;         // {arch}.rope.dimension_count (default head_dim)
    float rms_eps = 1e-5f;     // {arch}.attention.layer_norm_rms_epsilon
    float rope_freq_base = 10000.0f;  // {arch}.rope.freq_base
    rope_mode rope = rope_mode::NORMAL;
    bool has_qkv_bias = false;  // qwen2

    int64_t n_embd_q() const { return n_head * head_dim; }
    int64_t n_embd_kv() const { return n_head_kv * head_dim; }
};

// Reads and validates the hyperparameters. Throws unsupported_type for an architecture this engine
// cannot run and model_error naming the key for missing or inconsistent values.
llama_hparams hparams_from_gguf(const gguf_file& f);

} // namespace pipeinfer
