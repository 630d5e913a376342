"""img2vid's node running Wan and LTX-Video: locally on the tiny pipelines (frames, frame rate, a prompt
refused by SVD, Cancel, ComfyUI's memory management) and on a server (the prompts and the model sent), and
the drop-in node, which sends neither."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")  # ComfyUI IMAGE tensors and the local engine; the Python 3.10 CI run has no torch
import img2vid.engines.remote.engine as remote_engine
from img2vid.comfy import memory
from img2vid.comfy.legacy import SaltAIStableVideoDiffusion
from img2vid.comfy.nodes import Img2VidImageToVideo
from img2vid.comfy.runtime import NodeError
from img2vid.families import FAMILIES
from support.fake_protocol import submitted, tiny_mp4, video_raw
from support.images import gradient

SECRET = "sk-test-4f1c9a7e5b3d2f6a8c0e"


def comfy_image(width: int, height: int, batch: int = 1) -> torch.Tensor:
    return torch.stack([torch.from_numpy(gradient(width, height, seed=i)).float() / 255.0 for i in range(batch)])


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(remote_engine, "SERVER_POLL_INTERVAL", 0.02)


@pytest.mark.parametrize("family", ["wan2.2-ti2v-5b", "ltx-video"])
def test_a_local_run_makes_the_familys_frames_at_its_frame_rate(comfy_stub, family):
    frames, fps, counts, *_ = Img2VidImageToVideo().generate(
        comfy_image(96, 64), engine="local", model=f"tiny-{family}", prompt="a bird flies over the sea", seed=5,
        unique_id="7",
    )
    # The tiny models make 9 frames (valid for 4k+1 and 8k+1) at the family's own frame rate.
    assert frames.dtype == torch.float32 and tuple(frames.shape) == (9, 64, 96, 3)
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    assert fps == float(FAMILIES[family].default_fps) and counts == [9]
    updates = comfy_stub.updates()
    assert updates == sorted(updates) and updates[-1] == (100, 100) and updates[0][0] < 100  # steps showed
    assert comfy_stub.bars[0].node_id == "7"


def test_the_prompt_changes_the_video_and_the_widgets_reach_the_model(comfy_stub):
    run = {"engine": "local", "model": "tiny-wan2.2-ti2v-5b", "seed": 9, "frames": 5, "steps": 1, "fps": 12}
    first, fps, counts, *_ = Img2VidImageToVideo().generate(comfy_image(64, 64), prompt="a cat runs", **run)
    again = Img2VidImageToVideo().generate(comfy_image(64, 64), prompt="a cat runs", **run)[0]
    other = Img2VidImageToVideo().generate(comfy_image(64, 64), prompt="snow in the dark city", **run)[0]
    assert counts == [5] and fps == 12.0
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_prompt_for_svd_is_the_engines_error_on_the_node(comfy_stub):
    with pytest.raises(NodeError, match="prompt: .*takes no text prompt") as caught:
        Img2VidImageToVideo().generate(comfy_image(64, 64), engine="local", model="tiny", prompt="a cat runs")
    assert str(caught.value).startswith("img2vid: ") and caught.value.kind == "InvalidInputError"


def test_a_frame_count_outside_the_familys_rule_names_the_nearest(comfy_stub):
    with pytest.raises(NodeError, match=r"frames is 10; tiny LTX-Video makes 8k\+1 frames .* the nearest are 9 and 17"):
        Img2VidImageToVideo().generate(comfy_image(64, 64), engine="local", model="tiny-ltx-video", frames=10)


def test_cancel_stops_a_wan_run_between_steps_and_gives_its_memory_back(comfy_stub, monkeypatch):
    asked: list[tuple[str, int]] = []
    monkeypatch.setattr(memory, "make_room", lambda device, weight_bytes: asked.append((str(device), weight_bytes)))
    engines: list = []
    real_attach = memory.attach
    monkeypatch.setattr(memory, "attach", lambda engine: (engines.append(engine), real_attach(engine)))
    comfy_stub.on_update = lambda value, total: comfy_stub.interrupt()  # Cancel at the first step

    with pytest.raises(comfy_stub.InterruptProcessingException):
        Img2VidImageToVideo().generate(comfy_image(64, 64), engine="local", model="tiny-wan2.2-ti2v-5b", steps=50)

    assert len(comfy_stub.updates()) < 5  # it stopped, it did not run 50 steps
    assert not comfy_stub.interrupted  # ComfyUI's flag is cleared for the next prompt
    (engine,) = engines
    assert asked and asked[0][0] == "cpu" and asked[0][1] > 0  # ComfyUI was asked for room before loading
    assert not engine.loaded  # released after the interrupt, as for SVD


def test_free_model_and_node_cache_releases_an_ltx_model(comfy_stub, monkeypatch):
    engines: list = []
    real_attach = memory.attach
    monkeypatch.setattr(memory, "attach", lambda engine: (engines.append(engine), real_attach(engine)))
    Img2VidImageToVideo().generate(comfy_image(64, 64), engine="local", model="tiny-ltx-video", steps=1, frames=9)
    (engine,) = engines
    assert engine.loaded  # kept warm for the next run
    comfy_stub.model_management.unload_all_models()
    assert not engine.loaded


# ------------------------------------------------------------------------------------------- remote


@pytest.fixture
def server(fake_protocol_server, monkeypatch):
    monkeypatch.setenv("IMG2VID_BASE_URL", fake_protocol_server.url)
    monkeypatch.setenv("IMG2VID_API_KEY", SECRET)
    return fake_protocol_server


def test_remote_sends_the_prompts_and_the_model_and_no_svd_setting(server, comfy_stub):
    server.submit(submitted())
    server.poll(video_raw(tiny_mp4(5, 64, 48, 24.0), seed=7))

    frames, fps, counts, *_ = Img2VidImageToVideo().generate(
        comfy_image(1024, 576), engine="remote", model="wan2.2-ti2v-5b", prompt="the sun sets\nslowly",
        negative_prompt="blurry", seed=7, frames=5,
    )

    assert tuple(frames.shape) == (5, 48, 64, 3) and fps == 24.0 and counts == [5]
    (submit,) = server.submits
    form = submit.form
    assert form["prompt"] == "the sun sets\nslowly" and form["negative_prompt"] == "blurry"
    assert form["model"] == "wan2.2-ti2v-5b" and form["frames"] == "5" and form["seed"] == "7"
    assert not {"noise_aug_strength", "min_guidance_scale", "decode_chunk_size", "steps", "fps"} & set(form)


def test_remote_with_the_default_entry_sends_no_model_and_no_empty_prompt(server, comfy_stub):
    server.submit(submitted())
    server.poll(video_raw(tiny_mp4()))
    Img2VidImageToVideo().generate(comfy_image(1024, 576), engine="remote")
    form = server.submits[0].form
    assert not {"model", "prompt", "negative_prompt"} & set(form)


def test_the_drop_in_node_sends_no_model_and_no_prompt(server, comfy_stub):
    server.submit(submitted())
    server.poll(video_raw(tiny_mp4()))
    SaltAIStableVideoDiffusion().generate_video(comfy_image(1024, 576), "", 5, 2.5, 40)
    (submit,) = server.submits
    assert set(submit.form) == {"seed", "cfg_scale", "motion_bucket_id"}  # SVD's fields: the server's default model
    assert submit.form["motion_bucket_id"] == "40" and float(submit.form["cfg_scale"]) == 2.5
