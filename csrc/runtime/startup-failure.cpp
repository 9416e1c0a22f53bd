#include "runtime/startup-failure.h"

#include <algorithm>
#include <chrono>

#include "common/error.h"
#include "runtime/protocol.h"
#include "transport/transport.h"

namespace pipeinfer {

void wait_for_head_to_leave(transport& tp, double limit_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
    while (std::chrono::steady_clock::now() < deadline) {
        message m;
        try {
            tp.recv_for(0, msg_tag::CONTROL, 0.05, m);  // a HELLO, or nothing: the head is still there
        } catch (const transport_error&) {
            return;  // the head closed its transport, went silent, or another rank is gone too
        }
    }
}

bool report_startup_failure(const std::string& kind, const std::string& text, double heartbeat_s,
                            double dead_after_s) {
    if (mpi_transports_created() > 0) return false;
    try {
        transport_options opts;
        opts.heartbeat_s = heartbeat_s;
        opts.dead_after_s = dead_after_s;
        std::unique_ptr<transport> tp = make_mpi_transport(opts);
        control c;
        c.type = control_type::ERROR;
        c.rank = tp->rank();
        c.error_kind = kind;
        c.text = text.size() > 60000 ? text.substr(0, 60000) + " [...]" : text;
        c.error_rank = tp->rank();
        const std::vector<uint8_t> msg = encode_control(c);
        if (tp->rank() == 0) {
            for (int r = 1; r < tp->size(); ++r) tp->send(r, msg_tag::CONTROL, msg);
        } else {
            tp->send(0, msg_tag::CONTROL, msg);
            wait_for_head_to_leave(*tp, std::max(30.0, 3.0 * dead_after_s));
        }
        return true;  // the transport's destructor waits for the sends, then says bye
    } catch (const std::exception&) {
        return false;
    }
}

} // namespace pipeinfer
