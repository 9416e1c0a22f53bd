"""How this process was started: alone (local transport) or as one rank of an MPI job, and what a
rank does when it fails before it joined the job.

Reads the launcher's environment only; MPI itself is initialised by the native transport when a
pipeline is created.
"""
from __future__ import annotations

import functools
import importlib.metadata
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

_RANK_VARS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def mpi_launched() -> bool:
    """True if an MPI launcher (mpiexec, mpirun, srun) started this process with more than one rank.

    The one check of the package (environment only, MPI is not initialised): a world size the launcher
    sets (PMI_SIZE, OMPI_COMM_WORLD_SIZE, ...) decides when present; otherwise a rank variable of a
    process manager (PMI_RANK, PMIX_RANK, PMI_FD, MPI_LOCALNRANKS), or a Slurm parallel step of more
    than one task (SLURM_STEP_NUM_TASKS; SLURM_NTASKS alone is also set in a batch script's shell).
    """
    for var in _SIZE_VARS:
        if var in os.environ:
            try:
                return int(os.environ[var]) > 1
            except ValueError:
                return False
    if any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK", "PMI_FD", "MPI_LOCALNRANKS")):
        return True
    try:
        return "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_STEP_NUM_TASKS", "0")) > 1
    except ValueError:
        return False


def mpi_rank() -> int:
    """This process's rank in the MPI job (0 when not launched by MPI)."""
    for var in _RANK_VARS:
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                raise RuntimeError(f"the MPI launcher set {var}={os.environ[var]!r}, not a rank number") from None
    return 0


def mpi_size() -> int:
    """Ranks in this process's MPI job (1 when not launched by MPI)."""
    for var in _SIZE_VARS:
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                raise RuntimeError(f"the MPI launcher set {var}={os.environ[var]!r}, not a rank count") from None
    return 1


def resolve_transport(requested: str) -> str:
    """'auto' becomes 'mpi' under an MPI launcher and 'local' otherwise."""
    if requested == "auto":
        return "mpi" if mpi_launched() else "local"
    if requested == "mpi" and not mpi_launched():
        raise RuntimeError("transport='mpi' needs the process to be started by mpiexec/mpirun with several ranks")
    return requested


def find_mpiexec() -> Optional[str]:
    """The mpich wheel's mpiexec (it must match the libmpi that pipeinfer._core links), or None."""
    candidates = [Path(sys.executable).parent / "mpiexec"]
    try:
        dist = importlib.metadata.distribution("mpich")
        for f in dist.files or ():
            if f.name == "mpiexec" and f.parent.name == "bin":
                candidates.append(Path(str(dist.locate_file(f))))
    except importlib.metadata.PackageNotFoundError:
        pass
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


_Init = TypeVar("_Init", bound=Callable[..., None])


def _error_kind(exc: BaseException) -> str:
    """The kind name a CONTROL ERROR message carries for `exc` (csrc/runtime/stage-worker.h)."""
    from pipeinfer import _core

    kinds = ((_core.GGUFError, "gguf"), (_core.ModelError, "model"), (_core.UnsupportedError, "unsupported"),
             (_core.KVCacheFullError, "kv_full"), ((ValueError, TypeError), "invalid"))
    for cls, kind in kinds:
        if isinstance(exc, cls):
            return kind
    return "other"


def report_startup_failure(exc: BaseException, transport: Any = "auto", dead_after_s: Any = 10.0,
                           heartbeat_s: float = 0.5) -> bool:
    """Tells the other ranks of this MPI job that this rank failed before joining it (with `exc`).

    Without this, a rank that fails before it creates its transport (a model file missing on one
    node, a bad argument) leaves the others waiting in MPI_Init for ever. The head then raises the
    error naming this rank; a worker that gets the head's error raises it naming rank 0. Does nothing
    (returns False) outside an MPI job, with transport="local", or once this process has joined.
    """
    try:
        if transport not in ("auto", "mpi") or resolve_transport(transport) != "mpi":
            return False
    except RuntimeError:
        return False
    if not (isinstance(dead_after_s, (int, float)) and math.isfinite(dead_after_s) and dead_after_s > 2 * heartbeat_s):
        dead_after_s = 10.0  # the failure may be this very argument: report with the default
    from pipeinfer import _core

    return _core.mpi_report_startup_failure(_error_kind(exc), f"{type(exc).__name__}: {exc}",
                                            heartbeat_s=heartbeat_s, dead_after_s=float(dead_after_s))


def reports_startup_failure(init: _Init) -> _Init:
    """Decorates ``Pipeline.__init__``: an exception it raises on an MPI rank that has not yet joined
    the job is reported to the other ranks (`report_startup_failure`) before it propagates."""

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except Exception as exc:
            report_startup_failure(exc, kwargs.get("transport", "auto"), kwargs.get("dead_after_s", 10.0))
            raise

    return wrapper  # type: ignore[return-value]
