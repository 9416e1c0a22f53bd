"""Facts about the machine a measurement was taken on (recorded with every result).

This module owns only the gathering of those facts; it must not measure performance.
"""
from __future__ import annotations

import os
import platform
from typing import Any, Dict


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def machine_facts() -> Dict[str, Any]:
    """CPUs available to this process, CPU model, memory, OS kernel, the kernel ISA pipeinfer dispatched
    to, and the load average at the time (other jobs share the cores)."""
    from pipeinfer import _core

    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "cpus_available": len(os.sched_getaffinity(0)),
        "cpus_online": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_gib": round(_mem_gib(), 1),
        "machine": platform.machine(),
        "os_kernel": platform.release(),
        "python": platform.python_version(),
        "kernel_isa": _core.kernel_isa(),
        "loadavg": load,
    }
