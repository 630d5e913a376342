"""Jobs: the store (the one truth), leases and fencing, the reconciler, and both dispatchers.

``server/`` (HTTP, FastAPI) and ``img2vid worker`` (Celery, an engine) both import this package; so it must
never import FastAPI, and the front end must be able to use it without torch.

- :mod:`.store`: the facade over the store's parts, each the one owner of its SQL: :mod:`.queue` (admission
  and the queue's moves, every one a guarded statement), :mod:`.apikeys`, :mod:`.registry` (workers'
  heartbeats), :mod:`.observe` (what operators watch), over :mod:`.database` (transactions, the database's
  clock, the 503) and :mod:`.schema`.
- :mod:`.migrate` and :mod:`.migrations`: the schema's Alembic revisions, applied once at start behind a lock.
- :mod:`.runner`: one claimed job run to its stored outcome (heartbeat, cancel, time limit, fenced writes).
- :mod:`.embedded`: the dispatcher interface and worker threads inside the server (one machine).
- :mod:`.celery_dispatch`: the front end's side of Celery (publishing doorbells, the reconciler).
- :mod:`.worker`: ``img2vid worker``, a Celery worker with a warm engine.
- :mod:`.reconciler`: expired leases re-queued, lost doorbells rung again, expired results removed.
- :mod:`.settings`: every knob of ``serve`` and ``worker``, from options and ``IMG2VID_*`` variables.
"""
