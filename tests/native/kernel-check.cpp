// Bit-exactness of every SIMD kernel level of this CPU against the scalar reference, as a standalone
// program (no Python): .ci/arm-kernels.sh cross-compiles it for AArch64 and runs it under qemu-user
// (with and without the dot-product extension), where the Python tests cannot run. On x86-64 it checks
// the AVX2 / AVX-512 levels the same way (except the one-row q2_K / q3_K / q5_K / q6_K dots, which
// are reordered there by design: quant/arch/x86-kernels.h).
//
// For each weight type: activations quantized by every level must equal the reference's bytes; the
// dot, x4, tiled and repacked dots (1..9 activation rows, random and extreme inputs) must equal the
// reference's floats bit for bit. Prints one line per failure and a summary; exit status 1 on any.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/fp16.h"
#include "quant/blocks.h"
#include "quant/repack.h"
#include "quant/type-traits.h"

using namespace pipeinfer;

namespace {

int g_failures = 0;
int g_checks = 0;

void check_bytes(const std::string& what, const void* got, const void* want, size_t n) {
    ++g_checks;
    if (std::memcmp(got, want, n) != 0) {
        ++g_failures;
        std::printf("FAIL %s\n", what.c_str());
    }
}

void check_floats(const std::string& what, const std::vector<float>& got, const std::vector<float>& want) {
    ++g_checks;
    for (size_t i = 0; i < want.size(); ++i) {
        if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
            ++g_failures;
            std::printf("FAIL %s: element %zu: %.9g != reference %.9g\n", what.c_str(), i, got[i], want[i]);
            return;
        }
    }
}

// Random activations of n_rows x n values: normal values with a few extremes, ties of opposite sign
// (the first of equal magnitudes decides q8_K's scale) and an all-zero block.
std::vector<float> activations(std::mt19937& rng, int n_rows, int64_t n) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n_rows * n));
    for (auto& v : x) v = nd(rng);
    for (int r = 0; r < n_rows; ++r) {
        float* row = x.data() + r * n;
        row[3] = 40.0f;
        row[7] = -40.0f;               // same magnitude, other sign
        for (int k = 32; k < 64 && k < n; ++k) row[k] = 0.0f;  // block 1 (of 32) all zero
        if (n >= 512) for (int k = 256; k < 512; ++k) row[k] = 0.0f;  // super-block 1 all zero
        row[n - 1] = 0.5f;             // an exact .5 after scaling is likely somewhere
    }
    return x;
}

