"""Helpers for the local engine's tests: small requests, and diffusers' own pipeline as the reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from support.images import gradient

#: Small enough to keep every test fast on a CPU; both sides multiples of 64 so no fitting happens.
WIDTH, HEIGHT = 192, 128


def small_image(seed: int = 0) -> np.ndarray:
    return gradient(WIDTH, HEIGHT, seed)


def diffusers_frames(parts: Any, image: np.ndarray, *, seed: int, **kwargs: Any) -> np.ndarray:
    """Frames (T×H×W×3 uint8) from diffusers' StableVideoDiffusionPipeline on the same components, fp32 CPU."""
    import torch
    from PIL import Image

    height, width = image.shape[:2]
    from img2vid.engines.local.reference import stock_pipeline

    out = stock_pipeline(parts)(
        Image.fromarray(image),
        height=height,
        width=width,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        **kwargs,
    ).frames[0]
    return np.round(np.asarray(out) * 255.0).astype(np.uint8)
