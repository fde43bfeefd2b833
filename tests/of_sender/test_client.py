"""The platform client classifies every answer (DESIGN §6) and never raises for the platform's doing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.enums import ErrorType
from contracts.messages import ErrorInfo
from libs.simulators import PlatformFaultKind, PlatformLimits, PlatformSimulator
from services.of_sender.client import PlatformClient, Sent, retry_after_s


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


class TestPlatformClient:
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
            (PlatformFaultKind.RESET_AFTER_RECEIVE, {}, ErrorType.ONLYFANS_API_ERROR, True, None),
            (PlatformFaultKind.LATENCY, {"latency_s": 2}, ErrorType.ONLYFANS_API_ERROR, True, None),
        ],
    )
    async def test_failures_are_classified(
        self,
        client: PlatformClient,
        sim: PlatformSimulator,
        fault: PlatformFaultKind,
        fields: dict[str, float],
        error_type: ErrorType,
        retryable: bool,
        status: int | None,
    ) -> None:
        """429 → rate limited with its Retry-After; other 4xx permanent; 5xx, a dropped connection and a
        timeout retryable."""
        sim.add_fault(fault, **fields)
        result = await client.send("a", "f", "hello", idempotency_key="k")
        assert isinstance(result, ErrorInfo)
        assert (result.type, result.retryable, result.status_code) == (error_type, retryable, status)
        if fault is PlatformFaultKind.RATE_LIMIT:
            assert result.retry_after_s == 12 and result.message.startswith("onlyfans_rate_limited")

    def test_retry_after_reads_seconds_and_dates(self) -> None:
        """Retry-After is delta-seconds or an HTTP date; junk is ignored."""
        assert retry_after_s("2.5") == 2.5
        assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
        assert retry_after_s("soon") is None and retry_after_s(None) is None
