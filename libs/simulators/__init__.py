"""In-process simulators of the external HTTP APIs the services call (the LLM providers, the fan platform),
speaking their real wire formats.

Names are imported lazily, so `python -m libs.simulators.llm` (or `.platform`) runs its module once, not
after the package already imported it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from libs.simulators.errors import InvalidFaultError, SimulatorError, SimulatorStartError
    from libs.simulators.llm import FaultKind, FaultSpec, FaultTarget, LLMSimulator, RequestCounts, create_app
    from libs.simulators.llm_wire import compose_reply, count_tokens
    from libs.simulators.platform import (
        Arrival,
        PlatformFault,
        PlatformFaultKind,
        PlatformLimits,
        PlatformSimulator,
        create_platform_app,
    )

_WHERE = {
    "InvalidFaultError": "errors",
    "SimulatorError": "errors",
    "SimulatorStartError": "errors",
    "FaultKind": "llm",
    "FaultSpec": "llm",
    "FaultTarget": "llm",
    "LLMSimulator": "llm",
    "RequestCounts": "llm",
    "create_app": "llm",
    "compose_reply": "llm_wire",
    "count_tokens": "llm_wire",
    "Arrival": "platform",
    "PlatformFault": "platform",
    "PlatformFaultKind": "platform",
    "PlatformLimits": "platform",
    "PlatformSimulator": "platform",
    "create_platform_app": "platform",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'libs.simulators' has no attribute {name!r}")
    return getattr(importlib.import_module(f"libs.simulators.{module}"), name)


__all__ = [
    "Arrival",
    "FaultKind",
    "FaultSpec",
    "FaultTarget",
    "InvalidFaultError",
    "LLMSimulator",
    "PlatformFault",
    "PlatformFaultKind",
    "PlatformLimits",
    "PlatformSimulator",
    "RequestCounts",
    "SimulatorError",
    "SimulatorStartError",
    "compose_reply",
    "count_tokens",
    "create_app",
    "create_platform_app",
]
