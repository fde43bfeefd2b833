"""What the bench reads from /proc: the machine it ran on, and each process's CPU time and peak memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """nproc, CPU model and total memory: numbers from a 2-core VM and a 16-core laptop are not comparable."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = next(int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:"))
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "mem_gib": round(total_kib / 1024**2, 1)}


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a live process."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak
