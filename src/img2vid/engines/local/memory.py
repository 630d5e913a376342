"""Memory modes of the local engine: ``auto`` and ``low``, resolved to what a run does.

``low`` is the recipe that keeps SVD-XT at 1024x576, 25 frames under 8 GiB of GPU memory: model offload
(each component on the GPU only while it runs), the VAE decoding two frames at a time, and the UNet's
feed-forward layers run one frame (or one frame's tokens) at a time (``enable_forward_chunking``), which
bounds their activations, the largest in the step. ``auto`` is the full-speed placement when the GPU's
free memory holds the weights and a run's work, and ``low`` when it does not. :func:`plan_memory` only
decides; the engine applies the plan. Bad names are ``InvalidInputError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InvalidInputError
from ..modes import MEMORY_MODES
from .device import choose_offload

__all__ = ["MEMORY_MODES", "MemoryPlan", "plan_memory", "LOW_DECODE_CHUNK"]

#: Frames the VAE decodes at once in ``low`` (the temporal decoder still mixes each pair).
LOW_DECODE_CHUNK = 2


@dataclass(frozen=True)
class MemoryPlan:
    """What a memory mode means for one model on one device."""

    #: The mode asked for: ``auto`` or ``low``.
    mode: str
    #: Whether the low-memory recipe is in force (asked for, or chosen by ``auto``).
    low: bool
    #: Keep components on the CPU and move each to the GPU only while it runs.
    offload: bool
    #: Run the UNet's feed-forward layers in chunks (``unet.enable_forward_chunking``).
    forward_chunking: bool
    #: The most frames the VAE decodes at once; None: as many as free memory allows.
    decode_chunk_cap: int | None


def resolve_memory_mode(requested: str | None) -> str:
    """``auto`` or ``low``; None or blank means ``auto``."""
    if requested is None or (isinstance(requested, str) and not requested.strip()):
        return "auto"
    if not isinstance(requested, str) or requested.strip().lower() not in MEMORY_MODES:
        raise InvalidInputError.for_field("memory", requested, " or ".join(MEMORY_MODES))
    return requested.strip().lower()


def plan_memory(
    requested: str | None,
    device: torch.device,
    weight_bytes: int,
    free: int | None,
    offload: bool | None = None,
) -> MemoryPlan:
    """The plan for ``requested`` given the weights' size and the device's free memory.

    ``offload`` is the engine's explicit offload option: it still wins in ``auto``, and contradicting
    ``low`` (``offload=False``) is an error rather than a silent choice of one over the other.
    """
    mode = resolve_memory_mode(requested)
    on_gpu = device.type == "cuda"
    if mode == "low":
        if offload is False:
            raise InvalidInputError(
                "memory 'low' offloads the model between stages, but offload=False was asked for: drop one of them",
                field="offload",
                value=False,
                allowed="True or None with memory 'low'",
            )
        return MemoryPlan(mode, low=True, offload=on_gpu, forward_chunking=True, decode_chunk_cap=LOW_DECODE_CHUNK)
    short = choose_offload(device, weight_bytes, free, None)
    if offload is not None:
        return MemoryPlan(mode, low=False, offload=bool(offload), forward_chunking=False, decode_chunk_cap=None)
    if short:
        return MemoryPlan(mode, low=True, offload=True, forward_chunking=True, decode_chunk_cap=LOW_DECODE_CHUNK)
    return MemoryPlan(mode, low=False, offload=False, forward_chunking=False, decode_chunk_cap=None)
