"""The bench's /proc readings: the servers' CPU time, summed by server, children included."""

from __future__ import annotations

import os
from pathlib import Path

from tests.bench.system import servers_cpu


def _stat(proc: Path, pid: int, command: str, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> None:
    """A /proc/<pid>/stat line with the fields stat(5) numbers 14-17 set, the others zero."""
    before = ["S"] + ["0"] * 10  # state (3) … cmajflt (12), then utime (14): fields after the ")"
    after = [str(utime), str(stime), str(cutime), str(cstime)] + ["0"] * 30
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} ({command}) {' '.join(before)} {' '.join(after)}\n")


class TestServersCpu:
    def test_sums_each_servers_processes_and_their_reaped_children(self, tmp_path: Path) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        _stat(tmp_path, 10, "postgres", ticks, ticks, cutime=2 * ticks, cstime=ticks)  # the postmaster
        _stat(tmp_path, 11, "postgres", 3 * ticks, 0)  # a backend
        _stat(tmp_path, 20, "beam.smp", 4 * ticks, ticks)
        _stat(tmp_path, 30, "python", 100 * ticks, 0)  # not a server
        (tmp_path / "self").mkdir()  # not a process directory
        (tmp_path / "40").mkdir()  # a process that ended after the listing: no stat to read
        assert servers_cpu(tmp_path) == {"postgresql": 8.0, "rabbitmq": 5.0}

    def test_a_command_with_spaces_and_parentheses_is_read_whole(self, tmp_path: Path) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        _stat(tmp_path, 50, "redis-server", ticks, 0)
        _stat(tmp_path, 51, "evil) (postgres", ticks, 0)  # a command name is any text, ")" included
        assert servers_cpu(tmp_path) == {"redis": 1.0}
