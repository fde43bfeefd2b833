"""Campaign bodies at the gateway: the fans' ids, their number, duplicates, personalisation, the callback
URL and the account — each refused with a 400 that says what is wrong, before anything is published."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.messages import WorkflowRequested
from tests.gateway.conftest import Harness, MakeGateway
from tests.gateway.test_bad_input import _assert_refused

CAMPAIGN: dict[str, Any] = {"type": "campaign_execution", "data": {"offer": "20% off"}, "sendToOnlyFans": True}


def _posted(gw: Harness) -> WorkflowRequested:
    [envelope] = gw.router.requests
    assert isinstance(envelope.payload, WorkflowRequested)
    return envelope.payload


class TestRecipientIds:
    @pytest.mark.parametrize("bad", [".", "..", "...", "a/b", "fan 1", "x" * 129, "", "fan%2F..", "é"])
    async def test_an_id_outside_the_pattern_answers_400_naming_it(self, gw: Harness, bad: str) -> None:
        """Ids are letters, digits, _ - . (never only dots: '.' and '..' would rewrite the platform's URL)."""
        answer = await gw.client.post({**CAMPAIGN, "recipientIds": ["ok-1", bad]})
        error = await _assert_refused(gw, answer, 400, "validation_error")
        assert error["details"][0]["field"] == "recipientIds.1"

    async def test_a_dotted_id_with_letters_is_accepted(self, gw: Harness) -> None:
        """Dots inside an id are fine ('fan.1', '.hidden' are not path traversals)."""
        answer = await gw.client.post({**CAMPAIGN, "recipientIds": ["fan.1", ".hidden", "a-b_c"]})
        assert answer.status == 202, answer.body

    async def test_duplicates_count_once_toward_the_maximum(self, make_gateway: MakeGateway) -> None:
        """A fan given twice (in either list) is one fan: it counts once toward CAMPAIGN_MAX_RECIPIENTS (the
        router sends it one message: tests/router)."""
        gw = await make_gateway(campaign_max_recipients=3)
        body = {**CAMPAIGN, "recipientIds": ["a", "b", "a"], "recipients": [{"id": "b"}, {"id": "c"}]}
        assert (await gw.client.post(body)).status == 202

    async def test_more_than_the_maximum_answers_400_with_the_limit(self, make_gateway: MakeGateway) -> None:
        """More fans than CAMPAIGN_MAX_RECIPIENTS: 400 saying the limit."""
        gw = await make_gateway(campaign_max_recipients=50)
        body = {**CAMPAIGN, "recipientIds": [f"fan-{i}" for i in range(51)]}
        error = await _assert_refused(gw, await gw.client.post(body), 400, "validation_error")
        assert "at most 50 (CAMPAIGN_MAX_RECIPIENTS)" in error["message"]

    async def test_ten_thousand_fans_are_accepted_by_default(self, gw: Harness) -> None:
        """The default maximum is 10,000 fans, and their body fits the campaign body limit."""
        body = {**CAMPAIGN, "recipientIds": [f"fan-{i:05d}" for i in range(10_000)]}
        assert (await gw.client.post(body)).status == 202
        assert len(_posted(gw).intent.recipient_ids) == 10_000
        gw.router.seen.clear()
        error = await _assert_refused(
            gw, await gw.client.post({**body, "recipientIds": [*body["recipientIds"], "one-more"]}), 400,
            "validation_error",
        )  # fmt: skip
        assert "at most 10000" in error["message"]


class TestPersonalisation:
    async def test_recipients_with_vars_reach_the_router_as_strings(self, gw: Harness) -> None:
        """`recipients: [{id, vars}]`: each fan's vars travel with the request (numbers and booleans as text)."""
        body = {
            **CAMPAIGN,
            "data": {"personalize": True},
            "recipients": [{"id": "f1", "vars": {"name": "Ann", "spent": 42, "vip": True}}, {"id": "f2"}],
        }
        assert (await gw.client.post(body)).status == 202
        [first, second] = _posted(gw).recipients
        assert (first.id, dict(first.vars)) == ("f1", {"name": "Ann", "spent": "42", "vip": "true"})
        assert (second.id, dict(second.vars)) == ("f2", {})

    @pytest.mark.parametrize(
        "vars_",
        [{"name": {"nested": 1}}, {"name": [1]}, {"1bad": "x"}, {"name": "x" * 501}, {f"v{i}": "x" for i in range(21)}],
    )
    async def test_bad_vars_answer_400(self, gw: Harness, vars_: dict[str, Any]) -> None:
        """vars are at most 20 flat name → text/number/boolean pairs, names identifier-like, values short."""
        body = {**CAMPAIGN, "recipients": [{"id": "f1", "vars": vars_}]}
        error = await _assert_refused(gw, await gw.client.post(body), 400, "validation_error")
        assert error["details"][0]["field"].startswith("recipients.0.vars")


class TestCallbackUrl:
    @pytest.mark.parametrize(
        "url", ["http://example.com/hook", "ftp://example.com", "https://user:pw@example.com/", "not a url"]
    )
    async def test_a_url_that_is_not_plain_https_answers_400(self, gw: Harness, url: str) -> None:
        """callbackUrl must be https (no credentials in it)."""
        error = await _assert_refused(gw, await gw.client.post({**CAMPAIGN, "recipientId": "f", "callbackUrl": url}),
                                      400, "validation_error")  # fmt: skip
        assert error["details"][0]["field"] == "callbackUrl"

    async def test_https_is_accepted_and_travels_with_the_request(self, gw: Harness) -> None:
        """An https callbackUrl reaches the router with the workflow."""
        body = {**CAMPAIGN, "recipientId": "f", "callbackUrl": "https://agency.example/hooks/ho"}
        assert (await gw.client.post(body)).status == 202
        assert _posted(gw).callback_url == "https://agency.example/hooks/ho"

    async def test_local_http_only_where_allowed(self, make_gateway: MakeGateway) -> None:
        """http to localhost is refused unless WEBHOOK_ALLOW_LOCAL_HTTP (the embedded mode) allows it."""
        body = {**CAMPAIGN, "recipientId": "f", "callbackUrl": "http://127.0.0.1:9999/hook"}
        strict = await make_gateway(webhook_allow_local_http=False)  # whatever an embedded run left in os.environ
        await _assert_refused(strict, await strict.client.post(body), 400, "validation_error")
        local = await make_gateway(webhook_allow_local_http=True)
        assert (await local.client.post(body)).status == 202


class TestAccount:
    async def test_a_caller_whose_id_is_not_a_platform_id_cannot_send(self, gw: Harness) -> None:
        """sendToOnlyFans sends from the caller's account: a user id that is no platform id (an e-mail) is
        refused (400), not used as a URL path segment."""
        answer = await gw.client.post({**CAMPAIGN, "recipientId": "f"}, user="ann@example.com")
        await _assert_refused(gw, answer, 400, "invalid_account")


class TestDeliveriesParameters:
    @pytest.mark.parametrize(
        "params",
        [{}, {"workflowId": "nope"}, {"workflowId": "00000000-0000-0000-0000-000000000001", "limit": "0"},
         {"workflowId": "00000000-0000-0000-0000-000000000001", "limit": "1001"},
         {"workflowId": "00000000-0000-0000-0000-000000000001", "cursor": "-1"},
         {"workflowId": "00000000-0000-0000-0000-000000000001", "status": "lost"}],
    )  # fmt: skip
    async def test_bad_parameters_answer_400(self, gw: Harness, params: dict[str, str]) -> None:
        """workflowId is a UUID, limit 1..1000, cursor ≥ 0, status a delivery state."""
        answer = await gw.client.call("GET", "/api/v2/campaigns/deliveries", params=params)
        assert answer.status == 400 and answer.body["error"]["code"] == "invalid_parameter", answer.body
