"""Where experiments and the automatic optimisation mode's settings are kept: the repository interface
(ExperimentStore, part of CostStore) and its two implementations, mixed into MemoryStore and PostgresStore.

Starting or stopping an experiment adds one to the routing policy set's version in the same step (the
running experiments travel to the routers inside routing.policy); at most one experiment runs per workflow
type. Samples join each ended workflow of an experiment with its cost entries.
"""

from __future__ import annotations

import dataclasses
import uuid
from abc import abstractmethod
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from contracts.enums import IntentType, Provider
from contracts.experiments import Arm
from libs.storage.schema_store import SchemaStore
from services.cost_tracker.model import ArmSample, AutoSettings, CostEntry, ExperimentRecord, WorkflowOutcome


class ExperimentStore:
    @abstractmethod
    async def create_experiment(self, experiment: ExperimentRecord) -> ExperimentRecord | None:
        """Store `experiment` running and add one to the policy set's version — unless one with its id is
        stored (a redelivery: the stored one, nothing changes); None (nothing written) when another experiment
        of its workflow type is running."""

    @abstractmethod
    async def stop_experiment(
        self, experiment_id: uuid.UUID, by: str, at: datetime, promoted_arm: str | None
    ) -> ExperimentRecord | None:
        """Stop the experiment if it runs (adding one to the version); the stored one (None: unknown)."""

    @abstractmethod
    async def experiments(self) -> list[ExperimentRecord]:
        """Every experiment, newest first."""

    @abstractmethod
    async def experiment_samples(self, experiment_id: uuid.UUID) -> list[ArmSample]:
        """The ended workflows assigned to one of the experiment's arms."""

    @abstractmethod
    async def auto_settings(self) -> AutoSettings | None:
        """The automatic mode's settings (None: never set: off)."""

    @abstractmethod
    async def put_auto_settings(self, settings: AutoSettings) -> None: ...


# --- in memory ---------------------------------------------------------------------------------------------


class MemoryExperiments(ExperimentStore):
    _entries: dict[uuid.UUID, CostEntry]
    _outcomes: dict[uuid.UUID, WorkflowOutcome]
    _policy_version: int
    _experiments: dict[uuid.UUID, ExperimentRecord]
    _auto: AutoSettings | None

    async def create_experiment(self, experiment: ExperimentRecord) -> ExperimentRecord | None:
        if experiment.id in self._experiments:
            return self._experiments[experiment.id]
        running = (e for e in self._experiments.values() if e.status == "running")
        if any(e.workflow_type is experiment.workflow_type for e in running):
            return None
        self._experiments[experiment.id] = experiment
        self._policy_version += 1
        return experiment

    async def stop_experiment(
        self, experiment_id: uuid.UUID, by: str, at: datetime, promoted_arm: str | None
    ) -> ExperimentRecord | None:
        found = self._experiments.get(experiment_id)
        if found is None or found.status != "running":
            return found
        stopped = dataclasses.replace(found, status="stopped", stopped_by=by, stopped_at=at, promoted_arm=promoted_arm)
        self._experiments[experiment_id] = stopped
        self._policy_version += 1
        return stopped

    async def experiments(self) -> list[ExperimentRecord]:
        return sorted(self._experiments.values(), key=lambda e: (e.created_at, str(e.id)), reverse=True)

    async def experiment_samples(self, experiment_id: uuid.UUID) -> list[ArmSample]:
        samples = []
        for outcome in self._outcomes.values():
            if outcome.experiment_id != experiment_id or outcome.arm is None:
                continue
            entries = [e for e in self._entries.values() if e.workflow_id == outcome.workflow_id]
            generations = {e.generation_id for e in entries}
            samples.append(
                ArmSample(
                    arm=outcome.arm,
                    status=outcome.status,
                    duration_ms=outcome.duration_ms,
                    error_type=outcome.error_type,
                    cost_usd=sum((e.cost_usd for e in entries), Decimal(0)),
                    providers=frozenset(e.provider for e in entries),
                    rewrites=len(entries) - len(generations),
                )
            )
        return samples

    async def auto_settings(self) -> AutoSettings | None:
        return self._auto

    async def put_auto_settings(self, settings: AutoSettings) -> None:
        self._auto = settings


# --- on PostgreSQL -----------------------------------------------------------------------------------------

