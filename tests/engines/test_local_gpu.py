"""Speed and memory modes on a CUDA GPU (skipped without one; ``bash bench/gpu.sh`` runs them).

They use small random models, so they take seconds plus the compiles; the figures that matter (speed-ups,
8 GiB, warm starts) come from bench/engine.py in the same script.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from img2vid import VideoRequest  # noqa: E402
from img2vid.engines.local import LocalEngine  # noqa: E402
from img2vid.engines.local.components import Components  # noqa: E402
from img2vid.engines.local.configs import TINY_CLIP, TINY_UNET, TINY_VAE  # noqa: E402
from img2vid.engines.local.speed import FP8_MIN_CAPABILITY, fp8_linear_filter  # noqa: E402
from img2vid.engines.local.tiny import _scheduler, build_models, build_tiny  # noqa: E402
from img2vid.errors import InvalidInputError  # noqa: E402
from support.local import small_image  # noqa: E402

pytestmark = pytest.mark.gpu

#: bf16 compiled against bf16 eager: fused kernels round differently, so frames may differ more than on
#: the CPU's fp32; a broken compile differs by tens of levels.
MAX_MEAN_LEVELS = 2.0


@pytest.fixture(autouse=True)
def _private_compile_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMG2VID_COMPILE_CACHE", str(tmp_path_factory.getbasetemp() / "img2vid-compile"))


def _request(**options: object) -> VideoRequest:
    base: dict[str, object] = {"image": small_image(1), "seed": 9, "frames": 2, "steps": 3, "cfg_scale": 2.5}
    base.update(options)
    return VideoRequest(**base)  # type: ignore[arg-type]


def _mean_levels(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _wide_tiny() -> Components:
    """Tiny's structure with 320/640 channels, so the UNet has Linear layers FP8 quantises."""
    unet_config = {**TINY_UNET, "block_out_channels": [320, 640], "num_attention_heads": [5, 10], "cross_attention_dim": 32}
    unet, vae, clip = build_models(unet_config, TINY_VAE, TINY_CLIP)
    return Components(unet=unet, vae=vae, image_encoder=clip, scheduler=_scheduler(), source="wide tiny", default_frames=2, default_steps=2)


@pytest.fixture(scope="module")
def eager() -> Iterator[LocalEngine]:
    yield LocalEngine("tiny", device="cuda", speed="eager")


def test_compiled_matches_eager_on_the_gpu(eager: LocalEngine) -> None:
    compiled = LocalEngine("tiny", device="cuda", speed="compiled", warm_up=(192, 128))
    ours = compiled.generate(_request())
    theirs = eager.generate(_request())
    assert ours.engine_settings["compiled"] is True and ours.engine_settings["device"] == "cuda"
    assert _mean_levels(ours.frames, theirs.frames) <= MAX_MEAN_LEVELS
    assert compiled.compile_cache is not None and compiled.compile_cache.files()


def test_compiled_is_the_default_on_cuda() -> None:
    assert LocalEngine("tiny", device="cuda").speed.mode == "compiled"


def test_fast_reuses_features_and_reports_it(eager: LocalEngine) -> None:
    fast = LocalEngine("tiny", device="cuda", speed="fast", warm_up=(192, 128), deep_cache_interval=2)
    video = fast.generate(_request())
    assert video.engine_settings["deep_cache_interval"] == 2
    assert not np.array_equal(video.frames, eager.generate(_request()).frames)


def test_fp8_runs_where_the_gpu_supports_it_and_refuses_elsewhere() -> None:
    capability = torch.cuda.get_device_capability()
    if capability < FP8_MIN_CAPABILITY:
        with pytest.raises(InvalidInputError, match=f"compute capability {capability[0]}.{capability[1]}"):
            LocalEngine("tiny", device="cuda", speed="fp8")
        return
    pytest.importorskip("torchao")
    parts = _wide_tiny()
    wide = sum(1 for m in parts.unet.modules() if fp8_linear_filter(m))
    assert wide > 0
    reference = LocalEngine.from_components(_wide_tiny(), device="cuda", speed="eager").generate(_request())
    engine = LocalEngine.from_components(parts, device="cuda", speed="fp8", warm_up=(192, 128))
    video = engine.generate(_request())
    assert video.engine_settings["fp8"] is True
    # Quantised layers compute other numbers than bf16 ones, but close to them.
    assert not np.array_equal(video.frames, reference.frames)
    assert _mean_levels(video.frames, reference.frames) <= 20.0  # unrelated noise frames differ by ~40 or more


def test_low_memory_offloads_and_uses_less_gpu_memory(eager: LocalEngine) -> None:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    eager.generate(_request(frames=4))
    auto_peak = torch.cuda.max_memory_allocated()
    low = LocalEngine("tiny", device="cuda", speed="eager", memory="low")
    torch.cuda.reset_peak_memory_stats()
    video = low.generate(_request(frames=4))
    assert video.engine_settings["offload"] is True and video.engine_settings["decode_chunk"] == 2
    assert torch.cuda.max_memory_allocated() < auto_peak
    # Between runs the weights are back on the CPU.
    assert next(low.components().unet.parameters()).device.type == "cpu"


def test_a_second_engine_starts_from_the_compile_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMG2VID_COMPILE_CACHE", str(tmp_path / "cache"))
    first = LocalEngine.from_components(build_tiny(), device="cuda", speed="compiled", warm_up=(192, 128))
    first.load()
    assert first.compile_cache is not None and first.compile_cache.files()
    second = LocalEngine.from_components(build_tiny(), device="cuda", speed="compiled", warm_up=(192, 128))
    assert second.compile_cache is not None and second.compile_cache.folder == first.compile_cache.folder
    assert second.compile_cache.loaded_files >= 1
