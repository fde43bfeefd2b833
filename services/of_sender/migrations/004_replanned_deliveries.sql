-- The later slot the rate-limiter moved a delivery to when an urgent delivery took its place
-- (delivery.replanned). It usually arrives before the delivery's first approval, so it has a table of its
-- own; `open` returns it with the record, and an approval due before it waits for it. One small row per
-- displaced delivery, forgotten a day after its slot with the old send attempts.
CREATE TABLE replanned_deliveries (
    delivery_id uuid PRIMARY KEY,
    slot_at     timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replanned_deliveries_slot_at ON replanned_deliveries (slot_at);
