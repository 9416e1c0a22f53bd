// _core.Pipeline: the native pipeline (runtime/pipeline.h). Converts numpy inputs to a batch before
// releasing the GIL; returns logits as a zero-copy float32 view owned by the Pipeline object.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/bind-log.h"
#include "bindings/register.h"
#include "common/error.h"
#include "runtime/pipeline.h"

namespace py = pybind11;

namespace pipeinfer {

namespace {

using i32_array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// seq_ids: a 1-D int array (one sequence per token) or a sequence of int sequences.
seq_lists to_seq_lists(const py::object& obj, size_t n) {
    seq_lists s;
    s.offsets.reserve(n + 1);
    s.offsets.push_back(0);
    if (py::isinstance<py::array>(obj)) {
        i32_array a = py::cast<i32_array>(obj);
        if (a.ndim() != 1 || static_cast<size_t>(a.shape(0)) != n) {
            throw std::invalid_argument(format("seq_ids must have one entry per token (%zu)", n));
        }
        for (size_t i = 0; i < n; ++i) {
            s.ids.push_back(a.at(i));
            s.offsets.push_back(static_cast<int32_t>(i + 1));
        }
        return s;
    }
    py::sequence seq = py::cast<py::sequence>(obj);
    if (static_cast<size_t>(seq.size()) != n) {
        throw std::invalid_argument(format("seq_ids must have one entry per token (%zu), got %zu", n,
                                           static_cast<size_t>(seq.size())));
    }
    for (size_t i = 0; i < n; ++i) {
        py::object item = seq[i];
        if (py::isinstance<py::int_>(item)) {
            s.ids.push_back(py::cast<int32_t>(item));
        } else {
            for (py::handle h : py::cast<py::sequence>(item)) s.ids.push_back(py::cast<int32_t>(h));
        }
        s.offsets.push_back(static_cast<int32_t>(s.ids.size()));
    }
    return s;
}

py::dict report_dict(const stage_report& r) {
    py::dict d;
    d["rank"] = r.rank;
    d["layer_begin"] = r.layer_begin;
    d["layer_end"] = r.layer_end;
    d["runs"] = r.runs;
    d["runs_skipped"] = r.runs_skipped;
    d["tokens"] = r.tokens;
    d["layers_run"] = r.layers_run;
    d["layers_skipped"] = r.layers_skipped;
    d["bytes_sent"] = r.bytes_sent;
    d["messages_sent"] = r.messages_sent;
    d["busy_s"] = r.busy_s;
    d["idle_s"] = r.idle_s;
    d["kv_cells_used"] = r.kv_cells_used;
    d["weight_bytes"] = r.weight_bytes;
    py::list spans;
    for (const trace_span& t : r.spans) {
        spans.append(py::make_tuple(t.run_id, t.t0, t.t1, t.n_tokens, t.layers_run, t.skipped));
    }
    d["spans"] = spans;  // (run_id, t0, t1, n_tokens, layers_run, skipped), steady-clock seconds
    return d;
}

batch to_batch(const i32_array& tokens, const i32_array& pos, const py::object& seq_ids,
               const py::array_t<uint8_t, py::array::c_style | py::array::forcecast>& logits, bool exact_rows,
               bool argmax_only = false) {
    if (tokens.ndim() != 1 || pos.ndim() != 1 || logits.ndim() != 1) {
        throw std::invalid_argument("tokens, pos and logits must be 1-D arrays");
    }
    batch b;
    b.token.assign(tokens.data(), tokens.data() + tokens.size());
    b.pos.assign(pos.data(), pos.data() + pos.size());
    b.want_logits.assign(logits.data(), logits.data() + logits.size());
    b.seqs = to_seq_lists(seq_ids, b.pos.size());
    b.exact_rows = exact_rows;
    b.argmax_only = argmax_only;
    return b;
}

// A float32 (rows, n_vocab) view of `data` whose base is the Pipeline (valid until the next call).
py::array logits_view(const py::object& owner, const std::vector<float>& data, int64_t n_vocab) {
    const ssize_t nv = static_cast<ssize_t>(n_vocab);
    const ssize_t rows = nv ? static_cast<ssize_t>(data.size()) / nv : 0;
    return py::array_t<float>({rows, nv}, {nv * ssize_t(sizeof(float)), ssize_t(sizeof(float))}, data.data(), owner);
}

// Waits for the oldest result in slices of 100 ms, checking for Python signals (Ctrl-C raises
// KeyboardInterrupt here) between slices. Only the transport and pipeline buffers are touched while
// the GIL is released.
void wait_interruptibly(pipeline& self) {
    for (;;) {
        bool ready;
        {
            py::gil_scoped_release release;
            ready = self.wait_ready(0.1);
        }
        if (ready) return;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
}

kv_type parse_kv_type(const std::string& name) {
    if (name == "f16") return kv_type::F16;
    if (name == "q8_0") return kv_type::Q8_0;
    throw std::invalid_argument(format("kv_type must be 'f16' or 'q8_0', got '%s'", name.c_str()));
}

} // namespace

void register_model(py::module_& m) {
    using u8_array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
    py::class_<pipeline> cls(m, "Pipeline");
    register_pipeline_draft(cls);
    cls.def(py::init([](const py::object& path, int64_t n_ctx, int n_threads, int n_seq_max, int n_stages,
                         std::vector<int64_t> stage_layers, const std::string& transport, bool act_f16,
                         double heartbeat_s, double dead_after_s, int max_delay_us, uint64_t delay_seed,
                         int n_spec_buffers, int n_spec_branches, bool repack, bool trace,
                         const std::string& repack_cache_dir, int n_slots, int draft_ranks,
                         const std::string& kv) {
                 pipeline_config cfg;
                 cfg.model_path = path_bytes(path);
                 cfg.n_ctx = n_ctx;
                 cfg.n_threads = n_threads;
                 cfg.n_seq_max = n_seq_max;
                 cfg.n_stages = n_stages;
                 cfg.stage_layers = std::move(stage_layers);
                 cfg.transport = transport;
                 cfg.act_f16 = act_f16;
                 cfg.heartbeat_s = heartbeat_s;
                 cfg.dead_after_s = dead_after_s;
                 cfg.max_delay_us = max_delay_us;
                 cfg.delay_seed = delay_seed;
                 cfg.n_spec_buffers = n_spec_buffers;
                 cfg.n_spec_branches = n_spec_branches;
                 cfg.repack = repack;
                 cfg.repack_cache_dir = repack_cache_dir;
                 if (transport == "mpi") register_mpi_exit_hook();
                 cfg.trace = trace;
                 cfg.n_slots = n_slots;
                 cfg.n_draft_ranks = draft_ranks;
                 cfg.kv = parse_kv_type(kv);
                 std::unique_ptr<pipeline> p;
                 {
                     // Loading maps the file, binds tensors and starts the stages; no Python object is
                     // touched (log messages of this thread take the GIL themselves, bind-log.cpp).
                     py::gil_scoped_release release;
                     p = std::make_unique<pipeline>(cfg);
                 }
                 flush_pending_log();  // what the local worker stages logged while loading
                 return p;
             }),
             py::arg("path"), py::arg("n_ctx") = 0, py::arg("n_threads") = 1, py::arg("n_seq_max") = 1,
             py::arg("n_stages") = 1, py::arg("stage_layers") = std::vector<int64_t>{},
             py::arg("transport") = "local", py::arg("act_f16") = false, py::arg("heartbeat_s") = 0.5,
             py::arg("dead_after_s") = 10.0, py::arg("max_delay_us") = 0, py::arg("delay_seed") = 0,
             py::arg("n_spec_buffers") = 0, py::arg("n_spec_branches") = 1, py::arg("repack") = false,
             py::arg("trace") = false, py::arg("repack_cache_dir") = "",
             py::arg("n_slots") = 1, py::arg("draft_ranks") = 0, py::arg("kv_type") = "f16")
        .def(
            "decode",
            [](py::object self_obj, const i32_array& tokens, const i32_array& pos, const py::object& seq_ids,
               const u8_array& logits, bool exact_rows) {
                pipeline& self = py::cast<pipeline&>(self_obj);
                batch b = to_batch(tokens, pos, seq_ids, logits, exact_rows);
                {
                    // The batch holds copies of every input; the pipeline touches no Python object.
                    py::gil_scoped_release release;
                    self.submit(b);
                }
                while (self.n_in_flight() > 1) {
                    wait_interruptibly(self);
                    self.wait();
                }
                wait_interruptibly(self);
                const run_result* r = nullptr;
                {
                    py::gil_scoped_release release;
                    r = &self.wait();
                }
                if (r->skipped) throw std::runtime_error("the run was cancelled");
                return logits_view(self_obj, r->logits, self.n_vocab());
            },
            py::arg("tokens"), py::arg("pos"), py::arg("seq_ids"), py::arg("logits"), py::arg("exact_rows") = false,
            "Evaluates a batch synchronously; returns a float32 view (n_outputs, n_vocab) overwritten by the next call.")
        .def(
            "submit",
            [](pipeline& self, const i32_array& tokens, const i32_array& pos, const py::object& seq_ids,
               const u8_array& logits, bool exact_rows, bool argmax_only) {
                batch b = to_batch(tokens, pos, seq_ids, logits, exact_rows, argmax_only);
                // As in decode: only the converted batch is used without the GIL.
                py::gil_scoped_release release;
                return self.submit(b);
            },
            py::arg("tokens"), py::arg("pos"), py::arg("seq_ids"), py::arg("logits"), py::arg("exact_rows") = false,
            py::arg("argmax_only") = false,
            "Launches a run (computes stage 0 here); returns its run id.")
        .def("poll", &pipeline::poll, py::call_guard<py::gil_scoped_release>(),
             "True if the oldest run's result has arrived.")
        .def("wait_ready", &pipeline::wait_ready, py::arg("timeout_s"), py::call_guard<py::gil_scoped_release>(),
             "Waits up to timeout_s for the oldest run's result; True if it has arrived.")
        .def(
            "wait",
            [](py::object self_obj) {
                pipeline& self = py::cast<pipeline&>(self_obj);
                wait_interruptibly(self);
                const run_result* r = nullptr;
                {
                    // Waiting touches only the transport and the pipeline's own buffers.
                    py::gil_scoped_release release;
                    r = &self.wait();
                }
                if (r->argmax) {
                    py::array_t<int32_t> ids(static_cast<ssize_t>(r->logits.size()));
                    for (size_t i = 0; i < r->logits.size(); ++i) ids.mutable_at(i) = static_cast<int32_t>(r->logits[i]);
                    return py::tuple(py::make_tuple(r->run_id, r->skipped, ids));
                }
                return py::tuple(py::make_tuple(r->run_id, r->skipped, logits_view(self_obj, r->logits, self.n_vocab())));
            },
            "The oldest run's result: (run_id, skipped, rows): rows is a float32 logits view (n_rows, n_vocab)\n"
            "valid until the next wait, or int32 token ids (n_rows,) for a run submitted with argmax_only.")
        .def("cancel", &pipeline::cancel, py::arg("run_ids"), py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("n_in_flight", &pipeline::n_in_flight)
        .def("kv_seq_rm", &pipeline::kv_seq_rm, py::arg("seq"), py::arg("p0"), py::arg("p1"))
        .def("kv_seq_cp", &pipeline::kv_seq_cp, py::arg("src"), py::arg("dst"), py::arg("p0"), py::arg("p1"))
        .def("kv_seq_keep", &pipeline::kv_seq_keep, py::arg("seq"))
        .def("kv_clear", &pipeline::kv_clear)
        .def("kv_seq_pos_max", &pipeline::kv_seq_pos_max, py::arg("seq"))
        .def_property_readonly("kv_n_used", &pipeline::kv_n_used)
        .def_property_readonly("kv_n_free", &pipeline::kv_n_free)
        .def("spec_acquire", &pipeline::spec_acquire, "A free speculative buffer, or -1 if all are in flight.")
        .def("spec_release", &pipeline::spec_release, py::arg("buffer"))
        .def("spec_seq", &pipeline::spec_seq, py::arg("buffer"), py::arg("branch") = 0)
        .def_property_readonly("spec_free", &pipeline::spec_free)
        .def("spec_commit", &pipeline::spec_commit, py::arg("seq"), py::arg("p0"), py::arg("p1"))
        .def_property_readonly("n_vocab", &pipeline::n_vocab)
        .def_property_readonly("n_ctx", &pipeline::n_ctx)
        .def_property_readonly("n_seq_max", &pipeline::n_seq_max)
        .def_property_readonly("n_slots", &pipeline::n_slots)
        .def_property_readonly("seqs_per_slot", &pipeline::seqs_per_slot,
                               "sequence ids per slot: slot k owns [k * seqs_per_slot, (k + 1) * seqs_per_slot), "
                               "the first one canonical")
        .def_property_readonly("n_stages", &pipeline::n_stages)
        .def_property_readonly("stage_layers", &pipeline::stage_layers)
        .def_property_readonly("transport", &pipeline::transport_kind)
        .def_property_readonly("n_ctx_train", [](const pipeline& p) { return p.hparams().n_ctx_train; })
        .def_property_readonly("n_embd", [](const pipeline& p) { return p.hparams().n_embd; })
        .def_property_readonly("n_layer", [](const pipeline& p) { return p.hparams().n_layer; })
        .def_property_readonly("n_head", [](const pipeline& p) { return p.hparams().n_head; })
        .def_property_readonly("n_head_kv", [](const pipeline& p) { return p.hparams().n_head_kv; })
        .def_property_readonly("arch", [](const pipeline& p) { return p.hparams().arch_name; })
        .def_property_readonly("kv_type", [](const pipeline& p) { return std::string(kv_type_name(p.kv().type())); })
        .def_property_readonly("kv_bytes", [](const pipeline& p) { return p.kv().bytes(); },
                               "K/V storage bytes of stage 0's cache (with one stage: the whole cache).")
        .def("stats", [](pipeline& p) {
            std::vector<stage_report> reports;
            {
                // Collecting worker counters waits on the transport only.
                py::gil_scoped_release release;
                reports = p.stats();
            }
            py::list out;
            for (const auto& r : reports) out.append(report_dict(r));
            return out;
        }, "Counters of every stage (a list of dicts, stage order).")
        .def("close", &pipeline::close, py::call_guard<py::gil_scoped_release>());
    m.def("split_layers_by_bytes", &split_layers_by_bytes, py::arg("layer_bytes"), py::arg("n_stages"));
    m.def(
        "serve_mpi_worker",
        [](const py::object& path, double heartbeat_s, double dead_after_s, const std::string& repack_cache_dir) {
            register_mpi_exit_hook();
            const std::string p = path_bytes(path);
            // Safe: serving touches no Python object (the strings were copied above).
            py::gil_scoped_release release;
            serve_mpi_worker(p, heartbeat_s, dead_after_s, repack_cache_dir);
        },
        py::arg("path"), py::arg("heartbeat_s") = 0.5, py::arg("dead_after_s") = 10.0, py::arg("repack_cache_dir") = "",
        "Runs this MPI rank as a pipeline worker until the head shuts the pipeline down.");
}

} // namespace pipeinfer
