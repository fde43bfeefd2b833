-- The of-sender's tables (DESIGN §2). Runs with search_path = of_sender.

-- One row per delivery (the seed's onlyfans_messages): pending (approved, not tried yet) → queued (waiting
-- for a later slot: throttled, rate limited or a retry) → sending (the request is out) → sent | failed.
CREATE TABLE onlyfans_messages (
    delivery_id         uuid PRIMARY KEY,        -- also the Idempotency-Key sent to the platform
    workflow_id         uuid,
    account_id          text NOT NULL,
    recipient_id        text NOT NULL,
    status              text NOT NULL CHECK (status IN ('pending', 'queued', 'sending', 'sent', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,   -- HTTP requests made
    max_retries         integer NOT NULL,             -- 5xx/timeout retries allowed after the first attempt
    rate_limited        integer NOT NULL DEFAULT 0,   -- platform 429s received
    scheduled_for       timestamptz,                  -- the slot it is waiting for
    held_since          timestamptz,                  -- held because the limiter was unreachable
    attempted_at        timestamptz,                  -- the last check of the last attempt (actual send time)
    sent_at             timestamptz,
    platform_message_id text,
    last_error          jsonb,                        -- ErrorInfo of the last failure
    bus_message_id      uuid NOT NULL,                -- the delivery.approved envelope that last moved it
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX onlyfans_messages_workflow ON onlyfans_messages (workflow_id);

-- Every send attempt, at the time its last check passed: the durable record the Redis send log is rebuilt
-- from when Redis lost its data. Written before the request goes out.
CREATE TABLE onlyfans_send_attempts (
    token        text PRIMARY KEY,
    delivery_id  uuid NOT NULL,
    account_id   text NOT NULL,
    recipient_id text NOT NULL,
    checked_at   timestamptz NOT NULL
);

CREATE INDEX onlyfans_send_attempts_account ON onlyfans_send_attempts (account_id, checked_at);
CREATE INDEX onlyfans_send_attempts_checked ON onlyfans_send_attempts (checked_at);
