// The weights one pipeline stage needs, bound by GGUF tensor name (names kept verbatim in the table
// in weights.cpp) and checked against the hyperparameters: every required tensor present, with the
// expected shape and a type the kernels can multiply. Matrices stay in the file mapping (zero copy);
// small vectors (norms, biases) are converted to owned f32. A stage binds only the layers it runs, so
// a rank touches only its own bytes.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/matmul.h"
#include "model/hparams.h"

namespace pipeinfer {

class gguf_file;

struct layer_weights {
    std::vector<float> attn_norm;   // (n_embd) f32
    weight_view wq;                 // (n_embd_q rows, n_embd)
    weight_view wk;                 // (n_embd_kv rows, n_embd)
    weight_view wv;                 // (n_embd_kv rows, n_embd)
    weight_view wo;                 // (n_embd rows, n_embd_q)
    std::vector<float> bq, bk, bv;  // (n_embd_q), (n_embd_kv), (n_embd_kv) f32; empty if no bias
    std::vector<float> ffn_norm;    // (n_embd) f32
    weight_view w_gate;             // (n_ff rows, n_embd)
    weight_view w_up;               // (n_ff rows, n_embd)
    weight_view w_down;             // (n_embd rows, n_ff)
};

struct stage_weights {
    int64_t layer_begin = 0, layer_end = 0;  // layers [begin, end) of the model
    bool has_embd = false;                   // first stage: token embedding lookup
    bool has_head = false;                   // last stage: output norm + output head
    weight_view token_embd;                  // (n_vocab rows, n_embd), first stage
    std::vector<layer_weights> layers;       // (layer_end - layer_begin)
    std::vector<float> output_norm;          // (n_embd) f32, last stage
    weight_view output;                      // (n_vocab rows, n_embd), last stage (tied: token_embd)
    size_t bytes = 0;                        // weight bytes this stage reads per token
    std::vector<std::vector<uint8_t>> repacked_store;  // owned row-interleaved copies (model/weights-repack.h)
    std::shared_ptr<const void> repacked_file;         // or the mapped cache file holding them
};

// Number of rows of token_embd.weight (the vocabulary size); throws model_error if absent/malformed.
int64_t vocab_size_from_gguf(const gguf_file& f, const llama_hparams& hp);

// Binds the tensors of layers [layer_begin, layer_end); embedding if layer_begin == 0, head if
// layer_end == n_layer. Throws model_error naming the tensor for a missing tensor or a wrong shape,
// unsupported_type for a type the kernels cannot use.
stage_weights bind_stage_weights(const gguf_file& f, const llama_hparams& hp, int64_t layer_begin,
                                 int64_t layer_end);

// Weight bytes of each layer (for splitting layers across stages by bytes).
std::vector<size_t> layer_bytes(const gguf_file& f, const llama_hparams& hp);

} // namespace pipeinfer
