#include "runtime/pipeline.h"

#include <chrono>
#include <limits>
#include <thread>
#include <numeric>
#include <stdexcept>

#include "common/error.h"
#include "gguf/gguf-reader.h"
#include "runtime/stage-worker.h"
#include "runtime/startup-failure.h"

namespace pipeinfer {

namespace {

using clock_type = std::chrono::steady_clock;

std::vector<int64_t> resolve_split(const gguf_file& f, const llama_hparams& hp, const pipeline_config& cfg,
                                   int n_stages) {
    std::vector<int64_t> split = cfg.stage_layers;
    if (split.empty()) {
        // Every token's cost on a stage follows the weight bytes it reads; the last stage also reads
        // the output head (output.weight, or the tied token embedding), often the largest matrix.
        std::vector<size_t> cost = layer_bytes(f, hp);
        const gguf_tensor_info* head = f.find_tensor("output.weight");
        if (head == nullptr) head = f.find_tensor("token_embd.weight");
        if (head != nullptr && !cost.empty()) cost.back() += head->nbytes;
        split = split_layers_by_bytes(cost, n_stages);
    }
    if (static_cast<int>(split.size()) != n_stages) {
        throw std::invalid_argument(format("layer split has %zu stages but the pipeline has %d", split.size(), n_stages));
    }
    int64_t total = 0;
    for (int64_t n : split) {
        if (n <= 0) throw std::invalid_argument(format("every stage needs at least one layer, got %lld", (long long)n));
        total += n;
    }
    if (total != hp.n_layer) {
        throw std::invalid_argument(format("stage layer counts sum to %lld, the model has %lld layers",
                                           (long long)total, (long long)hp.n_layer));
    }
    return split;
}

} // namespace

pipeline::pipeline(const pipeline_config& cfg)
    : n_seq_max_(cfg.n_seq_max), n_slots_(cfg.n_slots), act_f16_(cfg.act_f16), trace_(cfg.trace),
      n_draft_(cfg.n_draft_ranks) {
    if (cfg.n_draft_ranks < 0 || cfg.n_draft_ranks > 1) {
        throw std::invalid_argument(format("draft_ranks must be 0 or 1, got %d", cfg.n_draft_ranks));
    }
    if (cfg.n_spec_buffers < 0) {
        throw std::invalid_argument(format("n_spec_buffers must be >= 0, got %d", cfg.n_spec_buffers));
    }
    if (cfg.n_seq_max < 1) throw std::invalid_argument(format("n_seq_max must be >= 1, got %d", cfg.n_seq_max));
    if (cfg.n_slots < 1 || cfg.n_slots > 1024) {
        throw std::invalid_argument(format("n_slots must be in [1, 1024], got %d", cfg.n_slots));
    }
    if (cfg.n_spec_buffers > 0) {
        ring_ = std::make_unique<kv_ring>(cfg.n_spec_buffers, cfg.n_spec_branches);
        n_seq_max_ = std::max(n_seq_max_, ring_->n_seq_max());
    }
    n_seq_max_ *= n_slots_;  // one group of ids per slot
    if (cfg.n_threads < 1) throw std::invalid_argument(format("n_threads must be >= 1, got %d", cfg.n_threads));
    if (cfg.n_ctx < 0) throw std::invalid_argument(format("n_ctx must be >= 0, got %lld", (long long)cfg.n_ctx));
    if (!(cfg.dead_after_s > 0.0)) throw std::invalid_argument("dead_after_s must be > 0");
    file_ = std::shared_ptr<const gguf_file>(gguf_file::from_path(cfg.model_path));
    const llama_hparams hp = hparams_from_gguf(*file_);
    n_ctx_ = cfg.n_ctx > 0 ? cfg.n_ctx : std::min<int64_t>(hp.n_ctx_train, 4096);

    transport_options topts;
    topts.heartbeat_s = cfg.heartbeat_s;
    topts.dead_after_s = cfg.dead_after_s;
    int n_stages = cfg.n_stages;
    if (cfg.transport == "mpi") {
        tp_ = make_mpi_transport(topts);
        if (tp_->rank() != 0) {
            throw std::invalid_argument("the pipeline head must be MPI rank 0; other ranks serve (serve_mpi_worker)");
        }
        n_stages = tp_->size() - n_draft_;
        if (n_stages < 1) {
            throw std::invalid_argument(format("%d MPI ranks cannot hold %d draft rank(s) and a target stage",
                                               tp_->size(), n_draft_));
        }
    } else if (cfg.transport == "local") {
        if (!cfg.stage_layers.empty() && n_stages == 1) n_stages = static_cast<int>(cfg.stage_layers.size());
    } else {
        throw std::invalid_argument(format("unknown transport '%s' (expected local or mpi)", cfg.transport.c_str()));
    }
    if (n_stages < 1) throw std::invalid_argument(format("stages must be >= 1, got %d", n_stages));
    split_ = resolve_split(*file_, hp, cfg, n_stages);
    head_ = std::make_unique<llama_stage>(file_, 0, split_[0], n_ctx_, n_seq_max_, cfg.n_threads, seq_group(),
                                          repack_options{cfg.repack, cfg.repack_cache_dir}, cfg.kv);
    if ((n_stages > 1 || n_draft_ > 0) && cfg.transport == "local") {
        local_options lopts;
        lopts.heartbeat_s = cfg.heartbeat_s;
        lopts.dead_after_s = cfg.dead_after_s;
        lopts.max_delay_us = cfg.max_delay_us;
        lopts.seed = cfg.delay_seed;
        local_eps_ = make_local_group(n_stages + n_draft_, lopts);
        tp_ = local_eps_[0];
        for (int r = 1; r < n_stages; ++r) {
            std::shared_ptr<transport> ep = local_eps_[static_cast<size_t>(r)];
            std::shared_ptr<const gguf_file> file = file_;
            const std::string cache_dir = cfg.repack_cache_dir;
            threads_.emplace_back([ep, file, cache_dir, this]() {
                try {
                    run_worker(*ep, file, &stop_, cache_dir);
                } catch (...) {
                    // reported to the head through CONTROL ERROR by run_worker
                }
            });
        }
    }
    try {
        if (n_stages > 1 || (n_draft_ > 0 && cfg.transport == "mpi")) handshake(cfg);
        // The weights were read from a mapping: a file written or truncated meanwhile is refused now
        // rather than met later as wrong logits or a SIGBUS (common/mmap.h).
        file_->check_unchanged();
    } catch (...) {
        close();
        throw;
    }
}

pipeline::~pipeline() {
    try {
        close();
    } catch (...) {
        // destructors must not throw; close() already stopped what it could
    }
}

void pipeline::handshake(const pipeline_config& cfg) {
    control c;
    c.type = control_type::HELLO;
    c.rank = 0;
    c.h.fingerprint = model_fingerprint(*file_);
    c.h.n_ctx = n_ctx_;
    c.h.n_seq_max = n_seq_max_;
    c.h.n_threads = cfg.n_threads;
    c.h.act_f16 = act_f16_;
    c.h.seq_group = seq_group();
    c.h.repack = cfg.repack;
    c.h.trace = cfg.trace;
    c.h.kv_type = static_cast<uint8_t>(cfg.kv);
    c.h.stage_layers = split_;
    c.h.n_draft_ranks = n_draft_;
    const std::vector<uint8_t> msg = encode_control(c);
    for (int r = 1; r < n_stages(); ++r) tp_->send(r, msg_tag::CONTROL, msg);
    // MPI draft ranks say READY once their drafter is built (local ones are threads the caller starts
    // after this constructor; their errors reach the head as CONTROL ERROR like any rank's)
    const int want = n_stages() - 1 + (cfg.transport == "mpi" ? n_draft_ : 0);
    int ready = 0;
    while (ready < want) {
        message m;
        if (!tp_->recv_for(-1, msg_tag::CONTROL, 0.01, m)) {
            check_workers_alive();
            continue;
        }
        control r = decode_control(m.data, m.src);
        if (r.type == control_type::ERROR) rethrow_remote_error(r, m.src, *tp_);
        if (r.type != control_type::READY) {
            throw transport_error(format("rank %d sent control type %d during the handshake", m.src, (int)r.type), m.src);
        }
        ++ready;
    }
}

void pipeline::check_workers_alive() const {
    for (int r = 1; r < n_ranks(); ++r) {
        const double s = tp_->silent_for(r);
        if (s > tp_->options().dead_after_s) {
            throw transport_error(format("pipeline stage %d (rank %d) has been silent for %.1f s (limit %.1f s): "
                                         "the worker died, hung or lost its link", r, r, s, tp_->options().dead_after_s),
                                  r);
        }
    }
}

void pipeline::check_control() {
    message m;
    while (tp_->try_recv(-1, msg_tag::CONTROL, m)) {
        control c = decode_control(m.data, m.src);
        if (c.type == control_type::ERROR) rethrow_remote_error(c, m.src, *tp_);
        throw transport_error(format("unexpected control message type %d from rank %d", (int)c.type, m.src), m.src);
    }
}

int64_t pipeline::submit(const batch& b) {
    if (closed_) throw std::runtime_error("the pipeline is closed");
    const auto t0 = clock_type::now();
    const int64_t id = next_id_++;
    const uint64_t layers_before = head_->stats().layers_run;
    head_->forward(b, nullptr, head_out_);
    const auto t1 = clock_type::now();
    head_busy_s_ += std::chrono::duration<double>(t1 - t0).count();
    if (trace_) {
        trace_span sp;
        sp.run_id = id;
        sp.t0 = std::chrono::duration<double>(t0.time_since_epoch()).count();
        sp.t1 = std::chrono::duration<double>(t1.time_since_epoch()).count();
        sp.n_tokens = static_cast<int32_t>(b.n_tokens());
        sp.layers_run = static_cast<int32_t>(head_->stats().layers_run - layers_before);
        head_spans_.push_back(sp);
    }
    outstanding_.push_back(id);
    if (n_stages() == 1) {
        run_result r;
        r.run_id = id;
        r.n_rows = static_cast<int64_t>(b.n_outputs());
        r.argmax = b.argmax_only;
        r.logits = std::move(head_out_);
        head_out_ = {};
        arrived_.push_back(std::move(r));
        return id;
    }
    run_event ev;
    ev.run_id = id;
    ev.act_f16 = act_f16_;
    ev.b.pos = b.pos;
    ev.b.seqs = b.seqs;
    ev.b.want_logits = b.want_logits;
    ev.b.exact_rows = b.exact_rows;
    ev.b.argmax_only = b.argmax_only;
    ev.act = std::move(head_out_);
    tp_->send(1, msg_tag::EVENT, encode_run(ev, hparams().n_embd));
    head_out_ = std::move(ev.act);
    return id;
}

bool pipeline::try_receive_result() {
    message m;
    if (!tp_->try_recv(n_stages() - 1, msg_tag::RESULT, m)) return false;
    run_result r = decode_result(m.data, n_vocab(), m.src);
    const size_t k = arrived_.size();
    if (k >= outstanding_.size() || r.run_id != outstanding_[k]) {
        throw transport_error(format("result for run %lld arrived out of order (expected run %lld)",
                                     (long long)r.run_id,
                                     (long long)(k < outstanding_.size() ? outstanding_[k] : -1)),
                              m.src);
    }
    arrived_.push_back(std::move(r));
    return true;
}

bool pipeline::poll() {
    if (outstanding_.empty()) return false;
    if (!arrived_.empty()) return true;
    if (tp_) check_control();
    return n_stages() > 1 && try_receive_result();
}

bool pipeline::wait_ready(double timeout_s) {
    if (outstanding_.empty()) throw std::logic_error("wait_ready() with no run in flight");
    const auto t0 = clock_type::now();
    while (arrived_.empty()) {
        check_control();
        if (try_receive_result()) break;
        const double left = timeout_s - std::chrono::duration<double>(clock_type::now() - t0).count();
        if (left <= 0.0) return false;
        message m;
        if (tp_->recv_for(n_stages() - 1, msg_tag::RESULT, std::min(left, 0.005), m)) {
            run_result r = decode_result(m.data, n_vocab(), m.src);
            if (r.run_id != outstanding_.front()) {
                throw transport_error(format("result for run %lld arrived out of order (expected run %lld)",
                                             (long long)r.run_id, (long long)outstanding_.front()), m.src);
            }
            arrived_.push_back(std::move(r));
            break;
        }
        check_workers_alive();
    }
    return true;
}

const run_result& pipeline::wait() {
    if (outstanding_.empty()) throw std::logic_error("wait() with no run in flight");
    while (!wait_ready(3600.0)) {
    }
    current_ = std::move(arrived_.front());
    arrived_.pop_front();
    outstanding_.pop_front();
    return current_;
}

void pipeline::cancel(const std::vector<int64_t>& run_ids) {
    if (run_ids.empty() || n_stages() == 1) return;
    const std::vector<uint8_t> msg = encode_cancel(run_ids);
    for (int r = 1; r < n_stages(); ++r) tp_->send(r, msg_tag::CANCEL, msg);
}

void pipeline::sync_drafter(const draft_sync& d, int which) {
    if (which < 0 || which >= n_draft_) {
        throw std::invalid_argument(format("draft rank %d does not exist (the pipeline has %d)", which, n_draft_));
    }
    if (closed_) throw std::runtime_error("the pipeline is closed");
    tp_->send(n_stages() + which, msg_tag::DRAFT, encode_draft_sync(d));
}

bool pipeline::try_receive_proposal() {
    message m;
    bool any = false;
    while (tp_->try_recv(-1, msg_tag::PROPOSAL, m)) {
        if (m.src < n_stages()) {
            throw transport_error(format("rank %d (a pipeline stage) sent a draft proposal", m.src), m.src);
        }
        proposals_.push_back(decode_draft_tokens(m.data, m.src));
        any = true;
    }
    return any;
}

std::vector<draft_tokens> pipeline::draft_poll() {
    if (n_draft_ == 0) return {};
    check_control();
    try_receive_proposal();
    std::vector<draft_tokens> out(std::make_move_iterator(proposals_.begin()), std::make_move_iterator(proposals_.end()));
    proposals_.clear();
    return out;
}

int pipeline::wait_result_or_draft(double timeout_s) {
    const auto t0 = clock_type::now();
    // poll with the transport's back-off (a few µs up to 1 ms) on both channels
    std::chrono::microseconds sleep{5};
    for (int polls = 0;; ++polls) {
        if (!outstanding_.empty() && poll()) return 1;
        if (n_draft_ > 0 && (!proposals_.empty() || try_receive_proposal())) return 2;
        if (std::chrono::duration<double>(clock_type::now() - t0).count() >= timeout_s) return 0;
        if (tp_) check_workers_alive();
        if (polls < 8) {
            std::this_thread::yield();
        } else {
            std::this_thread::sleep_for(sleep);
            sleep = std::min(sleep * 2, std::chrono::microseconds(1000));
        }
    }
}

std::shared_ptr<transport> pipeline::draft_endpoint(int which) const {
    if (which < 0 || which >= n_draft_ || local_eps_.empty()) {
        throw std::invalid_argument(format("no local draft rank %d (draft ranks: %d, transport: %s)", which, n_draft_,
                                           transport_kind()));
    }
    return local_eps_[static_cast<size_t>(n_stages() + which)];
}

void pipeline::send_kv(const kv_op& op) {
    apply_kv_op(head_->kv(), op);
    if (n_stages() > 1) tp_->send(1, msg_tag::EVENT, encode_kv_op(op));
}

void pipeline::kv_seq_rm(int32_t seq, int32_t p0, int32_t p1) { send_kv({kv_op_type::SEQ_RM, seq, 0, p0, p1}); }
void pipeline::kv_seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    send_kv({kv_op_type::SEQ_CP, src, dst, p0, p1});
}
void pipeline::kv_seq_keep(int32_t seq) { send_kv({kv_op_type::SEQ_KEEP, seq, 0, 0, -1}); }
void pipeline::kv_clear() { send_kv({kv_op_type::CLEAR, 0, 0, 0, -1}); }
int32_t pipeline::kv_seq_pos_max(int32_t seq) const { return head_->kv().seq_pos_max(seq); }
int64_t pipeline::kv_n_used() const { return head_->kv().n_used(); }
int64_t pipeline::kv_n_free() const { return head_->kv().n_free(); }

