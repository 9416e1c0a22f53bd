#include "model/weights.h"

#include <algorithm>
#include <string>

#include "common/error.h"
#include "gguf/gguf-reader.h"

namespace pipeinfer {

namespace {

std::string blk(int64_t il, const char* name) { return "blk." + std::to_string(il) + "." + name; }

const gguf_tensor_info& need(const gguf_file& f, const std::string& name) {
    const gguf_tensor_info* t = f.find_tensor(name);
    if (t == nullptr) {
        throw model_error(format("%s: required tensor '%s' is missing", f.source().c_str(), name.c_str()));
    }
    return *t;
}

void check_shape(const gguf_file& f, const gguf_tensor_info& t, int64_t ne0, int64_t ne1) {
    const bool ok = t.ne[0] == ne0 && t.ne[1] == ne1 && t.ne[2] == 1 && t.ne[3] == 1;
    if (!ok) {
        throw model_error(format("%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                                 f.source().c_str(), t.name.c_str(), (long long)t.ne[0], (long long)t.ne[1],
                                 (long long)t.ne[2], (long long)t.ne[3], (long long)ne0, (long long)ne1));
    }
}

weight_view matrix(const gguf_file& f, const std::string& name, int64_t n_in, int64_t n_out) {
    const gguf_tensor_info& t = need(f, name);
    check_shape(f, t, n_in, n_out);
    const type_traits& tt = get_type_traits(t.type);
    if (tt.vec_dot == nullptr || (tt.vec_dot_type != t.type && get_type_traits(tt.vec_dot_type).from_float == nullptr)) {
        throw unsupported_type(format("%s: tensor '%s' has type %s, which this build cannot multiply",
                                      f.source().c_str(), name.c_str(), tt.name));
    }
    weight_view w;
    w.type = t.type;
    w.n_in = n_in;
    w.n_out = n_out;
    w.data = t.data;
    w.row_bytes = row_size(t.type, n_in);
    return w;
}

std::vector<float> vector_f32(const gguf_file& f, const std::string& name, int64_t n) {
    const gguf_tensor_info& t = need(f, name);
    check_shape(f, t, n, 1);
    const type_traits& tt = get_type_traits(t.type);
    if (tt.to_float == nullptr) {
        throw unsupported_type(format("%s: tensor '%s' has type %s, which this build cannot read",
                                      f.source().c_str(), name.c_str(), tt.name));
    }
    std::vector<float> out(static_cast<size_t>(n));
    tt.to_float(t.data, out.data(), n);
    return out;
}

} // namespace

int64_t vocab_size_from_gguf(const gguf_file& f, const llama_hparams& hp) {
    const gguf_tensor_info& t = need(f, "token_embd.weight");
    if (t.n_dims != 2 || t.ne[0] != hp.n_embd || t.ne[1] <= 0) {
        throw model_error(format("%s: tensor 'token_embd.weight' has shape [%lld, %lld], expected [%lld, n_vocab]",
                                 f.source().c_str(), (long long)t.ne[0], (long long)t.ne[1], (long long)hp.n_embd));
    }
    return t.ne[1];
}

stage_weights bind_stage_weights(const gguf_file& f, const llama_hparams& hp, int64_t layer_begin,
                                 int64_t layer_end) {
    if (layer_begin < 0 || layer_end > hp.n_layer || layer_begin >= layer_end) {
        throw std::invalid_argument(format("layer range [%lld, %lld) is not inside [0, %lld)",
                                           (long long)layer_begin, (long long)layer_end, (long long)hp.n_layer));
    }
    // Every blk.N group must exist: a block_count larger than the layers present is an error.
    const int64_t n_vocab = vocab_size_from_gguf(f, hp);
    stage_weights sw;
    sw.layer_begin = layer_begin;
    sw.layer_end = layer_end;
    sw.has_embd = layer_begin == 0;
    sw.has_head = layer_end == hp.n_layer;
    if (sw.has_embd) {
        sw.token_embd = matrix(f, "token_embd.weight", hp.n_embd, n_vocab);
        if (get_type_traits(sw.token_embd.type).to_float == nullptr) {
            throw unsupported_type(format("%s: token_embd.weight type %s cannot be dequantized",
                                          f.source().c_str(), get_type_traits(sw.token_embd.type).name));
        }
    }
    for (int64_t il = layer_begin; il < layer_end; ++il) {
        layer_weights lw;
        lw.attn_norm = vector_f32(f, blk(il, "attn_norm.weight"), hp.n_embd);
        lw.wq = matrix(f, blk(il, "attn_q.weight"), hp.n_embd, hp.n_embd_q());
        lw.wk = matrix(f, blk(il, "attn_k.weight"), hp.n_embd, hp.n_embd_kv());
        lw.wv = matrix(f, blk(il, "attn_v.weight"), hp.n_embd, hp.n_embd_kv());
        lw.wo = matrix(f, blk(il, "attn_output.weight"), hp.n_embd_q(), hp.n_embd);
        if (hp.has_qkv_bias) {
            lw.bq = vector_f32(f, blk(il, "attn_q.bias"), hp.n_embd_q());
            lw.bk = vector_f32(f, blk(il, "attn_k.bias"), hp.n_embd_kv());
            lw.bv = vector_f32(f, blk(il, "attn_v.bias"), hp.n_embd_kv());
        }
        lw.ffn_norm = vector_f32(f, blk(il, "ffn_norm.weight"), hp.n_embd);
        lw.w_gate = matrix(f, blk(il, "ffn_gate.weight"), hp.n_embd, hp.n_ff);
        lw.w_up = matrix(f, blk(il, "ffn_up.weight"), hp.n_embd, hp.n_ff);
        lw.w_down = matrix(f, blk(il, "ffn_down.weight"), hp.n_ff, hp.n_embd);
        for (const weight_view* w : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) {
            sw.bytes += w->row_bytes * static_cast<size_t>(w->n_out);
        }
        sw.layers.push_back(std::move(lw));
    }
    if (sw.has_head) {
        sw.output_norm = vector_f32(f, "output_norm.weight", hp.n_embd);
        if (f.find_tensor("output.weight") != nullptr) {
            sw.output = matrix(f, "output.weight", hp.n_embd, n_vocab);
        } else {
            sw.output = matrix(f, "token_embd.weight", hp.n_embd, n_vocab);  // tied embeddings
        }
        sw.bytes += sw.output.row_bytes * static_cast<size_t>(sw.output.n_out);
    }
    return sw;
}

std::vector<size_t> layer_bytes(const gguf_file& f, const llama_hparams& hp) {
    std::vector<size_t> out(static_cast<size_t>(hp.n_layer), 0);
    const std::string prefix = "blk.";
    for (const auto& t : f.tensors()) {
        if (t.name.compare(0, prefix.size(), prefix) != 0) continue;
        const size_t dot = t.name.find('.', prefix.size());
        if (dot == std::string::npos) continue;
        int64_t il = -1;
        try {
            il = std::stoll(t.name.substr(prefix.size(), dot - prefix.size()));
        } catch (const std::exception&) {
            continue;
        }
        if (il >= 0 && il < hp.n_layer) out[static_cast<size_t>(il)] += t.nbytes;
    }
    return out;
}

} // namespace pipeinfer
