"""Speed and memory settings of the local engine on the CPU, without compiling: validation, refusals,
memory plans, deep-feature reuse, the compile cache's files, and the settings a Video reports."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from img2vid import VideoRequest  # noqa: E402
from img2vid.engines.local import LocalEngine  # noqa: E402
from img2vid.engines.local.compile_cache import CompileCache, cache_key, default_cache_folder  # noqa: E402
from img2vid.engines.local.compiling import regions_of  # noqa: E402
from img2vid.engines.local.deep_cache import DeepCacheStepper, svd_unet_forward  # noqa: E402
from img2vid.engines.local.device import GIB  # noqa: E402
from img2vid.engines.local.memory import LOW_DECODE_CHUNK, plan_memory  # noqa: E402
from img2vid.engines.local.pipeline import Placement, SVDParams, run_svd  # noqa: E402
from img2vid.engines.local.speed import fp8_linear_filter, resolve_speed  # noqa: E402
from img2vid.errors import InvalidInputError  # noqa: E402
from support.local import small_image  # noqa: E402

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


# ------------------------------------------------------------------------------------------ speed


def test_default_speed_is_eager_on_the_cpu_and_compiled_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "triton" else real_find_spec(name, *a))
    assert resolve_speed(None, CPU).mode == "eager"
    plan = resolve_speed(None, CUDA)
    assert (plan.mode, plan.compile, plan.fp8, plan.deep_cache_interval) == ("compiled", True, False, 0)


def test_without_triton_a_gpu_defaults_to_eager_and_refuses_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real_find_spec(name, *a))
    assert resolve_speed(None, CUDA).mode == "eager"
    with pytest.raises(InvalidInputError) as caught:
        resolve_speed("compiled", CUDA)
    assert caught.value.field == "speed" and "pip install triton" in str(caught.value)
    assert resolve_speed("compiled", CPU).compile is True  # the CPU compiles with a C++ compiler instead


def test_each_mode_means_what_the_readme_says() -> None:
    assert resolve_speed("eager", CPU).compile is False
    assert resolve_speed("Compiled", CPU).compile is True
    fast = resolve_speed("fast", CPU, deep_cache_interval=4)
    assert (fast.compile, fast.fp8, fast.deep_cache_interval) == (True, False, 4)
    # On Apple's MPS inductor does not compile: the documented fallback keeps the feature reuse only.
    mps = resolve_speed("fast", torch.device("mps"))
    assert (mps.compile, mps.deep_cache_interval) == (False, 3)


@pytest.mark.parametrize("bad", ["turbo", "", 3, "fp16"])
def test_an_unknown_speed_is_refused_naming_the_field_and_choices(bad: object) -> None:
    if bad == "":
        assert resolve_speed(bad, CPU).mode == "eager"  # blank means "the default", like an unset variable
        return
    with pytest.raises(InvalidInputError) as caught:
        resolve_speed(bad, CPU)  # type: ignore[arg-type]
    assert caught.value.field == "speed"
    assert "eager, compiled, fp8 or fast" in str(caught.value)


@pytest.mark.parametrize("bad", [0, -1, 51, 2.5, True])
def test_a_bad_deep_cache_interval_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError) as caught:
        resolve_speed("fast", CPU, deep_cache_interval=bad)  # type: ignore[arg-type]
    assert caught.value.field == "deep_cache_interval"


def test_fp8_refuses_the_cpu_naming_the_capability_it_needs() -> None:
    with pytest.raises(InvalidInputError) as caught:
        resolve_speed("fp8", CPU)
    message = str(caught.value)
    assert caught.value.field == "speed" and "8.9" in message and "cpu" in message and "compiled" in message


def test_fp8_refuses_an_older_gpu_naming_it_and_its_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA GeForce RTX 3090")
    with pytest.raises(InvalidInputError) as caught:
        resolve_speed("fp8", CUDA)
    message = str(caught.value)
    assert "NVIDIA GeForce RTX 3090 has compute capability 8.6" in message and "8.9" in message


def test_fp8_on_a_capable_gpu_without_torchao_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real_find_spec(name, *a))
    with pytest.raises(InvalidInputError) as caught:
        resolve_speed("fp8", CUDA)
    assert "img2vid[fp8]" in str(caught.value)


def test_fp8_takes_only_wide_linear_layers_with_sizes_divisible_by_16() -> None:
    assert fp8_linear_filter(torch.nn.Linear(320, 1280))
    assert not fp8_linear_filter(torch.nn.Linear(256, 1280))  # too narrow to gain
    assert not fp8_linear_filter(torch.nn.Linear(1000, 1280))  # not a multiple of 16
    assert not fp8_linear_filter(torch.nn.Linear(1280, 1000))
    assert not fp8_linear_filter(torch.nn.Conv2d(320, 320, 3))


def test_settings_are_checked_when_the_engine_is_built_not_when_it_runs() -> None:
    with pytest.raises(InvalidInputError) as speed:
        LocalEngine("tiny", device="cpu", speed="warp")
    with pytest.raises(InvalidInputError) as memory:
        LocalEngine("tiny", device="cpu", memory="tiny")
    with pytest.raises(InvalidInputError) as fp8:
        LocalEngine("tiny", device="cpu", speed="fp8")
    with pytest.raises(InvalidInputError) as warm_up:
        LocalEngine("tiny", device="cpu", warm_up=(100, 50))
    assert (speed.value.field, memory.value.field, fp8.value.field, warm_up.value.field) == (
        "speed", "memory", "speed", "warm_up"
    )
    assert "auto or low" in str(memory.value)


def test_engines_with_other_settings_are_not_shared() -> None:
    eager = LocalEngine.shared("tiny", device="cpu", speed="eager")
    assert LocalEngine.shared("tiny", device="cpu") is eager  # eager is the CPU's default
    assert LocalEngine.shared("tiny", device="cpu", memory="low") is not eager
    assert LocalEngine.shared("tiny", device="cpu", speed="fast") is not eager


# ----------------------------------------------------------------------------------------- memory


def test_low_memory_offloads_chunks_and_caps_the_decode_on_a_gpu() -> None:
    plan = plan_memory("low", CUDA, weight_bytes=4 * GIB, free=70 * GIB)
    assert (plan.low, plan.offload, plan.forward_chunking, plan.decode_chunk_cap) == (True, True, True, LOW_DECODE_CHUNK)


def test_auto_picks_low_only_when_free_memory_is_short() -> None:
    ample = plan_memory("auto", CUDA, weight_bytes=4 * GIB, free=70 * GIB)
    short = plan_memory(None, CUDA, weight_bytes=4 * GIB, free=6 * GIB)
    assert (ample.low, ample.offload, ample.decode_chunk_cap) == (False, False, None)
    assert (short.mode, short.low, short.offload, short.forward_chunking) == ("auto", True, True, True)


def test_an_explicit_offload_wins_in_auto_and_contradicting_low_is_an_error() -> None:
    assert plan_memory("auto", CUDA, 4 * GIB, 6 * GIB, offload=False).offload is False
    assert plan_memory("auto", CUDA, 4 * GIB, 70 * GIB, offload=True).offload is True
    with pytest.raises(InvalidInputError) as caught:
        plan_memory("low", CUDA, 4 * GIB, 70 * GIB, offload=False)
    assert caught.value.field == "offload"


def test_low_memory_on_the_cpu_keeps_the_model_in_place() -> None:
    plan = plan_memory("low", CPU, 4 * GIB, 70 * GIB)
    assert (plan.offload, plan.forward_chunking, plan.decode_chunk_cap) == (False, True, LOW_DECODE_CHUNK)


def test_low_memory_run_reports_its_settings_and_matches_auto_frames() -> None:
    request = VideoRequest(image=small_image(), seed=11, frames=2, steps=2)
    auto = LocalEngine("tiny", device="cpu").generate(request)
    low_engine = LocalEngine("tiny", device="cpu", memory="low")
    low = low_engine.generate(request)
    assert low.engine_settings["low_memory"] is True and low.engine_settings["forward_chunking"] is True
    assert low.engine_settings["decode_chunk"] == 2 and low.engine_settings["memory"] == "low"
    assert all(block._chunk_size == 1 for block in low_engine.components().unet.modules() if hasattr(block, "_chunk_size"))
    # Chunked feed-forward computes the same numbers, in pieces.
    assert np.abs(low.frames.astype(np.int16) - auto.frames.astype(np.int16)).max() <= 1
    assert auto.engine_settings == {
        "device": "cpu", "dtype": "float32", "speed": "eager", "compiled": False, "fp8": False,
        "deep_cache_interval": 0, "memory": "auto", "low_memory": False, "offload": False,
        "forward_chunking": False, "decode_chunk": 2, "family": "tiny", "loras": 0,
    }


def test_low_memory_caps_the_decode_chunk_unless_the_request_sets_one() -> None:
    engine = LocalEngine("tiny", device="cpu", memory="low")
    texts: list[str] = []
    engine.generate(VideoRequest(image=small_image(), seed=2, frames=5, steps=1), progress=lambda f, t: texts.append(t))
    assert [t for t in texts if t.startswith("decoding")] == [
        "decoding frames 1-2/5", "decoding frames 3-4/5", "decoding frames 5-5/5"
    ]
    asked = engine.generate(VideoRequest(image=small_image(), seed=2, frames=5, steps=1, decode_chunk_size=5))
    assert asked.engine_settings["decode_chunk"] == 5


# ------------------------------------------------------------------------------- deep-feature reuse


def _unet_inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 2, 8, 16, 24, generator=generator)
    context = torch.randn(2, 1, 32, generator=generator)
    time_ids = torch.tensor([[6.0, 127.0, 0.02]] * 2)
    return sample, torch.tensor(700.0), context, time_ids


@torch.no_grad()
def test_the_split_unet_forward_equals_diffusers_forward(tiny_parts: object) -> None:
    unet = tiny_parts.unet  # type: ignore[attr-defined]
    sample, t, context, time_ids = _unet_inputs()
    theirs = unet(sample, t, encoder_hidden_states=context, added_time_ids=time_ids, return_dict=False)[0]
    ours, deep = svd_unet_forward(unet, sample, t, context, time_ids)
    assert torch.equal(ours, theirs)
    # Reusing the feature it just computed gives the same answer: the shallow path is the same code.
    again, _ = svd_unet_forward(unet, sample, t, context, time_ids, deep_feature=deep)
    assert torch.equal(again, theirs)


@torch.no_grad()
def test_deep_cache_runs_the_whole_unet_every_n_steps_and_reuses_in_between(tiny_parts: object) -> None:
    unet = tiny_parts.unet  # type: ignore[attr-defined]
    stepper = DeepCacheStepper(unet, interval=2)
    outputs = []
    for index in range(5):
        sample, t, context, time_ids = _unet_inputs(index)
        outputs.append(stepper(index, sample, t, context, time_ids))
    assert stepper.full_steps == 3  # steps 0, 2 and 4
    sample, t, context, time_ids = _unet_inputs(1)
    full = unet(sample, t, encoder_hidden_states=context, added_time_ids=time_ids, return_dict=False)[0]
    assert not torch.equal(outputs[1], full)  # step 1 reused step 0's deep features


@torch.no_grad()
def test_with_reuse_off_or_every_step_full_the_frames_equal_the_plain_run(tiny_parts: object) -> None:
    image = small_image(5)
    params = SVDParams(frames=2, steps=3, fps=7, motion_bucket_id=127, noise_aug_strength=0.02,
                       min_guidance_scale=1.0, max_guidance_scale=2.5, decode_chunk_size=2)
    placement = Placement(device=CPU, dtype=torch.float32)

    def frames(interval: int) -> np.ndarray:
        return run_svd(tiny_parts, image, params, torch.Generator().manual_seed(3), placement, deep_cache_interval=interval).frames

    plain, every_step, reused = frames(0), frames(1), frames(2)
    assert np.array_equal(plain, every_step)
    assert not np.array_equal(plain, reused)


# ----------------------------------------------------------------------------------- compile cache


def test_compile_cache_key_follows_torch_device_dtype_fp8_and_model(tiny_parts: object) -> None:
    key, facts = cache_key(tiny_parts, CPU, torch.float32, fp8=False)
    assert facts["torch"] == torch.__version__ and facts["unet"]["block_out_channels"] == [32, 64]
    assert cache_key(tiny_parts, CPU, torch.float32, fp8=False)[0] == key
    assert cache_key(tiny_parts, CPU, torch.bfloat16, fp8=False)[0] != key
    assert cache_key(tiny_parts, CPU, torch.float32, fp8=True)[0] != key


def test_compile_cache_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMG2VID_COMPILE_CACHE", str(tmp_path / "cc"))
    assert default_cache_folder() == tmp_path / "cc"
    monkeypatch.delenv("IMG2VID_COMPILE_CACHE")
    assert default_cache_folder().parts[-2:] == ("img2vid", "compile")


def test_a_damaged_cache_file_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = CompileCache(tmp_path, "abc", {})
    cache.folder.mkdir(parents=True)
    (cache.folder / "broken.bin").write_bytes(b"not torch artefacts")
    with caplog.at_level(logging.WARNING, logger="img2vid.engines.local"):
        assert cache.load() == 0
    assert "skipping" in caplog.text and "broken.bin" in caplog.text


def test_regions_are_the_residual_and_attention_blocks_never_nested(tiny_parts: object) -> None:
    unet = tiny_parts.unet  # type: ignore[attr-defined]
    regions = regions_of(unet)
    names = {type(block).__name__ for block in regions}
    assert names == {"SpatioTemporalResBlock", "TransformerSpatioTemporalModel"}
    # Nothing chosen sits inside another chosen block.
    inner = {id(m) for block in regions for m in block.modules() if m is not block}
    assert not any(id(block) in inner for block in regions)
    decoder = regions_of(tiny_parts.vae.decoder)  # type: ignore[attr-defined]
    assert decoder and all("Res" in type(block).__name__ or "Attention" in type(block).__name__ for block in decoder)


# --------------------------------------------------------------------------------- front doors


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.png"
    Image.fromarray(small_image()).save(path)
    return path


def test_cli_refuses_fp8_on_the_cpu_with_the_reason(image_file: Path, tmp_path: Path) -> None:
    from img2vid.cli import app

    result = CliRunner().invoke(
        app, ["generate", str(image_file), "--model", "tiny", "--device", "cpu", "--speed", "fp8", "-o", str(tmp_path / "x.mp4")]
    )
    assert result.exit_code == 2
    assert "compute capability 8.9" in result.output


def test_cli_low_memory_run_says_which_modes_it_used(image_file: Path, tmp_path: Path) -> None:
    from img2vid.cli import app

    result = CliRunner().invoke(
        app,
        ["generate", str(image_file), "--model", "tiny", "--device", "cpu", "--memory", "low", "--speed", "eager",
         "--steps", "1", "-o", str(tmp_path / "x.mp4")],
    )
    assert result.exit_code == 0, result.output
    assert "speed eager, memory low" in result.output


def test_server_and_worker_settings_reach_the_local_engine(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    from img2vid.jobs.engines import engine_factory_for
    from img2vid.jobs.settings import load_settings

    settings = load_settings(data=tmp_path, model="tiny", device="cpu", speed="fast", memory="low", workers=2)
    engine = engine_factory_for(settings)()
    assert (engine.speed.mode, engine.memory_mode) == ("fast", "low")