int pipeline::spec_acquire() {
    if (!ring_) throw std::invalid_argument("the pipeline was built without speculative buffers (n_spec_buffers = 0)");
    return ring_->acquire();
}

void pipeline::spec_release(int buffer) {
    if (!ring_) throw std::invalid_argument("the pipeline was built without speculative buffers (n_spec_buffers = 0)");
    if (!ring_->in_use(buffer)) throw std::invalid_argument(format("speculative buffer %d is not in use", buffer));
    for (int j = 0; j < ring_->n_branches(); ++j) send_kv({kv_op_type::SEQ_RM, ring_->seq(buffer, j), 0, 0, -1});
    ring_->release(buffer);
}

int pipeline::spec_seq(int buffer, int branch) const {
    if (!ring_) throw std::invalid_argument("the pipeline was built without speculative buffers (n_spec_buffers = 0)");
    return ring_->seq(buffer, branch);
}

void pipeline::spec_commit(int32_t seq, int32_t p0, int32_t p1) {
    if (seq < 0 || seq >= n_seq_max_ || seq % seqs_per_slot() == 0) {
        throw std::invalid_argument(format("cannot commit sequence %d (a canonical sequence or out of range)", seq));
    }
    if (p1 > p0) send_kv({kv_op_type::SEQ_CP, seq, seq - seq % seqs_per_slot(), p0, p1});
}

