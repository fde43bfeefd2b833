"""Bad requests to POST /api/v2/campaigns/hybrid: each gets a precise 4xx and nothing reaches the bus."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest

from contracts.routing import ROUTER
from libs.bus.memory import MemoryBus
from services.gateway.auth import make_token
from services.gateway.constants import PATH_CAMPAIGN as CAMPAIGN
from tests.gateway.conftest import PLAN, SECRET, Harness, MakeGateway

JSON = {"Content-Type": "application/json"}


def _token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` token: header and claims, no signature."""

    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _now() -> int:
    return int(time.time())


async def _assert_refused(gw: Harness, answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.body["success"] is False
    assert answer.body["error"]["code"] == code
    assert answer.body["error"]["message"]
    assert gw.router.seen == [], "a refused request must publish nothing"
    assert isinstance(gw.bus, MemoryBus) and gw.bus.depth(ROUTER) == 0, "nothing may wait in the router's queue"
    return dict(answer.body["error"])


# (body, expected code, a field the message must name)
INVALID_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"type": "world_domination"}, "type"),
    ({"data": {}}, "type"),
    ({**PLAN, "userId": "mallory", "foo": 1}, "userId"),
    ({**PLAN, "send_to_onlyfans": True}, "send_to_onlyfans"),
    ({**PLAN, "priority": "urgent"}, "priority"),
    ({**PLAN, "forceProvider": "anthropic"}, "forceProvider"),
    ({**PLAN, "sendToOnlyFans": "yes", "recipientId": "f"}, "sendToOnlyFans"),
    ({**PLAN, "sendToOnlyFans": True}, "recipientId"),
    ({**PLAN, "platforms": "onlyfans"}, "platforms"),
    ({**PLAN, "platforms": ["x"] * 17}, "platforms"),
    ({**PLAN, "data": ["not", "an", "object"]}, "data"),
    ({**PLAN, "recipientId": "   "}, "recipientId"),
    ({**PLAN, "recipientId": 42}, "recipientId"),
    ({**PLAN, "contentType": ""}, "contentType"),
]


class TestBody:
    @pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
    async def test_invalid_fields_answer_400_naming_them(self, gw: Harness, body: dict[str, Any], field: str) -> None:
        """Unknown intent types, missing, unknown, mistyped or out-of-range fields: 400 naming the field."""
        error = await _assert_refused(gw, await gw.client.post(body), 400, "validation_error")
        assert field in error["message"]
        assert any(field in d["field"] or field in d["message"] for d in error["details"])

    async def test_unknown_fields_are_all_named(self, gw: Harness) -> None:
        """Every forbidden extra field is listed, each as an unknown field."""
        error = await _assert_refused(gw, await gw.client.post({**PLAN, "a": 1, "b": 2}), 400, "validation_error")
        assert {(d["field"], d["message"]) for d in error["details"]} == {
            ("a", "unknown field"),
            ("b", "unknown field"),
        }

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            (b'{"type": ', "invalid_json"),
            (b"", "invalid_json"),
            (b"   ", "invalid_json"),
            (b"\xff\xfe{}", "invalid_json"),
            (b"[" * 5000 + b"]" * 5000, "invalid_json"),
            (b'{"type": "content_planning", "data": {"n": 1e999999}}', "invalid_json"),
            (b'["content_planning"]', "invalid_body"),
            (b'"content_planning"', "invalid_body"),
            (b"null", "invalid_body"),
        ],
    )
    async def test_malformed_json_answers_400(self, gw: Harness, raw: bytes, code: str) -> None:
        """Bodies that are not JSON, or not a JSON object, answer 400."""
        await _assert_refused(gw, await gw.client.post(data=raw, headers=JSON), 400, code)

    @pytest.mark.parametrize(
        "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
    )
    async def test_wrong_content_type_answers_415(self, gw: Harness, content_type: str) -> None:
        """A body that is not declared as UTF-8 application/json answers 415."""
        answer = await gw.client.post(data=b'{"type": "content_planning"}', headers={"Content-Type": content_type})
        await _assert_refused(gw, answer, 415, "unsupported_media_type")

    async def test_missing_content_type_answers_415(self, gw: Harness) -> None:
        """No Content-Type at all answers 415."""
        await _assert_refused(
            gw, await gw.client.post(data=b'{"type": "content_planning"}'), 415, "unsupported_media_type"
        )


