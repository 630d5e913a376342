"""The engine interface: a ``VideoRequest`` goes in, a ``Video`` comes out.

Every engine (remote protocol client, local diffusers, anything later) implements :class:`Engine`, so a
front door never knows which one it holds. Progress and cancellation are plain callables so that each
front door can wire its own: a Rich progress bar, ComfyUI's ``ProgressBar`` and interrupt flag, a job row
in the server's store. This module must stay import-light (no torch, no httpx).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..errors import CancelledError
from ..fitting import SizeRule
from ..request import VideoRequest
from ..video import Video

__all__ = [
    "Engine",
    "ProgressCallback",
    "CancelCheck",
    "raise_if_cancelled",
    "sleep_unless_cancelled",
    "close_engine",
]

#: ``progress(fraction, text)``: fraction in 0..1, or ``None`` while the engine cannot tell (a remote
#: server that gives no figure); ``text`` is a short line for a person ("step 3/25", "waiting 12 s").
ProgressCallback = Callable[[float | None, str], None]

#: ``cancel()`` returns True once the user asked to stop; engines check it at least once a second.
CancelCheck = Callable[[], bool]

#: The longest an engine sleeps without looking at ``cancel``.
CANCEL_CHECK_INTERVAL = 0.1


@runtime_checkable
class Engine(Protocol):
    """Turns a request into a video."""

    #: What the engine accepts; the request's image is fitted to it with the request's fit mode.
    size_rule: SizeRule

    def generate(
        self,
        request: VideoRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> Video:
        """Make the video, reporting progress and obeying ``cancel`` (raise ``CancelledError``)."""


def raise_if_cancelled(cancel: CancelCheck | None) -> None:
    """Raise :class:`CancelledError` if the user asked to stop."""
    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user")


def sleep_unless_cancelled(seconds: float, cancel: CancelCheck | None) -> None:
    """Sleep in short slices, checking ``cancel`` between them, so a stop is obeyed at once."""
    deadline = time.monotonic() + max(0.0, seconds)
    while True:
        raise_if_cancelled(cancel)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(CANCEL_CHECK_INTERVAL, left))


def close_engine(engine: object) -> None:
    """Release what a front door's engine holds for one run: a remote engine's connections. Engines
    without ``close`` (the shared local engine, which stays warm) are left as they are."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()
