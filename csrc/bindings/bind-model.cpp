// _core.Pipeline: the native pipeline (runtime/pipeline.h). Converts numpy inputs to a batch before
// releasing the GIL; returns logits as a zero-copy float32 view owned by the Pipeline object.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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

py::dict stage_stats_dict(const llama_stage& st) {
    py::dict d;
    d["layer_begin"] = st.layer_begin();
    d["layer_end"] = st.layer_end();
    d["runs"] = st.stats().runs;
    d["tokens"] = st.stats().tokens;
    d["layers_run"] = st.stats().layers_run;
    d["layers_skipped"] = st.stats().layers_skipped;
    d["weight_bytes"] = st.weight_bytes();
    d["kv_cells_used"] = st.kv().n_used();
    return d;
}

} // namespace

void register_model(py::module_& m) {
    py::class_<pipeline>(m, "Pipeline")
        .def(py::init([](const std::string& path, int64_t n_ctx, int n_threads, int n_seq_max,
                         std::vector<int64_t> stage_layers) {
                 pipeline_config cfg;
                 cfg.model_path = path;
                 cfg.n_ctx = n_ctx;
                 cfg.n_threads = n_threads;
                 cfg.n_seq_max = n_seq_max;
                 cfg.stage_layers = std::move(stage_layers);
                 // Loading maps the file and binds tensors; no Python objects are touched.
                 py::gil_scoped_release release;
                 return std::make_unique<pipeline>(cfg);
             }),
             py::arg("path"), py::arg("n_ctx") = 0, py::arg("n_threads") = 1, py::arg("n_seq_max") = 1,
             py::arg("stage_layers") = std::vector<int64_t>{})
        .def(
            "decode",
            [](py::object self_obj, const i32_array& tokens, const i32_array& pos, const py::object& seq_ids,
               const py::array_t<uint8_t, py::array::c_style | py::array::forcecast>& logits) {
                pipeline& self = py::cast<pipeline&>(self_obj);
                batch b;
                const size_t n = static_cast<size_t>(pos.size());
                if (tokens.ndim() != 1 || pos.ndim() != 1 || logits.ndim() != 1) {
                    throw std::invalid_argument("tokens, pos and logits must be 1-D arrays");
                }
                b.token.assign(tokens.data(), tokens.data() + tokens.size());
                b.pos.assign(pos.data(), pos.data() + pos.size());
                b.want_logits.assign(logits.data(), logits.data() + logits.size());
                b.seqs = to_seq_lists(seq_ids, n);
                const std::vector<float>* out = nullptr;
                {
                    // The batch holds copies of every input; the pipeline touches no Python object.
                    py::gil_scoped_release release;
                    out = &self.decode(b);
                }
                const ssize_t n_vocab = static_cast<ssize_t>(self.n_vocab());
                const ssize_t rows = n_vocab ? static_cast<ssize_t>(out->size()) / n_vocab : 0;
                // Zero-copy view whose base is the Pipeline: valid until the next decode.
                return py::array_t<float>({rows, n_vocab}, {n_vocab * ssize_t(sizeof(float)), ssize_t(sizeof(float))},
                                          out->data(), self_obj);
            },
            py::arg("tokens"), py::arg("pos"), py::arg("seq_ids"), py::arg("logits"),
            "Evaluates a batch; returns a float32 view (n_outputs, n_vocab) overwritten by the next call.")
        .def("kv_seq_rm", &pipeline::kv_seq_rm, py::arg("seq"), py::arg("p0"), py::arg("p1"))
        .def("kv_seq_cp", &pipeline::kv_seq_cp, py::arg("src"), py::arg("dst"), py::arg("p0"), py::arg("p1"))
        .def("kv_seq_keep", &pipeline::kv_seq_keep, py::arg("seq"))
        .def("kv_clear", &pipeline::kv_clear)
        .def("kv_seq_pos_max", &pipeline::kv_seq_pos_max, py::arg("seq"))
        .def_property_readonly("kv_n_used", &pipeline::kv_n_used)
        .def_property_readonly("n_vocab", &pipeline::n_vocab)
        .def_property_readonly("n_ctx", &pipeline::n_ctx)
        .def_property_readonly("n_seq_max", &pipeline::n_seq_max)
        .def_property_readonly("n_stages", &pipeline::n_stages)
        .def_property_readonly("n_ctx_train", [](const pipeline& p) { return p.hparams().n_ctx_train; })
        .def_property_readonly("n_embd", [](const pipeline& p) { return p.hparams().n_embd; })
        .def_property_readonly("n_layer", [](const pipeline& p) { return p.hparams().n_layer; })
        .def_property_readonly("n_head", [](const pipeline& p) { return p.hparams().n_head; })
        .def_property_readonly("n_head_kv", [](const pipeline& p) { return p.hparams().n_head_kv; })
        .def_property_readonly("arch", [](const pipeline& p) { return p.hparams().arch_name; })
        .def("stage_stats", [](const pipeline& p) {
            py::list out;
            for (int i = 0; i < p.n_stages(); ++i) out.append(stage_stats_dict(p.stage(i)));
            return out;
        });
    m.def("split_layers_by_bytes", &split_layers_by_bytes, py::arg("layer_bytes"), py::arg("n_stages"));
}

} // namespace pipeinfer
