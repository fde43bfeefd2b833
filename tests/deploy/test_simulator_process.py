"""`python -m libs.simulators.llm`, the compose demo profile's LLM simulator, as its own process: it listens
where LLM_SIMULATOR_HOST/PORT say, answers the OpenAI wire format, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp

from libs.simulators.llm import ADMIN_REQUESTS_PATH, ENV_HOST, ENV_PORT, OPENAI_CHAT_PATH
from tests.deploy.support import REPO_ROOT

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_listening(url: str, process: asyncio.subprocess.Process) -> None:
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while True:
            assert process.returncode is None, "the simulator exited during start-up"
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "the simulator did not start listening"
            await asyncio.sleep(0.1)


class TestLLMSimulatorProcess:
    async def test_serves_and_stops_on_sigterm(self) -> None:
        """The process serves chat completions on the configured port and exits 0 on SIGTERM."""
        port = free_port()
        env = {**os.environ, ENV_HOST: "127.0.0.1", ENV_PORT: str(port), "LOG_FORMAT": "json"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "libs.simulators.llm",
            cwd=REPO_ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_until_listening(base + ADMIN_REQUESTS_PATH, process)
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
            async with (
                aiohttp.ClientSession() as session,
                session.post(base + OPENAI_CHAT_PATH, json=body, headers={"Authorization": "Bearer k"}) as response,
            ):
                assert response.status == 200
                reply = await response.json()
            assert reply["choices"][0]["message"]["content"]
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), STOP_TIMEOUT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, output.decode()
        assert b'"llm_sim.stopped"' in output
