"""The cost-tracker: owner of the price table, the cost ledger, thresholds, alerts and budgets
(docs/architecture.md#costs).

It consumes usage.recorded (one priced cost entry per message, never counted twice), workflow.completed /
failed (how each workflow ended), the cost requests of contracts.costs (the gateway's cost endpoints, each
answered by its typed reply) and cost.alert (its own: alert delivery to Slack, SNS and email, off the
accounting path); it publishes cost.alert once per threshold and period, and budget.status whenever a
budget's action changes, so every router replica applies it.
"""
