// What a rank does when it fails before the pipeline is up: tell the others, so that nobody waits for
// it for ever. Owns only the reporting of startup failures; the pipeline proper (pipeline.h) and the
// worker loop (stage-worker.h) handle errors once the transport exists.
//
// The hazard: MPI_Init_thread and the transport's communicator duplication wait for every rank. A rank
// that fails first (a model path missing on one node, a bad argument, any Python error in its
// constructor) used to leave the others blocked in MPI_Init for ever. Such a rank now joins the job
// only to report: it creates its MPI transport (collective, so the others' creation completes), sends
// its error as a CONTROL ERROR, and waits until the receiver has acted on it.
#pragma once
#include <string>

namespace pipeinfer {

class transport;

// Reports an error raised on this MPI rank before it created an MPI transport.
// kind: an error kind of the ERROR message ("gguf", "model", "unsupported", "invalid", "other",
// stage-worker.h); text: the message, naming what failed. A worker sends it to the head (the head's
// Pipeline then raises it, naming this rank) and waits until the head has left or gone silent; the
// head sends it to every worker (each raises it naming rank 0) and returns at once.
// Returns false, doing nothing, if this process already created an MPI transport (the others learn of
// its end through that transport) or if the report itself failed (MPI unavailable, the job gone).
// Bounded by max(30 s, 3 * dead_after_s) for joining plus as much for the head to leave.
bool report_startup_failure(const std::string& kind, const std::string& text, double heartbeat_s,
                            double dead_after_s);

// On a worker that sent an ERROR to the head: waits until the head has closed its transport or has
// been silent for dead_after_s, or limit_s passed, so that this rank's exit can neither make hydra end
// the job before the head has reported the error nor make the head see "closed its transport" before
// the error itself.
void wait_for_head_to_leave(transport& tp, double limit_s);

} // namespace pipeinfer
