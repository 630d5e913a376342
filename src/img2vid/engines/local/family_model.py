"""A loaded Wan or LTX-Video model and one run of it: diffusers' own pipeline, driven the engine's way.

The text-conditioned families run through diffusers' pipelines (``WanImageToVideoPipeline``,
``LTXImageToVideoPipeline``) rather than a copy of their loops: the pipelines are the reference the
families' authors maintain, so a run here is diffusers' run (the tests hold the frames to it). What this
module adds around them: loading from a folder, the hub or the tiny factory with errors that say what to
do; LoRA files; the speed modes (regional ``torch.compile``, FP8, a first-block step cache) and memory
modes (model offload, VAE tiling); progress after every step and cancellation within one step through the
pipeline's ``callback_on_step_end``; and frames returned as uint8 with the run's phase timings. It never
chooses a device or a family: the engine hands it both.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import CancelledError, ModelError
from ...families import Family
from ..base import CancelCheck, ProgressCallback
from .memory import MemoryPlan
from .speed import SpeedPlan, quantise_fp8

__all__ = ["LoRA", "FamilyParams", "FamilyRun", "load_pipeline", "prepare_pipeline", "run_pipeline", "pipeline_weight_bytes"]

log = logging.getLogger("img2vid.engines.local")


class _QuietTorchvisionFallback(logging.Filter):
    """transformers warns that CLIP's image processor "requires torchvision" whenever Wan 2.1's pipeline is
    imported without it, then uses its PIL twin. img2vid never installs torchvision on purpose, and the
    PIL processor is the one it wants: the notice would only alarm a user, so it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_QuietTorchvisionFallback())

#: ``fast``: a step reuses the previous step's output of the later blocks while the first block's output
#: changes by less than this (relative L1); diffusers' recommended starting point for Wan and LTX.
FIRST_BLOCK_CACHE_THRESHOLD = 0.05

_WHAT_TO_DO = "pass --model a diffusers folder or a short name (wan2.2-ti2v-5b, ltx-video, ...), or a tiny-* model for an offline smoke run"


@dataclass(frozen=True)
class LoRA:
    """A LoRA file and its weight (1.0: as trained; 0: off)."""

    path: str
    weight: float = 1.0


@dataclass(frozen=True)
class FamilyParams:
    """Every argument one run passes to the pipeline, resolved from the request and the family's defaults."""

    prompt: str
    negative_prompt: str | None
    frames: int
    steps: int
    fps: int
    cfg_scale: float


@dataclass
class FamilyRun:
    """The frames (T×H×W×3 uint8) and the seconds of each phase: ``encode`` (text, image, latents),
    ``denoise`` (every step) and ``decode`` (the VAE)."""

    frames: np.ndarray
    timings: dict[str, float]


def _pipeline_class(family: Family) -> Any:
    from diffusers import LTXImageToVideoPipeline, WanImageToVideoPipeline

    return LTXImageToVideoPipeline if family.kind == "ltx" else WanImageToVideoPipeline


def load_pipeline(folder: Path, family: Family, *, source: str, half: bool) -> Any:
    """The family's pipeline from a diffusers folder, on the CPU in the weights' own dtype.

    The image-to-video class is used whatever the folder's index names (Wan 2.2 TI2V-5B and LTX-Video ship
    as their text-to-video pipelines, with the same components).
    """
    pipeline_class = _pipeline_class(family)
    variant = "fp16" if half and any(folder.glob("transformer/*.fp16.safetensors")) else None
    try:
        pipe = pipeline_class.from_pretrained(folder, variant=variant)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, json.JSONDecodeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"cannot load the {family.title} model in {source}: {first}; the folder may be incomplete or corrupt "
            "(download it again, or save it again with save_pretrained)"
        ) from error
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_weight_bytes(pipe: Any, dtype: torch.dtype) -> int:
    """The weights' size in ``dtype``: every module of the pipeline (memory planning reads it)."""
    values = sum(p.numel() for module in _modules(pipe) for p in module.parameters())
    return values * torch.finfo(dtype).bits // 8


def _modules(pipe: Any) -> list[torch.nn.Module]:
    return [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]


def _transformers(pipe: Any) -> list[Any]:  # diffusers' transformer models (their own methods, not nn.Module's)
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


