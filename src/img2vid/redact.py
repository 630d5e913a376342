"""The one redaction of secrets in img2vid: every text a user, a log or a node may see passes through here.

A key given to :func:`register_secret` is replaced by ``********`` in log records of img2vid's and httpx's
loggers (once :func:`install_log_filter` ran), and :func:`redact` does the same for any text img2vid
builds: an error body that echoes the authorization header, an exception's message, a progress line. It
also masks authorization-like header values and the password in a ``user:password@host`` URL, whoever
registered them, and any further secrets the caller names for one call (the ComfyUI nodes pass every key
the process could send). The remote engine, the CLI and the ComfyUI nodes all use it; none keeps its own.

It is part of the light core (no httpx, no torch). It must never log, print or store a key anywhere but
the in-memory set it redacts.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

from .config import mask_url_password

__all__ = ["MASK", "register_secret", "redact", "RedactingFilter", "install_log_filter", "REDACTED_LOGGERS"]

MASK = "********"

#: Loggers whose records pass through the filter. Filters on a logger see only the records logged on that
#: very logger, not its children's, so httpcore's children are named one by one.
REDACTED_LOGGERS = (
    "img2vid",
    "img2vid.remote",
    "img2vid.comfy",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)

#: ``authorization: Bearer xyz`` and friends, whatever the key: a header value is never worth showing.
_AUTH_HEADER = re.compile(
    r"""(?P<name>(?:authorization|x-api-key|api[_-]?key)["']?\s*[:=]\s*["']?)(?P<scheme>bearer\s+)?(?P<value>[^\s"',;}\]]+)""",
    re.IGNORECASE,
)

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def register_secret(secret: str | None) -> None:
    """Redact ``secret`` from now on. Very short strings are ignored: masking them would mangle text."""
    if secret and len(secret) >= 4:
        with _lock:
            _secrets.add(secret)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every registered secret, each of ``secrets``, every authorization-like header value and
    every URL password masked. ``secrets`` are masked whatever their length: the caller chose them."""
    if not text:
        return text
    with _lock:
        known = _secrets | {s for s in secrets if s}
    for secret in sorted(known, key=len, reverse=True):  # a longer key that contains a shorter one goes first
        if secret in text:
            text = text.replace(secret, MASK)
    text = mask_url_password(text)
    return _AUTH_HEADER.sub(lambda m: m.group("name") + (m.group("scheme") or "") + MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logger's problem, not a reason to leak
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()


def install_log_filter() -> None:
    """Attach the filter to img2vid's and httpx's loggers, once per process."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
