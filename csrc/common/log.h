// Messages of the engine for the user (progress of long loads, a cache that could not be used). One
// process-wide sink receives them; without a sink they are dropped. Library code never prints: the
// Python package installs a sink that forwards to the `logging` module (bindings/bind-log.cpp).
// Must not throw into the caller: a sink's exception is swallowed.
#pragma once
#include <functional>
#include <mutex>
#include <string>

namespace pipeinfer {

enum class log_level { DEBUG = 10, INFO = 20, WARNING = 30 };

// Called on the thread that logs, possibly several threads at once (the sink serializes if needed).
using log_sink = std::function<void(log_level, const std::string&)>;

// Installs the sink (an empty function removes it).
void set_log_sink(log_sink sink);

// Formats like printf and hands the message to the sink.
void log_msg(log_level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Progress of one long operation: reports start, then at most about once a second "what: NN%", and
// the end with the time taken, but only if the operation has run for longer than `quiet_s` by then
// (short operations stay silent except for their start message, which the caller gives).
class log_progress {
public:
    log_progress(std::string what, double quiet_s = 1.0);
    // done / total of the work has been completed; thread-safe.
    void update(double fraction);
    // Ends the operation: logs its duration if it took longer than quiet_s.
    void finish(const std::string& result);
    double elapsed_s() const;

private:
    std::mutex mu_;  // one report per second across the threads of the operation
    std::string what_;
    double quiet_s_;
    double t0_;
    double last_report_;
};

} // namespace pipeinfer
