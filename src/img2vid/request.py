"""``VideoRequest``: what every front door builds and every engine consumes.

It holds the input image (already an RGB uint8 array), a prompt where the model takes one, and the
generation parameters, validated once, here, with errors that name the field, the value given and the
allowed range. ``seed`` always has a value (0: random); every other field is ``None`` when the caller leaves
the choice to the model, so that an engine can tell "not asked for" from "asked for the default": a remote
engine sends only what the user set, and the local engine refuses by name a field the model does not read
(a prompt for SVD, SVD's motion bucket for Wan) instead of ignoring it. Which model reads which field, and
its defaults, is the family table's business (``families.py``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .fitting import FitMode, SizeRule, fit_image, parse_fit_mode
from .images import ImageInput, image_size, load_image

__all__ = [
    "VideoRequest",
    "MAX_PROMPT_CHARS",
    "TEXT_FIELDS",
    "MAX_SEED",
    "DEFAULT_CFG_SCALE",
    "DEFAULT_MOTION_BUCKET_ID",
    "RANGES",
    "ENGINE_FIELDS",
    "ENGINE_DEFAULTS",
    "range_text",
]

#: The protocol's largest seed; 0 means "pick a random seed".
MAX_SEED = 4294967294
DEFAULT_CFG_SCALE = 1.8
DEFAULT_MOTION_BUCKET_ID = 127

#: The longest prompt (or negative prompt) accepted, in characters: the text encoders read at most a few
#: hundred tokens, and a server stores the text with the job.
MAX_PROMPT_CHARS = 2000
#: The text fields: ``None`` (or empty) means none given.
TEXT_FIELDS: tuple[str, ...] = ("prompt", "negative_prompt")

#: The local-engine fields: optional, ``None`` meaning "the engine's default".
ENGINE_FIELDS: tuple[str, ...] = (
    "frames",
    "steps",
    "fps",
    "noise_aug_strength",
    "min_guidance_scale",
    "decode_chunk_size",
)

#: What the local engine uses for a field left ``None`` (frames and steps depend on the model, and
#: decode_chunk_size on free memory, so they have none here). Every front door that shows a default reads
#: it from here.
ENGINE_DEFAULTS: dict[str, int | float] = {
    "fps": 7,
    "noise_aug_strength": 0.02,
    "min_guidance_scale": 1.0,
}

#: Field name -> (type, low, high). One table, read by validation, the CLI help and the server.
RANGES: dict[str, tuple[type, float, float]] = {
    "seed": (int, 0, MAX_SEED),
    "cfg_scale": (float, 0.0, 10.0),
    "motion_bucket_id": (int, 1, 255),
    "frames": (int, 1, 257),
    "steps": (int, 1, 200),
    "fps": (int, 1, 60),
    "noise_aug_strength": (float, 0.0, 1.0),
    "min_guidance_scale": (float, 0.0, 10.0),
    "decode_chunk_size": (int, 1, 128),
}


def range_text(name: str, *, high: float | None = None) -> str:
    """What a field allows, in the words every refusal uses, the server's, the page's and the CLI's ("an
    integer from 1 to 255"); ``high`` lowers the upper bound (a server's cost cap)."""
    kind, low, top = RANGES[name]
    top = top if high is None else high
    word = "an integer" if kind is int else "a number"
    lo, hi = (int(low), int(top)) if kind is int else (low, top)
    return f"{word} from {lo} to {hi}"


def check_field(name: str, value: Any) -> int | float:
    """``value`` as the field's type, or an error naming the field, the value and the range."""
    kind, low, high = RANGES[name]
    allowed = range_text(name)
    if isinstance(value, bool):
        raise InvalidInputError.for_field(name, value, allowed)
    number: int | float
    try:
        if kind is int:
            if isinstance(value, str):
                number = int(value.strip())
            elif isinstance(value, numbers.Integral):
                number = int(value)
            else:  # float, numpy.float32, Decimal...: only whole numbers, never truncated
                as_float = float(value)
                if not as_float.is_integer():
                    raise ValueError
                number = int(as_float)
        else:
            number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError.for_field(name, value, allowed) from None
    if kind is float and not math.isfinite(number):
        raise InvalidInputError.for_field(name, value, allowed)
    if not low <= number <= high:
        raise InvalidInputError.for_field(name, value, allowed)
    return number


