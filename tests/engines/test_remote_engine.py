"""RemoteEngine against a real HTTP server on 127.0.0.1 that plays the protocol from a script.

Each test scripts the server's answers and checks what a caller relies on: the video that comes back,
how many paid submits were sent, how retries and polling waited, which error is raised and what it says.
Time is virtual (tests/support/clock.py): the engine and the server share a fake clock, so a 30 s pause
costs nothing and every interval asserted is the one the engine chose, not what a busy machine allowed.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2vid import VideoRequest, errors
from img2vid.engines.remote import RemoteEngine, RetryPolicy, default_poll_interval
from support.clock import FakeClock, use_fake_clock
from support.fake_protocol import (
    JOB_ID,
    Answer,
    FakeProtocolServer,
    StabilityRedirect,
    accepted,
    drop,
    error,
    held,
    submitted,
    tiny_mp4,
    truncated,
    video_json,
    video_raw,
)

KEY = "sk-test-9f8e7d6c5b4a39281706"
FAST_RETRIES = RetryPolicy(initial_delay=0.01, max_delay=0.05)

EngineFactory = Callable[..., RemoteEngine]


def smooth_image(width: int = 64, height: int = 36) -> np.ndarray:
    """A small smooth image: it compresses well once fitted to 1024x576, keeping uploads quick."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1).astype(np.uint8)


