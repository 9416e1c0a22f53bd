"""An emulated cluster on one machine: every MPI rank in its own CPU cgroup with a quota (a slower node).

This module owns the cgroups of one emulated cluster: it creates one group per rank (cgroup v1 `cpu`
with `cpu.cfs_quota_us` / `cpu.cfs_period_us`, plus a `cpuacct` group for its CPU time where that
controller is mounted separately; or cgroup v2 `cpu.max` / `cpu.stat`), the command prefix that puts a
rank into its group before it execs (it reads its rank from the launcher's environment), the CPU time
each group used, the check that no rank exceeded its share, and the removal of the groups. It must
not run generations (cluster.py does) and needs root: without write access to the cgroup tree it
raises ClusterError saying so.

Why these settings: a short period (default 10 ms) keeps throttling from adding bursts of tens of ms
of latency to a rank; the parent group gets the largest CPU weight so that other processes on the
machine (builds, editors) cannot take a rank's share while it has quota left. Memory bandwidth stays
shared; each rank is compute-throttled well below it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["ClusterError", "CgroupCluster", "detect", "RANK_ENV_VARS"]

V1_CPU = Path("/sys/fs/cgroup/cpu")
V1_CPUACCT = Path("/sys/fs/cgroup/cpuacct")
V2_ROOT = Path("/sys/fs/cgroup")
# Environment variables launchers set to a process's rank (MPICH/hydra, PMIx/Open MPI, Slurm).
RANK_ENV_VARS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
_MAX_WEIGHT_V1 = 262144  # cpu.shares upper bound
_MAX_WEIGHT_V2 = 10000  # cpu.weight upper bound


class ClusterError(RuntimeError):
    """The emulated cluster cannot be set up here (not root, no cpu controller, a bad quota)."""


def detect() -> str:
    """"v1" (a cgroup v1 `cpu` hierarchy), "v2" (cgroup2 with the cpu controller) or raises ClusterError."""
    if (V1_CPU / "cpu.cfs_quota_us").exists():
        return "v1"
    ctl = V2_ROOT / "cgroup.controllers"
    if ctl.exists() and "cpu" in ctl.read_text().split():
        return "v2"
    raise ClusterError("no CPU cgroup controller found (neither /sys/fs/cgroup/cpu nor cgroup2 with 'cpu')")


@dataclass
class CgroupCluster:
    """One group per rank with a CPU quota; use as a context manager (the groups go on exit).

    Args:
        quotas: CPUs per rank (e.g. 0.45), one entry per rank: heterogeneous nodes get different values.
        period_us: the CFS period (1000..1000000 µs; <= 10000 recommended).
        name: the parent group's name (unique per process by default).

    Attributes:
        version: "v1" or "v2".
        groups: per rank, the directories written (cpu, and cpuacct on v1 when separate).
    """

    quotas: Sequence[float]
    period_us: int = 10000
    name: str = field(default_factory=lambda: f"pipeinfer-cluster-{os.getpid()}")
    version: str = ""
    groups: List[List[Path]] = field(default_factory=list)
    _usage0: List[float] = field(default_factory=list)
    _t0: float = 0.0

    def __post_init__(self) -> None:
        self.quotas = [float(q) for q in self.quotas]
        if not self.quotas:
            raise ClusterError("an emulated cluster needs at least one rank")
        for i, q in enumerate(self.quotas):
            if not 0.01 <= q <= (os.cpu_count() or 1):
                raise ClusterError(f"quota of rank {i} must be in [0.01, {os.cpu_count()}] CPUs, got {q}")
        if not 1000 <= int(self.period_us) <= 1_000_000:
            raise ClusterError(f"period_us must be in [1000, 1000000], got {self.period_us}")

    # ------------------------------------------------------------------------------------ lifetime
    def __enter__(self) -> "CgroupCluster":
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _parents(self) -> List[Path]:
        if self.version == "v2":
            return [V2_ROOT / self.name]
        out = [V1_CPU / self.name]
        if V1_CPUACCT.exists() and V1_CPUACCT.resolve() != V1_CPU.resolve():
            out.append(V1_CPUACCT / self.name)
        return out

    def create(self) -> None:
        """Creates the groups (ClusterError naming the reason when it cannot, e.g. without root)."""
        self.version = detect()
        if os.geteuid() != 0:
            raise ClusterError("the emulated cluster needs root (it writes CPU quotas under /sys/fs/cgroup)")
        try:
            for parent in self._parents():
                parent.mkdir(exist_ok=True)
            self._write_parent_weight()
            self.groups = []
            for r, q in enumerate(self.quotas):
                dirs = [p / f"rank{r}" for p in self._parents()]
                for d in dirs:
                    d.mkdir(exist_ok=True)
                self._write_quota(dirs[0], q)
                self.groups.append(dirs)
        except OSError as e:
            self.remove()
            raise ClusterError(f"cannot set up the CPU cgroups: {e}") from None

    def _write_parent_weight(self) -> None:
        parent = self._parents()[0]
        if self.version == "v2":
            sub = V2_ROOT / "cgroup.subtree_control"
            if "cpu" not in sub.read_text().split():
                sub.write_text("+cpu")
            (parent / "cgroup.subtree_control").write_text("+cpu")
            (parent / "cpu.weight").write_text(str(_MAX_WEIGHT_V2))
        else:
            (parent / "cpu.shares").write_text(str(_MAX_WEIGHT_V1))

    def _write_quota(self, d: Path, cpus: float) -> None:
        quota = max(1000, int(round(cpus * self.period_us)))
        if self.version == "v2":
            (d / "cpu.max").write_text(f"{quota} {self.period_us}")
        else:
            (d / "cpu.cfs_period_us").write_text(str(self.period_us))
            (d / "cpu.cfs_quota_us").write_text(str(quota))

    def remove(self) -> None:
        """Moves any process left in the groups to the root and removes the groups (idempotent)."""
        for dirs in self.groups:
            for d in dirs:
                _evacuate(d, d.parent.parent)
                _rmdir(d)
        for parent in self._parents() if self.version else []:
            _rmdir(parent)
        self.groups = []

    # ----------------------------------------------------------------------------------- the ranks
    def rank_prefix(self) -> List[str]:
        """A command prefix for mpiexec: the rank's process joins its groups, then execs the rest."""
        parents = " ".join(str(p) for p in self._parents())
        env = " ".join(f"${{{v}:-}}" for v in RANK_ENV_VARS)
        script = (
            f"r=; for v in {env}; do [ -n \"$v\" ] && r=$v && break; done; "
            "[ -n \"$r\" ] || { echo 'pipeinfer cluster: no rank in the environment' >&2; exit 97; }; "
            f"for p in {parents}; do echo $$ > \"$p/rank$r/cgroup.procs\" || exit 98; done; "
            "exec \"$@\""
        )
        return ["sh", "-c", script, "pipeinfer-rank"]

    def start_accounting(self) -> None:
        """Marks the start of a measured interval (CPU time and wall time)."""
        self._usage0 = self.cpu_seconds()
        self._t0 = time.monotonic()

    def cpu_seconds(self) -> List[float]:
        """CPU seconds used by each rank's group so far."""
        out = []
        for dirs in self.groups:
            if self.version == "v2":
                stat = dict(line.split() for line in (dirs[0] / "cpu.stat").read_text().splitlines() if line)
                out.append(int(stat["usage_usec"]) / 1e6)
            elif len(dirs) > 1:
                out.append(int((dirs[1] / "cpuacct.usage").read_text()) / 1e9)
            else:
                out.append(float("nan"))
        return out

    def throttled(self) -> List[Dict[str, float]]:
        """Per rank: CFS periods, throttled periods and throttled seconds so far."""
        out = []
        for dirs in self.groups:
            stat = dict(line.split() for line in (dirs[0] / "cpu.stat").read_text().splitlines() if line)
            if self.version == "v2":
                out.append({"periods": float(stat.get("nr_periods", 0)), "throttled": float(stat.get("nr_throttled", 0)),
                            "throttled_s": int(stat.get("throttled_usec", 0)) / 1e6})
            else:
                out.append({"periods": float(stat.get("nr_periods", 0)), "throttled": float(stat.get("nr_throttled", 0)),
                            "throttled_s": int(stat.get("throttled_time", 0)) / 1e9})
        return out

    def check_shares(self, tolerance: float = 0.1) -> Dict[str, object]:
        """CPU used per rank since start_accounting against its share of the wall time.

        Returns {"wall_s", "cpu_s", "share_used" (cpu / wall / quota per rank), "ok"}: ok is False when
        a rank used more than (1 + tolerance) of its quota, i.e. the emulation leaked CPU.
        """
        wall = time.monotonic() - self._t0
        used = [b - a for a, b in zip(self._usage0, self.cpu_seconds())]
        share = [u / wall / q if wall > 0 else 0.0 for u, q in zip(used, self.quotas)]
        ok = all(s <= 1.0 + tolerance for s in share if s == s)
        return {"wall_s": wall, "cpu_s": used, "share_used": share, "ok": ok}


def _evacuate(group: Path, root: Path) -> None:
    try:
        pids = (group / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        try:
            (root / "cgroup.procs").write_text(pid)
        except OSError:
            pass


def _rmdir(d: Path) -> None:
    for _ in range(50):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)  # a process is still leaving the group
