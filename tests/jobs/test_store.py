"""The job store's moves on SQLite, as every dispatcher relies on them: fair turns across keys, the per-key
and server-wide caps, idempotent submits, fenced writes, cancel, and expired leases re-queued or failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from img2vid.errors import IdempotencyKeyReusedError, QueueFullError, TooManyJobsError
from img2vid.jobs.store import MAX_ATTEMPTS, MAX_CLAIMS, JobStore


def add(store: JobStore, owner: str, seed: int = 1, **options: object) -> str:
    return store.add_job(owner=owner, image=b"png", seed=seed, params={}, **options)[0]


def start_order(store: JobStore) -> list[str]:
    order = []
    while (claim := store.claim_next()) is not None:
        order.append(claim.job.id)
    return order


def test_jobs_start_in_turns_across_keys_and_in_order_within_a_key(store: JobStore) -> None:
    a = [add(store, "a", seed) for seed in range(1, 11)]  # one key queues ten jobs
    b1 = add(store, "b")  # another key's first job waits behind at most one of them
    b2 = add(store, "b", 2)
    c1 = add(store, "c")
    order = start_order(store)
    assert order[:6] == [a[0], b1, c1, a[1], b2, a[2]]
    assert order[6:] == a[3:]


def test_queue_position_reports_the_real_turn(store: JobStore) -> None:
    a = [add(store, "a", seed) for seed in range(1, 4)]
    running = store.claim_next()
    assert running is not None and running.job.id == a[0]
    b = add(store, "b")
    positions = {job: store.queue_position(store.status(job)) for job in (a[0], a[1], a[2], b)}
    assert positions == {a[0]: 0, b: 1, a[1]: 2, a[2]: 3}


def test_a_key_over_its_quota_is_refused_with_how_many_wait(store: JobStore) -> None:
    for seed in range(1, 4):
        add(store, "a", seed, max_per_owner=3)
    with pytest.raises(TooManyJobsError, match="already has 3 jobs") as refused:
        add(store, "a", max_per_owner=3)
    assert refused.value.retry_after and refused.value.http_status == 429
    add(store, "b", max_per_owner=3)  # other keys are not held back
    claim = store.claim_next()
    assert claim is not None
    store.finish(claim.job.id, claim.token, video=b"v", seed=1, finish_reason="SUCCESS", ttl=60)
    add(store, "a", max_per_owner=3)  # a finished job frees a place


def test_the_whole_queue_has_a_cap(store: JobStore) -> None:
    add(store, "a", max_active=2)
    add(store, "b", max_active=2)
    with pytest.raises(QueueFullError, match="queue is full") as refused:
        add(store, "c", max_active=2)
    assert refused.value.http_status == 503 and refused.value.error_name == "queue_full"


def test_an_idempotency_key_names_one_job_per_api_key(store: JobStore) -> None:
    first, created = store.add_job(owner="a", image=b"x", seed=1, params={}, idempotency_key="k1", fingerprint="f1")
    again, created_again = store.add_job(owner="a", image=b"x", seed=1, params={}, idempotency_key="k1", fingerprint="f1")
    other, _ = store.add_job(owner="b", image=b"x", seed=1, params={}, idempotency_key="k1", fingerprint="f2")
    assert (created, created_again) == (True, False) and again == first and other != first
    with pytest.raises(IdempotencyKeyReusedError, match="'k1'") as refused:
        store.add_job(owner="a", image=b"x", seed=2, params={}, idempotency_key="k1", fingerprint="f2")
    assert refused.value.http_status == 422
    assert store.counts()["queued"] == 2


def test_writes_with_a_stale_lease_token_change_nothing(store: JobStore) -> None:
    job = add(store, "a")
    first = store.claim_next(lease_seconds=30)
    assert first is not None
    assert store.requeue_expired(now=1e12) == 1  # its worker stalled past the lease
    second = store.claim_next(lease_seconds=30)
    assert second is not None and second.token > first.token
    assert not store.heartbeat(job, first.token, progress=0.5, lease_seconds=30)
    assert not store.finish(job, first.token, video=b"late", seed=1, finish_reason="SUCCESS", ttl=60)
    assert store.finish(job, second.token, video=b"mine", seed=1, finish_reason="SUCCESS", ttl=60)
    assert store.result(job).video == b"mine"


def test_an_expired_lease_is_requeued_until_the_attempts_run_out(store: JobStore) -> None:
    job = add(store, "a")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claim = store.claim_next(lease_seconds=1)
        assert claim is not None and claim.attempt == attempt
        assert store.start_run(job, claim.token, lease_seconds=1)
        assert store.requeue_expired(now=0) == 0  # a live lease is never touched
        store.requeue_expired(now=1e12)
    status = store.status(job)
    assert status.status == "failed" and f"started {MAX_ATTEMPTS} times" in status.error_message


def test_a_claim_lost_before_its_run_started_is_not_an_attempt(store: JobStore) -> None:
    # A worker that took the job and was lost before starting the engine (killed, cut off from the store)
    # is the system's fault: the job goes back without using one of its attempts.
    job = add(store, "a")
    for _ in range(MAX_ATTEMPTS + 2):
        claim = store.claim_next(lease_seconds=30)
        assert claim is not None and claim.attempt == 1
        assert store.requeue_expired(now=1e12) == 1
    claim = store.claim_next(lease_seconds=30)
    assert claim is not None and store.start_run(job, claim.token, lease_seconds=30)
    assert not store.start_run(job, claim.token, lease_seconds=30)  # once per run
    store.requeue_expired(now=1e12)
    assert store.status(job).status == "queued"
    assert store.claim_next().attempt == 2


def test_a_job_lost_before_every_start_is_failed_at_the_claim_bound(store: JobStore) -> None:
    job = add(store, "a")
    for _ in range(MAX_CLAIMS):
        assert store.claim_next(lease_seconds=30) is not None
        store.requeue_expired(now=1e12)
    status = store.status(job)
    assert status.status == "failed" and "lost before it started" in status.error_message


def test_leases_and_expiry_are_the_database_clock_s_not_the_process_s(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # A process whose clock is a day off writes and compares the same leases: the store never asks it.
    import time

    job = add(store, "a")
    claim = store.claim_next(lease_seconds=30)
    assert claim is not None and store.start_run(job, claim.token, lease_seconds=30)
    monkeypatch.setattr(time, "time", lambda: 0.0)
    assert store.heartbeat(job, claim.token, progress=0.5, lease_seconds=30)
    assert store.requeue_expired() == 0  # the lease is live by the database's clock
    assert store.finish(job, claim.token, video=b"v", seed=1, finish_reason="SUCCESS", ttl=60)
    status = store.status(job)
    assert not status.expired and status.expires_at == pytest.approx(status.now + 60, abs=5)
    assert store.remove_expired() == 0


def test_cancel_ends_a_queued_or_running_job_and_fences_its_worker(store: JobStore) -> None:
    running, queued, done = add(store, "a", 1), add(store, "a", 2), add(store, "a", 3)
    claim = store.claim_next()
    assert claim is not None and claim.job.id == running
    assert store.cancel(queued, "a", ttl=60) == "cancelled"
    assert store.cancel(running, "a", ttl=60) == "cancelled"
    assert store.cancel(running, "a", ttl=60) == "cancelled"  # again: the same answer
    assert store.cancel(running, "b", ttl=60) is None  # another key's job is not found
    assert not store.heartbeat(running, claim.token, progress=0.5, lease_seconds=30)  # the worker learns it
    last = store.claim_next()
    assert last is not None and last.job.id == done
    store.finish(done, last.token, video=b"v", seed=3, finish_reason="SUCCESS", ttl=60)
    assert store.cancel(done, "a", ttl=60) == "finished"
    status = store.status(queued)
    assert (status.status, status.error_status, status.error_name) == ("cancelled", 410, "cancelled")


def test_a_store_from_an_earlier_version_gains_the_new_columns_and_keeps_its_jobs(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE jobs (id VARCHAR(64) PRIMARY KEY, owner VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL,"
            " progress FLOAT NOT NULL, params TEXT NOT NULL, image BLOB, seed BIGINT NOT NULL, route VARCHAR(16) NOT NULL,"
            " result BLOB, finish_reason VARCHAR(32), error_status INTEGER, error_name VARCHAR(64), error_message TEXT,"
            " attempts INTEGER NOT NULL, created_at FLOAT NOT NULL, started_at FLOAT, finished_at FLOAT, expires_at FLOAT)"
        )
        old.execute("INSERT INTO jobs VALUES ('j1', 'a', 'queued', 0, '{}', x'00', 5, 'v2beta', NULL, NULL, NULL, NULL, NULL, 0, 1, NULL, NULL, NULL)")
    store = JobStore(f"sqlite:///{path}")
    try:
        claim = store.claim_next()
        assert claim is not None and claim.job.id == "j1" and claim.job.seed == 5 and claim.token == 1
        # The retired NOT NULL route column is gone, so a new job can be written.
        assert store.add_job(owner="a", image=b"x", seed=6, params={})[1]
        with sqlite3.connect(path) as upgraded:
            assert "route" not in {row[1] for row in upgraded.execute("PRAGMA table_info(jobs)")}
    finally:
        store.close()


def test_racing_submits_through_two_stores_on_one_file_get_exactly_the_caps(tmp_path: Path) -> None:
    # Two front ends' stores on one SQLite file: the count and the insert are one BEGIN IMMEDIATE
    # transaction, so 24 submits at once from one key are accepted exactly 3 times, and from four keys
    # exactly 6 (the server's cap binds before 4 x 3).
    import threading
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    stores = [JobStore(url), JobStore(url)]
    try:
        for owners, accepted in ((["a"], 3), (["b", "c", "d", "e"], 6 - 3)):
            gate = threading.Barrier(24)

            def one(index: int, owners: list[str] = owners, gate: threading.Barrier = gate) -> bool:
                gate.wait(30)
                try:
                    add(stores[index % 2], owners[index % len(owners)], index + 1, max_per_owner=3, max_active=6)
                except (TooManyJobsError, QueueFullError):
                    return False
                return True

            with ThreadPoolExecutor(24) as pool:
                assert sum(pool.map(one, range(24))) == accepted
        assert stores[0].counts()["queued"] == 6
    finally:
        for store in stores:
            store.close()
