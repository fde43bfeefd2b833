"""schemathesis against the live embedded system: every operation of the gateway's OpenAPI document, fuzzed
with a user's token, an admin's, and with no token or a bad one.

The document fuzzed is the one the gateway serves (a test pins that), loaded at import so schemathesis can
make one pytest item per operation. Properties: no 5xx ever; every answer's status, content type, headers and
body are the documented ones; an endpoint that declares bearer auth answers 401 to every bad credential, and a
user never reads another user's workflow. A second pass checks that the document is exact: what it allows is
accepted, what it forbids is refused.

Operations tagged `admin` (the feature flags: kill switch, rollout) change what every later request gets, so
they are fuzzed on a system of their own.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.gateway.auth import make_token
from services.gateway.service import openapi_document
from tests.fuzz.embedded_process import EmbeddedProcess

# Bounded: a few hundred requests per pass, the whole module in well under a minute.
MAX_EXAMPLES = 25
AUTH_MAX_EXAMPLES = 8
WORKFLOW_TIMEOUT_S = 15.0
ADMIN_TAG = "admin"
USER, OTHER_USER, ADMIN = "fuzz-user", "fuzz-other-user", "fuzz-admin"
SYSTEM_ENV = {
    # ?wait=true is capped by this: a generated wait cannot stall the run.
    "GATEWAY_WAIT_TIMEOUT_S": "2",
    "ROUTER_WORKFLOW_DEADLINE_S": "10",
    # The fuzzer sends hundreds of requests as one user in seconds: the per-user limit must not answer them.
    "GATEWAY_RATE_LIMIT_RPS": "10000",
    "GATEWAY_RATE_LIMIT_BURST": "10000",
}

DOCUMENT = openapi_document()


def load(*, coverage: bool, max_examples: int) -> schemathesis.BaseSchema:
    """The document as schemathesis sees it; `coverage`: also send its boundary and just-invalid values."""
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    # deadline=None is schemathesis's own default; no example database, so nothing is written into the tree.
    # Deterministic, so CI sees the same cases every run; the tests set the Authorization header themselves,
    # so schemathesis must not mutate it (a "missing Authorization" negative case would arrive with one).
    schema.config.generation.update(
        max_examples=max_examples, database="none", deterministic=True, with_security_parameters=False
    )
    schema.config.phases.coverage.enabled = coverage
    # A valid request may still be refused for a business reason the fuzzing itself caused: a threshold it
    # created blocks the user's next workflows (402 cost_limit_exceeded), as documented.
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "402"]
    return schema


SCHEMA = load(coverage=True, max_examples=MAX_EXAMPLES)
SHARED, ISOLATED = SCHEMA.exclude(tag=ADMIN_TAG), SCHEMA.include(tag=ADMIN_TAG)
# Authentication comes before anything else a handler reads, so the boundary values add nothing there, and
# each example is sent once per bad credential.
AUTH_SCHEMA = load(coverage=False, max_examples=AUTH_MAX_EXAMPLES)

CONFORMANCE: list[schemathesis.CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXACTNESS: list[schemathesis.CheckFunction] = [positive_data_acceptance, negative_data_rejection]
AUTH_ERRORS = {"missing_token", "invalid_token", "token_expired"}
# Rules JSON Schema cannot state, so a request the document allows may still be refused there: from/to span
# at most 366 days (breakdown, campaign costs, alerts); StrictInt refuses 3.0, which JSON Schema calls an
# integer (feature flags' expectedVersion, rolloutPercentage); a workflow list's cursor is only one the router
# wrote, and its `from` must be before its `to`. What only the cost-tracker's data decides: an experiment arm's
# model must be in the price table, the automatic mode's threshold a budget rule, an applied recommendation a
# switch_provider one. Forbidden requests are still checked.
UNSTATABLE_RULES = {
    "GET /api/v2/campaigns",
    "GET /api/v2/costs/breakdown",
    "GET /api/v2/campaigns/costs",
    "GET /api/v2/costs/alerts",
    "PUT /api/admin/feature-flags",
    "POST /api/admin/experiments",
    "POST /api/v2/costs/optimize",
    "POST /api/v2/costs/optimization/apply",
}


def exactness(case: schemathesis.Case[Any]) -> list[schemathesis.CheckFunction]:
    """The exactness checks for `case`'s operation."""
    return [negative_data_rejection] if case.operation.label in UNSTATABLE_RULES else EXACTNESS


