#include "runtime/stage-worker.h"

#include <chrono>
#include <set>

#include "common/error.h"
#include "gguf/gguf-reader.h"
#include "model/llama.h"

namespace pipeinfer {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
    return std::chrono::duration<double>(clock_type::now() - t).count();
}

double clock_seconds(clock_type::time_point t) { return std::chrono::duration<double>(t.time_since_epoch()).count(); }

// Waits for the next message with `tag` from `src`, draining cancellations meanwhile. Returns false
// if *stop was raised.
bool wait_event(transport& tp, int src, msg_tag tag, std::set<int64_t>& cancelled, message& out,
                const std::atomic<bool>* stop) {
    message m;
    for (;;) {
        while (tp.try_recv(0, msg_tag::CANCEL, m)) {
            for (int64_t id : decode_cancel(m.data, m.src)) cancelled.insert(id);
        }
        if (tp.recv_for(src, tag, 0.002, out)) return true;
        if (stop != nullptr && stop->load(std::memory_order_relaxed)) return false;
    }
}

class stage_server {
public:
    stage_server(transport& tp, llama_stage& st, bool act_f16, bool trace, int n_stages)
        : tp_(tp), st_(st), act_f16_(act_f16), trace_(trace), n_stages_(n_stages) {
        report_.rank = tp.rank();
        report_.layer_begin = st.layer_begin();
        report_.layer_end = st.layer_end();
        report_.weight_bytes = st.weight_bytes();
    }

    void serve(const std::atomic<bool>* stop) {
        const int prev = tp_.rank() - 1;
        const int64_t n_embd = st_.hparams().n_embd;
        for (;;) {
            message m;
            const auto t_wait = clock_type::now();
            if (!wait_event(tp_, prev, msg_tag::EVENT, cancelled_, m, stop)) return;
            report_.idle_s += seconds_since(t_wait);
            event ev = decode_event(m.data, n_embd, st_.kv().n_seq_max(), m.src);
            switch (ev.type) {
            case event_type::RUN:
                on_run(ev.run);
                break;
            case event_type::KV_OP:
                apply_kv_op(st_.kv(), ev.op);
                if (!last()) tp_.send(tp_.rank() + 1, msg_tag::EVENT, std::move(m.data));
                break;
            case event_type::STATS:
                on_stats(ev.stats);
                break;
            case event_type::SHUTDOWN:
                if (!last()) tp_.send(tp_.rank() + 1, msg_tag::EVENT, std::move(m.data));
                return;
            }
        }
    }

private:
    bool last() const { return tp_.rank() == n_stages_ - 1; }

    void on_run(run_event& r) {
        const auto t0 = clock_type::now();
        const uint64_t layers_before = st_.stats().layers_run;
        bool skipped = r.skipped || cancelled_.count(r.run_id) != 0;
        std::vector<float> out;
        if (!skipped) {
            const int64_t id = r.run_id;
            auto is_cancelled = [this, id]() {
                message c;
                while (tp_.try_recv(0, msg_tag::CANCEL, c)) {
                    for (int64_t x : decode_cancel(c.data, c.src)) cancelled_.insert(x);
                }
                return cancelled_.count(id) != 0;
            };
            skipped = !st_.forward(r.b, r.act.data(), out, is_cancelled);
        }
        if (skipped) ++report_.runs_skipped;
        // Runs reach this stage in increasing id order: cancellations of earlier ids are stale.
        cancelled_.erase(cancelled_.begin(), cancelled_.upper_bound(r.run_id));
        report_.busy_s += seconds_since(t0);
        if (trace_) {
            trace_span sp;
            sp.run_id = r.run_id;
            sp.t0 = clock_seconds(t0);
            sp.t1 = clock_seconds(clock_type::now());
            sp.n_tokens = static_cast<int32_t>(r.b.n_tokens());
            sp.layers_run = static_cast<int32_t>(st_.stats().layers_run - layers_before);
            sp.skipped = skipped;
            spans_.push_back(sp);
        }
        if (last()) {
            run_result res;
            res.run_id = r.run_id;
            res.skipped = skipped;
            if (!skipped) {
                res.n_rows = static_cast<int64_t>(r.b.n_outputs());
                res.argmax = r.b.argmax_only;
                res.logits = std::move(out);
            }
            tp_.send(0, msg_tag::RESULT, encode_result(res));
        } else {
            run_event fwd;
            fwd.run_id = r.run_id;
            fwd.skipped = skipped;
            fwd.act_f16 = act_f16_;
            fwd.b = std::move(r.b);
            if (!skipped) fwd.act = std::move(out);
            tp_.send(tp_.rank() + 1, msg_tag::EVENT, encode_run(fwd, st_.hparams().n_embd));
        }
    }

    void on_stats(std::vector<stage_report>& reports) {
        const stage_stats& s = st_.stats();
        report_.runs = s.runs;
        report_.tokens = s.tokens;
        report_.layers_run = s.layers_run;
        report_.layers_skipped = s.layers_skipped;
        report_.bytes_sent = tp_.bytes_sent();
        report_.messages_sent = tp_.messages_sent();
        report_.kv_cells_used = st_.kv().n_used();
        report_.spans = std::move(spans_);
        spans_.clear();
        reports.push_back(report_);
        report_.spans.clear();
        if (last()) {
            control c;
            c.type = control_type::STATS;
            c.rank = tp_.rank();
            c.reports = reports;
            tp_.send(0, msg_tag::CONTROL, encode_control(c));
        } else {
            tp_.send(tp_.rank() + 1, msg_tag::EVENT, encode_stats(reports));
        }
    }

