"""The platform simulator is the delivery tests' referee: strict limits, idempotency, faults, its log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from libs.simulators import PlatformFaultKind, PlatformLimits, PlatformSimulator

AUTH = {"Authorization": "Bearer t"}


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    async with PlatformSimulator(PlatformLimits(account_limit=2, window_s=0.5, recipient_min_interval_s=0.3)) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    sim: PlatformSimulator,
    account: str,
    fan: str,
    *,
    key: str | None = None,
    text: str = "hi",
) -> tuple[int, dict[str, object], dict[str, str]]:
    headers = {**AUTH, **({"Idempotency-Key": key} if key else {})}
    url = f"{sim.url}/accounts/{account}/chats/{fan}/messages"
    async with http.post(url, json={"text": text}, headers=headers) as response:
        return response.status, await response.json(), dict(response.headers)


class TestPlatformSimulator:
    async def test_a_message_is_delivered_and_logged(self, sim: PlatformSimulator, http: aiohttp.ClientSession) -> None:
        """200 with the platform's message id; the arrival is logged with its time and key."""
        status, body, _ = await post(http, sim, "acct", "fan", key="k1")
        assert status == 200 and str(body["id"]).startswith("msg_")
        [arrival] = sim.arrivals()
        assert (arrival.account_id, arrival.recipient_id, arrival.idempotency_key) == ("acct", "fan", "k1")
        assert arrival.outcome == "sent" and arrival.message_id == body["id"]

    async def test_a_repeated_key_is_answered_but_not_delivered(
        self, sim: PlatformSimulator, http: aiohttp.ClientSession
    ) -> None:
        """The same Idempotency-Key gets the first answer; the fan still has one message. Reusing the key
        for another message is refused."""
        _, first, _ = await post(http, sim, "acct", "fan", key="k1")
        status, again, _ = await post(http, sim, "acct", "fan", key="k1")
        assert status == 200 and again == first
        assert len(sim.delivered()) == 1 and sim.arrivals()[1].outcome == "replayed"
        status, _, _ = await post(http, sim, "acct", "fan", key="k1", text="something else")
        assert status == 422

    async def test_limits_are_enforced_with_429(self, sim: PlatformSimulator, http: aiohttp.ClientSession) -> None:
        """Over the account's window or under a fan's spacing is answered 429 with Retry-After."""
        assert (await post(http, sim, "acct", "fan1"))[0] == 200
        status, _, headers = await post(http, sim, "acct", "fan1")
        assert status == 429 and 0 < float(headers["Retry-After"]) <= 0.3
        assert (await post(http, sim, "acct", "fan2"))[0] == 200
        status, _, headers = await post(http, sim, "acct", "fan3")
        assert status == 429 and 0 < float(headers["Retry-After"]) <= 0.5
        await asyncio.sleep(0.5)
        assert (await post(http, sim, "acct", "fan3"))[0] == 200
        assert [a.outcome for a in sim.arrivals()].count("rate_limited") == 2

    async def test_auth_and_body_are_checked(self, sim: PlatformSimulator, http: aiohttp.ClientSession) -> None:
        """No bearer token: 401; no text: 400 — neither is delivered."""
        url = f"{sim.url}/accounts/a/chats/f/messages"
        async with http.post(url, json={"text": "hi"}) as response:
            assert response.status == 401
        async with http.post(url, json={"words": "hi"}, headers=AUTH) as response:
            assert response.status == 400
        assert sim.delivered() == []

    async def test_faults_are_injected_in_order(self, sim: PlatformSimulator, http: aiohttp.ClientSession) -> None:
        """A 503 and a 429 fault answer without delivering; then requests are served again."""
        sim.add_fault(PlatformFaultKind.SERVER_ERROR)
        sim.add_fault(PlatformFaultKind.RATE_LIMIT, retry_after=7)
        assert (await post(http, sim, "a", "f"))[0] == 503
        status, _, headers = await post(http, sim, "a", "f")
        assert status == 429 and headers["Retry-After"] == "7"
        assert (await post(http, sim, "a", "f"))[0] == 200
        assert len(sim.delivered()) == 1

    async def test_reset_after_receive_delivers_without_answering(
        self, sim: PlatformSimulator, http: aiohttp.ClientSession
    ) -> None:
        """The connection drops after the message was taken: the client sees an error, the fan a message,
        and a retry with the same key is answered from the first delivery."""
        sim.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE)
        with pytest.raises(aiohttp.ClientError):
            await post(http, sim, "a", "f", key="k")
        status, body, _ = await post(http, sim, "a", "f", key="k")
        assert status == 200 and body["id"] == sim.delivered()[0].message_id
        assert [a.outcome for a in sim.arrivals()] == ["sent", "replayed"]

    async def test_the_log_is_served_to_other_processes(
        self, sim: PlatformSimulator, http: aiohttp.ClientSession
    ) -> None:
        """/_sim/arrivals lists the log; /_sim/faults takes a fault as JSON."""
        async with http.post(f"{sim.url}/_sim/faults", json={"kind": "bad_request"}) as response:
            assert response.status == 201
        assert (await post(http, sim, "a", "f"))[0] == 400
        async with http.get(f"{sim.url}/_sim/arrivals") as response:
            arrivals = (await response.json())["arrivals"]
        assert [a["outcome"] for a in arrivals] == ["bad_request"]
