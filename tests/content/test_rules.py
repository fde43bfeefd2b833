"""Loading the content rules: the shipped defaults, CONTENT_RULES_FILE read over them, and bad files
refused when loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.content import Checker, PatternRule, RulesError, load_rules
from libs.content.constants import DEFAULT_RULES_FILE, RULES_FILE_ENV

DEFAULT_NAMES = [
    "contact_email",
    "contact_phone",
    "contact_url",
    "contact_social_handle",
    "off_platform_contact",
    "off_platform_payment",
    "meeting_in_person",
    "banned_terms",
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestDefaults:
    def test_the_shipped_file_holds_every_default_rule_in_order(self) -> None:
        """Without CONTENT_RULES_FILE the rules are the shipped rules.toml's, in the file's order."""
        assert [rule.name for rule in load_rules(environ={})] == DEFAULT_NAMES

    def test_the_shipped_file_is_package_data(self) -> None:
        """rules.toml sits beside the package, so a wheel install ships it (pyproject's package-data)."""
        assert DEFAULT_RULES_FILE.is_file() and DEFAULT_RULES_FILE.parent.name == "content"


class TestOverride:
    def test_the_environment_names_a_file_read_over_the_defaults(self, tmp_path: Path) -> None:
        """CONTENT_RULES_FILE: a rule of a default's name replaces it in place, a new one is appended."""
        path = write(
            tmp_path,
            """
            [[rule]]
            name = "banned_terms"
            kind = "pattern"
            description = "a word this agency bans"
            terms = ["sugar daddy"]

            [[rule]]
            name = "competitors"
            kind = "pattern"
            description = "another fan platform"
            terms = ["fansly", "fanvue"]
            """,
        )
        rules = load_rules(environ={RULES_FILE_ENV: str(path)})
        assert [rule.name for rule in rules] == [*DEFAULT_NAMES, "competitors"]
        checker = Checker(rules)
        assert checker.check("looking for a Sugar Daddy") is not None
        assert checker.check("dressed as a schoolgirl") is None  # the default's terms are replaced, not merged
        violation = checker.check("I'm on Fansly too")
        assert violation is not None and violation.rule == "competitors"
        assert violation.description == "another fan platform"

    def test_enabled_false_switches_a_default_off(self, tmp_path: Path) -> None:
        """A rule given with enabled = false is dropped: its texts pass."""
        path = write(tmp_path, '[[rule]]\nname = "contact_url"\nkind = "url"\ndescription = "x"\nenabled = false\n')
        rules = load_rules(path, environ={})
        assert "contact_url" not in [rule.name for rule in rules]
        assert Checker(rules).check("bit.ly/xyz") is None

    def test_an_explicit_path_wins_over_the_environment(self, tmp_path: Path) -> None:
        """load_rules(path) reads that file, whatever CONTENT_RULES_FILE says."""
        path = write(tmp_path, '[[rule]]\nname = "x"\nkind = "pattern"\ndescription = "x"\nterms = ["x"]\n')
        rules = load_rules(path, environ={RULES_FILE_ENV: str(tmp_path / "missing.toml")})
        assert rules[-1].name == "x"

    def test_terms_match_whole_words_in_any_case_and_spacing(self, tmp_path: Path) -> None:
        """A term is a whole word or phrase: "cash app" finds "CASH   app", never "cashapple"."""
        path = write(tmp_path, '[[rule]]\nname = "t"\nkind = "pattern"\ndescription = "t"\nterms = ["cash app"]\n')
        (rule,) = [r for r in load_rules(path, environ={}) if r.name == "t"]
        assert isinstance(rule, PatternRule)
        assert rule.regex.search("pay by CASH   app") and not rule.regex.search("a cashapple")


class TestBadFiles:
    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("[[rule]\nname=", "content rules"),
            ('[[rule]]\nname = "x"\nkind = "smell"\ndescription = "x"\n', "kind"),
            ('[[rule]]\nname = "x"\nkind = "pattern"\ndescription = "x"\npatterns = ["("]\n', "does not compile"),
            ('[[rule]]\nname = "x"\nkind = "pattern"\ndescription = "x"\n', "needs terms or patterns"),
            ('[[rule]]\nname = "x"\nkind = "phone"\ndescription = "x"\nregions = ["ZZ"]\n', "unknown region"),
            ('[[rule]]\nname = "x"\nkind = "url"\ndescription = "x"\ncolour = "red"\n', "colour"),
            ('[[rule]]\nname = "Bad Name"\nkind = "url"\ndescription = "x"\n', "name"),
            ('[[rule]]\nname = "x"\nkind = "url"\ndescription = "x"\n[[rule]]\nname = "x"\nkind = "url"\n'
             'description = "y"\n', "named twice"),
        ],
    )  # fmt: skip
    def test_a_bad_rules_file_is_refused_naming_the_problem(self, tmp_path: Path, text: str, says: str) -> None:
        """Bad TOML, an unknown kind or field, a pattern that does not compile, an unknown region, a bad or
        repeated name: RulesError naming the file and the problem."""
        path = write(tmp_path, text)
        with pytest.raises(RulesError) as caught:
            load_rules(path, environ={})
        assert str(path) in str(caught.value) and says in str(caught.value)

    def test_a_missing_file_is_refused(self, tmp_path: Path) -> None:
        """CONTENT_RULES_FILE naming a file that does not exist: RulesError, never the defaults silently."""
        with pytest.raises(RulesError, match="cannot be read"):
            load_rules(environ={RULES_FILE_ENV: str(tmp_path / "nope.toml")})
