"""Wan and LTX-Video in the local engine and the CLI, on tiny random pipelines built offline.

Each tiny pipeline is the family's real diffusers pipeline at toy width: parity with diffusers, the prompt,
the frame and size rules, refused fields, cancel, LoRA, short names and the speed and memory modes, all on
the CPU in about a second a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from img2vid import VideoRequest
from img2vid.cli import app
from img2vid.engines.local import LocalEngine
from img2vid.engines.local.tiny_families import TINY_FAMILY_NAMES, build_tiny_pipeline
from img2vid.errors import CancelledError, InvalidInputError, ModelError, OutOfMemoryError
from img2vid.families import FAMILIES, SVD
from img2vid.model_names import identify_model
from img2vid.video import Video

TINY = {
    "wan2.2-ti2v-5b": "tiny-wan2.2-ti2v-5b",
    "wan2.2-i2v-a14b": "tiny-wan2.2-i2v-a14b",
    "wan2.1-i2v-14b-480p": "tiny-wan2.1-i2v-14b-480p",
    "ltx-video": "tiny-ltx-video",
}
#: 96x64: both sides multiples of 32, so every family takes it as it is.
IMAGE = (np.random.default_rng(3).random((64, 96, 3)) * 255).astype(np.uint8)


def _request(**fields: Any) -> VideoRequest:
    return VideoRequest(image=IMAGE, seed=7, **{"prompt": "a cat runs in the rain", **fields})


@pytest.fixture(scope="module")
def engines() -> Any:
    made: dict[str, LocalEngine] = {}

    def get(name: str, **options: Any) -> LocalEngine:
        key = name + repr(sorted(options.items()))
        if key not in made:
            made[key] = LocalEngine(name, device="cpu", **options)
        return made[key]

    yield get
    for engine in made.values():
        engine.close()


def _reference(pipe: Any, family_kind: str, image: np.ndarray, **arguments: Any) -> np.ndarray:
    """diffusers' own frames for the arguments, as uint8."""
    extra = {"frame_rate": arguments.pop("fps")} if family_kind == "ltx" else {}
    arguments.pop("fps", None)
    frames = pipe(image=Image.fromarray(image), height=image.shape[0], width=image.shape[1], output_type="np", **arguments, **extra).frames[0]
    return (np.asarray(frames) * 255.0).round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("key", list(TINY))
