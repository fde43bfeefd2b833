"""`make chaos`: the distributed stack under steady load, every fault once, then the invariants, printed.

    python -m tests.chaos.run [--short] [--campaign-fans N]

Kills each service with SIGKILL and restarts it, restarts a private Redis (its data lost), makes the
platform API refuse connections, makes Azure hang; with CHAOS_RESTART_SERVERS=1 (what `make chaos` sets)
also restarts the machine's RabbitMQ and PostgreSQL — shared servers, so never by default. One campaign
(1,000 fans; --short: 200) is POSTed as the faults begin and runs through them at its account's limit. Then:
every accepted workflow terminal, nothing delivered twice under different keys, no rate window exceeded,
cost totals equal to the recorded usage, every campaign fan reached exactly once and its final status true
to that (all sent: completed), nothing in any dead-letter queue. Exits 1 when an invariant broke; the logs'
directory is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.chaos.scenario import RESTART_SERVERS_ENV, Chaos, Plan, Report


def print_report(report: Report) -> None:
    print("\nfault                                    fault_s  recovery_s  accepted  refused")
    for f in report.faults:
        recovery = "-" if f.recovery_s is None else f"{f.recovery_s:.2f}"
        print(f"{f.name:<40} {f.duration_s:7.2f} {recovery:>11} {f.accepted_during:9} {f.refused_during:8}")
    for skipped in report.skipped:
        print(f"skipped: {skipped}")
    print("\nfigures:")
    for key, value in report.verdict.figures.items():
        print(f"  {key:<44} {value}")
    unrecovered = [f.name for f in report.faults if f.recovery_s is None]
    print(f"\ninvariants: {'BROKEN' if report.verdict.breaches or unrecovered else 'all hold'}")
    for breach in report.verdict.breaches:
        print(f"  BREACH {breach}")
    for name in unrecovered:
        print(f"  NOT RECOVERED after: {name}")
    print(f"total {report.total_s:.1f}s; logs in {report.workdir}")
    summary = {
        "faults": {f.name: f.recovery_s and round(f.recovery_s, 2) for f in report.faults},
        "breaches": len(report.verdict.breaches) + len(unrecovered),
        **{k: v for k, v in report.verdict.figures.items() if isinstance(v, int | str)},
    }
    print(json.dumps(summary))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the short phases of the `make test` version")
    parser.add_argument("--campaign-fans", type=int, help="fans of the campaign (default 1000, --short 200; 0: none)")
    args = parser.parse_args()
    plan = Plan.short() if args.short else Plan()
    if args.campaign_fans is not None:
        plan.campaign_fans = args.campaign_fans
    plan.restart_servers = os.environ.get(RESTART_SERVERS_ENV) == "1"
    workdir = Path(tempfile.mkdtemp(prefix="ho-chaos-"))
    report = await Chaos(plan, workdir, say=lambda line: print(line, flush=True)).run()
    print_report(report)
    return 1 if report.verdict.breaches or any(f.recovery_s is None for f in report.faults) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
