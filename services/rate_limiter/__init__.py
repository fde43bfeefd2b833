"""rate-limiter: plans each delivery's send at the earliest slot within the platform's limits.

It consumes delivery.requested, reserves the slot atomically (libs.ratelimit: Redis, shared by every
replica), tells the router the slot (delivery.scheduled → `scheduledFor`), and publishes delivery.approved
delayed to that slot for the of-sender. Nothing waits unacknowledged: the bus holds the delayed message.
An urgent delivery may take the place of planned bulk ones: each one displaced is announced with its new
slot (delivery.replanned to the of-sender, delivery.scheduled to the router).
"""
