"""Speed modes of the local engine: ``eager``, ``compiled``, ``fp8`` and ``fast``, resolved to what a run does.

A mode is a name a user picks; :class:`SpeedPlan` is what it means on this device: whether the UNet's and
the VAE decoder's blocks are compiled with ``torch.compile``, whether the UNet's Linear layers run in FP8
(torchao), and whether the UNet's deep features are reused across steps (DeepCache, see ``deep_cache``).
:func:`resolve_speed` checks the name and the hardware before anything is loaded, so a wrong choice is a
clear ``InvalidInputError`` at once, never a failure minutes into a compile. :func:`apply_speed` changes the
loaded modules in place. This module never chooses a device and never loads a model.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import InvalidInputError
from ..modes import SPEED_MODES

__all__ = [
    "SPEEDS",
    "SpeedPlan",
    "resolve_speed",
    "apply_speed",
    "fp8_linear_filter",
    "DEFAULT_DEEP_CACHE_INTERVAL",
    "FP8_MIN_CAPABILITY",
]

log = logging.getLogger("img2vid.engines.local")

SPEEDS = SPEED_MODES
_ALLOWED = ", ".join(SPEEDS[:-1]) + " or " + SPEEDS[-1]
#: FP8 matrix multiplies need Ada (8.9), Hopper (9.0) or newer.
FP8_MIN_CAPABILITY = (8, 9)
#: ``fast``: the whole UNet runs on every third step; the steps between reuse its deep features.
DEFAULT_DEEP_CACHE_INTERVAL = 3
#: torchao's FP8 kernels want Linear layers at least this wide, with both sizes multiples of 16.
FP8_MIN_IN_FEATURES = 320


@dataclass(frozen=True)
class SpeedPlan:
    """What a speed mode means on one device."""

    #: The mode asked for (or chosen by default).
    mode: str
    #: Compile the UNet's and the VAE decoder's blocks with torch.compile (inductor).
    compile: bool
    #: Quantise the UNet's wide Linear layers to FP8 (torchao, row-wise scales).
    fp8: bool
    #: Run the whole UNet every N steps and only its shallow blocks in between; 0: every step in full.
    deep_cache_interval: int = 0


def resolve_speed(requested: str | None, device: torch.device, *, deep_cache_interval: int | None = None) -> SpeedPlan:
    """The plan for ``requested`` on ``device``; ``None`` means ``compiled`` on CUDA (with Triton installed)
    and ``eager`` elsewhere.

    Compiling needs inductor's CUDA or CPU backend: on Apple's MPS, ``compiled`` and ``fast`` fall back to
    no compile (``fast`` keeps its feature reuse), which the Video's settings show. ``fp8`` refuses
    anywhere but a CUDA GPU of compute capability 8.9 or newer, and without torchao installed.
    """
    if requested is None or (isinstance(requested, str) and not requested.strip()):
        # Compiling on a GPU needs Triton, which some installs lack (Windows, mostly): then eager is the default.
        mode = "compiled" if device.type == "cuda" and _has_triton() else "eager"
    elif not isinstance(requested, str) or requested.strip().lower() not in SPEEDS:
        raise InvalidInputError.for_field("speed", requested, _ALLOWED)
    else:
        mode = requested.strip().lower()
    interval = DEFAULT_DEEP_CACHE_INTERVAL if deep_cache_interval is None else deep_cache_interval
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= 50:
        raise InvalidInputError.for_field("deep_cache_interval", deep_cache_interval, "an integer from 1 to 50")
    if mode == "fp8":
        check_fp8(device)
    if mode != "eager" and device.type == "cuda" and not _has_triton():
        raise InvalidInputError(
            f"speed {mode!r} compiles with torch.compile, which needs Triton on a GPU, and Triton is not installed: "
            "pip install triton (triton-windows on Windows), or use speed 'eager'",
            field="speed",
            value=mode,
            allowed="eager without Triton",
        )
    can_compile = device.type in ("cuda", "cpu")
    if mode != "eager" and not can_compile:
        log.warning("speed %r: torch.compile is not used on %s; running without it", mode, device)
    return SpeedPlan(
        mode=mode,
        compile=mode != "eager" and can_compile,
        fp8=mode == "fp8",
        deep_cache_interval=interval if mode == "fast" else 0,
    )


def _has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def check_fp8(device: torch.device) -> None:
    """Refuse FP8 where it cannot run, naming the GPU and its compute capability, or the missing package."""
    needed = ".".join(map(str, FP8_MIN_CAPABILITY))
    if device.type != "cuda":
        raise InvalidInputError(
            f"speed 'fp8' needs an NVIDIA GPU of compute capability {needed} or newer (Ada, Hopper, Blackwell); "
            f"this engine runs on the {device.type}: use speed 'compiled' or 'eager'",
            field="speed",
            value="fp8",
            allowed="eager, compiled or fast on this device",
        )
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise InvalidInputError(
            f"speed 'fp8' needs an NVIDIA GPU of compute capability {needed} or newer (Ada, Hopper, Blackwell); "
            f"{name} has compute capability {major}.{minor}: use speed 'compiled'",
            field="speed",
            value="fp8",
            allowed="eager, compiled or fast on this GPU",
        )
    if importlib.util.find_spec("torchao") is None:
        raise InvalidInputError(
            "speed 'fp8' needs torchao, which is not installed: pip install 'img2vid[fp8]' (or pip install torchao)",
            field="speed",
            value="fp8",
            allowed="eager, compiled or fast without torchao",
        )


def fp8_linear_filter(module: torch.nn.Module, _fqn: str = "") -> bool:
    """The Linear layers worth FP8: wide enough to gain, and shaped as torchao's FP8 kernels require."""
    if not isinstance(module, torch.nn.Linear):
        return False
    return (
        module.in_features >= FP8_MIN_IN_FEATURES and module.in_features % 16 == 0 and module.out_features % 16 == 0
    )


def apply_speed(parts: Any, plan: SpeedPlan) -> None:
    """Quantise (``fp8``) and mark blocks for compiling, in place; the compiling itself happens on first use.

    FP8 comes first, so that the compiled graphs are the quantised ones.
    """
    if plan.fp8:
        quantise_fp8(parts.unet)
    if plan.compile:
        from .compiling import compile_regions

        compiled = compile_regions(parts)
        log.info("speed %s: %d blocks of the UNet and the VAE decoder will be compiled on first use", plan.mode, compiled)


def quantise_fp8(unet: torch.nn.Module) -> int:
    """FP8 weights and dynamic FP8 activations, row-wise scales, for the UNet's qualifying Linear layers."""
    from torchao.quantization import (  # pyright: ignore[reportMissingImports]  (the fp8 extra; checked before use)
        Float8DynamicActivationFloat8WeightConfig,
        PerRow,
        quantize_,
    )

    count = sum(1 for module in unet.modules() if fp8_linear_filter(module))
    quantize_(unet, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=fp8_linear_filter)
    log.info("speed fp8: %d Linear layers of the UNet quantised to FP8 (row-wise)", count)
    return count
