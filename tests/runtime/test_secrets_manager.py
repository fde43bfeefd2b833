"""Settings given as Secrets Manager references (NAME_SECRET_ARN, secretsmanager://name#key), fetched at start
from moto's server: a DATABASE_URL taken from the secret huntaze/database/production reaches PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiobotocore.session import get_session

from libs.bus.memory import MemoryBus
from libs.config import CommonSettings, ConfigError
from libs.runtime import Runtime, Service, serve
from libs.secrets_manager import resolve_secret_references

REGION = "eu-west-1"


@pytest.fixture
async def secrets(sqs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str]]:
    """moto's Secrets Manager as the standard chain finds it; yields {name: ARN} of the secrets made."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sqs_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    made: dict[str, str] = {}
    yield made  # filled by the test through `made_secret`
    async with get_session().create_client("secretsmanager", region_name=REGION) as client:
        for arn in made.values():
            await client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


async def made_secret(secrets: dict[str, str], name: str, value: str) -> str:
    async with get_session().create_client("secretsmanager", region_name=REGION) as client:
        secrets[name] = (await client.create_secret(Name=name, SecretString=value))["ARN"]
    return secrets[name]


class TestReferences:
    async def test_database_url_from_the_plans_secret_reaches_postgresql(
        self, secrets: dict[str, str], postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DATABASE_URL=secretsmanager://<name>#DATABASE_URL (the plan keeps it in huntaze/database/production)
        is replaced at start by the JSON secret's key, and that URL connects."""
        name = f"huntaze/database/production-{uuid.uuid4().hex[:8]}"
        await made_secret(secrets, name, json.dumps({"DATABASE_URL": postgres_dsn, "other": "x"}))
        monkeypatch.setenv("DATABASE_URL", f"secretsmanager://{name}#DATABASE_URL")
        assert await resolve_secret_references() == ["DATABASE_URL"]
        settings = CommonSettings()
        assert settings.database_url == postgres_dsn
        connection = await asyncpg.connect(settings.database_url)
        try:
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()

    async def test_secret_arn_variable_sets_its_setting_once(self, secrets: dict[str, str]) -> None:
        """OPENAI_API_KEY_SECRET_ARN=<arn> of a plain string secret sets OPENAI_API_KEY and is consumed, so a
        second resolution (the embedded mode, then serve) finds nothing to do."""
        arn = await made_secret(secrets, f"openai-{uuid.uuid4().hex[:8]}", "sk-from-secrets-manager")
        environ = {"OPENAI_API_KEY_SECRET_ARN": arn, "LOG_LEVEL": "INFO"}
        assert await resolve_secret_references(environ) == ["OPENAI_API_KEY"]
        assert environ == {"OPENAI_API_KEY": "sk-from-secrets-manager", "LOG_LEVEL": "INFO"}
        assert await resolve_secret_references(environ) == []

    @pytest.mark.parametrize(
        ("environ", "variable", "problem"),
        [
            ({"DATABASE_URL": "secretsmanager://no-such-secret"}, "DATABASE_URL", "ResourceNotFoundException"),
            ({"DATABASE_URL": "x", "DATABASE_URL_SECRET_ARN": "arn"}, "DATABASE_URL_SECRET_ARN", "both"),
            ({"REDIS_URL": "secretsmanager://#key"}, "REDIS_URL", "needs a secret name"),
        ],
    )
    async def test_a_bad_reference_is_a_config_error_naming_the_variable(
        self, secrets: dict[str, str], environ: dict[str, str], variable: str, problem: str
    ) -> None:
        """A missing secret, a variable given twice, an empty name: ConfigError on that variable."""
        with pytest.raises(ConfigError) as raised:
            await resolve_secret_references(environ)
        assert raised.value.variable == variable and problem in raised.value.problem

    async def test_a_missing_key_names_it_without_the_secrets_value(self, secrets: dict[str, str]) -> None:
        """A JSON secret without the key asked for: the error names the key, never a value of the secret."""
        name = f"db-{uuid.uuid4().hex[:8]}"
        await made_secret(secrets, name, json.dumps({"DATABASE_URL": "postgresql://u:hunter2@h/db"}))
        with pytest.raises(ConfigError, match="has no key 'DSN'") as raised:
            await resolve_secret_references({"DATABASE_URL": f"secretsmanager://{name}#DSN"})
        assert "hunter2" not in str(raised.value)


class TestServe:
    async def test_a_service_started_by_serve_reads_the_resolved_setting(
        self, secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """serve() resolves the references before it reads any setting: a service's Runtime has the value."""
        arn = await made_secret(secrets, f"redis-{uuid.uuid4().hex[:8]}", json.dumps({"url": "redis://cache:6379/2"}))
        monkeypatch.setenv("REDIS_URL", f"secretsmanager://{arn}#url")
        monkeypatch.setenv("HEALTH_PORT", "0")
        monkeypatch.setenv("HEALTH_HOST", "127.0.0.1")
        seen: list[str | None] = []
        stop, started = asyncio.Event(), asyncio.Event()

        async def probe(runtime: Runtime) -> Service:
            assert isinstance(runtime.bus, MemoryBus)
            seen.append(runtime.settings.redis_url)
            return Service(name="probe")

        task = asyncio.create_task(serve([probe], name="probe", stop=stop, started=started))
        await asyncio.wait_for(started.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert seen == ["redis://cache:6379/2"]
