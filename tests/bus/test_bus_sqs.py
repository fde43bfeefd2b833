"""The conformance suite on SQS (moto's server), plus what only SQS has: redrive, visibility, attributes,
AWSTraceHeader, provisioning — and the transport's pure parts (URL, wire format, batching) without a server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import Envelope, Message
from libs.bus import Bus, BusConnectionError, PublishError, RedeliveryPolicy, Unroutable
from libs.bus import constants as c
from libs.bus.sqs import SqsBus
from libs.bus.sqs_batch import Batcher
from libs.bus.sqs_config import H_PACKED, MAX_MESSAGE_ATTRIBUTES, REPLY_STALE_S, XRAY_HEADER, SqsSettings
from libs.bus.sqs_provision import destroy, list_queues, reply_prefix, sqs_client, sweep_reply_queues
from libs.bus.sqs_wire import incoming, outgoing
from libs.telemetry.messaging import current_trace_id
from libs.telemetry.setup import build_propagator
from tests.bus.conformance import ROUTER, BusConformance, Recorder, eventually, requested
from tests.fixtures.tcp_proxy import TcpProxy

FAST = RedeliveryPolicy(max_deliveries=3, base_s=0.05, cap_s=0.2)
# Short long-polls and visibility keep the suite fast; production defaults are 20 s and 30 s.
TEST_PARAMS = "wait_time=1&visibility_timeout=2&max_receive_count=3"

MakeSqsBus = Callable[..., Awaitable[SqsBus]]


def bus_url(endpoint: str, params: str = TEST_PARAMS) -> str:
    return f"sqs://?region=us-east-1&endpoint_url={endpoint}&{params}"


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def sqs(sqs_endpoint: str) -> AsyncIterator[Any]:
    """A plain aiobotocore SQS client on moto, to look at queues behind the bus's back."""
    async with sqs_client(SqsSettings.from_url(bus_url(sqs_endpoint))) as client:
        yield client


@pytest.fixture
async def make_bus(sqs_endpoint: str, namespace: str, sqs: Any) -> AsyncIterator[MakeSqsBus]:
    """Connected buses on one fresh namespace (`params` replaces the test URL parameters); all queues of the
    namespace are deleted afterwards."""
    buses: list[SqsBus] = []

    async def make(params: str = TEST_PARAMS, endpoint: str | None = None) -> SqsBus:
        bus = SqsBus(bus_url(endpoint or sqs_endpoint, params), namespace=namespace, policy=FAST)
        await bus.connect()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close(grace_s=1)
    await destroy(sqs, namespace)


class TestSqsBusConformance(BusConformance):
    DURABLE = True


async def _queue_counts(sqs: Any, url: str) -> dict[str, int]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
    return {
        name.removeprefix("ApproximateNumberOfMessages") or "Visible": int(response["Attributes"][name])
        for name in names
    }


