// The head's view of the pipeline: the target model's layers split into stages, stage 0 computed
// on the caller's thread, stages 1..N-1 on worker threads (local transport) or MPI ranks. The head
// launches runs (submit), which flow through the stages while the head goes on; results come back
// in launch order (poll / wait). Runs can be cancelled at any time; KV commands are applied to every
// stage in issue order (they travel in the same event stream as the runs). Knows nothing about
// Python, sampling or speculation policy.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kv/kv-ring.h"
#include "model/llama.h"
#include "runtime/protocol.h"
#include "transport/transport.h"

namespace pipeinfer {

class gguf_file;

struct pipeline_config {
    std::string model_path;
    int64_t n_ctx = 0;                   // KV cells per stage; 0 = min(context_length, 4096)
    int n_seq_max = 1;                   // KV sequence ids available (per slot)
    int n_slots = 1;                     // independent generations (serving slots), each with its own
                                         // group of sequence ids: canonical, then its ring's buffers
    int n_threads = 1;                   // compute threads per stage
    int n_stages = 1;                    // local transport: number of stages; MPI: the world size
    std::vector<int64_t> stage_layers;   // layers per stage (sums to n_layer); empty = split by bytes
    std::string transport = "local";     // "local" (threads) or "mpi" (this process is rank 0)
    bool act_f16 = false;                // activations travel between stages as f16
    bool repack = false;                 // row-interleaved weights on every stage (quant/repack.h)
    std::string repack_cache_dir;        // where stages cache them (model/repack-cache.h); "" = no cache
    kv_type kv = kv_type::F16;           // KV cache storage on every stage (kernels/attention.h)
    int n_spec_buffers = 0;              // KV multibuffer ring: speculative buffers (0 = no speculation)
    int n_spec_branches = 1;             // sequences per buffer (draft-tree branches)
    double heartbeat_s = 0.5;
    double dead_after_s = 10.0;          // a silent worker is declared dead after this long
    bool trace = false;                  // every stage records a trace_span per run (stats() returns them)
    int n_draft_ranks = 0;               // ranks after the target stages that draft (MPI: the last ones of the
                                         // world; local: endpoints for threads the caller runs, see draft_endpoint)
    int max_delay_us = 0;                // local transport: random message delay (tests)
    uint64_t delay_seed = 0;
};

class pipeline {
public:
    explicit pipeline(const pipeline_config& cfg);
    ~pipeline();
    pipeline(const pipeline&) = delete;
    pipeline& operator=(const pipeline&) = delete;

    // Launches a run: computes stage 0 here and hands it to stage 1. Returns the run id (increasing).
    int64_t submit(const batch& b);
    // True if the oldest outstanding run's result has arrived (never blocks).
    bool poll();
    // Blocks until the oldest outstanding run's result has arrived (true) or timeout_s passed (false),
    // so that a caller can stay responsive (Ctrl-C) during long waits. Throws like wait().
    bool wait_ready(double timeout_s);
    // The oldest outstanding run's result (blocks until it arrives); valid until the next wait.
    // Throws transport_error on a dead or silent worker, or the worker's error if one failed.
    const run_result& wait();
    // Marks runs cancelled on every worker stage at once (one message per worker).
    void cancel(const std::vector<int64_t>& run_ids);
    size_t n_in_flight() const { return outstanding_.size(); }

    void kv_seq_rm(int32_t seq, int32_t p0, int32_t p1);
    void kv_seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1);
    void kv_seq_keep(int32_t seq);
    void kv_clear();
    int32_t kv_seq_pos_max(int32_t seq) const;
    int64_t kv_n_used() const;
    int64_t kv_n_free() const;

    // KV multibuffer ring (configured with n_spec_buffers > 0; sequence 0 is then canonical and
    // visible to every sequence of slot 0). Each call issues at most one KV event per branch, to every
    // stage. The ring serves slot 0; other slots' rings are kept by their owner (the serving engine)
    // over kv_seq_rm / spec_commit, in the same layout (slot_seq0(k) + ring sequence id).
    // A free buffer id, or -1 if all are in flight (the caller pauses speculation).
    int spec_acquire();
    // Clears the buffer's sequences on every stage and returns it to the ring.
    void spec_release(int buffer);
    // Sequence of branch j of a buffer.
    int spec_seq(int buffer, int branch) const;
    int spec_free() const { return ring_ ? ring_->n_free() : 0; }
    // Makes the cells of `seq` at positions [p0, p1) canonical (adds its slot's canonical sequence):
    // one event.
    void spec_commit(int32_t seq, int32_t p0, int32_t p1);

