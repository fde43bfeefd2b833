-- Thresholds as the original plan has them (issue 15): hourly and per-request thresholds, thresholds on one
-- provider's spend, and a user's own alert destinations.

-- A period now begins at an instant (an hour's is not a day): period_start becomes the period's first
-- instant in UTC; the days stored so far are their midnights. Existing ids (alerts are uuid5 of threshold and
-- day) do not change.
ALTER TABLE spend_totals ALTER COLUMN period_start TYPE timestamptz USING (period_start::timestamp AT TIME ZONE 'UTC');
ALTER TABLE alerts ALTER COLUMN period_start TYPE timestamptz USING (period_start::timestamp AT TIME ZONE 'UTC');
ALTER TABLE budget_states ALTER COLUMN period_start TYPE timestamptz USING (period_start::timestamp AT TIME ZONE 'UTC');

-- Running totals per provider besides every provider's ('*', what the rows so far are).
ALTER TABLE spend_totals ADD COLUMN provider text NOT NULL DEFAULT '*'
    CHECK (provider IN ('*', 'azure', 'openai'));
ALTER TABLE spend_totals DROP CONSTRAINT spend_totals_pkey;
ALTER TABLE spend_totals ADD PRIMARY KEY (scope, period, period_start, provider);
ALTER TABLE spend_totals DROP CONSTRAINT spend_totals_period_check;
ALTER TABLE spend_totals ADD CONSTRAINT spend_totals_period_check CHECK (period IN ('hourly', 'daily', 'monthly'));

-- Thresholds: hourly and per_request types, and an optional provider (NULL: every provider's spend).
ALTER TABLE thresholds DROP CONSTRAINT thresholds_period_check;
ALTER TABLE thresholds ADD CONSTRAINT thresholds_period_check
    CHECK (period IN ('hourly', 'daily', 'monthly', 'per_request'));
ALTER TABLE thresholds ADD COLUMN provider text CHECK (provider IN ('azure', 'openai'));
-- Budgets are on every provider's spend over a period: a per-request or one provider's threshold alerts only.
ALTER TABLE thresholds ADD CONSTRAINT thresholds_budget_on_totals
    CHECK (action = 'none' OR (period <> 'per_request' AND provider IS NULL));

ALTER TABLE alerts DROP CONSTRAINT alerts_period_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_period_check CHECK (period IN ('hourly', 'daily', 'monthly', 'per_request'));
ALTER TABLE budget_states DROP CONSTRAINT budget_states_period_check;
ALTER TABLE budget_states ADD CONSTRAINT budget_states_period_check CHECK (period IN ('hourly', 'daily', 'monthly'));

-- Where a user's own alerts go besides the alert list (set by the user, or an admin for them).
CREATE TABLE alert_destinations (
    user_id     text PRIMARY KEY,
    email       text,
    webhook_url text,
    updated_at  timestamptz NOT NULL
);
