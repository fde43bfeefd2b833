"""The content rules: which rules a text is checked against, read from TOML.

    rules = load_rules()            # libs/content/rules.toml, with CONTENT_RULES_FILE read over it
    rules = load_rules(Path("x.toml"), environ={})   # the defaults, with x.toml read over them

The shape of the file and what each kind of rule finds are documented in the shipped rules.toml. A rule
of the override file replaces the default of the same name (`enabled = false` switches it off); other
rules are appended. Anything wrong — an unreadable file, bad TOML, an unknown kind or field, a pattern
that does not compile — raises RulesError when the rules are loaded, so a worker refuses to start rather
than run with rules it could not read.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

import phonenumbers
import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from libs.content import constants as c
from libs.content.errors import RulesError

_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1, max_length=200)
    enabled: bool = True


class PhoneRule(_Rule):
    kind: Literal["phone"]
    regions: tuple[str, ...] = ("US",)

    @pydantic.field_validator("regions")
    @classmethod
    def _known_regions(cls, regions: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown region(s) {', '.join(unknown)}")
        return regions


class UrlRule(_Rule):
    kind: Literal["url"]
    allowed_domains: tuple[str, ...] = ()

    @pydantic.field_validator("allowed_domains")
    @classmethod
    def _lowercase(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip().lower().strip(".") for d in domains if d.strip())


class PatternRule(_Rule):
    kind: Literal["pattern"]
    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    _regex: re.Pattern[str] = PrivateAttr()

    @pydantic.model_validator(mode="after")
    def _compile(self) -> PatternRule:
        """One case-insensitive expression: the terms as whole words with any spacing, then the patterns."""
        words = [r"\s+".join(re.escape(word) for word in term.split()) for term in self.terms if term.strip()]
        parts = [rf"(?<!\w)(?:{'|'.join(words)})(?!\w)"] if words else []
        parts += [f"(?:{pattern})" for pattern in self.patterns]
        if not parts:
            raise ValueError("a pattern rule needs terms or patterns")
        try:
            self._regex = re.compile("|".join(parts), re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"a pattern does not compile: {exc}") from exc
        return self

    @property
    def regex(self) -> re.Pattern[str]:
        return self._regex


Rule = Annotated[PhoneRule | UrlRule | PatternRule, Field(discriminator="kind")]


class _RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: list[Rule] = Field(default_factory=list)


def parse_rules(text: str, source: str) -> list[Rule]:
    """The rules of one TOML document (`source` names it in errors)."""
    try:
        document = tomllib.loads(text)
        rules = _RulesFile.model_validate(document).rule
    except (tomllib.TOMLDecodeError, pydantic.ValidationError) as exc:
        raise RulesError(f"content rules {source}: {exc}") from exc
    names = [rule.name for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RulesError(f"content rules {source}: rule(s) named twice: {', '.join(duplicates)}")
    return rules


def read_rules(path: Path) -> list[Rule]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"content rules {path}: cannot be read: {exc}") from exc
    return parse_rules(text, str(path))


def merge(defaults: Sequence[Rule], overrides: Sequence[Rule]) -> list[Rule]:
    """`defaults` with each override replacing the default of its name, the new ones after; disabled dropped."""
    by_name = {rule.name: rule for rule in overrides}
    merged = [by_name.pop(rule.name, rule) for rule in defaults]
    merged += [rule for rule in overrides if rule.name in by_name]
    return [rule for rule in merged if rule.enabled]


def load_rules(path: Path | None = None, *, environ: Mapping[str, str] = os.environ) -> list[Rule]:
    """The shipped defaults, with `path` (else the file CONTENT_RULES_FILE names, if set) read over them."""
    rules = read_rules(c.DEFAULT_RULES_FILE)
    if path is None and environ.get(c.RULES_FILE_ENV):
        path = Path(environ[c.RULES_FILE_ENV])
    if path is not None:
        rules = merge(rules, read_rules(path))
    return rules
