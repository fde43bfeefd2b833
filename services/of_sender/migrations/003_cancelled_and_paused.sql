-- The cancellation fence: every workflow cancelled (workflow.cancelled), kept so that no approval of it is
-- sent from then on — the claim of a send (store.sending) refuses a delivery of a workflow listed here.
-- One small row per cancel; kept for good (an approval may still be on its way for as long as the bus holds
-- delayed messages, and a row costs next to nothing).
CREATE TABLE cancelled_workflows (
    workflow_id  uuid PRIMARY KEY,
    account_id   text NOT NULL,
    cancelled_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- Held because the kill switch was off or the account paused (feature flags), since when; NULL once it
-- moves on. The router hears of a hold once, when it starts, not at every re-check.
ALTER TABLE onlyfans_messages ADD COLUMN paused_since timestamptz;
