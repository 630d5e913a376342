"""img2vid: a still image in, a short Stable Video Diffusion clip out.

The core (``VideoRequest``, ``Video``, ``errors``, fitting) imports no torch, diffusers or web framework:
the ComfyUI node and the CLI start fast. Engines load their heavy dependencies when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from .errors import Img2VidError
from .fitting import PROTOCOL_SIZES, FitMode, FixedSizes, MultipleOf, fit_image
from .images import load_image
from .request import VideoRequest
from .video import Video

if TYPE_CHECKING:
    from .engines.local import LocalEngine
    from .engines.remote import RemoteEngine

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "VideoRequest",
    "Video",
    "FitMode",
    "FixedSizes",
    "MultipleOf",
    "PROTOCOL_SIZES",
    "fit_image",
    "load_image",
    "errors",
    "Img2VidError",
    "RemoteEngine",
    "LocalEngine",
]


def __getattr__(name: str) -> Any:
    if name in ("RemoteEngine", "LocalEngine"):
        from . import engines

        return getattr(engines, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
