#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include "kernels/attention-fast.h"

#include <algorithm>
#include <cmath>

#include "kernels/attention-kv.h"
#include "kernels/expf-ggml.h"
#include "kernels/fma-clones.h"
#include "kernels/ops.h"

namespace pipeinfer {

namespace {

constexpr int64_t kTile = 16;    // cells scored side by side
constexpr int64_t kMinRun = 4;   // neighbouring cells worth a tile read in place (else gathered)

int64_t round_up16(int64_t n) { return (n + kTile - 1) / kTile * kTile; }

// Scores per head in the scratch: the n cells, padded so that a tile of 16 may start at any cell
// (score_cells writes whole tiles; the columns past a tile's cells are written again by the next).
int64_t score_stride(int64_t n) { return round_up16(n) + kTile; }

const detail::attend_fast_isa* isa_in_force() {
    static const detail::attend_fast_isa* const isa = [] {
        const detail::attend_fast_isa* p = detail::attend_fast_isa_avx512();
        return p != nullptr ? p : detail::attend_fast_isa_avx2();
    }();
    return isa;
}

// e_j = exp(s_j - max) in place over one head's n scores; returns their sum in the 16-lane order
// (attention-fast.h). The lanes run side by side; each lane adds in increasing j.
PI_FMA_CLONES
float softmax_lanes(float* s, int64_t n) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
    float lanes[16] = {};
    int64_t j0 = 0;
    for (; j0 + 16 <= n; j0 += 16) {
        for (int l = 0; l < 16; ++l) {
            const float e = detail::expf_ggml_select(s[j0 + l] - mx);
            s[j0 + l] = e;
            lanes[l] += e;
        }
    }
    for (int l = 0; j0 + l < n; ++l) {
        s[j0 + l] = detail::expf_ggml_select(s[j0 + l] - mx);
        lanes[l] += s[j0 + l];
    }
    return reduce16_ggml(lanes);
}

// Length of the run of neighbouring cells cells[0], cells[0] + 1, ... (at most `limit`).
int64_t run_length(const int32_t* cells, int64_t limit) {
    int64_t r = 1;
    while (r < limit && cells[r] == cells[0] + r) ++r;
    return r;
}

// The next f16 K tile of the list, from cells[0] (n cells left): read in place when it starts a run
// of at least kMinRun neighbours (or the run is all that is left), covering the run (at most 16 cells;
// the columns past it are read and their scores written over); else the cells up to the next such
// run (at most 16), gathered into `tile`. Sets the cells it covers (*m) and its row stride.
const uint16_t* next_f16_k_tile(const detail::attend_fast_isa& isa, const attn_kv& kv, const int32_t* cells,
                                int64_t n, int64_t hd, uint16_t* tile, int64_t* m, int64_t* stride) {
    const int64_t left = std::min(kTile, n);
    const int64_t run = run_length(cells, left);
    if ((run >= kMinRun || run == left) && cells[0] + kTile <= kv.k_stride) {  // the cache pads its rows by >= 16
        *m = run;
        *stride = kv.k_stride;
        return static_cast<const uint16_t*>(kv.k) + cells[0];
    }
    *m = left;
    for (int64_t s = run; s < left;) {
        const int64_t r = run_length(cells + s, std::min(kMinRun, n - s));
        if (r >= kMinRun) {
            *m = s;
            break;
        }
        s += r;
    }
    isa.gather_f16(static_cast<const uint16_t*>(kv.k), kv.k_stride, cells, *m, hd, tile);
    *stride = kTile;
    return tile;
}

// Scores (n_q, ns) of the n cells: f16 K two tiles at a time (scores32), each tile the run of
// neighbours it starts (next_f16_k_tile), so that a list made of runs is read in place whatever the
// runs' lengths; q8_0 K one widened tile of 16 cells at a time. A cell's score does not depend on the
// tile it is scored in.
void score_cells(const detail::attend_fast_isa& isa, const float* q, int64_t n_q, int64_t hd, float scale,
                 const attn_kv& kv, const int32_t* cells, int64_t n, float* tiles, float* sc, int64_t ns) {
    uint16_t* tile_a = reinterpret_cast<uint16_t*>(tiles);  // (hd, 16) f16 K of cells that are not neighbours
    uint16_t* tile_b = tile_a + hd * kTile;
    for (int64_t j = 0; j < n;) {
        if (kv.type == kv_type::Q8_0) {
            widen_k_tile_q8_0(kv, cells + j, std::min(kTile, n - j), hd, tiles);
            isa.scores16(q, n_q, hd, scale, nullptr, tiles, kTile, sc + j, ns);
            j += kTile;
            continue;
        }
        int64_t ma = 0, sa = 0;
        const uint16_t* ka = next_f16_k_tile(isa, kv, cells + j, n - j, hd, tile_a, &ma, &sa);
        if (j + ma < n) {
            int64_t mb = 0, sb = 0;
            const uint16_t* kb = next_f16_k_tile(isa, kv, cells + j + ma, n - j - ma, hd, tile_b, &mb, &sb);
            isa.scores32(q, n_q, hd, scale, ka, sa, kb, sb, ma, sc + j, ns);
            j += ma + mb;
        } else {
            isa.scores16(q, n_q, hd, scale, ka, nullptr, sa, sc + j, ns);
            j += ma;
        }
    }
}

void attend_fast_isa_path(const detail::attend_fast_isa& isa, const float* q, int64_t n_q, int64_t hd, float scale,
                          const attn_kv& kv, const int32_t* cells, int64_t n, float* scratch, float* out) {
    const int64_t ns = score_stride(n);
    float* sc = scratch;  // (n_q, ns) scores, then exp values
    score_cells(isa, q, n_q, hd, scale, kv, cells, n, sc + n_q * ns, sc, ns);
    float sums[64];
    for (int64_t h0 = 0; h0 < n_q; h0 += 64) {
        const int64_t hc = std::min<int64_t>(64, n_q - h0);
        for (int64_t h = 0; h < hc; ++h) sums[h] = softmax_lanes(sc + (h0 + h) * ns, n);
        if (kv.type == kv_type::Q8_0) {
            isa.pv_q8_0(sc + h0 * ns, ns, hc, static_cast<const uint8_t*>(kv.v), kv.v_stride, cells, n, hd,
                        out + h0 * hd);
        } else {
            isa.pv_f16(sc + h0 * ns, ns, hc, static_cast<const uint16_t*>(kv.v), kv.v_stride, cells, n, hd,
                       out + h0 * hd);
        }
        for (int64_t h = 0; h < hc; ++h) {
            float* oh = out + (h0 + h) * hd;
            for (int64_t t = 0; t < hd; ++t) oh[t] = oh[t] / sums[h];
        }
    }
}

} // namespace