async def _wait_dead(bus: Bus, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while not (dead := await bus.dead_letters(ROUTER)):
        if time.monotonic() > deadline:
            raise AssertionError("no dead letter in time")
    return dead


class TestSqsBus:
    async def test_sqs_redrive_moves_a_message_whose_consumer_keeps_dying(self, make_bus: MakeSqsBus) -> None:
        """A handler killed mid-flight never deletes its message; after maxReceiveCount receives SQS itself
        moves it to the DLQ, where dead_letters reports the redrive as the reason."""
        bus = await make_bus("wait_time=1&visibility_timeout=1&max_receive_count=2")
        runs: list[Envelope] = []

        async def killed(envelope: Envelope) -> Message | None:
            runs.append(envelope)
            raise asyncio.CancelledError  # what a process killed mid-handler looks like to SQS: no delete

        await bus.subscribe(ROUTER, {"workflow.requested": killed})
        sent = requested()
        await bus.publish(sent)
        dead = await _wait_dead(bus, timeout=15)
        assert [e.id for e in runs] == [sent.id, sent.id]
        assert "maxReceiveCount" in dead[0].reason
        assert Envelope.decode(dead[0].body).id == sent.id

    async def test_sqs_heartbeat_keeps_a_long_handler_s_message_invisible(self, make_bus: MakeSqsBus, sqs: Any) -> None:
        """A handler running past the visibility timeout is not redelivered to another slot meanwhile."""
        bus = await make_bus("wait_time=1&visibility_timeout=1")
        rec = Recorder(sleep_s=2.0)
        await bus.subscribe(ROUTER, {"workflow.requested": rec}, prefetch=4)
        await bus.publish(requested())
        await eventually(lambda: rec.finished == 1, timeout=10)
        await asyncio.sleep(1.2)  # a redelivery (visible after 1 s, seen by moto within 1 s) would be here
        assert len(rec.seen) == 1
        assert await _queue_counts(sqs, bus._topology.queues[ROUTER]) == {"Visible": 0, "NotVisible": 0, "Delayed": 0}

    async def test_sqs_delays_beyond_15_minutes_are_stepped(self, make_bus: MakeSqsBus, sqs: Any) -> None:
        """A delay over 900 s leaves with the maximum DelaySeconds, and a message arriving long before its
        x-ho-deliver-at is sent back delayed instead of being handled."""
        bus = await make_bus()
        rec = Recorder()
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        await bus.publish(requested(1), delay=3600)
        due = str(int((time.time() + 3600) * 1000))
        await bus.publish_raw(ROUTER, requested(2).encode(), {c.H_DELIVER_AT: due})
        url = bus._topology.queues[ROUTER]

        async def counts() -> dict[str, int]:
            return await _queue_counts(sqs, url)

        deadline = time.monotonic() + 10
        while (now := await counts()) != {"Visible": 0, "NotVisible": 0, "Delayed": 2}:
            assert time.monotonic() < deadline, now
            await asyncio.sleep(0.1)
        assert rec.seen == []

    async def test_sqs_publish_to_a_deleted_queue_is_unroutable(self, make_bus: MakeSqsBus, sqs: Any) -> None:
        """QueueDoesNotExist from SQS surfaces as Unroutable, not as a generic error or a silent drop."""
        bus = await make_bus()
        await sqs.delete_queue(QueueUrl=bus._topology.queues[ROUTER])
        with pytest.raises(Unroutable):
            await bus.publish(requested())

    async def test_sqs_xray_trace_header_travels_as_the_system_attribute(
        self, make_bus: MakeSqsBus, sqs: Any, spans: InMemorySpanExporter
    ) -> None:
        """With only the X-Ray propagator on, the context rides in AWSTraceHeader (not a message attribute)
        and the consumer's span continues the publisher's trace."""
        bus = await make_bus()
        previous = propagate.get_global_textmap()
        propagate.set_global_textmap(build_propagator("xray"))
        try:
            with trace.get_tracer("test").start_as_current_span("publisher") as root:
                await bus.publish(requested())
            trace_id = format(root.get_span_context().trace_id, "032x")
            raw = await sqs.receive_message(
                QueueUrl=bus._topology.queues[ROUTER],
                WaitTimeSeconds=1,
                VisibilityTimeout=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["AWSTraceHeader"],
            )
            message = raw["Messages"][0]
            assert f"Root=1-{trace_id[:8]}-{trace_id[8:]}" in message["Attributes"]["AWSTraceHeader"]
            assert XRAY_HEADER not in message.get("MessageAttributes", {})
            seen: list[str | None] = []

            async def handler(envelope: Envelope) -> None:
                seen.append(current_trace_id())

            await bus.subscribe(ROUTER, {"workflow.requested": handler})
            await eventually(lambda: len(seen) == 1)
            assert seen == [trace_id]
        finally:
            propagate.set_global_textmap(previous)

    async def test_sqs_more_than_ten_headers_round_trip(self, sqs: Any, namespace: str) -> None:
        """Headers beyond SQS's 10 attributes are packed and come back intact through a real queue."""
        url = (await sqs.create_queue(QueueName=f"{namespace}-wire"))["QueueUrl"]
        headers = {f"x-ho-extra-{i}": f"value {i}" for i in range(9)}
        headers |= {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "tracestate": "a=b", "baggage": "k=v"}
        request = outgoing(b"\x00binary", headers)
        assert len(request["MessageAttributes"]) <= MAX_MESSAGE_ATTRIBUTES
        assert "traceparent" in request["MessageAttributes"]
        await sqs.send_message(QueueUrl=url, **request)
        response = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"])
        received = incoming(response["Messages"][0])
        assert received.body == b"\x00binary"
        assert received.headers == headers
        await sqs.delete_queue(QueueUrl=url)

    async def test_sqs_connect_converges_changed_queue_settings(self, make_bus: MakeSqsBus, sqs: Any) -> None:
        """Connecting with another max_receive_count updates the existing queue's RedrivePolicy."""
        await make_bus("max_receive_count=3")
        bus = await make_bus("max_receive_count=7")
        response = await sqs.get_queue_attributes(QueueUrl=bus._topology.queues[ROUTER], AttributeNames=["All"])
        assert json.loads(response["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 7

    async def test_sqs_reply_queue_is_deleted_on_close(self, make_bus: MakeSqsBus, sqs: Any) -> None:
        """A request creates this process's reply queue; close() deletes it."""
        bus = await make_bus()
        await bus.subscribe(ROUTER, {"workflow.status.query": _status})
        await bus.request(_query(), timeout=5)
        prefix = reply_prefix(bus.namespace)
        assert len(await list_queues(sqs, prefix)) == 1
        await bus.close()
        assert await list_queues(sqs, prefix) == []

    async def test_sqs_sweep_deletes_only_stale_reply_queues(self, make_bus: MakeSqsBus, sqs: Any) -> None:
        """`sweep` leaves a reply queue whose owner stamped it recently and deletes one gone stale."""
        bus = await make_bus()
        url = await bus._reply_queue()
        assert await sweep_reply_queues(sqs, bus.namespace) == []
        assert await sweep_reply_queues(sqs, bus.namespace, now=time.time() + REPLY_STALE_S + 60) == [url]

    async def test_sqs_provision_command_creates_what_create_queues_false_needs(
        self, sqs_endpoint: str, namespace: str, sqs: Any
    ) -> None:
        """With create_queues=false connect refuses a namespace nobody provisioned; after
        `python -m libs.bus.sqs provision` it connects to those queues."""
        url = bus_url(sqs_endpoint, f"create_queues=false&namespace={namespace}")
        with pytest.raises(BusConnectionError, match="provision"):
            await SqsBus(url).connect()
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "libs.bus.sqs", "provision"],
            env={**os.environ, "BUS_URL": bus_url(sqs_endpoint, f"namespace={namespace}")},
            capture_output=True,
            check=False,
        )
        try:
            assert result.returncode == 0, result.stderr.decode()
            printed = json.loads(result.stdout)
            bus = SqsBus(url)
            await bus.connect()
            assert dict(bus._topology.queues) == printed["queues"]
            await bus.close()
        finally:
            await destroy(sqs, namespace)

    async def test_sqs_consumer_survives_an_endpoint_outage(self, make_bus: MakeSqsBus, sqs_endpoint: str) -> None:
        """With SQS unreachable for a while the consumer keeps polling and, once it is back, gets what was
        published meanwhile."""
        host, port = sqs_endpoint.removeprefix("http://").split(":")
        proxy = TcpProxy(host, int(port))
        await proxy.start()
        try:
            bus = await make_bus(endpoint=f"http://127.0.0.1:{proxy.port}")
            direct = await make_bus()
            rec = Recorder()
            await bus.subscribe(ROUTER, {"workflow.requested": rec})
            before, after = requested(1), requested(2)
            await bus.publish(before)
            await eventually(lambda: len(rec.seen) == 1)
            await proxy.cut()
            await direct.publish(after)
            await asyncio.sleep(1)
            assert [e.id for e in rec.seen] == [before.id]
            await proxy.start()
            await eventually(lambda: len(rec.seen) == 2, timeout=20)
            assert rec.seen[1].id == after.id
            await bus.close(grace_s=1)  # while the endpoint answers: closing through a cut one waits on retries
        finally:
            await proxy.cut()


async def _status(envelope: Envelope) -> Message:
    from contracts import messages as m

    return m.WorkflowStatusReply(found=False)


def _query() -> Envelope:
    from contracts import messages as m

    return Envelope.new(m.WorkflowStatusQuery(workflow_id=uuid.uuid4(), requester_user_id="u1"))


class TestSqsSettings:
    def test_defaults_and_parameters(self) -> None:
        """Every BUS_URL parameter is read; absent ones take the production defaults."""
        assert SqsSettings.from_url("sqs://") == SqsSettings()
        url = "sqs://?region=eu-west-1&endpoint_url=http://h:1&namespace=prod&max_receive_count=5"
        url += "&visibility_timeout=60&wait_time=10&create_queues=false"
        assert SqsSettings.from_url(url) == SqsSettings("eu-west-1", "http://h:1", "prod", 5, 60, 10, False)

    @pytest.mark.parametrize(
        "url", ["sqs://?regoin=x", "sqs://?wait_time=21", "sqs://?visibility_timeout=abc", "sqs://host", "amqp://"]
    )
    def test_bad_urls_are_refused(self, url: str) -> None:
        """Typos, out-of-range values and host parts fail at once instead of falling back to defaults."""
        with pytest.raises(ValueError):
            SqsSettings.from_url(url)

    def test_namespace_from_url_unless_given(self) -> None:
        """The URL's namespace applies; a namespace= keyword wins; names SQS refuses are refused."""
        assert SqsBus("sqs://?namespace=stage").namespace == "stage"
        assert SqsBus("sqs://?namespace=stage", namespace="other").namespace == "other"
        with pytest.raises(ValueError):
            SqsBus("sqs://", namespace="bad/name")


class TestSqsWire:
    def test_xray_header_becomes_the_aws_trace_header(self) -> None:
        """X-Amzn-Trace-Id leaves as the AWSTraceHeader system attribute and comes back as the header."""
        value = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        request = outgoing(b"{}", {XRAY_HEADER: value, "traceparent": "00-x", c.H_ROUTE: "a.b"})
        assert request["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == value
        assert XRAY_HEADER not in request["MessageAttributes"]
        received = _echo(request, {"AWSTraceHeader": value})
        assert received.headers == {XRAY_HEADER: value, "traceparent": "00-x", c.H_ROUTE: "a.b"}

    def test_bus_headers_are_packed_beyond_ten(self) -> None:
        """Over 10 headers, the x-ho-* ones share one JSON attribute and trace headers stay separate."""
        headers = {f"x-ho-{i}": str(i) for i in range(10)} | {"traceparent": "00-y"}
        attributes = outgoing(b"{}", headers)["MessageAttributes"]
        assert set(attributes) == {"traceparent", H_PACKED}
        assert _echo(outgoing(b"{}", headers)).headers == headers

    def test_bodies_sqs_refuses_are_base64_encoded(self) -> None:
        """Bytes that are not UTF-8, control characters and the empty body survive the trip."""
        for body in (b"\xff\xfe", b"a\x00b", b"", "é ok".encode()):
            request = outgoing(body, {})
            assert _echo(request).body == body

    def test_attribute_values_sqs_refuses_are_cleaned(self) -> None:
        """An empty header is sent as no header; characters SQS refuses in a value are replaced."""
        attributes = outgoing(b"{}", {c.H_CORRELATION: "", c.H_DEAD_REASON: "bad\x00byte"})["MessageAttributes"]
        assert attributes == {c.H_DEAD_REASON: {"DataType": "String", "StringValue": "bad\ufffdbyte"}}


def _echo(request: Mapping[str, Any], system: Mapping[str, str] | None = None) -> Any:
    """What a receive of `request` would return (without a server)."""
    return incoming(
        {
            "Body": request["MessageBody"],
            "ReceiptHandle": "r",
            "MessageAttributes": request["MessageAttributes"],
            "Attributes": {"ApproximateReceiveCount": "1", **(system or {})},
        }
    )


class _FakeBatchApi:
    """Records batch calls; `fail` maps an entry's MessageBody to its Failed entry."""

    def __init__(self, fail: Mapping[str, dict[str, Any]] | None = None, error: Exception | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = dict(fail or {})
        self.error = error

    async def __call__(self, url: str, entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        self.calls.append(entries)
        await asyncio.sleep(0.01)
        if self.error is not None:
            raise self.error
        failed = []
        for entry in entries:
            failure = self.fail.pop(entry["MessageBody"], None)
            if failure is not None:
                failed.append({"Id": entry["Id"], **failure})
        return {
            "Successful": [{"Id": e["Id"]} for e in entries if e["Id"] not in {f["Id"] for f in failed}],
            "Failed": failed,
        }


class TestBatcher:
    async def test_concurrent_submissions_share_calls(self) -> None:
        """A lone entry leaves at once; entries arriving while calls run are merged, at most 10 per call."""
        api = _FakeBatchApi()
        batcher = Batcher(api, "SendMessageBatch", max_in_flight=1)
        await asyncio.gather(*(batcher.submit("q", {"MessageBody": str(i)}) for i in range(25)))
        assert [len(call) for call in api.calls] == [1, 10, 10, 4]

    async def test_size_budget_splits_batches(self) -> None:
        """Entries whose sizes would exceed the batch payload limit go in separate calls."""
        api = _FakeBatchApi()
        batcher = Batcher(api, "SendMessageBatch", max_in_flight=1)
        await asyncio.gather(*(batcher.submit("q", {"MessageBody": str(i)}, size=100_000) for i in range(5)))
        assert [len(call) for call in api.calls] == [1, 2, 2]

    async def test_server_side_entry_failures_are_retried(self) -> None:
        """An entry SQS failed on its side (SenderFault false) is resubmitted and then succeeds."""
        api = _FakeBatchApi(fail={"b": {"Code": "InternalError", "SenderFault": False}})
        batcher = Batcher(api, "SendMessageBatch")
        await asyncio.gather(batcher.submit("q", {"MessageBody": "a"}), batcher.submit("q", {"MessageBody": "b"}))
        assert sum(len(call) for call in api.calls) == 3

    async def test_caller_faults_fail_only_their_entry(self) -> None:
        """An entry refused as the caller's fault raises PublishError for that caller alone."""
        api = _FakeBatchApi(fail={"bad": {"Code": "InvalidParameterValue", "SenderFault": True}})
        batcher = Batcher(api, "SendMessageBatch", max_in_flight=1)
        results = await asyncio.gather(
            *(batcher.submit("q", {"MessageBody": body}) for body in ("ok1", "bad", "ok2")), return_exceptions=True
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], PublishError) and "InvalidParameterValue" in str(results[1])

    async def test_missing_queue_fails_every_entry_as_unroutable(self) -> None:
        """A whole call failing with QueueDoesNotExist raises Unroutable for each of its callers."""
        error = ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessageBatch")
        batcher = Batcher(_FakeBatchApi(error=error), "SendMessageBatch")
        results = await asyncio.gather(
            *(batcher.submit("q", {"MessageBody": str(i)}) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, Unroutable) for r in results)
