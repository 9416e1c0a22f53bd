"""Slow links for MPI runs: network namespaces joined by veth pairs, shaped with tc (bench/netem/*.sh).

This module owns the Python side of link emulation: the link profiles of the experiments, finding the
scripts of a source checkout, bringing the namespaces up and down (root only), and the mpiexec prefix and
environment that run each rank inside its namespace with MPICH on TCP. The shell scripts own the actual
`ip`/`tc` commands; this module never changes the network itself.

Why namespaces: ranks on one host talk through shared memory, which `tc` cannot slow down. With
MPIR_CVAR_NOLOCAL=1 and the ch4:ofi netmod on libfabric's tcp provider (FI_PROVIDER=tcp), MPICH sends
everything over sockets; every rank lives in its own namespace pi-eval-<rank> whose only interface
(pie0, 198.18.0.<rank+1>/24) is shaped on egress (reliability.md section 3.4).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["LinkProfile", "PROFILES", "scripts_dir", "check_capability", "setup", "teardown", "rank_prefix",
           "tcp_env", "rate_bps", "delay_s"]


@dataclass(frozen=True)
class LinkProfile:
    """A link: tc rate (e.g. "1gbit", "-" for unlimited) and one-way delay (e.g. "0.5ms", "-")."""

    name: str
    rate: str = "-"
    delay: str = "-"

    def as_dict(self) -> Dict[str, str]:
        return asdict(self)


PROFILES = [
    LinkProfile("tcp", "-", "-"),
    LinkProfile("10gbit+0.05ms", "10gbit", "0.05ms"),
    LinkProfile("1gbit+0.5ms", "1gbit", "0.5ms"),
    LinkProfile("100mbit+2ms", "100mbit", "2ms"),
]

_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}


def rate_bps(rate: str) -> float:
    """"100mbit" -> 1e8 bits per second; "-" -> inf."""
    if rate == "-":
        return float("inf")
    r = rate.lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if r.endswith(unit):
            try:
                return float(r[: -len(unit)]) * _UNITS[unit]
            except ValueError:
                break
    raise ValueError(f"link rate {rate!r}: expected a number followed by bit, kbit, mbit, gbit or tbit")


def delay_s(delay: str) -> float:
    """"0.5ms" -> 0.0005; "-" -> 0."""
    if delay == "-":
        return 0.0
    d = delay.lower()
    for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if d.endswith(unit):
            try:
                return float(d[: -len(unit)]) * scale
            except ValueError:
                break
    raise ValueError(f"link delay {delay!r}: expected a number followed by us, ms or s")


def scripts_dir() -> Optional[Path]:
    """bench/netem of the source checkout this package was imported from (None if not there)."""
    env = os.environ.get("PIPEINFER_NETEM_DIR")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[2] / "bench" / "netem")
    for c in cands:
        if (c / "setup.sh").is_file() and (c / "rank-wrapper.sh").is_file():
            return c
    return None


def check_capability() -> Optional[str]:
    """None if link emulation can be attempted here, else the reason it cannot."""
    if scripts_dir() is None:
        return "bench/netem/setup.sh not found (link emulation needs a source checkout)"
    if os.geteuid() != 0:
        return "link emulation needs root (network namespaces and tc need CAP_NET_ADMIN/CAP_SYS_ADMIN)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"'{tool}' not found (apt-get install -y iproute2)"
    return None


def setup(n_ranks: int, profile: LinkProfile) -> str:
    """Creates the namespaces for n_ranks with this link; returns the shaping used: "netem", "tbf"
    (rate only: the kernel has no netem, delays are not applied) or "none". Raises RuntimeError with the
    script's message on failure."""
    d = scripts_dir()
    if d is None:
        raise RuntimeError("bench/netem/setup.sh not found")
    p = subprocess.run(["bash", str(d / "setup.sh"), str(n_ranks), profile.rate, profile.delay],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"bench/netem/setup.sh {n_ranks} {profile.rate} {profile.delay} failed "
                           f"(status {p.returncode}): {p.stderr.strip()}")
    shaping = "none"
    for line in p.stdout.splitlines():
        if line.startswith("shaping="):
            shaping = line.split("=", 1)[1].strip()
    return shaping


def teardown() -> None:
    d = scripts_dir()
    if d is not None:
        subprocess.run(["bash", str(d / "teardown.sh")], capture_output=True, text=True, timeout=60)


def rank_prefix() -> List[str]:
    """What goes between `mpiexec -n N` and the program so that each rank runs in its namespace."""
    d = scripts_dir()
    if d is None:
        raise RuntimeError("bench/netem/rank-wrapper.sh not found")
    return ["bash", str(d / "rank-wrapper.sh")]


def tcp_env() -> Dict[str, str]:
    """MPICH (ch4) on libfabric's TCP provider, no shared memory between ranks, over interface pie0."""
    return {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp", "MPIR_CVAR_NOLOCAL": "1", "FI_TCP_IFACE": "pie0"}
