"""Small synthetic images for tests: deterministic, with structure (so crops and resizes are visible)."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image


def gradient(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image whose pixels differ across both axes, plus a little seeded noise."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    image = np.stack(
        [255 * x / max(1, width - 1), 255 * y / max(1, height - 1), 128 + 0 * x], axis=-1
    ) + rng.integers(-8, 8, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """``gradient`` as a PNG file's bytes. Kept per arguments: a 1024x576 PNG takes about 0.2 s of CPU
    to encode, and the server's tests submit hundreds of them (bytes cannot be changed by a caller)."""
    buffer = io.BytesIO()
    Image.fromarray(gradient(width, height, seed)).save(buffer, format="PNG")
    return buffer.getvalue()
