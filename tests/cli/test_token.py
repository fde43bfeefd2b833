"""`ho token`: a token the gateway's own verifier accepts, with the claims asked for; bad input is one line."""

from __future__ import annotations

import argparse

import jwt
import pytest

from services.cli.tokens import parse_duration
from services.gateway.auth import TokenVerifier
from tests.cli.conftest import SECRET, ho, ho_process


@pytest.fixture(autouse=True)
def gateway_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_JWT_ISSUER", "GATEWAY_JWT_AUDIENCE", "GATEWAY_JWT_MAX_LIFETIME_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEWAY_JWT_SECRET", SECRET)


class TestToken:
    def test_claims_as_asked(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--sub, --admin, --accounts and --ttl become sub, role, accounts and exp - iat; the gateway accepts it."""
        ran = ho(capsys, "token", "--sub", "ops-1", "--admin", "--accounts", "acct-1, acct-2", "--ttl", "30m")
        assert ran.code == 0 and ran.err == ""
        token = ran.out.strip()
        principal = TokenVerifier(SECRET).verify(f"Bearer {token}")
        assert (principal.user_id, principal.is_admin, principal.accounts) == ("ops-1", True, ("acct-1", "acct-2"))
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] == 1800

    def test_plain_user_token(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --admin and --accounts the token has neither claim, and lives 24 h."""
        token = ho(capsys, "token", "--sub", "creator-9").out.strip()
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert "role" not in claims and "accounts" not in claims
        assert claims["exp"] - claims["iat"] == 24 * 3600

    def test_issuer_and_audience_of_the_environment(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With GATEWAY_JWT_ISSUER / _AUDIENCE set the token carries them, as that gateway demands."""
        monkeypatch.setenv("GATEWAY_JWT_ISSUER", "https://id.example")
        monkeypatch.setenv("GATEWAY_JWT_AUDIENCE", "ho")
        token = ho(capsys, "token", "--sub", "u1").out.strip()
        verifier = TokenVerifier(SECRET, issuer="https://id.example", audience="ho")
        assert verifier.verify(f"Bearer {token}").user_id == "u1"

    @pytest.mark.parametrize(
        ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("600", 600)]
    )
    def test_durations(self, text: str, seconds: int) -> None:
        """--ttl takes seconds, minutes, hours, days or a bare number of seconds."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["0", "5w", "-1", "1.5h", "h", ""])
    def test_bad_durations(self, text: str) -> None:
        """Anything else is refused with the accepted forms."""
        with pytest.raises(argparse.ArgumentTypeError, match="90s, 30m, 24h, 7d"):
            parse_duration(text)

    def test_ttl_past_the_gateways_limit(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A lifetime the gateway would refuse (over GATEWAY_JWT_MAX_LIFETIME_S) is one line and exit 2."""
        ran = ho(capsys, "token", "--sub", "u1", "--ttl", "7d")
        assert ran.code == 2 and ran.out == ""
        assert ran.err == "ho: --ttl: 604800 s is longer than GATEWAY_JWT_MAX_LIFETIME_S (86400 s)\n"

    def test_bad_sub_and_accounts_are_usage_errors(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A sub that is no user id, or an account that is no platform id, is refused by argparse (exit 2)."""
        assert ho(capsys, "token", "--sub", "*").code == 2
        assert ho(capsys, "token", "--sub", "u1", "--accounts", "ok,..").code == 2

    def test_missing_secret(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """Without GATEWAY_JWT_SECRET there is nothing to sign with: one line naming it, exit 2."""
        monkeypatch.delenv("GATEWAY_JWT_SECRET")
        ran = ho(capsys, "token", "--sub", "u1")
        assert (ran.code, ran.out, ran.err) == (2, "", "ho: GATEWAY_JWT_SECRET: required to sign a token, not set\n")

    def test_help_of_every_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`--help` works for each command and names its options (in this process: the console script itself is
        proven by the tests of TestInstalledCommand)."""
        for argv, option in [
            (["token"], "--accounts"),
            (["migrate"], "--status"),
            (["sqs"], "sweep"),
            (["dlq", "list"], "--service"),
            (["dlq", "replay"], "--all"),
            (["workflows", "list"], "--cursor"),
            (["workflows", "show"], "--url"),
            (["workflows", "cancel"], "--token"),
            (["flags", "set"], "--rollout"),
            (["flags", "get"], "--url"),
            (["config"], "--service"),
        ]:
            ran = ho(capsys, *argv, "--help")
            assert ran.code == 0 and option in ran.out, (argv, ran)


class TestInstalledCommand:
    def test_signs_with_the_environments_secret(self) -> None:
        """The `ho` console script runs on its own and prints a verifiable token, nothing else."""
        ran = ho_process("token", "--sub", "creator-1", env={"GATEWAY_JWT_SECRET": SECRET})
        assert ran.code == 0 and ran.err == ""
        assert TokenVerifier(SECRET).verify(f"Bearer {ran.out.strip()}").user_id == "creator-1"

    def test_short_secret_is_one_line_and_never_printed(self) -> None:
        """A too-short secret: exit 2, one line naming GATEWAY_JWT_SECRET, its value nowhere in the output."""
        secret = "short-and-recognisable"
        ran = ho_process("token", "--sub", "u1", env={"GATEWAY_JWT_SECRET": secret})
        assert (ran.code, ran.err) == (2, "ho: GATEWAY_JWT_SECRET: must be at least 32 bytes\n")
        assert secret not in ran.out + ran.err
