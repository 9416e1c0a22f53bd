// Bindings of the draft channel: the head's side (methods on _core.Pipeline, in bind-model.cpp) and
// the draft rank's side (_core.DraftLink). Conversion only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/register.h"
#include "runtime/draft-link.h"
#include "runtime/pipeline.h"

namespace py = pybind11;

namespace pipeinfer {

py::object sync_to_py(const draft_sync& d) {
    if (d.stop) return py::make_tuple("stop");
    return py::make_tuple("sync", d.epoch, d.n_common, d.tokens, d.ahead, d.p_min);
}

draft_sync sync_from_args(int64_t epoch, int64_t n_common, const std::vector<int32_t>& tokens, int32_t ahead,
                          float p_min) {
    draft_sync d;
    d.epoch = epoch;
    d.n_common = n_common;
    d.tokens = tokens;
    d.ahead = ahead;
    d.p_min = p_min;
    return d;
}

void register_draft(py::module_& m) {
    py::class_<draft_link>(m, "DraftLink",
                           "A draft rank's end of the draft channel (drafters/server.py serves it).")
        .def_static(
            "mpi",
            [](double heartbeat_s, double dead_after_s) {
                register_mpi_exit_hook();  // needs the GIL (it registers a Python atexit callback)
                py::gil_scoped_release release;  // joining the world touches no Python object
                return draft_link::connect_mpi(heartbeat_s, dead_after_s);
            },
            py::arg("heartbeat_s") = 0.5, py::arg("dead_after_s") = 10.0,
            "Joins the MPI world as a draft rank (collective: every rank's first MPI step).")
        .def(
            "recv",
            [](draft_link& self, double timeout_s) -> py::object {
                draft_sync d;
                bool got = false;
                {
                    // waits on the transport only; no Python object is touched
                    py::gil_scoped_release release;
                    got = self.recv(timeout_s, d);
                }
                if (!got) return py::none();
                return sync_to_py(d);
            },
            py::arg("timeout_s"),
            "The head's next message within timeout_s: ('sync', epoch, n_common, tokens, ahead, p_min), ('stop',), "
            "or None.")
        .def(
            "send",
            [](draft_link& self, int64_t epoch, int64_t pos, std::vector<int32_t> tokens, std::vector<float> p) {
                draft_tokens d;
                d.epoch = epoch;
                d.pos = pos;
                d.tokens = std::move(tokens);
                d.p = std::move(p);
                py::gil_scoped_release release;  // the converted vectors are owned here
                self.send(d);
            },
            py::arg("epoch"), py::arg("pos"), py::arg("tokens"), py::arg("p"))
        .def("ready", &draft_link::ready, py::call_guard<py::gil_scoped_release>())
        .def("error", &draft_link::error, py::arg("kind"), py::arg("text"), py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("rank", &draft_link::rank)
        .def_property_readonly("transport", &draft_link::kind);
}

void register_pipeline_draft(py::class_<pipeline>& cls) {
    cls.def(
           "sync_drafter",
           [](pipeline& self, int64_t epoch, int64_t n_common, const std::vector<int32_t>& tokens, int32_t ahead,
              float p_min) {
               draft_sync d = sync_from_args(epoch, n_common, tokens, ahead, p_min);
               py::gil_scoped_release release;  // sends a copy; no Python object is touched
               self.sync_drafter(d);
           },
           py::arg("epoch"), py::arg("n_common"), py::arg("tokens"), py::arg("ahead"), py::arg("p_min") = 0.0f,
           "Tells the draft rank the accepted context (its first n_common tokens + tokens) and how far to draft.")
        .def(
            "draft_poll",
            [](pipeline& self) {
                std::vector<draft_tokens> got;
                {
                    py::gil_scoped_release release;  // transport only
                    got = self.draft_poll();
                }
                py::list out;
                for (const auto& d : got) out.append(py::make_tuple(d.epoch, d.pos, d.tokens, d.p));
                return out;
            },
            "Proposals arrived from the draft rank: [(epoch, pos, tokens, p)], oldest first.")
        .def("wait_result_or_draft", &pipeline::wait_result_or_draft, py::arg("timeout_s"),
             py::call_guard<py::gil_scoped_release>(),
             "Waits until a result (1) or a proposal (2) is ready, or timeout_s passed (0).")
        .def(
            "local_draft_link",
            [](const pipeline& self) { return std::make_unique<draft_link>(self.draft_endpoint(0)); },
            "The draft rank's link of a local pipeline (served by a thread of this process).")
        .def_property_readonly("n_draft_ranks", &pipeline::n_draft_ranks);
}

} // namespace pipeinfer
