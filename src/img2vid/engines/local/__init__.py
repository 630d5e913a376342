"""The local engine: Stable Video Diffusion with diffusers on this machine's GPU or CPU.

One module per job: ``configs`` (known architectures), ``tiny`` (random models), ``checkpoint``
(single-file layout), ``models`` (loading), ``device`` (device, dtype, memory), ``pipeline`` (the
denoising run) and ``engine`` (``LocalEngine``). Importing this package imports torch and diffusers;
``import img2vid`` never does.
"""

from __future__ import annotations

from .engine import LocalEngine
from .models import DEFAULT_MODEL, TINY_NAME

__all__ = ["LocalEngine", "DEFAULT_MODEL", "TINY_NAME"]
