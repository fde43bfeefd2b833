"""What the bench reads from /proc: the machine it ran on, each process's CPU time and peak memory, and the
CPU time of the servers the stack talks to when they run on this machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The servers a run uses, by the command name their processes have in /proc/<pid>/stat.
SERVER_COMMANDS = {"beam.smp": "rabbitmq", "postgres": "postgresql", "redis-server": "redis"}


def machine() -> dict[str, Any]:
    """nproc, CPU model and total memory: numbers from a 2-core VM and a 16-core laptop are not comparable."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = next(int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:"))
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "mem_gib": round(total_kib / 1024**2, 1)}


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a live process."""
    fields = _fields_after_command(Path(f"/proc/{pid}/stat").read_text())
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def servers_cpu(proc: Path = Path("/proc")) -> dict[str, float]:
    """CPU seconds so far of this machine's RabbitMQ, PostgreSQL and Redis, by server (a server that does not
    run here is absent). Children's time is included: a PostgreSQL backend that ended (a closed connection,
    an autovacuum worker) is counted in its postmaster's once reaped, so the server's sum keeps it."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended since the listing
            continue
        server = SERVER_COMMANDS.get(stat[stat.find("(") + 1 : stat.rfind(")")])
        if server is None:
            continue
        fields = _fields_after_command(stat)  # utime, stime, cutime, cstime: fields 14-17 of proc_pid_stat(5)
        totals[server] = totals.get(server, 0.0) + sum(int(f) for f in fields[11:15]) / ticks
    return totals


def _fields_after_command(stat: str) -> list[str]:
    """A /proc/<pid>/stat line's fields after "(command)" (field 3 on): the command may hold spaces and ")"."""
    return stat.rsplit(")", 1)[1].split()
