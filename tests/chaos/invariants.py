"""The chaos suite's referee: after the faults, what must still hold. Each check returns the figures it
measured and the breaches it found (described with the ids needed to follow them up in the logs)."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from contracts import Envelope
from contracts.errors import ContractError
from libs.bus import DeadLetter
from libs.simulators import Arrival
from services.router.delivery import delivery_id_for
from tests.chaos.campaign import Tally
from tests.chaos.load import TERMINAL, Accepted
from tests.delivery.compliance import all_violations

SHOW = 10  # ids quoted per breach: enough to start digging, short enough to read


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    breaches: list[str] = field(default_factory=list)

    def merge(self, other: Verdict) -> None:
        self.figures.update(other.figures)
        self.breaches.extend(other.breaches)


def terminal_states(accepted: list[Accepted], states: dict[uuid.UUID, str]) -> Verdict:
    """Every accepted workflow is in the router's table (none lost) and completed or failed (none stuck)."""
    lost = [a.workflow_id for a in accepted if a.workflow_id not in states]
    stuck = [(a.workflow_id, states[a.workflow_id]) for a in accepted if states.get(a.workflow_id, "x") not in TERMINAL
             and a.workflow_id in states]  # fmt: skip
    counts = Counter(states.get(a.workflow_id, "lost") for a in accepted)
    verdict = Verdict({"accepted": len(accepted), "outcomes": dict(counts)})
    if lost:
        verdict.breaches.append(f"{len(lost)} accepted workflows lost (not in the router's table): {lost[:SHOW]}")
    if stuck:
        verdict.breaches.append(f"{len(stuck)} workflows not terminal: {stuck[:SHOW]}")
    return verdict


def deliveries(
    accepted: list[Accepted],
    orphans: dict[uuid.UUID, list[str]],
    arrivals: list[Arrival],
    limits: tuple[int, float, float],
) -> Verdict:
    """Nothing reached the fans twice under different keys; no rolling window or fan spacing exceeded.
    `orphans`: workflows the router has whose POST never got its 202 (the gateway died after publishing) —
    real workflows, so their deliveries are legitimate too."""
    limit, window, gap = limits
    sent = [a for a in arrivals if a.outcome == "sent"]
    expected = {str(delivery_id_for(a.workflow_id, r)) for a in accepted for r in a.recipients}
    expected |= {str(delivery_id_for(w, r)) for w, recipients in orphans.items() for r in recipients}
    unknown = [a for a in sent if a.idempotency_key not in expected]
    # The same message text to the same fan under two keys: one delivery sent twice. Each workflow's text is
    # unique (its request data is), so this does not depend on how the router derives its keys.
    keys_per_message: dict[tuple[str, str, str | None], set[str | None]] = defaultdict(set)
    for a in sent:
        keys_per_message[(a.account_id, a.recipient_id, a.text)].add(a.idempotency_key)
    twice = {k: v for k, v in keys_per_message.items() if len(v) > 1}
    # The same key delivered twice: only possible when the simulator forgot its keys (it was restarted).
    same_key = [k for k, n in Counter(a.idempotency_key for a in sent).items() if n > 1]
    outcomes = Counter(a.outcome for a in arrivals)
    verdict = Verdict(
        {
            "deliveries_requested": sum(len(a.recipients) for a in accepted),
            "orphan_workflows": len(orphans),
            "platform_arrivals": dict(outcomes),
            "delivered": len(sent),
            "same_key_redelivered_after_platform_restart": len(same_key),
        }
    )
    if unknown:
        verdict.breaches.append(
            f"{len(unknown)} sends under keys no accepted workflow owns: "
            f"{[(a.account_id, a.recipient_id, a.idempotency_key) for a in unknown[:SHOW]]}"
        )
    if twice:
        verdict.breaches.append(
            f"{len(twice)} messages delivered under several keys: "
            f"{[(k[0], k[1], sorted(map(str, v))) for k, v in list(twice.items())[:SHOW]]}"
        )
    violations = all_violations(sent, limit, window, gap)
    if violations:
        verdict.breaches.append(f"{len(violations)} rate-limit breaches on the platform: {violations[:SHOW]}")
    refused = [(a.account_id, a.recipient_id, a.idempotency_key, round(a.at, 3)) for a in arrivals
               if a.outcome == "rate_limited"]  # fmt: skip
    if refused:  # not a breach (nothing was delivered over the limit), but the evidence to look into
        verdict.figures["platform_429_refusals"] = refused[:SHOW]
    return verdict


