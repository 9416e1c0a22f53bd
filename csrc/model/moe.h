// The mixture-of-experts FFN block (Mixtral, Qwen3-MoE, Qwen2-MoE): a router picks the n_expert_used
// best experts of each row (softmax over the router logits, top-k, weights renormalized to sum to 1
// when the model says so), each chosen expert runs as a gated FFN on the rows that chose it, and the
// weighted expert outputs are summed; a shared expert (with its optional sigmoid gate) is added to
// every row. Only the chosen experts' weights are read: one matmul per expert used by the batch, over
// the rows that chose it, so decoding reads n_expert_used experts per layer, not n_expert.
//
// Each row's result is independent of the other rows of the batch in exact-rows mode (the expert
// matmuls are then row-exact and each row sums its experts in its own rank order), which keeps
// speculative greedy output equal to plain greedy output.
#pragma once
#include <cstddef>

#include "model/blocks.h"

namespace pipeinfer {

// buf.tmp = MoE FFN of buf.xn (n rows).
void moe_ffn(layer_ctx& c, size_t n, ffn_act act);
// The pre-norm SiLU FFN block of llama, qwen2 and qwen3: x += FFN(RMSNorm(x)), the layer's experts
// when it has them (moe_ffn), else its dense SwiGLU.
void prenorm_silu_ffn(layer_ctx& c, size_t n);

} // namespace pipeinfer
