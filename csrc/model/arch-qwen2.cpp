// qwen2 (Qwen2, Qwen2.5) and qwen2moe (Qwen1.5-MoE, Qwen2-MoE): the llama block with biases on
// q, k and v and NEOX-style rotary embedding (halves rotated against each other). qwen2moe replaces
// the FFN with routed experts (softmax router, top-k, weights not renormalized) plus a shared expert
// behind a sigmoid gate, as llama.cpp's src/models/qwen2.cpp and qwen2moe.cpp build them.
#include "gguf/gguf-reader.h"
#include "model/arch.h"
#include "model/blocks.h"
#include "model/moe.h"

namespace pipeinfer {

namespace {

void load_qwen2(const gguf_file& f, llama_hparams& hp) {
    hp.rope = rope_mode::NEOX;
    hp.has_qkv_bias = true;
}

void load_qwen2moe(const gguf_file& f, llama_hparams& hp) {
    load_qwen2(f, hp);
    hp.expert_weights_norm = false;  // Qwen2-MoE: norm_topk_prob false
    read_expert_hparams(f, hp, true);
}

void bind_layer(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw) {
    bind_attention(b, hp, il, lw, true);
    bind_ffn(b, hp, il, lw);
}

} // namespace

const arch_def arch_qwen2 = {"qwen2", llm_arch::QWEN2, load_qwen2,
                               bind_layer, prenorm_attention, prenorm_silu_ffn};
const arch_def arch_qwen2moe = {"qwen2moe", llm_arch::QWEN2MOE, load_qwen2moe,
                               bind_layer, prenorm_attention, prenorm_silu_ffn};

} // namespace pipeinfer
