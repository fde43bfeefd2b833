"""The contracts: envelope round trips, strict decoding, the routing table, schemas fresh and compatible."""

from __future__ import annotations

import copy
import json

import pytest

from contracts import Envelope, MalformedMessage, UnknownMessageType, UnsupportedVersion, registered
from contracts import messages as m
from contracts.enums import Priority
from contracts.messages import DeliveryRequested
from contracts.rate_window import AccountLimits, RateWindow, RateWindowQuery
from contracts.routing import (
    BULK,
    PRIORITIZED,
    QUERY,
    QUEUES,
    ROUTER,
    ROUTES,
    SERVICES,
    URGENT,
    destinations,
    keys_consumed_by,
    lane_prefetch,
    lanes_for,
    priority_of,
    queue,
    queues_of,
    route_key,
    service_of,
)
from contracts.schema import FROZEN_DIR, SCHEMA_DIR, all_schemas, incompatibilities, render


def _requested() -> Envelope:
    return Envelope.new(m.WorkflowRequested(intent=m.Intent(type="content_planning")), user_id="u1")


class TestEnvelope:
    def test_round_trip_keeps_every_field_and_the_typed_payload(self) -> None:
        """encode → decode gives an equal envelope whose payload is the registered class."""
        env = _requested()
        back = Envelope.decode(env.encode())
        assert back == env
        assert isinstance(back.payload, m.WorkflowRequested)

    def test_child_carries_workflow_user_and_causation(self) -> None:
        """A child message belongs to the same workflow and user and names its cause."""
        parent = _requested()
        child = parent.child(m.WorkflowStatusQuery(workflow_id=parent.id, requester_user_id="u1"))
        assert (child.workflow_id, child.user_id, child.causation_id) == (None, "u1", parent.id)
        assert child.id != parent.id

    def test_a_derived_child_has_the_same_id_every_time_and_one_per_key(self) -> None:
        """derived_child: handling the same message again gives the same child id; another key, another id."""
        parent = _requested()
        query = m.WorkflowStatusQuery(workflow_id=parent.id, requester_user_id="u1")
        first, again = parent.derived_child(query), parent.derived_child(query, attempt=2)
        assert first.id == again.id and again.attempt == 2 and first.causation_id == parent.id
        assert parent.derived_child(query, key="other").id != first.id
        assert _requested().derived_child(query).id != first.id

    @pytest.mark.parametrize(
        ("raw", "error"),
        [
            (b"\x00\xffnot json", MalformedMessage),
            (b"[1,2]", MalformedMessage),
            (b'{"type": "workflow.requested"}', MalformedMessage),
            (b'{"type": "nope.never", "version": 1, "payload": {}}', UnknownMessageType),
            (b'{"type": "workflow.requested", "version": 9, "payload": {}}', UnsupportedVersion),
            (
                b'{"type": "workflow.requested", "version": 1, "payload": {"intent": {"type": "x"}}}',
                MalformedMessage,
            ),
        ],
    )
    def test_bad_bytes_raise_a_contract_error(self, raw: bytes, error: type[Exception]) -> None:
        """Garbage, unknown types, unknown versions and invalid payloads each raise their own error."""
        with pytest.raises(error):
            Envelope.decode(raw)

    def test_unknown_optional_fields_are_ignored(self) -> None:
        """A v1 consumer accepts a v1 message from a producer that added an optional field."""
        body = json.loads(_requested().encode())
        body["payload"]["added_later"] = 1
        assert Envelope.decode(json.dumps(body).encode()).payload == _requested().payload


