"""Local (in-process) transport: per-(source, tag) FIFO under random delays with Python threads as ranks,
independent tags, fault injection with local_kill, timeouts, argument checks, and launch.mpi_launched()."""
from __future__ import annotations

import threading

import pytest

import pipeinfer
from pipeinfer import _core

EVENT, RESULT, CANCEL, CONTROL = 1, 2, 3, 4
JOIN_S = 30.0  # bound on every thread of these tests, so a regression fails instead of hanging


def encode(src: int, tag: int, seq: int) -> bytes:
    return f"{src}/{tag}/{seq}".encode() + bytes(seq % 7)  # varying lengths, empty tails included


def run_threads(targets):
    """Runs callables on threads, re-raises the first exception, fails if any thread is still running."""
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    assert not any(t.is_alive() for t in threads), "a rank thread is still blocked"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("max_delay_us,seed", [(0, 0), (300, 1), (300, 2)])
def test_fifo_per_source_and_tag_under_random_delays(max_delay_us, seed):
    n_ranks, n_msgs, tags = 4, 150, (EVENT, CANCEL)
    eps = _core.local_group(n_ranks, max_delay_us=max_delay_us, seed=seed)
    received = {(src, tag): [] for src in range(1, n_ranks) for tag in tags}

    def sender(rank):
        def run():
            for seq in range(n_msgs):
                for tag in tags:
                    eps[rank].send(0, tag, encode(rank, tag, seq))
        return run

    def receiver(tag):
        # Any-source receives on one tag; the other tag has its own thread on the same endpoint.
        def run():
            for _ in range((n_ranks - 1) * n_msgs):
                src, data = eps[0].recv(-1, tag, timeout_s=JOIN_S)
                received[(src, tag)].append(data)
        return run

    run_threads([receiver(t) for t in tags] + [sender(r) for r in range(1, n_ranks)])
    for (src, tag), got in received.items():
        assert got == [encode(src, tag, seq) for seq in range(n_msgs)], (src, tag)
    for tag in tags:
        assert eps[0].try_recv(-1, tag) is None
    per_rank = sum(len(encode(1, t, s)) for t in tags for s in range(n_msgs))
    assert eps[1].bytes_sent == per_rank
    assert eps[1].messages_sent == 2 * n_msgs
    assert eps[0].bytes_sent == 0


def test_ring_of_threads_with_delays():
    n_ranks, rounds = 5, 40
    eps = _core.local_group(n_ranks, max_delay_us=200, seed=7)
    tokens = []

    def rank(r):
        def run():
            ep = eps[r]
            if r == 0:
                for i in range(rounds):
                    ep.send(1, EVENT, i.to_bytes(4, "little") + b"0")
                    src, data = ep.recv(n_ranks - 1, EVENT, timeout_s=JOIN_S)
                    tokens.append((src, data))
            else:
                for _ in range(rounds):
                    src, data = ep.recv(r - 1, EVENT, timeout_s=JOIN_S)
                    assert src == r - 1
                    ep.send((r + 1) % n_ranks, EVENT, data + str(r).encode())
        return run

    run_threads([rank(r) for r in range(n_ranks)])
    assert tokens == [(n_ranks - 1, i.to_bytes(4, "little") + b"01234") for i in range(rounds)]


def test_tags_are_independent_streams():
    a, b, c = _core.local_group(3)
    b.send(0, EVENT, b"e1")
    b.send(0, CANCEL, b"c1")
    c.send(0, CANCEL, b"c2")
    b.send(0, EVENT, b"e2")
    assert a.recv(1, CANCEL) == (1, b"c1")  # a later tag can be read first
    assert a.recv(2, CANCEL) == (2, b"c2")
    assert a.try_recv(-1, CANCEL) is None
    assert a.try_recv(2, EVENT) is None  # sources are separate streams too
    assert a.recv(1, EVENT) == (1, b"e1")
    assert a.try_recv(1, EVENT) == (1, b"e2")
    a.send(0, RESULT, b"")  # to self, empty payload
    assert a.recv(0, RESULT) == (0, b"")


