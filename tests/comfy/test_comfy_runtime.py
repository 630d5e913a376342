"""The shared node runtime: ComfyUI's progress bar, elapsed-time text, Cancel, and one-line errors."""

from __future__ import annotations

import logging
import sys
import threading
import time

import numpy as np
import pytest

from img2vid import errors
from img2vid import redact as redact_module
from img2vid.comfy.runtime import NodeError, NodeRun, generate_videos, register_known_secrets
from img2vid.engines.base import Engine, raise_if_cancelled
from img2vid.fitting import PROTOCOL_SIZES
from img2vid.redact import MIN_SECRET_LENGTH
from img2vid.request import VideoRequest
from img2vid.video import Video
from support.images import gradient

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """An empty secrets registry for each test (the process's one is never emptied), so that a test sees
    only what it registered."""
    monkeypatch.setattr(redact_module, "_secrets", set())


class ScriptedEngine(Engine):
    """An engine whose behaviour each test scripts; it accepts the protocol's sizes, like a remote one."""

    size_rule = PROTOCOL_SIZES

    def __init__(self, script):
        self.script = script
        self.started = threading.Event()
        self.requests: list[VideoRequest] = []

    def generate(self, request, progress=None, cancel=None):
        self.requests.append(request)
        self.started.set()
        return self.script(request, progress, cancel)


def _video(num_frames: int = 2) -> Video:
    return Video(frames=np.zeros((num_frames, 8, 8, 3), dtype=np.uint8), fps=6.0)


def _request(width: int = 1024, height: int = 576) -> VideoRequest:
    return VideoRequest(image=gradient(width, height))


def test_fractions_fill_the_progress_bar_across_a_batch(comfy_stub):
    def script(request, progress, cancel):
        progress(0.5, "step 1/2")
        return _video()

    engine = ScriptedEngine(script)
    videos = generate_videos(engine, [_request(), _request()], node_id="7")

    assert len(videos) == 2
    assert len(comfy_stub.bars) == 1 and comfy_stub.bars[0].node_id == "7"
    # Two videos share one bar: half of the first, all of it, half of the second, all of it.
    assert comfy_stub.updates() == [(50, 200), (100, 200), (150, 200), (200, 200)]
    assert [t for t, _ in comfy_stub.texts][0].startswith("video 1/2: step 1/2")


def test_elapsed_time_is_shown_while_the_engine_gives_no_fraction(comfy_stub):
    now = [100.0]
    run = NodeRun(jobs=1, node_id="3", clock=lambda: now[0])
    for _ in range(4):  # the engine checks cancel while it waits; a second passes between checks
        now[0] += 1.0
        assert run.cancel() is False
    texts = [t for t, node in comfy_stub.texts if node == "3"]
    assert texts[-1] == "working · 4 s elapsed"
    assert comfy_stub.updates() == []  # no fraction: the bar is not moved by guesswork


def test_cancel_stops_a_waiting_engine_within_a_second(comfy_stub):
    def script(request, progress, cancel):
        deadline = time.monotonic() + 30.0  # a job that would run for 30 s, looking at cancel as engines do
        while time.monotonic() < deadline:
            raise_if_cancelled(cancel)
            time.sleep(0.1)
        return _video()

    engine = ScriptedEngine(script)
    timer = threading.Thread(target=lambda: (engine.started.wait(5), comfy_stub.interrupt()))
    timer.start()
    started = time.monotonic()
    with pytest.raises(comfy_stub.InterruptProcessingException):
        generate_videos(engine, [_request()])
    elapsed = time.monotonic() - started
    timer.join()
    assert elapsed < 5.0  # far from the job's 30 s: the wait looked at the interrupt (every 0.1 s)
    assert not comfy_stub.interrupted  # ComfyUI's flag is cleared, ready for the next prompt


def test_cancel_seen_through_the_progress_hook_stops_the_engine(comfy_stub):
    seen = []

    def script(request, progress, cancel):
        comfy_stub.interrupt()
        progress(0.3, "step")  # ComfyUI's hook raises inside the bar; the engine must not see that
        seen.append(cancel())
        raise errors.CancelledError("cancelled by the user")

    with pytest.raises(comfy_stub.InterruptProcessingException):
        generate_videos(ScriptedEngine(script), [_request()])
    assert seen == [True]


def test_engine_errors_become_one_line_without_the_key(comfy_stub, monkeypatch, caplog):
    monkeypatch.setenv("IMG2VID_API_KEY", SECRET)

    def script(request, progress, cancel):
        raise errors.AuthenticationError(f"key {SECRET} was refused\nby the server", details=["check it"])

    caplog.set_level(logging.DEBUG)
    register_known_secrets()
    with pytest.raises(NodeError) as caught:
        generate_videos(ScriptedEngine(script), [_request()])
    message = str(caught.value)
    assert message == "img2vid: key ******** was refused by the server (check it)"
    assert caught.value.kind == "AuthenticationError"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SECRET not in caplog.text


