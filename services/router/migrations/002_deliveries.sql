-- Campaigns at scale (issue 12): one row per delivery instead of a JSON array rewritten by every report,
-- and the workflow's counters, which a report updates in the same statement as its delivery's row.

ALTER TABLE hybrid_workflows
    ADD COLUMN callback_url     text,
    ADD COLUMN personalized     boolean NOT NULL DEFAULT false,
    ADD COLUMN deliveries_total integer NOT NULL DEFAULT 0,
    ADD COLUMN generated        integer NOT NULL DEFAULT 0,  -- personalized texts written
    ADD COLUMN ungenerated      integer NOT NULL DEFAULT 0,  -- personalized texts given up on
    ADD COLUMN scheduled        integer NOT NULL DEFAULT 0,  -- deliveries that got a slot
    ADD COLUMN sent             integer NOT NULL DEFAULT 0,
    ADD COLUMN failed           integer NOT NULL DEFAULT 0,
    ADD COLUMN cancelled        integer NOT NULL DEFAULT 0,
    ADD COLUMN delivery_retries integer NOT NULL DEFAULT 0,  -- deliveries pushed back by a failure
    ADD COLUMN rate_limiter     text,                        -- the latest report's verdict of the limiter
    ADD COLUMN last_slot_at     timestamptz;

CREATE TABLE deliveries (
    workflow_id         uuid NOT NULL REFERENCES hybrid_workflows (workflow_id) ON DELETE CASCADE,
    seq                 integer NOT NULL,      -- campaign order; the page cursor
    delivery_id         uuid NOT NULL UNIQUE,  -- the platform's Idempotency-Key
    recipient_id        text NOT NULL,
    vars                jsonb NOT NULL DEFAULT '{}',
    status              text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'rate_limited')),
    text                text,                  -- personalized: this recipient's own text
    generation_id       uuid,                  -- personalized: the generation request its text waits for
    attempts            smallint NOT NULL DEFAULT 0,
    scheduled_for       timestamptz,
    sent_at             timestamptz,
    platform_message_id text,
    error               jsonb,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, seq)
);

-- Pages filtered by status (the primary key serves the unfiltered ones).
CREATE INDEX deliveries_by_status ON deliveries (workflow_id, status, seq);
-- A personalized text's result finds its delivery by the request it answers.
CREATE INDEX deliveries_by_generation ON deliveries (generation_id) WHERE generation_id IS NOT NULL;

-- The rows of workflows stored before this migration, from their JSON arrays.
INSERT INTO deliveries (workflow_id, seq, delivery_id, recipient_id, status, scheduled_for, sent_at,
                        platform_message_id, error, updated_at)
SELECT w.workflow_id, (d.ord - 1)::integer, (d.value ->> 'delivery_id')::uuid, d.value ->> 'recipient_id',
       d.value ->> 'status', (d.value ->> 'scheduled_for')::timestamptz, (d.value ->> 'sent_at')::timestamptz,
       d.value ->> 'platform_message_id', d.value -> 'error', w.updated_at
FROM hybrid_workflows w CROSS JOIN LATERAL jsonb_array_elements(w.deliveries) WITH ORDINALITY AS d (value, ord);

UPDATE hybrid_workflows w SET
    deliveries_total = c.total, scheduled = c.scheduled, sent = c.sent, failed = c.failed
FROM (
    SELECT workflow_id, count(*) AS total, count(scheduled_for) AS scheduled,
           count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status = 'failed') AS failed
    FROM deliveries GROUP BY workflow_id
) c
WHERE c.workflow_id = w.workflow_id;

ALTER TABLE hybrid_workflows DROP COLUMN deliveries;

