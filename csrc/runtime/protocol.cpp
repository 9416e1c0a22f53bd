#include "runtime/protocol.h"

#include <cmath>

#include "common/fp16.h"
#include "gguf/gguf-reader.h"
#include "runtime/wire.h"

namespace pipeinfer {

namespace {

constexpr uint64_t MAX_TOKENS = 1u << 20;   // tokens per run
constexpr uint64_t MAX_SEQ_REFS = 1u << 24; // sequence ids per run (all tokens)
constexpr uint64_t MAX_FLOATS = uint64_t{1} << 31;
constexpr uint64_t MAX_SPANS = uint64_t{1} << 20;  // trace spans per stage report

void put_batch(wire_writer& w, const batch& b) {
    w.put_array(b.pos.data(), b.pos.size());
    w.put_array(b.seqs.offsets.data(), b.seqs.offsets.size());
    w.put_array(b.seqs.ids.data(), b.seqs.ids.size());
    w.put_array(b.want_logits.data(), b.want_logits.size());
    w.put<uint8_t>(b.exact_rows ? 1 : 0);
    w.put<uint8_t>(b.argmax_only ? 1 : 0);
}

batch get_batch(wire_reader& r, int n_seq_max) {
    batch b;
    b.pos = r.get_array<int32_t>("pos", MAX_TOKENS);
    b.seqs.offsets = r.get_array<int32_t>("seq_offsets", MAX_TOKENS + 1);
    b.seqs.ids = r.get_array<int32_t>("seq_ids", MAX_SEQ_REFS);
    b.want_logits = r.get_array<uint8_t>("want_logits", MAX_TOKENS);
    b.exact_rows = r.get<uint8_t>("exact_rows") != 0;
    b.argmax_only = r.get<uint8_t>("argmax_only") != 0;
    const size_t n = b.pos.size();
    if (n == 0) r.fail("pos", "empty batch");
    if (b.want_logits.size() != n) r.fail("want_logits", "length differs from pos");
    if (b.seqs.offsets.size() != n + 1 || b.seqs.offsets[0] != 0 ||
        static_cast<size_t>(b.seqs.offsets[n]) != b.seqs.ids.size()) {
        r.fail("seq_offsets", "inconsistent with seq_ids");
    }
    for (size_t i = 0; i < n; ++i) {
        if (b.pos[i] < 0) r.fail("pos", format("negative position %d", b.pos[i]));
        if (b.seqs.offsets[i + 1] <= b.seqs.offsets[i]) r.fail("seq_offsets", "token without a sequence");
    }
    for (int32_t s : b.seqs.ids) {
        if (s < 0 || s >= n_seq_max) r.fail("seq_ids", format("sequence id %d out of [0, %d)", s, n_seq_max));
    }
    return b;
}

void put_report(wire_writer& w, const stage_report& s) {
    w.put(s.rank);
    w.put(s.layer_begin);
    w.put(s.layer_end);
    w.put(s.runs);
    w.put(s.runs_skipped);
    w.put(s.tokens);
    w.put(s.layers_run);
    w.put(s.layers_skipped);
    w.put(s.bytes_sent);
    w.put(s.messages_sent);
    w.put(s.busy_s);
    w.put(s.idle_s);
    w.put(s.kv_cells_used);
    w.put(s.weight_bytes);
    w.put<uint64_t>(s.spans.size());
    for (const trace_span& t : s.spans) {
        w.put(t.run_id);
        w.put(t.t0);
        w.put(t.t1);
        w.put(t.n_tokens);
        w.put(t.layers_run);
        w.put<uint8_t>(t.skipped ? 1 : 0);
    }
}

stage_report get_report(wire_reader& r) {
    stage_report s;
    s.rank = r.get<int32_t>("rank");
    s.layer_begin = r.get<int64_t>("layer_begin");
    s.layer_end = r.get<int64_t>("layer_end");
    s.runs = r.get<uint64_t>("runs");
    s.runs_skipped = r.get<uint64_t>("runs_skipped");
    s.tokens = r.get<uint64_t>("tokens");
    s.layers_run = r.get<uint64_t>("layers_run");
    s.layers_skipped = r.get<uint64_t>("layers_skipped");
    s.bytes_sent = r.get<uint64_t>("bytes_sent");
    s.messages_sent = r.get<uint64_t>("messages_sent");
    s.busy_s = r.get<double>("busy_s");
    s.idle_s = r.get<double>("idle_s");
    s.kv_cells_used = r.get<int64_t>("kv_cells_used");
    s.weight_bytes = r.get<uint64_t>("weight_bytes");
    const uint64_t n = r.get<uint64_t>("n_spans");
    if (n > MAX_SPANS) r.fail("n_spans", format("%llu spans, at most %llu", (unsigned long long)n,
                                                 (unsigned long long)MAX_SPANS));
    s.spans.resize(static_cast<size_t>(n));
    for (trace_span& t : s.spans) {
        t.run_id = r.get<int64_t>("span.run_id");
        t.t0 = r.get<double>("span.t0");
        t.t1 = r.get<double>("span.t1");
        t.n_tokens = r.get<int32_t>("span.n_tokens");
        t.layers_run = r.get<int32_t>("span.layers_run");
        t.skipped = r.get<uint8_t>("span.skipped") != 0;
    }
    return s;
}

} // namespace

std::vector<uint8_t> encode_run(const run_event& e, int64_t n_embd) {
    wire_writer w;
    w.put(static_cast<uint8_t>(event_type::RUN));
    w.put(e.run_id);
    w.put<uint8_t>(e.skipped ? 1 : 0);
    w.put<uint8_t>(e.act_f16 ? 1 : 0);
    put_batch(w, e.b);
    if (!e.skipped) {
        if (e.act_f16) {
            std::vector<uint16_t> h(e.act.size());
            for (size_t i = 0; i < h.size(); ++i) h[i] = fp32_to_fp16(e.act[i]);
            w.put_array(h.data(), h.size());
        } else {
            w.put_array(e.act.data(), e.act.size());
        }
    }
    (void)n_embd;
    return w.take();
}

std::vector<uint8_t> encode_kv_op(const kv_op& op) {
    wire_writer w;
    w.put(static_cast<uint8_t>(event_type::KV_OP));
    w.put(static_cast<uint8_t>(op.type));
    w.put(op.seq);
    w.put(op.dst);
    w.put(op.p0);
    w.put(op.p1);
    return w.take();
}

std::vector<uint8_t> encode_stats(const std::vector<stage_report>& reports) {
    wire_writer w;
    w.put(static_cast<uint8_t>(event_type::STATS));
    w.put<uint64_t>(reports.size());
    for (const auto& s : reports) put_report(w, s);
    return w.take();
}

std::vector<uint8_t> encode_shutdown() {
    wire_writer w;
    w.put(static_cast<uint8_t>(event_type::SHUTDOWN));
    return w.take();
}

event decode_event(const std::vector<uint8_t>& data, int64_t n_embd, int n_seq_max, int src) {
    wire_reader r(data, src, "event");
    event ev;
    const uint8_t type = r.get<uint8_t>("type");
    switch (static_cast<event_type>(type)) {
    case event_type::RUN: {
        ev.type = event_type::RUN;
        ev.run.run_id = r.get<int64_t>("run_id");
        ev.run.skipped = r.get<uint8_t>("skipped") != 0;
        ev.run.act_f16 = r.get<uint8_t>("act_f16") != 0;
        ev.run.b = get_batch(r, n_seq_max);
        if (!ev.run.skipped) {
            const uint64_t want = static_cast<uint64_t>(ev.run.b.n_tokens()) * static_cast<uint64_t>(n_embd);
            if (ev.run.act_f16) {
                std::vector<uint16_t> h = r.get_array<uint16_t>("activations", want);
                if (h.size() != want) r.fail("activations", format("%zu values, expected %llu", h.size(), (unsigned long long)want));
                ev.run.act.resize(h.size());
                for (size_t i = 0; i < h.size(); ++i) ev.run.act[i] = fp16_to_fp32(h[i]);
            } else {
                ev.run.act = r.get_array<float>("activations", want);
                if (ev.run.act.size() != want) {
                    r.fail("activations", format("%zu values, expected %llu", ev.run.act.size(), (unsigned long long)want));
                }
            }
        }
        break;
    }
    case event_type::KV_OP: {
        ev.type = event_type::KV_OP;
        const uint8_t t = r.get<uint8_t>("kv_op");
        if (t < 1 || t > 4) r.fail("kv_op", format("unknown KV command %u", t));
        ev.op.type = static_cast<kv_op_type>(t);
        ev.op.seq = r.get<int32_t>("seq");
        ev.op.dst = r.get<int32_t>("dst");
        ev.op.p0 = r.get<int32_t>("p0");
        ev.op.p1 = r.get<int32_t>("p1");
        const bool any_ok = ev.op.type == kv_op_type::SEQ_RM;
        if (ev.op.type != kv_op_type::CLEAR &&
            (ev.op.seq >= n_seq_max || ev.op.seq < (any_ok ? -1 : 0))) {
            r.fail("seq", format("sequence id %d out of range", ev.op.seq));
        }
        if (ev.op.type == kv_op_type::SEQ_CP && (ev.op.dst < 0 || ev.op.dst >= n_seq_max)) {
            r.fail("dst", format("sequence id %d out of range", ev.op.dst));
        }
        break;
    }
    case event_type::STATS: {
        ev.type = event_type::STATS;
        const uint64_t n = r.get<uint64_t>("n_reports");
        if (n > 65536) r.fail("n_reports", "too many");
        for (uint64_t i = 0; i < n; ++i) ev.stats.push_back(get_report(r));
        break;
    }
    case event_type::SHUTDOWN:
        ev.type = event_type::SHUTDOWN;
        break;
    default:
        r.fail("type", format("unknown event type %u", type));
    }
    r.expect_end();
    return ev;
}

std::vector<uint8_t> encode_result(const run_result& res) {
    wire_writer w;
    w.put(res.run_id);
    w.put<uint8_t>(res.skipped ? 1 : 0);
    w.put<uint8_t>(res.argmax ? 1 : 0);
    w.put(res.n_rows);
    w.put_array(res.logits.data(), res.logits.size());
    return w.take();
}

run_result decode_result(const std::vector<uint8_t>& data, int64_t n_vocab, int src) {
    wire_reader r(data, src, "result");
    run_result res;
    res.run_id = r.get<int64_t>("run_id");
    res.skipped = r.get<uint8_t>("skipped") != 0;
    res.argmax = r.get<uint8_t>("argmax") != 0;
    res.n_rows = r.get<int64_t>("n_rows");
    if (res.n_rows < 0 || static_cast<uint64_t>(res.n_rows) > MAX_TOKENS) r.fail("n_rows", "out of range");
    res.logits = r.get_array<float>("logits", MAX_FLOATS);
    const uint64_t width = res.argmax ? 1 : static_cast<uint64_t>(n_vocab);
    if (!res.skipped && res.logits.size() != static_cast<uint64_t>(res.n_rows) * width) {
        r.fail("logits", format("%zu values for %lld rows of %lld", res.logits.size(), (long long)res.n_rows,
                                (long long)n_vocab));
    }
    r.expect_end();
    return res;
}

std::vector<uint8_t> encode_cancel(const std::vector<int64_t>& run_ids) {
    wire_writer w;
    w.put_array(run_ids.data(), run_ids.size());
    return w.take();
}

std::vector<int64_t> decode_cancel(const std::vector<uint8_t>& data, int src) {
    wire_reader r(data, src, "cancel");
    std::vector<int64_t> ids = r.get_array<int64_t>("run_ids", 1u << 20);
    r.expect_end();
    return ids;
}

std::vector<uint8_t> encode_control(const control& c) {
    wire_writer w;
    w.put(static_cast<uint8_t>(c.type));
    w.put(c.rank);
    switch (c.type) {
    case control_type::HELLO:
        w.put(c.h.version);
        w.put(c.h.fingerprint);
        w.put(c.h.n_ctx);
        w.put(c.h.n_seq_max);
        w.put(c.h.n_threads);
        w.put<uint8_t>(c.h.act_f16 ? 1 : 0);
        w.put<int32_t>(c.h.seq_group);
        w.put<uint8_t>(c.h.repack ? 1 : 0);
        w.put<uint8_t>(c.h.trace ? 1 : 0);
        w.put<uint8_t>(c.h.kv_type);
        w.put_array(c.h.stage_layers.data(), c.h.stage_layers.size());
        w.put(c.h.n_draft_ranks);
        break;
    case control_type::READY:
        break;
    case control_type::ERROR:
        w.put_string(c.error_kind);
        w.put_string(c.text);
        w.put(c.error_rank);
        break;
    case control_type::STATS:
        w.put<uint64_t>(c.reports.size());
        for (const auto& s : c.reports) put_report(w, s);
        break;
    }
    return w.take();
}

control decode_control(const std::vector<uint8_t>& data, int src) {
    wire_reader r(data, src, "control");
    control c;
    const uint8_t t = r.get<uint8_t>("type");
    if (t < 1 || t > 4) r.fail("type", format("unknown control type %u", t));
    c.type = static_cast<control_type>(t);
    c.rank = r.get<int32_t>("rank");
    switch (c.type) {
    case control_type::HELLO:
        c.h.version = r.get<uint32_t>("version");
        c.h.fingerprint = r.get<uint64_t>("fingerprint");
        c.h.n_ctx = r.get<int64_t>("n_ctx");
        c.h.n_seq_max = r.get<int32_t>("n_seq_max");
        c.h.n_threads = r.get<int32_t>("n_threads");
        c.h.act_f16 = r.get<uint8_t>("act_f16") != 0;
        c.h.seq_group = r.get<int32_t>("seq_group");
        c.h.repack = r.get<uint8_t>("repack") != 0;
        c.h.trace = r.get<uint8_t>("trace") != 0;
        c.h.kv_type = r.get<uint8_t>("kv_type");
        if (c.h.kv_type > 1) r.fail("kv_type", format("unknown KV storage type %u", c.h.kv_type));
        c.h.stage_layers = r.get_array<int64_t>("stage_layers", 65536);
        c.h.n_draft_ranks = r.get<int32_t>("n_draft_ranks");
        if (c.h.n_draft_ranks < 0 || c.h.n_draft_ranks > 65536) r.fail("n_draft_ranks", "out of range");
        break;
    case control_type::READY:
        break;
    case control_type::ERROR:
        c.error_kind = r.get_string("error_kind", 64);
        c.text = r.get_string("text", 1u << 16);
        c.error_rank = r.get<int32_t>("error_rank");
        break;
    case control_type::STATS: {
        const uint64_t n = r.get<uint64_t>("n_reports");
        if (n > 65536) r.fail("n_reports", "too many");
        for (uint64_t i = 0; i < n; ++i) c.reports.push_back(get_report(r));
        break;
    }
    }
    r.expect_end();
    return c;
}

std::vector<uint8_t> encode_draft_sync(const draft_sync& d) {
    wire_writer w;
    w.put<uint8_t>(d.stop ? 1 : 0);
    w.put(d.epoch);
    w.put(d.n_common);
    w.put_array(d.tokens.data(), d.tokens.size());
    w.put(d.ahead);
    w.put(d.p_min);
    return w.take();
}

draft_sync decode_draft_sync(const std::vector<uint8_t>& data, int src) {
    wire_reader r(data, src, "draft sync");
    draft_sync d;
    d.stop = r.get<uint8_t>("stop") != 0;
    d.epoch = r.get<int64_t>("epoch");
    d.n_common = r.get<int64_t>("n_common");
    d.tokens = r.get_array<int32_t>("tokens", MAX_TOKENS);
    d.ahead = r.get<int32_t>("ahead");
    d.p_min = r.get<float>("p_min");
    r.expect_end();
    if (d.n_common < 0) r.fail("n_common", format("negative (%lld)", (long long)d.n_common));
    if (d.ahead < 0 || static_cast<uint64_t>(d.ahead) > MAX_TOKENS) r.fail("ahead", format("out of range (%d)", d.ahead));
    for (int32_t t : d.tokens) {
        if (t < 0) r.fail("tokens", format("negative token id %d", t));
    }
    return d;
}

std::vector<uint8_t> encode_draft_tokens(const draft_tokens& d) {
    wire_writer w;
    w.put(d.epoch);
    w.put(d.pos);
    w.put_array(d.tokens.data(), d.tokens.size());
    w.put_array(d.p.data(), d.p.size());
    return w.take();
}

draft_tokens decode_draft_tokens(const std::vector<uint8_t>& data, int src) {
    wire_reader r(data, src, "draft tokens");
    draft_tokens d;
    d.epoch = r.get<int64_t>("epoch");
    d.pos = r.get<int64_t>("pos");
    d.tokens = r.get_array<int32_t>("tokens", MAX_TOKENS);
    d.p = r.get_array<float>("p", MAX_TOKENS);
    r.expect_end();
    if (d.pos < 0) r.fail("pos", format("negative (%lld)", (long long)d.pos));
    if (d.p.size() != d.tokens.size()) r.fail("p", format("%zu values for %zu tokens", d.p.size(), d.tokens.size()));
    for (int32_t t : d.tokens) {
        if (t < 0) r.fail("tokens", format("negative token id %d", t));
    }
    return d;
}

uint64_t model_fingerprint(const gguf_file& f) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a 64 offset basis
    auto mix = [&h](const uint8_t* p, size_t n) {
        for (size_t i = 0; i < n; ++i) {
            h ^= p[i];
            h *= 1099511628211ull;  // FNV-1a 64 prime
        }
    };
    const uint64_t size = f.file_size();
    mix(reinterpret_cast<const uint8_t*>(&size), sizeof(size));
    mix(f.bytes(), std::min(f.data_offset(), std::min<size_t>(f.file_size(), size_t{64} << 20)));
    for (const auto& t : f.tensors()) {
        if (t.nbytes == 0) continue;
        const size_t k = std::min<size_t>(64, t.nbytes);
        mix(t.data, k);
        mix(t.data + (t.nbytes - k) / 2, k);
        mix(t.data + t.nbytes - k, k);
    }
    return h;
}

} // namespace pipeinfer
