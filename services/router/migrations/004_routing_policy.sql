-- Optimisation that acts (issue 15): the routing policy the cost-tracker sent (routing.policy), whole, at the
-- highest version received; every replica reads it from here, a restarted one too.
CREATE TABLE routing_policy (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version     bigint NOT NULL,
    policy      jsonb NOT NULL,                         -- the routing.policy payload
    observed_at timestamptz NOT NULL
);
