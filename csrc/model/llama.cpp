#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common/error.h"
#include "common/fp16.h"
#include "gguf/gguf-reader.h"
#include "kernels/attention-fast.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "model/validate.h"
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

namespace {

// The stage's weights, after the whole-file checks (cheap: metadata and the tensor table only): the
// tensors the architecture expects and no other (model/weights.h), the vocabulary metadata
// (model/validate.h). Every stage checks, so a worker rank refuses a broken file on its own.
stage_weights load_stage_weights(const gguf_file& f, const llama_hparams& hp, int64_t begin, int64_t end) {
    check_model_tensors(f, hp);
    check_vocab_metadata(f, hp, vocab_size_from_gguf(f, hp));
    return bind_stage_weights(f, hp, begin, end < 0 ? hp.n_layer : end);
}

} // namespace

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
      arch_(&arch_of(hp_.arch)),
      n_vocab_(vocab_size_from_gguf(*file_, hp_)),
      w_(load_stage_weights(*file_, hp_, layer_begin, layer_end)),
      kv_(static_cast<int>(w_.layer_end - w_.layer_begin), checked_n_ctx(*file_, hp_, n_ctx, kv, seq_group > 0 ? n_seq_max / seq_group : n_seq_max), hp_.n_embd_kv(),
          hp_.n_embd_kv(), n_seq_max, seq_group, kv),
      pool_(n_threads),
      fast_attn_(repack.enabled) {
    repack_stage_weights(w_, pool_, *file_, repack);
}

void llama_stage::embed(const batch& b) {
    const type_traits& tt = get_type_traits(w_.token_embd.type);
    const int64_t d = hp_.n_embd;
    for (size_t i = 0; i < b.n_tokens(); ++i) {
        const uint8_t* row = w_.token_embd.data + static_cast<size_t>(b.token[i]) * w_.token_embd.row_bytes;
        float* x = buf_.x.data() + i * d;
        tt.to_float(row, x, d);
        if (hp_.embd_scale != 1.0f) {
            for (int64_t t = 0; t < d; ++t) x[t] *= hp_.embd_scale;  // ggml_scale (gemma: sqrt(n_embd))
        }
    }
}

layer_ctx llama_stage::layer(int il, const batch& b, const std::vector<int32_t>& cells) {
    return layer_ctx{hp_, w_.layers[static_cast<size_t>(il)], w_, w_.layer_begin + il, il, b, cells, visible_,
                     buf_, kv_, pool_, mm_, exact_, fast_attn_};
}

void llama_stage::resize_buffers(size_t n) {
    const int64_t d = hp_.n_embd, ff = hp_.n_ff_max();
    buf_.x.resize(n * d);
    buf_.xn.resize(n * d);
    buf_.q.resize(n * hp_.n_embd_q());
    buf_.k.resize(n * hp_.n_embd_kv());
    buf_.v.resize(n * hp_.n_embd_kv());
    buf_.att.resize(n * hp_.n_embd_q());
    buf_.tmp.resize(n * d);
    buf_.gate.resize(n * ff);
    buf_.up.resize(n * ff);
    const size_t per_thread = std::max(attend_scratch_floats(hp_.head_dim, kv_.n_ctx()),
                                       attend_fast_scratch_floats(hp_.head_dim, hp_.n_head / hp_.n_head_kv, kv_.n_ctx()));
    buf_.scores.resize(static_cast<size_t>(pool_.n_threads()) * per_thread);
}

bool llama_stage::head(const batch& b, std::vector<float>& out, const std::function<bool()>& cancelled) {
    return head_rows(compact_output_rows(b), out, cancelled);
}

size_t llama_stage::compact_output_rows(const batch& b) {
    const int64_t d = hp_.n_embd;
    size_t r = 0;
    for (size_t i = 0; i < b.n_tokens(); ++i) {
        if (!b.want_logits[i]) continue;
        if (r != i) std::copy_n(&buf_.x[i * d], d, &buf_.x[r * d]);
        ++r;
    }
    return r;
}

bool llama_stage::head_rows(size_t r, std::vector<float>& out, const std::function<bool()>& cancelled) {
    const int64_t d = hp_.n_embd;
    for (size_t i = 0; i < r; ++i) rmsnorm_row(&buf_.x[i * d], w_.output_norm.data(), d, hp_.rms_eps, &buf_.xn[i * d]);
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
        matmul(w, buf_.xn.data(), static_cast<int64_t>(r), logits, pool_, mm_, exact_);
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
        matmul(part, buf_.xn.data(), static_cast<int64_t>(r), dst, pool_, mm_, exact_);
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
    resize_buffers(n);

    exact_ = b.exact_rows;
    argmax_ = b.argmax_only;
    const std::vector<int32_t> cells = kv_.allocate(b.pos, b.seqs);
    kv_.visible_cells(b.pos, b.seqs, visible_);
    ++stats_.runs;
    stats_.tokens += n;

    if (is_first()) {
        embed(b);
    } else {
        std::copy_n(in, n * hp_.n_embd, buf_.x.data());
    }
    const int n_local = static_cast<int>(w_.layers.size());
    for (int il = 0; il < n_local; ++il) {
        if (cancelled && cancelled()) {
            stats_.layers_skipped += static_cast<uint64_t>(n_local - il);
            return false;
        }
        layer_ctx c = layer(il, b, cells);
        arch_->attention(c, n);
        if (is_last() && il == n_local - 1 && b.n_outputs() < n) {
            // As llama.cpp: after the last attention block only the rows whose logits are wanted go
            // on (the FFN then runs on fewer rows, which also picks the kernels for that row count).
            const size_t r = compact_output_rows(b);
            if (r > 0) arch_->ffn(c, r);  // no row wanted (e.g. a prefill for the cache only): done
            ++stats_.layers_run;
            return head_rows(r, out, cancelled);
        }
        arch_->ffn(c, n);
        ++stats_.layers_run;
    }
    if (is_last()) {
        return head(b, out, cancelled);
    } else {
        out.assign(buf_.x.begin(), buf_.x.end());
    }
    return true;
}

} // namespace pipeinfer
