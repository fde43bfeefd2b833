"""Redis key layout and fixed tunables of the delivery limiters, in one place.

Planner (rate-limiter), under its prefix (default ``ho:rl:``)::

    {p}epoch                       run_id of the Redis server the plan was built on (lost data: see below)
    {p}hold                        epoch ms before which nothing is planned, after a loss was detected
    {p}a:{account}                 sorted set: plan member -> planned slot (epoch ms), pruned a window late
                                   (an hour late with OF_ACCOUNT_HOURLY_LIMIT: at most that many past slots);
                                   a member is "{delivery id}|{u: urgent, b: not}|{workflow id}|{recipient}"
    {p}r:{n}:{account}:{recipient} last slot planned for that fan (n = len(account): no ambiguous joins)

Send log (of-sender), under its prefix (default ``ho:of:``)::

    {p}m:{account}                 run_id of the Redis server the account's log was loaded on
    {p}s:{account}                 sorted set: attempt token -> actual check time (epoch ms), a window
                                   (or the hour) deep
    {p}r:{n}:{account}:{recipient} time of the last send to that fan

Lost data is detected by comparing the stored run_id with the server's own (INFO server, read inside the
script): a flush or a restart without persistence drops the key, a restart from an older snapshot or a
failover to another node changes the run_id. Either way the stored state is no longer trusted.
"""

from __future__ import annotations

from typing import Final

PLANNER_PREFIX: Final = "ho:rl:"
SEND_LOG_PREFIX: Final = "ho:of:"

# A Redis that does not answer within this is treated as down (the down policy applies): a delivery
# handler must not hang on it.
REDIS_SOCKET_TIMEOUT_S: Final = 2.0
# One quick reconnect rides out a dropped connection (a Redis restart); more would only delay the policy.
REDIS_RETRIES: Final = 1
REDIS_RETRY_BASE_S: Final = 0.05
REDIS_RETRY_CAP_S: Final = 0.2

# An urgent delivery displaces only bulk slots at least this far ahead: their approvals are still delayed in
# the bus, and the of-sender hears of the new slot (delivery.replanned) long before the old one comes.
PREEMPT_MARGIN_MS: Final = 500


def epoch_key(prefix: str) -> str:
    return f"{prefix}epoch"


def hold_key(prefix: str) -> str:
    return f"{prefix}hold"


def account_key(prefix: str, account: str) -> str:
    return f"{prefix}a:{account}"


def plan_member(delivery_id: str, urgent: bool, workflow_id: str, recipient: str) -> str:
    return f"{delivery_id}|{'u' if urgent else 'b'}|{workflow_id}|{recipient}"


def plan_member_parts(member: str) -> tuple[str, bool, str, str]:
    """`plan_member`'s (delivery id, urgent, workflow id, recipient) again (the PLAN script reads it too)."""
    delivery_id, urgency, workflow_id, recipient = member.split("|", 3)
    return delivery_id, urgency == "u", workflow_id, recipient


def recipient_key(prefix: str, account: str, recipient: str) -> str:
    return f"{prefix}r:{len(account)}:{account}:{recipient}"