def prepare_pipeline(
    pipe: Any,
    family: Family,
    *,
    device: torch.device,
    dtype: torch.dtype,
    memory: MemoryPlan,
    speed: SpeedPlan,
    loras: Sequence[LoRA] = (),
) -> Any:
    """Cast and place the pipeline, load its LoRAs, and apply the memory and speed modes, in place.

    Order matters: LoRAs go in before FP8 and compiling, so the quantised and compiled layers are the
    adapted ones. Wan's VAE stays in fp32 as Wan's authors run it (it is small and its decode in half
    precision bands); everything else takes ``dtype``.
    """
    pipe.set_progress_bar_config(disable=True)  # progress goes through the engine's callback
    for name, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        wanted = torch.float32 if (name == "vae" and family.kind == "wan") else dtype
        if module.dtype != wanted:
            module.to(dtype=wanted)
        module.eval().requires_grad_(False)
    _load_loras(pipe, family, loras)
    if memory.offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if memory.low:
        pipe.vae.enable_tiling()
    for transformer in _transformers(pipe):
        if speed.fp8:
            quantise_fp8(transformer)
        if speed.mode == "fast":
            from diffusers import FirstBlockCacheConfig

            transformer.enable_cache(FirstBlockCacheConfig(threshold=FIRST_BLOCK_CACHE_THRESHOLD))
        elif speed.compile:
            # Regional compilation: each repeated block once, so a cold start compiles one block, not 30.
            transformer.compile_repeated_blocks(fullgraph=True)
    return pipe


def _load_loras(pipe: Any, family: Family, loras: Sequence[LoRA]) -> None:
    if not loras:
        return
    names: list[str] = []
    for index, lora in enumerate(loras):
        path = Path(lora.path).expanduser()
        if not path.is_file():
            raise ModelError(f"no such LoRA file: {lora.path} (give --lora a .safetensors file, optionally FILE:WEIGHT)")
        name = f"lora_{index}"
        try:
            pipe.load_lora_weights(str(path), adapter_name=name)
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(
                f"cannot load the LoRA {path.name} into {family.title}: {first}; is it a LoRA for this model family?"
            ) from error
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
    log.info("LoRA: %s", ", ".join(f"{Path(lora.path).name} x{lora.weight:g}" for lora in loras))


class _Clock:
    """Phase boundaries from the step callbacks: encode ends at the first step's start (estimated from the
    first step's end), denoise at the last step's end, decode when the pipeline returns."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.started = time.perf_counter()
        self.step_ends: list[float] = []

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def phases(self, finished: float) -> dict[str, float]:
        if not self.step_ends:
            return {"encode": 0.0, "denoise": 0.0, "decode": finished - self.started}
        ends = self.step_ends
        per_step = (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else 0.0
        denoise_start = max(self.started, ends[0] - per_step)
        return {
            "encode": denoise_start - self.started,
            "denoise": ends[-1] - denoise_start,
            "decode": finished - ends[-1],
        }


@torch.no_grad()
def run_pipeline(
    pipe: Any,
    family: Family,
    image: np.ndarray,
    params: FamilyParams,
    generator: torch.Generator,
    device: torch.device,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> FamilyRun:
    """Frames animating ``image`` (H×W×3 uint8, already at a size the family accepts).

    The arguments are exactly those a user of diffusers would pass for the same request (the image as a
    PIL image, its own height and width, the rest as given), so the frames equal diffusers' own.
    """
    from PIL import Image

    height, width = image.shape[:2]
    clock = _Clock(device)
    total_units = params.steps + 1  # every step, then the decode

    def on_step_end(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        clock.step_ends.append(clock.now())
        if progress is not None:
            done = step + 1
            text = f"step {done}/{params.steps}" if done < params.steps else "decoding"
            progress(done / total_units, text)
        if cancel is not None and cancel():
            raise CancelledError("cancelled by the user")
        return tensors

    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user")
    arguments: dict[str, Any] = {
        "image": Image.fromarray(image),
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "height": height,
        "width": width,
        "num_frames": params.frames,
        "num_inference_steps": params.steps,
        "guidance_scale": params.cfg_scale,
        "generator": generator,
        "output_type": "np",
        "callback_on_step_end": on_step_end,
    }
    if family.kind == "ltx":
        arguments["frame_rate"] = params.fps
    output = pipe(**arguments)
    video = np.asarray(output.frames[0])  # T×H×W×3 floats in 0..1
    frames = (video * 255.0).round().clip(0, 255).astype(np.uint8)
    if progress is not None:
        progress(1.0, "done")
    return FamilyRun(frames=np.ascontiguousarray(frames), timings=clock.phases(clock.now()))
