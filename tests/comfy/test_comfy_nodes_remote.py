"""Both nodes end to end against the scripted protocol server: frames, fps, fitting, rules, Cancel, keys."""

from __future__ import annotations

import importlib
import io
import logging
import sys

import pytest

torch = pytest.importorskip("torch")  # ComfyUI IMAGE tensors; the Python 3.10 CI run has no torch
from PIL import Image

import img2vid.comfy.nodes as nodes_module
import img2vid.engines.remote.engine as remote_engine
from img2vid.comfy.legacy import SEED_MODULUS, SaltAIStableVideoDiffusion
from img2vid.comfy.nodes import Img2VidImageToVideo
from img2vid.comfy.runtime import NodeError
from support.clock import use_fake_clock
from support.comfy_stub import install
from support.fake_protocol import JOB_ID, accepted, error, submitted, tiny_mp4, video_raw
from support.images import gradient

SECRET = "sk-test-4f1c9a7e5b3d2f6a8c0e"
WIDGET_SECRET = "sk-widget-9e8d7c6b5a4f3e2d1c0b"


def comfy_image(width: int, height: int, batch: int = 1) -> torch.Tensor:
    """A ComfyUI IMAGE: float32 B×H×W×3 in 0..1."""
    images = [torch.from_numpy(gradient(width, height, seed=i)).float() / 255.0 for i in range(batch)]
    return torch.stack(images)


def submitted_size(request) -> tuple[int, int]:
    _, _, data = request.files["image"]
    return Image.open(io.BytesIO(data)).size


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    """The engine's pause before its first poll of an img2vid server, shortened: these tests are not about it."""
    monkeypatch.setattr(remote_engine, "SERVER_POLL_INTERVAL", 0.02)


@pytest.fixture
def server(fake_protocol_server, monkeypatch):
    monkeypatch.setenv("IMG2VID_BASE_URL", fake_protocol_server.url)
    monkeypatch.setenv("IMG2VID_API_KEY", SECRET)
    return fake_protocol_server


def test_saved_workflow_runs_against_a_server_and_fits_the_image(server, comfy_stub, caplog):
    server.submit(submitted())
    server.poll(video_raw(tiny_mp4(3, 64, 48, 6.0), seed=7))
    caplog.set_level(logging.INFO, logger="img2vid")

    (frames,) = SaltAIStableVideoDiffusion().generate_video(comfy_image(640, 480), "", 5, 2.5, 40)

    assert frames.dtype == torch.float32 and tuple(frames.shape) == (3, 48, 64, 3)
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    assert float(frames[2].mean()) > float(frames[0].mean())  # the frames are the video's, in order
    (submit,) = server.submits
    assert submitted_size(submit) == (1024, 576)  # 4:3 ties 16:9 and 1:1; a landscape image stays landscape
    assert submit.form["seed"] == "5" and float(submit.form["cfg_scale"]) == 2.5
    assert submit.form["motion_bucket_id"] == "40"
    assert SECRET in submit.headers["authorization"]
    fitted = [r.getMessage() for r in caplog.records if "fitted" in r.getMessage()]
    assert len(fitted) == 1 and "640x480" in fitted[0] and "1024x576" in fitted[0]
    assert comfy_stub.updates()[-1] == (100, 100)


def test_large_seeds_are_folded_so_distinct_seeds_stay_distinct(server, comfy_stub):
    big = [2**40, 2**40 + 1, 0xFFFFFFFFFFFFFFFF]
    for _ in big:
        server.submit(submitted())
        server.poll(video_raw(tiny_mp4()))
    for seed in big:
        SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), "", seed, 2.5, 40)
    sent = [int(r.form["seed"]) for r in server.submits]
    assert sent == [s % SEED_MODULUS for s in big]
    assert len(set(sent)) == 3 and all(0 <= s <= 4294967294 for s in sent)


def test_cfg_above_ten_is_refused_before_anything_is_sent(server, comfy_stub):
    with pytest.raises(NodeError, match=r"cfg is 12\.5, but the service accepts cfg from 0 to 10"):
        SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), "", 0, 12.5, 40)
    assert server.requests == []


def test_a_batch_is_a_clear_error_for_the_drop_in_node(server, comfy_stub):
    with pytest.raises(NodeError, match="takes one image; got a batch of 2"):
        SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576, batch=2), "", 0, 2.5, 40)
    assert server.requests == []


def test_a_configured_key_wins_over_a_saved_widget_key_for_another_server(server, comfy_stub):
    server.submit(submitted())
    server.poll(video_raw(tiny_mp4()))
    SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), WIDGET_SECRET, 0, 2.5, 40)
    assert server.submits[0].headers["authorization"].endswith(SECRET)


def test_the_widget_key_is_used_when_none_is_configured(server, comfy_stub, monkeypatch):
    monkeypatch.delenv("IMG2VID_API_KEY")
    server.submit(submitted())
    server.poll(video_raw(tiny_mp4()))
    SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), f"  {WIDGET_SECRET} ", 0, 2.5, 40)
    assert server.submits[0].headers["authorization"].endswith(WIDGET_SECRET)


def test_a_refused_key_is_one_line_and_the_key_is_nowhere(server, comfy_stub, monkeypatch, caplog):
    monkeypatch.delenv("IMG2VID_API_KEY")
    server.submit(error(401, "unauthorized", f"bad key {WIDGET_SECRET}"))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(NodeError) as caught:
        SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), WIDGET_SECRET, 0, 2.5, 40)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("img2vid: ")
    assert WIDGET_SECRET not in message and WIDGET_SECRET not in caplog.text
    assert WIDGET_SECRET not in "".join(t for t, _ in comfy_stub.texts)
    assert caught.value.kind == "AuthenticationError"


