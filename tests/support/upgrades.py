"""What an upgraded store must show, on SQLite and PostgreSQL alike: every key, job and result an earlier
version wrote, intact and usable (tests/jobs/test_migrations.py, tests/cluster/test_cluster_migrations.py)."""

from __future__ import annotations

import time

from sqlalchemy import inspect, select, text

from img2vid.jobs import migrate
from img2vid.jobs.store import JobStore, jobs

from .old_stores import KEY_HASH, REVOKED_HASH, build_old_store

__all__ = ["check_upgrade"]


def check_upgrade(url: str, release: str, revision: str) -> None:
    old = build_old_store(url, release, time.time())
    store = JobStore(url, upgrade=False)
    try:
        assert migrate.current(store.engine) == revision  # recognised by its columns
    finally:
        store.close()
    store = JobStore(url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == migrate.HEAD
            assert "route" not in {column["name"] for column in inspect(conn).get_columns("jobs")}
            created = dict(conn.execute(select(jobs.c.id, jobs.c.created_at)).all())
        assert created == dict.fromkeys((old.queued, old.running, old.done, old.failed), old.created_at)
        # Keys: the kept one works, the revoked one stays revoked.
        assert store.key_is_active(KEY_HASH) and not store.key_is_active(REVOKED_HASH)
        assert [row.name for row in store.list_keys()] == ["kept", "gone"]
        # The finished jobs and the result.
        done = store.result(old.done)
        assert done is not None and (done.video, done.seed, done.finish_reason) == (old.video, 13, "SUCCESS")
        failed = store.status(old.failed)
        assert failed is not None and (failed.status, failed.error_message) == ("failed", "an old failure")
        assert not store.status(old.done).expired
        # The job left running by a worker that is gone goes back in the queue and both waiting jobs run.
        store.requeue_running()
        ran = {}
        while (claim := store.claim_next("new-worker", lease_seconds=30)) is not None:
            assert store.start_run(claim.job.id, claim.token, lease_seconds=30)
            ran[claim.job.id] = (claim.job.image, claim.job.seed, claim.job.params)
            assert store.finish(claim.job.id, claim.token, video=b"new", seed=claim.job.seed, finish_reason="SUCCESS", ttl=60)
        assert ran == {
            old.queued: (b"png-queued", 11, {"cfg_scale": 1.8}),
            old.running: (b"png-running", 12, {"cfg_scale": 1.8}),
        }
        # New jobs, idempotency keys and the caps work on the upgraded store.
        first, created = store.add_job(owner=KEY_HASH, image=b"x", seed=5, params={}, idempotency_key="k", max_per_owner=2)
        assert created and store.add_job(owner=KEY_HASH, image=b"x", seed=5, params={}, idempotency_key="k")[0] == first
        assert store.counts() == {"queued": 1, "running": 0, "done": 3, "failed": 1, "cancelled": 0}
    finally:
        store.close()
