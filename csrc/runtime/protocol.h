// The wire format of the pipeline runtime: what the head, the workers and the last stage say to each
// other, packed as one message per event (no per-field messages as in the reference code).
//
//   EVENT stream (rank r -> r+1, in the head's issue order; every stage applies events in that order):
//     RUN      run_id, flags, batch (pos, per-token seq ids, logits flags), then activations
//              (n_tokens × n_embd, f32 or f16) unless the run was skipped upstream
//     KV_OP    seq_rm / seq_cp / seq_keep / clear with its arguments
//     STATS    collects each stage's counters (and, when tracing, its run spans) on the way to the last stage
//     SHUTDOWN stop serving
//   RESULT (last stage -> head): run_id, skipped flag, logits rows (n_out × n_vocab f32)
//   CANCEL (head -> every worker): run ids
//   CONTROL: HELLO (head -> worker: protocol version, model fingerprint, stage config),
//            READY / ERROR (worker -> head; ERROR also head -> worker when the head fails before its
//            HELLO), STATS (last stage -> head: the STATS event's reports)
// Every decode validates sizes, counts and ranges and throws transport_error naming the sender: a
// message from another rank is untrusted input.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/llama.h"

namespace pipeinfer {

constexpr uint32_t PROTOCOL_VERSION = 5;

enum class event_type : uint8_t { RUN = 1, KV_OP = 2, STATS = 3, SHUTDOWN = 4 };
enum class kv_op_type : uint8_t { SEQ_RM = 1, SEQ_CP = 2, SEQ_KEEP = 3, CLEAR = 4 };
enum class control_type : uint8_t { HELLO = 1, READY = 2, ERROR = 3, STATS = 4 };

struct kv_op {
    kv_op_type type = kv_op_type::CLEAR;
    int32_t seq = 0;   // seq_rm: seq (-1 any); seq_cp: src; seq_keep: seq
    int32_t dst = 0;   // seq_cp: destination
    int32_t p0 = 0;
    int32_t p1 = -1;
};

// One run's compute on one stage, for timelines (recorded when the pipeline traces).
struct trace_span {
    int64_t run_id = 0;
    double t0 = 0.0, t1 = 0.0;     // steady-clock seconds (one clock for every process of one machine)
    int32_t n_tokens = 0;
    int32_t layers_run = 0;        // layers computed (fewer than the stage's when cancelled mid-run)
    bool skipped = false;          // cancelled before or during the run
};

// Counters of one stage, as reported through a STATS event.
struct stage_report {
    int32_t rank = 0;
    int64_t layer_begin = 0, layer_end = 0;
    uint64_t runs = 0, runs_skipped = 0, tokens = 0, layers_run = 0, layers_skipped = 0;
    uint64_t bytes_sent = 0, messages_sent = 0;
    double busy_s = 0.0;   // time computing
    double idle_s = 0.0;   // time waiting for the next event
    int64_t kv_cells_used = 0;
    uint64_t weight_bytes = 0;
    std::vector<trace_span> spans;  // runs computed since the previous STATS (tracing pipelines only)
};

struct run_event {
    int64_t run_id = 0;
    bool skipped = false;         // cancelled upstream: no activations follow
    bool act_f16 = false;         // activations travel as f16
    batch b;                      // token ids are not sent (only the first stage reads them)
    std::vector<float> act;       // (n_tokens, n_embd) f32, empty if skipped
};

struct event {
    event_type type = event_type::SHUTDOWN;
    run_event run;                     // RUN
    kv_op op;                          // KV_OP
    std::vector<stage_report> stats;   // STATS: reports of the stages passed so far
};

struct run_result {
    int64_t run_id = 0;
    bool skipped = false;
    int64_t n_rows = 0;
    bool argmax = false;               // logits holds one token id (as f32) per row
    std::vector<float> logits;         // (n_rows, n_vocab) f32, or (n_rows) ids with argmax
};

struct hello {
    uint32_t version = PROTOCOL_VERSION;
    uint64_t fingerprint = 0;          // model file identity (size + hash of header and metadata)
    int64_t n_ctx = 0;
    int32_t n_seq_max = 1;
    int32_t n_threads = 1;
    bool act_f16 = false;
    int32_t seq_group = 0;             // KV: sequence ids per group (kv_cache seq_group; 0: none)
    bool repack = false;               // row-interleaved weights (quant/repack.h)
    bool trace = false;                // record a trace_span per run for timelines
    uint8_t kv_type = 0;               // KV storage (kernels/attention.h kv_type)
    std::vector<int64_t> stage_layers; // layers per target stage (ranks 0..n-1)
    int32_t n_draft_ranks = 0;         // ranks after the target stages that run the drafter
};

// Head -> draft rank. The head's accepted context is the first n_common tokens of the draft rank's
// context followed by `tokens`; with tokens empty, the draft rank's tokens beyond n_common stay
// (they are its drafts, still unconfirmed), otherwise they are dropped and the epoch changes. The draft
// rank keeps `ahead` tokens drafted beyond the accepted context, stopping a chain whose top-1
// probability falls below p_min.
struct draft_sync {
    int64_t epoch = 0;                 // proposals carry it; older epochs are stale
    int64_t n_common = 0;
    std::vector<int32_t> tokens;
    int32_t ahead = 0;
    float p_min = 0.0f;
    bool stop = false;                 // the pipeline closes: serve no more
};

// Draft rank -> head: tokens drafted at positions pos, pos + 1, ... of `epoch`'s context.
struct draft_tokens {
    int64_t epoch = 0;
    int64_t pos = 0;
    std::vector<int32_t> tokens;
    std::vector<float> p;              // the draft model's probability of each token
};

struct control {
    control_type type = control_type::READY;
    hello h;                           // HELLO
    int32_t rank = 0;                  // READY / ERROR: the sender
    std::string error_kind;            // ERROR: "gguf", "model", "kv_full", "unsupported", "other"
    std::string text;                  // ERROR: message
    int32_t error_rank = -1;           // ERROR: the rank at fault (a dead or silent peer), -1: the sender
    std::vector<stage_report> reports; // STATS: every worker stage's counters (last stage -> head)
};

std::vector<uint8_t> encode_run(const run_event& r, int64_t n_embd);
std::vector<uint8_t> encode_kv_op(const kv_op& op);
std::vector<uint8_t> encode_stats(const std::vector<stage_report>& reports);
std::vector<uint8_t> encode_shutdown();
// n_embd: expected activation width; n_seq_max: bound for sequence ids; src: sender (for errors).
event decode_event(const std::vector<uint8_t>& data, int64_t n_embd, int n_seq_max, int src);

std::vector<uint8_t> encode_result(const run_result& r);
run_result decode_result(const std::vector<uint8_t>& data, int64_t n_vocab, int src);

std::vector<uint8_t> encode_cancel(const std::vector<int64_t>& run_ids);
std::vector<int64_t> decode_cancel(const std::vector<uint8_t>& data, int src);

std::vector<uint8_t> encode_control(const control& c);
control decode_control(const std::vector<uint8_t>& data, int src);

std::vector<uint8_t> encode_draft_sync(const draft_sync& d);
draft_sync decode_draft_sync(const std::vector<uint8_t>& data, int src);
std::vector<uint8_t> encode_draft_tokens(const draft_tokens& d);
draft_tokens decode_draft_tokens(const std::vector<uint8_t>& data, int src);

// Identity of a model file for the handshake: a 64-bit FNV-1a hash of its size, its header, metadata
// and tensor table (everything before the data section, capped at 64 MiB) and a sample of every
// tensor's bytes (64 bytes at its start, middle and end), so re-quantized or retrained weights of the
// same shapes are told apart while a rank touches only a few pages of the layers it does not run.
class gguf_file;
uint64_t model_fingerprint(const gguf_file& f);

} // namespace pipeinfer
