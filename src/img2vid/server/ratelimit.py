"""A per-key request limit (a token bucket per owner), answered with 429 and ``Retry-After``.

In-memory and per process: it protects one server from one noisy client, not a cluster. It must never
key its table by the API key itself, only by the owner id (the key's hash).
"""

from __future__ import annotations

import math
import threading
import time

from ..errors import RateLimitedError

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds per owner, refilled smoothly; 0 disables it."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._rate = limit / window if limit else 0.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, owner: str) -> None:
        if not self.limit:
            return
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(owner, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - stamp) * self._rate)
            if tokens < 1.0:
                self._buckets[owner] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / self._rate))
                raise RateLimitedError(
                    f"too many requests: at most {self.limit} every {self.window:g} seconds; retry in {wait} s",
                    retry_after=wait,
                )
            self._buckets[owner] = (tokens - 1.0, now)
