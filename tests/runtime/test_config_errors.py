"""Configuration mistakes are one line: a service (or the embedded mode) started with a bad or missing
setting, or on a port in use, prints `<name>: VARIABLE: problem` on stderr, exits 2, shows no traceback
and never a secret's value."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings

from libs.config import CommonSettings, ConfigError, config_error, load_settings
from tests.fuzz.embedded_process import FOREIGN_ENV_PREFIXES
from tests.integration.stack import ROOT

START_TIMEOUT_S = 60
GOOD_SECRET = "a-gateway-secret-of-forty-bytes-0123456"


@dataclass
class Exit:
    code: int
    stdout: str
    stderr: str


def start(module: str, **env: str) -> Exit:
    """`python -m <module>` with only `env` configured (memory bus, nothing external); its exit."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith((*FOREIGN_ENV_PREFIXES, "HEALTH_", "LOG_"))}
    clean.update({"HEALTH_PORT": "0", "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", **env})
    done = subprocess.run(
        [sys.executable, "-m", module], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=START_TIMEOUT_S
    )
    return Exit(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def one_line(result: Exit) -> str:
    assert result.code == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


class TestAtStart:
    def test_short_secret_is_named_and_never_echoed(self) -> None:
        """A too-short GATEWAY_JWT_SECRET: one line naming it and the rule; its value appears nowhere."""
        secret = "tooshort-but-recognisable"
        result = start("services.gateway", GATEWAY_JWT_SECRET=secret)
        assert one_line(result) == "gateway: GATEWAY_JWT_SECRET: must be at least 32 bytes"
        assert secret not in result.stdout + result.stderr

    def test_bad_int_is_named(self) -> None:
        """A port that is not a number: one line naming GATEWAY_PORT and what it should be."""
        result = start("services.gateway", GATEWAY_JWT_SECRET=GOOD_SECRET, GATEWAY_PORT="eighty")
        line = one_line(result)
        assert line.startswith("gateway: GATEWAY_PORT: input should be a valid integer"), line
        assert GOOD_SECRET not in result.stdout + result.stderr

    def test_missing_secret_is_named(self) -> None:
        """A gateway with no way to verify tokens says which variable to set."""
        line = one_line(start("services.gateway"))
        assert line.startswith("gateway: GATEWAY_JWT_SECRET"), line

    def test_a_sender_without_its_platform_names_the_variable(self) -> None:
        """The of-sender with no ONLYFANS_API_URL (and no simulator): one line naming it, exit 2."""
        line = one_line(start("services.of_sender", ONLYFANS_API_URL="", ONLYFANS_API_TOKEN=""))
        assert line.startswith("of-sender: ONLYFANS_API_URL: required"), line

    def test_gateway_port_in_use(self, port_in_use: int) -> None:
        """The HTTP port taken by another process: one line naming GATEWAY_PORT and the port."""
        result = start(
            "services.gateway", GATEWAY_JWT_SECRET=GOOD_SECRET, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port_in_use)
        )
        assert one_line(result) == f"gateway: GATEWAY_PORT: port {port_in_use} is already in use on 127.0.0.1"
        assert GOOD_SECRET not in result.stdout + result.stderr

    def test_health_port_in_use(self, port_in_use: int) -> None:
        """Two services on one host with the default health port: the second names HEALTH_PORT."""
        result = start("services.router", HEALTH_HOST="127.0.0.1", HEALTH_PORT=str(port_in_use))
        assert one_line(result) == f"router: HEALTH_PORT: port {port_in_use} is already in use on 127.0.0.1"

    def test_bad_common_setting_before_the_loop(self) -> None:
        """EVENT_LOOP is read before anything starts: still one line (no "never awaited" warning after it)."""
        line = one_line(start("services.router", EVENT_LOOP="twisted"))
        assert line == "router: EVENT_LOOP: input should be 'uvloop' or 'asyncio'"

    def test_a_price_file_with_a_negative_rate(self, tmp_path: Path) -> None:
        """The cost-tracker's price file with a negative rate: one line naming the file and the entry, exit 2."""
        prices = tmp_path / "prices.toml"
        prices.write_text(
            "providers.azure = { prompt = 0.01, completion = 0.01 }\n"
            "providers.openai = { prompt = 0.002, completion = 0.002 }\n"
            'models."gpt-4o-mini" = { prompt = -0.00015, completion = 0.0006 }\n'
        )
        line = one_line(start("services.cost_tracker", COST_PRICE_FILE=str(prices)))
        assert line == (
            f"cost-tracker: COST_PRICE_FILE: {prices}: models.gpt-4o-mini.prompt must be a finite, non-negative number"
        )

    def test_a_price_override_missing_a_rate(self) -> None:
        """COST_PRICES adding a model without its completion rate: one line naming COST_PRICES, exit 2."""
        line = one_line(start("services.cost_tracker", COST_PRICES='{"models": {"m": {"prompt": 0.001}}}'))
        assert line == "cost-tracker: COST_PRICES: models.m.completion is missing"

    def test_embedded_mode_short_secret(self) -> None:
        """`make run` with a configured secret that is too short: the same one line, named `embedded`."""
        secret = "short-embedded-secret"
        result = start("services.embedded", GATEWAY_JWT_SECRET=secret, GATEWAY_PORT="0")
        assert one_line(result) == "embedded: GATEWAY_JWT_SECRET: must be at least 32 bytes"
        assert secret not in result.stdout + result.stderr


class _Secrets(BaseSettings):
    api_token: SecretStr
    bus_url: str = Field(pattern=r"^amqp://")
    port: int = 1


class TestFormatting:
    def test_every_problem_on_one_line_without_inputs(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Several bad values make one line, the first variable named as the culprit, no input echoed."""
        monkeypatch.setenv("PORT", "not-a-port")
        monkeypatch.setenv("BUS_URL", "redis://user:hunter2@host/")
        with pytest.raises(ConfigError) as caught:
            load_settings(_Secrets)
        error = caught.value
        assert error.variable == "API_TOKEN"
        assert str(error).startswith("API_TOKEN: required, not set; BUS_URL: string should match pattern")
        assert "; PORT: input should be a valid integer" in str(error)
        assert "hunter2" not in str(error) and "not-a-port" not in str(error)
        assert "\n" not in str(error)
        assert error.__cause__ is None and error.__suppress_context__

    def test_a_validator_quoting_a_secret_is_redacted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A validator's message that happens to contain a secret variable's value prints *** instead."""
        monkeypatch.setenv("WEBHOOK_SECRET", "s3cr3t-value")
        try:
            _Secrets.model_validate({"api_token": "x", "bus_url": "amqp://", "port": "s3cr3t-value"})
        except ValidationError as exc:
            problem = str(config_error(exc))
        else:
            raise AssertionError("the port was accepted")
        assert "s3cr3t-value" not in problem and problem.startswith("PORT: ")

    def test_good_settings_load(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """load_settings reads the environment like the model itself."""
        monkeypatch.setenv("BUS_PREFETCH", "7")
        assert load_settings(CommonSettings).bus_prefetch == 7
