// Test hooks for the transports of transport/transport.h: _core.Transport (an endpoint),
// _core.local_group, _core.local_kill, _core.MPITransport, _core.mpi_abort_world,
// _core.mpi_fault_seen; the MPI exit hook; _core.mpi_report_startup_failure (runtime/startup-failure.h).
// Payloads cross as bytes; tags as ints (EVENT=1, RESULT=2, CANCEL=3, CONTROL=4).
#include <pybind11/stl.h>

#include <string>

#include "bindings/register.h"
#include "common/error.h"
#include "runtime/startup-failure.h"
#include "transport/transport.h"

namespace py = pybind11;

namespace pipeinfer {

namespace {

msg_tag tag_from_int(int t) {
    if (t < static_cast<int>(msg_tag::EVENT) || t > static_cast<int>(msg_tag::CONTROL)) {
        throw std::invalid_argument(format("tag must be 1..4 (EVENT, RESULT, CANCEL, CONTROL), got %d", t));
    }
    return static_cast<msg_tag>(t);
}

py::tuple to_py(message&& m) {
    return py::make_tuple(m.src, py::bytes(reinterpret_cast<const char*>(m.data.data()), m.data.size()));
}

// At interpreter exit: stops the heartbeat threads, and if this process saw a fault (a dead or
// stopped rank: MPI_Finalize would hang, and hydra would wait for a stopped rank for ever) ends the
// whole job with MPI_Abort, after flushing Python's own stdout/stderr buffers (an abort skips the
// interpreter's final flush, and the error report would be lost).
void mpi_exit_hook() {
    mpi_quiesce();
    if (!mpi_fault_seen()) return;
    for (const char* name : {"stdout", "stderr"}) {
        try {
            py::object stream = py::module_::import("sys").attr(name);
            if (!stream.is_none()) stream.attr("flush")();
        } catch (const py::error_already_set&) {
        }
    }
    // Safe: no Python object is touched; MPI_Abort does not return when MPI is up.
    py::gil_scoped_release release;
    try {
        mpi_abort_world(1);
    } catch (const transport_error&) {
        // MPI never came up (an init that overran its deadline) or is finalised: nothing to end
    }
}

} // namespace

// Python atexit callbacks run LIFO: registered when the first MPI transport is about to be made, the
// hook runs before the finaliser of an mpi4py imported earlier, so our heartbeat threads stop before
// anybody calls MPI_Finalize.
void register_mpi_exit_hook() {
    static bool done = false;
    if (done) return;
    py::module_::import("atexit").attr("register")(py::cpp_function(&mpi_exit_hook));
    done = true;
}

void register_transport(py::module_& m) {
    py::class_<transport, std::shared_ptr<transport>>(m, "Transport",
                                                      "One rank's endpoint of a local or MPI transport (test hook).")
        .def_property_readonly("rank", &transport::rank)
        .def_property_readonly("size", &transport::size)
        .def_property_readonly("kind", [](const transport& t) { return std::string(t.kind()); })
        .def_property_readonly("bytes_sent", &transport::bytes_sent)
        .def_property_readonly("messages_sent", &transport::messages_sent)
        .def(
            "send",
            [](transport& t, int dst, int tag, py::bytes data) {
                const msg_tag mt = tag_from_int(tag);
                std::string s = data;  // copied while holding the GIL
                std::vector<uint8_t> buf(s.begin(), s.end());
                // Safe: only C++ data is touched from here on.
                py::gil_scoped_release release;
                t.send(dst, mt, std::move(buf));
            },
            py::arg("dst"), py::arg("tag"), py::arg("data"))
        .def(
            "try_recv",
            [](transport& t, int src, int tag) -> py::object {
                const msg_tag mt = tag_from_int(tag);
                message msg;
                bool got;
                {
                    // Safe: try_recv touches no Python object; a large MPI message may take a while.
                    py::gil_scoped_release release;
                    got = t.try_recv(src, mt, msg);
                }
                if (!got) return py::none();
                return to_py(std::move(msg));
            },
            py::arg("src"), py::arg("tag"))
        .def(
            "recv",
            [](transport& t, int src, int tag, double timeout_s) {
                const msg_tag mt = tag_from_int(tag);
                message msg;
                {
                    // Safe: recv polls C++ mailboxes / MPI only and touches no Python object; releasing
                    // the GIL lets other Python threads (other local ranks) run while this one waits.
                    py::gil_scoped_release release;
                    msg = t.recv(src, mt, timeout_s);
                }
                return to_py(std::move(msg));
            },
            py::arg("src"), py::arg("tag"), py::arg("timeout_s") = -1.0)
        .def("silent_for", &transport::silent_for, py::arg("peer"));

    m.def(
        "local_group",
        [](int n, int max_delay_us, uint64_t seed, double heartbeat_s, double dead_after_s) {
            local_options o;
            o.max_delay_us = max_delay_us;
            o.seed = seed;
            o.heartbeat_s = heartbeat_s;
            o.dead_after_s = dead_after_s;
            return make_local_group(n, o);
        },
        py::arg("n"), py::arg("max_delay_us") = 0, py::arg("seed") = 0, py::arg("heartbeat_s") = 0.5,
        py::arg("dead_after_s") = 10.0, "Endpoints of ranks 0..n-1 sharing in-process mailboxes.");
    m.def(
        "local_kill", [](transport& any_endpoint, int r) { local_group_kill(any_endpoint, r); }, py::arg("endpoint"),
        py::arg("rank"), "Marks rank `rank` of the endpoint's local group dead (fault injection).");
    m.def(
        "MPITransport",
        [](double heartbeat_s, double dead_after_s) {
            register_mpi_exit_hook();
            transport_options o;
            o.heartbeat_s = heartbeat_s;
            o.dead_after_s = dead_after_s;
            std::unique_ptr<transport> t;
            {
                // Safe: the collective communicator duplication waits for every rank and touches no
                // Python object.
                py::gil_scoped_release release;
                t = make_mpi_transport(o);
            }
            return std::shared_ptr<transport>(std::move(t));
        },
        py::arg("heartbeat_s") = 0.5, py::arg("dead_after_s") = 10.0,
        "This process's MPI endpoint (initialises MPI if needed; collective over all ranks).");
    m.def("mpi_abort_world", &mpi_abort_world, py::arg("code"), "MPI_Abort on the world communicator.");
    m.def("mpi_fault_seen", &mpi_fault_seen, "True if this process saw a dead or silent rank or an MPI error.");
    m.def(
        "mpi_report_startup_failure",
        [](const std::string& kind, const std::string& text, double heartbeat_s, double dead_after_s) {
            register_mpi_exit_hook();
            // Safe: joining the job and sending touch no Python object (arguments copied above).
            py::gil_scoped_release release;
            return report_startup_failure(kind, text, heartbeat_s, dead_after_s);
        },
        py::arg("kind"), py::arg("text"), py::arg("heartbeat_s") = 0.5, py::arg("dead_after_s") = 10.0,
        "Reports an error raised on this MPI rank before it joined the pipeline to the other ranks "
        "(runtime/startup-failure.h); False if it had joined already or the report failed.");
}

} // namespace pipeinfer
