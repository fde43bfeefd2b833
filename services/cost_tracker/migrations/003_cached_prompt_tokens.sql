-- Real prices (issue 15): the prompt tokens a provider served from its prompt cache, billed at their own rate.
-- Entries recorded before this have none (0) and their prompt rate stands for the cached one.
ALTER TABLE cost_entries ADD COLUMN cached_prompt_tokens integer NOT NULL DEFAULT 0
    CHECK (cached_prompt_tokens >= 0 AND cached_prompt_tokens <= prompt_tokens);
ALTER TABLE cost_entries ADD COLUMN cached_price_per_1k numeric;
UPDATE cost_entries SET cached_price_per_1k = prompt_price_per_1k;
ALTER TABLE cost_entries ALTER COLUMN cached_price_per_1k SET NOT NULL;
