"""Models with random weights: ``tiny`` for tests and offline smoke runs, full-size SVD-XT for benchmarks.

``tiny`` has the real block structure at toy width, built from fixed configs under a fixed
``torch.manual_seed``, so every process builds the same weights and a seed gives the same frames
everywhere. It makes noise, not video. The full-size factory builds the real SVD-XT architecture with
random values, because speed and memory do not depend on the values and the real weights are gated.
Nothing here downloads anything.
"""

from __future__ import annotations

from typing import Any

import torch

from ...model_names import TINY_NAME
from .components import Components
from .configs import SVD_CLIP, SVD_SCHEDULER, SVD_UNET, SVD_VAE, TINY_CLIP, TINY_UNET, TINY_VAE

__all__ = ["TINY_NAME", "build_tiny", "build_random_svd_xt", "build_models"]

TINY_SEED = 0


def build_models(unet_config: dict[str, Any], vae_config: dict[str, Any], clip_config: dict[str, Any]) -> tuple[Any, Any, Any]:
    """UNet, VAE and image encoder from configs, each after ``torch.manual_seed`` (deterministic)."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    # The global RNG is borrowed and given back, so building a model never changes a caller's randomness.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        unet = UNetSpatioTemporalConditionModel(**unet_config)
        torch.manual_seed(TINY_SEED)
        vae = AutoencoderKLTemporalDecoder(**vae_config)
        torch.manual_seed(TINY_SEED)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_config))
    for model in (unet, vae, clip):
        model.eval().requires_grad_(False)
    return unet, vae, clip


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**SVD_SCHEDULER)


def build_tiny() -> Components:
    """The tiny random model (fp32, CPU): 2 frames and 2 steps by default, seconds at 1024x576 on a CPU."""
    unet, vae, clip = build_models(TINY_UNET, TINY_VAE, TINY_CLIP)
    return Components(
        unet=unet,
        vae=vae,
        image_encoder=clip,
        scheduler=_scheduler(),
        source=TINY_NAME,
        default_frames=int(TINY_UNET["num_frames"]),
        default_steps=2,
    )


def build_random_svd_xt(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Components:
    """Full-size SVD-XT with random weights, built directly on ``device`` in ``dtype`` (for benchmarks).

    The weights are drawn on the device itself (no 6 GB fp32 copy on the host first).
    """
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype if dtype.is_floating_point else torch.float32)
        with torch.device(device):
            torch.manual_seed(TINY_SEED)
            unet = UNetSpatioTemporalConditionModel(**SVD_UNET)
            vae = AutoencoderKLTemporalDecoder(**SVD_VAE)
            clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**SVD_CLIP))
    finally:
        torch.set_default_dtype(previous)
    models: tuple[Any, ...] = (unet, vae, clip)  # diffusers' and transformers' models, each its own .to()
    for model in models:
        if model.dtype != dtype:  # built in ``dtype`` already; a needless cast only makes diffusers warn
            model.to(dtype=dtype)
        model.to(device=device).eval().requires_grad_(False)
    return Components(
        unet=unet,
        vae=vae,
        image_encoder=clip,
        scheduler=_scheduler(),
        source="random SVD-XT",
        default_frames=int(SVD_UNET["num_frames"]),
    )