def _nested(depth: int) -> Any:
    """A value of `depth` nested arrays around a string."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


class TestUnstorable:
    """What no consumer can store is refused at the door, naming the field: a NUL made the router's
    PostgreSQL refuse a workflow already answered 202 (retried, dead-lettered, then 404 for good)."""

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({**PLAN, "data": {"topic": "a\u0000b"}}, "data.topic"),
            ({**PLAN, "data": {"notes": ["ok", {"x": "bell\u0007"}]}}, "data.notes[1].x"),
            ({**PLAN, "data": {"k\u0000": 1}}, "data"),
            ({**PLAN, "contentType": "post\u001f"}, "contentType"),
            ({**PLAN, "platforms": ["onlyfans\u0000"]}, "platforms[0]"),
            ({**PLAN, "sendToOnlyFans": True, "recipients": [{"id": "f", "vars": {"name": "A\u0000"}}]},
             "recipients[0].vars.name"),
        ],
    )  # fmt: skip
    async def test_control_characters_answer_400_naming_the_field(
        self, gw: Harness, body: dict[str, Any], field: str
    ) -> None:
        """A control character (other than tab, CR, LF) in any string or key of the body: 400 naming it."""
        error = await _assert_refused(gw, await gw.client.post(body), 400, "validation_error")
        assert [d["field"] for d in error["details"]] == [field]
        assert "control characters" in error["message"]

    async def test_tabs_and_newlines_are_text(self, gw: Harness) -> None:
        """Tab, line feed and carriage return are ordinary text."""
        assert (await gw.client.post({**PLAN, "data": {"topic": "a\tb\r\nc"}})).status == 202

    @pytest.mark.parametrize("depth", [32, 252, 400])
    async def test_nesting_deeper_than_32_answers_400(self, gw: Harness, depth: int) -> None:
        """A body nested deeper than 32 levels answers 400 naming where (252 levels was a 500)."""
        error = await _assert_refused(gw, await gw.client.post({**PLAN, "data": {"deep": _nested(depth)}}), 400,
                                      "validation_error")  # fmt: skip
        assert "nested deeper than 32 levels" in error["message"]
        assert error["details"][0]["field"].startswith("data.deep[0]")

    async def test_nesting_of_32_levels_is_accepted(self, gw: Harness) -> None:
        """32 levels, the body's own included, are accepted."""
        assert (await gw.client.post({**PLAN, "data": {"deep": _nested(29)}})).status == 202


class TestSlowBody:
    async def test_a_body_that_does_not_arrive_in_time_answers_408(self, make_gateway: MakeGateway) -> None:
        """A client that sends the head and trickles part of the body gets a JSON 408 after
        GATEWAY_BODY_TIMEOUT_S, and nothing is published."""
        gw = await make_gateway(gateway_body_timeout_s=0.5)
        host, port = gw.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port.rstrip("/")))
        token = make_token(SECRET, "alice")
        head = (
            f"POST {CAMPAIGN} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        writer.write(head.encode() + b'{"type": "content_')
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(65536), timeout=5)
        writer.close()
        assert time.monotonic() - started < 3
        status_line, _, rest = answer.partition(b"\r\n")
        assert b" 408 " in status_line
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
        assert gw.router.seen == []


