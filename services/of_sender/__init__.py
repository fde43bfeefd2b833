"""of-sender: sends approved deliveries to the fan platform's chat API, once, within the limits.

It consumes delivery.approved (published by the rate-limiter at the delivery's slot; an approval due before
a slot delivery.replanned moved it to waits for that one), makes the last
atomic check against the limits on actual send times, calls the platform with the delivery's stable
Idempotency-Key, and reports delivery.completed / delivery.failed / delivery.scheduled (moved) to the router.
"""