class TestRouting:
    def test_every_routed_type_is_a_registered_message(self) -> None:
        """Each routing key names a message this code can decode."""
        types = {t for t, _ in registered()}
        for key in ROUTES:
            assert key in types or key.rsplit(".", 1)[0] in types, key

    def test_generation_requests_reach_only_their_provider(self) -> None:
        """generation.requested is routed by provider, so one request is one provider call."""
        env = Envelope.new(
            m.GenerationRequested(provider="azure", intent=m.Intent(type="content_planning"), timeout_s=45)
        )
        assert ROUTES[route_key(env)] == ("azure-worker",)

    def test_every_consumer_is_a_known_service(self) -> None:
        """The routing table names only queues of the seven services, each a service's name or its lane."""
        for queues in ROUTES.values():
            assert {service_of(q) for q in queues} <= set(SERVICES)
            assert all(q == service_of(q) or q.count(".") == 1 for q in queues), queues
        assert keys_consumed_by("router")

    def test_read_only_queries_have_a_lane_of_their_own(self) -> None:
        """The router's status and list queries go to its query lane, every write to its default queue."""
        reads = {m.WorkflowStatusQuery.TYPE, m.WorkflowListQuery.TYPE, m.DeliveryListQuery.TYPE}
        assert queue(ROUTER, QUERY) in queues_of(ROUTER)
        assert set(keys_consumed_by(queue(ROUTER, QUERY))) == reads
        assert not reads & set(keys_consumed_by(ROUTER))

    def test_the_rate_limiter_answers_window_queries_on_its_query_lane(self) -> None:
        """rate.window.query goes to the rate-limiter's query lane only, never behind delivery.requested, and
        its priority lanes do not take it."""
        assert destinations(RateWindowQuery.TYPE, Priority.CRITICAL) == ("rate-limiter.query",)
        assert keys_consumed_by("rate-limiter.query") == (RateWindowQuery.TYPE,)
        assert RateWindowQuery.TYPE not in keys_consumed_by("rate-limiter.urgent")
        assert "rate-limiter.query" in QUEUES

    def test_a_message_goes_to_the_lane_of_its_priority(self) -> None:
        """On a prioritized service critical and high go to its urgent lane, low to its bulk lane, medium and
        none to its default queue; a service without priority lanes gets every priority on its one queue."""
        assert destinations(DeliveryRequested.TYPE, Priority.CRITICAL) == ("rate-limiter.urgent",)
        assert destinations(DeliveryRequested.TYPE, Priority.HIGH) == ("rate-limiter.urgent",)
        assert destinations(DeliveryRequested.TYPE, Priority.LOW) == ("rate-limiter.bulk",)
        assert destinations(DeliveryRequested.TYPE, Priority.MEDIUM) == ("rate-limiter",)
        assert destinations(DeliveryRequested.TYPE, None) == ("rate-limiter",)
        assert destinations(m.UsageRecorded.TYPE, Priority.CRITICAL) == ("cost-tracker",)
        assert destinations(m.WorkflowCancelled.TYPE, Priority.LOW) == ("of-sender.bulk", "cost-tracker")

    def test_every_lane_of_a_service_takes_its_default_queue_s_messages(self) -> None:
        """A priority lane's queue takes the keys of its service's default queue, and the bus subscribes a
        service's handlers on every lane; the bulk lane takes a quarter of the prefetch, never less than one."""
        for service in PRIORITIZED:
            for lane in (URGENT, BULK):
                assert keys_consumed_by(queue(service, lane)) == keys_consumed_by(service)
                assert queue(service, lane) in QUEUES
        assert set(lanes_for(ROUTER, [m.WorkflowRequested.TYPE])) == {"router", "router.urgent", "router.bulk"}
        assert (lane_prefetch("router", 32), lane_prefetch("router.urgent", 32), lane_prefetch("router.bulk", 32)) == (
            32,
            32,
            8,
        )
        assert lane_prefetch("router.bulk", 1) == 1

    def test_a_message_states_its_priority_only_through_its_intent(self) -> None:
        """workflow.requested and generation.requested carry their intent's priority; other messages none
        (they inherit the priority of the message whose handler publishes them)."""
        intent = m.Intent(type="message_generation", priority=Priority.CRITICAL)
        assert priority_of(Envelope.new(m.WorkflowRequested(intent=intent))) is Priority.CRITICAL
        generation = m.GenerationRequested(provider="openai", intent=intent, timeout_s=30)
        assert priority_of(Envelope.new(generation)) is Priority.CRITICAL
        assert priority_of(Envelope.new(m.UsageRecorded.model_construct())) is None

    def test_handlers_are_split_by_lane(self) -> None:
        """A service's handlers are grouped by the queue their type is routed to; an unrouted one goes to the
        default lane, and a provider-keyed type to the worker's own queues."""
        lanes = lanes_for(ROUTER, [m.WorkflowRequested.TYPE, m.WorkflowStatusQuery.TYPE, "nobody.routes.this"])
        assert lanes == {
            ROUTER: [m.WorkflowRequested.TYPE, "nobody.routes.this"],
            "router.bulk": [m.WorkflowRequested.TYPE],
            "router.query": [m.WorkflowStatusQuery.TYPE],
            "router.urgent": [m.WorkflowRequested.TYPE],
        }
        worker = lanes_for("azure-worker", [m.GenerationRequested.TYPE])
        assert set(worker) == {"azure-worker", "azure-worker.bulk", "azure-worker.urgent"}


