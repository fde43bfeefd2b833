"""The content gate: user-supplied prompt fields made inert, and generated texts checked against the
platform's content rules before any fan sees them.

    sanitize_data(intent.data)             # prompt-injection phrases and role markers neutralised, bounded
    check("call me 555-0100")              # Violation(rule="contact_phone", ...) or None
    Checker(load_rules(Path("rules.toml")))   # a checker on other rules

The rules ship as rules.toml beside this module (CONTENT_RULES_FILE names a file read over them); the LLM
workers use both halves (libs.llm.generation, libs.llm.prompts).
"""

from libs.content.checker import Checker, Violation, check, default_checker
from libs.content.errors import ContentError, RulesError
from libs.content.rules import PatternRule, PhoneRule, Rule, UrlRule, load_rules
from libs.content.sanitize import sanitize_data, sanitize_text, sanitize_value

__all__ = [
    "Checker",
    "ContentError",
    "PatternRule",
    "PhoneRule",
    "Rule",
    "RulesError",
    "UrlRule",
    "Violation",
    "check",
    "default_checker",
    "load_rules",
    "sanitize_data",
    "sanitize_text",
    "sanitize_value",
]
