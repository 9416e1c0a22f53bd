#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common/error.h"
#include "common/fp16.h"
#include "gguf/gguf-reader.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "quant/repack.h"

namespace pipeinfer {

size_t batch::n_outputs() const {
    size_t n = 0;
    for (uint8_t f : want_logits) n += f != 0;
    return n;
}

void batch::validate(int64_t n_vocab, int n_seq_max, bool needs_tokens) const {
    const size_t n = pos.size();
    if (n == 0) throw std::invalid_argument("batch is empty");
    if (needs_tokens && token.size() != n) {
        throw std::invalid_argument(format("batch has %zu positions but %zu tokens", n, token.size()));
    }
    if (want_logits.size() != n) {
        throw std::invalid_argument(format("batch has %zu positions but %zu logits flags", n, want_logits.size()));
    }
    if (seqs.offsets.size() != n + 1 || seqs.offsets[0] != 0 ||
        static_cast<size_t>(seqs.offsets[n]) != seqs.ids.size()) {
        throw std::invalid_argument("batch sequence lists are malformed");
    }
    for (size_t i = 0; i < n; ++i) {
        if (needs_tokens && (token[i] < 0 || token[i] >= n_vocab)) {
            throw std::invalid_argument(format("token id %d at batch index %zu is out of the vocabulary [0, %lld)",
                                               token[i], i, (long long)n_vocab));
        }
        if (pos[i] < 0) throw std::invalid_argument(format("negative position %d at batch index %zu", pos[i], i));
        if (seqs.offsets[i + 1] <= seqs.offsets[i]) {
            throw std::invalid_argument(format("token at batch index %zu has no sequence id", i));
        }
        for (int32_t j = 0; j < seqs.count(i); ++j) {
            const int32_t s = seqs.of(i)[j];
            if (s < 0 || s >= n_seq_max) {
                throw std::invalid_argument(format("sequence id %d at batch index %zu out of range [0, %d)", s, i,
                                                   n_seq_max));
            }
        }
    }
}

int64_t checked_n_ctx(const gguf_file& f, const llama_hparams& hp, int64_t n_ctx, kv_type kv, int n_slots) {
    const int64_t per_slot = n_ctx / std::max(n_slots, 1);
    if (per_slot > hp.n_ctx_train) {
        const std::string what = n_slots > 1 ? format("n_ctx %lld over %d slots (%lld per sequence)", (long long)n_ctx,
                                                      n_slots, (long long)per_slot)
                                             : format("n_ctx %lld", (long long)n_ctx);
        throw std::invalid_argument(format("%s: %s exceeds the model's trained context of %lld tokens "
                                           "(%s.context_length); the model has no rope scaling to extend it",
                                           f.source().c_str(), what.c_str(), (long long)hp.n_ctx_train,
                                           hp.arch_name.c_str()));
    }
    if (kv == kv_type::Q8_0 && hp.head_dim % 32 != 0) {
        throw unsupported_type(format("%s: kv_type q8_0 needs a head size that is a multiple of 32, the model's is %lld",
                                      f.source().c_str(), (long long)hp.head_dim));
    }
    return n_ctx;
}

llama_stage::llama_stage(std::shared_ptr<const gguf_file> file, int64_t layer_begin, int64_t layer_end,
                         int64_t n_ctx, int n_seq_max, int n_threads, int seq_group, const repack_options& repack,
                         kv_type kv)
    : file_(std::move(file)),
      hp_(hparams_from_gguf(*file_)),
      n_vocab_(vocab_size_from_gguf(*file_, hp_)),
      w_(bind_stage_weights(*file_, hp_, layer_begin, layer_end < 0 ? hp_.n_layer : layer_end)),
      kv_(static_cast<int>(w_.layer_end - w_.layer_begin), checked_n_ctx(*file_, hp_, n_ctx, kv, seq_group > 0 ? n_seq_max / seq_group : n_seq_max), hp_.n_embd_kv(),
          hp_.n_embd_kv(), n_seq_max, seq_group, kv),
      pool_(n_threads) {
    repack_stage_weights(w_, pool_, *file_, repack);
}

void llama_stage::embed(const batch& b) {
    const type_traits& tt = get_type_traits(w_.token_embd.type);
    const int64_t d = hp_.n_embd;
    for (size_t i = 0; i < b.n_tokens(); ++i) {
        const uint8_t* row = w_.token_embd.data + static_cast<size_t>(b.token[i]) * w_.token_embd.row_bytes;
        tt.to_float(row, x_.data() + i * d, d);
    }
}

void llama_stage::attention_layer(int il, const batch& b, const std::vector<int32_t>& cells) {
    const layer_weights& lw = w_.layers[il];
    const size_t n = b.n_tokens();
    const int64_t d = hp_.n_embd, dq = hp_.n_embd_q(), dkv = hp_.n_embd_kv(), hd = hp_.head_dim;
    for (size_t i = 0; i < n; ++i) rmsnorm_row(&x_[i * d], lw.attn_norm.data(), d, hp_.rms_eps, &xn_[i * d]);
    const weight_view* qkv[] = {&lw.wq, &lw.wk, &lw.wv};
    float* qkv_out[] = {q_.data(), k_.data(), v_.data()};
    matmul_same_x(qkv, qkv_out, 3, xn_.data(), n, pool_, mm_, exact_);
    for (size_t i = 0; i < n; ++i) {
        if (!lw.bq.empty()) {
            add_inplace(&q_[i * dq], lw.bq.data(), dq);
            add_inplace(&k_[i * dkv], lw.bk.data(), dkv);
            add_inplace(&v_[i * dkv], lw.bv.data(), dkv);
        }
        rope_apply(&q_[i * dq], hp_.n_head, hd, hp_.n_rot, b.pos[i], hp_.rope_freq_base, hp_.rope);
        rope_apply(&k_[i * dkv], hp_.n_head_kv, hd, hp_.n_rot, b.pos[i], hp_.rope_freq_base, hp_.rope);
        // llama.cpp's f16 K·Q product rounds Q to f16; the cache converts K and V to its storage type.
        round_to_f16(&q_[i * dq], dq);
        kv_.store(il, cells[i], &k_[i * dkv], &v_[i * dkv]);
    }
    // Scores, softmax and P·V in llama.cpp's exact arithmetic: kernels/attention.h.
    const int64_t group = hp_.n_head / hp_.n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int64_t n_items = static_cast<int64_t>(n) * hp_.n_head;
    const bool one_row = n == 1 || b.exact_rows;
    const size_t per_thread = attend_scratch_floats(hd, kv_.n_ctx());
    pool_.parallel_for([&](int ith, int nth) {
        float* scratch = scores_.data() + static_cast<size_t>(ith) * per_thread;
        for (int64_t item = ith; item < n_items; item += nth) {
            const size_t i = static_cast<size_t>(item / hp_.n_head);
            const int64_t h = item % hp_.n_head;
            const int64_t g = h / group;
            const attn_kv kv = kv_.head_view(il, g, hd);
            const std::vector<int32_t>& vis = visible_[i];
            attend_f16(&q_[i * dq + h * hd], hd, scale, kv, vis.data(), static_cast<int64_t>(vis.size()), one_row,
                       scratch, &att_[i * dq + h * hd]);
        }
    });
    matmul(lw.wo, att_.data(), n, tmp_.data(), pool_, mm_, exact_);
    for (size_t i = 0; i < n * d; ++i) x_[i] += tmp_[i];
}

void llama_stage::ffn_layer(int il, size_t n) {
    const layer_weights& lw = w_.layers[il];
    const int64_t d = hp_.n_embd, ff = hp_.n_ff;
    for (size_t i = 0; i < n; ++i) rmsnorm_row(&x_[i * d], lw.ffn_norm.data(), d, hp_.rms_eps, &xn_[i * d]);
    const weight_view* gate_up[] = {&lw.w_gate, &lw.w_up};
    float* gate_up_out[] = {gate_.data(), up_.data()};
    matmul_same_x(gate_up, gate_up_out, 2, xn_.data(), n, pool_, mm_, exact_);
    for (size_t i = 0; i < n; ++i) swiglu_inplace(&gate_[i * ff], &up_[i * ff], ff);  // per row: ggml's 16-groups start at each row
    matmul(lw.w_down, gate_.data(), n, tmp_.data(), pool_, mm_, exact_);
    for (size_t i = 0; i < n * d; ++i) x_[i] += tmp_[i];
}

bool llama_stage::head(const batch& b, std::vector<float>& out, const std::function<bool()>& cancelled) {
    return head_rows(compact_output_rows(b), out, cancelled);
}

size_t llama_stage::compact_output_rows(const batch& b) {
    const int64_t d = hp_.n_embd;
    size_t r = 0;
    for (size_t i = 0; i < b.n_tokens(); ++i) {
        if (!b.want_logits[i]) continue;
        if (r != i) std::copy_n(&x_[i * d], d, &x_[r * d]);
        ++r;
    }
    return r;
}

bool llama_stage::head_rows(size_t r, std::vector<float>& out, const std::function<bool()>& cancelled) {
    const int64_t d = hp_.n_embd;
    for (size_t i = 0; i < r; ++i) rmsnorm_row(&x_[i * d], w_.output_norm.data(), d, hp_.rms_eps, &xn_[i * d]);
    std::vector<float>& logits = argmax_ ? logits_tmp_ : out;
    logits.resize(r * static_cast<size_t>(n_vocab_));
    if (r > 0 && !output_matmul(r, logits.data(), cancelled)) return false;
    if (argmax_) {
        out.resize(r);
        for (size_t i = 0; i < r; ++i) {
            const float* row = logits.data() + i * static_cast<size_t>(n_vocab_);
            out[i] = static_cast<float>(std::max_element(row, row + n_vocab_) - row);  // first maximum
        }
    }
    return true;
}

bool llama_stage::output_matmul(size_t r, float* logits, const std::function<bool()>& cancelled) {
    // The output head is often the largest matrix of the model (a vocabulary of 150k rows): it runs in
    // slices of rows, with a cancellation check between them, so that a run cancelled while its last
    // stage is here stops within a fraction of the head. Every output element is the same dot as in
    // one call (rows are independent).
    const weight_view& w = w_.output;
    const int64_t n_slices = cancelled ? OUTPUT_SLICES : 1;
    const int64_t step = ((w.n_out + n_slices - 1) / n_slices + REPACK_ROWS - 1) / REPACK_ROWS * REPACK_ROWS;
    if (step >= w.n_out) {
        matmul(w, xn_.data(), static_cast<int64_t>(r), logits, pool_, mm_, exact_);
        return true;
    }
    slice_out_.resize(r * static_cast<size_t>(step));
    for (int64_t j0 = 0; j0 < w.n_out; j0 += step) {
        if (j0 > 0 && cancelled()) return false;
        const int64_t nj = std::min(step, w.n_out - j0);
        weight_view part = w;
        part.n_out = nj;
        part.data = w.data + static_cast<size_t>(j0) * w.row_bytes;
        if (w.repacked != nullptr && j0 > 0) part.repacked = w.repacked + repack_bytes(w.type, w.n_in, j0);  // j0 % 16 == 0
        float* dst = r == 1 ? logits + j0 : slice_out_.data();
        matmul(part, xn_.data(), static_cast<int64_t>(r), dst, pool_, mm_, exact_);
        if (r > 1) {
            for (size_t i = 0; i < r; ++i) {
                std::copy_n(slice_out_.data() + i * static_cast<size_t>(nj), nj,
                            logits + i * static_cast<size_t>(n_vocab_) + j0);
            }
        }
    }
    return true;
}

bool llama_stage::forward(const batch& b, const float* in, std::vector<float>& out,
                          const std::function<bool()>& cancelled) {
    b.validate(n_vocab_, kv_.n_seq_max(), is_first());
    if (!is_first() && in == nullptr) throw std::invalid_argument("a non-first stage needs input activations");
    const size_t n = b.n_tokens();
    const int64_t d = hp_.n_embd;
    x_.resize(n * d);
    xn_.resize(n * d);
    q_.resize(n * hp_.n_embd_q());
    k_.resize(n * hp_.n_embd_kv());
    v_.resize(n * hp_.n_embd_kv());
    att_.resize(n * hp_.n_embd_q());
    tmp_.resize(n * d);
    gate_.resize(n * hp_.n_ff);
    up_.resize(n * hp_.n_ff);
    scores_.resize(static_cast<size_t>(pool_.n_threads()) * attend_scratch_floats(hp_.head_dim, kv_.n_ctx()));

    exact_ = b.exact_rows;
    argmax_ = b.argmax_only;
    const std::vector<int32_t> cells = kv_.allocate(b.pos, b.seqs);
    kv_.visible_cells(b.pos, b.seqs, visible_);
    ++stats_.runs;
    stats_.tokens += n;

    if (is_first()) {
        embed(b);
    } else {
        std::copy_n(in, n * d, x_.data());
    }
    const int n_local = static_cast<int>(w_.layers.size());
    for (int il = 0; il < n_local; ++il) {
        if (cancelled && cancelled()) {
            stats_.layers_skipped += static_cast<uint64_t>(n_local - il);
            return false;
        }
        attention_layer(il, b, cells);
        if (is_last() && il == n_local - 1 && b.n_outputs() < n) {
            // As llama.cpp: after the last attention block only the rows whose logits are wanted go
            // on (the FFN then runs on fewer rows, which also picks the kernels for that row count).
            const size_t r = compact_output_rows(b);
            if (r > 0) ffn_layer(il, r);  // no row wanted (e.g. a prefill for the cache only): done
            ++stats_.layers_run;
            return head_rows(r, out, cancelled);
        }
        ffn_layer(il, n);
        ++stats_.layers_run;
    }
    if (is_last()) {
        return head(b, out, cancelled);
    } else {
        out.assign(x_.begin(), x_.end());
    }
    return true;
}

} // namespace pipeinfer