def requires_auth(case: schemathesis.Case[Any]) -> bool:
    """The document's word: the operation declares a security requirement."""
    return bool(DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]["security"])


def bad_credentials(secret: str) -> dict[str, str | None]:
    """Authorization header values that must all answer 401 (None: no header at all)."""
    now = int(time.time())
    claims = {"sub": USER, "iat": now, "exp": now + 3600}
    return {
        "none": None,
        "empty": "",
        "scheme only": "Bearer",
        "not a jwt": "Bearer not-a-jwt",
        "basic": "Basic dXNlcjpwYXNz",
        "wrong secret": f"Bearer {jwt.encode(claims, 'another-secret-of-at-least-thirty-two-bytes', 'HS256')}",
        "expired": f"Bearer {jwt.encode({**claims, 'exp': now - 3600}, secret, 'HS256')}",
        "alg none": f"Bearer {jwt.encode(claims, '', algorithm='none')}",
        "no sub": f"Bearer {jwt.encode({'iat': now, 'exp': now + 3600}, secret, 'HS256')}",
        "reserved sub": f"Bearer {jwt.encode({**claims, 'sub': '*'}, secret, 'HS256')}",
        "no exp": f"Bearer {jwt.encode({'sub': USER, 'iat': now}, secret, 'HS256')}",
        "hs512": f"Bearer {jwt.encode(claims, secret, 'HS512')}",
        "admin role, wrong secret": f"Bearer {jwt.encode({**claims, 'role': 'admin'}, 'x' * 32, 'HS256')}",
    }


def _start(tmp_path_factory: pytest.TempPathFactory, name: str) -> EmbeddedProcess:
    system = EmbeddedProcess(tmp_path_factory.mktemp(name) / "embedded.log", env=dict(SYSTEM_ENV))
    system.start()
    return system


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProcess]:
    running = _start(tmp_path_factory, "fuzz-shared")
    yield running
    assert running.alive(), f"the embedded system died during the run:\n{running.logs()}"
    assert running.stop() == 0, running.logs()


@pytest.fixture(scope="module")
def isolated_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProcess]:
    running = _start(tmp_path_factory, "fuzz-admin")
    yield running
    assert running.alive(), f"the embedded system died during the run:\n{running.logs()}"
    assert running.stop() == 0, running.logs()


@pytest.fixture(scope="module")
def credentials(system: EmbeddedProcess) -> dict[str, str | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)  # HS512, short key: on purpose
        return bad_credentials(system.secret)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def finished(system: EmbeddedProcess, session: requests.Session, headers: dict[str, str], workflow_id: str) -> None:
    """Wait until the workflow ended (its costs are recorded by then)."""
    deadline = time.monotonic() + WORKFLOW_TIMEOUT_S
    url = f"{system.url}/api/v2/campaigns/status"
    while True:
        view = session.get(url, params={"workflowId": workflow_id}, headers=headers, timeout=10).json()["data"]
        if view["status"] in ("completed", "failed"):
            return
        assert time.monotonic() < deadline, f"workflow {workflow_id} not finished in {WORKFLOW_TIMEOUT_S}s: {view}"
        time.sleep(0.05)


def bearer(system: EmbeddedProcess, role: str) -> dict[str, str]:
    token = make_token(system.secret, sub=ADMIN if role == "admin" else USER, role=role if role == "admin" else None)
    return {"Authorization": f"Bearer {token}"}


def conforms(case: schemathesis.Case[Any], system: EmbeddedProcess, session: requests.Session, role: str) -> None:
    headers = bearer(system, role)
    case.call_and_validate(base_url=system.url, session=session, headers=headers, checks=[*CONFORMANCE, ignored_auth])


def refuses_bad_credentials(
    case: schemathesis.Case[Any], system: EmbeddedProcess, session: requests.Session, credentials: dict[str, str | None]
) -> None:
    for name, value in credentials.items():
        if case.headers is not None:
            case.headers.pop("Authorization", None)  # what schemathesis generated for the security scheme
        headers = {} if value is None else {"Authorization": value}
        response = case.call(base_url=system.url, session=session, headers=headers)
        case.validate_response(response, checks=CONFORMANCE, headers=headers)
        # The coverage phase also sends other methods to the path: 405 answers those before any auth.
        if not requires_auth(case) or case.method.upper() != case.operation.method.upper():
            continue
        assert response.status_code == 401, f"{name}: {case.operation.label} answered {response.status_code}"
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] in AUTH_ERRORS, (name, error)
        challenge = response.headers.get("www-authenticate", [""])[0]  # schemathesis: lower-case names → lists
        assert challenge.startswith("Bearer"), (name, response.headers)


