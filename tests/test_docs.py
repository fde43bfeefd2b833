"""The design lives in the repository: every docs/ reference in the code and the README, and every relative link
between the documents, resolves to a file (and to a heading, when it names an anchor)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("contracts", "libs", "services", "tests", "deploy")
SUFFIXES = {".py", ".sql", ".toml", ".yaml", ".yml", ".md", ".sh", ".txt", ".cfg", ".ini"}
ROOT_FILES = ("Makefile", "README.md", "pyproject.toml", "Dockerfile", "docker-compose.yml")
DOCS_REFERENCE = re.compile(r"(?<![\w/.])docs/[\w./-]*\w(?:#[\w-]+)?")
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
# An outside design document's section numbers: no reader of a clone can follow them.
UNREACHABLE = re.compile("DESIGN" + r" §")
# Applied migrations are checksummed byte for byte (libs/storage/migrator.py): editing even a comment would stop
# every existing database from migrating, so these keep the references they were applied with; the table at
# docs/architecture.md#older-references maps them. No other file may add one.
APPLIED_MIGRATIONS = frozenset(
    {
        "services/router/migrations/001_create_workflows.sql",
        "services/of_sender/migrations/001_create_onlyfans_messages.sql",
        "services/cost_tracker/migrations/001_create_costs.sql",
    }
)


def _files() -> Iterator[Path]:
    for name in ROOT_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name
    for top in (*SCANNED, "docs"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                yield path


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, links and code marks reduced to their text,
    punctuation dropped, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor of a markdown file's headings (a repeated heading gets -1, -2, … as on GitHub)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    in_fence = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or not heading:
            continue
        anchor = github_anchor(heading.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return frozenset(found)


def _resolves(target: Path, anchor: str | None) -> str | None:
    """None when `target` (and `anchor` in it) exists, else what is missing."""
    if not target.exists():
        return "no such file"
    if anchor and (target.suffix != ".md" or anchor not in anchors(target)):
        return f"no heading with anchor #{anchor}"
    return None


def _docs_references() -> list[tuple[str, str]]:
    found = []
    for path in _files():
        if path == Path(__file__).resolve():
            continue
        for match in DOCS_REFERENCE.finditer(path.read_text(errors="replace")):
            found.append((str(path.relative_to(ROOT)), match.group(0)))
    return found


def _markdown_links() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for match in MARKDOWN_LINK.finditer(path.read_text()):
            target = match.group(1)
            if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto: are not ours to check
                found.append((str(path.relative_to(ROOT)), target))
    return found


class TestDocs:
    def test_the_documents_exist(self) -> None:
        """The architecture, the operations runbook, the deviations and the decision records are present."""
        for name in ("architecture.md", "operations.md", "deviations.md", "decisions/README.md"):
            assert (ROOT / "docs" / name).is_file(), name
        assert len(list((ROOT / "docs" / "decisions").glob("0*.md"))) >= 7

    def test_every_docs_reference_in_code_and_readme_resolves(self) -> None:
        """Each `docs/…[#anchor]` written in the code, the deployment files or the README names a file that
        exists, and a heading in it when it names an anchor."""
        references = _docs_references()
        assert references, "no docs/ reference found: the scan is broken"
        broken = []
        for where, ref in references:
            path, _, anchor = ref.partition("#")
            problem = _resolves(ROOT / path, anchor or None)
            if problem:
                broken.append(f"{where}: {ref}: {problem}")
        assert broken == []

    def test_every_relative_link_between_documents_resolves(self) -> None:
        """Every relative markdown link in the README and docs/ reaches a file, and its heading if it names one."""
        links = _markdown_links()
        assert links
        broken = []
        for where, target in links:
            path, _, anchor = target.partition("#")
            resolved = (ROOT / where).parent / path if path else ROOT / where
            problem = _resolves(resolved.resolve(), anchor or None)
            if problem:
                broken.append(f"{where}: {target}: {problem}")
        assert broken == []

    def test_no_reference_to_an_outside_design_document_remains(self) -> None:
        """No comment cites a design document's sections that a clone does not contain (applied migrations,
        which may not change, aside)."""
        left = [
            f"{path.relative_to(ROOT)}:{n}"
            for path in _files()
            if str(path.relative_to(ROOT)) not in APPLIED_MIGRATIONS
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if UNREACHABLE.search(line)
        ]
        assert left == []

    @pytest.mark.parametrize(
        ("heading", "anchor"),
        [
            ("The `ho` CLI", "the-ho-cli"),
            ("Benchmarks, chaos and fuzzing", "benchmarks-chaos-and-fuzzing"),
            ("0001 — PostgreSQL, one schema per service", "0001--postgresql-one-schema-per-service"),
            ("See [the bus](x.md) now", "see-the-bus-now"),
        ],
    )
    def test_anchors_are_computed_as_github_does(self, heading: str, anchor: str) -> None:
        """Code marks, punctuation and dashes are dropped, spaces become hyphens, a link keeps its text."""
        assert github_anchor(heading) == anchor
