// Whole-file consistency checks of the metadata a model loader relies on beyond the tensors
// (model/weights.h checks those): the vocabulary arrays against the embedding, token types, special
// token ids. A file that fails them would load and produce wrong text silently (an id without a
// piece, a token type no tokenizer knows), so each failure is a model_error naming the key, what it
// holds and what the model implies. Reads metadata only; must not build a tokenizer.
#pragma once
#include <cstdint>

namespace pipeinfer {

class gguf_file;
struct llama_hparams;

// tokenizer.ggml.tokens has n_vocab strings (llama.cpp sizes the embedding from it); scores (f32) and
// token_type (i32, values 0..6 = llama_token_type) have as many entries; merges are strings;
// {arch}.vocab_size, when present, equals n_vocab; the special token ids generation relies on (bos,
// eos, eot, eom) are inside the vocabulary. A file without tokenizer.ggml.tokens passes (no tokenizer).
void check_vocab_metadata(const gguf_file& f, const llama_hparams& hp, int64_t n_vocab);

} // namespace pipeinfer