def test_the_cli_on_a_folder_makes_the_frames_diffusers_makes(key: str, tmp_path: Path) -> None:
    """The issue's call: ``img2vid generate IMAGE --model FOLDER --prompt P ...`` against the family's
    diffusers pipeline loaded from the same folder with the same arguments, within 1/255."""
    folder = tmp_path / "model"
    build_tiny_pipeline(TINY_FAMILY_NAMES[TINY[key]]).save_pretrained(folder)
    image_path = tmp_path / "in.png"
    Image.fromarray(IMAGE).save(image_path)
    out = tmp_path / "frames"
    result = CliRunner().invoke(
        app,
        ["generate", str(image_path), "--model", str(folder), "--prompt", "a cat runs", "--negative-prompt", "blurry",
         "--seed", "7", "--frames", "9", "--steps", "2", "--fps", "24", "--cfg-scale", "5", "--device", "cpu",
         "--dtype", "float32", "--format", "png", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    ours = Video.open(out).frames

    family = FAMILIES[key]
    from diffusers import LTXImageToVideoPipeline, WanImageToVideoPipeline

    pipe = (LTXImageToVideoPipeline if family.kind == "ltx" else WanImageToVideoPipeline).from_pretrained(folder)
    expected = _reference(
        pipe, family.kind, IMAGE, prompt="a cat runs", negative_prompt="blurry", num_frames=9, num_inference_steps=2,
        guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(7), fps=24,
    )
    assert ours.shape == expected.shape == (9, 64, 96, 3)
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("key", list(TINY))
def test_the_same_request_gives_the_same_video_and_the_prompt_changes_it(key: str, engines: Any) -> None:
    engine = engines(TINY[key])
    first = engine.generate(_request()).frames
    again = engine.generate(_request()).frames
    other = engine.generate(_request(prompt="a dog flies on the sea")).frames
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_defaults_come_from_the_family_table(engines: Any) -> None:
    engine = engines("tiny-ltx-video")
    video = engine.generate(VideoRequest(image=IMAGE, seed=3, prompt="a bird flies"))
    family = TINY_FAMILY_NAMES["tiny-ltx-video"]
    assert video.num_frames == family.default_frames
    assert video.fps == family.default_fps == FAMILIES["ltx-video"].default_fps
    assert video.engine_settings["family"] == "tiny-ltx-video"


@pytest.mark.parametrize(("name", "frames", "rule", "nearest"), [
    ("tiny-wan2.2-ti2v-5b", 10, "4k+1", "9 and 13"),
    ("tiny-ltx-video", 12, "8k+1", "9 and 17"),
])
def test_a_frame_count_outside_the_rule_names_the_rule_and_the_nearest_counts(name: str, frames: int, rule: str, nearest: str) -> None:
    engine = LocalEngine(name, device="cpu")
    with pytest.raises(InvalidInputError) as caught:
        engine.generate(_request(frames=frames))
    assert caught.value.field == "frames"
    assert rule in str(caught.value) and nearest in str(caught.value)
    assert not engine.loaded  # refused before any weight was read


def test_sizes_follow_the_family_rule_without_enlarging() -> None:
    ltx = FAMILIES["ltx-video"].size_rule
    assert ltx.allows(96, 64)
    width, height = ltx.target_for(1920, 1080)  # larger than the native 704x480 area: scaled down to it
    assert width % 32 == 0 and height % 32 == 0 and width * height <= 704 * 480 and abs(width / height - 16 / 9) < 0.1
    width, height = ltx.target_for(100, 70)  # smaller: the nearest multiples at about its own size
    assert (width, height) == (96, 64)
    ti2v = FAMILIES["wan2.2-ti2v-5b"].size_rule
    assert ti2v.allows(1280, 704)
    width, height = ti2v.target_for(1280, 720)  # 720 is no multiple of 32: the nearest 16:9 within 1280x704's area
    assert (width, height) == (1248, 704)
    assert FAMILIES["wan2.2-i2v-a14b"].size_rule.allows(1280, 720)
    assert SVD.size_rule.target_for(512, 288) == (1024, 576)  # SVD keeps its old rule


def test_an_image_is_fitted_to_the_family_rule(engines: Any) -> None:
    image = (np.random.default_rng(1).random((70, 100, 3)) * 255).astype(np.uint8)
    video = engines("tiny-wan2.2-ti2v-5b").generate(VideoRequest(image=image, seed=1, prompt="a cat"))
    assert (video.width, video.height) == (96, 64)
    with pytest.raises(InvalidInputError) as caught:
        engines("tiny-wan2.2-ti2v-5b").generate(VideoRequest(image=image, seed=1, fit="strict"))
    assert "multiples of 32" in str(caught.value)


@pytest.mark.parametrize(("name", "field", "value"), [
    ("tiny-wan2.2-ti2v-5b", "motion_bucket_id", 127),
    ("tiny-ltx-video", "noise_aug_strength", 0.1),
    ("tiny-wan2.1-i2v-14b-480p", "decode_chunk_size", 4),
    ("tiny", "prompt", "a cat runs"),
    ("tiny", "negative_prompt", "blurry"),
])
def test_a_field_the_family_does_not_take_is_refused_by_name(name: str, field: str, value: Any) -> None:
    engine = LocalEngine(name, device="cpu")
    fields = {field: value} if name == "tiny" else {"prompt": "a cat", field: value}
    with pytest.raises(InvalidInputError) as caught:
        engine.generate(VideoRequest(image=IMAGE, **fields))
    assert caught.value.field == field
    assert str(caught.value).startswith(field)
    assert not engine.loaded


def test_cancel_stops_within_one_step(engines: Any) -> None:
    engine = engines("tiny-wan2.2-i2v-a14b")
    seen: list[str] = []

    def progress(_fraction: float | None, text: str) -> None:
        seen.append(text)

    with pytest.raises(CancelledError):
        engine.generate(_request(steps=6), progress=progress, cancel=lambda: bool(seen))
    assert [t for t in seen if t.startswith("step")] == ["step 1/6"]
    assert engine.generate(_request(steps=2)).num_frames == 9  # the engine goes on after a cancel


def test_progress_reports_every_step_then_the_decode(engines: Any) -> None:
    reported: list[tuple[float | None, str]] = []
    engines("tiny-ltx-video").generate(_request(steps=3), progress=lambda f, t: reported.append((f, t)))
    fractions = [f for f, _ in reported if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [t for _, t in reported][:3] == ["step 1/3", "step 2/3", "decoding"]


def _tiny_lora(tmp_path: Path) -> Path:
    """A LoRA for the tiny Wan 2.2 TI2V transformer, made with peft and saved as diffusers saves LoRAs."""
    from diffusers import WanImageToVideoPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = build_tiny_pipeline(TINY_FAMILY_NAMES["tiny-wan2.2-ti2v-5b"]).transformer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    WanImageToVideoPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return tmp_path / "pytorch_lora_weights.safetensors"


def test_a_lora_changes_the_video_as_diffusers_applies_it(tmp_path: Path, engines: Any) -> None:
    lora = _tiny_lora(tmp_path)
    plain = engines("tiny-wan2.2-ti2v-5b").generate(_request()).frames
    with LocalEngine("tiny-wan2.2-ti2v-5b", device="cpu", loras=[f"{lora}:0.8"]) as engine:
        adapted = engine.generate(_request()).frames
    with LocalEngine("tiny-wan2.2-ti2v-5b", device="cpu", loras=[(str(lora), 0.0)]) as engine:
        off = engine.generate(_request()).frames
    assert not np.array_equal(plain, adapted)
    assert np.array_equal(plain, off)

    pipe = build_tiny_pipeline(TINY_FAMILY_NAMES["tiny-wan2.2-ti2v-5b"])
    pipe.load_lora_weights(str(lora), adapter_name="a")
    pipe.set_adapters(["a"], adapter_weights=[0.8])
    expected = _reference(
        pipe, "wan", IMAGE, prompt="a cat runs in the rain", negative_prompt=FAMILIES["wan2.2-ti2v-5b"].default_negative_prompt,
        num_frames=9, num_inference_steps=2, guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(7),
    )
    assert np.abs(adapted.astype(int) - expected.astype(int)).max() <= 1


def test_lora_refusals_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as caught:
        LocalEngine("tiny", device="cpu", loras=["x.safetensors"])
    assert caught.value.field == "lora" and "Wan and LTX-Video" in str(caught.value)
    with pytest.raises(ModelError, match="no such LoRA file"):
        LocalEngine("tiny-ltx-video", device="cpu", loras=[str(tmp_path / "missing.safetensors")]).load()
    with pytest.raises(InvalidInputError, match="WEIGHT"):
        LocalEngine("tiny-ltx-video", device="cpu", loras=["a.safetensors:9"])


def test_short_names_map_to_the_official_repositories() -> None:
    expected = {
        "wan2.2-ti2v-5b": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        "wan2.2-i2v-a14b": "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
        "wan2.1-i2v-14b-480p": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        "ltx-video": "Lightricks/LTX-Video",
        "svd-xt": "stabilityai/stable-video-diffusion-img2vid-xt",
        "svd": "stabilityai/stable-video-diffusion-img2vid",
    }
    for name, repo in expected.items():
        ref = identify_model(name)
        assert (ref.kind, ref.location) == ("hub", repo), name
        assert ref.family is not None
    assert identify_model("Wan-AI/Wan2.2-TI2V-5B-Diffusers").family is FAMILIES["wan2.2-ti2v-5b"]
    assert identify_model("someone/unknown-model").family is None


def test_a_short_name_offline_says_how_to_get_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as caught:
        LocalEngine("wan2.2-ti2v-5b", device="cpu").load()
    assert "Wan-AI/Wan2.2-TI2V-5B-Diffusers" in str(caught.value) and "download it once" in str(caught.value)


@pytest.mark.parametrize(("class_name", "settings", "family"), [
    ("WanImageToVideoPipeline", {"expand_timesteps": False, "boundary_ratio": None}, "wan2.1-i2v-14b-480p"),
    ("WanPipeline", {"expand_timesteps": True}, "wan2.2-ti2v-5b"),
    ("LTXPipeline", {}, "ltx-video"),
])
def test_a_folder_s_family_is_read_from_its_index(tmp_path: Path, class_name: str, settings: dict[str, Any], family: str) -> None:
    import json

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": class_name, **settings, "transformer": ["diffusers", "X"]}))
    assert identify_model(str(tmp_path)).family is FAMILIES[family]


@pytest.mark.parametrize("class_name", ["StableDiffusionPipeline", "WanPipeline"])
def test_a_folder_of_another_pipeline_is_one_clear_error(tmp_path: Path, class_name: str) -> None:
    import json

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    with pytest.raises(ModelError) as caught:
        LocalEngine(str(tmp_path), device="cpu")
    message = str(caught.value)
    assert class_name in message and "Wan 2.2 TI2V-5B" in message and "LTX-Video" in message
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "model_index.json"), "--model", str(tmp_path), "--device", "cpu"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_fast_is_a_step_cache_and_low_memory_tiles_the_vae(engines: Any) -> None:
    fast = engines("tiny-wan2.2-ti2v-5b", speed="fast")
    video = fast.generate(_request(steps=4))
    assert video.engine_settings["speed"] == "fast" and video.engine_settings["compiled"] is False
    assert video.num_frames == 9
    assert engines("tiny-ltx-video", speed="fast").generate(_request(steps=4)).engine_settings["speed"] == "fast"
    low = engines("tiny-ltx-video", memory="low")
    video = low.generate(_request())
    assert video.engine_settings["low_memory"] is True and low.pipeline().vae.use_tiling


def test_svd_s_deep_cache_interval_is_refused_for_the_other_families() -> None:
    with pytest.raises(InvalidInputError) as caught:
        LocalEngine("tiny-wan2.2-ti2v-5b", device="cpu", speed="fast", deep_cache_interval=2)
    assert caught.value.field == "deep_cache_interval"


def test_out_of_memory_is_a_clear_error(engines: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engines("tiny-ltx-video")
    engine.load()

    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(type(engine.pipeline()), "__call__", explode)
    with pytest.raises(OutOfMemoryError) as caught:
        engine.generate(_request())
    assert "ran out of memory" in str(caught.value) and "--memory low" in str(caught.value)

