"""img2vid's node on the local engine with the tiny model: frames, fps, a batch, progress and Cancel."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")  # ComfyUI IMAGE tensors; the Python 3.10 CI run has no torch
from img2vid.comfy.nodes import Img2VidImageToVideo
from support.images import gradient

FAST = {"engine": "local", "model": "tiny", "frames": 2, "steps": 2, "fps": 8}


def comfy_image(width: int, height: int, batch: int = 1) -> torch.Tensor:
    return torch.stack([torch.from_numpy(gradient(width, height, seed=i)).float() / 255.0 for i in range(batch)])


def test_a_batch_makes_one_local_video_per_image(comfy_stub):
    frames, fps, counts, *_ = Img2VidImageToVideo().generate(
        comfy_image(128, 64, batch=2), seed=3, unique_id="9", **FAST
    )
    assert frames.dtype == torch.float32 and tuple(frames.shape) == (4, 64, 128, 3)
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    assert fps == 8.0 and counts == [2, 2]
    updates = comfy_stub.updates()
    assert updates == sorted(updates) and updates[-1] == (200, 200)
    assert any(value < 100 for value, _ in updates)  # steps showed before the first video was done


def test_the_same_seed_gives_the_same_frames(comfy_stub):
    first = Img2VidImageToVideo().generate(comfy_image(64, 64), seed=21, **FAST)[0]
    second = Img2VidImageToVideo().generate(comfy_image(64, 64), seed=21, **FAST)[0]
    assert torch.equal(first, second)


def test_cancel_stops_the_local_engine_between_steps(comfy_stub):
    comfy_stub.on_update = lambda value, total: comfy_stub.interrupt()  # Cancel at the first step
    with pytest.raises(comfy_stub.InterruptProcessingException):
        Img2VidImageToVideo().generate(comfy_image(64, 64), **{**FAST, "steps": 50})
    assert len(comfy_stub.updates()) < 5  # it stopped, it did not run 50 steps
    assert not comfy_stub.interrupted
