// The table of supported architectures, llama.cpp style: each architecture lives in its own file
// (model/arch-<name>.cpp) and contributes what is its own: the hyperparameters its files carry (or do
// not carry), the tensors of one layer, and the straight-line code of one layer's attention and FFN
// blocks, written with the shared building blocks of model/blocks.h. The stage (model/llama.h) owns
// the batch, the buffers, the embedding and the output head, and calls these per layer. This file
// must not hold any architecture's details, only the table.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/hparams.h"

namespace pipeinfer {

class gguf_file;
class tensor_binder;
struct layer_weights;
struct layer_ctx;

struct arch_def {
    const char* name;  // general.architecture
    llm_arch arch;
    // Sets the architecture's flags and reads its own keys (after the shared ones are read).
    void (*load_hparams)(const gguf_file& f, llama_hparams& hp);
    // Binds the tensors of layer il (model index) into lw; every name asked for counts as used.
    void (*bind_layer)(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw);
    // x += attention block of n rows; x += FFN block of n rows (model/blocks.h: layer_ctx).
    void (*attention)(layer_ctx& c, size_t n);
    void (*ffn)(layer_ctx& c, size_t n);
};

// The architecture named `name`; throws unsupported_type naming the file and the supported names.
const arch_def& find_arch(const gguf_file& f, const std::string& name);
const arch_def& arch_of(llm_arch arch);

// The per-architecture definitions (model/arch-*.cpp).
extern const arch_def arch_llama;
extern const arch_def arch_qwen2;
extern const arch_def arch_qwen2moe;
extern const arch_def arch_qwen3;
extern const arch_def arch_qwen3moe;
extern const arch_def arch_gemma3;
extern const arch_def arch_phi3;

} // namespace pipeinfer
