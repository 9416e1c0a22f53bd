#include "kv/kv-cache.h"

#include <algorithm>
#include <stdexcept>

#include "common/error.h"
#include "common/fp16.h"
#include "common/memory.h"
#include "quant/type-traits.h"

namespace pipeinfer {

size_t kv_cache::bytes_needed(int n_layer, int64_t n_ctx, int64_t n_embd_k, int64_t n_embd_v, kv_type type) {
    const size_t per_layer = type == kv_type::Q8_0
                                 ? static_cast<size_t>(n_ctx) * (kv_row_bytes(type, n_embd_k) + kv_row_bytes(type, n_embd_v))
                                 : static_cast<size_t>(k_t_stride(n_ctx)) * static_cast<size_t>(n_embd_k) * 2 +
                                       static_cast<size_t>(n_ctx) * kv_row_bytes(type, n_embd_v);
    return per_layer * static_cast<size_t>(n_layer);
}

kv_cache::kv_cache(int n_layer, int64_t n_ctx, int64_t n_embd_k, int64_t n_embd_v, int n_seq_max, int seq_group,
                   kv_type type)
    : n_ctx_(n_ctx), n_embd_k_(n_embd_k), n_embd_v_(n_embd_v), n_seq_max_(n_seq_max), seq_group_(seq_group),
      type_(type) {
    if (n_ctx <= 0) throw std::invalid_argument(format("n_ctx must be > 0, got %lld", (long long)n_ctx));
    if (n_seq_max <= 0) throw std::invalid_argument(format("n_seq_max must be > 0, got %d", n_seq_max));
    if (seq_group < 0 || (seq_group > 0 && n_seq_max % seq_group != 0)) {
        throw std::invalid_argument(format("seq_group must be 0 or divide n_seq_max (%d), got %d", n_seq_max, seq_group));
    }
    if (type != kv_type::F16 && type != kv_type::Q8_0) {
        throw std::invalid_argument(format("unknown KV storage type %d", static_cast<int>(type)));
    }
    if (type == kv_type::Q8_0 && (n_embd_k % 32 != 0 || n_embd_v % 32 != 0)) {
        throw unsupported_type(format("kv_type q8_0 needs K/V widths that are multiples of 32, got %lld and %lld",
                                      (long long)n_embd_k, (long long)n_embd_v));
    }
    bytes_ = bytes_needed(n_layer, n_ctx, n_embd_k, n_embd_v, type);
    check_fits_in_memory(bytes_, format("KV cache (n_ctx %lld, %d layers, %lld K + %lld V values per token, %s)",
                                        (long long)n_ctx, n_layer, (long long)n_embd_k, (long long)n_embd_v,
                                        kv_type_name(type)));
    words_ = (n_seq_max + 63) / 64;
    pos_.assign(static_cast<size_t>(n_ctx), -1);
    seqs_.assign(static_cast<size_t>(n_ctx * words_), 0);
    const int64_t n_blocks = (n_ctx + block_cells - 1) / block_cells;
    block_owner_.assign(static_cast<size_t>(n_blocks), -1);
    block_used_.assign(static_cast<size_t>(n_blocks), 0);
    group_block_.assign(static_cast<size_t>(seq_group > 0 ? n_seq_max / seq_group : 1), -1);
    k_.resize(static_cast<size_t>(n_layer));
    v_.resize(static_cast<size_t>(n_layer));
    const size_t k_bytes = type == kv_type::Q8_0 ? static_cast<size_t>(n_ctx) * kv_row_bytes(type, n_embd_k)
                                                  : static_cast<size_t>(k_t_stride() * n_embd_k) * 2;
    const size_t v_bytes = static_cast<size_t>(n_ctx) * kv_row_bytes(type, n_embd_v);
    for (int il = 0; il < n_layer; ++il) {
        k_[il].assign(k_bytes, 0);
        v_[il].assign(v_bytes, 0);
    }
}

void kv_cache::store(int il, int64_t cell, const float* k, const float* v) {
    if (type_ == kv_type::Q8_0) {
        const from_float_fn quantize = get_type_traits(ggml_type::Q8_0).from_float;
        quantize(k, k_[il].data() + static_cast<size_t>(cell) * kv_row_bytes(type_, n_embd_k_), n_embd_k_);
        quantize(v, v_[il].data() + static_cast<size_t>(cell) * kv_row_bytes(type_, n_embd_v_), n_embd_v_);
        return;
    }
    uint16_t* kt = reinterpret_cast<uint16_t*>(k_[il].data()) + cell;
    const int64_t stride = k_t_stride();
    for (int64_t x = 0; x < n_embd_k_; ++x) kt[x * stride] = fp32_to_fp16(k[x]);
    uint16_t* vr = reinterpret_cast<uint16_t*>(v_[il].data()) + cell * n_embd_v_;
    for (int64_t t = 0; t < n_embd_v_; ++t) vr[t] = fp32_to_fp16(v[t]);
}

attn_kv kv_cache::head_view(int il, int64_t g, int64_t head_dim) const {
    attn_kv kv;
    kv.type = type_;
    kv.cell_pos = pos_.data();
    if (type_ == kv_type::Q8_0) {
        const size_t head_off = kv_row_bytes(type_, g * head_dim);
        kv.k = k_[il].data() + head_off;
        kv.k_stride = static_cast<int64_t>(kv_row_bytes(type_, n_embd_k_));
        kv.v = v_[il].data() + head_off;
        kv.v_stride = static_cast<int64_t>(kv_row_bytes(type_, n_embd_v_));
        return kv;
    }
    kv.k = reinterpret_cast<const uint16_t*>(k_[il].data()) + g * head_dim * k_t_stride();
    kv.k_stride = k_t_stride();
    kv.v = reinterpret_cast<const uint16_t*>(v_[il].data()) + g * head_dim;
    kv.v_stride = n_embd_v_;
    return kv;
}

void kv_cache::check_seq(int32_t seq, const char* what) const {
    if (seq < 0 || seq >= n_seq_max_) {
        throw std::invalid_argument(
            format("%s: sequence id %d out of range [0, %d)", what, seq, n_seq_max_));
    }
}

bool kv_cache::cell_empty(int64_t c) const {
    for (int64_t w = 0; w < words_; ++w) {
        if (seqs_[c * words_ + w] != 0) return false;
    }
    return true;
}

void kv_cache::free_cell(int64_t c) {
    pos_[c] = -1;
    --n_used_;
    const size_t b = static_cast<size_t>(c / block_cells);
    if (--block_used_[b] == 0) block_owner_[b] = -1;
}

void kv_cache::recount_used_end() {
    while (used_end_ > 0 && pos_[used_end_ - 1] < 0) --used_end_;
}

std::vector<int32_t> kv_cache::allocate(const std::vector<int32_t>& pos, const seq_lists& seqs) {
    const size_t n = pos.size();
    if (seqs.offsets.size() != n + 1) {
        throw std::invalid_argument(format("batch has %zu positions but %zu sequence lists", n,
                                           seqs.offsets.size() ? seqs.offsets.size() - 1 : 0));
    }
    for (size_t i = 0; i < n; ++i) {
        if (pos[i] < 0) throw std::invalid_argument(format("token %zu: negative position %d", i, pos[i]));
        if (seqs.count(i) <= 0) throw std::invalid_argument(format("token %zu has no sequence id", i));
        for (int32_t j = 0; j < seqs.count(i); ++j) check_seq(seqs.of(i)[j], "batch");
    }
    if (static_cast<int64_t>(n) > n_free()) {
        throw kv_full_error(format("KV cache full: batch of %zu tokens needs cells, %lld of %lld free",
                                   n, (long long)n_free(), (long long)n_ctx_));
    }
    std::vector<int32_t> cells(n);
    for (size_t i = 0; i < n; ++i) {
        const int64_t c = take_cell(group_of(seqs.of(i)[0]));
        cells[i] = static_cast<int32_t>(c);
        pos_[c] = pos[i];
        uint64_t* bits = &seqs_[c * words_];
        for (int32_t j = 0; j < seqs.count(i); ++j) {
            const int32_t s = seqs.of(i)[j];
            bits[s / 64] |= uint64_t{1} << (s % 64);
        }
        ++n_used_;
        used_end_ = std::max<int64_t>(used_end_, c + 1);
    }
    return cells;
}

// A free cell for a token of `group` (precondition: a cell is free), counted in its block: the first
// free cell of the block the group took its last cell from, else of another block it owns
// (find_block), else any free cell.
int64_t kv_cache::take_cell(int32_t group) {
    int64_t b = group_block_[static_cast<size_t>(group)];
    const size_t last = static_cast<size_t>(b);
    if (b < 0 || block_owner_[last] != group || block_used_[last] == block_size(b)) b = find_block(group);
    int64_t c = -1;
    if (b >= 0) {
        c = b * block_cells;
        while (pos_[c] >= 0) ++c;  // the block has a free cell
    } else {
        c = any_free_cell();
        b = c / block_cells;
    }
    const size_t bi = static_cast<size_t>(b);
    if (block_used_[bi]++ == 0) block_owner_[bi] = group;
    return c;
}

// The lowest block `group` owns that has a free cell, else the lowest wholly free block (the group
// then owns it: take_cell counts its first cell), else -1. Remembered as the group's block.
int64_t kv_cache::find_block(int32_t group) {
    int64_t found = -1, free_block = -1;
    for (int64_t b = 0, nb = n_blocks(); b < nb; ++b) {
        const size_t bi = static_cast<size_t>(b);
        if (block_owner_[bi] == group && block_used_[bi] < block_size(b)) {
            found = b;
            break;
        }
        if (free_block < 0 && block_used_[bi] == 0) free_block = b;
    }
    if (found < 0) found = free_block;
    group_block_[static_cast<size_t>(group)] = found;
    return found;
}

// Any free cell, searching on from the last one found this way (precondition: a cell is free).
int64_t kv_cache::any_free_cell() {
    int64_t c = search_head_ < n_ctx_ ? search_head_ : 0;
    while (pos_[c] >= 0) c = (c + 1) % n_ctx_;
    search_head_ = (c + 1) % n_ctx_;
    return c;
}

void kv_cache::seq_rm(int32_t seq, int32_t p0, int32_t p1) {
    if (seq >= 0) check_seq(seq, "seq_rm");
    if (p0 < 0) p0 = 0;
    for (int64_t c = 0; c < used_end_; ++c) {
        const int32_t p = pos_[c];
        if (p < 0 || p < p0 || (p1 >= 0 && p >= p1)) continue;
        uint64_t* bits = &seqs_[c * words_];
        if (seq < 0) {
            std::fill(bits, bits + words_, 0);
        } else {
            bits[seq / 64] &= ~(uint64_t{1} << (seq % 64));
        }
        if (cell_empty(c)) free_cell(c);
    }
    recount_used_end();
    if (search_head_ >= used_end_) search_head_ = 0;
}

void kv_cache::seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    check_seq(src, "seq_cp source");
    check_seq(dst, "seq_cp destination");
    if (src == dst) return;
    if (p0 < 0) p0 = 0;
    for (int64_t c = 0; c < used_end_; ++c) {
        const int32_t p = pos_[c];
        if (p < 0 || p < p0 || (p1 >= 0 && p >= p1) || !cell_has(c, src)) continue;
        seqs_[c * words_ + dst / 64] |= uint64_t{1} << (dst % 64);
    }
}

