"""Topic-based Subscriptions (Subscriptions R5 Backport IG, R4): events written to the
outbox in the transaction that made the change, delivered at least once by a worker.

  events    which subscriptions a committed change is news to (the store's version hook)
  render    an event as its subscriber may see it now (visibility, hidden references)
  delivery  the worker: handshake, events in order, heartbeats, retries with backoff
  api       the Subscription resource, $status and $events
"""
