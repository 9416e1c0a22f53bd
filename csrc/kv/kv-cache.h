// The KV cache of one pipeline stage: for each of the stage's layers, a pool of n_ctx cells holding
// the K and V vectors of one token, plus per-cell metadata (position and the set of sequence ids that
// contain the token). Sequences let several token histories share cells: the canonical sequence, the
// speculative buffers of in-flight runs, and the branches of a draft tree. A token of the batch
// attends to the cells that share one of its sequence ids and whose position is <= its own.
// seq_rm / seq_cp / seq_keep edit only metadata (no K/V data moves), which is what makes rollback of
// rejected drafts and commit of accepted ones cheap. This module owns storage and bookkeeping; it must
// not know about models, messages or speculation policy.
//
// Cells are handed out in blocks of kv_cache::block_cells cells (aligned to it), each owned by one
// sequence group (one serving slot; the whole cache is one group without groups): a token takes a free
// cell of a block its group owns, else claims a wholly free block, else (no whole block free) takes any
// free cell. So the cells a request sees form runs of neighbours even when many requests decode side by
// side, and attention reads each f16 K line (32 cells) for one request instead of for every request
// whose cells would otherwise interleave with its own (attention-fast.h). A block no cell uses any more
// is no group's. The cache is full only when no cell is free.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/line-allocator.h"
#include "kernels/attention.h"

namespace pipeinfer {

// Per-token sequence ids of a batch, flattened: token i has ids[offsets[i] .. offsets[i+1]).
struct seq_lists {
    std::vector<int32_t> offsets;  // (n_tokens + 1)
    std::vector<int32_t> ids;      // (sum of per-token counts)
    int32_t count(size_t i) const { return offsets[i + 1] - offsets[i]; }
    const int32_t* of(size_t i) const { return ids.data() + offsets[i]; }
};

class kv_cache {
public:
    // n_layer: layers held by this stage; n_embd_k / n_embd_v: values per token per layer
    // (n_head_kv * head_dim); n_seq_max: sequence ids are in [0, n_seq_max); type: how values are
    // stored (kernels/attention.h; Q8_0 needs n_embd_k and n_embd_v multiples of 32).
    // seq_group: 0, or sequence ids come in groups of seq_group consecutive ids (one group per
    // serving slot) whose first id is the group's canonical sequence: its cells are visible to every
    // sequence of the group (speculative buffers then hold only their own tokens: committing them is
    // one seq_cp to the canonical sequence, and no buffer needs a copy of the canonical history).
    // One group of n_seq_max ids is the single-generation layout (sequence 0 canonical).
    // Throws memory_error, before allocating, if the K/V storage (bytes_needed) exceeds the memory
    // available to the process (common/memory.h).
    kv_cache(int n_layer, int64_t n_ctx, int64_t n_embd_k, int64_t n_embd_v, int n_seq_max, int seq_group = 0,
             kv_type type = kv_type::F16);
    // Bytes of K/V storage a cache of these dimensions allocates.
    static size_t bytes_needed(int n_layer, int64_t n_ctx, int64_t n_embd_k, int64_t n_embd_v, kv_type type);
    int seq_group() const { return seq_group_; }
    // The canonical sequence whose cells `seq` also sees (seq itself without groups).
    int32_t seq_canonical(int32_t seq) const { return seq_group_ > 0 ? seq - seq % seq_group_ : seq; }

    int64_t n_ctx() const { return n_ctx_; }
    int n_seq_max() const { return n_seq_max_; }
    int64_t n_used() const { return n_used_; }
    // One past the highest cell index that may be in use (attention scans [0, used_end)).
    int64_t used_end() const { return used_end_; }

    // Reserves one free cell per token, records its position and sequences, and returns the cell
    // indices (n_tokens). A token's cell comes from a block of the group of its first sequence id
    // (block_owner). Throws kv_full_error (cache untouched) if fewer cells are free, and
    // std::invalid_argument for a sequence id out of range or a negative position.
    std::vector<int32_t> allocate(const std::vector<int32_t>& pos, const seq_lists& seqs);
    // How many cells are free.
    int64_t n_free() const { return n_ctx_ - n_used_; }

    // Removes sequence `seq` (seq < 0: every sequence) from cells with pos in [p0, p1) (p1 < 0: no
    // upper bound); a cell left with no sequence becomes free.
    void seq_rm(int32_t seq, int32_t p0, int32_t p1);
    // Adds `dst` to every cell of `src` with pos in [p0, p1) (metadata only).
    void seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1);
    // Removes every sequence but `seq` from all cells.
    void seq_keep(int32_t seq);
    // Frees every cell.
    void clear();
    // Highest position held by `seq`, or -1 if it holds none.
    int32_t seq_pos_max(int32_t seq) const;
    // Number of cells holding `seq`.
    int64_t seq_n_cells(int32_t seq) const;

