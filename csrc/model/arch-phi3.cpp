// phi3 (Phi-3, Phi-3.5 mini), as llama.cpp's src/models/phi3.cpp builds it: Q, K and V from one fused
// attn_qkv matrix, gate and up from one fused ffn_up matrix (gate rows first), NEOX-style rotation,
// q scaled by 1/sqrt(head_dim) before attention. Like llama.cpp, the sliding window some Phi-3 files
// declare is not applied. LongRoPE files (rope_factors_long / _short, 128k variants) are refused.
#include "common/error.h"
#include "gguf/gguf-reader.h"
#include "model/arch.h"
#include "model/blocks.h"

namespace pipeinfer {

namespace {

void load_hparams(const gguf_file& f, llama_hparams& hp) {
    hp.rope = rope_mode::NEOX;
    hp.q_prescaled = true;
    hp.attn_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
    if (f.find_tensor("rope_factors_long.weight") != nullptr || f.find_tensor("rope_factors_short.weight") != nullptr) {
        throw unsupported_type(format("%s: Phi-3 LongRoPE (rope_factors_long/short, the 128k-context variants) is not "
                                      "supported", f.source().c_str()));
    }
}

void bind_layer(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw) {
    bind_attention(b, hp, il, lw, false);
    bind_ffn(b, hp, il, lw);
}

void attention(layer_ctx& c, size_t n) {
    norm_input(c, c.lw.attn_norm, n);
    project_qkv(c, n);
    rope_qk(c, n);
    scale_q(c, n, c.hp.attn_scale);
    self_attention(c, n, 1.0f);
    output_projection(c, n);
    add_residual(c, n);
}

void ffn(layer_ctx& c, size_t n) {
    norm_input(c, c.lw.ffn_norm, n);
    gated_ffn(c, n, c.lw.w_gate, c.lw.w_up, c.lw.w_down, ffn_act::SILU);
    add_residual(c, n);
}

} // namespace

const arch_def arch_phi3 = {"phi3", llm_arch::PHI3, load_hparams, bind_layer, attention, ffn};

} // namespace pipeinfer
