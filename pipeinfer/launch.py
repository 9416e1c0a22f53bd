"""How this process was started: alone (local transport) or as one rank of an MPI job.

Reads the launcher's environment only; MPI itself is initialised by the native transport when a
pipeline is created.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path
from typing import Optional

_RANK_VARS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_NTASKS")


def mpi_launched() -> bool:
    """True if an MPI launcher (mpiexec, mpirun, srun) started this process with more than one rank."""
    for var in _SIZE_VARS:
        if var in os.environ:
            try:
                return int(os.environ[var]) > 1
            except ValueError:
                return False
    return any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK"))


def mpi_rank() -> int:
    """This process's rank in the MPI job (0 when not launched by MPI)."""
    for var in _RANK_VARS:
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                raise RuntimeError(f"the MPI launcher set {var}={os.environ[var]!r}, not a rank number") from None
    return 0


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
                candidates.append(Path(dist.locate_file(f)))
    except importlib.metadata.PackageNotFoundError:
        pass
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None