std::vector<stage_report> pipeline::stats() {
    stage_report h;
    h.rank = 0;
    h.layer_begin = head_->layer_begin();
    h.layer_end = head_->layer_end();
    h.runs = head_->stats().runs;
    h.tokens = head_->stats().tokens;
    h.layers_run = head_->stats().layers_run;
    h.layers_skipped = head_->stats().layers_skipped;
    h.bytes_sent = bytes_sent();
    h.messages_sent = tp_ ? tp_->messages_sent() : 0;
    h.busy_s = head_busy_s_;
    h.kv_cells_used = head_->kv().n_used();
    h.weight_bytes = head_->weight_bytes();
    h.spans = std::move(head_spans_);
    head_spans_.clear();
    std::vector<stage_report> out{h};
    if (n_stages() == 1 || closed_) return out;
    tp_->send(1, msg_tag::EVENT, encode_stats({}));
    for (;;) {
        message m;
        if (!tp_->recv_for(-1, msg_tag::CONTROL, 0.01, m)) {
            check_workers_alive();
            continue;
        }
        control c = decode_control(m.data, m.src);
        if (c.type == control_type::ERROR) rethrow_remote_error(c, m.src, *tp_);
        if (c.type != control_type::STATS) {
            throw transport_error(format("unexpected control message type %d from rank %d", (int)c.type, m.src), m.src);
        }
        for (auto& r : c.reports) out.push_back(r);
        return out;
    }
}

