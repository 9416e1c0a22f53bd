// qwen3 and qwen3moe (Qwen3, Qwen3-MoE): the llama block with NEOX-style rotary embedding, no biases,
// and an RMSNorm of every head of q and k before the rotation (attn_q_norm / attn_k_norm). qwen3moe
// replaces the FFN with routed experts (softmax router, top-k, weights renormalized), as llama.cpp's
// src/models/qwen3.cpp and qwen3moe.cpp build them.
#include "common/error.h"
#include "gguf/gguf-reader.h"
#include "model/arch.h"
#include "model/blocks.h"
#include "model/moe.h"

namespace pipeinfer {

namespace {

void load_qwen3(const gguf_file& f, llama_hparams& hp) {
    hp.rope = rope_mode::NEOX;
    hp.has_qk_norm = true;
}

void load_qwen3moe(const gguf_file& f, llama_hparams& hp) {
    load_qwen3(f, hp);
    read_expert_hparams(f, hp, true);
}

void bind_layer(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw) {
    bind_attention(b, hp, il, lw, false);
    lw.q_norm = b.vector(blk(il, "attn_q_norm.weight"), hp.head_dim);
    lw.k_norm = b.vector(blk(il, "attn_k_norm.weight"), hp.head_dim);
    bind_ffn(b, hp, il, lw);
}

void attention(layer_ctx& c, size_t n) {
    norm_input(c, c.lw.attn_norm, n);
    project_qkv(c, n);
    norm_qk_heads(c, n);
    rope_qk(c, n);
    self_attention(c, n, c.hp.score_scale());
    output_projection(c, n);
    add_residual(c, n);
}

void ffn(layer_ctx& c, size_t n) {
    norm_input(c, c.lw.ffn_norm, n);
    if (c.lw.is_moe()) {
        moe_ffn(c, n, ffn_act::SILU);
    } else {
        gated_ffn(c, n, c.lw.w_gate, c.lw.w_up, c.lw.w_down, ffn_act::SILU);
    }
    add_residual(c, n);
}

} // namespace

const arch_def arch_qwen3 = {"qwen3", llm_arch::QWEN3, load_qwen3, bind_layer, attention, ffn};
const arch_def arch_qwen3moe = {"qwen3moe", llm_arch::QWEN3MOE, load_qwen3moe, bind_layer, attention, ffn};

} // namespace pipeinfer
