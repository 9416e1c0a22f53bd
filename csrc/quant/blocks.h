// Byte layouts of the quantized blocks, declared once. Every kernel (the scalar reference in
// quants-ref*.cpp and the per-ISA files in arch/) reads and writes weights and activations through
// these structs; nothing else may assume a block layout. This header holds no code, only layouts,
// the constants that size them, and static_asserts that pin each struct to the byte size GGUF files
// use.
//
// Source of every layout: ggml/src/ggml-common.h (llama.cpp, the block_* declarations and the
// QK*/QK_K/K_SCALE_SIZE constants; unchanged since the k-quant super-block rework of 2023 that fixed
// QK_K = 256). Field order is the on-disk order. Half-precision fields are stored as raw IEEE f16 bits
// (uint16_t); convert with common/fp16.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pipeinfer {

using fp16_bits = uint16_t;  // raw IEEE binary16
using bf16_bits = uint16_t;  // raw bfloat16 (upper half of an f32)

constexpr int QK4_0 = 32;
constexpr int QK4_1 = 32;
constexpr int QK5_0 = 32;
constexpr int QK5_1 = 32;
constexpr int QK8_0 = 32;
constexpr int QK8_1 = 32;
constexpr int QK_K = 256;         // values per k-quant super-block
constexpr int K_SCALE_SIZE = 12;  // bytes of packed 6-bit scales/mins in q3_K (scales), q4_K, q5_K

// q4_0: value = d * (q - 8), q in [0, 15].
// qs[j] holds value j in its low nibble and value j + 16 in its high nibble.
struct block_q4_0 {
    fp16_bits d;              // scale
    uint8_t qs[QK4_0 / 2];    // (16,) u8: two 4-bit quants per byte
};
static_assert(sizeof(block_q4_0) == 2 + QK4_0 / 2, "block_q4_0 must be 18 bytes");

// q4_1: value = d * q + m, q in [0, 15]; nibble order as q4_0.
struct block_q4_1 {
    fp16_bits d;              // scale
    fp16_bits m;              // min (offset)
    uint8_t qs[QK4_1 / 2];    // (16,) u8: two 4-bit quants per byte
};
static_assert(sizeof(block_q4_1) == 2 * 2 + QK4_1 / 2, "block_q4_1 must be 20 bytes");

// q5_0: value = d * (q - 16), q in [0, 31]. Low 4 bits as q4_0; bit 4 of value j is bit j of qh
// (qh read as a little-endian uint32).
struct block_q5_0 {
    fp16_bits d;              // scale
    uint8_t qh[4];            // (32,) bits: 5th bit of each quant, little-endian u32
    uint8_t qs[QK5_0 / 2];    // (16,) u8: low 4 bits, two per byte
};
static_assert(sizeof(block_q5_0) == 2 + 4 + QK5_0 / 2, "block_q5_0 must be 22 bytes");

// q5_1: value = d * q + m, q in [0, 31]; bit layout as q5_0.
struct block_q5_1 {
    fp16_bits d;              // scale
    fp16_bits m;              // min (offset)
    uint8_t qh[4];            // (32,) bits: 5th bit of each quant, little-endian u32
    uint8_t qs[QK5_1 / 2];    // (16,) u8: low 4 bits, two per byte
};
static_assert(sizeof(block_q5_1) == 2 * 2 + 4 + QK5_1 / 2, "block_q5_1 must be 24 bytes");

// q8_0: value = d * q, q in [-127, 127]. Also the activation type of q4_0 / q5_0 / q8_0 weights.
struct block_q8_0 {
    fp16_bits d;              // scale
    int8_t qs[QK8_0];         // (32,) i8 quants
};
static_assert(sizeof(block_q8_0) == 2 + QK8_0, "block_q8_0 must be 34 bytes");

// q8_1: value = d * q; s = d * sum(qs) (f16), used by q4_1 / q5_1 dots to apply the weight min.
struct block_q8_1 {
    fp16_bits d;              // scale
    fp16_bits s;              // d * sum(qs[i])
    int8_t qs[QK8_1];         // (32,) i8 quants
};
static_assert(sizeof(block_q8_1) == 2 * 2 + QK8_1, "block_q8_1 must be 36 bytes");