def test_cancel_stops_polling_within_a_second(server, comfy_stub, monkeypatch):
    monkeypatch.setattr(remote_engine, "SERVER_POLL_INTERVAL", 30.0)  # a long pause between polls
    clock = use_fake_clock(monkeypatch, server)  # virtual time: the pauses cost nothing
    server.submit(submitted())
    server.poll_default = accepted()  # a job that never finishes
    pressed: list[float] = []

    def press_cancel() -> None:
        pressed.append(clock.now())
        comfy_stub.interrupt()

    # The first poll comes at once; Cancel is pressed well inside the engine's pause before the next one.
    clock.call_at(clock.now() + 0.2, press_cancel)
    with pytest.raises(comfy_stub.InterruptProcessingException):
        SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), "", 0, 2.5, 40)
    stopped = clock.now()
    assert stopped - pressed[0] < 1.0
    assert len(server.polls) == 1  # nothing more was sent after Cancel
    assert [c.job_id for c in server.cancels] == [JOB_ID]  # and the server was told to stop the job
    # While it waited, the node showed the server's state and the time, on the running node.
    assert any("running on the server" in text and node == "5" for text, node in comfy_stub.texts)
    assert not comfy_stub.interrupted  # ComfyUI's flag is cleared for the next prompt


def test_own_node_makes_one_video_per_image_of_a_batch(fake_protocol_server, comfy_stub, monkeypatch):
    monkeypatch.setenv("IMG2VID_API_KEY", SECRET)
    server = fake_protocol_server
    server.submit(submitted("a" * 64), submitted("b" * 64))
    server.poll(video_raw(tiny_mp4(3, 64, 48, 6.0)), video_raw(tiny_mp4(2, 64, 48, 6.0)))

    frames, fps, counts, *rest = Img2VidImageToVideo().generate(
        comfy_image(576, 1024, batch=2), engine="remote", server=server.url, seed=11, cfg_scale=3.0,
        motion_bucket_id=90, unique_id="12",
    )

    assert tuple(frames.shape) == (5, 48, 64, 3) and frames.dtype == torch.float32
    assert fps == 6.0 and counts == [3, 2]
    assert [r.job_id for r in server.polls] == ["a" * 64, "b" * 64]
    assert [submitted_size(r) for r in server.submits] == [(576, 1024), (576, 1024)]
    assert {r.form["seed"] for r in server.submits} == {"11"}
    assert comfy_stub.bars[0].node_id == "12" and comfy_stub.updates()[-1] == (200, 200)


def test_own_node_gives_a_video_object_where_comfyui_has_the_type(fake_protocol_server, monkeypatch):
    stub = install(with_video=True)
    for name, module in stub.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    reloaded = importlib.reload(nodes_module)
    try:
        assert reloaded.Img2VidImageToVideo.RETURN_TYPES == ("IMAGE", "FLOAT", "INT", "VIDEO")
        fake_protocol_server.submit(submitted())
        fake_protocol_server.poll(video_raw(tiny_mp4(3, 64, 48, 6.0)))
        monkeypatch.setenv("IMG2VID_API_KEY", SECRET)
        frames, fps, counts, videos = reloaded.Img2VidImageToVideo().generate(
            comfy_image(1024, 576), engine="remote", server=fake_protocol_server.url
        )
        (video,) = videos
        components = video.get_components()
        assert torch.equal(components.images, frames) and float(components.frame_rate) == 6.0
    finally:
        monkeypatch.undo()
        importlib.reload(nodes_module)
    assert nodes_module.Img2VidImageToVideo.RETURN_TYPES == ("IMAGE", "FLOAT", "INT")


def test_own_node_names_the_field_of_a_bad_value(fake_protocol_server, comfy_stub):
    with pytest.raises(NodeError, match="server must be 'stability', an http:// or https:// URL, or empty"):
        Img2VidImageToVideo().generate(comfy_image(64, 64), engine="remote", server="localhost:8000")
    with pytest.raises(NodeError, match=r"server must be .*got 'ftp://me:\*{8}@h'") as caught:
        Img2VidImageToVideo().generate(comfy_image(64, 64), engine="remote", server="ftp://me:hunter22@h")
    assert "hunter22" not in str(caught.value)
    with pytest.raises(NodeError, match="fit must be one of"):
        Img2VidImageToVideo().generate(comfy_image(64, 64), engine="remote", server=fake_protocol_server.url, fit="zoom")
    assert fake_protocol_server.requests == []


def test_both_nodes_close_their_connections_after_a_run_or_a_failure(server, comfy_stub, monkeypatch):
    closed: list[str] = []
    real_close = remote_engine.RemoteEngine.close

    def close(engine) -> None:
        closed.append(engine.base_url)
        real_close(engine)

    monkeypatch.setattr(remote_engine.RemoteEngine, "close", close)
    server.submit(submitted(), submitted(), error(422, "invalid_image"))
    server.poll(video_raw(tiny_mp4()), video_raw(tiny_mp4()))

    SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), "", 0, 2.5, 40)
    Img2VidImageToVideo().generate(comfy_image(1024, 576), engine="remote")
    with pytest.raises(NodeError, match="refused the request"):
        Img2VidImageToVideo().generate(comfy_image(1024, 576), engine="remote")
    assert closed == [server.url] * 3


def test_an_old_workflow_with_nothing_configured_says_what_to_set(comfy_stub):
    with pytest.raises(NodeError, match="set IMG2VID_BASE_URL to an img2vid server"):
        SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), "", 0, 2.5, 40)
