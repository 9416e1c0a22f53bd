// llama: Llama 1-3.x, SmolLM, Mistral and Mixtral files (their converters write them as "llama").
// Pre-norm blocks with RMSNorm, rotary embedding of adjacent pairs (the converter permutes the q/k
// rows), SwiGLU FFN. Optional: rope_freqs (Llama 3.1+ frequency divisors), a sliding window on every
// layer ({arch}.attention.sliding_window, Mistral), and an MoE FFN (Mixtral: softmax router, top-k
// experts with renormalized weights), as llama.cpp's src/models/llama.cpp builds them.
#include "gguf/gguf-reader.h"
#include "model/arch.h"
#include "model/blocks.h"
#include "model/moe.h"

namespace pipeinfer {

namespace {

void load_hparams(const gguf_file& f, llama_hparams& hp) {
    hp.rope = rope_mode::NORMAL;
    read_sliding_window(f, hp, 0);
    read_expert_hparams(f, hp, false);
}

void bind_layer(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw) {
    bind_attention(b, hp, il, lw, false);
    bind_ffn(b, hp, il, lw);
}

} // namespace

const arch_def arch_llama = {"llama", llm_arch::LLAMA, load_hparams,
                               bind_layer, prenorm_attention, prenorm_silu_ffn};

} // namespace pipeinfer