class TestEveryAnswerConforms:
    @pytest.mark.parametrize("role", ["user", "admin"])
    @SHARED.parametrize()
    def test_with_a_valid_token(
        self, case: schemathesis.Case[Any], system: EmbeddedProcess, session: requests.Session, role: str
    ) -> None:
        """A user's or an admin's generated request never gets a 5xx, and gets a documented status, content
        type, headers and body; when it succeeds, the same request without or with a bad token does not."""
        conforms(case, system, session, role)

    @pytest.mark.parametrize("role", ["user", "admin"])
    @ISOLATED.parametrize()
    def test_admin_operations_with_a_valid_token(
        self, case: schemathesis.Case[Any], isolated_system: EmbeddedProcess, session: requests.Session, role: str
    ) -> None:
        """The same for the admin operations (feature flags), on a system of their own: a user gets a
        documented 403, an admin a documented answer, never a 5xx."""
        conforms(case, isolated_system, session, role)


class TestAuthHolds:
    @AUTH_SCHEMA.parametrize()
    def test_bad_credentials_answer_401(
        self,
        case: schemathesis.Case[Any],
        system: EmbeddedProcess,
        session: requests.Session,
        credentials: dict[str, str | None],
    ) -> None:
        """Every operation that declares bearer auth answers a documented 401 (missing_token / invalid_token /
        token_expired, with a Bearer challenge) to no token, a malformed one, a wrong signature, an expired
        one, alg=none, a missing claim or another algorithm — whatever the rest of the request; the open
        operations answer them conformingly."""
        refuses_bad_credentials(case, system, session, credentials)

    def test_a_user_never_reads_another_users_workflow(
        self, system: EmbeddedProcess, session: requests.Session
    ) -> None:
        """A workflow is invisible to another user (404 on its status and its costs), visible to its owner and
        to an admin."""
        owner = {"Authorization": f"Bearer {make_token(system.secret, sub=OTHER_USER)}"}
        created = session.post(
            f"{system.url}/api/v2/campaigns/hybrid", json={"type": "message_generation"}, headers=owner, timeout=10
        )
        assert created.status_code == 202, created.text
        workflow_id = created.json()["data"]["workflowId"]
        finished(system, session, owner, workflow_id)
        reads = {
            "/api/v2/campaigns/status": {"workflowId": workflow_id},
            "/api/v2/campaigns/costs": {"workflowId": workflow_id},
        }
        for path, params in reads.items():
            url = f"{system.url}{path}"
            assert session.get(url, params=params, headers=owner, timeout=10).status_code == 200, path
            assert session.get(url, params=params, headers=bearer(system, "admin"), timeout=10).status_code == 200
            stranger = session.get(url, params=params, headers=bearer(system, "user"), timeout=10)
            assert stranger.status_code == 404, (path, stranger.status_code, stranger.text)


class TestTheDocumentIsExact:
    def test_the_served_document_is_the_fuzzed_one(self, system: EmbeddedProcess, session: requests.Session) -> None:
        """GET /api/openapi.json serves exactly the document this module fuzzes."""
        served = session.get(f"{system.url}/api/openapi.json", timeout=10)
        assert served.status_code == 200
        assert served.json() == DOCUMENT

    @SHARED.parametrize()
    def test_allowed_is_accepted_and_forbidden_refused(
        self, case: schemathesis.Case[Any], system: EmbeddedProcess, session: requests.Session
    ) -> None:
        """An admin's request the document allows is not refused with a 400/422, and one it forbids (wrong
        type, pattern, bound, enum, missing field) is not accepted. (An admin may pass every parameter.)"""
        case.call_and_validate(
            base_url=system.url, session=session, headers=bearer(system, "admin"), checks=exactness(case)
        )

    @ISOLATED.parametrize()
    def test_admin_operations_accept_what_is_allowed_and_refuse_the_rest(
        self, case: schemathesis.Case[Any], isolated_system: EmbeddedProcess, session: requests.Session
    ) -> None:
        """The same for the admin operations, on their own system."""
        headers = bearer(isolated_system, "admin")
        case.call_and_validate(base_url=isolated_system.url, session=session, headers=headers, checks=exactness(case))
