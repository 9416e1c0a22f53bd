// The KV multibuffer ring of PipeInfer (paper: pipelined KV-cache multibuffering), as bookkeeping on
// the head. Sequence 0 is the canonical sequence (visible to every sequence: kv_cache seq_group);
// the ring holds n_buffers speculative buffers of n_branches sequences each, one buffer per in-flight
// speculative micro-batch (one sequence per draft-tree branch). Buffer b's branch j is sequence
// 1 + b * n_branches + j. Acquire/release are O(1); the KV commands that go with them (clearing a
// released buffer, committing accepted tokens to sequence 0) are issued by runtime/pipeline and cost
// O(branches) and O(1) events, independent of the number of buffers. Must not know about transports.
#pragma once
#include <cstdint>
#include <vector>

namespace pipeinfer {

class kv_ring {
public:
    // n_buffers >= 1, n_branches >= 1; throws std::invalid_argument otherwise.
    kv_ring(int n_buffers, int n_branches);

    int n_buffers() const { return n_buffers_; }
    int n_branches() const { return n_branches_; }
    int n_free() const { return static_cast<int>(free_.size()); }
    // Sequence ids the KV caches must provide: canonical + every buffer's branches.
    int n_seq_max() const { return 1 + n_buffers_ * n_branches_; }

    // A free buffer (its sequences hold no cells), or -1 if every buffer is in flight.
    int acquire();
    // Returns buffer b to the ring. Precondition: b was acquired and not yet released.
    void release(int b);
    bool in_use(int b) const;
    // Sequence id of branch j of buffer b.
    int seq(int b, int j) const;

private:
    int n_buffers_;
    int n_branches_;
    std::vector<int> free_;       // free buffer ids, used as a stack (the last released is reused first)
    std::vector<uint8_t> used_;   // (n_buffers) 1 if acquired
};

} // namespace pipeinfer
