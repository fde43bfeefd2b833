-- Which approval re-queued the delivery (NULL until the first re-queue). bus_message_id names the one
-- approval allowed to move the delivery; the approval named here may only re-publish it (sender.py: a
-- re-queue is recorded before it is published, and a crash in between must not strand the delivery).
ALTER TABLE onlyfans_messages ADD COLUMN requeued_from uuid;
