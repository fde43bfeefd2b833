"""Versioned message contracts: the envelope, the payloads, the routing table. Imports nothing of ours."""

from contracts import costs, messages, rate_window
from contracts.envelope import Envelope, Message, model_for, registered
from contracts.errors import ContractError, MalformedMessage, UnknownMessageType, UnsupportedVersion

__all__ = [
    "ContractError",
    "Envelope",
    "MalformedMessage",
    "Message",
    "UnknownMessageType",
    "UnsupportedVersion",
    "costs",
    "messages",
    "model_for",
    "rate_window",
    "registered",
]