_COLUMNS = (
    "id, name, workflow_type, bucket_by, arms, status, promoted_arm, created_by, created_at, stopped_by, stopped_at"
)
_INSERT = f"INSERT INTO experiments ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, 'running', NULL, $6, $7, NULL, NULL)"
_LOCK = "SELECT version FROM routing_policy_version FOR UPDATE"
_BUMP = "UPDATE routing_policy_version SET version = version + 1"
_SAMPLES = """
SELECT o.arm, o.status, o.duration_ms, o.error_type, coalesce(sum(e.cost_usd), 0) AS cost_usd,
       coalesce(array_agg(DISTINCT e.provider) FILTER (WHERE e.provider IS NOT NULL), '{}') AS providers,
       count(e.message_id) - count(DISTINCT e.generation_id) AS rewrites
FROM workflow_outcomes o LEFT JOIN cost_entries e ON e.workflow_id = o.workflow_id
WHERE o.experiment_id = $1 AND o.arm IS NOT NULL
GROUP BY o.workflow_id, o.arm, o.status, o.duration_ms, o.error_type
"""


class PostgresExperiments(SchemaStore, ExperimentStore):
    async def create_experiment(self, experiment: ExperimentRecord) -> ExperimentRecord | None:
        e = experiment
        async with self._connection("create experiment") as conn, conn.transaction():
            await conn.execute(_LOCK)  # one change of the routing set at a time
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM experiments WHERE id = $1", e.id)
            if row is not None:
                return _experiment(row)
            running = await conn.fetchval(
                "SELECT 1 FROM experiments WHERE workflow_type = $1 AND status = 'running'", e.workflow_type.value
            )
            if running:
                return None
            await conn.execute(
                _INSERT,
                e.id, e.name, e.workflow_type.value, e.bucket_by, [a.model_dump(mode="json") for a in e.arms],
                e.created_by, e.created_at,
            )  # fmt: skip
            await conn.execute(_BUMP)
        return experiment

    async def stop_experiment(
        self, experiment_id: uuid.UUID, by: str, at: datetime, promoted_arm: str | None
    ) -> ExperimentRecord | None:
        sql = (
            "UPDATE experiments SET status = 'stopped', stopped_by = $2, stopped_at = $3, promoted_arm = $4"
            f" WHERE id = $1 AND status = 'running' RETURNING {_COLUMNS}"
        )
        async with self._connection("stop experiment") as conn, conn.transaction():
            await conn.execute(_LOCK)
            row = await conn.fetchrow(sql, experiment_id, by, at, promoted_arm)
            if row is not None:
                await conn.execute(_BUMP)
                return _experiment(row)
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM experiments WHERE id = $1", experiment_id)
        return None if row is None else _experiment(row)

    async def experiments(self) -> list[ExperimentRecord]:
        async with self._connection("read experiments") as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM experiments ORDER BY created_at DESC, id DESC")
        return [_experiment(row) for row in rows]

    async def experiment_samples(self, experiment_id: uuid.UUID) -> list[ArmSample]:
        async with self._connection("read experiment samples") as conn:
            rows = await conn.fetch(_SAMPLES, experiment_id)
        return [
            ArmSample(
                arm=row["arm"],
                status=row["status"],
                duration_ms=row["duration_ms"],
                error_type=row["error_type"],
                cost_usd=row["cost_usd"],
                providers=frozenset(Provider(p) for p in row["providers"]),
                rewrites=row["rewrites"],
            )
            for row in rows
        ]

    async def auto_settings(self) -> AutoSettings | None:
        async with self._connection("read auto-optimize") as conn:
            row = await conn.fetchrow(f"SELECT {_AUTO_COLUMNS} FROM auto_optimize")
        return None if row is None else AutoSettings(**dict(row))

    async def put_auto_settings(self, settings: AutoSettings) -> None:
        s = settings
        async with self._connection("store auto-optimize") as conn:
            await conn.execute(
                _PUT_AUTO, s.enabled, s.threshold_id, s.trigger_percent, s.min_saving_percent, s.lookback_days,
                s.updated_by, s.updated_at,
            )  # fmt: skip


_AUTO_COLUMNS = "enabled, threshold_id, trigger_percent, min_saving_percent, lookback_days, updated_by, updated_at"
_PUT_AUTO = f"""
INSERT INTO auto_optimize ({_AUTO_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (singleton) DO UPDATE SET enabled = EXCLUDED.enabled, threshold_id = EXCLUDED.threshold_id,
    trigger_percent = EXCLUDED.trigger_percent, min_saving_percent = EXCLUDED.min_saving_percent,
    lookback_days = EXCLUDED.lookback_days, updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at
"""


def _experiment(row: Mapping[str, Any] | asyncpg.Record) -> ExperimentRecord:
    return ExperimentRecord(
        id=row["id"],
        name=row["name"],
        workflow_type=IntentType(row["workflow_type"]),
        bucket_by=row["bucket_by"],
        arms=tuple(Arm.model_validate(arm) for arm in row["arms"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        status=row["status"],
        promoted_arm=row["promoted_arm"],
        stopped_by=row["stopped_by"],
        stopped_at=row["stopped_at"],
    )
