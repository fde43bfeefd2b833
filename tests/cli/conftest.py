"""Helpers of the `ho` tests: the CLI run in-process (`main(argv)`, output captured) or as the installed
command in a process of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.cli.main import main
from tests.gateway.conftest import gw, make_gateway  # noqa: F401 (fixtures: a real gateway on the memory bus)
from tests.gateway.test_control import stack  # noqa: F401 (fixture: that gateway with the real router behind it)
from tests.integration.stack import ROOT

# The console script `make setup` installs beside the interpreter (pyproject's [project.scripts]).
HO = Path(sys.executable).with_name("ho")
SECRET = "a-gateway-secret-for-the-cli-tests-0123456789"
# A log line of a gateway running in the test's process (structlog's console format shares stdout with `ho`).
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


@dataclass
class Ran:
    code: int
    out: str
    err: str


def ho(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    """`ho argv` in this process; argparse's own refusals (SystemExit) become their exit status."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


def ho_process(*argv: str, env: dict[str, str] | None = None) -> Ran:
    """The installed `ho` command as a process of its own, with `env` over a clean environment."""
    assert HO.exists(), f"{HO} is missing: run `make setup` (pip install -e .) to install the console script"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "HO_", "DATABASE_", "BUS_"))}
    done = subprocess.run(
        [str(HO), *argv], cwd=ROOT, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def printed(out: str) -> list[str]:
    """The lines `ho` printed, without the log lines of a gateway running in this process."""
    return [line for line in out.splitlines() if not LOG_LINE.match(line)]
