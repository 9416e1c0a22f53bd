// A worker stage (rank > 0): receives the head's HELLO, loads its layer range, then applies the
// event stream from rank-1 in order (runs, KV commands, stats, shutdown), forwarding each event to
// rank+1 or, on the last stage, returning results to the head. Between layers it probes for
// cancellations without blocking and skips the rest of a cancelled run, forwarding a small skipped
// marker instead of activations. Runs on an MPI rank's main thread or on a thread of the local
// transport. Must not know about sampling or speculation.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "runtime/protocol.h"
#include "transport/transport.h"

namespace pipeinfer {

class gguf_file;

// Serves until SHUTDOWN (returns normally), until *stop becomes true (local mode teardown), or until
// an error: then it reports the error to the head (CONTROL ERROR, best effort) and rethrows.
// `file` is the already parsed model file.
// The stage's layer range, context size, thread count and weight layout come from the head's HELLO;
// repack_cache_dir is this process's cache of row-interleaved weights ("" = none).
void run_worker(transport& tp, std::shared_ptr<const gguf_file> file, const std::atomic<bool>* stop,
                const std::string& repack_cache_dir = "");

// Applies one KV command to a stage's cache.
void apply_kv_op(kv_cache& kv, const kv_op& op);

// The kind name of an exception for a CONTROL ERROR message, and the exception rebuilt from it.
std::string error_kind_of(const std::exception& e);
// A CONTROL ERROR from rank `sender` carrying `e`; its error_rank is the peer of a transport_error
// (the dead or silent rank that `sender` noticed), else the sender.
control error_control(int sender, const std::exception& e);
// Throws the exception a CONTROL ERROR from `src` describes; a transport_error names the rank at
// fault (error_rank), not the rank that reported it, and is recorded on `tp` (transport::peer_failed).
[[noreturn]] void rethrow_remote_error(const control& c, int src, transport& tp);

} // namespace pipeinfer
