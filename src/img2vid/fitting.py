"""Fitting an image of any size to the sizes an engine accepts: the one place this happens.

An engine states what it accepts as a :class:`SizeRule` (the protocol's three fixed sizes, or "multiples
of 64 within a pixel budget" for a local model); a :class:`FitMode` says how to get there. ``crop`` is the
default because it keeps the subject undistorted and fills the frame, which is what SVD was trained on.
Nothing else in img2vid resizes an input image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .images import image_size

__all__ = [
    "FitMode",
    "SizeRule",
    "FixedSizes",
    "MultipleOf",
    "PROTOCOL_SIZES",
    "FitPlan",
    "plan_fit",
    "fit_image",
    "parse_fit_mode",
]

Size = tuple[int, int]  # (width, height)
Box = tuple[int, int, int, int]  # (x, y, width, height)


class FitMode(str, Enum):
    """How an image that is not an allowed size becomes one."""

    STRICT = "strict"  #: refuse it, listing the allowed sizes
    CROP = "crop"  #: center-crop to the target's aspect ratio, then resize
    PAD = "pad"  #: resize to fit inside the target, then pad with black bars
    STRETCH = "stretch"  #: resize to the target, distorting the aspect ratio

    def __str__(self) -> str:
        return self.value


def parse_fit_mode(value: str | FitMode, field: str = "fit") -> FitMode:
    """A fit mode from its name, with an error that lists the names."""
    if isinstance(value, FitMode):
        return value
    try:
        return FitMode(str(value).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in FitMode)
        raise InvalidInputError.for_field(field, value, f"one of {allowed}") from None


@runtime_checkable
class SizeRule(Protocol):
    """What sizes an engine accepts."""

    def target_for(self, width: int, height: int) -> Size:
        """The accepted size an image of this size should become."""
        ...

    def allows(self, width: int, height: int) -> bool:
        """Whether this size is accepted as it is."""
        ...

    def describe(self) -> str:
        """The accepted sizes in words, for error messages."""
        ...


def _orientation(size: Size) -> int:
    return (size[0] > size[1]) - (size[0] < size[1])


def _log_aspect_distance(a: Size, b: Size) -> float:
    return abs(math.log(a[0] / a[1]) - math.log(b[0] / b[1]))


@dataclass(frozen=True)
class FixedSizes:
    """A finite list of accepted sizes; the nearest is the one with the closest aspect ratio."""

    sizes: tuple[Size, ...]

    def target_for(self, width: int, height: int) -> Size:
        if (width, height) in self.sizes:
            return (width, height)
        # Closest aspect ratio first (4:3 sits exactly between 16:9 and 1:1, so round away float noise);
        # on a tie, the same orientation (a landscape photo stays landscape), then the closest area.
        def key(size: Size) -> tuple[float, bool, int]:
            distance = round(_log_aspect_distance((width, height), size), 9)
            same_orientation = _orientation(size) == _orientation((width, height))
            return (distance, not same_orientation, abs(size[0] * size[1] - width * height))

        return min(self.sizes, key=key)

    def allows(self, width: int, height: int) -> bool:
        return (width, height) in self.sizes

    def describe(self) -> str:
        names = [f"{w}x{h}" for w, h in self.sizes]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True)
class MultipleOf:
    """Both sides multiples of ``multiple``, at most ``max_pixels`` pixels: a latent-diffusion model's rule.

    An image that already fits is kept at its size; any other goes to the size of the same aspect
    ratio (as near as the multiple allows) whose area is closest to ``max_pixels`` without passing it.
    With ``upscale=False`` (the rule of the text-conditioned families, whose cost grows with the area) a
    smaller image is not enlarged: it goes to the nearest multiples at about its own area instead.
    """

    multiple: int = 64
    max_pixels: int = 1024 * 576
    upscale: bool = True

    def allows(self, width: int, height: int) -> bool:
        m = self.multiple
        return width % m == 0 and height % m == 0 and width >= m and height >= m and width * height <= self.max_pixels

    def target_for(self, width: int, height: int) -> Size:
        if self.allows(width, height):
            return (width, height)
        m = self.multiple
        aspect = width / height
        budget = self.max_pixels if self.upscale else max(m * m, min(self.max_pixels, width * height))
        best: Size | None = None
        best_key: tuple[float, float] | None = None
        max_side = max(m, budget // m)
        for w in range(m, max_side + 1, m):
            # The two multiples of m nearest the ideal height for this width.
            ideal_h = w / aspect
            for h in {max(m, math.floor(ideal_h / m) * m), max(m, math.ceil(ideal_h / m) * m)}:
                if w * h > budget:
                    continue
                key = (round(_log_aspect_distance((width, height), (w, h)), 2), -(w * h))
                if best_key is None or key < best_key:
                    best, best_key = (w, h), key
        assert best is not None  # m x m always fits a budget of at least m*m
        return best

    def describe(self) -> str:
        return f"width and height multiples of {self.multiple}, at most {self.max_pixels} pixels"


#: The sizes Stability's image-to-video protocol accepts.
PROTOCOL_SIZES = FixedSizes(((1024, 576), (576, 1024), (768, 768)))


def _resize(image: np.ndarray, size: Size) -> np.ndarray:
    if image_size(image) == size:
        return image
    pil = Image.fromarray(image)
    # reducing_gap lets Pillow shrink large photos by box-averaging first: much faster, same quality.
    resized = pil.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8))


def _crop_box(width: int, height: int, target: Size) -> Box:
    """The centred part of a ``width`` x ``height`` image with the target's aspect ratio."""
    target_aspect = target[0] / target[1]
    if width / height > target_aspect:
        new_width = max(1, round(height * target_aspect))
        return ((width - new_width) // 2, 0, new_width, height)
    new_height = max(1, round(width / target_aspect))
    return (0, (height - new_height) // 2, width, new_height)


def _pad_box(width: int, height: int, target: Size) -> Box:
    """Where a ``width`` x ``height`` image lands in the target, scaled to fit inside it and centred."""
    scale = min(target[0] / width, target[1] / height)
    inner = (max(1, min(target[0], round(width * scale))), max(1, min(target[1], round(height * scale))))
    return ((target[0] - inner[0]) // 2, (target[1] - inner[1]) // 2, inner[0], inner[1])


@dataclass(frozen=True)
class FitPlan:
    """What :func:`fit_image` does to an image of ``source`` size: the part of it kept (``source_box``,
    in the source's pixels) is resized to ``placed_box`` (in the target's pixels) on a black ``target``."""

    source: Size
    target: Size
    mode: FitMode
    #: Crop: the centred part with the target's aspect ratio; otherwise the whole image.
    source_box: Box
    #: Pad: the picture inside the bars; otherwise the whole target.
    placed_box: Box

    @property
    def unchanged(self) -> bool:
        """The image is already an accepted size and is used as it is."""
        return self.source == self.target and self.source_box == self.placed_box == (0, 0, *self.target)


def plan_fit(width: int, height: int, rule: SizeRule, mode: FitMode | str = FitMode.CROP, *, field: str = "image") -> FitPlan:
    """How an image of this size becomes one ``rule`` accepts, the way ``mode`` says; ``strict`` refuses
    a size the rule does not allow (the error lists the allowed sizes). :func:`fit_image` follows it."""
    mode = parse_fit_mode(mode)
    whole = (0, 0, width, height)
    if rule.allows(width, height):
        return FitPlan((width, height), (width, height), mode, whole, whole)
    if mode is FitMode.STRICT:
        raise InvalidInputError(
            f"{field} is {width}x{height}; allowed sizes are {rule.describe()} "
            "(or choose a fit mode: crop, pad or stretch)",
            field=field,
            value=f"{width}x{height}",
            allowed=rule.describe(),
        )
    target = rule.target_for(width, height)
    source_box = _crop_box(width, height, target) if mode is FitMode.CROP else whole
    placed_box = _pad_box(width, height, target) if mode is FitMode.PAD else (0, 0, *target)
    return FitPlan((width, height), target, mode, source_box, placed_box)


def fit_image(image: np.ndarray, rule: SizeRule, mode: FitMode | str = FitMode.CROP, *, field: str = "image") -> np.ndarray:
    """The image at a size ``rule`` accepts, reached the way ``mode`` says (:func:`plan_fit`'s plan)."""
    plan = plan_fit(*image_size(image), rule, mode, field=field)
    if plan.unchanged:
        return image
    x, y, w, h = plan.source_box
    left, top, inner_w, inner_h = plan.placed_box
    resized = _resize(np.ascontiguousarray(image[y : y + h, x : x + w]), (inner_w, inner_h))
    if (inner_w, inner_h) == plan.target:
        return resized
    canvas = np.zeros((plan.target[1], plan.target[0], 3), dtype=np.uint8)
    canvas[top : top + inner_h, left : left + inner_w] = resized
    return canvas
