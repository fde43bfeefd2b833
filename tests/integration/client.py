"""A small HTTP client of the gateway for end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from services.gateway.auth import make_token

TERMINAL = {"completed", "failed"}


class GatewayClient:
    def __init__(self, base_url: str, secret: str, user: str = "creator-1") -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {make_token(secret, sub=user)}"}
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def submit(self, body: dict[str, Any], *, wait: bool = False, **headers: str) -> tuple[int, dict[str, Any]]:
        url = f"{self.base_url}/api/v2/campaigns/hybrid" + ("?wait=true" if wait else "")
        async with self.session.post(url, json=body, headers={**self.headers, **headers}) as response:
            return response.status, await response.json()

    async def status(self, workflow_id: str) -> tuple[int, dict[str, Any]]:
        url = f"{self.base_url}/api/v2/campaigns/status"
        async with self.session.get(url, params={"workflowId": workflow_id}, headers=self.headers) as response:
            return response.status, await response.json()

    async def workflow_cost(self, workflow_id: str) -> tuple[int, dict[str, Any]]:
        url = f"{self.base_url}/api/v2/campaigns/costs"
        async with self.session.get(url, params={"workflowId": workflow_id}, headers=self.headers) as response:
            return response.status, await response.json()

    async def wait_terminal(self, workflow_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the status until the workflow is completed or failed; returns its view."""
        deadline = time.monotonic() + timeout
        while True:
            code, body = await self.status(workflow_id)
            if code == 200 and body["data"]["status"] in TERMINAL:
                return dict(body["data"])
            if time.monotonic() > deadline:
                raise AssertionError(f"workflow {workflow_id} not terminal in {timeout}s: {code} {body}")
            await asyncio.sleep(0.1)
