#include "quant/type-traits.h"

#include <cstring>
#include <mutex>
#include <string>

#include "common/error.h"
#include "quant/arch/arch.h"

namespace pipeinfer {

// Reference kernels (quants-ref.cpp): fills to_float / from_float / vec_dot / vec_dot_type.
void register_kernels_ref(type_traits* table);

namespace {

constexpr size_t N_TYPES = static_cast<size_t>(ggml_type::COUNT);
type_traits g_table[N_TYPES];
type_traits g_unknown;
const char* g_isa = "scalar";
std::mutex g_mu;
bool g_done = false;

// Block geometry of every type id ggml has defined (ggml/src/ggml.c type_traits, block sizes from
// ggml-common.h); ids that were removed keep block_size 0 so files using them are rejected.
void fill_sizes() {
    auto set = [](ggml_type t, const char* name, int64_t bs, size_t ts, bool q) {
        type_traits& r = g_table[static_cast<size_t>(t)];
        r.name = name;
        r.block_size = bs;
        r.type_size = ts;
        r.is_quantized = q;
    };
    for (auto& r : g_table) r = type_traits{};
    set(ggml_type::F32, "f32", 1, 4, false);
    set(ggml_type::F16, "f16", 1, 2, false);
    set(ggml_type::Q4_0, "q4_0", 32, 18, true);
    set(ggml_type::Q4_1, "q4_1", 32, 20, true);
    set(ggml_type::Q5_0, "q5_0", 32, 22, true);
    set(ggml_type::Q5_1, "q5_1", 32, 24, true);
    set(ggml_type::Q8_0, "q8_0", 32, 34, true);
    set(ggml_type::Q8_1, "q8_1", 32, 36, true);
    set(ggml_type::Q2_K, "q2_k", 256, 84, true);
    set(ggml_type::Q3_K, "q3_k", 256, 110, true);
    set(ggml_type::Q4_K, "q4_k", 256, 144, true);
    set(ggml_type::Q5_K, "q5_k", 256, 176, true);
    set(ggml_type::Q6_K, "q6_k", 256, 210, true);
    set(ggml_type::Q8_K, "q8_k", 256, 292, true);
    set(ggml_type::IQ2_XXS, "iq2_xxs", 256, 66, true);
    set(ggml_type::IQ2_XS, "iq2_xs", 256, 74, true);
    set(ggml_type::IQ3_XXS, "iq3_xxs", 256, 98, true);
    set(ggml_type::IQ1_S, "iq1_s", 256, 50, true);
    set(ggml_type::IQ4_NL, "iq4_nl", 32, 18, true);
    set(ggml_type::IQ3_S, "iq3_s", 256, 110, true);
    set(ggml_type::IQ2_S, "iq2_s", 256, 82, true);
    set(ggml_type::IQ4_XS, "iq4_xs", 256, 136, true);
    set(ggml_type::I8, "i8", 1, 1, false);
    set(ggml_type::I16, "i16", 1, 2, false);
    set(ggml_type::I32, "i32", 1, 4, false);
    set(ggml_type::I64, "i64", 1, 8, false);
    set(ggml_type::F64, "f64", 1, 8, false);
    set(ggml_type::IQ1_M, "iq1_m", 256, 56, true);
    set(ggml_type::BF16, "bf16", 1, 2, false);
    set(ggml_type::TQ1_0, "tq1_0", 256, 54, true);
    set(ggml_type::TQ2_0, "tq2_0", 256, 66, true);
    set(ggml_type::MXFP4, "mxfp4", 32, 17, true);
    g_unknown.name = "unknown";
}

// The SIMD levels of this architecture, lowest first (index = rank); "scalar" is rank 0 everywhere.
#if defined(PIPEINFER_ARM)
const char* const LEVELS[] = {"scalar", "neon", "dotprod"};
#else
const char* const LEVELS[] = {"scalar", "avx2", "avx512"};
#endif

int isa_rank(const char* isa) {
    for (int i = 0; i < 3; ++i) {
        if (std::strcmp(isa, LEVELS[i]) == 0) return i;
    }
    return -1;
}

// Rebuilds the kernel pointers for the requested level, capped by what the CPU has.
const char* apply_isa(int want) {
    type_traits sizes[N_TYPES];
    fill_sizes();
    register_kernels_ref(g_table);
    const char* got = "scalar";
#if defined(PIPEINFER_X86)
    if (want >= 1 && cpu_has_avx2()) {
        register_kernels_avx2(g_table);
        got = "avx2";
    }
    if (want >= 2 && cpu_has_avx512()) {
        register_kernels_avx512(g_table);
        got = "avx512";
    }
#elif defined(PIPEINFER_ARM)
    if (want >= 1 && cpu_has_neon()) {
        register_kernels_neon(g_table);
        got = "neon";
    }
    if (want >= 2 && cpu_has_dotprod()) {
        register_kernels_neon_dotprod(g_table);
        got = "dotprod";
    }
#endif
    (void)sizes;
    g_isa = got;
    return got;
}

} // namespace

void init_type_traits() {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_done) return;
    apply_isa(2);
    g_done = true;
}

const type_traits& get_type_traits(ggml_type t) { return get_type_traits(static_cast<uint32_t>(t)); }

const type_traits& get_type_traits(uint32_t id) {
    if (!g_done) init_type_traits();
    if (id >= N_TYPES || g_table[id].block_size == 0) return g_unknown;
    return g_table[id];
}

size_t row_size(ggml_type t, int64_t n) {
    const type_traits& tt = get_type_traits(t);
    if (tt.block_size == 0) {
        throw unsupported_type(format("unknown tensor type id %u", static_cast<unsigned>(t)));
    }
    if (n < 0 || n % tt.block_size != 0) {
        throw shape_error(format("type %s needs a row length multiple of %lld, got %lld", tt.name,
                                 static_cast<long long>(tt.block_size), static_cast<long long>(n)));
    }
    return static_cast<size_t>(n / tt.block_size) * tt.type_size;
}

const char* kernel_isa() {
    if (!g_done) init_type_traits();
    return g_isa;
}

const char* set_kernel_isa(const char* isa) {
    const int want = isa_rank(isa);
    if (want < 0) {
        throw std::invalid_argument(
            format("unknown kernel ISA '%s' (expected %s, %s or %s)", isa, LEVELS[0], LEVELS[1], LEVELS[2]));
    }
    std::lock_guard<std::mutex> lock(g_mu);
    g_done = true;
    return apply_isa(want);
}

} // namespace pipeinfer
