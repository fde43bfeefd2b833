"""The lock files (requirements/runtime.txt, requirements/dev.txt), checked offline: they pin what
pyproject.toml pins, every package with its hashes, and the image and `make` install from them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.support import REPO_ROOT
from tests.deploy.test_dockerfile import ignored

RUNTIME_LOCK = REPO_ROOT / "requirements" / "runtime.txt"
DEV_LOCK = REPO_ROOT / "requirements" / "dev.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str]) -> dict[str, str]:
    """{canonical name: version} of `name[extras]==version` lines."""
    found: dict[str, str] = {}
    for line in requirements:
        match = PIN.match(line.strip())
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of hashes)} of a lock file written by `uv pip compile --generate-hashes`."""
    entries: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonical(match.group(1))
            entries[current] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
    return entries


PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


class TestLockFiles:
    @pytest.mark.parametrize(
        ("lock", "declared"),
        [
            (RUNTIME_LOCK, PROJECT["dependencies"]),
            (DEV_LOCK, PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]),
        ],
        ids=["runtime", "dev"],
    )
    def test_every_pin_of_pyproject_is_locked_at_its_version(self, lock: Path, declared: list[str]) -> None:
        """A dependency changed in pyproject.toml without `make lock` fails here, naming it."""
        entries = locked(lock)
        stale = {name: version for name, version in pins(declared).items() if entries.get(name, ("",))[0] != version}
        assert stale == {}, "run `make lock` and commit requirements/"

    @pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
    def test_every_locked_package_has_hashes(self, lock: Path) -> None:
        """pip's --require-hashes refuses a lock file with an entry lacking them."""
        entries = locked(lock)
        assert entries and [name for name, (_, hashes) in entries.items() if hashes == 0] == []

    def test_the_runtime_set_is_the_dev_sets_part_at_the_same_versions(self) -> None:
        """`make run` and `make test` agree on every package they share, and the runtime set is lean."""
        runtime, dev = locked(RUNTIME_LOCK), locked(DEV_LOCK)
        assert {name: dev.get(name) for name in runtime} == runtime
        assert len(runtime) < len(dev) * 0.6
        assert "pytest" not in runtime and "mypy" not in runtime


class TestInstallsUseTheLock:
    def test_the_image_installs_the_runtime_lock_with_hashes(self) -> None:
        """The Dockerfile copies requirements/runtime.txt and installs it with --require-hashes, and the
        build context lets it in."""
        dockerfile = (REPO_ROOT / "Dockerfile").read_text()
        assert "requirements/runtime.txt" in dockerfile and "--require-hashes -r runtime.txt" in dockerfile
        patterns = [
            line.strip()
            for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert not ignored("requirements/runtime.txt", patterns)
        assert ignored("requirements/dev.txt", patterns)

    def test_make_run_installs_the_runtime_set_and_make_setup_the_dev_set(self) -> None:
        """`make run` depends on the runtime install only; `make setup` (test, lint) on the dev lock."""
        makefile = (REPO_ROOT / "Makefile").read_text()
        assert re.search(r"^run: runtime$", makefile, re.MULTILINE)
        assert re.search(r"^\$\(STAMP\): pyproject.toml \$\(DEV_LOCK\)$", makefile, re.MULTILINE)
        assert "--require-hashes -r $(1)" in makefile
