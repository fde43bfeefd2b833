-- Operator control (issue 13): the creator account a workflow sends from, the workflow a retry repeats,
-- the cancelled state of workflows and deliveries, and the indexes of the workflow list.

ALTER TABLE hybrid_workflows
    ADD COLUMN account_id text,  -- NULL: the requester's own id (user_id), as before accounts existed
    ADD COLUMN retry_of   uuid;  -- the failed workflow this one retries

ALTER TABLE hybrid_workflows DROP CONSTRAINT hybrid_workflows_status_check;
ALTER TABLE hybrid_workflows ADD CONSTRAINT hybrid_workflows_status_check
    CHECK (status IN ('accepted', 'generating', 'generated', 'delivering', 'completed', 'failed', 'cancelled'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'rate_limited', 'cancelled'));

DROP INDEX hybrid_workflows_running;
CREATE INDEX hybrid_workflows_running ON hybrid_workflows (deadline_at)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');

-- The workflow list: newest first, keyset (created_at, workflow_id). A user's own (replacing the index of
-- 001 by one that also orders ties), an account's, and everyone's (an admin's list).
DROP INDEX hybrid_workflows_user_created;
CREATE INDEX hybrid_workflows_user_created ON hybrid_workflows (user_id, created_at DESC, workflow_id DESC);
CREATE INDEX hybrid_workflows_account_created ON hybrid_workflows (account_id, created_at DESC, workflow_id DESC)
    WHERE account_id IS NOT NULL;
CREATE INDEX hybrid_workflows_created ON hybrid_workflows (created_at DESC, workflow_id DESC);

-- A report on a cancelled delivery: a send that happened anyway (it was in flight when the cancel took
-- effect) counts as sent; a failure or a slot changes nothing.
CREATE OR REPLACE FUNCTION delivery_report(
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
    d_cancelled integer := 0;
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
                d_cancelled := CASE WHEN d.status = 'cancelled' THEN -1 ELSE 0 END;
                UPDATE deliveries x SET status = 'sent', sent_at = p_sent_at,
                    platform_message_id = p_platform_message_id, error = NULL, updated_at = p_at
                WHERE x.workflow_id = p_workflow AND x.seq = d.seq;
            END IF;
        ELSIF p_kind = 'failed' THEN
            IF d.status NOT IN ('sent', 'failed', 'cancelled') THEN
                d_failed := 1;
                UPDATE deliveries x SET status = 'failed', error = p_error, updated_at = p_at
                WHERE x.workflow_id = p_workflow AND x.seq = d.seq;
            END IF;
        ELSE
            d_scheduled := CASE WHEN d.scheduled_for IS NULL THEN 1 ELSE 0 END;
            IF d.status IN ('sent', 'failed', 'cancelled') THEN  -- the slot's report came after the outcome's
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
        cancelled = w.cancelled + d_cancelled,
        scheduled = w.scheduled + d_scheduled,
        delivery_retries = w.delivery_retries + d_retries,
        last_slot_at = GREATEST(w.last_slot_at, slot),
        rate_limiter = COALESCE(p_limiter, w.rate_limiter),
        deadline_at = CASE WHEN slot IS NOT NULL AND w.status NOT IN ('completed', 'failed', 'cancelled')
                           THEN GREATEST(w.deadline_at, slot + p_grace) ELSE w.deadline_at END
    WHERE w.workflow_id = p_workflow
    RETURNING true, w.status, w.deliveries_total, w.generated, w.ungenerated, w.scheduled, w.sent, w.failed,
        w.cancelled, w.delivery_retries, w.last_slot_at, w.rate_limiter;
END;
$$;
