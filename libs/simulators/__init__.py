"""In-process simulators of the external HTTP APIs the services call, speaking their real wire formats."""

from libs.simulators.errors import InvalidFaultError, SimulatorError, SimulatorStartError
from libs.simulators.llm import (
    FaultKind,
    FaultSpec,
    FaultTarget,
    LLMSimulator,
    RequestCounts,
    create_app,
)
from libs.simulators.llm_wire import compose_reply, count_tokens

__all__ = [
    "FaultKind",
    "FaultSpec",
    "FaultTarget",
    "InvalidFaultError",
    "LLMSimulator",
    "RequestCounts",
    "SimulatorError",
    "SimulatorStartError",
    "compose_reply",
    "count_tokens",
    "create_app",
]