def check_text(name: str, value: Any) -> str | None:
    """A prompt as given, ``None`` for none (absent or empty), or an error naming the field and the limit."""
    allowed = f"text of at most {MAX_PROMPT_CHARS} characters"
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError.for_field(name, value, allowed)
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            f"{name} is {len(value)} characters long; the most is {MAX_PROMPT_CHARS}",
            field=name,
            value=value[:40] + "...",
            allowed=allowed,
        )
    if "\x00" in value:
        raise InvalidInputError(f"{name} contains a NUL character", field=name, value=value[:40], allowed=allowed)
    return value if value.strip() else None


@dataclass(frozen=True, eq=False)
class VideoRequest:
    """An image, a prompt where the model takes one, and the numbers that say how to animate it.

    ``image`` may be given as anything :func:`img2vid.images.load_image` reads; it is stored as an RGB
    uint8 array of shape H×W×3. ``seed=0`` asks the engine for a random seed, which it reports in the
    resulting :class:`~img2vid.video.Video`. ``cfg_scale`` and ``motion_bucket_id`` left ``None`` take the
    model's defaults (SVD: ``DEFAULT_CFG_SCALE`` and ``DEFAULT_MOTION_BUCKET_ID``).
    """

    #: Given as anything load_image reads (a path, bytes, PIL, numpy, a ComfyUI tensor); held as an RGB
    #: uint8 array (H×W×3) once constructed.
    image: ImageInput
    seed: int = 0
    cfg_scale: float | None = None
    motion_bucket_id: int | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    frames: int | None = None
    steps: int | None = None
    fps: int | None = None
    noise_aug_strength: float | None = None
    min_guidance_scale: float | None = None
    decode_chunk_size: int | None = None
    fit: FitMode = FitMode.CROP

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "image", load_image(self.image))
        for name in RANGES:
            value = getattr(self, name)
            if value is None:
                if name == "seed":
                    raise InvalidInputError.for_field(name, value, range_text(name))
                continue
            set_(self, name, check_field(name, value))
        for name in TEXT_FIELDS:
            set_(self, name, check_text(name, getattr(self, name)))
        set_(self, "fit", parse_fit_mode(self.fit))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the input image."""
        return image_size(self.image)

    def fitted_image(self, rule: SizeRule) -> np.ndarray:
        """The input image at a size ``rule`` accepts, fitted the way ``fit`` says."""
        return fit_image(self.image, rule, self.fit)

    def with_options(self, **changes: Any) -> VideoRequest:
        """A copy with some fields changed, validated again."""
        return replace(self, **changes)

    def options(self) -> dict[str, int | float | str]:
        """Every field but the image and the seed that the caller set, as keyword arguments that rebuild this
        request with the same image: what a job store keeps."""
        given = {n: getattr(self, n) for n in ("cfg_scale", "motion_bucket_id", *TEXT_FIELDS)}
        return {**{n: v for n, v in given.items() if v is not None}, **self.engine_options()}

    def given(self) -> dict[str, Any]:
        """Every field the caller set, seed included (what a model may refuse by name)."""
        return {"seed": self.seed, **self.options()}

    def engine_options(self) -> dict[str, int | float]:
        """The local-engine fields the caller set (those that are not ``None``)."""
        return {n: getattr(self, n) for n in ENGINE_FIELDS if getattr(self, n) is not None}

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name != "image" and getattr(self, f.name) is not None
        )
        width, height = self.size
        return f"VideoRequest(image={width}x{height}, {shown})"