async def sent_but_not_delivered(
    conn: asyncpg.Connection, accepted: list[Accepted], arrivals: list[Arrival]
) -> Verdict:
    """A delivery the router records as sent reached the platform (sent or replayed under its key)."""
    keys = {a.idempotency_key for a in arrivals if a.outcome in ("sent", "replayed")}
    rows = await conn.fetch(
        "SELECT workflow_id, delivery_id::text AS id, status FROM router.deliveries"
        " WHERE workflow_id = ANY($1::uuid[])",
        [a.workflow_id for a in accepted],
    )
    by_status = Counter(r["status"] for r in rows)
    phantom = [(r["workflow_id"], r["id"]) for r in rows if r["status"] == "sent" and r["id"] not in keys]
    verdict = Verdict({"router_delivery_states": dict(by_status)})
    if phantom:
        verdict.breaches.append(f"{len(phantom)} deliveries recorded sent but never reached the platform: "
                                f"{phantom[:SHOW]}")  # fmt: skip
    return verdict


async def orphans(conn: asyncpg.Connection, accepted: list[Accepted]) -> dict[uuid.UUID, list[str]]:
    """Workflows in the router's table (the run's own database) that no 202 announced, with their recipients
    (from their delivery rows: the stored intent keeps none of a campaign's)."""
    rows = await conn.fetch(
        "SELECT w.workflow_id, array_remove(array_agg(d.recipient_id ORDER BY d.seq), NULL) AS recipients"
        " FROM router.hybrid_workflows w LEFT JOIN router.deliveries d USING (workflow_id)"
        " WHERE NOT (w.workflow_id = ANY($1::uuid[])) GROUP BY w.workflow_id",
        [a.workflow_id for a in accepted],
    )
    return {row["workflow_id"]: list(row["recipients"]) for row in rows}


async def costs(conn: asyncpg.Connection, accepted: list[Accepted]) -> Verdict:
    """Running totals equal the sum of the entries (overall and per user); one entry per generation; every
    completed workflow was billed."""
    entries, generations, entry_sum = await conn.fetchrow(
        "SELECT count(*), count(DISTINCT generation_id), coalesce(sum(cost_usd), 0) FROM cost_tracker.cost_entries"
    )
    null_generation = await conn.fetchval("SELECT count(*) FROM cost_tracker.cost_entries WHERE generation_id IS NULL")
    totals = {
        (r["scope"], r["period"]): Decimal(r["spent"])
        for r in await conn.fetch(
            # every provider's totals ('*'); the per-provider rows split the same spend again
            "SELECT scope, period, sum(spent_usd) AS spent FROM cost_tracker.spend_totals WHERE provider = '*'"
            " GROUP BY scope, period"
        )
    }
    per_user = {
        r["user_id"]: Decimal(r["spent"])
        for r in await conn.fetch("SELECT user_id, sum(cost_usd) AS spent FROM cost_tracker.cost_entries GROUP BY 1")
    }
    completed = await conn.fetch(
        "SELECT w.workflow_id FROM router.hybrid_workflows w WHERE w.status = 'completed'"
        " AND w.workflow_id = ANY($1::uuid[]) AND NOT EXISTS"
        " (SELECT 1 FROM cost_tracker.cost_entries c WHERE c.workflow_id = w.workflow_id)",
        [a.workflow_id for a in accepted],
    )
    verdict = Verdict(
        {
            "cost_entries": entries,
            "distinct_generation_ids": generations,
            "cost_entries_usd": str(entry_sum),
            "spend_totals_usd": {f"{s}/{p}": str(v) for (s, p), v in sorted(totals.items()) if s == "*"},
        }
    )
    if entries != generations or null_generation:
        verdict.breaches.append(f"{entries} cost entries for {generations} distinct generation ids "
                                f"({null_generation} without one): usage counted twice or unattributed")  # fmt: skip
    for period in ("hourly", "daily", "monthly"):
        total = totals.get(("*", period), Decimal(0))
        if total != entry_sum:
            verdict.breaches.append(f"global {period} total {total} != sum of cost entries {entry_sum}")
        wrong = {u: (totals.get((u, period)), s) for u, s in per_user.items() if totals.get((u, period)) != s}
        if wrong:
            verdict.breaches.append(f"per-user {period} totals differ from their entries: {wrong}")
    if completed:
        ids = [r["workflow_id"] for r in completed]
        verdict.breaches.append(f"{len(ids)} completed workflows with no cost entry: {ids[:SHOW]}")
    return verdict


