"""``img2vid generate`` on the local engine: the README's main job, offline, with the tiny model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("diffusers")

from img2vid.cli import app  # noqa: E402
from img2vid.video import Video  # noqa: E402
from support.images import gradient  # noqa: E402


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "input.png"
    Image.fromarray(gradient(192, 128)).save(path)
    return path


def test_generate_with_tiny_model_writes_the_video(image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    result = CliRunner().invoke(
        app,
        ["generate", str(image), "--model", "tiny", "--device", "cpu", "--seed", "5", "--frames", "3", "--steps", "2",
         "--fps", "9", "--decode-chunk", "2", "--noise-aug", "0.1", "--min-guidance", "1.5", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    video = Video.open(out)
    assert (video.num_frames, video.width, video.height, video.fps) == (3, 192, 128, 9)
    assert "seed 5" in result.output


def test_without_engine_or_key_the_local_engine_runs(image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from img2vid.engines import select

    chosen: list[object] = []
    original = select.choose_engine

    def spy(*args: object, **kwargs: object) -> object:
        engine = original(*args, **kwargs)
        chosen.append(engine)
        return engine

    monkeypatch.setattr(select, "choose_engine", spy)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    # No --engine, no --model, no key: the local engine with the default model, which is not downloaded.
    result = CliRunner().invoke(app, ["generate", str(image), "--device", "cpu", "-o", str(tmp_path / "x.mp4")])
    assert type(chosen[0]).__name__ == "LocalEngine"
    assert result.exit_code == 2
    assert "stable-video-diffusion-img2vid-xt" in result.output and "--model tiny" in result.output


def test_bad_local_option_is_exit_code_2_naming_it(image: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["generate", str(image), "--model", "tiny", "--steps", "0", "-o", str(tmp_path / "x.mp4")]
    )
    assert result.exit_code == 2
    assert "steps must be an integer from 1 to 200" in result.output


def test_the_help_states_the_defaults_the_engine_uses(image: Path, tmp_path: Path) -> None:
    """What ``--help`` says an option defaults to is what a run without it gets, and its ranges are the
    ones a value is checked against."""
    from img2vid.request import ENGINE_DEFAULTS, RANGES

    shown = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "400"}).output
    for option, field in (("--seed", "seed"), ("--cfg-scale", "cfg_scale"), ("--motion-bucket-id", "motion_bucket_id")):
        kind, low, high = RANGES[field]
        written = f"{int(low)}..{int(high)}" if kind is int else f"{low:g}..{high:g}"
        assert re.search(rf"{option}\s.*?\s{re.escape(written)}\b", shown), (option, shown)
    stated = {
        option: re.search(rf"{re.escape(option)}\s.*?\(default:? (?:SVD )?([0-9.]+)[);]", shown)
        for option in ("--fps", "--noise-aug", "--min-guidance")
    }
    assert all(stated.values()), shown
    assert float(stated["--noise-aug"].group(1)) == ENGINE_DEFAULTS["noise_aug_strength"]  # type: ignore[union-attr]
    assert float(stated["--min-guidance"].group(1)) == ENGINE_DEFAULTS["min_guidance_scale"]  # type: ignore[union-attr]

    out = tmp_path / "clip.mp4"
    result = CliRunner().invoke(
        app, ["generate", str(image), "--model", "tiny", "--device", "cpu", "--frames", "2", "--steps", "1", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert Video.open(out).fps == int(stated["--fps"].group(1))  # type: ignore[union-attr]
