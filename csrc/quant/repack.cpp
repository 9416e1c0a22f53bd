// Row-interleaved weights (quant/repack.h): packing from GGUF rows, the activation corrections, and
// the scalar reference of the repacked dot, which implements the summation order of repack.h
// literally (reading every quant through the packed layout) and is the oracle of the SIMD kernels.
#include "common/fp-strict.h"  // first: no a*b + c contraction in this file

#include "quant/repack.h"

#include <cmath>
#include <cstring>
#include <type_traits>

#include "common/error.h"
#include "common/fp16.h"
#include "quant/unpack-k.h"

namespace pipeinfer {

namespace {

constexpr int NIBBLE_BYTES = 16;  // qs bytes of a q4_0 / q4_1 / q5_0 block

// Nibble bytes of one row's block into a column: byte 64 c + 4 r + j = row qs[4 c + j].
void pack_nibbles(const uint8_t* row_qs, int r, uint8_t* col_qs) {
    for (int c = 0; c < 4; ++c) {
        for (int j = 0; j < 4; ++j) col_qs[64 * c + 4 * r + j] = row_qs[4 * c + j];
    }
}

// k-quant nibble area (q4_K qs, q6_K ql) from one row's 256 quants q (plus off): byte 64 (8 c + g) +
// 4 r + j = low 4 bits of value 64 c + 4 g + j | those of value 64 c + 32 + 4 g + j << 4.
void pack_k_nibbles(const int8_t* q, int off, int r, uint8_t* col_qs) {
    for (int c = 0; c < 4; ++c) {
        for (int g = 0; g < 8; ++g) {
            for (int j = 0; j < 4; ++j) {
                const int lo = (q[64 * c + 4 * g + j] + off) & 0x0F;
                const int hi = (q[64 * c + 32 + 4 * g + j] + off) & 0x0F;
                col_qs[64 * (8 * c + g) + 4 * r + j] = static_cast<uint8_t>(lo | (hi << 4));
            }
        }
    }
}

// Low 4 bits of value v (0..255) of row r from a k-quant nibble area.
int unpack_k_nibble(const uint8_t* col_qs, int r, int v) {
    const int c = v / 64, w = v % 64, g = (w % 32) / 4;
    const uint8_t byte = col_qs[64 * (8 * c + g) + 4 * r + w % 4];
    return w < 32 ? (byte & 0x0F) : (byte >> 4);
}

// Low 4 bits of value v (0..31) of row r from a packed nibble area.
int unpack_nibble(const uint8_t* col_qs, int r, int v) {
    const int c = (v % 16) / 4;
    const uint8_t byte = col_qs[64 * c + 4 * r + v % 4];
    return v < 16 ? (byte & 0x0F) : (byte >> 4);
}

uint64_t load_u64(const uint8_t* p) {
    uint64_t x;
    std::memcpy(&x, p, 8);
    return x;
}

void pack_column(ggml_type t, const uint8_t* const rows[REPACK_ROWS], uint8_t* dst) {
    switch (t) {
    case ggml_type::Q4_0: {
        auto* col = reinterpret_cast<col_q4_0*>(dst);
        for (int r = 0; r < REPACK_ROWS && rows[r] != nullptr; ++r) {
            const auto* b = reinterpret_cast<const block_q4_0*>(rows[r]);
            col->d[r] = b->d;
            pack_nibbles(b->qs, r, col->qs);
        }
        break;
    }
    case ggml_type::Q4_1: {
        auto* col = reinterpret_cast<col_q4_1*>(dst);
        for (int r = 0; r < REPACK_ROWS && rows[r] != nullptr; ++r) {
            const auto* b = reinterpret_cast<const block_q4_1*>(rows[r]);
            col->d[r] = b->d;
            col->m[r] = b->m;
            pack_nibbles(b->qs, r, col->qs);
        }
        break;
    }
    case ggml_type::Q5_0: {
        auto* col = reinterpret_cast<col_q5_0*>(dst);
        uint64_t qh[8] = {};
        for (int r = 0; r < REPACK_ROWS && rows[r] != nullptr; ++r) {
            const auto* b = reinterpret_cast<const block_q5_0*>(rows[r]);
            col->d[r] = b->d;
            pack_nibbles(b->qs, r, col->qs);
            uint32_t h;
            std::memcpy(&h, b->qh, 4);
            for (int g = 0; g < 8; ++g) qh[g] |= static_cast<uint64_t>((h >> (4 * g)) & 0xFu) << (4 * r);
        }
        std::memcpy(col->qh, qh, sizeof(qh));
        break;
    }
    case ggml_type::Q8_0: {
        auto* col = reinterpret_cast<col_q8_0*>(dst);
        for (int r = 0; r < REPACK_ROWS && rows[r] != nullptr; ++r) {
            const auto* b = reinterpret_cast<const block_q8_0*>(rows[r]);
            col->d[r] = b->d;
            for (int g = 0; g < 8; ++g) {
                for (int j = 0; j < 4; ++j) {
                    col->qs[64 * g + 4 * r + j] = static_cast<uint8_t>(static_cast<uint8_t>(b->qs[4 * g + j]) ^ 0x80u);
                }
            }
        }
        break;
    }
    case ggml_type::Q4_K: {
        auto* col = reinterpret_cast<col_q4_K*>(dst);
        unpacked_k u;
        for (int r = 0; r < REPACK_ROWS && rows[r] != nullptr; ++r) {
            const auto* b = reinterpret_cast<const block_q4_K*>(rows[r]);
            unpack_q4_K(*b, &u);
            col->d[r] = b->d;
            col->dmin[r] = b->dmin;
            for (int j = 0; j < 8; ++j) col->sc[j][r] = static_cast<uint8_t>(u.scale[j]);
            for (int j = 0; j < 8; ++j) col->m[j / 2][r][j % 2] = static_cast<uint8_t>(u.min[j]);
            pack_k_nibbles(u.q, 0, r, col->qs);
        }
        break;
    }
    case ggml_type::Q6_K: {
        auto* col = reinterpret_cast<col_q6_K*>(dst);
        unpacked_k u;
        for (int r = 0; r < REPACK_ROWS && rows[r] != nullptr; ++r) {
            const auto* b = reinterpret_cast<const block_q6_K*>(rows[r]);
            unpack_q6_K(*b, &u);
            col->d[r] = b->d;
            for (int j = 0; j < 16; ++j) col->sc[j][r] = static_cast<int8_t>(u.scale[j]);
            pack_k_nibbles(u.q, 32, r, col->ql);
            for (int h = 0; h < 2; ++h) {
                for (int g = 0; g < 8; ++g) {
                    for (int j = 0; j < 4; ++j) {
                        int bits = 0;
                        for (int s = 0; s < 4; ++s) bits |= (((u.q[128 * h + 32 * s + 4 * g + j] + 32) >> 4) & 3) << (2 * s);
                        col->qh[64 * (8 * h + g) + 4 * r + j] = static_cast<uint8_t>(bits);
                    }
                }
            }
        }
        break;
    }
    default:
        throw unsupported_type(format("repack: no row-interleaved layout for weight type %s", get_type_traits(t).name));
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar reference of the repacked dot
// ---------------------------------------------------------------------------------------------

// Unsigned stored quant u (value v of row r) and the f16 fields of one column, per type.
struct ref_q4_0 {
    using col = col_q4_0;
    using act = block_q8_0;
    static int u(const col& c, int r, int v) { return unpack_nibble(c.qs, r, v); }
};
struct ref_q4_1 {
    using col = col_q4_1;
    using act = block_q8_1;
    static int u(const col& c, int r, int v) { return unpack_nibble(c.qs, r, v); }
};
struct ref_q5_0 {
    using col = col_q5_0;
    using act = block_q8_0;
    static int u(const col& c, int r, int v) {
        const uint64_t mask = load_u64(c.qh + 8 * (v / 4));
        return unpack_nibble(c.qs, r, v) + static_cast<int>(((mask >> (4 * r + v % 4)) & 1u) << 4);
    }
};
struct ref_q8_0 {
    using col = col_q8_0;
    using act = block_q8_0;
    static int u(const col& c, int r, int v) { return c.qs[64 * (v / 4) + 4 * r + v % 4]; }
};

template <class T>
void vec_dot_repacked_ref(int64_t n, const void* group, const void* y, size_t y_stride, const int32_t* corr,
                          size_t corr_stride, int n_act, float* s) {
    constexpr bool has_min = std::is_same_v<T, ref_q4_1>;
    const int64_t nb = n / QK8_0;
    const auto* cols = static_cast<const typename T::col*>(group);
    for (int a = 0; a < n_act; ++a) {
        const auto* ya = reinterpret_cast<const typename T::act*>(static_cast<const uint8_t*>(y) + a * y_stride);
        for (int r = 0; r < REPACK_ROWS; ++r) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; ++b) {
                const auto& c = cols[b];
                int32_t isum = 0;
                for (int v = 0; v < QK8_0; ++v) isum += T::u(c, r, v) * static_cast<int32_t>(ya[b].qs[v]);
                if constexpr (!has_min) isum -= corr[a * corr_stride + b];
                const float dd = fp16_to_fp32(c.d[r]) * fp16_to_fp32(ya[b].d);
                acc = std::fma(dd, static_cast<float>(isum), acc);
                if constexpr (has_min) acc = std::fma(fp16_to_fp32(c.m[r]), fp16_to_fp32(ya[b].s), acc);
            }
            s[a * REPACK_ROWS + r] = acc;
        }
    }
}

// The k-quant summation orders of repack.h, literally.
void vec_dot_repacked_q4_K_ref(int64_t n, const void* group, const void* y, size_t y_stride, const int32_t*, size_t,
                               int n_act, float* s) {
    const auto* cols = static_cast<const col_q4_K*>(group);
    for (int a = 0; a < n_act; ++a) {
        const auto* ya = reinterpret_cast<const block_q8_K*>(static_cast<const uint8_t*>(y) + a * y_stride);
        for (int r = 0; r < REPACK_ROWS; ++r) {
            float acc = 0.0f;
            for (int64_t b = 0; b < n / QK_K; ++b) {
                const col_q4_K& c = cols[b];
                int32_t sumi = 0, summ = 0;
                for (int j = 0; j < 8; ++j) {
                    int32_t isum = 0;
                    for (int v = 32 * j; v < 32 * j + 32; ++v) isum += unpack_k_nibble(c.qs, r, v) * ya[b].qs[v];
                    sumi += c.sc[j][r] * isum;
                    summ += c.m[j / 2][r][j % 2] * (ya[b].bsums[2 * j] + ya[b].bsums[2 * j + 1]);
                }
                acc = std::fma(fp16_to_fp32(c.d[r]) * ya[b].d, static_cast<float>(sumi), acc);
                acc = std::fma(-(fp16_to_fp32(c.dmin[r]) * ya[b].d), static_cast<float>(summ), acc);
            }
            s[a * REPACK_ROWS + r] = acc;
        }
    }
}

void vec_dot_repacked_q6_K_ref(int64_t n, const void* group, const void* y, size_t y_stride, const int32_t*, size_t,
                               int n_act, float* s) {
    const auto* cols = static_cast<const col_q6_K*>(group);
    for (int a = 0; a < n_act; ++a) {
        const auto* ya = reinterpret_cast<const block_q8_K*>(static_cast<const uint8_t*>(y) + a * y_stride);
        for (int r = 0; r < REPACK_ROWS; ++r) {
            float acc = 0.0f;
            for (int64_t b = 0; b < n / QK_K; ++b) {
                const col_q6_K& c = cols[b];
                int32_t sumi = 0;
                for (int j = 0; j < 16; ++j) {
                    int32_t isum = 0;
                    for (int v = 16 * j; v < 16 * j + 16; ++v) {
                        const int h = v / 128, sg = (v % 128) / 32, w = v % 32;
                        const int high = (c.qh[64 * (8 * h + w / 4) + 4 * r + w % 4] >> (2 * sg)) & 3;
                        isum += (unpack_k_nibble(c.ql, r, v) | (high << 4)) * ya[b].qs[v];
                    }
                    sumi += c.sc[j][r] * (isum - 32 * ya[b].bsums[j]);
                }
                acc = std::fma(fp16_to_fp32(c.d[r]) * ya[b].d, static_cast<float>(sumi), acc);
            }
            s[a * REPACK_ROWS + r] = acc;
        }
    }
}

} // namespace

bool repack_supported(ggml_type t) {
    return t == ggml_type::Q4_0 || t == ggml_type::Q4_1 || t == ggml_type::Q5_0 || t == ggml_type::Q8_0 ||
           t == ggml_type::Q4_K || t == ggml_type::Q6_K;
}

int64_t repack_column_values(ggml_type t) {
    return t == ggml_type::Q4_K || t == ggml_type::Q6_K ? QK_K : QK8_0;
}

size_t repack_column_bytes(ggml_type t) {
    switch (t) {
    case ggml_type::Q4_0: return sizeof(col_q4_0);
    case ggml_type::Q4_1: return sizeof(col_q4_1);
    case ggml_type::Q5_0: return sizeof(col_q5_0);
    case ggml_type::Q8_0: return sizeof(col_q8_0);
    case ggml_type::Q4_K: return sizeof(col_q4_K);
    case ggml_type::Q6_K: return sizeof(col_q6_K);
    default:
        throw unsupported_type(format("repack: no row-interleaved layout for weight type %s", get_type_traits(t).name));
    }
}

int32_t repack_act_offset(ggml_type t) {
    switch (t) {
    case ggml_type::Q4_0: return 8;
    case ggml_type::Q4_1: return 0;
    case ggml_type::Q5_0: return 16;
    case ggml_type::Q8_0: return 128;
    case ggml_type::Q4_K:
    case ggml_type::Q6_K: return 0;
    default:
        throw unsupported_type(format("repack: no row-interleaved layout for weight type %s", get_type_traits(t).name));
    }
}

size_t repack_bytes(ggml_type t, int64_t n_in, int64_t n_out) {
    const size_t col = repack_column_bytes(t);
    const int64_t per = repack_column_values(t);
    if (n_in <= 0 || n_in % per != 0 || n_out <= 0) {
        throw shape_error(format("repack: need n_in a positive multiple of %lld and n_out > 0, got n_in=%lld n_out=%lld",
                                 static_cast<long long>(per), static_cast<long long>(n_in), static_cast<long long>(n_out)));
    }
    const int64_t groups = (n_out + REPACK_ROWS - 1) / REPACK_ROWS;
    return static_cast<size_t>(groups) * static_cast<size_t>(n_in / per) * col;
}

void repack_rows(ggml_type t, const uint8_t* src, size_t row_bytes, int64_t n_in, int64_t n_out, uint8_t* dst) {
    const size_t total = repack_bytes(t, n_in, n_out);  // validates type and shape
    const type_traits& tt = get_type_traits(t);
    const int64_t nb = n_in / repack_column_values(t);
    if (row_bytes < static_cast<size_t>(nb) * tt.type_size) {
        throw shape_error(format("repack: %s rows of %lld values need %zu bytes, got row_bytes=%zu", tt.name,
                                 static_cast<long long>(n_in), static_cast<size_t>(nb) * tt.type_size, row_bytes));
    }
    std::memset(dst, 0, total);
    const size_t col_bytes = repack_column_bytes(t);
    for (int64_t g0 = 0; g0 < n_out; g0 += REPACK_ROWS) {
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t* rows[REPACK_ROWS] = {};
            for (int r = 0; r < REPACK_ROWS && g0 + r < n_out; ++r) {
                rows[r] = src + static_cast<size_t>(g0 + r) * row_bytes + static_cast<size_t>(b) * tt.type_size;
            }
            pack_column(t, rows, dst + (static_cast<size_t>(g0 / REPACK_ROWS) * nb + b) * col_bytes);
        }
    }
}

