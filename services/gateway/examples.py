"""Request bodies shown in the OpenAPI document, by operation id: what Swagger UI (/api/docs) offers to send.

Each is a body the gateway accepts as written (tests/gateway/test_openapi.py validates every one with its
operation's request model); ids and accounts are those `make run` prints or placeholders to replace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from services.gateway.openapi import Example

_SOME_ID = "0b9e8a52-4f7e-4d55-9c1e-3f0a6f2f8c11"  # replace with an id from a listing

REQUEST_EXAMPLES: Final[Mapping[str, Mapping[str, Example]]] = {
    "createHybridCampaign": {
        "generate": Example(
            "Generate one message (add ?wait=true to get the text in the answer)",
            {"type": "message_generation", "data": {"fanName": "Alex", "topic": "weekend plans"}},
        ),
        "campaign": Example(
            "A personalized campaign sent from your account to two fans, each with their own variables",
            {
                "type": "message_generation",
                "data": {"topic": "the new set out on Friday"},
                "sendToOnlyFans": True,
                "recipients": [{"id": "fan-1", "vars": {"name": "Alex"}}, {"id": "fan-2", "vars": {"name": "Sam"}}],
                "priority": "high",
            },
        ),
        "openai": Example(
            "Content planning on OpenAI only",
            {"type": "content_planning", "data": {"theme": "beach"}, "forceProvider": "openai"},
        ),
    },
    "updateFeatureFlags": {
        "stop": Example(
            "The kill switch: refuse new workflows and hold every send", {"hybridOrchestratorEnabled": False}
        ),
        "rollout": Example(
            "Let a quarter of the users in, and one named user, if nobody changed the flags since version 3",
            {"rolloutPercentage": 25, "allowList": ["creator-1"], "expectedVersion": 3},
        ),
    },
    "replayDeadLetters": {
        "one": Example(
            "One dead letter of the router, by its id from the listing", {"service": "router", "id": _SOME_ID}
        ),
        "all": Example("Every dead letter of the of-sender", {"service": "of-sender", "all": True}),
    },
    "createCostThreshold": {
        "daily": Example(
            "Warn when your spend reaches $50 in a UTC day",
            {"type": "daily", "threshold": 50, "severity": "warning", "name": "daily budget"},
        ),
        "global": Example(
            "Admin: everyone's spend over $1,000 in a month sends new workflows to the cheaper provider",
            {"global": True, "type": "monthly", "threshold": "1000.00", "severity": "critical", "action": "downgrade"},
        ),
    },
    "updateCostThreshold": {
        "raise": Example("Raise a threshold's limit", {"thresholdId": _SOME_ID, "threshold": 75}),
        "disable": Example("Switch a threshold off", {"thresholdId": _SOME_ID, "enabled": False}),
    },
    "createCostAlert": {
        "manual": Example(
            "Admin: raise an alert now, delivered like the thresholds' alerts",
            {"message": "Campaign spend is above plan", "threshold": 20, "severity": "warning"},
        ),
    },
    "updateCostAlert": {
        "acknowledge": Example("Acknowledge an alert", {"alertId": _SOME_ID, "acknowledged": True}),
    },
}
