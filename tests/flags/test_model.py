"""The flags' evaluation (kill switch, percentage rollout, allow list), validation and stored form."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from libs.flags import Flags, FlagSettings, FlagsInvalid, FlagState, FlagUpdate, bucket, in_rollout
from libs.flags import constants as c

USERS = [f"user-{i}" for i in range(5000)]


class TestRollout:
    def test_buckets_are_pinned_across_releases(self) -> None:
        """The bucket of a user never changes between releases (a changed hash would reshuffle a rollout)."""
        assert [bucket(c.ROLLOUT_FLAG, u) for u in ("creator-1", "alice", "bob")] == [91, 17, 90]

    def test_a_user_is_consistently_in_or_out(self) -> None:
        """The same (flag, user) gets the same answer every time, whatever else was evaluated in between."""
        first = [in_rollout(c.ROLLOUT_FLAG, u, 30) for u in USERS]
        in_rollout("other", "x", 50)
        assert [in_rollout(c.ROLLOUT_FLAG, u, 30) for u in USERS] == first

    def test_raising_the_percentage_only_adds_users(self) -> None:
        """Every user in at p % is still in at every higher percentage."""
        previous: set[str] = set()
        for percentage in range(101):
            admitted = {u for u in USERS if in_rollout(c.ROLLOUT_FLAG, u, percentage)}
            assert previous <= admitted, percentage
            previous = admitted

    def test_zero_admits_nobody_and_hundred_everybody(self) -> None:
        """0 % is nobody, 100 % is everybody."""
        assert not any(in_rollout(c.ROLLOUT_FLAG, u, 0) for u in USERS)
        assert all(in_rollout(c.ROLLOUT_FLAG, u, 100) for u in USERS)

    @pytest.mark.parametrize("percentage", [1, 10, 25, 50, 90])
    def test_the_share_admitted_is_close_to_the_percentage(self, percentage: int) -> None:
        """Over 5,000 users the share admitted is within 2 points of the percentage."""
        share = sum(in_rollout(c.ROLLOUT_FLAG, u, percentage) for u in USERS) / len(USERS)
        assert abs(share * 100 - percentage) < 2

    def test_each_flag_name_picks_its_own_users(self) -> None:
        """Two flags at 50 % do not admit the same half (the name is part of the hash)."""
        a = {u for u in USERS if in_rollout("feature-a", u, 50)}
        b = {u for u in USERS if in_rollout("feature-b", u, 50)}
        assert 0.4 < len(a & b) / len(a) < 0.6

    def test_no_other_pair_spells_the_same_text(self) -> None:
        """("ab", "c") and ("a", "bc") are different inputs to the hash (the name is length-prefixed)."""
        pairs = [("ab", f"c{i}") for i in range(200)]
        assert [bucket(f, u) for f, u in pairs] != [bucket(f[:1], f[1:] + u) for f, u in pairs]


class TestFlags:
    def test_defaults_admit_everyone(self) -> None:
        """Without changes: on, 100 %, so every user is admitted."""
        assert all(Flags().admits(u) for u in USERS[:100])

    def test_the_allow_list_is_in_whatever_the_percentage(self) -> None:
        """At 0 % only the listed users are admitted."""
        flags = Flags(rollout_percentage=0, allow_list=("tester-1", "tester-2"))
        assert flags.admits("tester-1") and flags.admits("tester-2")
        assert not flags.admits("tester-3")

    def test_the_kill_switch_overrides_the_allow_list(self) -> None:
        """Kill switch off: nobody is admitted, listed users included."""
        flags = Flags(hybrid_orchestrator_enabled=False, allow_list=("tester-1",))
        assert not flags.admits("tester-1")
        assert not any(flags.admits(u) for u in USERS[:100])

    def test_the_rollout_follows_the_buckets(self) -> None:
        """At 40 % a user is admitted exactly when their bucket is below 40."""
        flags = Flags(rollout_percentage=40)
        assert [flags.admits(u) for u in USERS[:500]] == [bucket(c.ROLLOUT_FLAG, u) < 40 for u in USERS[:500]]

    def test_the_allow_list_is_sorted_without_duplicates(self) -> None:
        """The same set of users always reads (and compares) the same."""
        assert Flags(allow_list=("b", "a", "b", " c ")).allow_list == ("a", "b", "c")
        assert Flags(allow_list=("b", "a")) == Flags(allow_list=("a", "b"))

    @pytest.mark.parametrize(
        "values",
        [
            {"rollout_percentage": 101},
            {"rollout_percentage": -1},
            {"rollout_percentage": 50.5},
            {"hybrid_orchestrator_enabled": "false"},
            {"allow_list": [""]},
            {"allow_list": ["x" * (c.MAX_USER_ID_LENGTH + 1)]},
            {"allow_list": [f"u{i}" for i in range(c.MAX_ALLOW_LIST + 1)]},
            {"colour": "blue"},
        ],
    )
    def test_invalid_values_are_refused(self, values: dict[str, object]) -> None:
        """Out-of-range percentages, non-bool switches, bad ids, oversize lists and unknown flags are errors."""
        with pytest.raises(ValidationError):
            Flags.model_validate(values)


class TestFlagUpdate:
    def test_only_the_given_flags_are_encoded(self) -> None:
        """An update carries the flags given, as JSON text by name."""
        update = FlagUpdate(rollout_percentage=25, allow_list=("b", "a"))
        assert update.encoded() == {"rollout_percentage": "25", "allow_list": '["a","b"]'}
        assert update.fields() == {"rollout_percentage": 25, "allow_list": ("a", "b")}

    def test_false_is_a_change(self) -> None:
        """Switching off (False) is encoded, not mistaken for "not given"."""
        assert FlagUpdate(hybrid_orchestrator_enabled=False).encoded() == {"hybrid_orchestrator_enabled": "false"}

    @pytest.mark.parametrize("values", [{}, {"rollout_percentage": 200}, {"unknown": 1}, {"allow_list": "alice"}])
    def test_empty_or_invalid_updates_are_refused(self, values: dict[str, object]) -> None:
        """An update must change something, within the flags' rules, and name only known flags."""
        with pytest.raises(ValidationError):
            FlagUpdate.model_validate(values)


