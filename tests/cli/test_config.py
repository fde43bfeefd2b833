"""`ho config`: the settings a service would run with, from its own pydantic model, secrets masked."""

from __future__ import annotations

import pytest

from tests.cli.conftest import SECRET, ho


def lines(out: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in out.splitlines()]
    assert all(len(pair) == 2 for pair in pairs), out
    return {name: value for name, value in pairs}


class TestConfig:
    def test_effective_values_with_secrets_masked(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Set values and defaults show; a SecretStr, a *_KEY / *_TOKEN and a URL's password show as ***."""
        monkeypatch.setenv("GATEWAY_JWT_SECRET", SECRET)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-key-value")
        monkeypatch.setenv("ONLYFANS_API_TOKEN", "platform-token-value")
        monkeypatch.setenv("DATABASE_URL", "postgresql://ho:db-password-value@db:5432/ho")
        monkeypatch.setenv("GATEWAY_PORT", "9090")
        monkeypatch.delenv("REDIS_URL", raising=False)
        ran = ho(capsys, "config")
        assert ran.code == 0 and ran.err == ""
        shown = lines(ran.out)
        assert shown["GATEWAY_JWT_SECRET"] == "***"
        assert shown["OPENAI_API_KEY"] == "***" and shown["ONLYFANS_API_TOKEN"] == "***"
        assert shown["DATABASE_URL"] == "postgresql://ho:***@db:5432/ho"
        assert shown["GATEWAY_PORT"] == "9090" and shown["BUS_PREFETCH"] == "32" and shown["REDIS_URL"] == ""
        assert shown["RATE_LIMITER_KEY_PREFIX"]  # a Redis key prefix is not a secret
        for secret in (SECRET, "sk-test-openai-key-value", "platform-token-value", "db-password-value"):
            assert secret not in ran.out
        assert list(shown) == sorted(shown)

    def test_one_service(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--service prints that service's settings only (the shared ones included)."""
        router = lines(ho(capsys, "config", "--service", "router").out)
        assert "BUS_URL" in router and "WEBHOOK_SECRET" in router
        assert "GATEWAY_PORT" not in router and "OPENAI_API_KEY" not in router
        assert "GATEWAY_PORT" in lines(ho(capsys, "config", "--service", "gateway").out)

    def test_a_bad_value_is_one_line(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """A value the service would refuse: exit 2, one line naming it, nothing else printed."""
        monkeypatch.setenv("BUS_PREFETCH", "lots")
        ran = ho(capsys, "config", "--service", "router")
        assert (ran.code, ran.out) == (2, "")
        assert ran.err == "ho: BUS_PREFETCH: input should be a valid integer, unable to parse string as an integer\n"
