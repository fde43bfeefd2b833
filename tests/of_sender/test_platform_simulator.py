"""The platform simulator is the delivery tests' referee: strict limits, idempotency, faults, its log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from libs.simulators import PlatformFaultKind, PlatformLimits, PlatformSimulator
from libs.simulators.platform import PlatformRoute

AUTH = {"Authorization": "Bearer t"}
LIMITS = PlatformLimits(account_limit=2, window_s=0.5, recipient_min_interval_s=0.3)


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    async with PlatformSimulator(LIMITS) as s:
        yield s


@pytest.fixture
async def forgetful() -> AsyncIterator[PlatformSimulator]:
    """A platform that does not honour Idempotency-Key."""
    async with PlatformSimulator(LIMITS, honour_idempotency=False) as s:
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


async def lookup(
    http: aiohttp.ClientSession, sim: PlatformSimulator, account: str, key: str, *, auth: bool = True
) -> tuple[int, dict[str, object]]:
    url = f"{sim.url}/accounts/{account}/messages/by-key/{key}"
    async with http.get(url, headers=AUTH if auth else {}) as response:
        return response.status, await response.json()


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

    async def test_a_latency_fault_waited_out_answers_normally(
        self, sim: PlatformSimulator, http: aiohttp.ClientSession
    ) -> None:
        """LATENCY only delays: the client that waits gets the message's answer (it is not dropped)."""
        sim.add_fault(PlatformFaultKind.LATENCY, latency_s=0.05)
        status, *_ = await post(http, sim, "a", "f", key="k")
        assert status == 200 and [a.outcome for a in sim.arrivals()] == ["sent"]

    async def test_a_client_that_gives_up_during_latency_is_logged_abandoned(
        self, sim: PlatformSimulator, http: aiohttp.ClientSession
    ) -> None:
        """A request whose client times out before the platform took it is in the log as abandoned, and
        nothing was delivered."""
        sim.add_fault(PlatformFaultKind.LATENCY, latency_s=5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await post(http, sim, "a", "f", key="k")
        for _ in range(100):  # the server notices the closed connection a moment later
            if sim.arrivals():
                break
            await asyncio.sleep(0.01)
        assert [a.outcome for a in sim.arrivals()] == ["abandoned"] and sim.delivered() == []


class TestLookup:
    async def test_a_taken_message_is_found_by_its_key(
        self, sim: PlatformSimulator, http: aiohttp.ClientSession
    ) -> None:
        """The look-up answers with the body of the message's first answer; it is not a send (the arrival log
        and the limits do not see it)."""
        _, sent, _ = await post(http, sim, "acct", "fan", key="k1")
        for _ in range(3):  # more look-ups than the account's limit allows sends in the window
            status, found = await lookup(http, sim, "acct", "k1")
            assert status == 200 and found == sent
        assert len(sim.arrivals()) == 1
        assert [(x.outcome, x.message_id) for x in sim.lookups()] == [("found", sent["id"])] * 3
        assert (await post(http, sim, "acct", "fan2"))[0] == 200

    async def test_an_unknown_key_is_not_found(self, sim: PlatformSimulator, http: aiohttp.ClientSession) -> None:
        """404 for a key never taken, and for a key taken for another account."""
        await post(http, sim, "acct", "fan", key="k1")
        assert (await lookup(http, sim, "acct", "k2"))[0] == 404
        assert (await lookup(http, sim, "other", "k1"))[0] == 404
        assert [x.outcome for x in sim.lookups()] == ["not_found", "not_found"]

    async def test_a_refused_message_is_not_found(self, sim: PlatformSimulator, http: aiohttp.ClientSession) -> None:
        """A message answered with an error (here a 503) was not taken: the look-up says so."""
        sim.add_fault(PlatformFaultKind.SERVER_ERROR)
        assert (await post(http, sim, "acct", "fan", key="k1"))[0] == 503
        assert (await lookup(http, sim, "acct", "k1"))[0] == 404

    async def test_the_lookup_needs_the_token(self, sim: PlatformSimulator, http: aiohttp.ClientSession) -> None:
        """No bearer token: 401."""
        assert (await lookup(http, sim, "acct", "k1", auth=False))[0] == 401

    async def test_lookup_faults_hit_only_lookups(self, sim: PlatformSimulator, http: aiohttp.ClientSession) -> None:
        """A fault for the look-up route (here through /_sim/faults) leaves sends alone and answers the next
        look-up; a dropped look-up connection is a client error (twice: aiohttp retries a GET once)."""
        fault = {"kind": "server_error", "route": "lookup", "status": 502}
        async with http.post(f"{sim.url}/_sim/faults", json=fault) as response:
            assert response.status == 201
        sim.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE, route=PlatformRoute.LOOKUP, count=2)
        assert (await post(http, sim, "acct", "fan", key="k1"))[0] == 200
        assert (await lookup(http, sim, "acct", "k1"))[0] == 502
        with pytest.raises(aiohttp.ClientError):
            await lookup(http, sim, "acct", "k1")
        assert (await lookup(http, sim, "acct", "k1"))[0] == 200
        outcomes = [x.outcome for x in sim.lookups()]
        assert outcomes == ["server_error", "reset_after_receive", "reset_after_receive", "found"]


class TestIdempotencyNotHonoured:
    async def test_a_key_sent_again_is_delivered_again(
        self, forgetful: PlatformSimulator, http: aiohttp.ClientSession
    ) -> None:
        """Without honouring Idempotency-Key the same message twice reaches the fan twice (two ids, both
        logged sent); the look-up still answers with the first."""
        _, first, _ = await post(http, forgetful, "acct", "fan1", key="k1")
        await asyncio.sleep(LIMITS.recipient_min_interval_s)
        _, second, _ = await post(http, forgetful, "acct", "fan1", key="k1")
        assert first["id"] != second["id"]
        assert [(a.outcome, a.idempotency_key) for a in forgetful.arrivals()] == [("sent", "k1")] * 2
        assert (await lookup(http, forgetful, "acct", "k1"))[1] == first

    async def test_every_post_after_a_dropped_answer_is_counted(
        self, forgetful: PlatformSimulator, http: aiohttp.ClientSession
    ) -> None:
        """reset_after_receive takes the message and drops the answer; a blind resend is a second
        delivery, and /_sim/arrivals shows both."""
        forgetful.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE)
        with pytest.raises(aiohttp.ClientError):
            await post(http, forgetful, "acct", "fan", key="k")
        status, found = await lookup(http, forgetful, "acct", "k")
        assert status == 200 and found["id"] == forgetful.delivered()[0].message_id
        await asyncio.sleep(LIMITS.recipient_min_interval_s)
        assert (await post(http, forgetful, "acct", "fan", key="k"))[0] == 200
        async with http.get(f"{forgetful.url}/_sim/arrivals") as response:
            arrivals = (await response.json())["arrivals"]
        assert [(a["outcome"], a["idempotency_key"]) for a in arrivals] == [("sent", "k")] * 2
