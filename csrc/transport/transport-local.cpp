// The local transport: ranks are threads of one process and messages go through in-memory mailboxes
// guarded by one mutex per group. It is the default without mpiexec and the workhorse of the tests, so
// it can delay messages at random (to shake out ordering assumptions) and kill a rank (to test fault
// handling) without any process or network.
//
// Liveness: a live local peer counts as heard "now" (every thread of one process is as alive as the
// process), so silent_for() is 0 for live peers; a rank killed with local_group_kill() is reported by
// check_alive() at once, naming it. No heartbeat messages exist here.
//
// Thread safety: every endpoint may be used by a different thread at the same time (the group mutex
// serialises the mailboxes); one endpoint must not be used by two threads at once (its byte counters
// are plain integers), which matches one thread per rank.
#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "common/error.h"
#include "transport/transport.h"

namespace pipeinfer {

namespace {

using local_clock = std::chrono::steady_clock;

struct queued_message {
    local_clock::time_point deliver_at;  // not visible to the receiver before this instant
    std::vector<uint8_t> data;           // (n_bytes,) u8 payload, moved in from send()
};

// Mailboxes and fault state of one group of n ranks, shared by its endpoints.
struct local_group {
    local_group(int n, const local_options& o) : n_ranks(n), opts(o), rng(o.seed), dead(n, false), died_at(n) {}

    const int n_ranks;
    const local_options opts;
    std::mutex mu;  // guards everything below
    std::mt19937_64 rng;
    // mailbox[(dst, src, tag)]: FIFO of messages from src to dst under tag; deliver_at never decreases
    // along one FIFO, so random delays cannot reorder one (source, tag) stream.
    std::map<std::tuple<int, int, int>, std::deque<queued_message>> mailbox;
    std::vector<bool> dead;                       // (n_ranks,) set by local_group_kill
    std::vector<local_clock::time_point> died_at;  // (n_ranks,) valid where dead
};

class local_transport final : public transport {
public:
    local_transport(std::shared_ptr<local_group> g, int rank) : transport(g->opts), g_(std::move(g)), rank_(rank) {}

    int rank() const override { return rank_; }
    int size() const override { return g_->n_ranks; }
    const char* kind() const override { return "local"; }
    local_group& group() { return *g_; }

    void send(int dst, msg_tag tag, std::vector<uint8_t> data) override {
        check_peer_arg(dst, "send to");
        check_user_tag(tag);
        const size_t n = data.size();
        {
            std::lock_guard<std::mutex> lock(g_->mu);
            if (g_->dead[rank_]) throw dead_error(rank_, "send");
            if (g_->dead[dst]) throw dead_error(dst, "send");
            auto& q = g_->mailbox[{dst, rank_, static_cast<int>(tag)}];
            local_clock::time_point at = local_clock::now();
            if (g_->opts.max_delay_us > 0) {
                std::uniform_int_distribution<int> delay(0, g_->opts.max_delay_us);
                at += std::chrono::microseconds(delay(g_->rng));
            }
            if (!q.empty()) at = std::max(at, q.back().deliver_at);  // keep per-(source, tag) order
            q.push_back({at, std::move(data)});
        }
        count_sent(n);
    }

    bool try_recv(int src, msg_tag tag, message& out) override {
        if (src >= 0) check_peer_arg(src, "receive from");
        check_user_tag(tag);
        std::lock_guard<std::mutex> lock(g_->mu);
        if (g_->dead[rank_]) throw dead_error(rank_, "receive");
        const auto now = local_clock::now();
        std::deque<queued_message>* best = nullptr;
        int best_src = -1;
        const int lo = src >= 0 ? src : 0, hi = src >= 0 ? src : g_->n_ranks - 1;
        for (int s = lo; s <= hi; ++s) {
            auto it = g_->mailbox.find({rank_, s, static_cast<int>(tag)});
            if (it == g_->mailbox.end() || it->second.empty()) continue;
            const queued_message& front = it->second.front();
            if (front.deliver_at > now) continue;
            if (!best || front.deliver_at < best->front().deliver_at) {
                best = &it->second;
                best_src = s;
            }
        }
        if (!best) return false;
        out.src = best_src;
        out.tag = tag;
        out.data = std::move(best->front().data);
        best->pop_front();
        return true;
    }

