"""The Dockerfile and .dockerignore, checked statically: there is no Docker engine here, so `docker build`
is not run. What is checked instead: the image builds from the repository root copying contracts/, libs/
and services/ (once, for every service), runs as a numeric non-root user that the compose file, the
Kubernetes manifests and the ECS templates agree on, bakes in no secrets, and its build context excludes
everything but the sources."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.deploy.kustomize import pod_spec
from tests.deploy.manifests import rendered, workloads
from tests.deploy.support import REPO_ROOT, load_compose, load_ecs, runnable

SOURCES = ("contracts/", "libs/", "services/")
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM this instruction belongs to (-1: before the first FROM)


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
    return instructions


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out (Docker semantics: last matching pattern wins, a pattern
    matching a parent folder matches everything in it, "!" re-includes, "**/" matches any depth)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(candidate, variant) for candidate in candidates for variant in variants):
            result = not negated
    return result


def ships(path: Path, package_data: dict[str, list[str]]) -> bool:
    """Whether setuptools includes `path` as package data: some enclosing package (a folder with an
    __init__.py), under its own name or "*", has a glob matching the path relative to that package."""
    for package_dir in path.parents:
        if package_dir == REPO_ROOT:
            return False
        if not (package_dir / "__init__.py").is_file():
            continue
        name = ".".join(package_dir.relative_to(REPO_ROOT).parts)
        relative = str(path.relative_to(package_dir))
        for pattern in package_data.get(name, []) + package_data.get("*", []):
            if any(fnmatch.fnmatchcase(relative, p) for p in {pattern, pattern.replace("**/", "")}):
                return True
    return False


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse((REPO_ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


class TestDockerfile:
    def test_multi_stage_with_a_clean_runtime(self, instructions: list[Instruction]) -> None:
        """A build stage and a runtime stage; the runtime copies only from the build stage (no sources)."""
        assert len([i for i in instructions if i.keyword == "FROM"]) >= 2
        runtime_copies = [i.arguments for i in final_stage(instructions) if i.keyword == "COPY"]
        assert runtime_copies and all(c.startswith("--from=") for c in runtime_copies)
        assert not [i for i in instructions if i.keyword == "ADD"], "ADD can fetch URLs and unpack: use COPY"

    def test_sources_come_from_the_repository_root(self, instructions: list[Instruction]) -> None:
        """contracts/, libs/, services/ and pyproject.toml are copied from the context root, once each."""
        sources = [i.arguments.split()[0] for i in instructions if i.keyword == "COPY" and "--from" not in i.arguments]
        for source in (*SOURCES, "pyproject.toml"):
            assert sources.count(source) == 1, source
            assert (REPO_ROOT / source).exists()

    def test_base_image_matches_the_supported_python(self, instructions: list[Instruction]) -> None:
        """The default base image is the Python minor version pyproject.toml requires."""
        requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
        minor = re.search(r">=\s*(3\.\d+)", requires)
        assert minor is not None
        default = next(i.arguments for i in instructions if i.keyword == "ARG" and i.arguments.startswith("PYTHON_"))
        assert re.fullmatch(rf"PYTHON_IMAGE=python:{re.escape(minor[1])}-slim\S*", default)

    def test_runs_as_the_numeric_non_root_user_everyone_expects(self, instructions: list[Instruction]) -> None:
        """The last USER is a numeric non-root uid:gid, the same the compose file, every Kubernetes pod and
        every ECS container use."""
        users = [i.arguments for i in final_stage(instructions) if i.keyword == "USER"]
        assert users, "the runtime stage sets no USER"
        uid, _, gid = users[-1].partition(":")
        assert uid.isdigit() and gid.isdigit() and int(uid) > 0
        compose_users = {e["user"] for e in load_compose()["services"].values() if "build" in e}
        assert compose_users == {users[-1]}
        for workload in workloads(rendered("base")):
            spec = pod_spec(workload)
            assert spec is not None
            assert spec["securityContext"]["runAsUser"] == int(uid)
        for definition in load_ecs().values():
            for container in definition["containerDefinitions"]:
                assert container["user"] == users[-1], container["name"]

    def test_no_secrets_are_baked_in(self, instructions: list[Instruction]) -> None:
        """No ARG or ENV carries a secret-looking name, and nothing copies an env file or key."""
        for instruction in instructions:
            if instruction.keyword in {"ARG", "ENV"}:
                names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", instruction.arguments) or [instruction.arguments]
                assert not [n for n in names if SECRET_NAME.search(n)], instruction
            if instruction.keyword == "COPY":
                assert ".env" not in instruction.arguments and ".pem" not in instruction.arguments

    def test_default_command_and_ports(self, instructions: list[Instruction]) -> None:
        """The default command runs a service module; the gateway, health and metrics ports are exposed."""
        command = yaml.safe_load(next(i.arguments for i in final_stage(instructions) if i.keyword == "CMD"))
        assert command[:2] == ["python", "-m"] and runnable(command[2])
        exposed = {p for i in final_stage(instructions) if i.keyword == "EXPOSE" for p in i.arguments.split()}
        assert exposed >= {"8080", "8081", "9464"}

    def test_every_data_file_ships_in_the_installed_package(self) -> None:
        """The image installs the project as a wheel, so every non-Python file the services read at run time
        (migrations, the price table, JSON Schemas) must be package data in pyproject.toml."""
        package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
        data_files = [
            path
            for root in ("contracts", "libs", "services")
            for path in sorted((REPO_ROOT / root).rglob("*"))
            if path.is_file() and path.suffix not in {".py", ".pyc", ".pyi"} and "__pycache__" not in path.parts
        ]
        assert any(p.suffix == ".sql" for p in data_files)
        missing = [str(p.relative_to(REPO_ROOT)) for p in data_files if not ships(p, package_data)]
        assert missing == [], "add these to [tool.setuptools.package-data]"


class TestDockerignore:
    def test_sources_reach_the_build(self, ignore_patterns: list[str]) -> None:
        """What the Dockerfile copies is in the context (service migrations included)."""
        for path in ("pyproject.toml", "contracts/routing.py", "libs/config.py", "services/router/__main__.py"):
            assert not ignored(path, ignore_patterns), path
        for migration in REPO_ROOT.glob("services/*/migrations/*.sql"):
            assert not ignored(str(migration.relative_to(REPO_ROOT)), ignore_patterns)

    @pytest.mark.parametrize(
        "path", [".env", ".git/config", ".venv/bin/python", "tests/conftest.py", "libs/__pycache__/x.pyc", "id_rsa"]
    )
    def test_everything_else_stays_out(self, ignore_patterns: list[str], path: str) -> None:
        """Environment files, keys, VCS data, virtualenvs, tests and bytecode never reach the daemon."""
        assert ignored(path, ignore_patterns)