def test_unexpected_errors_say_so_on_one_line(comfy_stub):
    def script(request, progress, cancel):
        raise ValueError("boom\nsecond line")

    with pytest.raises(NodeError, match=r"^img2vid: unexpected ValueError: boom second line \(see the ComfyUI console"):
        generate_videos(ScriptedEngine(script), [_request()])


def test_runs_without_comfyui(monkeypatch):
    for name in ("comfy", "comfy.utils", "comfy.model_management", "server"):
        monkeypatch.setitem(sys.modules, name, None)  # "import comfy" now fails, as outside ComfyUI
    calls = []

    def script(request, progress, cancel):
        progress(0.5, "half")
        calls.append(cancel())
        return _video(3)

    videos = generate_videos(ScriptedEngine(script), [_request()])
    assert videos[0].num_frames == 3 and calls == [False]

    def cancelled(request, progress, cancel):
        raise errors.CancelledError("cancelled by the user")

    with pytest.raises(NodeError, match="cancelled"):
        generate_videos(ScriptedEngine(cancelled), [_request()])


def test_one_log_line_when_the_image_is_fitted(comfy_stub, caplog):
    engine = ScriptedEngine(lambda request, progress, cancel: _video())
    caplog.set_level(logging.INFO, logger="img2vid")
    generate_videos(engine, [_request(640, 480)])
    lines = [r.getMessage() for r in caplog.records if "fitted" in r.getMessage()]
    assert lines == ["img2vid: input image 640x480 is fitted (crop) to 1024x576, the nearest size the engine accepts"]

    caplog.clear()
    generate_videos(engine, [_request(1024, 576)])
    assert not [r for r in caplog.records if "fitted" in r.getMessage()]


def test_a_failure_in_a_batch_names_the_image(comfy_stub):
    def script(request, progress, cancel):
        if len(engine.requests) == 2:
            raise errors.ServiceError("the server failed")
        return _video()

    engine = ScriptedEngine(script)
    with pytest.raises(NodeError, match=r"^img2vid: video 2/3: the server failed$"):
        generate_videos(engine, [_request(), _request(), _request()])
    assert len(engine.requests) == 2  # it stops at the first failure


def test_keys_in_the_config_file_are_known_on_every_supported_python(monkeypatch, tmp_path):
    # The config file is TOML: tomllib from Python 3.11, tomli on 3.10 (the CI runs this file on both).
    config = tmp_path / "config.toml"
    config.write_text(f'base_url = "http://gpu-box:8000"\napi_key = "{SECRET}"\n')
    monkeypatch.setenv("IMG2VID_CONFIG", str(config))
    register_known_secrets()
    assert redact_module._secrets == {SECRET}
    assert redact_module.redact(f"bad key {SECRET}") == "bad key ********"


def test_every_key_the_process_could_send_goes_to_the_one_registry(monkeypatch, tmp_path, comfy_stub, caplog):
    monkeypatch.setenv("IMG2VID_API_KEY", "  env-key-0123456789  ")  # sent stripped, so masked stripped
    monkeypatch.setenv("STABILITY_API_KEY", "stability-key-0123456789")
    monkeypatch.setenv("IMG2VID_CONFIG", str(tmp_path / "none.toml"))
    register_known_secrets("widget-key-0123456789", None, "abc")  # a 3-character string would blank text

    assert redact_module._secrets == {"env-key-0123456789", "stability-key-0123456789", "widget-key-0123456789"}

    def script(request, progress, cancel):
        progress(0.5, "echo widget-key-0123456789")
        logging.getLogger("img2vid.comfy").warning("server said: env-key-0123456789")
        raise errors.ServiceError("the server echoed stability-key-0123456789 (abc)")

    caplog.set_level(logging.DEBUG)
    with pytest.raises(NodeError) as caught:
        generate_videos(ScriptedEngine(script), [_request()])
    assert str(caught.value) == "img2vid: the server echoed ******** (abc)"
    assert [t for t, _ in comfy_stub.texts if "echo" in t] == ["echo ********"]
    assert "env-key" not in caplog.text and "server said: ********" in caplog.text


def test_the_nodes_and_the_remote_engine_share_one_minimum_length():
    from img2vid.engines.remote import RemoteEngine

    short, enough = "x" * (MIN_SECRET_LENGTH - 1), "y" * MIN_SECRET_LENGTH
    register_known_secrets(short, enough)
    assert redact_module._secrets == {enough}
    RemoteEngine(base_url="http://127.0.0.1:9", api_key="z" * (MIN_SECRET_LENGTH - 1)).close()
    RemoteEngine(base_url="http://127.0.0.1:9", api_key="w" * MIN_SECRET_LENGTH).close()
    assert redact_module._secrets == {enough, "w" * MIN_SECRET_LENGTH}