// Weight rows of a type: quantized by the reference where it can quantize, else random bytes with
// finite f16 scales (the k-quants).
std::vector<uint8_t> weights(std::mt19937& rng, ggml_type t, int n_rows, int64_t n) {
    const type_traits& tt = get_type_traits(t);
    const size_t row = row_size(t, n);
    std::vector<uint8_t> w(row * static_cast<size_t>(n_rows));
    if (tt.from_float != nullptr) {
        const std::vector<float> x = activations(rng, n_rows, n);
        for (int r = 0; r < n_rows; ++r) tt.from_float(x.data() + r * n, w.data() + r * row, n);
        return w;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
    std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
    const int64_t nb = n / QK_K;
    for (int r = 0; r < n_rows; ++r) {
        for (int64_t i = 0; i < nb; ++i) {
            uint8_t* b = w.data() + r * row + i * tt.type_size;
            const fp16_bits d = fp32_to_fp16(scale(rng)), dmin = fp32_to_fp16(scale(rng));
            switch (t) {
            case ggml_type::Q2_K: std::memcpy(b + offsetof(block_q2_K, d), &d, 2); std::memcpy(b + offsetof(block_q2_K, dmin), &dmin, 2); break;
            case ggml_type::Q3_K: std::memcpy(b + offsetof(block_q3_K, d), &d, 2); break;
            case ggml_type::Q4_K: std::memcpy(b + offsetof(block_q4_K, d), &d, 2); std::memcpy(b + offsetof(block_q4_K, dmin), &dmin, 2); break;
            case ggml_type::Q5_K: std::memcpy(b + offsetof(block_q5_K, d), &d, 2); std::memcpy(b + offsetof(block_q5_K, dmin), &dmin, 2); break;
            case ggml_type::Q6_K: std::memcpy(b + offsetof(block_q6_K, d), &d, 2); break;
            default: break;
            }
        }
    }
    return w;
}

struct outputs {
    std::vector<uint8_t> act;               // quantized activations
    std::vector<float> dot, x4, tiled, rep; // per kernel, all weight rows x activation rows
};

// Everything one level computes for weights w (n_w rows) and activations x (n_act rows).
outputs run_level(ggml_type t, const std::vector<uint8_t>& w, int n_w, const std::vector<float>& x, int n_act,
                  int64_t n) {
    const type_traits& tt = get_type_traits(t);
    const type_traits& at = get_type_traits(tt.vec_dot_type);
    outputs o;
    const size_t arow = row_size(tt.vec_dot_type, n);
    o.act.resize(arow * static_cast<size_t>(n_act));
    for (int j = 0; j < n_act; ++j) at.from_float(x.data() + j * n, o.act.data() + j * arow, n);
    const size_t wrow = row_size(t, n);
    auto all_rows = [&](vec_dot_fn f, std::vector<float>& out) {
        if (f == nullptr) return;
        out.resize(static_cast<size_t>(n_w * n_act));
        for (int r = 0; r < n_w; ++r) f(n, w.data() + r * wrow, o.act.data(), arow, n_act, out.data() + r * n_act);
    };
    all_rows(tt.vec_dot, o.dot);
    all_rows(tt.vec_dot_x4, o.x4);
    all_rows(tt.vec_dot_tiled, o.tiled);
    if (tt.vec_dot_repacked != nullptr && repack_supported(t)) {
        std::vector<uint8_t> packed(repack_bytes(t, n, n_w));
        repack_rows(t, w.data(), wrow, n, n_w, packed.data());
        const int64_t n_side = repack_act_ints(t, n);
        std::vector<int32_t> side(static_cast<size_t>(n_side * n_act) + 1);
        for (int j = 0; j < n_act; ++j) repack_act_side(t, o.act.data() + j * arow, n, side.data() + j * n_side);
        const int64_t groups = (n_w + REPACK_ROWS - 1) / REPACK_ROWS;
        const size_t gbytes = packed.size() / static_cast<size_t>(groups);
        o.rep.resize(static_cast<size_t>(groups * REPACK_ROWS * n_act));
        for (int64_t g = 0; g < groups; ++g) {
            for (int j0 = 0; j0 < n_act; j0 += REPACK_ACT_MAX) {
                const int nt = n_act - j0 < REPACK_ACT_MAX ? n_act - j0 : REPACK_ACT_MAX;
                tt.vec_dot_repacked(n, packed.data() + g * gbytes, o.act.data() + j0 * arow, arow,
                                    side.data() + j0 * n_side, static_cast<size_t>(n_side), nt,
                                    o.rep.data() + (g * n_act + j0) * REPACK_ROWS);
            }
        }
    }
    return o;
}

bool reordered_here(ggml_type t) {
#if defined(PIPEINFER_X86)
    return t == ggml_type::Q2_K || t == ggml_type::Q3_K || t == ggml_type::Q5_K || t == ggml_type::Q6_K;
#else
    (void)t;
    return false;
#endif
}

void check_type(ggml_type t, const std::vector<std::string>& levels, std::mt19937& rng) {
    const type_traits& tt = get_type_traits(t);
    const bool k = tt.block_size == QK_K;
    for (int64_t n : k ? std::vector<int64_t>{256, 768} : std::vector<int64_t>{32, 96, 896}) {
        for (int n_act : {1, 2, 3, 4, 5, 8, 9}) {
            const int n_w = 35;  // two full repacked groups and a partial one
            set_kernel_isa("scalar");
            const std::vector<uint8_t> w = weights(rng, t, n_w, n);
            const std::vector<float> x = activations(rng, n_act, n);
            const outputs want = run_level(t, w, n_w, x, n_act, n);
            for (size_t li = 1; li < levels.size(); ++li) {
                set_kernel_isa(levels[li].c_str());
                const outputs got = run_level(t, w, n_w, x, n_act, n);
                const std::string at = std::string(tt.name) + " " + levels[li] + " n=" + std::to_string(n) +
                                       " rows=" + std::to_string(n_act);
                check_bytes(at + " activation quantizer", got.act.data(), want.act.data(), want.act.size());
                if (!reordered_here(t)) check_floats(at + " vec_dot", got.dot, want.dot);
                check_floats(at + " vec_dot_x4", got.x4, want.x4);
                check_floats(at + " vec_dot_tiled", got.tiled, want.tiled);
                check_floats(at + " vec_dot_repacked", got.rep, want.rep);
            }
        }
    }
}

} // namespace

int main() {
    init_type_traits();
    std::vector<std::string> levels = {"scalar"};
    for (const char* l : {"neon", "dotprod", "avx2", "avx512"}) {
        try {
            if (std::string(set_kernel_isa(l)) == l) levels.push_back(l);
        } catch (const std::exception&) {
            // not a level of this architecture
        }
    }
    std::printf("kernel levels of this CPU:");
    for (const auto& l : levels) std::printf(" %s", l.c_str());
    std::printf("\n");
    std::mt19937 rng(1234);
    for (ggml_type t : {ggml_type::Q4_0, ggml_type::Q4_1, ggml_type::Q5_0, ggml_type::Q5_1, ggml_type::Q8_0,
                        ggml_type::Q2_K, ggml_type::Q3_K, ggml_type::Q4_K, ggml_type::Q5_K, ggml_type::Q6_K}) {
        check_type(t, levels, rng);
    }
    std::printf("%d checks, %d failures\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
