"""The output compliance check on the shipped rules: realistic fan messages pass, contact details,
off-platform payment, meetings and banned terms are caught and named."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.content import Checker, check, load_rules

# What a creator's chatter really sends: prices, discounts, times, dates, emoji, on-platform DMs.
LEGITIMATE = [
    "Thanks for the tip babe, new set drops Friday 💕",
    "20% off my page this weekend only",
    "only $9.99 for the full set",
    "see you at 9pm tonight",
    "see you in my DMs 😘",
    "Hey love! So nice to meet you, welcome to my page",
    "you're my number one fan",
    "New bundle: 50 pics + 3 videos for $25, today only!",
    "I posted 2 new street style sets",
    "Drop on 12/24 at 10:30, set your alarm",
    "It took a 3 day road trip to shoot this",
    "I got 1000 new fans this month, thank you!!",
    "Unlock it now for 15 tokens and tell me what you think",
    "Hi there! Thanks for being here. Want a sneak peek? [sim-kmfhikfb]",
]

# (text, the rule it breaks, what is quoted)
VIOLATIONS = [
    ("call me 555-0100", "contact_phone", "555-0100"),
    ("call me 5550100, meet 12 Main St", "contact_phone", "5550100"),
    ("text me at +1 (415) 555-2671", "contact_phone", "+1 (415) 555-2671"),
    ("my number is 415.555.2671 xx", "contact_phone", "415.555.2671"),
    ("ring me on 07700 900123", "contact_phone", "07700 900123"),
    ("my snap is @sexy_jane", "contact_social_handle", "@sexy_jane"),
    ("add me on insta", "off_platform_contact", "add me on"),
    ("find me on Telegram for more", "off_platform_contact", "find me on"),
    ("email me jane@example.com", "contact_email", "jane@example.com"),
    ("write to jane (at) example (dot) com", "contact_email", "jane (at) example (dot) com"),
    ("venmo/cashapp/paypal me", "off_platform_payment", "venmo"),
    ("tip me on Cash  App instead", "off_platform_payment", "Cash  App"),
    ("send it to my $janedoe", "off_platform_payment", "$janedoe"),
    ("meet me at 12 Main St", "meeting_in_person", "meet me"),
    ("I live at 12 Main St, come by", "meeting_in_person", "12 Main St"),
    ("let's meet up in person", "meeting_in_person", "meet up"),
    ("my other page is onlyfans.com/other", "contact_url", "onlyfans.com/other"),
    ("click bit.ly/xyz babe", "contact_url", "bit.ly/xyz"),
    ("full set at https://example.com/set", "contact_url", "https://example.com/set"),
    ("dressed as a schoolgirl today", "banned_terms", "schoolgirl"),
]


class TestDefaults:
    @pytest.mark.parametrize("text", LEGITIMATE)
    def test_legitimate_fan_messages_pass(self, text: str) -> None:
        """Ordinary on-platform messages — prices, percentages, times, dates, counts, emoji — break no rule."""
        assert check(text) is None

    @pytest.mark.parametrize(("text", "rule", "found"), VIOLATIONS)
    def test_violations_are_caught_and_named(self, text: str, rule: str, found: str) -> None:
        """Each realistic violation is caught by the rule it breaks, quoting what broke it."""
        violation = check(text)
        assert violation is not None
        assert (violation.rule, violation.found) == (rule, found)
        assert violation.description and rule in violation.explain() and found in violation.explain()

    def test_the_first_rule_in_order_is_the_one_named(self) -> None:
        """A text breaking several rules is reported under the first one in the file's order."""
        violation = check("meet me at 12 Main St or email jane@example.com")
        assert violation is not None and violation.rule == "contact_email"

    def test_what_a_violation_quotes_is_bounded(self) -> None:
        """A long match is quoted only in part (it goes into prompts and verdicts)."""
        violation = check("see https://example.com/" + "a" * 500)
        assert violation is not None and violation.rule == "contact_url" and len(violation.found) == 80

    def test_control_characters_and_odd_input_never_raise(self) -> None:
        """Control characters, NULs and lone surrogates are text like any other: checked, never a crash."""
        assert check("hi\x00\x1b[31m there\x7f") is None
        assert check("\ud800 call me 555-0100") is not None
        assert check("") is None


class TestAllowedDomains:
    def test_an_allowed_domain_and_its_subdomains_may_be_linked(self, tmp_path: Path) -> None:
        """A url rule's allowed_domains lets the creator's own site through, and only it."""
        override = tmp_path / "rules.toml"
        override.write_text(
            '[[rule]]\nname = "contact_url"\nkind = "url"\ndescription = "a link"\nallowed_domains = ["OnlyFans.com"]\n'
        )
        checker = Checker(load_rules(override, environ={}))
        assert checker.check("my page: onlyfans.com/jane and www.onlyfans.com/jane") is None
        violation = checker.check("or notonlyfans.com/jane")
        assert violation is not None and violation.found == "notonlyfans.com/jane"
