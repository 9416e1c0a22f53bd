// The weights one pipeline stage needs, bound by GGUF tensor name (names kept verbatim, llama.cpp's)
// and checked against the hyperparameters: every tensor the architecture expects present, with the
// shape the hyperparameters imply and a type the kernels can use, and (check_model_tensors) no tensor
// the architecture does not know. Which tensors a layer has is the architecture's business
// (model/arch-*.cpp, through a tensor_binder); this file owns the binding, the checks and the layout.
// Matrices stay in the file mapping (zero copy); small vectors (norms, biases) are converted to owned
// f32. A stage binds only the layers it runs, so a rank touches only its own bytes.
#pragma once
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "model/hparams.h"

namespace pipeinfer {

class gguf_file;

// The experts of one MoE projection: one 3-d tensor (n_in, n_out, n_expert), each expert a matrix.
struct expert_weights {
    std::vector<weight_view> e;   // (n_expert) views into the tensor, expert-major
    bool empty() const { return e.empty(); }
};

struct layer_weights {
    std::vector<float> attn_norm;   // (n_embd) f32
    weight_view wq;                 // (n_embd_q rows, n_embd); a row range of attn_qkv when fused
    weight_view wk;                 // (n_embd_kv rows, n_embd)
    weight_view wv;                 // (n_embd_kv rows, n_embd)
    weight_view wo;                 // (n_embd rows, n_embd_q)
    std::vector<float> bq, bk, bv;  // (n_embd_q), (n_embd_kv), (n_embd_kv) f32; empty if no bias
    std::vector<float> q_norm, k_norm;  // (head_dim) f32 per-head RMSNorm weights; empty if none
    std::vector<float> attn_post_norm;  // (n_embd) f32; empty if none (gemma3)
    std::vector<float> ffn_norm;    // (n_embd) f32
    std::vector<float> ffn_post_norm;   // (n_embd) f32; empty if none (gemma3)
    // Dense FFN (n_ff = hp.n_ff): act(gate) * up, then down.
    weight_view w_gate;             // (n_ff rows, n_embd); a row range of ffn_up when fused (phi3)
    weight_view w_up;               // (n_ff rows, n_embd)
    weight_view w_down;             // (n_embd rows, n_ff)
    // Mixture of experts (hp.n_expert > 0): router, routed experts, optional shared expert.
    weight_view w_router;           // (n_expert rows, n_embd): ffn_gate_inp
    expert_weights gate_exps, up_exps, down_exps;  // n_expert × (n_ff_exp, n_embd) / (n_embd, n_ff_exp)
    weight_view w_gate_sh, w_up_sh, w_down_sh;     // shared expert (n_ff_shexp); n_out == 0 if none
    weight_view w_sh_gate;          // (1 row, n_embd): sigmoid gate of the shared expert; n_out == 0 if none

    bool is_moe() const { return !down_exps.empty(); }
};

struct stage_weights {
    int64_t layer_begin = 0, layer_end = 0;  // layers [begin, end) of the model
    bool has_embd = false;                   // first stage: token embedding lookup
    bool has_head = false;                   // last stage: output norm + output head
    weight_view token_embd;                  // (n_vocab rows, n_embd), first stage
    std::vector<layer_weights> layers;       // (layer_end - layer_begin)
    std::vector<float> rope_freqs;           // (n_rot / 2) f32 rope frequency divisors (llama 3); empty if none
    std::vector<float> output_norm;          // (n_embd) f32, last stage
    weight_view output;                      // (n_vocab rows, n_embd), last stage (tied: token_embd)
    size_t bytes = 0;                        // weight bytes this stage reads per token (active experts only)
    std::vector<std::vector<uint8_t>> repacked_store;  // owned row-interleaved copies (model/weights-repack.h)
    std::shared_ptr<const void> repacked_file;         // or the mapped cache file holding them
};

// Binds tensors by name for one architecture's layer code and records every name it was asked for,
// so that the tensors a file has and the architecture does not use can be found. In check mode it
// validates names, shapes and types without converting any data.
class tensor_binder {
public:
    tensor_binder(const gguf_file& f, bool check_only) : f_(f), check_only_(check_only) {}
    // A 2-d matrix (n_out rows of n_in values) the kernels can multiply.
    weight_view matrix(const std::string& name, int64_t n_in, int64_t n_out);
    // A 1-d vector of n values as f32; `optional`: empty if absent.
    std::vector<float> vector(const std::string& name, int64_t n, bool optional = false);
    // A 3-d tensor (n_in, n_out, n_expert): n_expert matrices.
    expert_weights experts(const std::string& name, int64_t n_in, int64_t n_out, int64_t n_expert);
    // Rows [row0, row0 + n_out) of a matrix bound with matrix() (fused projections).
    static weight_view rows(const weight_view& w, int64_t row0, int64_t n_out);
    bool has(const std::string& name) const;
    const gguf_file& file() const { return f_; }
    const std::set<std::string>& used() const { return used_; }

private:
    const gguf_file& f_;
    bool check_only_;
    std::set<std::string> used_;
};

// "blk.{il}.{name}": the name of a tensor of layer il.
std::string blk(int64_t il, const char* name);

// Tensor groups most architectures share (llama.cpp's create_tensor_qkv and the FFN tensors):
// attn_norm, Q/K/V (one fused attn_qkv, split by rows, or attn_q/k/v; biases when `bias` or when the
// fused attn_qkv.bias is present) and attn_output.
void bind_attention(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw, bool bias);
// ffn_norm and a dense FFN (ffn_gate, ffn_up, ffn_down), or an MoE FFN when hp.n_expert > 0
// (ffn_gate_inp, ffn_{gate,up,down}_exps and, with hp.n_ff_shexp, the shared expert
// ffn_{gate,up,down}_shexp with its optional gate ffn_gate_inp_shexp).
void bind_ffn(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw);

// Number of rows of token_embd.weight (the vocabulary size); throws model_error if absent/malformed.
int64_t vocab_size_from_gguf(const gguf_file& f, const llama_hparams& hp);

// Binds the tensors of layers [layer_begin, layer_end); embedding if layer_begin == 0, head if
// layer_end == n_layer. Throws model_error naming the tensor for a missing tensor or a wrong shape,
// unsupported_type for a type the kernels cannot use.
stage_weights bind_stage_weights(const gguf_file& f, const llama_hparams& hp, int64_t layer_begin,
                                 int64_t layer_end);

// Checks the whole file against the architecture without reading tensor data: every expected tensor
// with its shape and a usable type, no tensor the architecture does not use (for example a block
// beyond block_count), and the vocabulary metadata consistent with the embedding. Throws model_error
// naming the tensor or key and the file.
void check_model_tensors(const gguf_file& f, const llama_hparams& hp);

// Every matrix of the stage the matmuls read (attention, FFN, experts one by one, output head), for
// the fast layout (model/weights-repack.h).
std::vector<weight_view*> stage_matrices(stage_weights& sw);

// Weight bytes of each layer (for splitting layers across stages by bytes).
std::vector<size_t> layer_bytes(const gguf_file& f, const llama_hparams& hp);

} // namespace pipeinfer
