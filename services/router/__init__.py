"""The router: owner of the workflow state machine (docs/architecture.md#workflow-states), the provider
choice, the fallback matrix and the circuit breakers (docs/architecture.md#generation-and-fallback).

It consumes workflow.requested, generation.completed/failed, workflow.status.query and budget.status; it
publishes generation.requested and workflow.completed/failed. Deadlines are enforced by a periodic sweep of
the running workflows in its store (handlers.Router.fail_overdue). Every handled message moves a workflow in
one database write that also records the message id and the messages the move must publish (a transactional
outbox), so a redelivered message changes nothing and re-publishes what a crash may have lost.
"""
