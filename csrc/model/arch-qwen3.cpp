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

} // namespace

const arch_def arch_qwen3 = {"qwen3", llm_arch::QWEN3, load_qwen3,
                               bind_layer, prenorm_attention_qk_norm, prenorm_silu_ffn};
const arch_def arch_qwen3moe = {"qwen3moe", llm_arch::QWEN3MOE, load_qwen3moe,
                               bind_layer, prenorm_attention_qk_norm, prenorm_silu_ffn};

} // namespace pipeinfer
