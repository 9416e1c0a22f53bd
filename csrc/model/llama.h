// Forward pass of one pipeline stage of a decoder-only transformer of any supported architecture
// (model/arch.h: llama, qwen2, qwen2moe, qwen3, qwen3moe, gemma3, phi3): a contiguous range of layers,
// with the token embedding on the first stage and the final norm + output head on the last. The
// stage owns the batch bookkeeping, the buffers, its KV cache and thread pool, and calls the
// architecture's attention and FFN blocks per layer. Must not know about transports, runs in flight
// or sampling, nor about any one architecture.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/thread-pool.h"
#include "kv/kv-cache.h"
#include "model/arch.h"
#include "model/blocks.h"
#include "model/hparams.h"
#include "model/weights.h"
#include "model/weights-repack.h"

namespace pipeinfer {

class gguf_file;

// A batch of tokens to evaluate together.
struct batch {
    std::vector<int32_t> token;        // (n_tokens) token ids; read by the first stage only
    std::vector<int32_t> pos;          // (n_tokens) positions
    seq_lists seqs;                    // per-token KV sequence ids
    std::vector<uint8_t> want_logits;  // (n_tokens) 1 = return this row's logits (last stage)
    // Compute every row exactly as a one-token batch would (bit for bit). llama.cpp switches kernels
    // (summation orders) with the batch size; prompt processing follows it (false) to reproduce its
    // output, while speculative verification needs row results independent of the batch (true), so
    // that speculative greedy output equals non-speculative greedy output token for token.
    bool exact_rows = false;
    // Return, per wanted row, only the index of the largest logit (lowest index on ties) instead of
    // the n_vocab logits: greedy decoding and greedy verification need nothing else, and it keeps
    // the logits on the last stage instead of sending n_vocab floats per row back to the head.
    bool argmax_only = false;

    size_t n_tokens() const { return pos.size(); }
    size_t n_outputs() const;
    // Checks sizes and ranges; throws std::invalid_argument naming the field.
    void validate(int64_t n_vocab, int n_seq_max, bool needs_tokens) const;
};

struct stage_stats {
    uint64_t runs = 0;             // forward calls
    uint64_t tokens = 0;           // tokens evaluated
    uint64_t layers_run = 0;       // layer evaluations done (per batch)
    uint64_t layers_skipped = 0;   // layer evaluations skipped by cancellation
};

// n_ctx, checked against the model: each of the n_slots sequence groups (serving slots; without groups,
// each sequence, as llama.cpp's n_ctx_per_seq) gets at most the trained context (the engine applies no
// rope scaling), and q8_0 storage needs a head size it can split into blocks.
int64_t checked_n_ctx(const gguf_file& f, const llama_hparams& hp, int64_t n_ctx, kv_type kv, int n_slots);

class llama_stage {
public:
    // Runs layers [layer_begin, layer_end) of the model in `file` with a KV cache of n_ctx cells and
    // n_seq_max sequences, on n_threads threads. repack.enabled: row-interleaved weight copies where the
    // type has them (model/weights-repack.h; faster, not llama.cpp's summation order). kv: how the KV
    // cache stores values (f16 as llama.cpp by default; q8_0 about half of that again, not exact).
    // Throws std::invalid_argument for an n_ctx above the model's trained context, memory_error if the
    // KV cache does not fit in the memory available (checked before allocating).
    llama_stage(std::shared_ptr<const gguf_file> file, int64_t layer_begin, int64_t layer_end, int64_t n_ctx,
                int n_seq_max, int n_threads, int seq_group = 0, const repack_options& repack = {},
                kv_type kv = kv_type::F16);

    // First stage: `in` is ignored and b.token is embedded. Other stages: `in` is (n_tokens, n_embd)
    // f32 activations from the previous stage. Result: on the last stage, `out` = (n_outputs, n_vocab)
    // f32 logits of the rows flagged in want_logits (in batch order), or with argmax_only (n_outputs)
    // token ids stored exactly as f32; otherwise (n_tokens, n_embd) f32.
    // `cancelled` (optional) is polled between layers; when it returns true the remaining layers are
    // skipped (counted in stats) and forward returns false with `out` unspecified.
    // Throws kv_full_error if the cache cannot hold the batch (cache unchanged).
    bool forward(const batch& b, const float* in, std::vector<float>& out,
                 const std::function<bool()>& cancelled = {});

    const llama_hparams& hparams() const { return hp_; }
    int64_t n_vocab() const { return n_vocab_; }
    int64_t layer_begin() const { return w_.layer_begin; }
    int64_t layer_end() const { return w_.layer_end; }
    bool is_first() const { return w_.has_embd; }
    bool is_last() const { return w_.has_head; }
    size_t weight_bytes() const { return w_.bytes; }
    kv_cache& kv() { return kv_; }
    const kv_cache& kv() const { return kv_; }
    const stage_stats& stats() const { return stats_; }
    thread_pool& pool() { return pool_; }

private:
    void embed(const batch& b);
    layer_ctx layer(int il, const batch& b, const std::vector<int32_t>& cells);
    void resize_buffers(size_t n_tokens);
    // The output norm and head (last stage); false if `cancelled` turned true between head slices.
    bool head(const batch& b, std::vector<float>& out, const std::function<bool()>& cancelled);
    // Moves the rows of buf_.x whose logits are wanted to the front (batch order); returns their count.
    size_t compact_output_rows(const batch& b);
    // Output norm + output head on the first r rows of buf_.x: out = (r, n_vocab).
    bool head_rows(size_t r, std::vector<float>& out, const std::function<bool()>& cancelled);
    bool output_matmul(size_t r, float* logits, const std::function<bool()>& cancelled);
    static constexpr int64_t OUTPUT_SLICES = 8;  // cancellation checks within the output head
    bool argmax_ = false;                         // the current batch's argmax_only
    std::vector<float> logits_tmp_;               // (n_outputs, n_vocab) f32 when argmax_only
    std::vector<float> slice_out_;                // (n_outputs, head slice rows) f32: a sliced output head

    std::shared_ptr<const gguf_file> file_;
    llama_hparams hp_;
    const arch_def* arch_ = nullptr;
    int64_t n_vocab_ = 0;
    stage_weights w_;
    kv_cache kv_;
    thread_pool pool_;
    matmul_scratch mm_;
    stage_stats stats_;
    bool exact_ = false;                          // the current batch's exact_rows
    bool fast_attn_ = false;                      // repack.enabled: attend_fast for every row (blocks.h)
    std::vector<std::vector<int32_t>> visible_;  // per batch token: visible KV cells

    stage_buffers buf_;                           // scratch, resized per batch (model/blocks.h)
};

} // namespace pipeinfer
