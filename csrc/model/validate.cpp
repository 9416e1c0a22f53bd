#include "model/validate.h"

#include <string>

#include "common/error.h"
#include "gguf/gguf-reader.h"
#include "model/hparams.h"

namespace pipeinfer {

namespace {

[[noreturn]] void bad(const gguf_file& f, const std::string& key, const std::string& what) {
    throw model_error(format("%s: key '%s' %s", f.source().c_str(), key.c_str(), what.c_str()));
}

// The array `key` (if present) has element type `type` (any integer type when `type` is INT32) and n entries.
const gguf_value* check_array(const gguf_file& f, const std::string& key, gguf_value_type type, int64_t n,
                              const char* what) {
    const gguf_value* v = f.find(key);
    if (v == nullptr) return nullptr;
    const bool type_ok = v->type == gguf_value_type::ARRAY &&
                         (v->arr_type == type || (type == gguf_value_type::INT32 && gguf_value_type_is_int(v->arr_type)));
    if (!type_ok) {
        bad(f, key, format("has type %s, expected an array of %s", gguf_type_spelling(*v).c_str(), what));
    }
    if (static_cast<int64_t>(v->arr_n) != n) {
        bad(f, key, format("has %llu entries, expected %lld (one per token of tokenizer.ggml.tokens)",
                           (unsigned long long)v->arr_n, (long long)n));
    }
    return v;
}

void check_token_types(const gguf_file& f, int64_t n_tokens) {
    const std::string key = "tokenizer.ggml.token_type";
    if (check_array(f, key, gguf_value_type::INT32, n_tokens, "int32 token types") == nullptr) return;
    const std::vector<int32_t> types = f.get_i32_array(key);
    for (size_t i = 0; i < types.size(); ++i) {
        if (types[i] < 0 || types[i] > 6) {
            bad(f, key, format("entry %zu is %d; token types are 0..6 (undefined, normal, unknown, control, "
                               "user-defined, unused, byte)", i, types[i]));
        }
    }
}

void check_special_ids(const gguf_file& f, int64_t n_tokens) {
    // The ids generation relies on (llama.cpp only warns about the others and falls back to a default).
    for (const char* name : {"bos", "eos", "eot", "eom"}) {
        const std::string key = std::string("tokenizer.ggml.") + name + "_token_id";
        if (f.find(key) == nullptr) continue;
        const int64_t id = f.get_int(key);
        if (id < 0 || id >= n_tokens) {
            bad(f, key, format("= %lld is outside the vocabulary of %lld tokens", (long long)id, (long long)n_tokens));
        }
    }
}

} // namespace

void check_vocab_metadata(const gguf_file& f, const llama_hparams& hp, int64_t n_vocab) {
    const std::string vs_key = hp.arch_name + ".vocab_size";
    if (f.find(vs_key) != nullptr && f.get_int(vs_key) != n_vocab) {
        bad(f, vs_key, format("= %lld but token_embd.weight has %lld rows", (long long)f.get_int(vs_key),
                              (long long)n_vocab));
    }
    const std::string tok_key = "tokenizer.ggml.tokens";
    const gguf_value* tokens = f.find(tok_key);
    if (tokens == nullptr) return;
    if (tokens->type != gguf_value_type::ARRAY || tokens->arr_type != gguf_value_type::STRING) {
        bad(f, tok_key, format("has type %s, expected an array of strings", gguf_type_spelling(*tokens).c_str()));
    }
    const int64_t n_tokens = static_cast<int64_t>(tokens->arr_n);
    if (n_tokens != n_vocab) {
        bad(f, tok_key, format("has %lld tokens but token_embd.weight has %lld rows (one per token)",
                               (long long)n_tokens, (long long)n_vocab));
    }
    check_array(f, "tokenizer.ggml.scores", gguf_value_type::FLOAT32, n_tokens, "f32 scores");
    check_token_types(f, n_tokens);
    const gguf_value* merges = f.find("tokenizer.ggml.merges");
    if (merges != nullptr && (merges->type != gguf_value_type::ARRAY || merges->arr_type != gguf_value_type::STRING)) {
        bad(f, "tokenizer.ggml.merges", format("has type %s, expected an array of strings",
                                               gguf_type_spelling(*merges).c_str()));
    }
    check_special_ids(f, n_tokens);
}

} // namespace pipeinfer
