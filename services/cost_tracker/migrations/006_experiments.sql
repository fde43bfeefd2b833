-- Experiments (issue 15): A/B arms of a workflow type, and the arm each ended workflow was assigned to.
CREATE TABLE experiments (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    workflow_type text NOT NULL,
    bucket_by     text NOT NULL CHECK (bucket_by IN ('user', 'workflow')),
    arms          jsonb NOT NULL,                       -- [{name, provider, model, prompt_variant, weight}]
    status        text NOT NULL CHECK (status IN ('running', 'stopped')),
    promoted_arm  text,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL,
    stopped_by    text,
    stopped_at    timestamptz
);

-- At most one running experiment per workflow type.
CREATE UNIQUE INDEX experiments_running ON experiments (workflow_type) WHERE status = 'running';

-- The router names the arm in workflow.completed / .failed; a failure's error type counts compliance failures.
ALTER TABLE workflow_outcomes ADD COLUMN experiment_id uuid;
ALTER TABLE workflow_outcomes ADD COLUMN arm text;
ALTER TABLE workflow_outcomes ADD COLUMN error_type text;
CREATE INDEX workflow_outcomes_experiment ON workflow_outcomes (experiment_id) WHERE experiment_id IS NOT NULL;