int64_t repack_act_ints(ggml_type t, int64_t n) {
    if (t == ggml_type::Q4_K) return 4 * (n / QK_K);
    return repack_act_offset(t) != 0 ? n / QK8_0 : 0;
}

void repack_act_side(ggml_type t, const void* act_row, int64_t n, int32_t* out) {
    if (t == ggml_type::Q4_K) {
        const auto* y = static_cast<const block_q8_K*>(act_row);
        for (int64_t b = 0; b < n / QK_K; ++b) {
            for (int t4 = 0; t4 < 4; ++t4) {
                const int32_t b0 = y[b].bsums[4 * t4] + y[b].bsums[4 * t4 + 1];      // |.| <= 2 * 16 * 128
                const int32_t b1 = y[b].bsums[4 * t4 + 2] + y[b].bsums[4 * t4 + 3];
                out[4 * b + t4] = static_cast<int32_t>((static_cast<uint32_t>(b0) & 0xFFFFu) |
                                                       (static_cast<uint32_t>(b1) << 16));
            }
        }
        return;
    }
    const int32_t off = repack_act_offset(t);
    if (off == 0) return;
    const auto* y = static_cast<const block_q8_0*>(act_row);
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        int32_t sum = 0;
        for (int v = 0; v < QK8_0; ++v) sum += y[b].qs[v];
        out[b] = off * sum;
    }
}

void register_kernels_repack_ref(type_traits* table) {
    table[static_cast<size_t>(ggml_type::Q4_0)].vec_dot_repacked = vec_dot_repacked_ref<ref_q4_0>;
    table[static_cast<size_t>(ggml_type::Q4_1)].vec_dot_repacked = vec_dot_repacked_ref<ref_q4_1>;
    table[static_cast<size_t>(ggml_type::Q5_0)].vec_dot_repacked = vec_dot_repacked_ref<ref_q5_0>;
    table[static_cast<size_t>(ggml_type::Q8_0)].vec_dot_repacked = vec_dot_repacked_ref<ref_q8_0>;
    table[static_cast<size_t>(ggml_type::Q4_K)].vec_dot_repacked = vec_dot_repacked_q4_K_ref;
    table[static_cast<size_t>(ggml_type::Q6_K)].vec_dot_repacked = vec_dot_repacked_q6_K_ref;
}

} // namespace pipeinfer
