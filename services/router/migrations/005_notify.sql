-- Whom to tell when a workflow ends (contracts.messages.Notify: a ?wait=true gateway's reply queue and
-- correlation ids), so that whichever replica finishes the workflow can tell it. NULL: nobody asked.
ALTER TABLE hybrid_workflows ADD COLUMN notify jsonb;
