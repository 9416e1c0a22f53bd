// The bridge from the engine's log sink (common/log.h) to a Python callable (bind-log.cpp).
#pragma once

namespace pipeinfer {
// Delivers the messages that threads unknown to Python logged meanwhile. Call with the GIL held.
void flush_pending_log();
} // namespace pipeinfer
