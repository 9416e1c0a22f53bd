"""Program run by the MPI transport tests under `mpiexec -n N` (one process per rank).

Modes (first argument):
  ring OUTDIR ROUNDS    every rank passes numbered messages around the ring 0 -> 1 -> ... -> 0 for ROUNDS
                        rounds, in bursts on two tags, plus an empty and a 3 MiB message, and checks
                        contents and per-(source, tag) order; each rank writes OUTDIR/rank<r>.ok.
  fault OUTDIR DEAD_S [abort]
                        ranks circulate a token around the ring for ever (10 ms pauses); each rank first
                        writes its pid to OUTDIR/rank<r>.pid. A TransportError is printed as
                        "TRANSPORT_ERROR rank=<peer> on rank <r>: <message>" and the rank exits with 3;
                        with "abort", rank 0 then ends the whole job with _core.mpi_abort_world(3).
                        A worker that sees the fault first defers to the head: it waits until the head
                        leaves, goes silent or ends the job (bounded), so that its own exit cannot make
                        hydra kill the head before the head has reported the fault.
  mpi4py OUTDIR 0 ORDER
                        imports mpi4py before ("mpi4py-first") or after ("pipeinfer-first") creating the
                        transport, or first with MPI_THREAD_SINGLE ("mpi4py-single": no heartbeat thread,
                        the caller's thread sends heartbeats inside recv); uses both, keeps every rank
                        waiting for longer than dead_after_s (only heartbeats keep them from raising), and
                        exits normally (whoever initialised MPI finalises it); writes OUTDIR/rank<r>.ok.
  bye OUTDIR 0          3 ranks, dead_after_s = 1 s. Rank 2 sends one message, closes its transport and
                        stays alive 4 s; rank 1 sends after 2.5 s. Rank 0 receives rank 2's message,
                        then rank 1's (rank 2's departure, silent for longer than dead_after_s, must not
                        fail this wait), then waits on rank 2 again, which must fail at once with
                        "closed its transport"; rank 0 writes OUTDIR/bye.txt with "<rank> <message>".
  compute OUTDIR SECS   rank 0 times a fixed CPU-bound job while the other ranks wait in recv; it then
                        releases them. Writes OUTDIR/compute.txt with the seconds taken (an experiment
                        helper, not asserted on).
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from pipeinfer import _core, launch

EVENT, RESULT, CANCEL, CONTROL = 1, 2, 3, 4


def payload(src: int, tag: int, i: int, n: int = 64) -> bytes:
    seed = f"{src}:{tag}:{i}".encode()
    return (hashlib.sha256(seed).digest() * (n // 32 + 1))[:n]


def ring(outdir: Path, rounds: int) -> None:
    tp = _core.MPITransport(heartbeat_s=0.2, dead_after_s=20.0)
    r, n = tp.rank, tp.size
    assert tp.kind == "mpi" and launch.mpi_launched()
    nxt, prv = (r + 1) % n, (r - 1) % n
    burst = 5
    for i in range(rounds):
        # Bursts on two tags, sent before anything is received: order must hold per tag.
        for k in range(burst):
            tp.send(nxt, EVENT, payload(r, EVENT, i * burst + k))
            tp.send(nxt, CANCEL, payload(r, CANCEL, i * burst + k, n=8 + k))
        # Receive CANCEL first to show that tags are independent streams.
        for k in range(burst):
            src, data = tp.recv(prv, CANCEL, timeout_s=30)
            assert (src, data) == (prv, payload(prv, CANCEL, i * burst + k, n=8 + k)), (i, k)
        for k in range(burst):
            src, data = tp.recv(prv, EVENT, timeout_s=30)
            assert (src, data) == (prv, payload(prv, EVENT, i * burst + k)), (i, k)
    # Edge sizes: empty, and large enough for a rendezvous transfer.
    big = payload(r, RESULT, 0, n=3 * 1024 * 1024 + 7)
    tp.send(nxt, RESULT, b"")
    tp.send(nxt, RESULT, big)
    assert tp.recv(prv, RESULT, timeout_s=30) == (prv, b"")
    assert tp.recv(prv, RESULT, timeout_s=30) == (prv, payload(prv, RESULT, 0, n=3 * 1024 * 1024 + 7))
    # Any-source receive on rank 0 from every other rank.
    if r != 0:
        tp.send(0, CONTROL, r.to_bytes(4, "little"))
    else:
        got = sorted(int.from_bytes(tp.recv(-1, CONTROL, timeout_s=30)[1], "little") for _ in range(n - 1))
        assert got == list(range(1, n)), got
    assert tp.try_recv(prv, EVENT) is None
    sent = rounds * burst * 64 + sum(8 + k for k in range(burst)) * rounds + len(big) + (4 if r else 0)
    assert tp.bytes_sent == sent, (tp.bytes_sent, sent)
    assert 0.0 <= tp.silent_for(prv) < 20.0
    (outdir / f"rank{r}.ok").write_text(f"{r} {n} {os.getpid()}\n")


def fault(outdir: Path, dead_after_s: float, abort: bool) -> None:
    tp = _core.MPITransport(heartbeat_s=0.2, dead_after_s=dead_after_s)
    r, n = tp.rank, tp.size
    (outdir / f"rank{r}.pid").write_text(str(os.getpid()))
    nxt, prv = (r + 1) % n, (r - 1) % n
    try:
        if r == 0:
            tp.send(nxt, EVENT, (0).to_bytes(8, "little"))
        while True:
            # Any source: the head watches every peer, so it names the first rank to go silent.
            src, data = tp.recv(-1 if r == 0 else prv, EVENT)
            time.sleep(0.01)
            tp.send(nxt, EVENT, (int.from_bytes(data, "little") + 1).to_bytes(8, "little"))
    except _core.TransportError as e:
        print(f"TRANSPORT_ERROR rank={e.rank} on rank {r}: {e}", flush=True)
        if abort and r == 0:
            _core.mpi_abort_world(3)
        if r != 0 and e.rank != 0:
            # Not recv: it would fail at once, as it watches every peer and one is dead.
            deadline = time.monotonic() + 3 * dead_after_s
            while time.monotonic() < deadline and tp.silent_for(0) < dead_after_s:
                time.sleep(0.05)
        sys.exit(3)


def with_mpi4py(outdir: Path, order: str) -> None:
    import mpi4py

    if order == "mpi4py-single":
        mpi4py.rc.thread_level = "single"
    if order != "pipeinfer-first":
        from mpi4py import MPI
    dead_after_s = 1.5
    tp = _core.MPITransport(heartbeat_s=0.05, dead_after_s=dead_after_s)
    if order == "pipeinfer-first":
        from mpi4py import MPI
    comm = MPI.COMM_WORLD
    assert (comm.rank, comm.size) == (tp.rank, tp.size)
    single = MPI.Query_thread() == MPI.THREAD_SINGLE
    assert single == (order == "mpi4py-single")
    r, n = tp.rank, tp.size
    # Rank 0 waits (and times out) for 2 * dead_after_s before it sends "go"; the others wait for it in
    # recv meanwhile. Only heartbeats keep each side from declaring the other dead.
    if r == 0:
        try:
            tp.recv(1, CONTROL, timeout_s=2 * dead_after_s)
            raise AssertionError("no CONTROL message was sent")
        except _core.TransportError as e:
            assert "within" in str(e), e
        for p in range(1, n):
            tp.send(p, CONTROL, b"go")
    else:
        assert tp.recv(0, CONTROL) == (0, b"go")
    tp.send((r + 1) % n, EVENT, b"hello")
    assert tp.recv((r - 1) % n, EVENT, timeout_s=30) == ((r - 1) % n, b"hello")
    assert comm.allreduce(r) == n * (n - 1) // 2
    time.sleep(0.2)  # a few heartbeats in flight at exit
    (outdir / f"rank{tp.rank}.ok").write_text(f"{tp.rank} {tp.size} {order}\n")


def bye(outdir: Path) -> None:
    tp = _core.MPITransport(heartbeat_s=0.05, dead_after_s=1.0)
    r = tp.rank
    assert tp.size == 3
    if r == 2:
        tp.send(0, EVENT, b"last words")
        del tp  # the only reference: closes the transport, which says bye
        time.sleep(4.0)
    elif r == 1:
        time.sleep(2.5)  # no transport calls: the heartbeat thread keeps rank 1 alive
        tp.send(0, EVENT, b"late")
        tp.recv(0, CONTROL, timeout_s=30)
    else:
        assert tp.recv(2, EVENT, timeout_s=30) == (2, b"last words")
        assert tp.recv(1, EVENT, timeout_s=30) == (1, b"late")
        t0 = time.monotonic()
        try:
            tp.recv(2, EVENT, timeout_s=30)
            raise AssertionError("rank 2 sent a second message")
        except _core.TransportError as e:
            (outdir / "bye.txt").write_text(f"{e.rank} {time.monotonic() - t0:.3f} {e}\n")
        tp.send(1, CONTROL, b"done")


def compute(outdir: Path, secs: float) -> None:
    tp = _core.MPITransport(heartbeat_s=0.5, dead_after_s=60.0)
    r, n = tp.rank, tp.size
    if r == 0:
        time.sleep(1.0)  # let the others settle into their waits
        t0 = time.perf_counter()
        h = hashlib.sha256()
        block = b"x" * 65536
        for _ in range(int(secs * 20000)):
            h.update(block)
        dt = time.perf_counter() - t0
        (outdir / "compute.txt").write_text(f"{dt:.4f}\n")
        for p in range(1, n):
            tp.send(p, CONTROL, b"done")
    else:
        tp.recv(0, CONTROL, timeout_s=120)


def main() -> None:
    mode, outdir, arg = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    if mode == "ring":
        ring(outdir, int(arg))
    elif mode == "fault":
        fault(outdir, arg, sys.argv[4:5] == ["abort"])
    elif mode == "mpi4py":
        with_mpi4py(outdir, sys.argv[4])
    elif mode == "bye":
        bye(outdir)
    elif mode == "compute":
        compute(outdir, arg)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