def campaign(
    fans: list[str], view: dict[str, Any] | None, listed: list[dict[str, Any]] | None, arrivals: list[Arrival]
) -> Verdict:
    """Every fan of the campaign reached exactly once, and its final status true to what the platform saw:
    terminal, its sent count the fans reached, completed when all were sent (failed only when none was).
    `view`: the status once terminal (None: it never was); `listed`: the deliveries list endpoint's pages
    (None where the gateway does not serve it)."""
    wanted = set(fans)
    sent = Counter(a.recipient_id for a in arrivals if a.outcome == "sent" and a.recipient_id in wanted)
    missing = [f for f in fans if sent[f] == 0]
    twice = [f for f, n in sent.items() if n > 1]
    reached = len(sent)
    verdict = Verdict({"campaign_fans": len(fans), "campaign_fans_reached": reached, "campaign_fans_twice": len(twice)})
    times = [a.at for a in arrivals if a.outcome == "sent" and a.recipient_id in wanted]
    if times:  # how long it ran, and so which faults it went through
        verdict.figures["campaign_first_to_last_send_s"] = round(max(times) - min(times), 1)
    if missing:
        verdict.breaches.append(f"{len(missing)} campaign fans never reached: {missing[:SHOW]}")
    if twice:
        verdict.breaches.append(f"{len(twice)} campaign fans reached more than once: {twice[:SHOW]}")
    if view is None:
        verdict.breaches.append("the campaign is not terminal, or its status could not be read")
    else:
        verdict.merge(campaign_status(fans, reached, view, listed))
    return verdict


def campaign_status(
    fans: list[str], reached: int, view: dict[str, Any], listed: list[dict[str, Any]] | None
) -> Verdict:
    """The terminal campaign's status against the `reached` fans: completed when all were, and its counts
    (progress, or the listed deliveries) and the deliveries list endpoint's pages telling the same."""
    status = view["status"]
    verdict = Verdict({"campaign_status": status})
    if reached == len(fans) and status != "completed":
        verdict.breaches.append(f"every campaign fan reached but the campaign is {status}")
    tally = Tally.of(view, listed)
    if tally is None:
        verdict.figures["campaign_tally"] = "unknown: the status has no progress nor deliveries, no list served"
        return verdict
    verdict.figures["campaign_tally"] = vars(tally)
    told = f"campaign status ({tally.source})"
    if tally.total != len(fans):
        verdict.breaches.append(f"{told} counts {tally.total} deliveries for {len(fans)} fans")
    if tally.sent != reached:
        verdict.breaches.append(f"{told} says {tally.sent} sent, the platform reached {reached} fans")
    if tally.sent == tally.total and status != "completed":
        verdict.breaches.append(f"every campaign delivery sent but the campaign is {status}")
    if status == "failed" and tally.sent > 0:
        verdict.breaches.append(f"campaign failed although {tally.sent} deliveries were sent")
    if listed is not None:
        listed_tally = Tally.counted("deliveries list", listed)
        verdict.figures["campaign_listed"] = vars(listed_tally)
        if sorted(d["recipientId"] for d in listed) != sorted(fans):
            verdict.breaches.append(f"the deliveries list has {len(listed)} entries, not one per fan of {len(fans)}")
        if listed_tally.sent != tally.sent:
            verdict.breaches.append(f"the deliveries list shows {listed_tally.sent} sent, the {told} {tally.sent}")
    return verdict


def dead_letters(taken: list[DeadLetter]) -> Verdict:
    """Nothing was dead-lettered: every message was handled, however often it had to be retried."""
    kinds: Counter[str] = Counter()
    examples: list[str] = []
    for letter in taken:
        try:
            envelope = Envelope.decode(letter.body)
            kind, workflow = envelope.type, str(envelope.workflow_id)
        except ContractError:
            kind, workflow = "undecodable", "-"
        kinds[f"{kind}: {letter.reason[:80]}"] += 1
        examples.append(f"{kind} {workflow}")
    verdict = Verdict({"dead_letters": len(taken)})
    if taken:
        verdict.figures["dead_letter_reasons"] = dict(kinds)
        verdict.breaches.append(f"{len(taken)} messages dead-lettered: {examples[:SHOW]}")
    return verdict
