"""End to end against a live server: ``img2vid generate --engine URL``, the drop-in ComfyUI node with
``IMG2VID_BASE_URL``, and the README's offline flow with the real tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import img2vid.engines.remote.engine as remote_engine
from img2vid.request import VideoRequest
from img2vid.video import Video
from support.comfy_stub import comfy_stub  # noqa: F401 - the fixture
from support.fake_engine import assert_same_frames, expected_frames
from support.images import gradient, png_bytes
from support.server_harness import create_key_direct, free_port, live_server, subprocess_env

FAKE = {"IMG2VID_ENGINE_FACTORY": "support.fake_engine:from_env"}


def _generate(server_url: str, key: str, image: Path, output: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "img2vid", "generate", str(image), "--engine", server_url, "-o", str(output), *extra],
        env=subprocess_env(IMG2VID_API_KEY=key),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.live
def test_img2vid_generate_with_the_server_as_engine(tmp_path: Path) -> None:
    key = create_key_direct(tmp_path)
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(1024, 576, seed=4))
    output = tmp_path / "clip.mp4"
    with live_server(tmp_path, env=FAKE) as server:
        done = _generate(server.url, key, image, output, "--seed", "9", "--cfg-scale", "3", "--motion-bucket-id", "50")
        assert done.returncode == 0, done.stderr
        refused = _generate(server.url, "sk-img2vid-not-a-key", image, tmp_path / "no.mp4")
    assert key not in done.stderr + done.stdout
    expected = expected_frames(VideoRequest(image=image, seed=9, cfg_scale=3.0, motion_bucket_id=50))
    assert_same_frames(Video.open(output).frames, expected)
    assert refused.returncode == 3 and not (tmp_path / "no.mp4").exists()


@pytest.mark.live
def test_the_drop_in_node_runs_against_the_server(tmp_path: Path, comfy_stub, monkeypatch) -> None:  # noqa: F811
    from img2vid.comfy.legacy import SaltAIStableVideoDiffusion

    key = create_key_direct(tmp_path)
    monkeypatch.setattr(remote_engine, "SERVER_POLL_INTERVAL", 0.05)
    pixels = gradient(1024, 576, seed=2)
    with live_server(tmp_path, env=FAKE) as server:
        monkeypatch.setenv("IMG2VID_BASE_URL", server.url)
        monkeypatch.setenv("IMG2VID_API_KEY", key)
        # A saved workflow's values: seed 5, cfg 2.5, motion bucket 40, the api_key widget left empty.
        (frames,) = SaltAIStableVideoDiffusion().generate_video(torch.from_numpy(pixels).float()[None] / 255.0, "", 5, 2.5, 40)
    assert frames.dtype == torch.float32 and tuple(frames.shape) == (2, 36, 64, 3)
    expected = expected_frames(VideoRequest(image=pixels, seed=5, cfg_scale=2.5, motion_bucket_id=40))
    assert_same_frames((frames.numpy() * 255 + 0.5).astype(np.uint8), expected)


@pytest.mark.live
def test_readme_main_job_runs_offline(tmp_path: Path) -> None:
    """README's main job, as written: examples/quickstart.sh serves the tiny model, creates a key with the
    CLI and makes a clip through the server with ``img2vid generate --engine URL``."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "img2vid").exists():
        pytest.skip("the img2vid command is not installed next to this Python (pip install -e .)")
    script = Path(__file__).resolve().parents[2] / "examples" / "quickstart.sh"
    image = tmp_path / "input.png"
    image.write_bytes(png_bytes(1024, 576, seed=8))
    output = tmp_path / "clip.mp4"
    env = subprocess_env(PORT=str(free_port()), IMG2VID_DATA=str(tmp_path / "data"))
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    done = subprocess.run(
        ["bash", str(script), str(image), str(output)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    video = Video.open(output)
    assert (video.width, video.height) == (1024, 576) and video.num_frames >= 2
    assert video.frames.std() > 0


def test_serving_stays_light_until_it_runs() -> None:
    """``img2vid --help`` and ``import img2vid`` never load the web stack or torch."""
    code = (
        "import sys, img2vid, img2vid.cli; "
        "heavy = [m for m in ('fastapi', 'uvicorn', 'sqlalchemy', 'prometheus_client', 'torch') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("command", [["serve", "--help"], ["keys", "--help"]])
def test_commands_have_help(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "img2vid", *command], env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Usage" in done.stdout
