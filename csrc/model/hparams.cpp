#include "model/hparams.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "gguf/gguf-reader.h"
#include "model/arch.h"

namespace pipeinfer {

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

int64_t llama_hparams::n_ff_max() const {
    return std::max({n_ff, n_expert > 0 ? n_ff_exp : int64_t{0}, n_ff_shexp});
}

void read_expert_hparams(const gguf_file& f, llama_hparams& hp, bool required) {
    const std::string a = hp.arch_name + ".";
    if (!required && f.find(a + "expert_count") == nullptr) return;
    hp.n_expert = positive(f, a + "expert_count", required_int(f, a + "expert_count"), 4096);
    hp.n_expert_used = positive(f, a + "expert_used_count", required_int(f, a + "expert_used_count"), hp.n_expert);
    hp.n_ff_exp = f.find(a + "expert_feed_forward_length") != nullptr
                      ? positive(f, a + "expert_feed_forward_length", f.get_int(a + "expert_feed_forward_length"),
                                 int64_t{1} << 24)
                      : hp.n_ff;
    if (hp.n_ff_exp <= 0) {
        throw model_error(format("%s: required key '%sexpert_feed_forward_length' is missing", f.source().c_str(),
                                 a.c_str()));
    }
    if (f.find(a + "expert_shared_feed_forward_length") != nullptr) {
        hp.n_ff_shexp = positive(f, a + "expert_shared_feed_forward_length",
                                 f.get_int(a + "expert_shared_feed_forward_length"), int64_t{1} << 24);
    }
    hp.expert_weights_norm = f.get_bool(a + "expert_weights_norm", hp.expert_weights_norm);
}

void read_sliding_window(const gguf_file& f, llama_hparams& hp, int pattern) {
    const std::string key = hp.arch_name + ".attention.sliding_window";
    if (f.find(key) == nullptr) return;
    const int64_t w = f.get_int(key);
    if (w < 0) throw model_error(format("%s: key '%s' = %lld, expected >= 0", f.source().c_str(), key.c_str(), (long long)w));
    hp.n_swa = w;
    hp.swa_layers.assign(static_cast<size_t>(hp.n_layer), 0);
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        hp.swa_layers[static_cast<size_t>(il)] = pattern == 0 || il % pattern < pattern - 1;
    }
}

namespace {

void read_attention_shape(const gguf_file& f, const std::string& a, llama_hparams& hp) {
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
}

void read_norm_and_rope(const gguf_file& f, const std::string& a, llama_hparams& hp) {
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
}

} // namespace

llama_hparams hparams_from_gguf(const gguf_file& f) {
    llama_hparams hp;
    if (f.find("general.architecture") == nullptr) {
        throw model_error(format("%s: required key 'general.architecture' is missing", f.source().c_str()));
    }
    hp.arch_name = f.get_str("general.architecture");
    const arch_def& def = find_arch(f, hp.arch_name);
    hp.arch = def.arch;
    const std::string a = hp.arch_name + ".";
    constexpr int64_t big = int64_t{1} << 24;
    hp.n_embd = positive(f, a + "embedding_length", required_int(f, a + "embedding_length"), big);
    hp.n_layer = positive(f, a + "block_count", required_int(f, a + "block_count"), 4096);
    hp.n_head = positive(f, a + "attention.head_count", required_int(f, a + "attention.head_count"), 65536);
    hp.n_head_kv = positive(f, a + "attention.head_count_kv",
                            f.get_int(a + "attention.head_count_kv", hp.n_head), 65536);
    hp.n_ctx_train = positive(f, a + "context_length", required_int(f, a + "context_length"), int64_t{1} << 30);
    if (f.find(a + "feed_forward_length") != nullptr) {
        hp.n_ff = positive(f, a + "feed_forward_length", f.get_int(a + "feed_forward_length"), big);
    }
    read_attention_shape(f, a, hp);
    read_norm_and_rope(f, a, hp);
    def.load_hparams(f, hp);
    if (hp.n_ff <= 0 && hp.n_expert == 0) {
        throw model_error(format("%s: required key '%sfeed_forward_length' is missing", f.source().c_str(), a.c_str()));
    }
    return hp;
}

} // namespace pipeinfer
