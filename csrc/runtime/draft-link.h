// The draft rank's end of the draft channel: it receives from the head (rank 0) the context to draft
// from (draft_sync) and sends back drafted tokens (draft_tokens), over the pipeline's transport (an MPI
// rank after the target stages, or a local endpoint served by a thread of the head's process). It owns
// only the messages; the drafting itself (which drafter, how far ahead) is the caller's (Python's
// drafters/server.py), and it must not know about stages or KV caches.
#pragma once
#include <memory>
#include <string>

#include "runtime/protocol.h"
#include "transport/transport.h"

namespace pipeinfer {

class draft_link {
public:
    explicit draft_link(std::shared_ptr<transport> tp);
    // An MPI draft rank: joins the world (collective, like every rank's first step) and returns its link.
    static std::unique_ptr<draft_link> connect_mpi(double heartbeat_s, double dead_after_s);

    // Waits up to timeout_s for the head's next message; false on timeout. Throws transport_error if the
    // head died or went silent, or sent a malformed message.
    bool recv(double timeout_s, draft_sync& out);
    void send(const draft_tokens& d);
    // Handshake: the drafter is built and serving (MPI draft ranks; the head waits for it).
    void ready();
    // Reports a failure to the head (it raises the error, naming this rank).
    void error(const std::string& kind, const std::string& text);

    int rank() const { return tp_->rank(); }
    const char* kind() const { return tp_->kind(); }

private:
    std::shared_ptr<transport> tp_;
};

} // namespace pipeinfer
