"""Conformance of both route generations, written from PROTOCOL.md with a plain HTTP client."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from img2vid.errors import OutOfMemoryError
from img2vid.request import VideoRequest
from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from img2vid.video import Video
from support.fake_engine import FakeEngine, assert_same_frames, expected_frames
from support.images import png_bytes
from support.server_harness import ROUTES, V2ALPHA, V2BETA, auth, submit, wait_result


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server(tmp_path: Path, engine: FakeEngine) -> Iterator[tuple[TestClient, str]]:
    app = create_app(ServerSettings(data=tmp_path, rate_limit=0), engine=engine)
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "tester")
        yield client, key


def _frames_for(image: bytes, seed: int, cfg_scale: float, motion_bucket_id: int) -> np.ndarray:
    return expected_frames(VideoRequest(image=image, seed=seed, cfg_scale=cfg_scale, motion_bucket_id=motion_bucket_id))


@pytest.mark.parametrize("generation", ["v2beta", "v2alpha"])
@pytest.mark.parametrize("accept", [None, "video/*", "video/mp4", "*/*"])
def test_raw_result_for_every_accept_but_json(server, generation: str, accept: str | None) -> None:
    client, key = server
    image = png_bytes(1024, 576, seed=3)
    started = submit(client, key, route=ROUTES[generation], image=image, seed=42, cfg_scale=3.0, motion_bucket_id=99)
    assert started.status_code == 200
    job_id = started.json()["id"]
    assert len(job_id) == 64 and all(c in "0123456789abcdef" for c in job_id)
    answer = wait_result(client, key, job_id, route=ROUTES[generation], accept=accept)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.headers["finish-reason"] == "SUCCESS"
    assert answer.headers["seed"] == "42"
    video = Video.from_bytes(answer.content)
    assert_same_frames(video.frames, _frames_for(image, 42, 3.0, 99))


@pytest.mark.parametrize("generation,finish_key", [("v2beta", "finish_reason"), ("v2alpha", "finishReason")])
def test_json_result_spells_finish_reason_per_generation(server, generation: str, finish_key: str) -> None:
    client, key = server
    job_id = submit(client, key, route=ROUTES[generation], seed=7).json()["id"]
    answer = wait_result(client, key, job_id, route=ROUTES[generation], accept="application/json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"video", finish_key, "seed"}
    assert body[finish_key] == "SUCCESS" and body["seed"] == 7
    assert Video.from_bytes(base64.b64decode(body["video"])).num_frames == 2


@pytest.mark.parametrize(
    "route,cfg_scale,motion_bucket_id", [(V2BETA, 1.8, 127), (V2ALPHA, 2.5, 40)]
)
def test_each_generation_applies_its_documented_defaults(server, route: str, cfg_scale: float, motion_bucket_id: int) -> None:
    client, key = server
    image = png_bytes(768, 768, seed=1)
    job_id = submit(client, key, route=route, image=image, seed=11).json()["id"]
    video = Video.from_bytes(wait_result(client, key, job_id, route=route).content)
    assert_same_frames(video.frames, _frames_for(image, 11, cfg_scale, motion_bucket_id))


def test_seed_zero_picks_a_random_seed_and_reports_it(server) -> None:
    client, key = server
    image = png_bytes(576, 1024)
    seeds = set()
    for _ in range(2):
        job_id = submit(client, key, image=image, seed=0).json()["id"]
        answer = wait_result(client, key, job_id)
        seed = int(answer.headers["seed"])
        assert 1 <= seed <= 4294967294
        assert_same_frames(Video.from_bytes(answer.content).frames, _frames_for(image, seed, 1.8, 127))
        seeds.add(seed)
    assert len(seeds) == 2


def test_in_progress_answer_has_progress_and_retry_after(tmp_path: Path) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    app = create_app(ServerSettings(data=tmp_path), engine=engine)
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        first = submit(client, key).json()["id"]
        queued = submit(client, key).json()["id"]
        assert engine.started.wait(10)
        for job_id in (first, queued):
            for route in (V2BETA, V2ALPHA):
                answer = client.get(f"{route}/result/{job_id}", headers=auth(key))
                assert answer.status_code == 202
                body = answer.json()
                assert body["id"] == job_id and body["status"] == "in-progress"
                assert 0.0 <= body["progress"] <= 1.0
                assert int(answer.headers["retry-after"]) >= 1
        # The engine reports 0.25 just after it starts; the runner writes it, and a poll may be answered
        # from a status read a moment before (the cache's quarter second): wait, as a client does, for it.
        deadline = time.monotonic() + 10
        while True:
            running = client.get(f"{V2BETA}/result/{first}", headers=auth(key)).json()
            if running["progress"] == pytest.approx(0.25) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert running["progress"] == pytest.approx(0.25)
        gate.set()
        assert wait_result(client, key, first).status_code == 200
        assert wait_result(client, key, queued).status_code == 200


def test_a_failing_job_fails_alone_with_its_error_and_the_server_goes_on(tmp_path: Path) -> None:
    def fail(request: VideoRequest) -> BaseException | None:
        said = "the cuda device ran out of memory at 1024x576, 25 frames: try --memory low"
        return OutOfMemoryError(said) if request.motion_bucket_id == 13 else None

    app = create_app(ServerSettings(data=tmp_path), engine=FakeEngine(fail_with=fail))
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        bad = submit(client, key, motion_bucket_id=13).json()["id"]
        good = submit(client, key, motion_bucket_id=14).json()["id"]
        failed = wait_result(client, key, bad)
        assert failed.status_code == 500
        body = failed.json()
        assert set(body) == {"id", "name", "errors"} and body["name"] == "out_of_memory"
        assert body["errors"][0].startswith("the cuda device ran out of memory")
        assert wait_result(client, key, good).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_results_expire_and_then_answer_404(server) -> None:
    client, key = server
    job_id = submit(client, key).json()["id"]
    assert wait_result(client, key, job_id).status_code == 200
    store = client.app.state.img2vid.store
    ttl = client.app.state.img2vid.settings.result_ttl
    status = store.status(job_id)
    assert ttl == 24 * 3600
    # Kept 24 hours from when it finished (a moment ago).
    assert status.expires_at == pytest.approx(time.time() + ttl, abs=60)
    assert store.remove_expired(now=status.expires_at - 1) == 0
    assert store.remove_expired(now=status.expires_at + 1) == 1
    gone = client.get(f"{V2BETA}/result/{job_id}", headers=auth(key))
    assert gone.status_code == 404 and gone.json()["name"] == "not_found"


def test_an_expired_result_is_404_before_the_sweep(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path, result_ttl=0.001), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        job_id = submit(client, key).json()["id"]
        answer = wait_result(client, key, job_id)
        assert answer.status_code == 404


def test_unknown_and_malformed_ids_answer_404_with_the_error_body(server) -> None:
    client, key = server
    for job_id in ("0" * 64, "not-an-id", "A" * 64):
        for route in (V2BETA, V2ALPHA):
            answer = client.get(f"{route}/result/{job_id}", headers=auth(key))
            assert answer.status_code == 404
            assert set(answer.json()) == {"id", "name", "errors"}
