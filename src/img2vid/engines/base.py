"""The engine interface: a ``VideoRequest`` goes in, a ``Video`` comes out.

Every engine (remote protocol client, local diffusers, anything later) implements :class:`Engine`, so a
front door never knows which one it holds. Progress and cancellation are plain callables so that each
front door can wire its own: a Rich progress bar, ComfyUI's ``ProgressBar`` and interrupt flag, a job row
in the server's store. This module must stay import-light (no torch, no httpx).

Lifecycle, the same for every engine::

    with LocalEngine("tiny") as engine:   # load(): weights read (and compiled) before the first job
        video = engine.generate(request)  # any number of runs
    # close(): what the engine held (device memory, connections) is given back

``load`` is optional (the first ``generate`` does it), ``close`` is not: whoever makes an engine closes
it. A closed engine may be used again; it loads or connects anew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from ..errors import CancelledError
from ..fitting import SizeRule
from ..request import VideoRequest
from ..video import Video

__all__ = [
    "Engine",
    "ProgressCallback",
    "CancelCheck",
    "raise_if_cancelled",
]

#: ``progress(fraction, text)``: fraction in 0..1, or ``None`` while the engine cannot tell (a remote
#: server that gives no figure); ``text`` is a short line for a person ("step 3/25", "waiting 12 s").
ProgressCallback = Callable[[float | None, str], None]

#: ``cancel()`` returns True once the user asked to stop; engines check it at least once a second.
CancelCheck = Callable[[], bool]

_E = TypeVar("_E", bound="Engine")

#: The longest an engine sleeps without looking at ``cancel``.
CANCEL_CHECK_INTERVAL = 0.1


@runtime_checkable
class Engine(Protocol):
    """Turns a request into a video.

    Engines subclass it explicitly to inherit the lifecycle defaults below (nothing to load, nothing to
    close, a context manager that does both); an engine that holds something overrides them.
    """

    #: What the engine accepts; the request's image is fitted to it with the request's fit mode.
    size_rule: SizeRule

    def generate(
        self,
        request: VideoRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> Video:
        """Make the video, reporting progress and obeying ``cancel`` (raise ``CancelledError``)."""
        raise NotImplementedError

    def load(self, progress: ProgressCallback | None = None) -> None:
        """Get ready to generate now rather than on the first job (a local model's weights, its compiled
        code), so that a server fails its start, not a job, when the model cannot load. Idempotent."""

    def close(self) -> None:
        """Give back what the engine holds; it loads or connects again if used after. Idempotent."""

    def __enter__(self: _E) -> _E:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_if_cancelled(cancel: CancelCheck | None) -> None:
    """Raise :class:`CancelledError` if the user asked to stop."""
    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user")
