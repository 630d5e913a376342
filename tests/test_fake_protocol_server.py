"""The scripted fake protocol server itself: other test modules rely on it recording and answering exactly."""

from __future__ import annotations

import threading

import httpx
import pytest

from support.clock import FakeClock
from support.fake_protocol import (
    JOB_ID,
    Answer,
    FakeProtocolServer,
    accepted,
    drop,
    error,
    held,
    submitted,
    truncated,
    video_json,
)


@pytest.mark.parametrize(
    ("submit_path", "poll_path"),
    [
        ("/v2beta/image-to-video", "/v2beta/image-to-video/result/"),
        ("/v2alpha/generation/image-to-video", "/v2alpha/generation/image-to-video/result/"),
    ],
)
def test_records_form_fields_and_answers_in_script_order(
    fake_protocol_server: FakeProtocolServer, submit_path: str, poll_path: str
) -> None:
    server = fake_protocol_server
    server.submit(submitted("job1"))
    server.poll(accepted(job_id="job1", progress=0.25), video_json(b"\x00\x00\x00\x18ftyp", seed=7))
    with httpx.Client(base_url=server.url) as client:
        answer = client.post(
            submit_path,
            data={"seed": "5", "cfg_scale": "1.8"},
            files={"image": ("image.png", b"PNGDATA", "image/png")},
            headers={"authorization": "Bearer k"},
        )
        assert answer.json() == {"id": "job1"}
        first = client.get(poll_path + "job1")
        second = client.get(poll_path + "job1")
    assert first.status_code == 202 and first.json()["progress"] == 0.25
    assert second.status_code == 200 and second.json()["seed"] == 7
    (submit,) = server.submits
    assert submit.form == {"seed": "5", "cfg_scale": "1.8"}
    assert submit.files["image"] == ("image.png", "image/png", b"PNGDATA")
    assert submit.headers["authorization"] == "Bearer k"
    assert [p.job_id for p in server.polls] == ["job1", "job1"]
    assert {r.generation for r in server.requests} == {submit_path.split("/")[1]}


def test_defaults_once_the_script_runs_dry(fake_protocol_server: FakeProtocolServer) -> None:
    with httpx.Client(base_url=fake_protocol_server.url) as client:
        assert client.post("/v2beta/image-to-video").json()["id"] == JOB_ID
        assert client.get("/v2beta/image-to-video/result/x").status_code == 500
        assert client.get("/elsewhere").status_code == 404


def test_drop_and_truncate_break_the_connection(fake_protocol_server: FakeProtocolServer) -> None:
    server = fake_protocol_server
    server.poll(drop(), truncated(error(500)), error(429, "rate_limited", retry_after=3))
    with httpx.Client(base_url=server.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/v2beta/image-to-video/result/x")
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/v2beta/image-to-video/result/x")
        limited = client.get("/v2beta/image-to-video/result/x")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["name"] == "rate_limited"
    assert server.wait_for("poll", 3, timeout=0.1)


@pytest.mark.parametrize("generation", ["/v2beta/image-to-video", "/v2alpha/generation/image-to-video"])
def test_delete_on_a_result_route_is_a_cancel_answered_by_script_then_by_the_contract(
    fake_protocol_server: FakeProtocolServer, generation: str
) -> None:
    server = fake_protocol_server
    server.cancel(error(409, "conflict"))
    with httpx.Client(base_url=server.url) as client:
        first = client.delete(f"{generation}/result/job1")
        second = client.delete(f"{generation}/result/job2")
    assert first.status_code == 409 and first.json()["name"] == "conflict"
    assert second.status_code == 200 and second.json() == {"id": "job2", "status": "cancelled"}
    assert [(c.kind, c.job_id) for c in server.cancels] == [("cancel", "job1"), ("cancel", "job2")]
    assert server.polls == []


def test_idempotency_keys_of_submits_are_recorded_in_order(fake_protocol_server: FakeProtocolServer) -> None:
    with httpx.Client(base_url=fake_protocol_server.url) as client:
        client.post("/v2beta/image-to-video", headers={"Idempotency-Key": "k1"})
        client.post("/v2beta/image-to-video")
    assert fake_protocol_server.idempotency_keys == ["k1", None]


def test_a_held_answer_waits_for_release_and_a_delay_is_taken_on_the_servers_clock(
    fake_protocol_server: FakeProtocolServer,
) -> None:
    server = fake_protocol_server
    clock = FakeClock()
    server.clock = clock
    server.poll(held(accepted(progress=0.5)), Answer(status=202, delay=30))
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=server.url) as client:
        waiting = threading.Thread(target=lambda: answers.append(client.get("/v2beta/image-to-video/result/x")))
        waiting.start()
        assert server.wait_for("poll", 1)
        assert answers == []  # still held
        server.release()
        waiting.join(timeout=5)
        began = clock.now()
        late = client.get("/v2beta/image-to-video/result/x")
    assert answers[0].json()["progress"] == 0.5
    assert late.status_code == 202 and clock.now() - began == 30  # 30 s on the server's clock, none for real
    assert server.polls[0].time == began
