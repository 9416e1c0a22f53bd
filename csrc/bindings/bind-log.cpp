// set_log_callback: the engine's messages (common/log.h) go to one Python callable(level, text). A
// message logged on a thread Python knows (the caller of a binding, which released the GIL) is
// delivered at once, taking the GIL; one logged on an engine thread (a local pipeline stage) is
// queued and delivered by the next Python-side delivery or flush_pending_log, because engine threads
// never call into Python.
#include <pybind11/pybind11.h>

#include <deque>
#include <mutex>
#include <string>
#include <utility>

#include "bindings/bind-log.h"
#include "bindings/register.h"
#include "common/log.h"

namespace py = pybind11;

namespace pipeinfer {

namespace {

constexpr size_t MAX_PENDING = 1000;

std::mutex g_mu;
std::deque<std::pair<int, std::string>> g_pending;  // messages from engine threads
py::object* g_callback = nullptr;  // leaked on purpose: never destroyed after the interpreter

void deliver_locked_gil(int level, const std::string& text) {
    if (g_callback == nullptr || g_callback->is_none()) return;
    try {
        (*g_callback)(level, text);
    } catch (py::error_already_set& e) {
        e.discard_as_unraisable("pipeinfer log callback");
    }
}

void sink(log_level level, const std::string& text) {
    if (PyGILState_GetThisThreadState() == nullptr || Py_IsInitialized() == 0) {
        std::lock_guard<std::mutex> lock(g_mu);
        if (g_pending.size() < MAX_PENDING) g_pending.emplace_back(static_cast<int>(level), text);
        return;
    }
    py::gil_scoped_acquire gil;
    flush_pending_log();
    deliver_locked_gil(static_cast<int>(level), text);
}

} // namespace

void flush_pending_log() {
    std::deque<std::pair<int, std::string>> pending;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        pending.swap(g_pending);
    }
    for (const auto& [level, text] : pending) deliver_locked_gil(level, text);
}

void register_log(py::module_& m) {
    m.def(
        "set_log_callback",
        [](py::object fn) {
            if (g_callback == nullptr) g_callback = new py::object();
            *g_callback = std::move(fn);
            if (g_callback->is_none()) {
                set_log_sink({});
            } else {
                set_log_sink(sink);
            }
        },
        py::arg("callback"),
        "Sends the engine's messages (progress of long loads, caches not used) to callback(level, text), level\n"
        "as in the logging module (10 debug, 20 info, 30 warning); None drops them.");
    m.def("flush_log", &flush_pending_log, "Delivers messages logged by engine threads since the last delivery.");
}

} // namespace pipeinfer
