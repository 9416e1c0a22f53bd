#include "model/weights.h"

#include <algorithm>
#include <string>

#include "common/error.h"
#include "gguf/gguf-reader.h"
#include "model/arch.h"

namespace pipeinfer {

std::string blk(int64_t il, const char* name) { return "blk." + std::to_string(il) + "." + name; }

namespace {

std::string shape_str(const gguf_tensor_info& t) {
    std::string s = "[";
    for (uint32_t d = 0; d < std::max<uint32_t>(t.n_dims, 1); ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
    return s + "]";
}

// ne[0..3] must equal `want` (missing trailing dimensions are 1).
void check_shape(const gguf_file& f, const gguf_tensor_info& t, std::initializer_list<int64_t> want) {
    int64_t w[4] = {1, 1, 1, 1};
    std::string ws = "[";
    int d = 0;
    for (int64_t v : want) {
        ws += (d ? ", " : "") + std::to_string(v);
        w[d++] = v;
    }
    ws += "]";
    if (t.ne[0] != w[0] || t.ne[1] != w[1] || t.ne[2] != w[2] || t.ne[3] != w[3]) {
        throw model_error(format("%s: tensor '%s' has shape %s, expected %s", f.source().c_str(), t.name.c_str(),
                                 shape_str(t).c_str(), ws.c_str()));
    }
}

const gguf_tensor_info& need(const gguf_file& f, const std::string& name) {
    const gguf_tensor_info* t = f.find_tensor(name);
    if (t == nullptr) {
        throw model_error(format("%s: required tensor '%s' is missing", f.source().c_str(), name.c_str()));
    }
    return *t;
}

void check_multipliable(const gguf_file& f, const gguf_tensor_info& t) {
    const type_traits& tt = get_type_traits(t.type);
    if (tt.vec_dot == nullptr || (tt.vec_dot_type != t.type && get_type_traits(tt.vec_dot_type).from_float == nullptr)) {
        throw unsupported_type(format("%s: tensor '%s' has type %s, which this build cannot multiply",
                                      f.source().c_str(), t.name.c_str(), tt.name));
    }
}

weight_view view_of(const gguf_tensor_info& t, int64_t n_in, int64_t n_out, const uint8_t* data) {
    weight_view w;
    w.type = t.type;
    w.n_in = n_in;
    w.n_out = n_out;
    w.data = data;
    w.row_bytes = row_size(t.type, n_in);
    return w;
}

} // namespace

bool tensor_binder::has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }

weight_view tensor_binder::matrix(const std::string& name, int64_t n_in, int64_t n_out) {
    const gguf_tensor_info& t = need(f_, name);
    used_.insert(name);
    check_shape(f_, t, {n_in, n_out});
    check_multipliable(f_, t);
    return view_of(t, n_in, n_out, t.data);
}

std::vector<float> tensor_binder::vector(const std::string& name, int64_t n, bool optional) {
    if (optional && !has(name)) return {};
    const gguf_tensor_info& t = need(f_, name);
    used_.insert(name);
    check_shape(f_, t, {n});
    // Norm weights and biases are element-wise operands: llama.cpp keeps them f32 (ggml_mul / ggml_add
    // take no quantized operand), so only float types are accepted.
    if (t.type != ggml_type::F32 && t.type != ggml_type::F16 && t.type != ggml_type::BF16) {
        throw model_error(format("%s: tensor '%s' has type %s; norm weights and biases must be f32, f16 or bf16",
                                      f_.source().c_str(), name.c_str(), get_type_traits(t.type).name));
    }
    if (check_only_) return {};
    std::vector<float> out(static_cast<size_t>(n));
    get_type_traits(t.type).to_float(t.data, out.data(), n);
    return out;
}

expert_weights tensor_binder::experts(const std::string& name, int64_t n_in, int64_t n_out, int64_t n_expert) {
    const gguf_tensor_info& t = need(f_, name);
    used_.insert(name);
    check_shape(f_, t, {n_in, n_out, n_expert});
    check_multipliable(f_, t);
    expert_weights ew;
    const size_t expert_bytes = row_size(t.type, n_in) * static_cast<size_t>(n_out);
    for (int64_t e = 0; e < n_expert; ++e) ew.e.push_back(view_of(t, n_in, n_out, t.data + e * expert_bytes));
    return ew;
}

weight_view tensor_binder::rows(const weight_view& w, int64_t row0, int64_t n_out) {
    weight_view r = w;
    r.data = w.data + static_cast<size_t>(row0) * w.row_bytes;
    r.n_out = n_out;
    return r;
}

void bind_attention(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw, bool bias) {
    const int64_t d = hp.n_embd, dq = hp.n_embd_q(), dkv = hp.n_embd_kv();
    lw.attn_norm = b.vector(blk(il, "attn_norm.weight"), d);
    if (b.has(blk(il, "attn_qkv.weight"))) {  // fused: rows q, then k, then v (phi3)
        const weight_view qkv = b.matrix(blk(il, "attn_qkv.weight"), d, dq + 2 * dkv);
        lw.wq = tensor_binder::rows(qkv, 0, dq);
        lw.wk = tensor_binder::rows(qkv, dq, dkv);
        lw.wv = tensor_binder::rows(qkv, dq + dkv, dkv);
        if (b.has(blk(il, "attn_qkv.bias"))) {
            const std::vector<float> bqkv = b.vector(blk(il, "attn_qkv.bias"), dq + 2 * dkv);
            if (!bqkv.empty()) {  // (empty in check mode)
                lw.bq.assign(bqkv.begin(), bqkv.begin() + dq);
                lw.bk.assign(bqkv.begin() + dq, bqkv.begin() + dq + dkv);
                lw.bv.assign(bqkv.begin() + dq + dkv, bqkv.end());
            }
            bias = false;  // bound; without it a required bias is looked for as attn_{q,k,v}.bias below
        }
    } else {
        lw.wq = b.matrix(blk(il, "attn_q.weight"), d, dq);
        lw.wk = b.matrix(blk(il, "attn_k.weight"), d, dkv);
        lw.wv = b.matrix(blk(il, "attn_v.weight"), d, dkv);
    }
    if (bias) {
        lw.bq = b.vector(blk(il, "attn_q.bias"), dq);
        lw.bk = b.vector(blk(il, "attn_k.bias"), dkv);
        lw.bv = b.vector(blk(il, "attn_v.bias"), dkv);
    }
    lw.wo = b.matrix(blk(il, "attn_output.weight"), dq, d);
}

void bind_ffn(tensor_binder& b, const llama_hparams& hp, int64_t il, layer_weights& lw) {
    const int64_t d = hp.n_embd;
    lw.ffn_norm = b.vector(blk(il, "ffn_norm.weight"), d);
    if (hp.n_expert == 0) {
        if (b.has(blk(il, "ffn_up.weight")) && !b.has(blk(il, "ffn_gate.weight"))) {  // fused: gate rows, then up (phi3)
            const weight_view gate_up = b.matrix(blk(il, "ffn_up.weight"), d, 2 * hp.n_ff);
            lw.w_gate = tensor_binder::rows(gate_up, 0, hp.n_ff);
            lw.w_up = tensor_binder::rows(gate_up, hp.n_ff, hp.n_ff);
        } else {
            lw.w_gate = b.matrix(blk(il, "ffn_gate.weight"), d, hp.n_ff);
            lw.w_up = b.matrix(blk(il, "ffn_up.weight"), d, hp.n_ff);
        }
        lw.w_down = b.matrix(blk(il, "ffn_down.weight"), hp.n_ff, d);
        return;
    }
    const int64_t ff = hp.n_ff_exp, ne = hp.n_expert;
    lw.w_router = b.matrix(blk(il, "ffn_gate_inp.weight"), d, ne);
    lw.gate_exps = b.experts(blk(il, "ffn_gate_exps.weight"), d, ff, ne);
    lw.up_exps = b.experts(blk(il, "ffn_up_exps.weight"), d, ff, ne);
    lw.down_exps = b.experts(blk(il, "ffn_down_exps.weight"), ff, d, ne);
    if (hp.n_ff_shexp > 0) {
        lw.w_gate_sh = b.matrix(blk(il, "ffn_gate_shexp.weight"), d, hp.n_ff_shexp);
        lw.w_up_sh = b.matrix(blk(il, "ffn_up_shexp.weight"), d, hp.n_ff_shexp);
        lw.w_down_sh = b.matrix(blk(il, "ffn_down_shexp.weight"), hp.n_ff_shexp, d);
        if (b.has(blk(il, "ffn_gate_inp_shexp.weight"))) {
            lw.w_sh_gate = b.matrix(blk(il, "ffn_gate_inp_shexp.weight"), d, 1);
        }
    }
}

int64_t vocab_size_from_gguf(const gguf_file& f, const llama_hparams& hp) {
    const gguf_tensor_info& t = need(f, "token_embd.weight");
    if (t.n_dims != 2 || t.ne[0] != hp.n_embd || t.ne[1] <= 0) {
        throw model_error(format("%s: tensor 'token_embd.weight' has shape %s, expected [%lld, n_vocab]",
                                 f.source().c_str(), shape_str(t).c_str(), (long long)hp.n_embd));
    }
    return t.ne[1];
}

namespace {

size_t matrix_bytes(const weight_view& w) { return w.n_out > 0 ? w.row_bytes * static_cast<size_t>(w.n_out) : 0; }

// Weight bytes one token reads in a layer: the attention and dense FFN matrices, or the router, the
// chosen number of experts and the shared expert.
size_t active_bytes(const layer_weights& lw, const llama_hparams& hp) {
    size_t n = 0;
    for (const weight_view* w : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down, &lw.w_router,
                                 &lw.w_gate_sh, &lw.w_up_sh, &lw.w_down_sh, &lw.w_sh_gate}) {
        n += matrix_bytes(*w);
    }
    if (lw.is_moe()) {
        const size_t per_expert = matrix_bytes(lw.gate_exps.e[0]) + matrix_bytes(lw.up_exps.e[0]) +
                                  matrix_bytes(lw.down_exps.e[0]);
        n += per_expert * static_cast<size_t>(hp.n_expert_used);
    }
    return n;
}

// token_embd (first stage), rope_freqs, the layers, output_norm and output (last stage).
void bind_all(tensor_binder& b, const llama_hparams& hp, stage_weights& sw, int64_t n_vocab) {
    const arch_def& def = arch_of(hp.arch);
    if (sw.has_embd) {
        sw.token_embd = b.matrix("token_embd.weight", hp.n_embd, n_vocab);
        if (get_type_traits(sw.token_embd.type).to_float == nullptr) {
            throw unsupported_type(format("%s: token_embd.weight type %s cannot be dequantized",
                                          b.file().source().c_str(), get_type_traits(sw.token_embd.type).name));
        }
    }
    sw.rope_freqs = b.vector("rope_freqs.weight", hp.n_rot / 2, true);
    for (int64_t il = sw.layer_begin; il < sw.layer_end; ++il) {
        layer_weights lw;
        def.bind_layer(b, hp, il, lw);
        sw.bytes += active_bytes(lw, hp);
        sw.layers.push_back(std::move(lw));
    }
    if (sw.has_head) {
        sw.output_norm = b.vector("output_norm.weight", hp.n_embd);
        sw.output = b.matrix(b.has("output.weight") ? "output.weight" : "token_embd.weight", hp.n_embd, n_vocab);
        sw.bytes += matrix_bytes(sw.output);
    }
}

} // namespace

