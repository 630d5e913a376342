"""Turning whatever a user calls an image into one RGB uint8 array.

A front door may hold a PIL image, a numpy array, a ComfyUI IMAGE tensor, a path or raw bytes; the
rest of img2vid sees only ``numpy.ndarray`` of shape H×W×3, dtype uint8, C-contiguous. Every way an
input can be unreadable ends here as an :class:`~img2vid.errors.InvalidInputError` naming the field,
never as a traceback from inside Pillow. This module must not import torch: tensors are recognised by
duck typing so the core stays light.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InvalidInputError

__all__ = ["ImageInput", "DEFAULT_MAX_PIXELS", "load_image", "open_image_bytes", "image_size"]

#: Anything :func:`load_image` accepts.
ImageInput = Any

#: Larger images are refused before they are decoded (a decompression bomb must not fill memory).
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024


#: A float image whose values pass this is taken to be on a 0..255 scale by mistake, not 0..1 with overshoot.
FLOAT_SCALE_LIMIT = 1.5


def _is_tensor(value: object) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def open_image_bytes(
    data: bytes, *, field: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open encoded image bytes, checking the pixel count from the header before decoding.

    Pillow reads only the header in ``Image.open``; the size check happens there, so a tiny file that
    claims a huge canvas is refused without allocating it.
    """
    if not data:
        raise InvalidInputError("image is empty (0 bytes)", field=field, allowed="a PNG, JPEG or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"{field} is {width}x{height} = {width * height} pixels; at most {max_pixels} are allowed",
                    field=field,
                    value=f"{width}x{height}",
                    allowed=f"at most {max_pixels} pixels",
                )
            img.load()
    except InvalidInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInputError(
            f"{field} declares too many pixels to decode safely", field=field, allowed=f"at most {max_pixels} pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidInputError(
            f"{field} is not an image format img2vid can read (PNG, JPEG, WebP and others Pillow knows)",
            field=field,
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(f"{field} could not be decoded: the file is truncated or corrupt", field=field) from exc
    return img


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: transparent areas of a product shot or logo should not turn black.
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _array_to_rgb(array: np.ndarray, field: str) -> np.ndarray:
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise InvalidInputError(
                f"{field} must be a single image; got a batch of {array.shape[0]}",
                field=field,
                value=f"batch of {array.shape[0]}",
                allowed="one image (batch size 1)",
            )
        array = array[0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise InvalidInputError(
            f"{field} must be an H×W×C array with 1, 3 or 4 channels; got shape {tuple(array.shape)}",
            field=field,
            value=tuple(array.shape),
            allowed="H×W×3 (RGB), H×W×4 (RGBA) or H×W (grey)",
        )
    if array.dtype == np.uint8:
        rgb = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InvalidInputError(f"{field} contains NaN or infinite values", field=field, allowed="values in 0..1")
        if array.size and float(array.max()) > FLOAT_SCALE_LIMIT:
            raise InvalidInputError(
                f"{field} is a float array with values up to {float(array.max()):g}; float images must be in 0..1 "
                "(divide by 255, or pass a uint8 array)",
                field=field,
                value=f"max {float(array.max()):g}",
                allowed="floats in 0..1 or uint8 in 0..255",
            )
        # ComfyUI's IMAGE layout: floats in 0..1; the small overshoot some nodes leave is clipped.
        # Rounding (not truncating) keeps 0.5/255 steps exact.
        rgb = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        if array.size and (int(array.min()) < 0 or int(array.max()) > 255):
            raise InvalidInputError(
                f"{field} is an integer array with values from {int(array.min())} to {int(array.max())}; "
                "integer images must be in 0..255 (scale a 16-bit image down first)",
                field=field,
                value=f"{int(array.min())}..{int(array.max())}",
                allowed="uint8 in 0..255 or floats in 0..1",
            )
        rgb = array.astype(np.uint8)
    else:
        raise InvalidInputError(
            f"{field} has dtype {array.dtype}", field=field, value=str(array.dtype), allowed="uint8 or float in 0..1"
        )
    channels = rgb.shape[2]
    if channels == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    elif channels == 4:
        return _pil_to_rgb(Image.fromarray(np.ascontiguousarray(rgb), mode="RGBA"))
    return np.ascontiguousarray(rgb)


def load_image(value: ImageInput, *, field: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported image input as an RGB uint8 array of shape H×W×3.

    Accepts a PIL image, a numpy array (uint8 0..255 or float 0..1; H×W, H×W×C or 1×H×W×C), a ComfyUI
    IMAGE tensor (float32 B×H×W×C with B = 1), a path, or encoded bytes.
    """
    if value is None:
        raise InvalidInputError(f"{field} is required", field=field, allowed="an image")
    if isinstance(value, Image.Image):
        return _pil_to_rgb(value)
    if _is_tensor(value):
        return _array_to_rgb(value.detach().cpu().float().numpy(), field)  # type: ignore[attr-defined]
    if isinstance(value, np.ndarray):
        return _array_to_rgb(value, field)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _pil_to_rgb(open_image_bytes(bytes(value), field=field, max_pixels=max_pixels))
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InvalidInputError(f"{field}: no such file: {path}", field=field, value=str(path), allowed="an image file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"{field}: cannot read {path}: {exc.strerror}", field=field) from exc
        return _pil_to_rgb(open_image_bytes(data, field=field, max_pixels=max_pixels))
    raise InvalidInputError(
        f"{field} has unsupported type {type(value).__name__}",
        field=field,
        value=type(value).__name__,
        allowed="a PIL image, numpy array, ComfyUI IMAGE tensor, path or bytes",
    )


def image_size(image: np.ndarray) -> tuple[int, int]:
    """(width, height) of an H×W×3 array, the order every size in img2vid is written in."""
    return int(image.shape[1]), int(image.shape[0])
