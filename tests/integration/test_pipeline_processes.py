"""The generation pipeline with every service its own process, on RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.simulators import LLMSimulator
from libs.simulators.llm import FaultKind
from tests.integration.client import GatewayClient
from tests.integration.stack import Stack, free_port

# One stack for the module: starting four processes costs seconds, the tests don't interfere.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PIPELINE = ("router", "azure_worker", "openai_worker", "cost_tracker")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[LLMSimulator]:
    async with LLMSimulator() as sim:
        yield sim


@pytest.fixture
def llm(sim: LLMSimulator) -> LLMSimulator:
    """The module's simulator with fresh counters and no faults."""
    sim.clear_faults()
    sim.reset_counts()
    return sim


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    amqp_url: str, postgres_dsn: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory, sim: LLMSimulator
) -> AsyncIterator[Stack]:
    llm = sim
    tmp_path = tmp_path_factory.mktemp("pipeline")
    secret = secrets.token_urlsafe(32)
    env = {
        "AZURE_OPENAI_ENDPOINT": llm.azure_endpoint,
        "AZURE_OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": llm.openai_base_url,
        "OPENAI_API_KEY": "test-key",
        "GATEWAY_JWT_SECRET": secret,
        "GATEWAY_PORT": str(free_port()),
    }
    async with Stack(amqp_url, postgres_dsn, redis_url, tmp_path, env=env) as stack:
        await asyncio.gather(*(stack.start(p) for p in PIPELINE))
        await stack.start("gateway")
        yield stack


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(stack: Stack) -> AsyncIterator[GatewayClient]:
    c = GatewayClient(f"http://127.0.0.1:{stack.env['GATEWAY_PORT']}", stack.env["GATEWAY_JWT_SECRET"])
    yield c
    await c.close()


class TestPipelineAcrossProcesses:
    @pytest.mark.parametrize(
        ("body", "provider"),
        [
            ({"type": "content_planning", "data": {"theme": "summer"}}, "azure"),
            ({"type": "message_generation", "data": {"fanName": "Sam"}}, "openai"),
            ({"type": "message_generation", "forceProvider": "azure"}, "azure"),
        ],
    )
    async def test_seed_flows_complete_on_the_expected_provider(
        self, client: GatewayClient, llm: LLMSimulator, stack: Stack, body: dict[str, object], provider: str
    ) -> None:
        """POST ?wait=true answers the generated content from the provider the original plan's rules choose."""
        code, answer = await client.submit(body, wait=True)
        assert code == 200, (answer, stack.logs())
        assert answer["data"]["status"] == "completed"
        assert answer["data"]["provider"] == provider
        assert answer["data"]["content"]
        assert answer["metrics"]["cost"]["tokens"] > 0
        assert llm.request_count(provider) == 1

    async def test_the_cost_answered_is_the_recorded_cost(self, client: GatewayClient) -> None:
        """?wait=true's cost (told by the cost-tracker when the text's usage was recorded) is what the cost
        endpoint reads for the workflow afterwards, settled, over the one call."""
        code, answer = await client.submit({"type": "message_generation"}, wait=True)
        assert code == 200, answer
        code, recorded = await client.workflow_cost(answer["data"]["workflowId"])
        assert code == 200, recorded
        cost = recorded["data"]
        assert (cost["settled"], cost["requests"]) == (True, 1)
        assert answer["metrics"]["cost"] == {
            "tokens": cost["promptTokens"] + cost["completionTokens"],
            "cost": float(cost["totalCost"]),
        }

    async def test_status_is_readable_right_after_202(self, client: GatewayClient) -> None:
        """The workflow is found by the status endpoint immediately after the POST answered 202."""
        code, answer = await client.submit({"type": "message_generation"})
        assert code == 202
        code, status = await client.status(answer["data"]["workflowId"])
        assert code == 200
        assert status["data"]["traceId"] == answer["data"]["traceId"]

    async def test_azure_outage_falls_back_to_openai(self, client: GatewayClient, llm: LLMSimulator) -> None:
        """A 500 from Azure moves the workflow to OpenAI, recorded in fallbackHistory."""
        llm.add_fault(FaultKind.SERVER_ERROR, target="azure", count=1)
        code, answer = await client.submit({"type": "content_planning"})
        assert code == 202
        view = await client.wait_terminal(answer["data"]["workflowId"])
        assert view["status"] == "completed"
        assert view["currentProvider"] == "openai"
        assert [(f["from"], f["to"]) for f in view["fallbackHistory"]] == [("azure", "openai")]

    async def test_router_killed_mid_workflow_resumes_with_one_provider_call(
        self, client: GatewayClient, llm: LLMSimulator, stack: Stack
    ) -> None:
        """SIGKILL the router while the provider is working: after a restart the workflow completes,
        and the provider was called once."""
        llm.add_fault(FaultKind.LATENCY, target="openai", latency_s=2.0, count=1)
        code, answer = await client.submit({"type": "message_generation"})
        assert code == 202
        for _ in range(100):
            if llm.request_count("openai") == 1:
                break
            await asyncio.sleep(0.05)
        await stack.kill("router")
        await asyncio.sleep(2.5)  # the worker answers while the router is down: the result waits in its queue
        await stack.restart("router")
        view = await client.wait_terminal(answer["data"]["workflowId"])
        assert view["status"] == "completed", view
        assert llm.request_count("openai") == 1
