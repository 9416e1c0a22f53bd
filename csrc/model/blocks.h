// The building blocks the architectures' layer code is written with (model/arch-*.cpp), over one
// batch of n rows in one stage: RMSNorm of the residual stream, the Q/K/V projections with their
// biases and per-head norms, rotary embedding, attention over the KV cache (full or sliding window),
// the output projection, gated FFNs and the residual add. Each is the operation llama.cpp's graph
// builds for it (llm_graph_context::build_norm / build_qkv / build_attn / build_ffn), computed with
// the kernels of kernels/ in llama.cpp's arithmetic. Must not know which architecture calls it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/thread-pool.h"
#include "kv/kv-cache.h"
#include "model/hparams.h"
#include "model/weights.h"

namespace pipeinfer {

struct batch;

// Scratch of one stage, resized per batch (n = n_tokens).
struct stage_buffers {
    std::vector<float> x;      // (n, n_embd) residual stream
    std::vector<float> xn;     // (n, n_embd) normed input of a sublayer
    std::vector<float> q;      // (n, n_embd_q)
    std::vector<float> k;      // (n, n_embd_kv)
    std::vector<float> v;      // (n, n_embd_kv)
    std::vector<float> att;    // (n, n_embd_q) attention output before wo
    std::vector<float> tmp;    // (n, n_embd) block output before the residual add
    std::vector<float> gate;   // (n, n_ff_max) FFN gate, then act(gate) * up
    std::vector<float> up;     // (n, n_ff_max)
    std::vector<float> scores; // (n_threads, max of attend_scratch_floats, attend_fast_scratch_floats) per-thread attention scratch
    // MoE (model/moe.cpp):
    std::vector<float> router;      // (n, n_expert) router logits, then probabilities
    std::vector<int32_t> chosen;    // (n, n_expert_used) chosen experts per row, best first
    std::vector<float> weight;      // (n, n_expert_used) their weights
    std::vector<float> ex_in;       // (rows of one expert, n_embd) gathered inputs
    std::vector<float> ex_out;      // (n, n_expert_used, n_embd) each chosen expert's output per row
};

// What a layer's code works on: one layer of one stage, one batch.
struct layer_ctx {
    const llama_hparams& hp;
    const layer_weights& lw;
    const stage_weights& sw;
    int64_t il;                                   // layer index in the model
    int local;                                    // layer index in the stage's KV cache
    const batch& b;
    const std::vector<int32_t>& cells;            // (n_tokens) KV cell of each batch token
    const std::vector<std::vector<int32_t>>& visible;  // per batch token: visible cells, by position
    stage_buffers& buf;
    kv_cache& kv;
    thread_pool& pool;
    matmul_scratch& mm;
    bool exact;                                   // the batch's exact_rows
    // The default (repacked) mode: attention of every row by attend_fast (kernels/attention-fast.h),
    // whatever the batch; false (the exact mode): attend_f16, llama.cpp's arithmetic.
    bool fast_attn;
};

// buf.xn = RMSNorm(buf.x) * w, row by row (n rows of n_embd).
void norm_input(layer_ctx& c, const std::vector<float>& w, size_t n);
// x = RMSNorm(x) * w in place for n rows of `width` values (gemma3's post-norms of buf.tmp).
void norm_rows_inplace(layer_ctx& c, float* x, const std::vector<float>& w, size_t n, int64_t width);
// buf.q, buf.k, buf.v = projections of buf.xn (+ biases when the layer has them).
void project_qkv(layer_ctx& c, size_t n);
// RMSNorm of every head of buf.q and buf.k with the layer's q_norm / k_norm (qwen3, gemma3).
void norm_qk_heads(layer_ctx& c, size_t n);
// Rotary embedding of buf.q and buf.k at the batch positions, with the layer's rope base and the
// model's frequency factors (rope_freqs) when it has them.
void rope_qk(layer_ctx& c, size_t n);
// buf.q *= s (llama.cpp's ggml_scale of Q before attention: gemma3, phi3).
void scale_q(layer_ctx& c, size_t n, float s);
// Stores buf.k / buf.v in the KV cache and computes buf.att: attention of every head of buf.q over
// the visible cells (only the last n_swa positions in a sliding-window layer), scores scaled by
// `scale`.
void self_attention(layer_ctx& c, size_t n, float scale);
// buf.tmp = wo · buf.att.
void output_projection(layer_ctx& c, size_t n);
// buf.tmp = down(act(gate · xn) * (up · xn)) with the given weights (hidden width = gate's rows).
void gated_ffn(layer_ctx& c, size_t n, const weight_view& gate, const weight_view& up, const weight_view& down,
               ffn_act act);
// buf.x += buf.tmp (n rows).
void add_residual(layer_ctx& c, size_t n);

// The pre-norm attention block of llama and qwen2: x += wo · attention(rope(qkv(RMSNorm(x)))), scores
// scaled by 1/sqrt(head_dim).
void prenorm_attention(layer_ctx& c, size_t n);
// The same with RMSNorm of every q and k head before the rotary embedding (qwen3).
void prenorm_attention_qk_norm(layer_ctx& c, size_t n);

} // namespace pipeinfer
