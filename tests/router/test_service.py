"""The router declared as a service (libs.runtime): store choice, start/stop, readiness, handlers."""

from __future__ import annotations

import uuid

from contracts import Envelope
from contracts.enums import Provider, WorkflowStatus
from contracts.messages import WorkflowAccepted, WorkflowRequested
from contracts.routing import keys_consumed_by, queues_of
from libs.bus.memory import MemoryBus
from libs.runtime import Runtime
from services.router.pg_store import PostgresStore
from services.router.service import build_store, create
from services.router.store import MemoryStore, WorkflowStore
from tests.router.harness import FAST_REDELIVERY, FakeWorkers, Sink, intent, router_settings


class TestService:
    def test_store_follows_database_url(self) -> None:
        """DATABASE_URL selects PostgreSQL; without it the store is in memory (the embedded mode)."""
        assert isinstance(build_store(router_settings()), MemoryStore)
        with_db = router_settings(database_url="postgresql://postgres@127.0.0.1:5432/test")
        assert isinstance(build_store(with_db), PostgresStore)

    async def test_service_runs_a_workflow_and_reports_ready(self, store: WorkflowStore) -> None:
        """The service from `create` handles a workflow to completion, is ready, and stops cleanly."""
        bus = MemoryBus(policy=FAST_REDELIVERY)
        await bus.connect()
        runtime = Runtime(bus=bus, settings=router_settings())
        service = await create(runtime, store=store)
        assert service.name == "router"
        routed = {key for queue in queues_of("router") for key in keys_consumed_by(queue)}
        assert set(service.handlers) == routed  # every routed type, of every lane, nothing else
        await service.start(runtime)
        workers, sink = FakeWorkers(bus), Sink(bus)
        await workers.start()
        await sink.start()
        try:
            await service.checks["database"]()
            workflow_id = uuid.uuid4()
            envelope = Envelope.new(WorkflowRequested(intent=intent()), workflow_id=workflow_id, user_id="u")
            reply = await bus.request(envelope, timeout=5)
            assert isinstance(reply.payload, WorkflowAccepted) and reply.payload.accepted
            await sink.wait(workflow_id)
            stored = await store.get(workflow_id)
            assert stored is not None and stored.status is WorkflowStatus.COMPLETED
            assert len(workers.calls[Provider.OPENAI]) == 1
        finally:
            await bus.close(grace_s=1)
            await service.stop()
