"""API keys: making them, hashing them, and checking an ``authorization`` header against the store.

A key is shown once, when it is created, and kept only as its SHA-256 hash (keys are 256 random bits, so
a plain hash cannot be reversed by guessing). This module must never log, store or put into an error
message the key itself.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from ..errors import AuthenticationError
from ..jobs.store import ApiKeyRow, JobStore
from .ratelimit import AuthFailureLimiter

__all__ = ["KEY_PREFIX", "new_key", "hash_key", "key_from_header", "KeyChecker", "create_key", "ANONYMOUS"]

KEY_PREFIX = "sk-img2vid-"
#: The owner of every job when auth is off.
ANONYMOUS = "anonymous"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(store: JobStore, name: str) -> tuple[str, ApiKeyRow]:
    """A new key and its stored row; the key is returned once and never stored."""
    key = new_key()
    return key, store.add_key(hash_key(key), name)


def key_from_header(value: str | None) -> str | None:
    """The key in ``authorization: Bearer <key>`` or in the bare ``authorization: <key>`` form."""
    if value is None:
        return None
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        value = rest.strip()
    return value or None


class KeyChecker:
    """Answers "whose key is this?" with the owner id (the key's hash), remembering answers briefly.

    A valid key is cached for ``cache_seconds``, which keeps the poll path off the database; a key revoked
    from the CLI stops working within that time. An unknown key is remembered as unknown for
    ``unknown_seconds`` (bounded table), so a flood of one wrong key costs one store lookup, not one each;
    a key is never used before it is created, so this cannot delay a new key. ``failures`` (an
    :class:`~.ratelimit.AuthFailureLimiter`) refuses a client address that has sent too many wrong keys
    before its next key is looked up. Both tables hold hashes, never keys.
    """

    #: Unknown keys remembered at most; past this the table is emptied (they are only an optimisation).
    MAX_UNKNOWN = 10_000

    def __init__(
        self,
        store: JobStore,
        *,
        enabled: bool = True,
        cache_seconds: float = 5.0,
        unknown_seconds: float = 5.0,
        failures: AuthFailureLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._enabled = enabled
        self._cache_seconds = cache_seconds
        self._unknown_seconds = unknown_seconds
        self.failures = failures
        self.clock = clock
        self._valid_until: dict[str, float] = {}
        self._unknown_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def cached_owner(self, authorization: str | None) -> str | None:
        """The owner id when it is known without the store (auth off, or a key found valid moments ago)."""
        if not self._enabled:
            return ANONYMOUS
        key = key_from_header(authorization)
        if key is None:
            return None
        owner = hash_key(key)
        return owner if self._valid_until.get(owner, 0.0) > self.clock() else None

    def owner_for(self, authorization: str | None, client: str = "unknown") -> str:
        """The owner id for an ``authorization`` header sent from the address ``client``.

        Raises :class:`AuthenticationError` (401) for a missing or wrong key, and
        :class:`~img2vid.errors.RateLimitedError` (429) when ``client`` has sent too many wrong keys.
        """
        if not self._enabled:
            return ANONYMOUS
        key = key_from_header(authorization)
        if key is None:
            raise AuthenticationError(
                "missing API key: send 'authorization: Bearer <key>' (create one with 'img2vid keys create')"
            )
        owner = hash_key(key)
        now = self.clock()
        if self._valid_until.get(owner, 0.0) > now:
            return owner
        if self.failures is not None:
            self.failures.check(client)
        if self._unknown_until.get(owner, 0.0) > now:
            self._refuse(client)
        if not self._store.key_is_active(owner):
            self._remember_unknown(owner, now)
            self._refuse(client)
        with self._lock:
            if len(self._valid_until) > 10_000:
                self._valid_until.clear()
            self._valid_until[owner] = now + self._cache_seconds
        return owner

    def _remember_unknown(self, owner: str, now: float) -> None:
        if self._unknown_seconds <= 0:
            return
        with self._lock:
            if len(self._unknown_until) >= self.MAX_UNKNOWN:
                self._unknown_until.clear()
            self._unknown_until[owner] = now + self._unknown_seconds

    def _refuse(self, client: str) -> NoReturn:
        if self.failures is not None:
            self.failures.failed(client)
        raise AuthenticationError("the API key was not recognised or has been revoked")
