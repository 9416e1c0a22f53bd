// gemma3 (Gemma 3 text models), as llama.cpp's src/models/gemma3.cpp builds it: token embeddings
// scaled by sqrt(n_embd); per-head RMSNorm of q and k before a NEOX-style rotation; q scaled by
// 1/sqrt(head_dim) before attention (by 1/sqrt(n_embd / n_head) for the 62-layer 27B); RMSNorms of the
// attention and FFN outputs before each residual add (post_attention_norm, post_ffw_norm); a GELU-gated
// FFN. Five of every six layers attend through a sliding window ({arch}.attention.sliding_window) with
// rope base {arch}.rope.freq_base_swa (default 10000), the sixth globally with {arch}.rope.freq_base.
// The converter already added Gemma's +1 to the norm weights.
#include <cmath>

#include "gguf/gguf-reader.h"
#include "model/arch.h"
#include "model/blocks.h"

namespace pipeinfer {

namespace {

void load_hparams(const gguf_file& f, llama_hparams& hp) {
    hp.rope = rope_mode::NEOX;
    hp.has_qk_norm = true;
    hp.has_post_norms = true;
    hp.act = ffn_act::GELU;
    hp.embd_scale = std::sqrt(static_cast<float>(hp.n_embd));
    hp.q_prescaled = true;
    hp.attn_scale = hp.n_layer == 62 ? 1.0f / std::sqrt(static_cast<float>(hp.n_embd / hp.n_head))
                                     : 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
    read_sliding_window(f, hp, 6);
    hp.rope_freq_base_swa = static_cast<float>(f.get_float(hp.arch_name + ".rope.freq_base_swa", 10000.0));
}

void bind_layer(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw) {
    bind_attention(b, hp, il, lw, false);
    lw.q_norm = b.vector(blk(il, "attn_q_norm.weight"), hp.head_dim);
    lw.k_norm = b.vector(blk(il, "attn_k_norm.weight"), hp.head_dim);
    lw.attn_post_norm = b.vector(blk(il, "post_attention_norm.weight"), hp.n_embd);
    bind_ffn(b, hp, il, lw);
    lw.ffn_post_norm = b.vector(blk(il, "post_ffw_norm.weight"), hp.n_embd);
}

void attention(layer_ctx& c, size_t n) {
    norm_input(c, c.lw.attn_norm, n);
    project_qkv(c, n);
    norm_qk_heads(c, n);
    rope_qk(c, n);
    scale_q(c, n, c.hp.attn_scale);
    self_attention(c, n, 1.0f);
    output_projection(c, n);
    norm_rows_inplace(c, c.buf.tmp.data(), c.lw.attn_post_norm, n, c.hp.n_embd);
    add_residual(c, n);
}

void ffn(layer_ctx& c, size_t n) {
    norm_input(c, c.lw.ffn_norm, n);
    gated_ffn(c, n, c.lw.w_gate, c.lw.w_up, c.lw.w_down, ffn_act::GELU);
    norm_rows_inplace(c, c.buf.tmp.data(), c.lw.ffn_post_norm, n, c.hp.n_embd);
    add_residual(c, n);
}

} // namespace

const arch_def arch_gemma3 = {"gemma3", llm_arch::GEMMA3, load_hparams, bind_layer, attention, ffn};

} // namespace pipeinfer
