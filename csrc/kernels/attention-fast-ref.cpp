// The scalar reference of attend_fast (kernels/attention-fast.h): the documented order written out one
// query head and one cell at a time, reading stored values through attention-kv.h. It defines the
// results; the SIMD paths must equal it bit for bit (tests/kernels/test_attention_fast.py). It is also
// attend_fast's path on CPUs without a SIMD path (and for head sizes that are not a multiple of 16).
#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include <algorithm>
#include <cmath>

#include "kernels/attention-fast.h"
#include "kernels/attention-kv.h"
#include "kernels/expf-ggml.h"
#include "kernels/ops.h"

namespace pipeinfer {

namespace {

// e_j = exp(s_j - max) in place; returns their sum in the 16-lane order.
float softmax_ref(float* s, int64_t n) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
    float lanes[16] = {};
    for (int64_t j = 0; j < n; ++j) {
        s[j] = detail::expf_ggml_select(s[j] - mx);
        lanes[j % 16] += s[j];
    }
    return reduce16_ggml(lanes);
}

} // namespace

void attend_fast_ref(const float* q, int64_t n_q, int64_t hd, float scale, const attn_kv& kv, const int32_t* cells,
                     int64_t n, float* scratch, float* out) {
    std::fill(out, out + n_q * hd, 0.0f);
    if (n <= 0) return;
    float* sc = scratch;   // (n) one head's scores, then exp values
    float* row = sc + n;   // (hd) one cell's K or V, widened to f32
    for (int64_t h = 0; h < n_q; ++h) {
        const float* qh = q + h * hd;
        float* oh = out + h * hd;
        for (int64_t j = 0; j < n; ++j) {
            load_kv_k(kv, cells[j], hd, row);
            float d = 0.0f;
            for (int64_t x = 0; x < hd; ++x) d = std::fmaf(qh[x], row[x], d);
            sc[j] = d * scale;
        }
        const float sum = softmax_ref(sc, n);
        for (int64_t j = 0; j < n; ++j) {
            load_kv_v(kv, cells[j], hd, row);
            for (int64_t t = 0; t < hd; ++t) oh[t] = std::fmaf(sc[j], row[t], oh[t]);
        }
        for (int64_t t = 0; t < hd; ++t) oh[t] = oh[t] / sum;
    }
}

} // namespace pipeinfer
