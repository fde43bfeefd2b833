-- The automatic optimisation mode (issue 15): recommendations applied while a budget rule's period spend is
-- past a share of its limit, and reverted below it. Policies it applies are marked, so it reverts only its own.
ALTER TABLE routing_policies ADD COLUMN automatic boolean NOT NULL DEFAULT false;

CREATE TABLE auto_optimize (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled            boolean NOT NULL,
    threshold_id       uuid,
    trigger_percent    numeric NOT NULL,
    min_saving_percent numeric NOT NULL,
    lookback_days      integer NOT NULL,
    updated_by         text NOT NULL,
    updated_at         timestamptz NOT NULL
);
