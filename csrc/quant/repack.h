// Row-interleaved ("repacked") weights: the blocks of 16 consecutive weight rows stored side by side,
// so that one 512-bit integer multiply-add (vpdpbusd) multiplies 4 values of 16 rows by the same 4
// activation quants, and a 32-value block column of 16 rows yields 16 exact integer dot products in 16
// lanes without any horizontal reduction. Verifying k drafted tokens then costs k * 8 multiply-adds
// and k * 3 float operations per 16-row block column, against ggml's row layout, which needs float
// work per 8 lanes of every (row, block, activation row). Opt-in (Pipeline(repack=True)): the
// summation order below is not llama.cpp's, so logits differ from llama.cpp's in the last bits.
//
// The summation order (THE definition; the scalar reference in repack.cpp implements it literally and
// every SIMD kernel must equal it bit for bit, tests/kernels/test_repack.py). For weight row r and
// activation row a, over the row's blocks b in order:
//     isum = sum_j u[r][b][j] * y[a][b][j] - off * sum_j y[a][b][j]      (exact int32)
//     acc  = fma(d_x[r][b] * d_y[a][b], float(isum), acc)                (d_x * d_y is exact in f32)
//     q4_1 only: acc = fma(m_x[r][b], s_y[a][b], acc)
// starting from acc = 0, where u is the unsigned stored quant (q4_0: q; q5_0: q; q8_0: q + 128;
// q4_1: q), off the offset that makes it unsigned (8, 16, 128; 0 for q4_1), y the q8_0 / q8_1
// activation quants and s_y the q8_1 block sum field. The k-quants, over the 256-value super-blocks
// b of a row (y: q8_K, one f32 scale d_y and bsums of 16 values per super-block):
//   q4_K: isum_j = sum over sub-block j (32 values) of q * y; bs_j = bsums[2j] + bsums[2j+1]
//         sumi = sum_j sc[r][j] * isum_j;  summ = sum_j m[r][j] * bs_j               (exact int32)
//         acc = fma(d_x * d_y, float(sumi), acc); acc = fma(-(dmin_x * d_y), float(summ), acc)
//   q6_K: isum_j = sum over sub-block j (16 values) of u * y - 32 * bsums[j]   (u = q + 32)
//         sumi = sum_j sc[r][j] * isum_j;  acc = fma(d_x * d_y, float(sumi), acc)
// Every output depends on its own row and activation row only: a verify row is bit-identical to a
// one-token step of the same repacked model.
//
// Layout of one block column of 16 rows (rows r = 0..15 of a group; a matrix is its groups one after
// the other, each group n_in / 32 block columns long; missing rows of the last group are zero):
//   q4_0: d[16] f16 | qs[256]                     288 bytes
//   q4_1: d[16] f16 | m[16] f16 | qs[256]         320 bytes
//   q5_0: d[16] f16 | qh[8] u64 | qs[256]         352 bytes
//   q8_0: d[16] f16 | qs[512]                     544 bytes
//   q4_K: d[16] | dmin[16] f16 | sc[8][16] | m[4][16][2] | qs[2048]            2368 bytes / 256 values
//   q6_K: d[16] f16 | sc[16][16] i8 | ql[2048] | qh[1024]                     3360 bytes / 256 values
// Nibble types: byte 64 c + 4 r + j of qs holds value 4 c + j of row r in its low nibble and value
// 16 + 4 c + j in its high nibble (c = 0..3, j = 0..3), i.e. the row's own qs[4 c + j]. q5_0: bit
// 4 r + j of qh[g] is bit 4 g + j of row r's qh (the 5th bit of value 4 g + j). q8_0: byte
// 64 g + 4 r + j of qs is value 4 g + j of row r, plus 128 (g = 0..7). q4_K: byte 64 (8 c + g) +
// 4 r + j of qs holds value 64 c + 4 g + j of row r in its low nibble and value 64 c + 32 + 4 g + j in
// its high nibble (c = 0..3, g = 0..7); sc[j][r] and m[t][r] = (m_2t, m_2t+1) are row r's 6-bit
// sub-block scales and mins. q6_K: ql as q4_K's qs holds the low 4 bits of u; byte 64 (8 h + g) +
// 4 r + j of qh holds the high 2 bits of u of values 128 h + 32 s + 4 g + j at bits 2 s, 2 s + 1.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/blocks.h"
#include "quant/type-traits.h"

