"""Exceptions raised by the provider simulators.

Exception tree::

    SimulatorError                 base of everything raised here
     ├── InvalidFaultError         a fault spec that cannot be injected (also a ValueError);
     │                             wraps pydantic.ValidationError
     └── SimulatorStartError       start() called twice, or the listening socket cannot be bound;
                                   wraps OSError

Request-level problems (missing auth, bad JSON) are not exceptions: the simulator answers them with the
provider's own HTTP error responses, exactly as the real API would.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base class for simulator errors."""


class InvalidFaultError(SimulatorError, ValueError):
    """A fault spec was rejected (unknown kind or target, negative delay, zero count, ...)."""


class SimulatorStartError(SimulatorError):
    """The simulator could not start listening."""
