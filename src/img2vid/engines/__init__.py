"""Engines: the interface and the lazy access to each implementation.

``RemoteEngine`` and ``LocalEngine`` are imported on first use, so that ``import img2vid.engines`` never
pulls httpx internals or torch into a process that does not need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import CancelCheck, Engine, ProgressCallback, raise_if_cancelled

if TYPE_CHECKING:
    from .local import LocalEngine
    from .remote import RemoteEngine

__all__ = [
    "Engine",
    "ProgressCallback",
    "CancelCheck",
    "raise_if_cancelled",
    "RemoteEngine",
    "LocalEngine",
]


def __getattr__(name: str) -> Any:
    if name == "RemoteEngine":
        from .remote import RemoteEngine

        return RemoteEngine
    if name == "LocalEngine":
        from .local import LocalEngine

        return LocalEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