class TestSize:
    async def test_oversize_body_answers_413(self, make_gateway: MakeGateway) -> None:
        """A campaign body past GATEWAY_CAMPAIGN_MAX_BODY_BYTES answers 413, from its Content-Length."""
        gw = await make_gateway(gateway_campaign_max_body_bytes=65_536)
        body = {**PLAN, "recipientIds": [f"fan-{i}" for i in range(7_000)]}
        await _assert_refused(gw, await gw.client.post(body), 413, "payload_too_large")

    async def test_oversize_chunked_body_answers_413(self, make_gateway: MakeGateway) -> None:
        """A chunked body (no Content-Length) is cut off at the limit and answers 413 too."""
        gw = await make_gateway(gateway_max_body_bytes=2048, gateway_campaign_max_body_bytes=2048)

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"type": "content_planning", "data": {"blob": "'
            for _ in range(10):
                yield b"x" * 1024
            yield b'"}}'

        await _assert_refused(gw, await gw.client.post(data=chunks(), headers=JSON), 413, "payload_too_large")

    async def test_body_under_the_limit_is_accepted(self, gw: Harness) -> None:
        """A 60 KiB `data` is within the default limit."""
        answer = await gw.client.post({**PLAN, "data": {"blob": "x" * 60_000}})
        assert answer.status == 202

    async def test_data_past_its_own_limit_answers_400(self, gw: Harness) -> None:
        """`data` travels with every generation request: more than 64 KiB of it is refused, naming it."""
        error = await _assert_refused(gw, await gw.client.post({**PLAN, "data": {"blob": "x" * 70_000}}), 400,
                                      "validation_error")  # fmt: skip
        assert "data" in error["message"]


class TestParameters:
    @pytest.mark.parametrize(
        "params", [{"wait": "maybe"}, {"wait": "true", "timeout": "-1"}, {"wait": "true", "timeout": "soon"},
                   {"wait": "true", "timeout": "nan"}, {"wait": "true", "timeout": "inf"}]
    )  # fmt: skip
    async def test_bad_wait_parameters_answer_400(self, gw: Harness, params: dict[str, str]) -> None:
        """wait must be true/false and timeout a positive finite number of seconds."""
        await _assert_refused(gw, await gw.client.post(PLAN, params=params), 400, "invalid_parameter")

    @pytest.mark.parametrize("key", ["", "k" * 256, "clé"])
    async def test_bad_idempotency_keys_answer_400(self, gw: Harness, key: str) -> None:
        """An Idempotency-Key must be 1 to 255 printable ASCII characters."""
        answer = await gw.client.post(PLAN, headers={"Idempotency-Key": key})
        await _assert_refused(gw, answer, 400, "invalid_parameter")


class TestAuth:
    async def test_missing_token_answers_401(self, gw: Harness) -> None:
        """No Authorization header: 401 missing_token with a Bearer challenge."""
        answer = await gw.client.post(PLAN, user=None)
        await _assert_refused(gw, answer, 401, "missing_token")
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="hybrid-orchestrator"'

    async def test_expired_token_answers_401(self, gw: Harness) -> None:
        """A token past its exp (beyond the 10 s leeway) answers 401 token_expired."""
        token = _token({"sub": "alice", "exp": _now() - 60})
        answer = await gw.client.post(PLAN, token=token)
        await _assert_refused(gw, answer, 401, "token_expired")
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]

    # Made when the test runs, not when it is collected: a token made at collection could expire before a long
    # suite reaches the test (and then answer token_expired).
    @pytest.mark.parametrize(
        "make_token",
        [
            lambda: _token({"sub": "alice", "exp": _now() + 600}, secret="another-secret-of-at-least-32-bytes!!"),
            lambda: _token({"sub": "alice"}),
            lambda: _token({"exp": _now() + 600}),
            lambda: _token({"sub": "", "exp": _now() + 600}),
            lambda: _unsigned({"sub": "alice", "exp": _now() + 600}),
            lambda: _token({"sub": "alice", "exp": _now() + 600}, secret=SECRET * 2, algorithm="HS512"),
            lambda: "not.a.jwt",
            lambda: "garbage",
        ],
        ids=["bad-signature", "no-exp", "no-sub", "empty-sub", "alg-none", "other-alg", "malformed", "garbage"],
    )
    async def test_bad_tokens_answer_401_invalid_token(self, gw: Harness, make_token: Callable[[], str]) -> None:
        """Wrong signature, missing claims, another algorithm or not a JWT: 401 invalid_token."""
        await _assert_refused(gw, await gw.client.post(PLAN, token=make_token()), 401, "invalid_token")

    @pytest.mark.parametrize("sub", ["*", " ", " alice", "alice\n", "al ice", "a\x00b", "al*", "-alice", "a" * 129])
    async def test_reserved_and_odd_subs_answer_401(self, gw: Harness, sub: object) -> None:
        """A sub that is not a user id — "*" (the global scope of budgets), whitespace, a control
        character, a glob, or too long — is refused (401 invalid_token), never used as a user."""
        token = _token({"sub": sub, "iat": _now(), "exp": _now() + 600})
        error = await _assert_refused(gw, await gw.client.post(PLAN, token=token), 401, "invalid_token")
        assert "sub must be a user id" in error["message"]

    @pytest.mark.parametrize("sub", ["alice", "ann@example.com", "auth0|5f7c8ec7", "urn:user:42", "a.b+c_d-e"])
    async def test_user_ids_of_identity_providers_are_accepted(self, gw: Harness, sub: str) -> None:
        """E-mails, Auth0's provider|id and URNs are user ids."""
        token = _token({"sub": sub, "iat": _now(), "exp": _now() + 600})
        assert (await gw.client.post(PLAN, token=token)).status == 202

    @pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer    ", "token abc"])
    async def test_other_schemes_answer_401(self, gw: Harness, header: str) -> None:
        """Only `Bearer <JWT>` is accepted."""
        answer = await gw.client.post(PLAN, user=None, headers={"Authorization": header})
        await _assert_refused(gw, answer, 401, "invalid_token")

    async def test_auth_is_checked_before_the_body(self, gw: Harness) -> None:
        """An unauthenticated bad body answers 401, not 400: strangers learn nothing about validation."""
        await _assert_refused(gw, await gw.client.post(data=b"{", headers=JSON, user=None), 401, "missing_token")


class TestNotFound:
    async def test_unknown_path_answers_json_404(self, gw: Harness) -> None:
        """An unknown path answers the API's JSON error shape."""
        answer = await gw.client.call("GET", "/api/v2/nothing", documented=False)
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found"

    async def test_wrong_method_answers_json_405(self, gw: Harness) -> None:
        """GET on the POST-only path answers 405 with Allow."""
        answer = await gw.client.call("GET", "/api/v2/campaigns/hybrid", documented=False)
        assert answer.status == 405 and answer.body["error"]["code"] == "method_not_allowed"
        assert answer.headers["Allow"] == "POST"