// q2_K: 16 sub-blocks of 16 values. scales[j] low nibble = 4-bit scale, high nibble = 4-bit min of
// sub-block j; value = d * sc * q - dmin * m, q in [0, 3].
// qs: 2 halves of 128 values, 32 bytes each; in a half, byte l holds values l, l+32, l+64, l+96
// at bit shifts 0, 2, 4, 6.
struct block_q2_K {
    uint8_t scales[QK_K / 16];  // (16,) u8: 4-bit scale | 4-bit min << 4
    uint8_t qs[QK_K / 4];       // (64,) u8: 2-bit quants
    fp16_bits d;                // super-block scale for the scales
    fp16_bits dmin;             // super-block scale for the mins
};
static_assert(sizeof(block_q2_K) == 2 * 2 + QK_K / 16 + QK_K / 4, "block_q2_K must be 84 bytes");

// q3_K: 16 sub-blocks of 16 values, value = d * (sc - 32) * (q - 4 * !hbit), q low part in [0, 3].
// Low 2 bits in qs as q2_K; the high bit of value (128*h + 32*k + l) is bit (4*h + k) of hmask[l].
// scales: 16 6-bit scales packed in 12 bytes (low 4 bits in bytes 0..7, high 2 bits in 8..11).
struct block_q3_K {
    uint8_t hmask[QK_K / 8];        // (32,) u8: high bit of each quant
    uint8_t qs[QK_K / 4];           // (64,) u8: low 2 bits of each quant
    uint8_t scales[K_SCALE_SIZE];   // (12,) u8: 16 packed 6-bit scales
    fp16_bits d;                    // super-block scale
};
static_assert(sizeof(block_q3_K) == 2 + QK_K / 4 + QK_K / 8 + 12, "block_q3_K must be 110 bytes");

// q4_K: 8 sub-blocks of 32 values, value = d * sc * q - dmin * m, q in [0, 15], sc/m 6-bit.
// scales: 8 scales + 8 mins, 6 bits each, packed in 12 bytes (ggml's get_scale_min_k4).
// qs: 4 chunks of 64 values, 32 bytes each: low nibbles = first 32, high nibbles = next 32.
struct block_q4_K {
    fp16_bits d;                    // super-block scale for the scales
    fp16_bits dmin;                 // super-block scale for the mins
    uint8_t scales[K_SCALE_SIZE];   // (12,) u8: packed 6-bit scales and mins
    uint8_t qs[QK_K / 2];           // (128,) u8: 4-bit quants
};
static_assert(sizeof(block_q4_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2, "block_q4_K must be 144 bytes");

// q5_K: as q4_K with a 5th bit: q in [0, 31]; bit 4 of value (64*c + 32*h + l) is bit (2*c + h)
// of qh[l].
struct block_q5_K {
    fp16_bits d;                    // super-block scale for the scales
    fp16_bits dmin;                 // super-block scale for the mins
    uint8_t scales[K_SCALE_SIZE];   // (12,) u8: packed 6-bit scales and mins
    uint8_t qh[QK_K / 8];           // (32,) u8: 5th bit of each quant
    uint8_t qs[QK_K / 2];           // (128,) u8: low 4 bits of each quant
};
static_assert(sizeof(block_q5_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2 + QK_K / 8,
              "block_q5_K must be 176 bytes");

// q6_K: 16 sub-blocks of 16 values, value = d * scales[j] * (q - 32), q in [0, 63].
// Two halves of 128 values: in half h, for l in [0, 32): low 4 bits of values l, l+32 in ql[64h+l]
// (low / high nibble), of values l+64, l+96 in ql[64h+l+32]; their high 2 bits in qh[32h+l] at
// shifts 0, 2, 4, 6 for l, l+32, l+64, l+96.
struct block_q6_K {
    uint8_t ql[QK_K / 2];       // (128,) u8: low 4 bits of each quant
    uint8_t qh[QK_K / 4];       // (64,) u8: high 2 bits of each quant
    int8_t scales[QK_K / 16];   // (16,) i8: 8-bit sub-block scales
    fp16_bits d;                // super-block scale
};
static_assert(sizeof(block_q6_K) == 2 + QK_K / 16 + 3 * QK_K / 4, "block_q6_K must be 210 bytes");

// q8_K: activation type of the k-quant dots. value = d * q; bsums[j] = sum of qs[16j .. 16j+15].
struct block_q8_K {
    float d;                        // scale (f32, unlike the other types)
    int8_t qs[QK_K];                // (256,) i8 quants
    int16_t bsums[QK_K / 16];       // (16,) i16: sums of groups of 16 quants
};
static_assert(sizeof(block_q8_K) == 4 + QK_K + QK_K / 16 * 2, "block_q8_K must be 292 bytes");

} // namespace pipeinfer