    // Cells per allocation block: 32 f16 K values of neighbouring cells are one 64-byte cache line.
    static constexpr int64_t block_cells = 32;
    // The group (seq_canonical(seq) / seq_group, 0 without groups) whose tokens take cells in block b
    // (cells [b * block_cells, (b + 1) * block_cells)), or -1 if no cell of b is in use.
    int32_t block_owner(int64_t b) const { return block_owner_[static_cast<size_t>(b)]; }
    int64_t n_blocks() const { return static_cast<int64_t>(block_owner_.size()); }

    // Cell metadata.
    int32_t cell_pos(int64_t c) const { return pos_[c]; }
    bool cell_has(int64_t c, int32_t seq) const {
        return (seqs_[c * words_ + seq / 64] >> (seq % 64)) & 1u;
    }
    bool cell_empty(int64_t c) const;

    // For each batch token i, the cells it may attend to: cells sharing one of its sequences (or the
    // canonical sequence of one of its sequences' groups) with pos <= pos[i]. Cells of the batch itself must already be allocated. Result is per token, in
    // increasing position order.
    void visible_cells(const std::vector<int32_t>& pos, const seq_lists& seqs,
                       std::vector<std::vector<int32_t>>& out) const;

    // Writes the K and V vectors (n_embd_k and n_embd_v f32 values) of the token in `cell` for a layer
    // (local layer index), converted to the storage type (f16: rounded to nearest even, as llama.cpp's
    // f16 cache stores them; q8_0: quantized per block of 32 as ggml's quantize_row_q8_0).
    void store(int il, int64_t cell, const float* k, const float* v);
    // Where the keys and values of KV head g (values [g * head_dim, (g + 1) * head_dim)) of a layer sit,
    // for attention. F16: K transposed, (n_embd_k, k_t_stride) halves, value x of cell c at
    // [x * k_t_stride + c], so that attention reads the same K value of 16 neighbouring cells as one
    // vector; each row starts on a 64-byte cache line, so that an allocation block (32 cells) is one
    // line of each row, and the row stride is n_ctx rounded up to 32 cells plus 32, so that the rows of
    // a tile do not all fall into one L1 cache set (n_ctx is often a power of two), and a tile of 16
    // may be read from any cell; V (n_ctx, n_embd_v) halves, from a line too. Q8_0: K and V one
    // row of blocks per cell, (n_ctx, n_embd / 32) block_q8_0.
    attn_kv head_view(int il, int64_t g, int64_t head_dim) const;
    int64_t k_t_stride() const { return k_t_stride(n_ctx_); }
    static int64_t k_t_stride(int64_t n_ctx) { return (n_ctx + 31) / 32 * 32 + 32; }
    kv_type type() const { return type_; }
    size_t bytes() const { return bytes_; }
    // Position of every cell ((n_ctx), -1 where free).
    const int32_t* positions() const { return pos_.data(); }
    int64_t n_embd_k() const { return n_embd_k_; }
    int64_t n_embd_v() const { return n_embd_v_; }

private:
    void check_seq(int32_t seq, const char* what) const;
    int32_t group_of(int32_t seq) const { return seq_group_ > 0 ? seq / seq_group_ : 0; }
    int64_t block_size(int64_t b) const { return std::min(block_cells, n_ctx_ - b * block_cells); }
    int64_t take_cell(int32_t group);
    int64_t find_block(int32_t group);
    int64_t any_free_cell();
    void free_cell(int64_t c);
    void recount_used_end();

    int64_t n_ctx_;
    int64_t n_embd_k_, n_embd_v_;
    int n_seq_max_;
    int seq_group_ = 0;              // ids per sequence group (0: no groups)
    kv_type type_ = kv_type::F16;
    size_t bytes_ = 0;               // K/V storage bytes (bytes_needed)
    int64_t words_;                  // 64-bit words per cell in the sequence bitset
    std::vector<int32_t> pos_;       // (n_ctx) position of each cell, -1 if free
    std::vector<uint64_t> seqs_;     // (n_ctx, words_) sequence bitset of each cell
    // Per layer, from a cache line. F16: K (n_embd_k, k_t_stride) f16 (transposed), V (n_ctx, n_embd_v) f16.
    // Q8_0: K (n_ctx, n_embd_k / 32), V (n_ctx, n_embd_v / 32) block_q8_0.
    std::vector<std::vector<uint8_t, line_allocator<uint8_t>>> k_;
    std::vector<std::vector<uint8_t, line_allocator<uint8_t>>> v_;
    int64_t n_used_ = 0;
    int64_t used_end_ = 0;
    int64_t search_head_ = 0;        // where the next search for any free cell starts
    std::vector<int32_t> block_owner_;  // (n_blocks) owning group, -1 if no cell of the block is used
    std::vector<int32_t> block_used_;   // (n_blocks) cells of the block in use
    std::vector<int64_t> group_block_;  // (n_groups) the block a group took its last cell from, -1: none
};

} // namespace pipeinfer
