#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/ops.h"

namespace pipeinfer {

namespace {

// Row i of buf.router (logits) -> softmax probabilities; buf.chosen / buf.weight get the k best
// experts (highest probability first, the lower index on ties) and their weights.
void route_rows(layer_ctx& c, size_t n) {
    const int64_t ne = c.hp.n_expert, k = c.hp.n_expert_used;
    std::vector<int32_t> order(static_cast<size_t>(ne));
    for (size_t i = 0; i < n; ++i) {
        float* p = &c.buf.router[i * ne];
        const float mx = *std::max_element(p, p + ne);
        double sum = 0.0;
        for (int64_t e = 0; e < ne; ++e) {
            p[e] = std::exp(p[e] - mx);
            sum += p[e];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t e = 0; e < ne; ++e) p[e] *= inv;
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
        float wsum = 0.0f;
        for (int64_t j = 0; j < k; ++j) {
            c.buf.chosen[i * k + j] = order[static_cast<size_t>(j)];
            c.buf.weight[i * k + j] = p[order[static_cast<size_t>(j)]];
            wsum += c.buf.weight[i * k + j];
        }
        if (c.hp.expert_weights_norm) {
            for (int64_t j = 0; j < k; ++j) c.buf.weight[i * k + j] /= wsum;
        }
    }
}

// For every expert used by the batch: gathers the rows that chose it, runs the expert's gated FFN on
// them (one matmul per weight, reading the expert once), and writes each row's output to its slot
// buf.ex_out[row, rank].
void run_experts(layer_ctx& c, size_t n, ffn_act act) {
    const int64_t ne = c.hp.n_expert, k = c.hp.n_expert_used, d = c.hp.n_embd;
    std::vector<std::vector<int32_t>> slots(static_cast<size_t>(ne));  // per expert: row * k + rank
    for (size_t s = 0; s < n * static_cast<size_t>(k); ++s) slots[c.buf.chosen[s]].push_back(static_cast<int32_t>(s));
    // gated_ffn reads buf.xn: it holds one expert's gathered rows at a time, the whole batch's normed
    // input waits in buf.ex_in (swapped back at the end; both keep their capacity across calls)
    c.buf.ex_in.swap(c.buf.xn);
    const std::vector<float>& xn_all = c.buf.ex_in;
    for (int64_t e = 0; e < ne; ++e) {
        const std::vector<int32_t>& sl = slots[static_cast<size_t>(e)];
        if (sl.empty()) continue;
        const size_t m = sl.size();
        c.buf.xn.resize(m * d);
        for (size_t r = 0; r < m; ++r) std::copy_n(&xn_all[static_cast<size_t>(sl[r] / k) * d], d, &c.buf.xn[r * d]);
        gated_ffn(c, m, c.lw.gate_exps.e[e], c.lw.up_exps.e[e], c.lw.down_exps.e[e], act);
        for (size_t r = 0; r < m; ++r) std::copy_n(&c.buf.tmp[r * d], d, &c.buf.ex_out[static_cast<size_t>(sl[r]) * d]);
    }
    c.buf.xn.swap(c.buf.ex_in);
}

// buf.tmp (n rows) += the shared expert's output, times sigmoid(w_sh_gate · xn) when the layer has
// that gate. buf.ex_in holds the routed result meanwhile.
void add_shared_expert(layer_ctx& c, size_t n, ffn_act act) {
    const int64_t d = c.hp.n_embd;
    c.buf.ex_in.assign(c.buf.tmp.begin(), c.buf.tmp.begin() + n * d);
    gated_ffn(c, n, c.lw.w_gate_sh, c.lw.w_up_sh, c.lw.w_down_sh, act);
    std::vector<float> g(n, 1.0f);
    if (c.lw.w_sh_gate.n_out > 0) {
        matmul(c.lw.w_sh_gate, c.buf.xn.data(), static_cast<int64_t>(n), g.data(), c.pool, c.mm, c.exact);
        for (float& v : g) v = 1.0f / (1.0f + std::exp(-v));
    }
    for (size_t i = 0; i < n; ++i) {
        for (int64_t t = 0; t < d; ++t) c.buf.tmp[i * d + t] = c.buf.ex_in[i * d + t] + g[i] * c.buf.tmp[i * d + t];
    }
}

} // namespace

void moe_ffn(layer_ctx& c, size_t n, ffn_act act) {
    const int64_t ne = c.hp.n_expert, k = c.hp.n_expert_used, d = c.hp.n_embd;
    c.buf.router.resize(n * ne);
    c.buf.chosen.resize(n * k);
    c.buf.weight.resize(n * k);
    c.buf.ex_out.resize(n * k * d);
    matmul(c.lw.w_router, c.buf.xn.data(), static_cast<int64_t>(n), c.buf.router.data(), c.pool, c.mm, c.exact);
    route_rows(c, n);
    run_experts(c, n, act);
    for (size_t i = 0; i < n; ++i) {  // each row sums its experts in rank order
        float* out = &c.buf.tmp[i * d];
        std::fill(out, out + d, 0.0f);
        for (int64_t j = 0; j < k; ++j) {
            const float w = c.buf.weight[i * k + j];
            const float* y = &c.buf.ex_out[(i * k + j) * d];
            for (int64_t t = 0; t < d; ++t) out[t] += w * y[t];
        }
    }
    if (c.lw.w_down_sh.n_out > 0) add_shared_expert(c, n, act);
}

void prenorm_silu_ffn(layer_ctx& c, size_t n) {
    norm_input(c, c.lw.ffn_norm, n);
    if (c.lw.is_moe()) {
        moe_ffn(c, n, ffn_act::SILU);
    } else {
        gated_ffn(c, n, c.lw.w_gate, c.lw.w_up, c.lw.w_down, ffn_act::SILU);
    }
    add_residual(c, n);
}

} // namespace pipeinfer
