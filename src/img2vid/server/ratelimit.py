"""Request limits answered with 429 and ``Retry-After``: per key, and per client address for wrong keys.

Both are token buckets (``limit`` tokens per ``window`` seconds, refilled smoothly) in one bounded table.
:class:`RateLimiter` spends a token on every request of a key; :class:`AuthFailureLimiter` spends one on
every wrong key an address sends and refuses that address while its bucket is empty, before the key is
looked up, so a flood of guesses costs the store nothing. In-memory and per process: they protect one
server from one noisy client, not a cluster. A table must never be keyed by an API key itself: by the
owner id (the key's hash) or by the client's address.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ..errors import RateLimitedError

__all__ = ["TokenBuckets", "RateLimiter", "AuthFailureLimiter"]

#: Entries a table may hold before idle ones are dropped (a few MB at most).
MAX_ENTRIES = 100_000


class TokenBuckets:
    """``limit`` tokens per ``window`` seconds for each name, refilled smoothly; ``limit=0`` disables it.

    A bucket that has refilled is the same as no bucket, so when the table passes ``max_entries`` the full
    ones are dropped (and, if that is not enough, the longest idle), which keeps memory bounded however
    many names a client invents.
    """

    def __init__(
        self, limit: int, window: float, *, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._rate = limit / window if limit else 0.0
        self._max_entries = max_entries
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _tokens(self, name: str, now: float) -> float:
        tokens, stamp = self._buckets.get(name, (float(self.limit), now))
        return min(float(self.limit), tokens + (now - stamp) * self._rate)

    def _wait(self, tokens: float) -> int:
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def wait(self, name: str) -> int:
        """Seconds until ``name`` has a token again (0: it has one now); spends nothing."""
        if not self.limit:
            return 0
        with self._lock:
            tokens = self._tokens(name, self.clock())
        return 0 if tokens >= 1.0 else self._wait(tokens)

    def take(self, name: str) -> int:
        """Spend one of ``name``'s tokens and answer 0, or answer the seconds until one is there."""
        if not self.limit:
            return 0
        now = self.clock()
        with self._lock:
            tokens = self._tokens(name, now)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                return self._wait(tokens)
            if name not in self._buckets and len(self._buckets) >= self._max_entries:
                self._prune(now)
            self._buckets[name] = (tokens - 1.0, now)
            return 0

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        # Called with the lock held.
        live = {name: entry for name, entry in self._buckets.items() if self._tokens(name, now) < self.limit}
        if len(live) >= self._max_entries:
            newest = sorted(live.items(), key=lambda item: item[1][1], reverse=True)[: self._max_entries // 2]
            live = dict(newest)
        self._buckets = live


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds per owner; 0 disables it."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._buckets = TokenBuckets(limit, window)

    def check(self, owner: str) -> None:
        wait = self._buckets.take(owner)
        if wait:
            raise RateLimitedError(
                f"too many requests: at most {self.limit} every {self.window:g} seconds; retry in {wait} s",
                retry_after=wait,
            )


class AuthFailureLimiter:
    """At most ``limit`` wrong keys per ``window`` seconds per client address; 0 disables it.

    :meth:`check` runs before a key is looked up and spends nothing; :meth:`failed` is called for each
    wrong key. An address over its limit is refused until its bucket refills, whatever key it sends.
    """

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.buckets = TokenBuckets(limit, window, clock=clock)

    def check(self, address: str) -> None:
        wait = self.buckets.wait(address)
        if wait:
            raise RateLimitedError(
                f"too many wrong API keys from this address: at most {self.limit} every {self.window:g} seconds; "
                f"retry in {wait} s",
                retry_after=wait,
            )

    def failed(self, address: str) -> None:
        self.buckets.take(address)