void pipeline::close() {
    if (closed_) return;
    closed_ = true;
    for (int i = 0; i < n_draft_ && tp_; ++i) {
        try {
            draft_sync stop;
            stop.stop = true;
            tp_->send(n_stages() + i, msg_tag::DRAFT, encode_draft_sync(stop));
        } catch (...) {
            // a dead draft rank: nothing to stop
        }
    }
    if (tp_ && n_stages() > 1) {
        try {
            tp_->send(1, msg_tag::EVENT, encode_shutdown());
        } catch (...) {
            // a dead first worker: the others notice through stop_ (local) or the head's silence (MPI)
        }
    }
    if (!threads_.empty()) {
        // The stages exit after forwarding SHUTDOWN; stop_ also releases any stage it cannot reach
        // (one behind a failed stage), which is only polled while the stage waits for events.
        stop_ = true;
        for (auto& t : threads_) t.join();
        threads_.clear();
    }
}

std::vector<int64_t> split_layers_by_bytes(const std::vector<size_t>& layer_bytes, int n_stages) {
    const int64_t n_layer = static_cast<int64_t>(layer_bytes.size());
    if (n_stages < 1 || n_stages > n_layer) {
        throw std::invalid_argument(format("cannot split %lld layers into %d stages (need 1..%lld stages)",
                                           (long long)n_layer, n_stages, (long long)n_layer));
    }
    // Contiguous partition minimising the costliest stage (the pipeline's throughput), ties broken by
    // the smallest sum of squared stage costs (the most even split): dynamic programming over
    // (stages used, layers covered), O(n_stages * n_layer^2).
    std::vector<double> prefix(static_cast<size_t>(n_layer) + 1, 0.0);
    for (int64_t i = 0; i < n_layer; ++i) prefix[i + 1] = prefix[i] + static_cast<double>(layer_bytes[i]);
    struct cell {
        double max = 0.0, sq = 0.0;
        int64_t cut = -1;  // layers covered by the stages before the last one
    };
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<std::vector<cell>> best(static_cast<size_t>(n_stages) + 1,
                                        std::vector<cell>(static_cast<size_t>(n_layer) + 1, cell{inf, inf, -1}));
    best[0][0] = cell{0.0, 0.0, -1};
    for (int s = 1; s <= n_stages; ++s) {
        for (int64_t end = s; end <= n_layer - (n_stages - s); ++end) {
            cell& b = best[s][end];
            for (int64_t cut = s - 1; cut < end; ++cut) {
                const cell& p = best[s - 1][cut];
                if (p.max == inf) continue;
                const double c = prefix[end] - prefix[cut];
                const double mx = std::max(p.max, c), sq = p.sq + c * c;
                if (mx < b.max || (mx == b.max && sq < b.sq)) b = cell{mx, sq, cut};
            }
        }
    }
    std::vector<int64_t> out(static_cast<size_t>(n_stages));
    int64_t end = n_layer;
    for (int s = n_stages; s >= 1; --s) {
        const int64_t cut = best[s][end].cut;
        out[static_cast<size_t>(s - 1)] = end - cut;
        end = cut;
    }
    return out;
}