    double silent_for(int peer) const override {
        check_peer_arg(peer, "silent_for of");
        std::lock_guard<std::mutex> lock(g_->mu);
        if (!g_->dead[peer]) return 0.0;
        return std::chrono::duration<double>(local_clock::now() - g_->died_at[peer]).count();
    }

    void kill(int r) {
        check_peer_arg(r, "kill");
        std::lock_guard<std::mutex> lock(g_->mu);
        if (g_->dead[r]) return;
        g_->dead[r] = true;
        g_->died_at[r] = local_clock::now();
        // Drop the dead rank's incoming mail: nobody will read it. Mail it sent before dying stays
        // receivable, as with a process whose last messages reached the network before it crashed.
        for (auto it = g_->mailbox.begin(); it != g_->mailbox.end();) {
            if (std::get<0>(it->first) == r) {
                it = g_->mailbox.erase(it);
            } else {
                ++it;
            }
        }
    }

protected:
    void check_alive(int peer) const override {
        std::lock_guard<std::mutex> lock(g_->mu);
        if (g_->dead[rank_]) throw dead_error(rank_, "wait");
        if (peer >= 0) {
            if (g_->dead[peer]) throw dead_error(peer, "wait for a message");
            return;
        }
        for (int p = 0; p < g_->n_ranks; ++p) {
            if (p != rank_ && g_->dead[p]) throw dead_error(p, "wait for a message");
        }
    }

private:
    // Precondition (caller holds g_->mu): g_->dead[r].
    transport_error dead_error(int r, const char* what) const {
        const double ago = std::chrono::duration<double>(local_clock::now() - g_->died_at[r]).count();
        if (r == rank_) {
            return transport_error(
                format("rank %d (local transport) cannot %s: this rank was killed %.3f s ago", rank_, what, ago), r);
        }
        return transport_error(format("rank %d (local transport) cannot %s: rank %d is dead (killed %.3f s ago)",
                                      rank_, what, r, ago),
                               r);
    }

    void check_peer_arg(int r, const char* what) const {
        if (r < 0 || r >= g_->n_ranks) {
            throw std::invalid_argument(
                format("local transport rank %d: cannot %s rank %d: valid ranks are 0..%d", rank_, what, r,
                       g_->n_ranks - 1));
        }
    }

    static void check_user_tag(msg_tag tag) {
        if (!is_user_tag(tag)) {
            throw std::invalid_argument(
                format("message tag %d is not a user tag (HEARTBEAT is internal)", static_cast<int>(tag)));
        }
    }

    std::shared_ptr<local_group> g_;
    int rank_;
};

} // namespace

std::vector<std::shared_ptr<transport>> make_local_group(int n, const local_options& opts) {
    if (n < 1) throw std::invalid_argument(format("local transport group needs at least 1 rank, got %d", n));
    if (opts.max_delay_us < 0) {
        throw std::invalid_argument(format("local transport max_delay_us must be >= 0, got %d", opts.max_delay_us));
    }
    auto g = std::make_shared<local_group>(n, opts);
    std::vector<std::shared_ptr<transport>> eps;
    eps.reserve(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) eps.push_back(std::make_shared<local_transport>(g, r));
    return eps;
}

void local_group_kill(transport& any_endpoint, int r) {
    auto* lt = dynamic_cast<local_transport*>(&any_endpoint);
    if (!lt) {
        throw std::invalid_argument(
            format("local_group_kill needs an endpoint of a local transport group, got a '%s' transport",
                   any_endpoint.kind()));
    }
    lt->kill(r);
}

} // namespace pipeinfer