@pytest.fixture(autouse=True)
def clock(fake_protocol_server: FakeProtocolServer, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """One virtual clock for the server and every engine of the test."""
    return use_fake_clock(monkeypatch, fake_protocol_server)


@pytest.fixture
def request_() -> VideoRequest:
    return VideoRequest(image=smooth_image(), seed=42, cfg_scale=2.5, motion_bucket_id=40)


@pytest.fixture
def make_engine(fake_protocol_server: FakeProtocolServer) -> Iterator[EngineFactory]:
    engines: list[RemoteEngine] = []

    def make(**options: object) -> RemoteEngine:
        settings: dict[str, object] = {
            "base_url": fake_protocol_server.url,
            "api_key": KEY,
            "poll_interval": 0.01,
            "retry_policy": FAST_RETRIES,
        }
        settings.update(options)
        engine = RemoteEngine(**settings)  # type: ignore[arg-type]
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


# ---------------------------------------------------------------------- success


@pytest.mark.parametrize("api_version", ["v2beta", "v2alpha"])
@pytest.mark.parametrize("form", ["raw", "json"])
def test_success_in_both_result_forms_and_both_route_generations(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest, api_version: str, form: str
) -> None:
    server = fake_protocol_server
    mp4 = tiny_mp4(num_frames=3, width=64, height=48, fps=6.0)
    result = video_raw(mp4, seed=1234) if form == "raw" else video_json(mp4, seed=1234, camel_case=api_version == "v2alpha")
    server.poll(accepted(), result)

    video = make_engine(api_version=api_version).generate(request_)

    assert (video.num_frames, video.width, video.height, video.fps) == (3, 64, 48, 6.0)
    assert video.seed == 1234 and video.finish_reason == "SUCCESS"
    assert video.frames[0].mean() < video.frames[-1].mean()  # the frames are the server's, in order
    (submit,) = server.submits
    assert {r.generation for r in server.requests} == {api_version}
    assert submit.form == {"seed": "42", "cfg_scale": "2.5", "motion_bucket_id": "40"}
    name, content_type, png = submit.files["image"]
    assert content_type == "image/png" and Image.open(io.BytesIO(png)).size == (1024, 576)
    assert submit.headers["authorization"] == f"Bearer {KEY}"
    assert [p.job_id for p in server.polls] == [JOB_ID, JOB_ID]
    assert server.polls[0].headers["accept"] == "video/*"


def test_seed_falls_back_to_the_requested_one_when_the_server_does_not_say(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(video_raw(tiny_mp4(), finish_reason=None, content_type="video/mp4; codecs=avc1"))
    assert make_engine().generate(request_).seed == 42


def test_a_closed_engine_connects_anew_on_its_next_job(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(video_raw(tiny_mp4(), seed=1), video_raw(tiny_mp4(), seed=2))
    with make_engine() as engine:
        assert engine.generate(request_).seed == 1
    # The with block closed its connections; the Engine lifecycle lets its owner use it again.
    assert engine.generate(request_).seed == 2
    assert len(fake_protocol_server.submits) == 2


def test_engine_options_reach_an_img2vid_server_but_not_stability(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory
) -> None:
    server = fake_protocol_server
    request = VideoRequest(image=smooth_image(), frames=2, steps=3, fps=8, noise_aug_strength=0.05)
    server.poll(video_raw(tiny_mp4()), video_raw(tiny_mp4()))
    make_engine().generate(request)
    make_engine(base_url="https://api.stability.ai", transport=StabilityRedirect(server)).generate(request)
    to_server, to_stability = server.submits
    assert to_server.form == {
        "seed": "0", "frames": "2", "steps": "3", "fps": "8", "noise_aug_strength": "0.05",
    }  # fmt: skip  (the server's model's defaults apply to cfg_scale and motion_bucket_id)
    assert to_stability.form == {"seed": "0", "cfg_scale": "1.8", "motion_bucket_id": "127"}


def test_a_server_model_and_the_prompts_reach_an_img2vid_server(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory
) -> None:
    server = fake_protocol_server
    request = VideoRequest(image=smooth_image(), prompt="a cat runs", negative_prompt="blurry", cfg_scale=5, frames=9)
    server.poll(video_raw(tiny_mp4()))
    make_engine(model="wan2.2-ti2v-5b").generate(request)
    assert server.submits[0].form == {
        "seed": "0", "cfg_scale": "5.0", "frames": "9", "model": "wan2.2-ti2v-5b",
        "prompt": "a cat runs", "negative_prompt": "blurry",
    }  # fmt: skip


def test_stability_gets_no_model_and_no_prompt(make_engine: EngineFactory) -> None:
    with pytest.raises(errors.InvalidInputError) as caught:
        make_engine(base_url="https://api.stability.ai", model="wan2.2-ti2v-5b")
    assert caught.value.field == "model"
    engine = make_engine(base_url="https://api.stability.ai")
    with pytest.raises(errors.InvalidInputError) as caught:
        engine.form_fields(VideoRequest(image=smooth_image(), prompt="a cat"))
    assert caught.value.field == "prompt"


def test_many_202s_then_200_report_elapsed_time_and_the_servers_progress(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.poll(*[accepted() for _ in range(5)], accepted(progress=0.25), accepted(progress=0.75), video_raw(tiny_mp4()))
    seen: list[tuple[float | None, str]] = []

    video = make_engine().generate(request_, progress=lambda f, text: seen.append((f, text)))

    assert video.num_frames == 3 and len(server.polls) == 8 and len(server.submits) == 1
    fractions = [f for f, _ in seen if f is not None]
    assert fractions == [0.25, 0.75, 1.0]
    assert any("running on the server" in text and " s)" in text for _, text in seen)
    assert any("25%" in text for _, text in seen)


def test_retry_after_on_202_sets_the_pause_between_polls(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.poll(accepted(retry_after="0.6"), accepted(), video_raw(tiny_mp4()))
    make_engine(poll_interval=0.01).generate(request_)
    first, second, third = (p.time for p in server.polls)
    assert second - first >= 0.59  # the server's Retry-After, not the 0.01 s interval
    assert third - second < 0.4  # back to the engine's interval once the server stops asking


def test_stability_is_first_polled_one_interval_after_the_submit_a_server_at_once(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.poll(video_raw(tiny_mp4()), video_raw(tiny_mp4()))
    seen: list[str] = []
    stability = make_engine(base_url="https://api.stability.ai", transport=StabilityRedirect(server), poll_interval=1.2)
    stability.generate(request_, progress=lambda f, text: seen.append(text))
    make_engine(poll_interval=1.2).generate(request_)
    assert server.polls[0].time - server.submits[0].time >= 1.19
    assert server.polls[1].time - server.submits[1].time < 0.5
    assert "running on the server (1 s)" in seen  # the wait shows the time going by


def test_default_poll_interval_is_ten_seconds_only_for_stability() -> None:
    assert default_poll_interval("https://api.stability.ai") == 10.0
    assert default_poll_interval("https://me:pw@api.stability.ai:443/") == 10.0  # credentials in the URL
    assert default_poll_interval("http://127.0.0.1:8000") == 1.0


# ---------------------------------------------------------------------- retries


@pytest.mark.parametrize("failure", [error(429, "rate_limited", retry_after=0), error(500), error(503, "busy")])
def test_a_refused_submit_is_sent_again_and_succeeds(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest, failure: Answer
) -> None:
    server = fake_protocol_server
    server.submit(failure, submitted())
    server.poll(video_raw(tiny_mp4()))
    assert make_engine().generate(request_).num_frames == 3
    assert len(server.submits) == 2


def test_429_retry_after_is_honoured_before_the_retry(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.submit(error(429, "rate_limited", retry_after="0.3"), submitted())
    server.poll(video_raw(tiny_mp4()))
    make_engine().generate(request_)
    first, second = server.submits
    assert second.time - first.time >= 0.29


def test_retries_are_bounded(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.submit(*[error(500, "boom", "disk full")] * 5)
    with pytest.raises(errors.ServiceError) as caught:
        make_engine(max_retries=2).generate(request_)
    assert len(server.submits) == 3
    assert caught.value.status == 500 and "500" in caught.value.message and caught.value.details == ["disk full"]


def test_a_retry_policy_keeps_its_own_bound_unless_max_retries_is_given(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.submit(*[error(500)] * 8)
    with pytest.raises(errors.ServiceError):
        make_engine(retry_policy=RetryPolicy(max_retries=0)).generate(request_)
    assert len(server.submits) == 1
    with pytest.raises(errors.ServiceError):
        make_engine(retry_policy=RetryPolicy(max_retries=5, initial_delay=0.01, max_delay=0.01), max_retries=1).generate(request_)
    assert len(server.submits) == 3


def test_a_connection_dropped_mid_poll_is_retried(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.poll(accepted(), drop(), truncated(video_raw(tiny_mp4())), video_raw(tiny_mp4()))
    assert make_engine().generate(request_).num_frames == 3
    assert len(server.polls) == 4 and len(server.submits) == 1


def test_poll_errors_429_and_500_are_retried(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.poll(error(429, retry_after=0), error(500), video_raw(tiny_mp4()))
    assert make_engine().generate(request_).num_frames == 3


@pytest.mark.parametrize(
    "answer",
    [
        Answer(status=200, headers={"content-type": "application/json"}, body=b"<html>oops"),
        Answer(status=200, headers={"content-type": "application/json"}, body=b'{"id": ""}'),
        truncated(submitted()),
        drop(),
    ],
    ids=["not-json", "no-id", "truncated", "dropped"],
)
def test_an_unreadable_submit_answer_is_never_sent_twice(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest, answer: Answer
) -> None:
    server = fake_protocol_server
    server.submit(answer)
    with pytest.raises((errors.ServiceError, errors.ConnectionFailedError)) as caught:
        make_engine(max_retries=5).generate(request_)
    assert len(server.submits) == 1 and server.polls == []
    assert "not submitting again" in caught.value.message or "not sending it again" in caught.value.message


def test_a_server_that_is_not_there_is_a_connection_error(request_: VideoRequest) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = RemoteEngine(f"http://127.0.0.1:{port}", KEY, retry_policy=FAST_RETRIES)
    with pytest.raises(errors.ConnectionFailedError) as caught:
        engine.generate(request_)
    assert f"127.0.0.1:{port}" in caught.value.message


# ---------------------------------------------------------------------- errors

SUBMIT_ERRORS = [
    (401, "unauthorized", errors.AuthenticationError, "refused the API key"),
    (402, "payment_required", errors.InsufficientCreditsError, "no credit left"),
    (403, "content_moderation", errors.ContentModerationError, "content moderation"),
    (403, "forbidden", errors.PermissionDeniedError, "does not allow this API key"),
    (404, "not_found", errors.NotFoundError, "no image-to-video route"),
    (413, "payload_too_large", errors.PayloadTooLargeError, "larger than the server accepts"),
    (422, "invalid_image", errors.UnprocessableError, "refused the request (invalid_image)"),
    (400, "invalid_parameters", errors.InvalidInputError, "refused the request as invalid"),
]


@pytest.mark.parametrize(("status", "name", "cls", "says"), SUBMIT_ERRORS)
def test_each_submit_error_has_its_own_type_and_message(
    fake_protocol_server: FakeProtocolServer,
    make_engine: EngineFactory,
    request_: VideoRequest,
    status: int,
    name: str,
    cls: type[errors.Img2VidError],
    says: str,
) -> None:
    server = fake_protocol_server
    server.submit(error(status, name, f"detail for {status}"))
    with pytest.raises(errors.Img2VidError) as caught:
        make_engine().generate(request_)
    assert type(caught.value) is cls
    assert says in caught.value.message
    assert caught.value.details == [f"detail for {status}"]
    assert len(server.submits) == 1  # client errors are never retried


@pytest.mark.parametrize("body", [{"detail": "Method Not Allowed"}, {"message": "Method Not Allowed"}])
def test_other_servers_error_bodies_still_give_their_text(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest, body: dict
) -> None:
    fake_protocol_server.submit(Answer(status=405, headers={"content-type": "application/json"},
                                       body=json.dumps(body).encode()))  # fmt: skip
    with pytest.raises(errors.ServiceError) as caught:
        make_engine().generate(request_)
    assert "HTTP 405" in caught.value.message and caught.value.details == ["Method Not Allowed"]


def test_404_on_submit_from_stability_explains_the_retired_service(
    fake_protocol_server: FakeProtocolServer, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.submit(error(404, "not_found", "Not Found"))
    engine = RemoteEngine("https://api.stability.ai", KEY, transport=StabilityRedirect(server))
    with pytest.raises(errors.NotFoundError) as caught:
        engine.generate(request_)
    message = caught.value.message
    assert "no longer serves image-to-video" in message
    assert "IMG2VID_BASE_URL" in message and "local engine" in message
    assert server.submits[0].path == "/v2beta/image-to-video"


def test_404_on_poll_says_the_job_is_gone(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(accepted(), error(404, "not_found"))
    with pytest.raises(errors.NotFoundError) as caught:
        make_engine().generate(request_)
    assert JOB_ID in caught.value.message and "expired" in caught.value.message


def test_a_poll_that_failed_on_the_server_is_a_service_error(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(*[error(500, "generation_failed", "out of memory")] * 3)
    with pytest.raises(errors.ServiceError) as caught:
        make_engine().generate(request_)
    assert "generation_failed" in caught.value.message and caught.value.details == ["out of memory"]


#: Every error class that a status and a protocol name map to (img2vid.errors.error_for_status).
NAMED_ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, errors.Img2VidError)
    and errors.error_for_status(cls.http_status, cls.error_name) is cls
]


@pytest.mark.parametrize("cls", NAMED_ERRORS, ids=lambda cls: cls.__name__)
def test_a_failed_poll_is_the_class_its_status_and_name_map_to(
    fake_protocol_server: FakeProtocolServer,
    make_engine: EngineFactory,
    request_: VideoRequest,
    cls: type[errors.Img2VidError],
) -> None:
    fake_protocol_server.poll(*[error(cls.http_status, cls.error_name, "what the server said")] * 3)
    with pytest.raises(errors.Img2VidError) as caught:
        make_engine().generate(request_)
    assert type(caught.value) is cls and caught.value.details == ["what the server said"]


def test_a_job_filtered_on_the_server_is_content_filtered(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(accepted(), error(403, "content_filtered", "the result was filtered"))
    with pytest.raises(errors.ContentFilteredError) as caught:
        make_engine().generate(request_)
    assert f"filtered the result of job {JOB_ID} (content_filtered)" in caught.value.message
    assert "no video is handed over" in caught.value.message
    assert caught.value.details == ["the result was filtered"]


def test_a_job_whose_model_failed_on_the_server_is_a_model_error(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(*[error(500, "model_error", "no checkpoint at /models/svd")] * 3)
    with pytest.raises(errors.ModelError) as caught:
        make_engine().generate(request_)
    message = caught.value.message
    assert message == f"the server failed on job {JOB_ID}: HTTP 500 Internal Server Error (model_error)"
    assert caught.value.details == ["no checkpoint at /models/svd"]


def test_a_name_the_status_does_not_carry_falls_back_to_the_statuss_class(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(error(400, "model_error", "not a model failure"))  # model_error is a 500
    with pytest.raises(errors.Img2VidError) as caught:
        make_engine().generate(request_)
    assert type(caught.value) is errors.InvalidInputError


@pytest.mark.parametrize("form", ["raw", "json"])
def test_content_filtered_is_raised_never_returned(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest, form: str
) -> None:
    mp4 = tiny_mp4()
    answer = (
        video_raw(mp4, finish_reason="CONTENT_FILTERED")
        if form == "raw"
        else video_json(mp4, finish_reason="CONTENT_FILTERED")
    )
    fake_protocol_server.poll(answer)
    with pytest.raises(errors.ContentFilteredError):
        make_engine().generate(request_)


def test_a_200_that_is_not_a_video_is_a_clear_error(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(Answer(status=200, headers={"content-type": "text/html"}, body=b"<html>"))
    with pytest.raises(errors.ServiceError, match="instead of a video"):
        make_engine().generate(request_)


# ---------------------------------------------------------------------- deadline and cancel


def test_a_never_ending_job_is_stopped_by_the_deadline(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest, clock: FakeClock
) -> None:
    fake_protocol_server.poll_default = accepted()
    began = clock.now()
    with pytest.raises(errors.DeadlineExceededError) as caught:
        make_engine(timeout=0.5, poll_interval=0.05).generate(request_)
    assert 0.45 <= clock.now() - began < 2.0
    assert JOB_ID in caught.value.message and "0.5 s" in caught.value.message
    assert len(fake_protocol_server.polls) >= 3


def test_a_long_retry_after_does_not_outlive_the_deadline(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest, clock: FakeClock
) -> None:
    fake_protocol_server.poll_default = accepted(retry_after=60)
    began = clock.now()
    with pytest.raises(errors.DeadlineExceededError):
        make_engine(timeout=0.6).generate(request_)
    assert clock.now() - began < 2.0


def _generate_in_thread(
    engine: RemoteEngine, request: VideoRequest, cancel: Callable[[], bool], clock: FakeClock
) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["video"] = engine.generate(request, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc
        outcome["ended"] = clock.now()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("where", ["waiting", "in-request"])
def test_cancel_mid_poll_returns_within_a_second(
    fake_protocol_server: FakeProtocolServer,
    make_engine: EngineFactory,
    request_: VideoRequest,
    where: str,
    clock: FakeClock,
) -> None:
    server = fake_protocol_server
    # Either the server asks for a long pause, or it holds the poll request open until the test ends.
    server.poll_default = accepted(retry_after=30) if where == "waiting" else held()
    stop = threading.Event()
    pressed: list[float] = []

    def press() -> None:
        pressed.append(clock.now())
        stop.set()

    if where == "waiting":  # the first poll comes at once; Cancel is pressed 0.2 s into the 30 s pause
        clock.call_at(clock.now() + 0.2, press)
    thread, outcome = _generate_in_thread(make_engine(), request_, stop.is_set, clock)
    assert server.wait_for("poll", 1, timeout=5)
    if where == "in-request":
        press()
    thread.join(timeout=3)
    stopped_at = pressed[0]
    assert isinstance(outcome.get("error"), errors.CancelledError)
    assert float(outcome["ended"]) - stopped_at < 1.0  # type: ignore[arg-type]
    assert len(server.submits) == 1


# ---------------------------------------------------------------------- settings and the key


def test_url_and_key_come_from_the_environment(
    fake_protocol_server: FakeProtocolServer, request_: VideoRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMG2VID_BASE_URL", fake_protocol_server.url)
    monkeypatch.setenv("IMG2VID_API_KEY", KEY)
    fake_protocol_server.poll(video_raw(tiny_mp4()))
    with RemoteEngine(poll_interval=0) as engine:
        engine.generate(request_)
    assert fake_protocol_server.submits[0].headers["authorization"] == f"Bearer {KEY}"


def test_url_and_key_come_from_the_config_file(
    fake_protocol_server: FakeProtocolServer, request_: VideoRequest, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'base_url = "{fake_protocol_server.url}"\napi_key = "{KEY}"\n')
    monkeypatch.setenv("IMG2VID_CONFIG", str(config))
    fake_protocol_server.poll(video_raw(tiny_mp4()))
    with RemoteEngine(poll_interval=0) as engine:
        engine.generate(request_)
    assert fake_protocol_server.submits[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_missing_key_for_stability_names_every_place_a_key_can_come_from() -> None:
    with pytest.raises(errors.AuthenticationError) as caught:
        RemoteEngine("stability")
    message = caught.value.message
    assert "$IMG2VID_API_KEY" in message and "$STABILITY_API_KEY" in message and "config.toml" in message
    assert "no longer serves image-to-video" in message and "--engine local" in message  # a key is not enough


def test_a_401_without_a_key_says_where_to_put_one(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.submit(error(401, "unauthorized"))
    with pytest.raises(errors.AuthenticationError) as caught:
        make_engine(api_key=None).generate(request_)
    assert "none was given" in caught.value.message and "$IMG2VID_API_KEY" in caught.value.message
    assert "authorization" not in fake_protocol_server.submits[0].headers


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", 0), ("timeout", float("nan")), ("poll_interval", -1), ("max_retries", 99), ("api_version", "v3"),
     ("client_id", "x" * 257), ("base_url", "ftp://example.com")],
)  # fmt: skip
def test_bad_settings_name_the_option(option: str, value: object) -> None:
    settings: dict[str, object] = {"base_url": "http://127.0.0.1:9", "api_key": KEY, option: value}
    with pytest.raises(errors.InvalidInputError) as caught:
        RemoteEngine(**settings)  # type: ignore[arg-type]
    assert caught.value.field == option


@pytest.mark.parametrize("bad_key", ["sk-ключ-0123456789", "sk-tab\tinside-0123456789"])
def test_a_key_that_cannot_be_a_header_names_api_key_and_is_not_shown(bad_key: str) -> None:
    with pytest.raises(errors.InvalidInputError) as caught:
        RemoteEngine("http://127.0.0.1:9", bad_key)
    assert caught.value.field == "api_key"
    assert bad_key not in str(caught.value) and bad_key not in repr(caught.value.__dict__)


@pytest.mark.parametrize("url", ["ftp://me:hunter22@example.com", "http://me:hunter22@[::1"])
def test_a_bad_url_is_named_without_its_password(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for attempt in ({"base_url": url}, {}):  # as an argument, then from the environment
        monkeypatch.setenv("IMG2VID_BASE_URL", url)
        with pytest.raises(errors.InvalidInputError) as caught:
            RemoteEngine(api_key=KEY, **attempt)
        assert caught.value.field == "base_url" and "me:********@" in caught.value.message
        assert "hunter22" not in caught.value.message + str(caught.value.value)
        assert caught.value.__cause__ is None or "hunter22" not in str(caught.value.__cause__)


def test_client_headers_are_sent(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(video_raw(tiny_mp4()))
    make_engine(client_id="my-app", user_id="user-7", version="1.2.3").generate(request_)
    headers = fake_protocol_server.submits[0].headers
    assert (headers["stability-client-id"], headers["stability-client-user-id"], headers["stability-client-version"]) == (
        "my-app", "user-7", "1.2.3",
    )  # fmt: skip


def test_the_key_never_reaches_logs_errors_reprs_or_progress(
    fake_protocol_server: FakeProtocolServer,
    make_engine: EngineFactory,
    request_: VideoRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = fake_protocol_server
    # A success with retries (every log path), then servers that echo the key back in their errors.
    server.submit(error(500), submitted(), error(401, "unauthorized", f"bad key Bearer {KEY}"))
    server.submit(submitted())
    server.poll(drop(), accepted(progress=0.5), video_raw(tiny_mp4()))
    server.poll(*[error(500, KEY, f"authorization: {KEY} rejected")] * 3)
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and httpcore's included

    engine = make_engine()
    texts.append(repr(engine))
    engine.generate(request_, progress=lambda f, text: texts.append(text))
    for _ in range(2):
        with pytest.raises(errors.Img2VidError) as caught:
            engine.generate(request_, progress=lambda f, text, texts=texts: texts.append(text))
        texts += [str(caught.value), repr(caught.value), *caught.value.details]

    records = [record.getMessage() for record in caplog.records]
    assert any("httpx" in r.name for r in caplog.records)  # the test saw httpx's own log lines
    assert any(r.name == "img2vid.remote" for r in caplog.records)
    for text in texts + records:
        assert KEY not in text
    assert any("********" in text for text in texts)  # the echoed key was masked, not dropped silently


@pytest.mark.parametrize("logger", ["img2vid.remote", "img2vid.comfy", "httpx", "httpcore.http11", "httpcore.connection"])
def test_log_lines_that_carry_the_key_are_masked(
    make_engine: EngineFactory, caplog: pytest.LogCaptureFixture, logger: str
) -> None:
    make_engine()  # registers the key and installs the filter
    caplog.set_level(logging.DEBUG)
    logging.getLogger(logger).debug("sent headers %s", {"authorization": f"Bearer {KEY}"})
    logging.getLogger(logger).debug("raw key %s in a message", KEY)
    messages = [record.getMessage() for record in caplog.records if record.name == logger]
    assert len(messages) == 2
    assert all(KEY not in m and "********" in m for m in messages)


def test_redact_masks_url_passwords_and_authorization_values() -> None:
    from img2vid.engines.remote import redact

    assert redact("http://me:hunter22@host:8000/x") == "http://me:********@host:8000/x"
    assert redact("'authorization': 'Bearer abc.def'") == "'authorization': 'Bearer ********'"
    assert redact("x-api-key=zzz9") == "x-api-key=********"
    assert repr(RemoteEngine("http://me:hunter22@127.0.0.1:9", KEY)).count("hunter22") == 0


def test_retry_after_in_every_spelling() -> None:
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from img2vid.engines.remote._policy import retry_after_seconds

    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    in_20_s = format_datetime(now + timedelta(seconds=20), usegmt=True)
    assert 17 <= retry_after_seconds({"retry-after": in_20_s}, now=now.timestamp()) <= 20  # type: ignore[operator]
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_doubles_with_jitter_up_to_a_cap() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=0.25)
    for retry, full in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.backoff(retry) for _ in range(50)]
        assert all(0.75 * full <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jittered, so many clients do not retry in step


def test_a_submit_left_unanswered_is_not_sent_again(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.submit(Answer(status=200, body=b'{"id": "late"}', delay=1.5))
    with pytest.raises(errors.DeadlineExceededError, match="no answer"):
        make_engine(timeout=0.5, max_retries=5).generate(request_)
    assert len(fake_protocol_server.submits) == 1


def test_a_slow_submit_still_reports_the_time_going_by(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.submit(Answer(status=200, headers={"content-type": "application/json"},
                                       body=f'{{"id": "{JOB_ID}"}}'.encode(), delay=1.3))  # fmt: skip
    fake_protocol_server.poll(video_raw(tiny_mp4()))
    seen: list[str] = []
    make_engine().generate(request_, progress=lambda f, text: seen.append(text))
    assert seen[0].startswith("uploading 1024x576 image")
    assert any(text.startswith("uploading") and text.endswith(", 1 s") for text in seen)


# ---------------------------------------------------------------------- idempotent submit and cancel


def test_each_generation_sends_one_idempotency_key_on_every_retry_of_its_submit(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    server = fake_protocol_server
    server.submit(error(503, "busy"), submitted(), submitted())
    server.poll(video_raw(tiny_mp4()), video_raw(tiny_mp4()))
    engine = make_engine()
    engine.generate(request_)
    engine.generate(request_)
    first, retry, second = server.idempotency_keys
    assert first and first == retry  # a retried submit can be recognised as the same job
    assert second and second != first  # a new generation is a new job


def test_stability_gets_no_idempotency_key(fake_protocol_server: FakeProtocolServer, request_: VideoRequest) -> None:
    fake_protocol_server.poll(video_raw(tiny_mp4()))
    with RemoteEngine("https://api.stability.ai", KEY, transport=StabilityRedirect(fake_protocol_server)) as engine:
        engine.generate(request_)
    assert fake_protocol_server.idempotency_keys == [None]


def _stop_when_waiting(clock: FakeClock) -> Callable[[], bool]:
    """A cancel callable that says stop 0.2 s into the engine's first pause after the first poll."""
    stop = threading.Event()
    clock.call_at(clock.now() + 0.2, stop.set)
    return stop.is_set


@pytest.mark.parametrize("api_version", ["v2beta", "v2alpha"])
def test_a_stop_after_the_submit_cancels_the_job_on_the_server(
    fake_protocol_server: FakeProtocolServer,
    make_engine: EngineFactory,
    request_: VideoRequest,
    clock: FakeClock,
    api_version: str,
) -> None:
    server = fake_protocol_server
    server.poll_default = accepted(retry_after=30)
    with pytest.raises(errors.CancelledError):
        make_engine(api_version=api_version).generate(request_, cancel=_stop_when_waiting(clock))
    (cancel,) = server.cancels
    prefix = "/v2beta/image-to-video" if api_version == "v2beta" else "/v2alpha/generation/image-to-video"
    assert (cancel.method, cancel.path) == ("DELETE", f"{prefix}/result/{JOB_ID}")
    assert cancel.headers["authorization"] == f"Bearer {KEY}"
    assert len(server.polls) == 1


@pytest.mark.parametrize(
    "answer",
    [error(404, "not_found"), error(405, "method_not_allowed"), error(409, "conflict"), drop(), error(500)],
    ids=["404", "405", "409", "dropped", "500"],
)
def test_a_cancel_the_server_does_not_take_still_ends_in_cancelled(
    fake_protocol_server: FakeProtocolServer,
    make_engine: EngineFactory,
    request_: VideoRequest,
    clock: FakeClock,
    answer: Answer,
) -> None:
    server = fake_protocol_server
    server.poll_default = accepted(retry_after=30)
    server.cancel(answer, answer, answer)
    with pytest.raises(errors.CancelledError):
        make_engine(max_retries=2).generate(request_, cancel=_stop_when_waiting(clock))
    assert len(server.cancels) == 1  # best effort: one try, so a stop is not held up


def test_stability_is_never_sent_a_cancel(
    fake_protocol_server: FakeProtocolServer, request_: VideoRequest, clock: FakeClock
) -> None:
    fake_protocol_server.poll_default = accepted()
    engine = RemoteEngine("https://api.stability.ai", KEY, transport=StabilityRedirect(fake_protocol_server))
    stop = threading.Event()
    clock.call_at(clock.now() + 10.5, stop.set)  # during the 10 s pause after the first poll
    with pytest.raises(errors.CancelledError):
        engine.generate(request_, cancel=stop.is_set)
    assert len(fake_protocol_server.polls) == 1 and fake_protocol_server.cancels == []


def test_ctrl_c_while_polling_cancels_the_job_and_goes_on_as_ctrl_c(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll_default = accepted(retry_after=30)

    def progress(fraction: float | None, text: str) -> None:
        if text.startswith("running on the server"):
            raise KeyboardInterrupt  # as Python raises it in the main thread

    with pytest.raises(KeyboardInterrupt):
        make_engine().generate(request_, progress=progress)
    assert [c.job_id for c in fake_protocol_server.cancels] == [JOB_ID]


def test_a_job_cancelled_on_the_server_is_cancelled_error_with_the_servers_message(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(accepted(), error(410, "cancelled", "the job was cancelled by its owner"))
    with pytest.raises(errors.CancelledError) as caught:
        make_engine().generate(request_)
    assert JOB_ID in caught.value.message and "cancelled" in caught.value.message
    assert caught.value.details == ["the job was cancelled by its owner"]
    assert fake_protocol_server.cancels == []  # nothing to cancel: the server already did


def test_410_for_any_other_reason_is_a_job_gone(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, request_: VideoRequest
) -> None:
    fake_protocol_server.poll(error(410, "gone"))
    with pytest.raises(errors.NotFoundError):
        make_engine().generate(request_)


@pytest.mark.parametrize(
    ("answer", "cls", "says"),
    [
        (error(404, "not_found"), errors.NotFoundError, "was not found"),
        (error(409, "conflict", "job already succeeded"), errors.ConflictError, "already finished"),
        (error(405, "method_not_allowed"), errors.ServiceError, "does not offer cancelling jobs"),
        (error(401, "unauthorized"), errors.AuthenticationError, "refused the API key"),
    ],
)
def test_cancel_job_says_why_the_server_refused(
    fake_protocol_server: FakeProtocolServer,
    make_engine: EngineFactory,
    answer: Answer,
    cls: type[errors.Img2VidError],
    says: str,
) -> None:
    fake_protocol_server.cancel(answer)
    with pytest.raises(cls) as caught:
        make_engine().cancel_job("job-7")
    assert says in caught.value.message and type(caught.value) is cls
    assert [c.job_id for c in fake_protocol_server.cancels] == ["job-7"]


def test_cancel_job_retries_a_refused_delete_and_returns_on_200(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory
) -> None:
    fake_protocol_server.cancel(error(503, "busy"))
    make_engine().cancel_job(JOB_ID)
    assert len(fake_protocol_server.cancels) == 2


@pytest.mark.parametrize("job_id", ["", "a/b", "x" * 129, "id with space"])
def test_cancel_job_refuses_an_id_that_is_not_one(
    fake_protocol_server: FakeProtocolServer, make_engine: EngineFactory, job_id: str
) -> None:
    with pytest.raises(errors.InvalidInputError) as caught:
        make_engine().cancel_job(job_id)
    assert caught.value.field == "id" and fake_protocol_server.requests == []


def test_cancel_job_refuses_stability(fake_protocol_server: FakeProtocolServer) -> None:
    engine = RemoteEngine("https://api.stability.ai", KEY, transport=StabilityRedirect(fake_protocol_server))
    with pytest.raises(errors.InvalidInputError, match="offers no way to cancel"):
        engine.cancel_job(JOB_ID)
    assert fake_protocol_server.requests == []


def test_engines_share_one_tls_context_that_verifies_and_follows_ssl_cert_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every engine's connections verify certificates, with one context built once rather than per engine,
    and a CA bundle named by SSL_CERT_FILE (as httpx honours it) gets a context of its own."""
    import ssl

    import certifi
    import httpx

    from img2vid.engines.remote import engine as engine_module

    given: list[object] = []
    real_client = httpx.Client

    def spy(*args: object, **kwargs: object) -> httpx.Client:
        given.append(kwargs.get("verify"))
        return real_client(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_module.httpx, "Client", spy)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    first = RemoteEngine(base_url="https://one.example", api_key="k1")
    second = RemoteEngine(base_url="http://127.0.0.1:9", api_key="k2")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    third = RemoteEngine(base_url="https://three.example", api_key="k3")
    try:
        assert len(given) == 3 and all(isinstance(context, ssl.SSLContext) for context in given)
        assert given[0] is given[1] and given[2] is not given[0]
        for context in given:
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname  # type: ignore[union-attr]
    finally:
        for engine in (first, second, third):
            engine.close()
