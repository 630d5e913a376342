"""The server's lifecycle in process: a clean stop puts the running job back in the queue and the next
start finishes it; polls answered from memory still see this server's own changes at once; the
playground page is served."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from img2vid.jobs.store import JobStore
from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.fake_engine import FakeEngine
from support.server_harness import V2BETA, auth, submit, wait_result


def test_a_clean_stop_requeues_the_running_job_and_the_next_start_finishes_it(tmp_path: Path) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    app = create_app(ServerSettings(data=tmp_path), engine=engine)
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        running = submit(client, key, seed=21).json()["id"]
        waiting = submit(client, key, seed=22).json()["id"]
        assert engine.started.wait(10)
    store = JobStore(ServerSettings(data=tmp_path).store_url())
    assert store.counts() == {"queued": 2, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    store.close()

    again = create_app(ServerSettings(data=tmp_path), engine=FakeEngine())
    with TestClient(again) as client:
        for job_id, seed in ((running, "21"), (waiting, "22")):
            answer = wait_result(client, key, job_id)
            assert answer.status_code == 200 and answer.headers["seed"] == seed


def test_polls_see_this_servers_own_changes_at_once(tmp_path: Path) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    app = create_app(ServerSettings(data=tmp_path, status_cache_seconds=3600), engine=engine)
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        job_id = submit(client, key).json()["id"]
        assert engine.started.wait(10)
        assert client.get(f"{V2BETA}/result/{job_id}", headers=auth(key)).status_code == 202  # now cached
        gate.set()
        # Even with an hour-long cache, the worker's change is visible without waiting for it to expire.
        assert wait_result(client, key, job_id, timeout=10).status_code == 200


def test_the_playground_page_is_served(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path), engine=FakeEngine())
    with TestClient(app) as client:
        page = client.get("/")
        script = client.get("/static/playground.js")
        shared = client.get("/static/ui.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'type="module" src="static/playground.js"' in page.text
    assert script.status_code == 200 and "./ui.js" in script.text  # the page's modules, served beside it
    assert shared.status_code == 200 and '"v2beta/image-to-video"' in shared.text


def test_expired_results_are_swept_from_the_store(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path, result_ttl=0.01, sweep_interval=0.05), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        submit(client, key)
        store = app.state.img2vid.store
        deadline = time.monotonic() + 10
        while sum(store.counts().values()):  # the row exists from the submit until the sweep
            assert time.monotonic() < deadline, store.counts()
            time.sleep(0.02)
        assert store.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0}


def test_a_job_running_at_every_crash_is_failed_after_max_attempts_not_rerun_forever(tmp_path: Path) -> None:
    from img2vid.jobs.store import MAX_ATTEMPTS

    store = JobStore(ServerSettings(data=tmp_path).store_url())
    try:
        poison, _ = store.add_job(owner="o", image=b"x", seed=1, params={})
        for crash in range(1, MAX_ATTEMPTS + 1):
            claim = store.claim_next()
            assert claim.job.id == poison  # a server takes the job, starts it ... and dies running it
            assert store.start_run(poison, claim.token, lease_seconds=30)
            requeued = store.requeue_running()
            assert requeued == (1 if crash < MAX_ATTEMPTS else 0)
        status = store.status(poison)
        assert status.status == "failed" and "not run again" in status.error_message
        assert store.claim_next() is None
    finally:
        store.close()


def test_clean_stops_do_not_count_towards_the_crash_limit(tmp_path: Path) -> None:
    from img2vid.jobs.store import MAX_ATTEMPTS

    store = JobStore(ServerSettings(data=tmp_path).store_url())
    try:
        job, _ = store.add_job(owner="o", image=b"x", seed=1, params={})
        for _ in range(MAX_ATTEMPTS + 1):
            claim = store.claim_next()
            assert claim.job.id == job
            assert store.start_run(job, claim.token, lease_seconds=30)
            store.release(job, claim.token)  # a clean stop mid-job
        claim = store.claim_next()
        assert claim.job.id == job and claim.attempt == 1
        assert store.start_run(job, claim.token, lease_seconds=30)
        assert store.requeue_running() == 1  # one crash: still re-queued
        assert store.status(job).status == "queued"
    finally:
        store.close()
