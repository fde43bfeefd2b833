"""Errors of libs.content.

    ContentError        something the content gate could not do (urlextract cannot read its TLD list)
    └── RulesError      the rules file (CONTENT_RULES_FILE or the shipped one) is unreadable, not TOML, or
                        names a rule badly (unknown kind, a pattern that does not compile); also ValueError.
                        Raised at start-up: a worker never runs with rules it could not read.

Checking and sanitising never raise on what they are given: any text is either passed, or a Violation
(`checker.Violation`), or neutralised.
"""

from __future__ import annotations


class ContentError(Exception):
    pass


class RulesError(ContentError, ValueError):
    pass
