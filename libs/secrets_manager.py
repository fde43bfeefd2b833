"""Settings given as AWS Secrets Manager references, fetched once at start (aiobotocore) into the environment.

Two spellings, for any variable (a secret one, in practice: DATABASE_URL, OPENAI_API_KEY, ...):

    DATABASE_URL_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:111122223333:secret:huntaze/database/production-AbCdEf
    DATABASE_URL=secretsmanager://huntaze/database/production#DATABASE_URL

`<NAME>_SECRET_ARN` names a secret (ARN or name) whose value becomes NAME; a value `secretsmanager://<secret id>`
is replaced by that secret's value. Either may end in `#key`: the secret is then a JSON object (how the console
stores key/value secrets) and the value is its `key`. A plain string secret without `#key` is used whole.

`resolve_secret_references()` runs before any settings are read — libs.runtime.serve, the embedded mode and
the migration command call it — and rewrites os.environ, so every `load_settings` afterwards sees the
values. The region is the ARN's, else the standard AWS_REGION / AWS_DEFAULT_REGION; credentials and the
endpoint come from the standard chain (AWS_ENDPOINT_URL_SECRETS_MANAGER points it at moto in tests). A
reference that cannot be read is a ConfigError naming the variable, never the value.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from libs.config import ConfigError

SCHEME: Final = "secretsmanager://"
ARN_SUFFIX: Final = "_SECRET_ARN"
KEY_SEPARATOR: Final = "#"
ARN_PREFIX: Final = "arn:"
ARN_REGION_FIELD: Final = 3  # arn:aws:secretsmanager:REGION:account:secret:name


@dataclass(frozen=True)
class Reference:
    """`variable` is to get the value of secret `secret_id` (its JSON `key`, when given)."""

    variable: str  # what the reference was written in (DATABASE_URL_SECRET_ARN or DATABASE_URL)
    target: str  # the variable that receives the value (DATABASE_URL)
    secret_id: str
    key: str | None


def references(environ: MutableMapping[str, str]) -> list[Reference]:
    """Every Secrets Manager reference in `environ`; ConfigError when a variable is given both ways."""
    found: list[Reference] = []
    for variable, value in environ.items():
        if variable.upper().endswith(ARN_SUFFIX) and len(variable) > len(ARN_SUFFIX):
            target = variable[: -len(ARN_SUFFIX)]
            if environ.get(target):
                raise ConfigError(f"both {target} and {variable} are set; keep one", variable)
            found.append(_reference(variable, target, value))
        elif value.startswith(SCHEME):
            found.append(_reference(variable, variable, value.removeprefix(SCHEME)))
    return found


def _reference(variable: str, target: str, spec: str) -> Reference:
    secret_id, _, key = spec.partition(KEY_SEPARATOR)
    if not secret_id:
        raise ConfigError("a Secrets Manager reference needs a secret name or ARN", variable)
    return Reference(variable, target, secret_id, key or None)


async def resolve_secret_references(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Replace every reference in `environ` (default os.environ) by its secret's value; the variables set."""
    environ = os.environ if environ is None else environ
    found = references(environ)
    if not found:
        return []
    # Imported here: most processes have no reference, and aiobotocore is slow to import.
    from aiobotocore.session import get_session
    from botocore.exceptions import BotoCoreError, ClientError

    session = get_session()
    fetched: dict[tuple[str, str | None], str] = {}
    for reference in found:
        region = _region(reference.secret_id)
        if (reference.secret_id, region) not in fetched:
            try:
                async with session.create_client("secretsmanager", region_name=region) as client:
                    answer = await client.get_secret_value(SecretId=reference.secret_id)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "error")
                raise ConfigError(f"cannot read secret {reference.secret_id!r}: {code}", reference.variable) from None
            except BotoCoreError as exc:
                raise ConfigError(
                    f"cannot read secret {reference.secret_id!r}: {type(exc).__name__}", reference.variable
                ) from None
            fetched[(reference.secret_id, region)] = _secret_string(answer, reference)
        environ[reference.target] = _value(fetched[(reference.secret_id, region)], reference)
        if reference.variable != reference.target:
            del environ[reference.variable]  # consumed: a second resolution (embedded, then serve) finds none
    return [reference.target for reference in found]


def _region(secret_id: str) -> str | None:
    if secret_id.startswith(ARN_PREFIX):
        parts = secret_id.split(":")
        if len(parts) > ARN_REGION_FIELD and parts[ARN_REGION_FIELD]:
            return parts[ARN_REGION_FIELD]
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _secret_string(answer: dict[str, Any], reference: Reference) -> str:
    value = answer.get("SecretString")
    if not isinstance(value, str):
        raise ConfigError(f"secret {reference.secret_id!r} holds no string (a binary secret?)", reference.variable)
    return value


def _value(secret: str, reference: Reference) -> str:
    if reference.key is None:
        return secret
    try:
        document = json.loads(secret)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ConfigError(f"secret {reference.secret_id!r} is not a JSON object, so it has no key", reference.variable)
    value = document.get(reference.key)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"secret {reference.secret_id!r} has no key {reference.key!r}", reference.variable)
    return str(value)
