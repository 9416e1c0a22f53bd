// The scalar reference of attend_f16 (kernels/attention.h): one cell at a time, in the plain form of
// ggml's loops (dot_f16_ggml_*, expf_ggml, per-cell f16 rounding, lane accumulators indexed
// [value][lane]), reading stored values through attention-kv.h. attend_f16 must equal it bit for bit
// for every storage type (tests/kernels/test_attention.py).
#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/fp16.h"
#include "kernels/attention.h"
#include "kernels/attention-kv.h"
#include "kernels/ops.h"

namespace pipeinfer {

void attend_f16_ref(const float* q, int64_t hd, float scale, const attn_kv& kv, const int32_t* cells, int64_t n,
                    bool one_row, float* out) {
    std::fill(out, out + hd, 0.0f);
    if (n <= 0) return;
    std::vector<float> sc(static_cast<size_t>(n));  // (n) scores, exp values
    std::vector<float> kr(static_cast<size_t>(hd));  // (hd) one cell's K
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
        load_kv_k(kv, cells[j], hd, kr.data());
        const float s = (one_row || hd % 16 != 0) ? dot_f16_ggml_vec(q, kr.data(), hd)
                                                  : dot_f16_ggml_gemm(q, kr.data(), hd);
        sc[j] = s * scale;
        mx = std::max(mx, sc[j]);
    }
    double sum = 0.0;
    float grp[16] = {};  // exp values of the current 16-position group, by position % 16
    for (int64_t j = 0; j < n; ++j) {
        sc[j] = expf_ggml(sc[j] - mx);
        const int32_t pj = kv.cell_pos[cells[j]];
        grp[pj % 16] = sc[j];
        if (j + 1 == n || kv.cell_pos[cells[j + 1]] / 16 != pj / 16) {
            sum += static_cast<double>(reduce16_ggml(grp));
            std::fill(grp, grp + 16, 0.0f);
        }
    }
    const float inv = static_cast<float>(1.0 / sum);
    const int lane_w = one_row ? 64 : 16;
    std::vector<float> lanes(static_cast<size_t>(hd * lane_w), 0.0f);  // (hd, lane_w)
    std::vector<float> vrow(static_cast<size_t>(hd));                   // (hd) one cell's V
    for (int64_t j = 0; j < n; ++j) {
        const float p = fp16_to_fp32(fp32_to_fp16(sc[j] * inv));
        load_kv_v(kv, cells[j], hd, vrow.data());
        const float* vr = vrow.data();
        const int lane = kv.cell_pos[cells[j]] % lane_w;
        fma_strided(p, vr, hd, lanes.data() + lane, lane_w);
    }
    for (int64_t t = 0; t < hd; ++t) {
        const float* lt = lanes.data() + t * lane_w;
        if (one_row) {
            float r[16];  // (acc0 + acc2) + (acc1 + acc3), as ggml_vec_dot_f16 combines them
            for (int l = 0; l < 16; ++l) r[l] = (lt[l] + lt[32 + l]) + (lt[16 + l] + lt[48 + l]);
            out[t] = reduce16_ggml(r);
        } else {
            out[t] = reduce16_ggml(lt);
        }
    }
}

} // namespace pipeinfer
