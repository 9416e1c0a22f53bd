#include "common/log.h"

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

namespace pipeinfer {

namespace {

std::mutex g_mu;
std::shared_ptr<const log_sink> g_sink;  // copied under g_mu, called outside it

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

} // namespace

void set_log_sink(log_sink sink) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_sink = sink ? std::make_shared<const log_sink>(std::move(sink)) : nullptr;
}

void log_msg(log_level level, const char* fmt, ...) {
    std::shared_ptr<const log_sink> sink;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        sink = g_sink;
    }
    if (!sink) return;
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    const int n = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    std::string msg(n > 0 ? static_cast<size_t>(n) : 0, '\0');
    if (n > 0) std::vsnprintf(&msg[0], msg.size() + 1, fmt, ap2);
    va_end(ap2);
    try {
        (*sink)(level, msg);
    } catch (...) {
        // a failing sink must not break the computation that logs
    }
}

log_progress::log_progress(std::string what, double quiet_s)
    : what_(std::move(what)), quiet_s_(quiet_s), t0_(now_s()), last_report_(t0_) {}

double log_progress::elapsed_s() const { return now_s() - t0_; }

void log_progress::update(double fraction) {
    const double t = now_s();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (t - last_report_ < 1.0 || t - t0_ < quiet_s_) return;
        last_report_ = t;
    }
    log_msg(log_level::INFO, "%s: %.0f%%", what_.c_str(), 100.0 * fraction);
}

void log_progress::finish(const std::string& result) {
    const double dt = elapsed_s();
    log_msg(dt >= quiet_s_ ? log_level::INFO : log_level::DEBUG, "%s: %s in %.2f s", what_.c_str(), result.c_str(),
            dt);
}

} // namespace pipeinfer