    transport& tp_;
    llama_stage& st_;
    bool act_f16_;
    bool trace_;
    int n_stages_;  // target stages (ranks after them run the drafter)
    std::set<int64_t> cancelled_;
    stage_report report_;
    std::vector<trace_span> spans_;  // runs since the last STATS event (tracing only)
};

void send_error(transport& tp, const std::exception& e) {
    try {
        tp.send(0, msg_tag::CONTROL, encode_control(error_control(tp.rank(), e)));
    } catch (...) {
        // best effort: the head will notice this rank's silence instead
    }
}

} // namespace

std::string error_kind_of(const std::exception& e) {
    if (dynamic_cast<const gguf_error*>(&e)) return "gguf";
    if (dynamic_cast<const model_error*>(&e)) return "model";
    if (dynamic_cast<const kv_full_error*>(&e)) return "kv_full";
    if (dynamic_cast<const memory_error*>(&e)) return "memory";
    if (dynamic_cast<const unsupported_type*>(&e)) return "unsupported";
    if (dynamic_cast<const transport_error*>(&e)) return "transport";
    if (dynamic_cast<const std::invalid_argument*>(&e)) return "invalid";
    return "other";
}

control error_control(int sender, const std::exception& e) {
    control c;
    c.type = control_type::ERROR;
    c.rank = sender;
    c.error_kind = error_kind_of(e);
    c.text = e.what();
    const auto* te = dynamic_cast<const transport_error*>(&e);
    c.error_rank = te != nullptr && te->rank >= 0 ? te->rank : sender;
    return c;
}

void rethrow_remote_error(const control& c, int src, transport& tp) {
    const std::string msg = format("rank %d: %s", src, c.text.c_str());
    const std::string& kind = c.error_kind;
    if (kind == "transport") tp.peer_failed(c.error_rank >= 0 ? c.error_rank : src, msg);
    if (kind == "gguf") throw gguf_error(msg);
    if (kind == "model") throw model_error(msg);
    if (kind == "kv_full") throw kv_full_error(msg);
    if (kind == "memory") throw memory_error(msg);
    if (kind == "unsupported") throw unsupported_type(msg);
    if (kind == "invalid") throw std::invalid_argument(msg);
    throw transport_error(msg, c.error_rank >= 0 ? c.error_rank : src);
}

void apply_kv_op(kv_cache& kv, const kv_op& op) {
    switch (op.type) {
    case kv_op_type::SEQ_RM: kv.seq_rm(op.seq, op.p0, op.p1); break;
    case kv_op_type::SEQ_CP: kv.seq_cp(op.seq, op.dst, op.p0, op.p1); break;
    case kv_op_type::SEQ_KEEP: kv.seq_keep(op.seq); break;
    case kv_op_type::CLEAR: kv.clear(); break;
    }
}

void run_worker(transport& tp, std::shared_ptr<const gguf_file> file, const std::atomic<bool>* stop,
                const std::string& repack_cache_dir) {
    try {
        message m;
        std::set<int64_t> ignored;
        if (!wait_event(tp, 0, msg_tag::CONTROL, ignored, m, stop)) return;
        control c = decode_control(m.data, m.src);
        // The head failed before it could configure the pipeline (startup-failure.h).
        if (c.type == control_type::ERROR) rethrow_remote_error(c, m.src, tp);
        if (c.type != control_type::HELLO) {
            throw transport_error(format("rank %d expected HELLO from the head, got control type %d", tp.rank(),
                                         static_cast<int>(c.type)), 0);
        }
        const hello& h = c.h;
        if (h.version != PROTOCOL_VERSION) {
            throw transport_error(format("protocol version mismatch: head speaks %u, rank %d speaks %u", h.version,
                                         tp.rank(), PROTOCOL_VERSION), 0);
        }
        const uint64_t fp = model_fingerprint(*file);
        if (fp != h.fingerprint) {
            throw model_error(format("rank %d loaded a different model file (%s) than the head: fingerprints differ",
                                     tp.rank(), file->source().c_str()));
        }
        if (static_cast<int>(h.stage_layers.size()) + h.n_draft_ranks != tp.size()) {
            throw transport_error(format("HELLO names %zu stages and %d draft ranks for %d ranks", h.stage_layers.size(),
                                         h.n_draft_ranks, tp.size()), 0);
        }
        if (tp.rank() >= static_cast<int>(h.stage_layers.size())) {
            throw transport_error(format("rank %d serves a pipeline stage but the head has %zu stages (ranks from %zu "
                                         "on run the drafter)", tp.rank(), h.stage_layers.size(), h.stage_layers.size()),
                                  0);
        }
        int64_t begin = 0;
        for (int r = 0; r < tp.rank(); ++r) begin += h.stage_layers[static_cast<size_t>(r)];
        const int64_t end = begin + h.stage_layers[static_cast<size_t>(tp.rank())];
        llama_stage st(file, begin, end, h.n_ctx, h.n_seq_max, h.n_threads, h.seq_group,
                       repack_options{h.repack, repack_cache_dir}, static_cast<kv_type>(h.kv_type));
        control ready;
        ready.type = control_type::READY;
        ready.rank = tp.rank();
        tp.send(0, msg_tag::CONTROL, encode_control(ready));
        stage_server(tp, st, h.act_f16, h.trace, static_cast<int>(h.stage_layers.size())).serve(stop);
    } catch (const std::exception& e) {
        send_error(tp, e);
        throw;
    }
}

} // namespace pipeinfer
