"""``Components``: the loaded parts of one SVD model, and what the model itself implies for defaults.

Loading (models.py) produces it; the pipeline reads it; nothing here runs a model. The scheduler held
here is a template: every generation makes its own copy, because diffusers' schedulers keep per-run
state and a shared engine may serve several threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .configs import CLIP_MEAN, CLIP_STD

__all__ = ["Components"]


@dataclass
class Components:
    """UNet, VAE, image encoder and scheduler of one model, with its defaults."""

    unet: Any  # diffusers.UNetSpatioTemporalConditionModel
    vae: Any  # diffusers.AutoencoderKLTemporalDecoder
    image_encoder: Any  # transformers.CLIPVisionModelWithProjection
    scheduler: Any  # diffusers.EulerDiscreteScheduler (template)
    #: Where it came from, for messages ("tiny", a hub id, a path).
    source: str
    #: Frames the model was trained for: 25 for SVD-XT, 14 for SVD, 2 for tiny.
    default_frames: int
    default_steps: int = 25
    clip_mean: tuple[float, float, float] = CLIP_MEAN
    clip_std: tuple[float, float, float] = CLIP_STD

    def new_scheduler(self) -> Any:
        """A fresh scheduler with the model's config: one per generation."""
        return type(self.scheduler).from_config(self.scheduler.config)
