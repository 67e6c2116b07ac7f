"""Alarms that reach people: a persistent outbox of notifications (`outbox`), the senders
that deliver them by e-mail, signed webhook, Slack and Microsoft Teams (`senders`), and the
dispatcher that drains the outbox with leases, retries and backoff (`dispatcher`), and the
files an e-mail carries, read by reference when it is sent (`attachments`).

Which transition goes to whom is decided elsewhere (the pure routing rules); this package
only guarantees that what was enqueued is delivered at least once, with a stable id the
receiver can drop repeats by."""
