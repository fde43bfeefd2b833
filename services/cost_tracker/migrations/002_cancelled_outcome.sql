-- Operator control (issue 13): a workflow may end cancelled (workflow.cancelled), recorded like the others.
ALTER TABLE workflow_outcomes DROP CONSTRAINT workflow_outcomes_status_check;
ALTER TABLE workflow_outcomes ADD CONSTRAINT workflow_outcomes_status_check
    CHECK (status IN ('completed', 'failed', 'cancelled'));
