"""The platform client classifies every answer — taken, certainly not taken, or unknown — and
never raises for the platform's doing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.enums import ErrorType
from libs.simulators import PlatformFaultKind, PlatformLimits, PlatformSimulator
from libs.simulators.platform import PlatformRoute
from services.of_sender.client import PlatformClient, retry_after_s
from services.of_sender.platform import NotFound, NotSent, Sent, Unknown
from tests.integration.stack import free_port


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    async with PlatformSimulator(PlatformLimits(account_limit=100, window_s=1, recipient_min_interval_s=0)) as s:
        yield s


@pytest.fixture
async def client(sim: PlatformSimulator) -> AsyncIterator[PlatformClient]:
    instance = PlatformClient(sim.url, "token", timeout_s=0.5)
    await instance.start()
    yield instance
    await instance.close()


class TestSend:
    async def test_a_2xx_is_sent_with_the_platform_id(self, client: PlatformClient, sim: PlatformSimulator) -> None:
        """The message goes to the account's chat with the fan, with the key and the bearer token."""
        result = await client.send("creator 1", "fan/7", "hello", idempotency_key="k1")
        assert isinstance(result, Sent)
        [arrival] = sim.delivered()
        assert (arrival.account_id, arrival.recipient_id) == ("creator 1", "fan/7")
        assert arrival.idempotency_key == "k1" and arrival.message_id == result.platform_message_id

    @pytest.mark.parametrize(
        ("fault", "fields", "error_type", "retryable", "status"),
        [
            (PlatformFaultKind.RATE_LIMIT, {"retry_after": 12}, ErrorType.RATE_LIMIT_EXCEEDED, True, 429),
            (PlatformFaultKind.BAD_REQUEST, {}, ErrorType.ONLYFANS_API_ERROR, False, 400),
            (PlatformFaultKind.SERVER_ERROR, {"status": 502}, ErrorType.ONLYFANS_API_ERROR, True, 502),
        ],
    )
    async def test_an_answered_error_is_not_sent(
        self,
        client: PlatformClient,
        sim: PlatformSimulator,
        fault: PlatformFaultKind,
        fields: dict[str, float],
        error_type: ErrorType,
        retryable: bool,
        status: int,
    ) -> None:
        """429 → rate limited with its Retry-After; other 4xx permanent; 5xx retryable — all certainly not
        taken."""
        sim.add_fault(fault, **fields)
        result = await client.send("a", "f", "hello", idempotency_key="k")
        assert isinstance(result, NotSent)
        error = result.error
        assert (error.type, error.retryable, error.status_code) == (error_type, retryable, status)
        if fault is PlatformFaultKind.RATE_LIMIT:
            assert error.retry_after_s == 12 and error.message.startswith("onlyfans_rate_limited")

    async def test_a_refused_connection_is_not_sent(self) -> None:
        """Nothing listening: the request was never written, so it is certainly not taken (retryable)."""
        client = PlatformClient(f"http://127.0.0.1:{free_port()}", "token", timeout_s=0.5)
        await client.start()
        try:
            result = await client.send("a", "f", "hello", idempotency_key="k")
        finally:
            await client.close()
        assert isinstance(result, NotSent) and result.error.retryable and result.error.status_code is None

    @pytest.mark.parametrize(
        ("fault", "fields", "taken"),
        [
            (PlatformFaultKind.RESET_AFTER_RECEIVE, {}, True),
            (PlatformFaultKind.LATENCY, {"latency_s": 2}, False),
        ],
    )
    async def test_a_lost_answer_is_unknown(
        self,
        client: PlatformClient,
        sim: PlatformSimulator,
        fault: PlatformFaultKind,
        fields: dict[str, float],
        taken: bool,
    ) -> None:
        """A connection dropped after the request was written, or a timeout, is unknown (retryable), whether
        the platform took the message or not."""
        sim.add_fault(fault, **fields)
        result = await client.send("a", "f", "hello", idempotency_key="k")
        assert isinstance(result, Unknown) and result.error.retryable and result.error.status_code is None
        assert len(sim.delivered()) == int(taken)

    def test_retry_after_reads_seconds_and_dates(self) -> None:
        """Retry-After is delta-seconds or an HTTP date; junk is ignored."""
        assert retry_after_s("2.5") == 2.5
        assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
        assert retry_after_s("soon") is None and retry_after_s(None) is None


class TestLookup:
    async def test_a_taken_message_is_found_with_its_id(self, client: PlatformClient, sim: PlatformSimulator) -> None:
        """The look-up finds the message sent under the key (escaped in the path) and sends nothing."""
        sent = await client.send("creator 1", "fan", "hello", idempotency_key="key/1")
        found = await client.lookup("creator 1", "key/1")
        assert isinstance(sent, Sent) and found == sent
        assert len(sim.arrivals()) == 1

    async def test_a_missing_message_is_not_found(self, client: PlatformClient) -> None:
        """404 is NotFound: the platform has no message under the key."""
        assert isinstance(await client.lookup("a", "never-sent"), NotFound)

    @pytest.mark.parametrize(
        ("fault", "fields"),
        [
            (PlatformFaultKind.SERVER_ERROR, {"status": 503}),
            (PlatformFaultKind.RATE_LIMIT, {}),
            (PlatformFaultKind.RESET_AFTER_RECEIVE, {"count": 2}),  # aiohttp retries a GET once
            (PlatformFaultKind.LATENCY, {"latency_s": 2}),
        ],
    )
    async def test_a_failed_lookup_is_unknown(
        self, client: PlatformClient, sim: PlatformSimulator, fault: PlatformFaultKind, fields: dict[str, float]
    ) -> None:
        """An error answer, a dropped connection or a timeout tells nothing: Unknown, even though the
        message is there."""
        await client.send("a", "f", "hello", idempotency_key="k")
        sim.add_fault(fault, route=PlatformRoute.LOOKUP, **fields)
        assert isinstance(await client.lookup("a", "k"), Unknown)
