// How pipeline ranks talk: one abstract point-to-point interface with two implementations,
// transport-mpi.cpp (ranks are MPI processes; the only file that includes <mpi.h>) and
// transport-local.cpp (ranks are threads of one process exchanging messages through in-memory
// mailboxes; the default without mpiexec and the workhorse of the tests).
//
// Semantics every implementation guarantees:
// - send() never blocks on the receiver (buffered / non-blocking); it copies or takes the payload.
// - Messages from one source with one tag arrive in the order they were sent (MPI's non-overtaking
//   rule); nothing is promised across tags or sources.
// - Liveness: every rank's transport sends a HEARTBEAT to every other rank each heartbeat_s seconds
//   (a background thread where needed); heartbeats are consumed internally and only update the
//   peer's last-heard time (silent_for). recv() throws transport_error naming the peer when the peer
//   it waits for has not been heard from for dead_after_s, or when a local peer was killed. An MPI
//   transport that closes (destructor, process exit) says bye: a wait on that peer then fails at once
//   ("closed its transport"), and its silence is no longer taken for death by waits on other peers.
// This module moves bytes and watches peers; it must not know what the bytes mean (runtime/protocol.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pipeinfer {

enum class msg_tag : int32_t {
    EVENT = 1,      // the head-ordered event stream, rank r -> r+1 (runs, KV commands, shutdown)
    RESULT = 2,     // last stage -> head: logits of a run, or a skipped marker
    CANCEL = 3,     // head -> workers: run ids to cancel
    CONTROL = 4,    // handshake and errors (hello, ready, error reports), any direction
    HEARTBEAT = 5,  // liveness; consumed inside the transport, never returned by try_recv/recv
    DRAFT = 6,      // head -> draft rank: the context to draft from (runtime/protocol.h draft_sync)
    PROPOSAL = 7,   // draft rank -> head: drafted tokens (draft_tokens)
};

// True for the tags a caller may send and receive (every tag but HEARTBEAT).
bool is_user_tag(msg_tag t);

const char* msg_tag_name(msg_tag t);

struct message {
    int src = -1;
    msg_tag tag = msg_tag::EVENT;
    std::vector<uint8_t> data;
};

struct transport_options {
    double heartbeat_s = 0.5;     // interval between heartbeats
    double dead_after_s = 10.0;   // a peer silent this long is dead (recv throws)
};

class transport {
public:
    virtual ~transport() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual const char* kind() const = 0;  // "mpi" or "local"

    // Queues `data` for rank dst under tag; returns without waiting for the receiver. Throws
    // transport_error (with the peer's rank) if the peer is known dead or the send fails.
    virtual void send(int dst, msg_tag tag, std::vector<uint8_t> data) = 0;

    // If a message with this tag from src (src < 0: any source) is ready, moves it into out and
    // returns true; otherwise returns false at once.
    virtual bool try_recv(int src, msg_tag tag, message& out) = 0;

    // Seconds since a message (any tag, heartbeats included) last came from `peer`.
    virtual double silent_for(int peer) const = 0;

    // Records that `peer` failed as another rank reported it (`why`: that report): waits involving it
    // then throw transport_error naming it, and an MPI process counts it as a fault (the job is ended
    // with MPI_Abort at exit instead of a MPI_Finalize that would hang). peer < 0: a fault not tied to
    // one peer. The local transport learns of deaths directly and ignores this.
    virtual void peer_failed(int peer, const std::string& why) {}

    // Waits for a message: polls try_recv, spinning briefly and then sleeping with growing back-off
    // (a few µs up to 1 ms) so that a waiting rank leaves the CPU to computing ones. Throws
    // transport_error if `timeout_s` (< 0: none) passes, or if any peer is dead or has been silent for
    // dead_after_s (a pipeline cannot go on without any of its ranks; the awaited peer src is checked
    // first, so it is the one named when it is dead). A message that arrived before the death is still
    // returned.
    message recv(int src, msg_tag tag, double timeout_s = -1.0);

    // Like recv but returns false on timeout instead of throwing (peer death still throws).
    bool recv_for(int src, msg_tag tag, double timeout_s, message& out);

    // Bytes and messages sent so far by this endpoint (heartbeats excluded).
    uint64_t bytes_sent() const { return bytes_sent_; }
    uint64_t messages_sent() const { return messages_sent_; }

    const transport_options& options() const { return opts_; }

protected:
    explicit transport(const transport_options& opts) : opts_(opts) {}
    void count_sent(size_t n) { bytes_sent_ += n; ++messages_sent_; }
    // Throws transport_error if `peer` (or any peer, peer < 0) is dead or silent too long.
    virtual void check_alive(int peer) const = 0;
    transport_options opts_;

private:
    uint64_t bytes_sent_ = 0;
    uint64_t messages_sent_ = 0;
};

// ---- local (threads in one process) ----

struct local_options : transport_options {
    // Random extra delivery delay per message in [0, max_delay_us] (0: none), seeded; per-(source,
    // tag) order is kept. Used by tests to shake out ordering assumptions.
    int max_delay_us = 0;
    uint64_t seed = 0;
};

// Endpoints for ranks 0..n-1 sharing one set of mailboxes; endpoint i is used by rank i's thread.
std::vector<std::shared_ptr<transport>> make_local_group(int n, const local_options& opts);
// Fault injection for tests: rank `r` of the group of `any_endpoint` is dead from now on (its
// mailbox is dropped; peers waiting on it get transport_error).
void local_group_kill(transport& any_endpoint, int r);

// ---- MPI ----

// Initialises MPI if needed (MPI_THREAD_MULTIPLE for the heartbeat thread; checks the level
// granted), duplicates MPI_COMM_WORLD with MPI_ERRORS_RETURN, starts heartbeats, and unlinks the
// names of MPICH's shared-memory segments (shm-names.h). Collective: every rank must call it (as its
// first MPI step, in the same order as any other communicator creation); throws transport_error if
// the others do not within max(30 s, 3 * dead_after_s) (MPI_Init_thread included: a rank that never
// starts MPI cannot hang this one), if MPI is unavailable or fails. std::invalid_argument unless
// dead_after_s > 2 * heartbeat_s > 0.
std::unique_ptr<transport> make_mpi_transport(const transport_options& opts);
// How many MPI transports this process has created (0: it never joined the job through one).
int mpi_transports_created();
// True if this process saw an MPI fault: a dead or silent peer, an MPI error, a broken message
// stream. After one, MPI_Finalize would hang (transport-mpi.cpp), so the job can only be ended with
// mpi_abort_world().
bool mpi_fault_seen();
// Ends the job from this rank after an unrecoverable error (MPI_Abort on the world communicator),
// after flushing stdio and waiting 250 ms so the launcher can forward the error already printed.
// Throws transport_error if MPI is not initialised (or already finalised).
void mpi_abort_world(int code);
// Stops the heartbeat threads of every MPI transport of this process for good (they make MPI calls);
// called at interpreter exit before anybody (this module or mpi4py) finalises MPI. Later use of those
// transports throws transport_error.
void mpi_quiesce();

} // namespace pipeinfer