    // ---- the draft rank(s): a drafter on its own rank (or thread) drafting ahead while the head works.
    // Tells draft rank `which` the context to draft from (protocol.h draft_sync).
    void sync_drafter(const draft_sync& d, int which = 0);
    // Proposals that have arrived from the draft ranks, oldest first (never blocks).
    std::vector<draft_tokens> draft_poll();
    // Waits until the oldest outstanding run's result has arrived (1), a proposal is waiting (2), or
    // timeout_s passed (0). Throws like wait() on a dead or failed rank.
    int wait_result_or_draft(double timeout_s);
    // Local transport: the endpoint of draft rank `which` (the caller serves it on a thread).
    std::shared_ptr<transport> draft_endpoint(int which = 0) const;
    int n_draft_ranks() const { return n_draft_; }

    // Counters of every stage (asks the workers; waits for runs in flight to pass). When tracing, each
    // report carries the spans of the runs its stage computed since the previous call.
    std::vector<stage_report> stats();
    // Stops the workers (idempotent).
    void close();

    const llama_hparams& hparams() const { return head_->hparams(); }
    const kv_cache& kv() const { return head_->kv(); }  // stage 0's cache
    int64_t n_vocab() const { return head_->n_vocab(); }
    int64_t n_ctx() const { return n_ctx_; }
    int n_seq_max() const { return n_seq_max_; }
    int n_slots() const { return n_slots_; }
    // Sequence ids per slot; slot k owns [k * seqs_per_slot, (k + 1) * seqs_per_slot), the first canonical.
    int seqs_per_slot() const { return n_seq_max_ / n_slots_; }
    int n_stages() const { return static_cast<int>(split_.size()); }
    const std::vector<int64_t>& stage_layers() const { return split_; }
    const char* transport_kind() const { return tp_ ? tp_->kind() : "none"; }
    int n_ranks() const { return n_stages() + n_draft_; }
    uint64_t bytes_sent() const { return tp_ ? tp_->bytes_sent() : 0; }

private:
    void send_kv(const kv_op& op);
    // kv_cache seq_group: speculation shares each slot's canonical sequence with the slot's buffers;
    // slots of one sequence each are groups of one (the same visibility as no groups), so that each
    // slot takes its cells in blocks of its own (kv_cache::allocate).
    int seq_group() const { return ring_ || seqs_per_slot() == 1 ? seqs_per_slot() : 0; }
    void handshake(const pipeline_config& cfg);
    void check_control();
    void check_workers_alive() const;
    bool try_receive_result();
    bool try_receive_proposal();

    std::shared_ptr<const gguf_file> file_;
    std::vector<int64_t> split_;
    int64_t n_ctx_ = 0;
    int n_seq_max_ = 1;
    int n_slots_ = 1;
    bool act_f16_ = false;
    std::unique_ptr<llama_stage> head_;
    std::unique_ptr<kv_ring> ring_;                      // null without speculation
    std::shared_ptr<transport> tp_;                      // null with one stage
    std::vector<std::shared_ptr<transport>> local_eps_;  // local transport endpoints (workers' too)
    std::vector<std::thread> threads_;                   // local worker stages
    std::atomic<bool> stop_{false};
    int64_t next_id_ = 0;
    std::deque<int64_t> outstanding_;                    // run ids in launch order
    std::deque<run_result> arrived_;                     // results received, oldest first
    run_result current_;                                 // the result wait() returned last
    std::vector<float> head_out_;                        // stage 0 output
    double head_busy_s_ = 0.0;
    bool trace_ = false;
    std::vector<trace_span> head_spans_;                 // stage 0 runs since the last stats() (tracing)
    int n_draft_ = 0;                                    // draft ranks, after the n_stages() target ranks
    std::deque<draft_tokens> proposals_;                 // received from draft ranks, not yet polled
    bool closed_ = false;
};

// Splits n_layer layers into n_stages contiguous ranges, balancing weight bytes (per-layer bytes
// given; the caller adds the output head's bytes to the last layer, whose stage computes it); every
// stage gets at least one layer. Throws std::invalid_argument if n_stages is not in [1, n_layer].
std::vector<int64_t> split_layers_by_bytes(const std::vector<size_t>& layer_bytes, int n_stages);

// An MPI worker rank: loads the model file and serves its stage until the head shuts the pipeline
// down. Throws transport_error if the head dies or goes silent.
void serve_mpi_worker(const std::string& model_path, double heartbeat_s, double dead_after_s,
                      const std::string& repack_cache_dir = "");

} // namespace pipeinfer
