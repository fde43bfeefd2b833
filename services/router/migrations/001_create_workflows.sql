-- The router's tables (DESIGN §5). Runs with search_path = router.

-- One row per workflow: its whole state, rewritten by every transition (optimistic concurrency on version).
CREATE TABLE hybrid_workflows (
    workflow_id      uuid PRIMARY KEY,
    user_id          text NOT NULL,
    status           text NOT NULL
        CHECK (status IN ('accepted', 'generating', 'generated', 'delivering', 'completed', 'failed')),
    intent           jsonb NOT NULL,
    trace_id         text,
    current_provider text CHECK (current_provider IN ('azure', 'openai')),
    provider_states  jsonb NOT NULL,
    fallback_history jsonb NOT NULL DEFAULT '[]',
    retry_attempts   jsonb NOT NULL,
    recoveries       jsonb NOT NULL DEFAULT '{}',   -- fallback scenario -> times recovered from
    attempts         integer NOT NULL DEFAULT 0,    -- generation requests so far, all providers
    generation_id    uuid,                          -- envelope id of the current generation request
    result           text,
    model            text,
    usage            jsonb,
    error            jsonb,
    deliveries       jsonb NOT NULL DEFAULT '[]',
    version          integer NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deadline_at      timestamptz NOT NULL,
    completed_at     timestamptz
);

CREATE INDEX hybrid_workflows_user_created ON hybrid_workflows (user_id, created_at DESC);
-- Operations: the workflows still running, oldest deadline first ("nothing stuck without a reason").
CREATE INDEX hybrid_workflows_running ON hybrid_workflows (deadline_at)
    WHERE status NOT IN ('completed', 'failed');

-- Every transition, appended in the same statement as the state change that made it.
CREATE TABLE workflow_events (
    workflow_id uuid NOT NULL REFERENCES hybrid_workflows (workflow_id) ON DELETE CASCADE,
    version     integer NOT NULL,   -- the workflow version the transition produced
    seq         smallint NOT NULL,  -- order of the transitions one message made
    message_id  uuid NOT NULL,      -- the message that caused it
    event       text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, version, seq)
);

-- Handled message ids (de-duplication) with what handling them published (the transactional outbox).
CREATE TABLE processed_messages (
    message_id   uuid PRIMARY KEY,
    workflow_id  uuid,
    outbox       jsonb NOT NULL DEFAULT '[]',
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX processed_messages_processed_at ON processed_messages (processed_at);

-- The latest budget.status per scope (a user id, or '*' for the global budget) and period.
CREATE TABLE budget_states (
    scope       text NOT NULL,
    period      text NOT NULL,
    action      text NOT NULL CHECK (action IN ('allow', 'downgrade', 'block')),
    spent_usd   numeric NOT NULL,
    limit_usd   numeric,
    observed_at timestamptz NOT NULL,
    PRIMARY KEY (scope, period)
);