def test_kill_wakes_a_waiting_receiver_with_an_error_naming_the_rank():
    eps = _core.local_group(3, max_delay_us=50, seed=3)
    eps[2].send(0, EVENT, b"sent before death")
    caught = []
    waiting = threading.Event()

    def head():
        assert eps[0].recv(2, EVENT, timeout_s=JOIN_S) == (2, b"sent before death")
        waiting.set()
        with pytest.raises(pipeinfer.TransportError) as ei:
            eps[0].recv(2, EVENT)  # no timeout: only the death can end this wait
        caught.append(ei.value)

    def killer():
        assert waiting.wait(JOIN_S)
        _core.local_kill(eps[1], 2)

    run_threads([head, killer])
    err = caught[0]
    assert err.rank == 2
    assert "rank 2 is dead" in str(err)
    assert isinstance(err, RuntimeError) and isinstance(err, pipeinfer.PipeinferError)
    assert eps[0].silent_for(2) > 0.0
    assert eps[0].silent_for(1) == 0.0


def test_dead_rank_fails_sends_both_ways_and_any_wait():
    a, b, c = _core.local_group(3)
    _core.local_kill(a, 1)
    with pytest.raises(pipeinfer.TransportError, match="rank 1 is dead") as ei:
        a.send(1, EVENT, b"x")
    assert ei.value.rank == 1
    with pytest.raises(pipeinfer.TransportError, match="this rank was killed"):
        b.send(0, EVENT, b"x")
    # A wait on a live peer still fails: the pipeline cannot go on without rank 1.
    with pytest.raises(pipeinfer.TransportError, match="rank 1 is dead") as ei:
        c.recv(0, EVENT, timeout_s=JOIN_S)
    assert ei.value.rank == 1
    with pytest.raises(pipeinfer.TransportError, match="rank 1 is dead"):
        c.recv(-1, EVENT)
    a.send(2, EVENT, b"live peers still talk")
    assert c.try_recv(0, EVENT) == (0, b"live peers still talk")
    _core.local_kill(a, 1)  # idempotent


def test_recv_timeout_raises_and_names_the_awaited_rank():
    a, b = _core.local_group(2, max_delay_us=10)
    with pytest.raises(pipeinfer.TransportError, match="no EVENT message from rank 1 within") as ei:
        a.recv(1, EVENT, timeout_s=0.02)
    assert ei.value.rank == 1
    with pytest.raises(pipeinfer.TransportError, match="from any rank"):
        a.recv(-1, CONTROL, timeout_s=0.0)
    b.send(0, EVENT, b"late")
    assert a.recv(1, EVENT, timeout_s=JOIN_S) == (1, b"late")


def test_endpoint_properties_and_argument_checks():
    eps = _core.local_group(3)
    assert [(e.rank, e.size, e.kind) for e in eps] == [(0, 3, "local"), (1, 3, "local"), (2, 3, "local")]
    for bad_tag in (0, 5, -1):  # 5 is HEARTBEAT: internal to the transport
        with pytest.raises(ValueError, match="tag"):
            eps[0].send(1, bad_tag, b"")
        with pytest.raises(ValueError, match="tag"):
            eps[0].try_recv(1, bad_tag)
    with pytest.raises(ValueError, match="valid ranks are 0..2"):
        eps[0].send(3, EVENT, b"")
    with pytest.raises(ValueError, match="valid ranks are 0..2"):
        eps[0].recv(3, EVENT)
    with pytest.raises(ValueError, match="valid ranks"):
        _core.local_kill(eps[0], 7)
    with pytest.raises(ValueError, match="at least 1 rank"):
        _core.local_group(0)
    with pytest.raises(ValueError, match="max_delay_us"):
        _core.local_group(2, max_delay_us=-1)


def test_mpi_launched_reads_launcher_environment(monkeypatch):
    from pipeinfer.launch import mpi_launched

    for var in ("PMI_RANK", "PMI_SIZE", "PMI_FD", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                "MPI_LOCALNRANKS", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert mpi_launched() is False
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "4")  # a batch shell, not a parallel step
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert mpi_launched() is False
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert mpi_launched() is True
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert mpi_launched() is True
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")  # one rank: run locally
    assert mpi_launched() is False
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    monkeypatch.setenv("PMI_RANK", "1")
    assert mpi_launched() is True
