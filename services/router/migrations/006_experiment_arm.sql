-- Experiments (issue 15): the experiment arm a workflow was assigned when it was created ("<id>:<arm>"),
-- named in its workflow.completed / .failed so the cost-tracker can measure each arm.
ALTER TABLE hybrid_workflows ADD COLUMN experiment text;
