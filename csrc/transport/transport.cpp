// The parts of the transport interface shared by every implementation: tag names and the waiting
// receive (recv / recv_for) built on try_recv with a poll + back-off loop.
//
// Why poll instead of block: a rank blocked inside MPI spins at 100% of a core, and with more ranks
// than cores (tests run 4 ranks on 2 cores) a spinning waiter steals the CPU from the rank that is
// computing. So a waiter polls try_recv a few times (cheap, catches a message that is about to
// arrive), then sleeps with exponentially growing intervals up to 1 ms; the worst added latency of a
// message that arrives while the waiter sleeps is therefore about 1 ms.
#include "transport/transport.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "common/error.h"

namespace pipeinfer {

const char* msg_tag_name(msg_tag t) {
    switch (t) {
    case msg_tag::EVENT: return "EVENT";
    case msg_tag::RESULT: return "RESULT";
    case msg_tag::CANCEL: return "CANCEL";
    case msg_tag::CONTROL: return "CONTROL";
    case msg_tag::HEARTBEAT: return "HEARTBEAT";
    case msg_tag::DRAFT: return "DRAFT";
    case msg_tag::PROPOSAL: return "PROPOSAL";
    }
    return "UNKNOWN";
}

bool is_user_tag(msg_tag t) {
    switch (t) {
    case msg_tag::EVENT:
    case msg_tag::RESULT:
    case msg_tag::CANCEL:
    case msg_tag::CONTROL:
    case msg_tag::DRAFT:
    case msg_tag::PROPOSAL: return true;
    case msg_tag::HEARTBEAT: return false;
    }
    return false;
}

namespace {

using wait_clock = std::chrono::steady_clock;

// Poll schedule of a waiter: n_spin polls back to back (yielding the CPU between them), then sleeps
// of first_sleep doubling up to max_sleep. The values trade message latency against CPU stolen from
// computing ranks on an oversubscribed machine (see the file comment).
class backoff {
public:
    void wait() {
        if (n_polls_ < n_spin) {
            ++n_polls_;
            std::this_thread::yield();
            return;
        }
        std::this_thread::sleep_for(sleep_);
        sleep_ = std::min(sleep_ * 2, max_sleep);
    }

private:
    static constexpr int n_spin = 8;
    static constexpr std::chrono::microseconds first_sleep{5};
    static constexpr std::chrono::microseconds max_sleep{1000};
    int n_polls_ = 0;
    std::chrono::microseconds sleep_ = first_sleep;
};

} // namespace

bool transport::recv_for(int src, msg_tag tag, double timeout_s, message& out) {
    const auto start = wait_clock::now();
    const auto deadline = start + std::chrono::duration_cast<wait_clock::duration>(
                                      std::chrono::duration<double>(std::max(timeout_s, 0.0)));
    backoff bo;
    for (;;) {
        if (try_recv(src, tag, out)) return true;
        // Throws transport_error naming a dead or silent peer: the awaited one first, then any.
        check_alive(src);
        if (src >= 0) check_alive(-1);
        if (timeout_s >= 0.0 && wait_clock::now() >= deadline) return false;
        bo.wait();
    }
}

message transport::recv(int src, msg_tag tag, double timeout_s) {
    message m;
    if (!recv_for(src, tag, timeout_s, m)) {
        throw transport_error(format("rank %d (%s transport): no %s message from %s within %.3f s", rank(), kind(),
                                     msg_tag_name(tag), src < 0 ? "any rank" : format("rank %d", src).c_str(),
                                     timeout_s),
                              src);
    }
    return m;
}

} // namespace pipeinfer