void kv_cache::seq_keep(int32_t seq) {
    check_seq(seq, "seq_keep");
    for (int64_t c = 0; c < used_end_; ++c) {
        if (pos_[c] < 0) continue;
        const bool keep = cell_has(c, seq);
        uint64_t* bits = &seqs_[c * words_];
        std::fill(bits, bits + words_, 0);
        if (keep) {
            bits[seq / 64] |= uint64_t{1} << (seq % 64);
        } else {
            free_cell(c);
        }
    }
    recount_used_end();
}

void kv_cache::clear() {
    std::fill(pos_.begin(), pos_.end(), -1);
    std::fill(seqs_.begin(), seqs_.end(), 0);
    n_used_ = 0;
    used_end_ = 0;
    search_head_ = 0;
    std::fill(block_owner_.begin(), block_owner_.end(), -1);
    std::fill(block_used_.begin(), block_used_.end(), 0);
    std::fill(group_block_.begin(), group_block_.end(), -1);
}

int32_t kv_cache::seq_pos_max(int32_t seq) const {
    check_seq(seq, "seq_pos_max");
    int32_t best = -1;
    for (int64_t c = 0; c < used_end_; ++c) {
        if (pos_[c] >= 0 && cell_has(c, seq)) best = std::max(best, pos_[c]);
    }
    return best;
}

