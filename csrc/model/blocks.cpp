#include "model/blocks.h"

#include <algorithm>
#include <cmath>

#include "kernels/attention-fast.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "model/llama.h"

namespace pipeinfer {

void norm_input(layer_ctx& c, const std::vector<float>& w, size_t n) {
    const int64_t d = c.hp.n_embd;
    for (size_t i = 0; i < n; ++i) rmsnorm_row(&c.buf.x[i * d], w.data(), d, c.hp.rms_eps, &c.buf.xn[i * d]);
}

void norm_rows_inplace(layer_ctx& c, float* x, const std::vector<float>& w, size_t n, int64_t width) {
    for (size_t i = 0; i < n; ++i) rmsnorm_row(x + i * width, w.data(), width, c.hp.rms_eps, x + i * width);
}

void project_qkv(layer_ctx& c, size_t n) {
    const layer_weights& lw = c.lw;
    const weight_view* qkv[] = {&lw.wq, &lw.wk, &lw.wv};
    float* qkv_out[] = {c.buf.q.data(), c.buf.k.data(), c.buf.v.data()};
    matmul_same_x(qkv, qkv_out, 3, c.buf.xn.data(), static_cast<int64_t>(n), c.pool, c.mm, c.exact);
    if (lw.bq.empty()) return;
    const int64_t dq = c.hp.n_embd_q(), dkv = c.hp.n_embd_kv();
    for (size_t i = 0; i < n; ++i) {
        add_inplace(&c.buf.q[i * dq], lw.bq.data(), dq);
        add_inplace(&c.buf.k[i * dkv], lw.bk.data(), dkv);
        add_inplace(&c.buf.v[i * dkv], lw.bv.data(), dkv);
    }
}

void norm_qk_heads(layer_ctx& c, size_t n) {
    const int64_t hd = c.hp.head_dim;
    const size_t n_q = n * static_cast<size_t>(c.hp.n_head), n_k = n * static_cast<size_t>(c.hp.n_head_kv);
    for (size_t h = 0; h < n_q; ++h) rmsnorm_row(&c.buf.q[h * hd], c.lw.q_norm.data(), hd, c.hp.rms_eps, &c.buf.q[h * hd]);
    for (size_t h = 0; h < n_k; ++h) rmsnorm_row(&c.buf.k[h * hd], c.lw.k_norm.data(), hd, c.hp.rms_eps, &c.buf.k[h * hd]);
}

void rope_qk(layer_ctx& c, size_t n) {
    const llama_hparams& hp = c.hp;
    const float base = hp.rope_base(c.il);
    const float* ff = c.sw.rope_freqs.empty() ? nullptr : c.sw.rope_freqs.data();
    const int64_t dq = hp.n_embd_q(), dkv = hp.n_embd_kv();
    for (size_t i = 0; i < n; ++i) {
        rope_apply(&c.buf.q[i * dq], hp.n_head, hp.head_dim, hp.n_rot, c.b.pos[i], base, hp.rope, ff);
        rope_apply(&c.buf.k[i * dkv], hp.n_head_kv, hp.head_dim, hp.n_rot, c.b.pos[i], base, hp.rope, ff);
    }
}

void scale_q(layer_ctx& c, size_t n, float s) {
    float* q = c.buf.q.data();
    const size_t m = n * static_cast<size_t>(c.hp.n_embd_q());
    for (size_t i = 0; i < m; ++i) q[i] *= s;  // ggml_vec_scale_f32: one product per value
}

namespace {

// Index of the first cell of `vis` (in position order) that a token at `pos` sees through a window
// of n_swa positions: llama.cpp masks p' when pos - p' >= n_swa.
size_t window_start(const std::vector<int32_t>& vis, const int32_t* cell_pos, int32_t pos, int64_t n_swa) {
    const auto it = std::partition_point(vis.begin(), vis.end(), [&](int32_t cell) {
        return static_cast<int64_t>(pos) - cell_pos[cell] >= n_swa;
    });
    return static_cast<size_t>(it - vis.begin());
}

// The exact mode: one attend_f16 item per (row, query head), in llama.cpp's arithmetic (one-row order
// for a one-token batch and for exact rows, tinyBLAS order otherwise).
void attention_exact(layer_ctx& c, size_t n, float scale) {
    const llama_hparams& hp = c.hp;
    const int64_t dq = hp.n_embd_q(), hd = hp.head_dim;
    const int64_t group = hp.n_head / hp.n_head_kv;
    const int64_t n_items = static_cast<int64_t>(n) * hp.n_head;
    const bool one_row = n == 1 || c.b.exact_rows;
    const bool swa = hp.is_swa(c.il);
    const size_t per_thread = c.buf.scores.size() / static_cast<size_t>(c.pool.n_threads());
    c.pool.parallel_for([&](int ith, int nth) {
        float* scratch = c.buf.scores.data() + static_cast<size_t>(ith) * per_thread;
        for (int64_t item = ith; item < n_items; item += nth) {
            const size_t i = static_cast<size_t>(item / hp.n_head);
            const int64_t h = item % hp.n_head;
            const attn_kv kv = c.kv.head_view(c.local, h / group, hd);
            const std::vector<int32_t>& vis = c.visible[i];
            const size_t first = swa ? window_start(vis, kv.cell_pos, c.b.pos[i], hp.n_swa) : 0;
            attend_f16(&c.buf.q[i * dq + h * hd], hd, scale, kv, vis.data() + first,
                       static_cast<int64_t>(vis.size() - first), one_row, scratch, &c.buf.att[i * dq + h * hd]);
        }
    });
}

// The default mode: one attend_fast item per (row, KV head) with all its query heads, whose K and V
// are then widened once; when that gives fewer items than threads (a one-token step with few KV
// heads), each KV head's query heads are split into parts, which changes no result (the heads are
// computed independently).
void attention_fast(layer_ctx& c, size_t n, float scale) {
    const llama_hparams& hp = c.hp;
    const int64_t dq = hp.n_embd_q(), hd = hp.head_dim;
    const int64_t group = hp.n_head / hp.n_head_kv;
    const int64_t nth = c.pool.n_threads(), rows_kv = static_cast<int64_t>(n) * hp.n_head_kv;
    const int64_t n_parts = std::min(group, std::max<int64_t>(1, (nth + rows_kv - 1) / rows_kv));
    const int64_t part = (group + n_parts - 1) / n_parts;  // query heads per item
    const int64_t n_items = rows_kv * n_parts;
    const bool swa = hp.is_swa(c.il);
    const size_t per_thread = c.buf.scores.size() / static_cast<size_t>(nth);
    c.pool.parallel_for([&](int ith, int nth_) {
        float* scratch = c.buf.scores.data() + static_cast<size_t>(ith) * per_thread;
        for (int64_t item = ith; item < n_items; item += nth_) {
            const size_t i = static_cast<size_t>(item / (hp.n_head_kv * n_parts));
            const int64_t g = item / n_parts % hp.n_head_kv;
            const int64_t h0 = g * group + item % n_parts * part;
            const int64_t n_q = std::min(part, (g + 1) * group - h0);
            if (n_q <= 0) continue;
            const attn_kv kv = c.kv.head_view(c.local, g, hd);
            const std::vector<int32_t>& vis = c.visible[i];
            const size_t first = swa ? window_start(vis, kv.cell_pos, c.b.pos[i], hp.n_swa) : 0;
            attend_fast(&c.buf.q[i * dq + h0 * hd], n_q, hd, scale, kv, vis.data() + first,
                        static_cast<int64_t>(vis.size() - first), scratch, &c.buf.att[i * dq + h0 * hd]);
        }
    });
}

} // namespace

void self_attention(layer_ctx& c, size_t n, float scale) {
    const llama_hparams& hp = c.hp;
    const int64_t dq = hp.n_embd_q(), dkv = hp.n_embd_kv();
    for (size_t i = 0; i < n; ++i) {
        // llama.cpp's f16 K·Q product rounds Q to f16 (the default mode keeps that rounding, so that its
        // scores see the same q); the cache converts K and V to its storage type.
        round_to_f16(&c.buf.q[i * dq], dq);
        c.kv.store(c.local, c.cells[i], &c.buf.k[i * dkv], &c.buf.v[i * dkv]);
    }
    if (c.fast_attn) {
        attention_fast(c, n, scale);
    } else {
        attention_exact(c, n, scale);
    }
}

void output_projection(layer_ctx& c, size_t n) {
    matmul(c.lw.wo, c.buf.att.data(), static_cast<int64_t>(n), c.buf.tmp.data(), c.pool, c.mm, c.exact);
}

void gated_ffn(layer_ctx& c, size_t n, const weight_view& gate, const weight_view& up, const weight_view& down,
               ffn_act act) {
    const int64_t ff = gate.n_out;
    const weight_view* gate_up[] = {&gate, &up};
    float* gate_up_out[] = {c.buf.gate.data(), c.buf.up.data()};
    matmul_same_x(gate_up, gate_up_out, 2, c.buf.xn.data(), static_cast<int64_t>(n), c.pool, c.mm, c.exact);
    for (size_t i = 0; i < n; ++i) {  // per row: ggml's 16-value groups start at each row
        if (act == ffn_act::GELU) {
            geglu_inplace(&c.buf.gate[i * ff], &c.buf.up[i * ff], ff);
        } else {
            swiglu_inplace(&c.buf.gate[i * ff], &c.buf.up[i * ff], ff);
        }
    }
    matmul(down, c.buf.gate.data(), static_cast<int64_t>(n), c.buf.tmp.data(), c.pool, c.mm, c.exact);
}

void add_residual(layer_ctx& c, size_t n) {
    const size_t m = n * static_cast<size_t>(c.hp.n_embd);
    for (size_t i = 0; i < m; ++i) c.buf.x[i] += c.buf.tmp[i];
}

namespace {

void prenorm_attention_impl(layer_ctx& c, size_t n, bool qk_norm) {
    norm_input(c, c.lw.attn_norm, n);
    project_qkv(c, n);
    if (qk_norm) norm_qk_heads(c, n);
    rope_qk(c, n);
    self_attention(c, n, c.hp.score_scale());
    output_projection(c, n);
    add_residual(c, n);
}

} // namespace

void prenorm_attention(layer_ctx& c, size_t n) { prenorm_attention_impl(c, n, false); }

void prenorm_attention_qk_norm(layer_ctx& c, size_t n) { prenorm_attention_impl(c, n, true); }

} // namespace pipeinfer