namespace pipeinfer {

// One 16-row block column per type (the layouts described above).
struct col_q4_0 {
    fp16_bits d[16];
    uint8_t qs[256];
};
struct col_q4_1 {
    fp16_bits d[16];
    fp16_bits m[16];
    uint8_t qs[256];
};
struct col_q5_0 {
    fp16_bits d[16];
    uint8_t qh[64];   // (8,) little-endian u64 bit masks, one per 4-value group
    uint8_t qs[256];
};
struct col_q8_0 {
    fp16_bits d[16];
    uint8_t qs[512];
};
struct col_q4_K {
    fp16_bits d[16];
    fp16_bits dmin[16];
    uint8_t sc[8][16];
    uint8_t m[4][16][2];
    uint8_t qs[2048];
};
struct col_q6_K {
    fp16_bits d[16];
    int8_t sc[16][16];
    uint8_t ql[2048];
    uint8_t qh[1024];
};
static_assert(sizeof(col_q4_0) == 288 && sizeof(col_q4_1) == 320 && sizeof(col_q5_0) == 352 &&
                  sizeof(col_q8_0) == 544 && sizeof(col_q4_K) == 2368 && sizeof(col_q6_K) == 3360,
              "repacked column sizes");

// Version of the layouts above: bump it whenever a layout or the summation order changes, so that
// repacked copies cached on disk by an older build (model/repack-cache.h) are not used.
constexpr uint32_t REPACK_LAYOUT_VERSION = 1;

constexpr int REPACK_ROWS = 16;   // weight rows per group (one 512-bit lane each)
constexpr int REPACK_ACT_MAX = 8; // activation rows per repack_dot call (one zmm accumulator each)

// True for the weight types that have a repacked layout (q4_0, q4_1, q5_0, q8_0, q4_K, q6_K).
bool repack_supported(ggml_type t);

// Values per column (block size: 32, or 256 for the k-quants).
int64_t repack_column_values(ggml_type t);
// Bytes of one 16-row block column of type t; throws unsupported_type if t has no repacked layout.
size_t repack_column_bytes(ggml_type t);
// Bytes of a whole repacked (n_out, n_in) matrix: ceil(n_out / 16) groups.
size_t repack_bytes(ggml_type t, int64_t n_in, int64_t n_out);
// The offset `off` of the summation order for the 32-value types: 8, 0, 16, 128 (0 for the k-quants,
// whose q8_K activations carry their own sums).
int32_t repack_act_offset(ggml_type t);

// Activation side data of the repacked dots, computed once per matmul for all weight groups: ints
// per activation row of n values (0: the type needs none), and the data of one row:
//   q4_0 / q5_0 / q8_0: per block, off * sum of its quants (the correction of the order above);
//   q4_K: per super-block, 4 ints t = 0..3, each two i16 (bs_2t, bs_2t+1) (low, high half), the
//         sub-block sums of the summ term; q4_1, q6_K: none.
int64_t repack_act_ints(ggml_type t, int64_t n);
void repack_act_side(ggml_type t, const void* act_row, int64_t n, int32_t* out);

// Repacks n_out rows (row r at src + r * row_bytes, GGUF layout) into dst (repack_bytes(...) bytes).
// Throws shape_error for n_in not a multiple of the block size or row_bytes too small,
// unsupported_type for a type without a repacked layout.
void repack_rows(ggml_type t, const uint8_t* src, size_t row_bytes, int64_t n_in, int64_t n_out, uint8_t* dst);

} // namespace pipeinfer