stage_weights bind_stage_weights(const gguf_file& f, const llama_hparams& hp, int64_t layer_begin,
                                 int64_t layer_end) {
    if (layer_begin < 0 || layer_end > hp.n_layer || layer_begin >= layer_end) {
        throw std::invalid_argument(format("layer range [%lld, %lld) is not inside [0, %lld)",
                                           (long long)layer_begin, (long long)layer_end, (long long)hp.n_layer));
    }
    stage_weights sw;
    sw.layer_begin = layer_begin;
    sw.layer_end = layer_end;
    sw.has_embd = layer_begin == 0;
    sw.has_head = layer_end == hp.n_layer;
    tensor_binder b(f, false);
    bind_all(b, hp, sw, vocab_size_from_gguf(f, hp));
    return sw;
}

void check_model_tensors(const gguf_file& f, const llama_hparams& hp) {
    stage_weights sw;
    sw.layer_begin = 0;
    sw.layer_end = hp.n_layer;
    sw.has_embd = sw.has_head = true;
    tensor_binder b(f, true);
    bind_all(b, hp, sw, vocab_size_from_gguf(f, hp));
    for (const gguf_tensor_info& t : f.tensors()) {
        if (b.used().count(t.name) != 0) continue;
        throw model_error(format("%s: tensor '%s' is not part of a '%s' model with %lld layers (%s.block_count): "
                                 "the file has a tensor the architecture does not use",
                                 f.source().c_str(), t.name.c_str(), hp.arch_name.c_str(), (long long)hp.n_layer,
                                 hp.arch_name.c_str()));
    }
}

std::vector<weight_view*> stage_matrices(stage_weights& sw) {
    std::vector<weight_view*> mats;
    for (auto& lw : sw.layers) {
        for (weight_view* w : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down, &lw.w_gate_sh,
                               &lw.w_up_sh, &lw.w_down_sh}) {
            if (w->n_out > 0) mats.push_back(w);
        }
        for (expert_weights* ew : {&lw.gate_exps, &lw.up_exps, &lw.down_exps}) {
            for (weight_view& w : ew->e) mats.push_back(&w);
        }
    }
    if (sw.has_head) mats.push_back(&sw.output);
    return mats;
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
