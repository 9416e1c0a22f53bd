#include "model/hparams.h"

#include <cmath>

#include "common/error.h"
#include "gguf/gguf-reader.h"

namespace pipeinfer {

namespace {

int64_t positive(const gguf_file& f, const std::string& key, int64_t v, int64_t limit) {
    if (v <= 0 || v > limit) {
        throw model_error(format("%s: key '%s' = %lld, expected 1..%lld", f.source().c_str(), key.c_str(),
                                 (long long)v, (long long)limit));
    }
    return v;
}

int64_t required_int(const gguf_file& f, const std::string& key) {
    if (f.find(key) == nullptr) {
        throw model_error(format("%s: required key '%s' is missing", f.source().c_str(), key.c_str()));
    }
    return f.get_int(key);
}

} // namespace

llama_hparams hparams_from_gguf(const gguf_file& f) {
    llama_hparams hp;
    if (f.find("general.architecture") == nullptr) {
        throw model_error(format("%s: required key 'general.architecture' is missing", f.source().c_str()));
    }
    hp.arch_name = f.get_str("general.architecture");
    if (hp.arch_name == "llama") {
        hp.arch = llm_arch::LLAMA;
        hp.rope = rope_mode::NORMAL;
    } else if (hp.arch_name == "qwen2") {
        hp.arch = llm_arch::QWEN2;
        hp.rope = rope_mode::NEOX;
        hp.has_qkv_bias = true;
    } else {
        throw unsupported_type(format("%s: architecture '%s' is not supported (supported: llama, qwen2)",
                                      f.source().c_str(), hp.arch_name.c_str()));
    }
    const std::string a = hp.arch_name + ".";
    constexpr int64_t big = int64_t{1} << 24;
    hp.n_embd = positive(f, a + "embedding_length", required_int(f, a + "embedding_length"), big);
    hp.n_layer = positive(f, a + "block_count", required_int(f, a + "block_count"), 4096);
    hp.n_ff = positive(f, a + "feed_forward_length", required_int(f, a + "feed_forward_length"), big);
    hp.n_head = positive(f, a + "attention.head_count", required_int(f, a + "attention.head_count"), 65536);
    hp.n_head_kv = positive(f, a + "attention.head_count_kv",
                            f.get_int(a + "attention.head_count_kv", hp.n_head), 65536);
    hp.n_ctx_train = positive(f, a + "context_length", f.get_int(a + "context_length", 2048), int64_t{1} << 30);
    if (hp.n_head % hp.n_head_kv != 0) {
        throw model_error(format("%s: attention.head_count (%lld) is not a multiple of head_count_kv (%lld)",
                                 f.source().c_str(), (long long)hp.n_head, (long long)hp.n_head_kv));
    }
    if (f.find(a + "attention.key_length") != nullptr) {
        hp.head_dim = positive(f, a + "attention.key_length", f.get_int(a + "attention.key_length"), 65536);
        const int64_t vlen = f.get_int(a + "attention.value_length", hp.head_dim);
        if (vlen != hp.head_dim) {
            throw unsupported_type(format("%s: value_length %lld != key_length %lld is not supported",
                                          f.source().c_str(), (long long)vlen, (long long)hp.head_dim));
        }
    } else {
        if (hp.n_embd % hp.n_head != 0) {
            throw model_error(format("%s: embedding_length (%lld) is not a multiple of head_count (%lld)",
                                     f.source().c_str(), (long long)hp.n_embd, (long long)hp.n_head));
        }
        hp.head_dim = hp.n_embd / hp.n_head;
    }
    hp.n_rot = f.get_int(a + "rope.dimension_count", hp.head_dim);
    if (hp.n_rot <= 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0) {
        throw model_error(format("%s: rope.dimension_count = %lld, expected an even value in 2..%lld",
                                 f.source().c_str(), (long long)hp.n_rot, (long long)hp.head_dim));
    }
    hp.rms_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
    hp.rope_freq_base = static_cast<float>(f.get_float(a + "rope.freq_base", 10000.0));
    if (!(hp.rms_eps > 0.0f) || !std::isfinite(hp.rms_eps)) {
        throw model_error(format("%s: attention.layer_norm_rms_epsilon must be finite and > 0",
                                 f.source().c_str()));
    }
    if (!(hp.rope_freq_base > 0.0f) || !std::isfinite(hp.rope_freq_base)) {
        throw model_error(format("%s: rope.freq_base must be finite and > 0", f.source().c_str()));
    }
    if (f.find(a + "rope.scaling.type") != nullptr) {
        const std::string t = f.get_str(a + "rope.scaling.type");
        if (t != "none" && !(t == "linear" && f.get_float(a + "rope.scaling.factor", 1.0) == 1.0)) {
            throw unsupported_type(format("%s: rope scaling '%s' is not supported yet", f.source().c_str(),
                                          t.c_str()));
        }
    }
    return hp;
}

} // namespace pipeinfer
