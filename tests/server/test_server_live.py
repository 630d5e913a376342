"""The server as users run it: ``python -m img2vid serve`` in a subprocess on a free loopback port.

SIGKILL while jobs are queued and running, then a restart on the same data folder, finishes every
accepted job with the video its stored inputs and seed determine; concurrent clients each get their own
results; an oversized upload gets a readable 413 over a real socket.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from img2vid.request import VideoRequest
from img2vid.video import Video
from support.fake_engine import assert_same_frames, expected_frames
from support.images import png_bytes
from support.server_harness import V2ALPHA, V2BETA, auth, create_key_direct, live_server, submit, wait_result

pytestmark = pytest.mark.live

FAKE = {"IMG2VID_ENGINE_FACTORY": "support.fake_engine:from_env"}


def _expected(image: bytes, seed: int, cfg_scale: float = 1.8, motion_bucket_id: int = 127):
    return expected_frames(VideoRequest(image=image, seed=seed, cfg_scale=cfg_scale, motion_bucket_id=motion_bucket_id))


def test_sigkill_and_restart_finishes_every_accepted_job_once(tmp_path: Path) -> None:
    key = create_key_direct(tmp_path)
    runs = tmp_path / "runs.log"
    images = [png_bytes(1024, 576, seed=index) for index in range(4)]
    seeds = [101, 0, 303, 0]  # two chosen by the server at submit
    slow = {**FAKE, "IMG2VID_FAKE_DELAY": "60", "IMG2VID_FAKE_LOG": str(runs)}
    with live_server(tmp_path, env=slow) as server, server.client() as client:
        ids = [
            submit(client, key, route=V2BETA if i % 2 == 0 else V2ALPHA, image=image, seed=seed).json()["id"]
            for i, (image, seed) in enumerate(zip(images, seeds, strict=True))
        ]
        # Wait until a job is running (progress reported), then kill the server without warning.
        deadline = time.monotonic() + 30
        while client.get(f"{V2BETA}/result/{ids[0]}", headers=auth(key)).json()["progress"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
    assert runs.read_text().splitlines() == ["start 101"]

    fast = {**FAKE, "IMG2VID_FAKE_DELAY": "0", "IMG2VID_FAKE_LOG": str(runs)}
    with live_server(tmp_path, env=fast) as server, server.client() as client:
        answers = [wait_result(client, key, job_id, route=V2BETA) for job_id in ids]
        again = [wait_result(client, key, job_id, route=V2ALPHA) for job_id in ids]
    for index, (answer, repeat) in enumerate(zip(answers, again, strict=True)):
        assert answer.status_code == 200, answer.text
        seed = int(answer.headers["seed"])
        if seeds[index]:
            assert seed == seeds[index]
        defaults = (1.8, 127) if index % 2 == 0 else (2.5, 40)  # v2beta's and v2alpha's documented defaults
        assert_same_frames(Video.from_bytes(answer.content).frames, _expected(images[index], seed, *defaults))
        assert repeat.content == answer.content
    started = runs.read_text().splitlines()
    # The killed job ran again with the same seed; every other job ran exactly once.
    assert len(started) == 5 and started[0] == started[1] == "start 101"
    assert sorted(started[1:]) == sorted(f"start {answer.headers['seed']}" for answer in answers)


def test_concurrent_clients_each_get_their_own_results(tmp_path: Path) -> None:
    keys = [create_key_direct(tmp_path, name=f"user{i}") for i in range(2)]
    with live_server(tmp_path, args=("--workers", "2"), env=FAKE) as server:
        failures: list[str] = []

        def user(index: int) -> None:
            key = keys[index % 2]
            image = png_bytes(768, 768, seed=index)
            try:
                with server.client() as client:
                    job_id = submit(client, key, image=image, seed=1000 + index).json()["id"]
                    answer = wait_result(client, key, job_id, accept="application/json" if index % 3 == 0 else None)
                    assert answer.status_code == 200
                    if index % 3 == 0:
                        import base64

                        body = answer.json()
                        video, seed = Video.from_bytes(base64.b64decode(body["video"])), body["seed"]
                    else:
                        video, seed = Video.from_bytes(answer.content), int(answer.headers["seed"])
                    assert seed == 1000 + index
                    assert_same_frames(video.frames, _expected(image, seed))
                    other = keys[(index + 1) % 2]
                    assert client.get(f"{V2BETA}/result/{job_id}", headers=auth(other)).status_code == 404
            except Exception as error:  # noqa: BLE001 - collected and reported below
                failures.append(f"user {index}: {error!r}")

        threads = [threading.Thread(target=user, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == []
        metrics = httpx.get(server.url + "/metrics").text
        assert 'img2vid_jobs{state="done"} 8.0' in metrics
        assert 'img2vid_job_duration_seconds_count{outcome="done"} 8.0' in metrics


def test_an_oversized_upload_gets_a_readable_413_over_a_socket(tmp_path: Path) -> None:
    key = create_key_direct(tmp_path)
    with live_server(tmp_path, env=FAKE) as server, server.client() as client:
        image = png_bytes(1024, 576) + b"\x00" * (11 * 1024 * 1024)
        answer = submit(client, key, image=image)
        assert answer.status_code == 413
        assert answer.json()["name"] == "payload_too_large"
        assert client.get("/healthz").status_code == 200


def test_openapi_and_operations_routes(tmp_path: Path) -> None:
    with live_server(tmp_path, args=("--no-auth",), env=FAKE) as server, server.client() as client:
        schema = client.get("/openapi.json").json()
        for path in (V2BETA, V2ALPHA):
            assert "post" in schema["paths"][path]
            body = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
            assert body["required"] == ["image"]
            assert body["properties"]["motion_bucket_id"]["maximum"] == 255
            assert "get" in schema["paths"][f"{path}/result/{{id}}"]
        assert schema["paths"][V2ALPHA]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["cfg_scale"]["default"] == 2.5
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        # Auth off: no key needed.
        job_id = client.post(V2BETA, files={"image": ("i.png", png_bytes(1024, 576), "image/png")}).json()["id"]
        assert wait_result(client, "", job_id).status_code == 200
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        for name in ("img2vid_queue_depth", 'img2vid_jobs{state="queued"}', "img2vid_job_duration_seconds_bucket"):
            assert name in metrics.text


def test_keys_never_reach_the_server_log(tmp_path: Path) -> None:
    key = create_key_direct(tmp_path)
    wrong = "sk-img2vid-wrong-0123456789abcdef"
    with live_server(tmp_path, args=("--log-level", "debug", "--access-log"), env=FAKE) as server, server.client() as client:
        job_id = submit(client, key).json()["id"]
        assert wait_result(client, key, job_id).status_code == 200
        assert client.get(f"{V2BETA}/result/{job_id}", headers=auth(wrong)).status_code == 401
        assert client.post(V2BETA, headers={"authorization": wrong}).status_code == 401
        port = server.url.rsplit(":", 1)[1]
    log = (tmp_path / f"server-{port}.log").read_text()
    assert f"/result/{job_id}" in log  # the access log was on
    assert key not in log and wrong not in log
