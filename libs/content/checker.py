"""The output compliance check: does a generated text break a content rule, and which.

    checker = Checker(load_rules())
    checker.check("call me 555-0100")          # Violation(rule="contact_phone", found="555-0100", ...)
    checker.check("new set drops Friday 💕")   # None

Contact details are found by maintained libraries where one does the job: phone numbers by `phonenumbers`
(libphonenumber's PhoneNumberMatcher, at POSSIBLE leniency so that local and fictional numbers such as
"555-0100" count too — a number need not be assigned to be an invitation to call), web addresses by
`urlextract` (bare domains such as "bit.ly/xyz" included, on the IANA list of top-level domains it ships).
E-mail addresses, social handles, cashtags and street addresses are regular expressions in rules.toml: no
library finds them in free text (email-validator checks an address you already have), and as data an
operator can tighten or loosen them without a release.

Rules are checked in order and the first broken one is reported; a text is never modified here.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher
from urlextract import URLExtract  # type: ignore[import-untyped]
from urlextract.cachefile import CacheFileError  # type: ignore[import-untyped]

from libs.content import constants as c
from libs.content.errors import ContentError
from libs.content.rules import PatternRule, PhoneRule, Rule, UrlRule, load_rules


@dataclass(frozen=True)
class Violation:
    """The first rule a text broke: its name, its description (a noun phrase) and what was found."""

    rule: str
    description: str
    found: str

    def explain(self) -> str:
        """One line for a prompt or a verdict (it quotes the text, so it never goes into a log)."""
        return f'rule {self.rule} ({self.description}): "{self.found}"'


@functools.cache
def _url_extractor() -> URLExtract:
    # Loading the TLD list it ships takes a few milliseconds: once per process. Never update(): it downloads.
    # It takes a file lock in its cache directory, given here as the temporary directory (the containers'
    # only writable path, /tmp): left to choose, it tries the package folder, then creates ~/.cache, which on
    # a read-only root filesystem fails with EROFS, an error it does not expect, and the worker cannot start.
    try:
        return URLExtract(extract_email=False, extract_localhost=False, cache_dir=tempfile.gettempdir())
    except CacheFileError as exc:
        raise ContentError(f"urlextract cannot read its list of top-level domains: {exc}") from exc


def _find_phone(rule: PhoneRule, text: str) -> str | None:
    for region in rule.regions:
        for match in PhoneNumberMatcher(text, region, leniency=Leniency.POSSIBLE):
            digits = phonenumbers.normalize_digits_only(match.raw_string)
            if len(digits) >= c.MIN_PHONE_DIGITS:
                return str(match.raw_string)
    return None


def _host(url: str) -> str:
    with_scheme = url if "://" in url else f"//{url}"
    try:
        return (urlsplit(with_scheme).hostname or "").lower()
    except ValueError:  # an invalid port or IPv6 literal: a URL all the same
        return ""


def _find_url(rule: UrlRule, text: str) -> str | None:
    for url in _url_extractor().find_urls(text, only_unique=True):
        host = _host(str(url))
        if not any(host == domain or host.endswith(f".{domain}") for domain in rule.allowed_domains):
            return str(url)
    return None


def _find_pattern(rule: PatternRule, text: str) -> str | None:
    match = rule.regex.search(text)
    return match.group(0) if match else None


class Checker:
    """Checks texts against `rules`, in order. Raises ContentError when a detector cannot start."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        if any(isinstance(rule, UrlRule) for rule in self.rules):
            _url_extractor()  # at start-up, not at the first text

    def check(self, text: str) -> Violation | None:
        """The first rule `text` breaks, or None when it breaks none."""
        for rule in self.rules:
            found = self._find(rule, text)
            if found is not None:
                return Violation(rule=rule.name, description=rule.description, found=found[: c.MAX_FOUND_CHARS])
        return None

    @staticmethod
    def _find(rule: Rule, text: str) -> str | None:
        if isinstance(rule, PhoneRule):
            return _find_phone(rule, text)
        if isinstance(rule, UrlRule):
            return _find_url(rule, text)
        return _find_pattern(rule, text)


@functools.cache
def default_checker() -> Checker:
    """The process's checker: the shipped rules with CONTENT_RULES_FILE read over them (read once)."""
    return Checker(load_rules())


def check(text: str) -> Violation | None:
    """The first rule `text` breaks under the process's rules (`default_checker`), or None."""
    return default_checker().check(text)
