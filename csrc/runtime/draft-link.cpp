#include "runtime/draft-link.h"

#include <stdexcept>

#include "common/error.h"

namespace pipeinfer {

draft_link::draft_link(std::shared_ptr<transport> tp) : tp_(std::move(tp)) {
    if (!tp_) throw std::invalid_argument("draft_link needs a transport");
    if (tp_->rank() == 0) throw std::invalid_argument("rank 0 is the head; a draft rank has rank >= 1");
}

std::unique_ptr<draft_link> draft_link::connect_mpi(double heartbeat_s, double dead_after_s) {
    transport_options topts;
    topts.heartbeat_s = heartbeat_s;
    topts.dead_after_s = dead_after_s;
    std::shared_ptr<transport> tp = make_mpi_transport(topts);
    return std::make_unique<draft_link>(tp);
}

bool draft_link::recv(double timeout_s, draft_sync& out) {
    message m;
    if (!tp_->recv_for(0, msg_tag::DRAFT, timeout_s, m)) return false;
    out = decode_draft_sync(m.data, m.src);
    return true;
}

void draft_link::send(const draft_tokens& d) { tp_->send(0, msg_tag::PROPOSAL, encode_draft_tokens(d)); }

void draft_link::ready() {
    control c;
    c.type = control_type::READY;
    c.rank = tp_->rank();
    tp_->send(0, msg_tag::CONTROL, encode_control(c));
}

void draft_link::error(const std::string& kind, const std::string& text) {
    control c;
    c.type = control_type::ERROR;
    c.rank = tp_->rank();
    c.error_kind = kind;
    c.text = text;
    tp_->send(0, msg_tag::CONTROL, encode_control(c));
}

} // namespace pipeinfer