class TestStoredState:
    DEFAULTS = Flags(hybrid_orchestrator_enabled=False, rollout_percentage=10, allow_list=("x",))

    def test_an_empty_hash_is_the_defaults_at_version_zero(self) -> None:
        """Nothing stored: the environment defaults, version 0, nobody changed them."""
        state = FlagState.from_stored({}, self.DEFAULTS)
        assert state == FlagState(flags=self.DEFAULTS, version=0)

    def test_stored_flags_override_defaults_one_by_one(self) -> None:
        """A stored flag wins over its default; the others keep their defaults; metadata is read."""
        at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        stored = {
            "rollout_percentage": "60",
            c.VERSION_FIELD: "7",
            c.UPDATED_AT_FIELD: at.isoformat(),
            c.UPDATED_BY_FIELD: "admin-1",
        }
        state = FlagState.from_stored(stored, self.DEFAULTS)
        assert state.flags == Flags(hybrid_orchestrator_enabled=False, rollout_percentage=60, allow_list=("x",))
        assert (state.version, state.updated_at, state.updated_by) == (7, at, "admin-1")

    def test_unknown_fields_are_ignored(self) -> None:
        """A flag only a newer release knows does not break this one."""
        state = FlagState.from_stored({"future_flag": '"on"'}, self.DEFAULTS)
        assert state.flags == self.DEFAULTS

    @pytest.mark.parametrize(
        "stored",
        [
            {"hybrid_orchestrator_enabled": "nope"},
            {"hybrid_orchestrator_enabled": '"false"'},
            {"rollout_percentage": "250"},
            {c.VERSION_FIELD: "many"},
            {c.UPDATED_AT_FIELD: "yesterday"},
        ],
    )
    def test_invalid_stored_values_raise_flags_invalid(self, stored: dict[str, str]) -> None:
        """A value that is not a valid flag is an error naming it, never silently a default."""
        with pytest.raises(FlagsInvalid):
            FlagState.from_stored(stored, self.DEFAULTS)

    def test_an_update_round_trips_through_the_stored_form(self) -> None:
        """What an update encodes reads back as the same flags."""
        update = FlagUpdate(hybrid_orchestrator_enabled=False, rollout_percentage=5, allow_list=("a",))
        state = FlagState.from_stored(update.encoded(), Flags())
        assert state.flags.model_dump() == update.fields() | {"allow_list": ("a",), "paused_accounts": ()}
        assert orjson.loads(update.encoded()["allow_list"]) == ["a"]


class TestSettings:
    def test_defaults_come_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """HYBRID_ORCHESTRATOR_ENABLED, FLAGS_ROLLOUT_PERCENTAGE and FLAGS_ALLOW_LIST are the defaults."""
        monkeypatch.setenv("HYBRID_ORCHESTRATOR_ENABLED", "false")
        monkeypatch.setenv("FLAGS_ROLLOUT_PERCENTAGE", "30")
        monkeypatch.setenv("FLAGS_ALLOW_LIST", "tester-2, tester-1,,")
        defaults = FlagSettings().flag_defaults()
        assert defaults == Flags(
            hybrid_orchestrator_enabled=False, rollout_percentage=30, allow_list=("tester-1", "tester-2")
        )

    def test_without_environment_everything_is_on(self) -> None:
        """No variables: on for everyone (the system works out of the box)."""
        assert FlagSettings().flag_defaults() == Flags()

    @pytest.mark.parametrize(
        ("name", "value"),
        [("FLAGS_ROLLOUT_PERCENTAGE", "101"), ("FLAGS_ALLOW_LIST", "x" * 200), ("FLAGS_REFRESH_S", "0")],
    )
    def test_invalid_environment_refuses_to_start(self, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
        """A default the flags would refuse is refused at start-up."""
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            FlagSettings()