int64_t kv_cache::seq_n_cells(int32_t seq) const {
    check_seq(seq, "seq_n_cells");
    int64_t n = 0;
    for (int64_t c = 0; c < used_end_; ++c) {
        if (pos_[c] >= 0 && cell_has(c, seq)) ++n;
    }
    return n;
}

void kv_cache::visible_cells(const std::vector<int32_t>& pos, const seq_lists& seqs,
                             std::vector<std::vector<int32_t>>& out) const {
    const size_t n = pos.size();
    out.resize(n);
    // Tokens with the same (sequence set, position) see the same cells; batches are small, so a
    // direct scan per token is fine: O(n_tokens × used_end). Each list is sorted by position (then
    // cell), the order attention sums in.
    std::vector<int32_t> ids;  // the token's sequences and their groups' canonical sequences
    for (size_t i = 0; i < n; ++i) {
        auto& vis = out[i];
        vis.clear();
        ids.assign(seqs.of(i), seqs.of(i) + seqs.count(i));
        for (int32_t j = 0, cnt = seqs.count(i); j < cnt; ++j) {
            const int32_t canon = seq_canonical(ids[static_cast<size_t>(j)]);
            if (std::find(ids.begin(), ids.end(), canon) == ids.end()) ids.push_back(canon);
        }
        for (int64_t c = 0; c < used_end_; ++c) {
            const int32_t p = pos_[c];
            if (p < 0 || p > pos[i]) continue;
            for (const int32_t s : ids) {
                if (cell_has(c, s)) {
                    vis.push_back(static_cast<int32_t>(c));
                    break;
                }
            }
        }
        std::stable_sort(vis.begin(), vis.end(),
                         [this](int32_t a, int32_t b) { return pos_[static_cast<size_t>(a)] < pos_[static_cast<size_t>(b)]; });
    }
}

} // namespace pipeinfer
