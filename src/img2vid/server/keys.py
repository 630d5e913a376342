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

from ..errors import AuthenticationError
from ..jobs.store import ApiKeyRow, JobStore

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
    """Answers "whose key is this?" with the owner id (the key's hash), caching valid keys briefly.

    The cache keeps the poll path off the database; a key revoked from the CLI stops working within
    ``cache_seconds``. Unknown keys are not cached, so a key created a moment ago works at once.
    """

    def __init__(self, store: JobStore, *, enabled: bool = True, cache_seconds: float = 5.0) -> None:
        self._store = store
        self._enabled = enabled
        self._cache_seconds = cache_seconds
        self._valid_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def owner_for(self, authorization: str | None) -> str:
        if not self._enabled:
            return ANONYMOUS
        key = key_from_header(authorization)
        if key is None:
            raise AuthenticationError(
                "missing API key: send 'authorization: Bearer <key>' (create one with 'img2vid keys create')"
            )
        owner = hash_key(key)
        now = time.monotonic()
        if self._valid_until.get(owner, 0.0) > now:
            return owner
        if not self._store.key_is_active(owner):
            raise AuthenticationError("the API key was not recognised or has been revoked")
        with self._lock:
            if len(self._valid_until) > 10_000:
                self._valid_until.clear()
            self._valid_until[owner] = now + self._cache_seconds
        return owner
