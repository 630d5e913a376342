"""The img2vid server: Stability's image-to-video protocol served from the user's own GPU.

A FastAPI app (:func:`create_app`) whose protocol routes are exactly those of ``PROTOCOL.md`` (both
route generations), a job store, embedded worker threads that run an engine, API keys, and metrics.
Importing this package imports FastAPI and SQLAlchemy; ``import img2vid`` never imports it.
"""

from __future__ import annotations

from ..jobs.settings import ServerSettings
from .app import create_app

__all__ = ["create_app", "ServerSettings"]
