"""Starting MPI jobs from tests: finds the mpiexec that matches the library, runs `mpiexec -n N` on a
script with hard timeouts, and checks that no process of the job outlives it.

This module owns how tests launch MPI. It must not import pipeinfer (the launched scripts do).

Launcher: the hydra `mpiexec` of the `mpich` wheel, taken from the bin folder next to sys.executable or
from the wheel's files; the launcher must match the libmpi that pipeinfer._core links. Hydra needs no
flag to run more ranks than cores. Hydra's proxy and every rank call setsid(), so neither the process
group nor the session of mpiexec finds them; instead every job's environment carries a unique marker
(PIPEINFER_MPI_JOB=<id>, passed on to all ranks) and the job's processes are found by scanning
/proc/<pid>/environ for it, then killed by pid when a job overruns its timeout.

Fault behaviour of hydra that shapes the helpers (details in csrc/transport/transport-mpi.cpp):
a rank killed by a signal makes hydra SIGKILL every other rank at once. `supervise=True` starts every
rank under a small shell that reports the rank's death as an exit status instead, and adds
`-disable-auto-cleanup`, so the surviving ranks keep running and can detect the death themselves.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pipeinfer import launch

JOB_MARKER = "PIPEINFER_MPI_JOB"

# Shell run in front of each rank with supervise=True: survives hydra's SIGUSR1 failure notice (the
# trap is a no-op handler, so the rank itself starts with the default disposition and MPICH installs
# its own) and exits with the rank's status (128+signal when the rank was killed).
_SUPERVISOR = 'trap ":" USR1; "$@"; rc=$?; echo "rank exit $rc" >&2; exit $rc'


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    f = _stat_fields(pid)
    return f is not None and f[0] not in ("Z", "X")


def job_pids(job_id: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries this job's marker."""
    needle = f"{JOB_MARKER}={job_id}".encode() + b"\0"
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in env and pid_alive(int(entry)):
            out.append(int(entry))
    return out


def kill_pids(pids) -> None:
    """SIGKILLs the given processes (those of a job this module started)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclasses.dataclass
class MPIResult:
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    timed_out: bool
    leftover_pids: list[int]  # processes of the job (mpiexec, proxies, ranks) alive after mpiexec ended


class MPIJob:
    """One running `mpiexec -n N python script args...`, its processes marked in their environment."""

    def __init__(self, script: str | os.PathLike, n: int, args=(), *, timeout_s: float = 60.0,
                 supervise: bool = False, env: dict | None = None, mpiexec_args=()):
        mpiexec = launch.find_mpiexec()
        if mpiexec is None:
            raise RuntimeError("mpiexec of the mpich wheel not found")
        cmd = [mpiexec]
        if supervise:
            cmd.append("-disable-auto-cleanup")
        cmd += list(mpiexec_args) + ["-n", str(n)]
        if supervise:
            cmd += ["bash", "-c", _SUPERVISOR, "pipeinfer-rank"]
        cmd += [sys.executable, str(script)] + [str(a) for a in args]
        job_env = dict(os.environ if env is None else env)
        self.job_id = f"{os.getpid()}-{uuid.uuid4().hex}"
        job_env[JOB_MARKER] = self.job_id
        job_env["PYTHONUNBUFFERED"] = "1"
        # Hydra's own job limit (whole seconds), a second bound inside the outer one of wait().
        job_env["MPIEXEC_TIMEOUT"] = str(max(1, int(timeout_s)))
        self.timeout_s = timeout_s
        self._out = tempfile.TemporaryFile(mode="w+")
        self._err = tempfile.TemporaryFile(mode="w+")
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     env=job_env, start_new_session=True)

    def wait(self) -> MPIResult:
        """Waits for mpiexec (killing every process of the job past the timeout) and collects the result."""
        timed_out = False
        try:
            remaining = self.timeout_s + 10.0 - (time.monotonic() - self.start)
            self.proc.wait(timeout=max(remaining, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_pids(job_pids(self.job_id))
            self.proc.wait(timeout=30)
        elapsed = time.monotonic() - self.start
        # Give the kernel a moment to reap ranks that hydra killed at the very end.
        deadline = time.monotonic() + 2.0
        leftover = job_pids(self.job_id)
        while leftover and time.monotonic() < deadline:
            time.sleep(0.05)
            leftover = job_pids(self.job_id)
        if leftover:
            kill_pids(leftover)  # never leave processes behind, even when a test fails
        self._out.seek(0)
        self._err.seek(0)
        result = MPIResult(self.proc.returncode, self._out.read(), self._err.read(), elapsed,
                           timed_out or elapsed >= self.timeout_s, leftover)
        self._out.close()
        self._err.close()
        return result


def run_mpi(script: str | os.PathLike, n: int, args=(), *, timeout_s: float = 60.0, supervise: bool = False,
            env: dict | None = None, mpiexec_args=()) -> MPIResult:
    """Runs `mpiexec -n n python script *args` to completion (bounded by timeout_s) and returns its result."""
    return MPIJob(script, n, args, timeout_s=timeout_s, supervise=supervise, env=env,
                  mpiexec_args=mpiexec_args).wait()


def have_mpiexec() -> bool:
    return launch.find_mpiexec() is not None and shutil.which("bash") is not None