-- A delivery report: its delivery's row and the workflow's counters, in one statement (one transaction),
-- once per message (processed_messages). Locks the workflow row first, then the delivery's, like a
-- workflow save that closes its open deliveries — the same order, so the two never deadlock.
-- p_kind: 'sent', 'failed', or 'pending' / 'rate_limited' for a (re)scheduled slot. A sent delivery stays
-- sent; a late 'sent' for a delivery failed at the deadline counts it sent (it was). Returns no row for an
-- unknown workflow; `applied` false when the message was handled before.
CREATE FUNCTION delivery_report(
    p_workflow uuid, p_message uuid, p_delivery uuid, p_kind text, p_slot timestamptz, p_sent_at timestamptz,
    p_platform_message_id text, p_error jsonb, p_limiter text, p_grace interval, p_at timestamptz
) RETURNS TABLE (
    applied boolean, status text, deliveries_total integer, generated integer, ungenerated integer,
    scheduled integer, sent integer, failed integer, cancelled integer, delivery_retries integer,
    last_slot_at timestamptz, rate_limiter text
) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d deliveries%ROWTYPE;
    d_sent integer := 0;
    d_failed integer := 0;
    d_scheduled integer := 0;
    d_retries integer := 0;
    slot timestamptz := NULL;
BEGIN
    PERFORM 1 FROM hybrid_workflows w WHERE w.workflow_id = p_workflow FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO processed_messages (message_id, workflow_id) VALUES (p_message, p_workflow)
        ON CONFLICT (message_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, w.status, w.deliveries_total, w.generated, w.ungenerated, w.scheduled,
            w.sent, w.failed, w.cancelled, w.delivery_retries, w.last_slot_at, w.rate_limiter
            FROM hybrid_workflows w WHERE w.workflow_id = p_workflow;
        RETURN;
    END IF;
    SELECT * INTO d FROM deliveries x WHERE x.workflow_id = p_workflow AND x.delivery_id = p_delivery FOR UPDATE;
    IF FOUND THEN
        IF p_kind = 'sent' THEN
            IF d.status <> 'sent' THEN
                d_sent := 1;
                d_failed := CASE WHEN d.status = 'failed' THEN -1 ELSE 0 END;
                UPDATE deliveries x SET status = 'sent', sent_at = p_sent_at,
                    platform_message_id = p_platform_message_id, error = NULL, updated_at = p_at
                WHERE x.workflow_id = p_workflow AND x.seq = d.seq;
            END IF;
        ELSIF p_kind = 'failed' THEN
            IF d.status NOT IN ('sent', 'failed') THEN
                d_failed := 1;
                UPDATE deliveries x SET status = 'failed', error = p_error, updated_at = p_at
                WHERE x.workflow_id = p_workflow AND x.seq = d.seq;
            END IF;
        ELSE
            d_scheduled := CASE WHEN d.scheduled_for IS NULL THEN 1 ELSE 0 END;
            IF d.status IN ('sent', 'failed') THEN  -- the slot's report came after the outcome's
                UPDATE deliveries x SET scheduled_for = COALESCE(x.scheduled_for, p_slot)
                WHERE x.workflow_id = p_workflow AND x.seq = d.seq;
            ELSE
                slot := GREATEST(d.scheduled_for, p_slot);
                d_retries := CASE WHEN p_error IS NULL THEN 0 ELSE 1 END;
                UPDATE deliveries x SET status = p_kind, scheduled_for = slot, error = p_error, updated_at = p_at
                WHERE x.workflow_id = p_workflow AND x.seq = d.seq;
            END IF;
        END IF;
    END IF;
    RETURN QUERY UPDATE hybrid_workflows w SET
        sent = w.sent + d_sent,
        failed = w.failed + d_failed,
        scheduled = w.scheduled + d_scheduled,
        delivery_retries = w.delivery_retries + d_retries,
        last_slot_at = GREATEST(w.last_slot_at, slot),
        rate_limiter = COALESCE(p_limiter, w.rate_limiter),
        deadline_at = CASE WHEN slot IS NOT NULL AND w.status NOT IN ('completed', 'failed')
                           THEN GREATEST(w.deadline_at, slot + p_grace) ELSE w.deadline_at END
    WHERE w.workflow_id = p_workflow
    RETURNING true, w.status, w.deliveries_total, w.generated, w.ungenerated, w.scheduled, w.sent, w.failed,
        w.cancelled, w.delivery_retries, w.last_slot_at, w.rate_limiter;
END;
$$;
