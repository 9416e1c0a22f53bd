// Hyperparameters of a decoder-only transformer, read from GGUF metadata ({arch}.* keys) and checked
// for consistency before any buffer is sized from them. One struct for every supported architecture:
// the keys every architecture shares are read here, the per-architecture ones (and the facts a file
// does not state, such as Gemma's embedding scale) by the architecture's own file (model/arch-*.cpp,
// through the table in model/arch.h).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/ops.h"

namespace pipeinfer {

class gguf_file;

enum class llm_arch : int { LLAMA, QWEN2, QWEN2MOE, QWEN3, QWEN3MOE, GEMMA3, PHI3 };

// The gated activation of the feed-forward network: act(gate) * up.
enum class ffn_act : int { SILU, GELU };

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
    int64_t n_ff = 0;          // {arch}.feed_forward_length (0 for an MoE model without dense layers)
    int64_t n_rot = 0;         // {arch}.rope.dimension_count (default head_dim)
    float rms_eps = 1e-5f;     // {arch}.attention.layer_norm_rms_epsilon
    float rope_freq_base = 10000.0f;  // {arch}.rope.freq_base
    rope_mode rope = rope_mode::NORMAL;
    bool has_qkv_bias = false;  // qwen2: attn_{q,k,v}.bias
    bool has_qk_norm = false;   // qwen3, gemma3: RMSNorm of each head of q and k (attn_{q,k}_norm)
    bool has_post_norms = false;  // gemma3: RMSNorm of the attention and FFN outputs before the residual add
    ffn_act act = ffn_act::SILU;
    float embd_scale = 1.0f;    // gemma3: token embeddings are multiplied by sqrt(n_embd)
    // Scale of the attention scores. Applied to q before its f16 rounding when q_prescaled (gemma3,
    // phi3 scale q, as llama.cpp's graphs do; the scores then use 1.0), else to the scores.
    float attn_scale = 0.0f;    // 0: 1 / sqrt(head_dim)
    bool q_prescaled = false;

    // Sliding-window attention: a token at position p sees positions p' with p - p' < n_swa, in the
    // layers swa_layers marks (gemma3: 5 of every 6; mistral: all). n_swa == 0: no window.
    int64_t n_swa = 0;              // {arch}.attention.sliding_window
    std::vector<uint8_t> swa_layers;  // (n_layer) 1 = sliding-window layer
    float rope_freq_base_swa = 0.0f;  // rope base of the sliding-window layers (0: rope_freq_base)

    // Mixture of experts (0 experts: a dense FFN).
    int64_t n_expert = 0;        // {arch}.expert_count
    int64_t n_expert_used = 0;   // {arch}.expert_used_count
    int64_t n_ff_exp = 0;        // {arch}.expert_feed_forward_length (default n_ff)
    int64_t n_ff_shexp = 0;      // {arch}.expert_shared_feed_forward_length (qwen2moe; 0: none)
    bool expert_weights_norm = true;  // the chosen experts' weights are renormalized to sum to 1

    int64_t n_embd_q() const { return n_head * head_dim; }
    int64_t n_embd_kv() const { return n_head_kv * head_dim; }
    bool is_swa(int64_t il) const { return n_swa > 0 && swa_layers[static_cast<size_t>(il)] != 0; }
    float rope_base(int64_t il) const {
        return is_swa(il) && rope_freq_base_swa > 0.0f ? rope_freq_base_swa : rope_freq_base;
    }
    float score_scale() const { return attn_scale > 0.0f ? attn_scale : 1.0f / std::sqrt(static_cast<float>(head_dim)); }
    // Widest FFN hidden layer a layer of this model computes (dense, expert or shared expert).
    int64_t n_ff_max() const;
};

// Reads and validates the hyperparameters. Throws unsupported_type for an architecture this engine
// cannot run and model_error naming the key for missing or inconsistent values.
llama_hparams hparams_from_gguf(const gguf_file& f);

// Helpers for the architectures' own keys (model/arch-*.cpp). Each throws model_error naming the
// key and file when the value is missing (required_int) or outside [1, limit] (positive).
int64_t required_int(const gguf_file& f, const std::string& key);
int64_t positive(const gguf_file& f, const std::string& key, int64_t v, int64_t limit);
// Reads the MoE keys ({arch}.expert_count, expert_used_count, expert_feed_forward_length, ...);
// `required`: an MoE architecture that must have experts.
void read_expert_hparams(const gguf_file& f, llama_hparams& hp, bool required);
// Reads {arch}.attention.sliding_window; `pattern` n > 0 marks layers il with il % n < n - 1 as
// sliding-window (gemma3: 6), 0 marks every layer.
void read_sliding_window(const gguf_file& f, llama_hparams& hp, int pattern);

} // namespace pipeinfer
