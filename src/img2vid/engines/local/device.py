"""Choosing where a model runs: device, dtype, model offload and decode chunk size.

Each choice is automatic and overridable: the best device present (CUDA, then Apple's MPS, then the CPU);
bf16 where the GPU supports it, fp16 on other GPUs, fp32 on the CPU (half precision on a CPU is slow and
diffusers' own default there is fp32); and from the free GPU memory, whether the model must be offloaded
between stages and how many frames the VAE decodes at once. Bad names become ``InvalidInputError`` naming
the option and the allowed values. This module only reads the hardware; it never moves a model.
"""

from __future__ import annotations

import os

import torch

from ...errors import InvalidInputError

__all__ = ["DTYPES", "choose_device", "choose_dtype", "choose_offload", "free_memory", "decode_chunk"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}

GIB = 1024**3
#: What the UNet's activations need at 1024x576, 25 frames, with CFG, beyond the weights (half precision).
SVD_UNET_WORK_BYTES = int(4.5 * GIB)
#: VAE decoder memory per frame at 1024x576 in half precision (measured order of magnitude, with margin).
DECODE_BYTES_PER_FRAME = int(0.9 * GIB)
REFERENCE_PIXELS = 1024 * 576
#: Decode chunk sizes tried, largest first, after "all frames at once".
CHUNK_LADDER = (14, 8, 4, 2, 1)


def choose_device(requested: str | None = None) -> torch.device:
    """The device to run on: the one asked for (checked), else CUDA, MPS or CPU, in that order."""
    if requested is None or not str(requested).strip():
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    text = str(requested).strip().lower()
    allowed = "cpu, cuda, cuda:N or mps"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InvalidInputError.for_field("device", requested, allowed) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"device {requested!r} asked for, but this torch has no CUDA GPU available "
                "(install a CUDA build of torch, or use --device cpu)",
                field="device",
                value=requested,
                allowed=allowed,
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidInputError.for_field("device", requested, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InvalidInputError(
                f"device {requested!r} asked for, but MPS is not available here", field="device", value=requested, allowed=allowed
            )
    elif device.type != "cpu":
        raise InvalidInputError.for_field("device", requested, allowed)
    return device


def choose_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """The weights' dtype: the one asked for, else bf16 (GPUs that have it) / fp16 (other GPUs) / fp32 (CPU)."""
    if requested is not None and str(requested).strip():
        key = str(requested).strip().lower().removeprefix("torch.")
        if key not in DTYPES:
            raise InvalidInputError.for_field("dtype", requested, "float32, float16 or bfloat16")
        return DTYPES[key]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def free_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (GPU memory, or the host's available RAM for the CPU); None if unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return None


def choose_offload(device: torch.device, weight_bytes: int, free: int | None, requested: bool | None = None) -> bool:
    """Model offload: as asked, else only on a GPU whose free memory cannot hold the weights and a run's work."""
    if requested is not None:
        return bool(requested)
    if device.type != "cuda" or free is None:
        return False
    return weight_bytes + SVD_UNET_WORK_BYTES * min(1.0, weight_bytes / (4 * GIB)) > free


def decode_chunk(
    *,
    dtype: torch.dtype,
    frames: int,
    width: int,
    height: int,
    free: int | None,
    model_scale: float = 1.0,
    requested: int | None = None,
) -> int:
    """Frames the VAE decodes at once: ``requested`` if given, else as many as free memory allows.

    ``free`` is measured with the model already loaded, so the weights are not counted again.
    ``model_scale`` is the model's activation size relative to SVD's (1.0 for SVD; tiny is far smaller).
    Decoding all frames at once gives the smoothest result, so the chunk is as large as memory allows.
    """
    if requested is not None:
        return int(requested)
    bytes_per_value = 4 if dtype == torch.float32 else 2
    scale = (width * height / REFERENCE_PIXELS) * (bytes_per_value / 2) * model_scale
    # A few fixed sizes rather than any number: the chunk changes the frames slightly, so a small
    # change in free memory should not change the result.
    ladder = [frames] + [size for size in CHUNK_LADDER if size < frames]
    if free is None:
        fits = [size for size in ladder if size <= 8]
    else:
        per_frame = max(1, int(DECODE_BYTES_PER_FRAME * scale))
        fits = [size for size in ladder if size * per_frame <= free * 0.8]
    return fits[0] if fits else 1