#if !defined(PIPEINFER_X86)  // the SIMD paths are x86 files (kernels/arch/); elsewhere the scalar path
const detail::attend_fast_isa* detail::attend_fast_isa_avx512() { return nullptr; }
const detail::attend_fast_isa* detail::attend_fast_isa_avx2() { return nullptr; }
#endif

size_t attend_fast_scratch_floats(int64_t head_dim, int64_t n_q, int64_t max_cells) {
    return static_cast<size_t>(n_q * score_stride(max_cells) + head_dim * kTile + head_dim);  // the tiles: f32 (q8_0) or two f16
}

const char* attend_fast_path() {
    const detail::attend_fast_isa* isa = isa_in_force();
    if (isa == nullptr) return "scalar";
    return isa == detail::attend_fast_isa_avx512() ? "avx512" : "avx2";
}

void attend_fast_with(const detail::attend_fast_isa* isa, const float* q, int64_t n_q, int64_t hd, float scale,
                      const attn_kv& kv, const int32_t* cells, int64_t n, float* scratch, float* out) {
    if (n <= 0) {
        std::fill(out, out + n_q * hd, 0.0f);
        return;
    }
    if (isa == nullptr || hd % 16 != 0) {
        attend_fast_ref(q, n_q, hd, scale, kv, cells, n, scratch, out);
        return;
    }
    attend_fast_isa_path(*isa, q, n_q, hd, scale, kv, cells, n, scratch, out);
}

void attend_fast(const float* q, int64_t n_q, int64_t hd, float scale, const attn_kv& kv, const int32_t* cells,
                 int64_t n, float* scratch, float* out) {
    attend_fast_with(isa_in_force(), q, n_q, hd, scale, kv, cells, n, scratch, out);
}

} // namespace pipeinfer
