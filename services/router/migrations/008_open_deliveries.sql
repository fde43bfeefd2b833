-- A status read's next slot (pg_sql.NEXT_OPEN: the earliest scheduled of a workflow's deliveries not yet
-- settled) from one index probe instead of reading and sorting every open row — thousands mid-campaign, on
-- every poll. Partial: a settled delivery leaves it, so it holds only what is still under way.
CREATE INDEX deliveries_open ON deliveries (workflow_id, scheduled_for, seq)
    WHERE status NOT IN ('sent', 'failed', 'cancelled');
