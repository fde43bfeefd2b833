-- The cost-tracker's tables (DESIGN §8). Runs with search_path = cost_tracker. Money is numeric: exact.

-- One row per billed provider call (one usage.recorded message), priced when it was recorded.
CREATE TABLE cost_entries (
    message_id              uuid PRIMARY KEY,           -- the usage.recorded envelope id: counted once
    user_id                 text NOT NULL,
    workflow_id             uuid,
    generation_id           uuid,
    workflow_type           text NOT NULL,
    provider                text NOT NULL CHECK (provider IN ('azure', 'openai')),
    model                   text NOT NULL,
    prompt_tokens           integer NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens       integer NOT NULL CHECK (completion_tokens >= 0),
    tokens_estimated        boolean NOT NULL,           -- the worker counted the tokens (no usage from the API)
    price_estimated         boolean NOT NULL,           -- the model has no price: its provider's rate applied
    price_entry             text NOT NULL,              -- the price table entry used
    prompt_price_per_1k     numeric NOT NULL,
    completion_price_per_1k numeric NOT NULL,
    cost_usd                numeric NOT NULL CHECK (cost_usd >= 0),
    occurred_at             timestamptz NOT NULL,
    recorded_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX cost_entries_occurred ON cost_entries (occurred_at);
CREATE INDEX cost_entries_user_occurred ON cost_entries (user_id, occurred_at);
CREATE INDEX cost_entries_workflow ON cost_entries (workflow_id);

-- Running totals per scope (a user id, or '*' for everyone), period and period start, added to in the same
-- statement as the entry: thresholds and budgets compare against these without summing the month each time.
CREATE TABLE spend_totals (
    scope        text NOT NULL,
    period       text NOT NULL CHECK (period IN ('daily', 'monthly')),
    period_start date NOT NULL,
    spent_usd    numeric NOT NULL,
    PRIMARY KEY (scope, period, period_start)
);

-- How each workflow ended (workflow.completed / workflow.failed).
CREATE TABLE workflow_outcomes (
    workflow_id       uuid PRIMARY KEY,
    user_id           text NOT NULL,
    status            text NOT NULL CHECK (status IN ('completed', 'failed')),
    provider          text,
    prompt_tokens     integer,
    completion_tokens integer,
    duration_ms       double precision NOT NULL,
    finished_at       timestamptz NOT NULL
);

-- Alert thresholds and budgets: a threshold whose action is not 'none' is a budget as well.
CREATE TABLE thresholds (
    id            uuid PRIMARY KEY,
    scope_user_id text,                                 -- NULL: global
    period        text NOT NULL CHECK (period IN ('daily', 'monthly')),
    limit_usd     numeric NOT NULL CHECK (limit_usd > 0),
    severity      text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    action        text NOT NULL CHECK (action IN ('none', 'downgrade', 'block')),
    channels      text[] NOT NULL,
    enabled       boolean NOT NULL,
    name          text,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Raised alerts: at most one per threshold and period, whatever the number of replicas.
CREATE TABLE alerts (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('threshold', 'manual')),
    threshold_id    text NOT NULL,
    scope_user_id   text,
    period          text NOT NULL CHECK (period IN ('daily', 'monthly')),
    period_start    date NOT NULL,
    spent_usd       numeric NOT NULL,
    limit_usd       numeric NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message         text NOT NULL,
    raised_at       timestamptz NOT NULL,
    created_by      text,
    acknowledged    boolean NOT NULL DEFAULT false,
    acknowledged_by text,
    acknowledged_at timestamptz,
    published_at    timestamptz,                        -- its cost.alert was confirmed by the bus
    UNIQUE (threshold_id, period_start)
);

CREATE INDEX alerts_raised ON alerts (raised_at DESC);
CREATE INDEX alerts_scope_raised ON alerts (scope_user_id, raised_at DESC);
CREATE INDEX alerts_unpublished ON alerts (raised_at) WHERE published_at IS NULL;

-- One row per alert and channel: the delivery's state, leased to one sender at a time.
CREATE TABLE alert_deliveries (
    alert_id      uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel       text NOT NULL,
    status        text NOT NULL
        CHECK (status IN ('pending', 'sending', 'retrying', 'sent', 'failed', 'skipped')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    sent_at       timestamptz,
    claimed_until timestamptz,
    PRIMARY KEY (alert_id, channel)
);

-- The budget action last decided per scope and period: what the routers were told in budget.status.
CREATE TABLE budget_states (
    scope        text NOT NULL,
    period       text NOT NULL CHECK (period IN ('daily', 'monthly')),
    action       text NOT NULL CHECK (action IN ('allow', 'downgrade', 'block')),
    period_start date NOT NULL,
    spent_usd    numeric NOT NULL,
    limit_usd    numeric,
    changed_at   timestamptz NOT NULL,
    published_at timestamptz,
    PRIMARY KEY (scope, period)
);