class TestRateWindow:
    def test_a_window_reply_round_trips_and_a_query_needs_an_account(self) -> None:
        """The reply keeps its counts and times through the envelope; an empty account id is refused."""
        reply = RateWindow(
            account_id="creator-1",
            at="2026-01-01T00:00:00Z",
            limits=AccountLimits(account_limit=10, window_s=61.0, hourly_limit=100, hour_s=3601.0),
            in_window=10,
            in_hour=40,
            planned_ahead=7,
            next_free_at="2026-01-01T00:00:12.5Z",
        )
        decoded = Envelope.decode(Envelope.new(reply).encode()).payload
        assert decoded == reply and isinstance(decoded, RateWindow)
        with pytest.raises(ValueError):
            RateWindowQuery(account_id="")


class TestSchemas:
    def test_checked_in_schemas_are_fresh(self) -> None:
        """contracts/schemas matches the models (run `make contracts` after changing a message)."""
        expected = all_schemas()
        on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
        assert set(on_disk) == set(expected), "run `make contracts`"
        for name, schema in expected.items():
            assert on_disk[name] == render(schema), f"{name} is stale: run `make contracts`"

    def test_published_schemas_never_change_incompatibly(self) -> None:
        """Every frozen vN schema is still served, and the current one only added optional fields."""
        frozen = {p.name: json.loads(p.read_text()) for p in FROZEN_DIR.glob("*.json")}
        assert frozen, "contracts/frozen is empty"
        current = all_schemas()
        for name, old in frozen.items():
            assert name in current, f"published schema {name} was removed"
            assert incompatibilities(old, current[name]) == [], name

    def test_the_checker_catches_removed_and_newly_required_fields(self) -> None:
        """The compatibility rule flags a removed field, a new required one and a changed type."""
        old = all_schemas()["workflow.requested.v1.json"]
        broken = copy.deepcopy(old)
        payload = broken["$defs"]["WorkflowRequested"]
        del payload["properties"]["trace_id"]
        payload["required"].append("deadline_s")
        broken["properties"]["attempt"]["type"] = "string"
        problems = incompatibilities(old, broken)
        assert any("trace_id: removed" in p for p in problems)
        assert any("deadline_s" in p for p in problems)
        assert any("attempt: type changed" in p for p in problems)

    def test_adding_an_optional_field_is_compatible(self) -> None:
        """A new optional property is allowed in the same version."""
        old = all_schemas()["workflow.requested.v1.json"]
        grown = copy.deepcopy(old)
        grown["$defs"]["WorkflowRequested"]["properties"]["new_opt"] = {"type": "string"}
        assert incompatibilities(old, grown) == []
