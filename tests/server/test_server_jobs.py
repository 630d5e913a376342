"""The job routes of an embedded server as a client sees them: cancel (DELETE), queue positions, the
per-key quota and the server's queue cap, Idempotency-Key, and the time limit."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.fake_engine import FakeEngine
from support.images import png_bytes
from support.server_harness import V2ALPHA, V2BETA, auth, submit, wait_result


def test_polling_a_queued_job_counts_the_queue_once_per_cache_period_not_per_poll(tmp_path: Path) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    app = create_app(ServerSettings(data=tmp_path), engine=engine)
    store = app.state.img2vid.store
    counted = []
    count_queue = store.queue_position
    store.queue_position = lambda status: counted.append(status.id) or count_queue(status)  # type: ignore[method-assign]
    app.state.img2vid.statuses.ttl = 60.0  # however slow the machine, all 20 polls fall in one cache period
    with TestClient(app) as client:
        key, _ = create_key(store, "t")
        submit(client, key, seed=1)
        assert engine.started.wait(10)
        queued = submit(client, key, seed=2).json()["id"]
        behind = submit(client, key, seed=3).json()["id"]
        positions = [client.get(f"{V2BETA}/result/{behind}", headers=auth(key)).json()["queue_position"] for _ in range(20)]
        assert positions == [2] * 20
        assert counted == [behind]  # a poll storm on a queued job is one query over the queue, not one each
        client.delete(f"{V2BETA}/result/{queued}", headers=auth(key))
        # A change made here moves the jobs behind it at once, cache or not.
        assert client.get(f"{V2BETA}/result/{behind}", headers=auth(key)).json()["queue_position"] == 1
        gate.set()


def test_cancel_stops_a_running_job_at_once_and_a_queued_one_before_it_starts(tmp_path: Path) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    app = create_app(ServerSettings(data=tmp_path), engine=engine)
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        running = submit(client, key, seed=1).json()["id"]
        queued = submit(client, key, seed=2).json()["id"]
        after = submit(client, key, seed=3).json()["id"]
        assert engine.started.wait(10)
        poll = client.get(f"{V2BETA}/result/{queued}", headers=auth(key)).json()
        assert poll["queue_position"] == 1
        assert client.get(f"{V2BETA}/result/{running}", headers=auth(key)).json()["queue_position"] == 0

        for job_id, route in ((queued, V2BETA), (running, V2ALPHA)):
            answer = client.delete(f"{route}/result/{job_id}", headers=auth(key))
            assert answer.status_code == 200 and answer.json() == {"id": job_id, "status": "cancelled"}
        started = time.monotonic()
        for job_id in (queued, running):
            gone = wait_result(client, key, job_id, timeout=5)
            assert gone.status_code == 410 and gone.json()["name"] == "cancelled"
        assert time.monotonic() - started < 1.0
        gate.set()
        assert wait_result(client, key, after).status_code == 200  # the worker took the next job
        assert engine.calls == 2  # the queued job never started
        finished = client.delete(f"{V2BETA}/result/{after}", headers=auth(key))
        assert finished.status_code == 409 and finished.json()["name"] == "conflict"
        other, _ = create_key(app.state.img2vid.store, "other")
        assert client.delete(f"{V2BETA}/result/{after}", headers=auth(other)).status_code == 404


def test_a_key_over_its_quota_gets_429_too_many_jobs_and_a_full_queue_503(tmp_path: Path) -> None:
    gate = threading.Event()
    app = create_app(ServerSettings(data=tmp_path, max_queued_per_key=2, max_queued=3), engine=FakeEngine(gate=gate))
    with TestClient(app) as client:
        store = app.state.img2vid.store
        first, _ = create_key(store, "first")
        second, _ = create_key(store, "second")
        assert [submit(client, first, seed=s).status_code for s in (1, 2)] == [200, 200]
        refused = submit(client, first, seed=3)
        assert refused.status_code == 429 and refused.json()["name"] == "too_many_jobs"
        assert "already has 2 jobs" in refused.json()["errors"][0] and int(refused.headers["retry-after"]) >= 1
        assert submit(client, second, seed=4).status_code == 200
        full = submit(client, second, seed=5)
        assert full.status_code == 503 and full.json()["name"] == "queue_full" and "retry-after" in full.headers
        gate.set()


def test_a_repeated_idempotency_key_returns_the_first_job(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        headers = {**auth(key), "idempotency-key": "retry-1"}
        image = {"image": ("i.png", _png(), "image/png")}
        ids = {client.post(V2BETA, headers=headers, files=image, data={"seed": "5"}).json()["id"] for _ in range(3)}
        assert len(ids) == 1
        bad = client.post(V2BETA, headers={**auth(key), "idempotency-key": "x" * 300}, files=image)
        assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["errors"][0]
        assert wait_result(client, key, ids.pop()).status_code == 200


def test_an_idempotency_key_sent_again_with_another_request_is_a_422_naming_it(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path, workers=0), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        headers = {**auth(key), "idempotency-key": "order-7"}
        image = {"image": ("i.png", _png(), "image/png")}
        first = client.post(V2BETA, headers=headers, files=image, data={"seed": "5", "cfg_scale": "1.8"})
        assert first.status_code == 200, first.text
        # The same request, however its numbers are written, is a retry: the first job's id.
        same = client.post(V2BETA, headers=headers, files=image, data={"seed": "5", "cfg_scale": "1.80"})
        assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
        others = {
            "another seed": {"route": V2BETA, "files": image, "data": {"seed": "6", "cfg_scale": "1.8"}},
            "another cfg": {"route": V2BETA, "files": image, "data": {"seed": "5", "cfg_scale": "2.5"}},
            "a default spelled out": {"route": V2BETA, "files": image, "data": {"seed": "5", "cfg_scale": "1.8", "motion_bucket_id": "127"}},
            "no image": {"route": V2BETA, "files": None, "data": {"seed": "5", "cfg_scale": "1.8"}},
            "another image": {"route": V2BETA, "files": {"image": ("i.png", png_bytes(1024, 576, seed=3), "image/png")}, "data": {"seed": "5", "cfg_scale": "1.8"}},
            "the other route generation": {"route": V2ALPHA, "files": image, "data": {"seed": "5", "cfg_scale": "1.8"}},
        }
        for what, request in others.items():
            files = request["files"] or {"other": ("x.txt", b"x", "text/plain")}
            answer = client.post(request["route"], headers=headers, files=files, data=request["data"])
            assert answer.status_code == 422, (what, answer.text)
            body = answer.json()
            assert body["name"] == "idempotency_key_reused" and "'order-7'" in body["errors"][0], (what, body)
        assert sum(app.state.img2vid.store.counts().values()) == 1
        # Another API key's use of the same header is its own.
        theirs, _ = create_key(app.state.img2vid.store, "u")
        other = client.post(V2BETA, headers={**auth(theirs), "idempotency-key": "order-7"}, files=image, data={"seed": "6"})
        assert other.status_code == 200 and other.json()["id"] != first.json()["id"]


def test_a_job_over_the_time_limit_fails_saying_so_and_the_next_job_runs(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path, job_timeout=0.2), engine=FakeEngine(delay=5))
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        slow = submit(client, key, seed=1).json()["id"]
        answer = wait_result(client, key, slow, timeout=10)
        assert answer.status_code == 500 and answer.json()["name"] == "timeout"
        assert "ran out of time" in answer.json()["errors"][0]


def _png() -> bytes:
    from support.images import png_bytes

    return png_bytes(1024, 576)


def test_a_damaged_image_is_refused_at_submit_not_failed_later(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        whole = _png()
        damaged = whole[: len(whole) // 2]  # the header (and so the size) is intact; the pixels are cut off
        answer = submit(client, key, image=damaged)
        assert answer.status_code == 400 and answer.json()["name"] == "invalid_parameters"
        assert "image" in answer.json()["errors"][0]
        assert sum(app.state.img2vid.store.counts().values()) == 0  # no job was made
