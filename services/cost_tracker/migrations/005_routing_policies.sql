-- Optimisation that acts (issue 15): a recommendation applied is a routing policy for one workflow type (a
-- provider and a model), in force until reverted or replaced by the next one of its type.
CREATE TABLE routing_policies (
    id                   uuid PRIMARY KEY,
    workflow_type        text NOT NULL,
    provider             text NOT NULL CHECK (provider IN ('azure', 'openai')),
    model                text,                          -- NULL: the worker's configured model
    recommendation_id    uuid,
    estimated_saving_usd numeric,
    applied_by           text NOT NULL,
    applied_at           timestamptz NOT NULL,
    reverted_by          text,
    reverted_at          timestamptz
);

-- At most one policy in force per workflow type.
CREATE UNIQUE INDEX routing_policies_in_force ON routing_policies (workflow_type) WHERE reverted_at IS NULL;

-- The policy set's version: one more with every apply and revert, in the same transaction; the routers keep
-- the highest version they were sent.
CREATE TABLE routing_policy_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO routing_policy_version (version) VALUES (0);