void serve_mpi_worker(const std::string& model_path, double heartbeat_s, double dead_after_s,
                      const std::string& repack_cache_dir) {
    transport_options topts;
    topts.heartbeat_s = heartbeat_s;
    topts.dead_after_s = dead_after_s;
    std::unique_ptr<transport> tp = make_mpi_transport(topts);
    if (tp->rank() == 0) throw std::invalid_argument("serve_mpi_worker called on rank 0 (the head)");
    // On a transport fault, let the head report it first: under mpiexec's default clean-up a worker
    // that exits early takes the whole job (the head included) down before the head can raise.
    auto defer_to_head = [&tp, dead_after_s]() {
        while (tp->silent_for(0) < dead_after_s) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    };
    std::shared_ptr<const gguf_file> file;
    try {
        file = std::shared_ptr<const gguf_file>(gguf_file::from_path(model_path));
    } catch (const std::exception& e) {
        tp->send(0, msg_tag::CONTROL, encode_control(error_control(tp->rank(), e)));
        wait_for_head_to_leave(*tp, std::max(30.0, 3.0 * dead_after_s));
        throw;
    }
    try {
        run_worker(*tp, file, nullptr, repack_cache_dir);
    } catch (const transport_error& e) {
        if (e.rank != 0) defer_to_head();  // the head itself is gone: nobody to defer to
        throw;
    }
}

} // namespace pipeinfer
