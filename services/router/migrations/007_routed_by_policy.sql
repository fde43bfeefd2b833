-- The routing policy a workflow's provider was chosen by (issue 15), shown in its status with its experiment arm.
ALTER TABLE hybrid_workflows ADD COLUMN routing_policy uuid;
