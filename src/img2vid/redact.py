"""The one redaction of secrets in img2vid: every text a user, a log or a node may see passes through here.

A key given to :func:`register_secret` is replaced by ``********`` in log records of img2vid's and httpx's
loggers (once :func:`install_log_filter` ran), and :func:`redact` does the same for any text img2vid
builds: an error body that echoes the authorization header, an exception's message, a progress line. It
also masks authorization-like header values and the password in a ``user:password@host`` URL, whoever
registered them. The registry is the one list of secrets in img2vid: the remote engine registers the key it
sends, the ComfyUI nodes every key the process could send (the environment's, the config file's, a
widget's). The remote engine, the CLI, the server, the workers and the ComfyUI nodes all use it; none keeps
its own.

URLs get one rule, :func:`mask_url_credentials`, whatever the scheme (``redis``, ``rediss``, ``amqp``,
``postgresql+psycopg``, ``http``): the password of ``user:password@host`` and of ``:password@host`` (Redis
has no user name), and a ``password=`` (``passwd``, ``pwd``, ``sslpassword``) value in a query string, a
libpq ``key=value`` string or a dict's repr. A process img2vid owns (``img2vid serve``, ``img2vid worker``)
calls :func:`install_process_redaction`, so that every log record of every library (Celery, kombu, uvicorn,
SQLAlchemy), its traceback included, is masked before any handler sees it.

It is part of the light core (no httpx, no torch). It must never log, print or store a key anywhere but
the in-memory set it redacts.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "register_secret",
    "redact",
    "mask_url_credentials",
    "RedactingFilter",
    "install_log_filter",
    "install_process_redaction",
    "REDACTED_LOGGERS",
]

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

#: ``scheme://user:password@host`` and ``scheme://:password@host``: the password runs to the last ``@``
#: before the path, so a password holding an unescaped ``@`` is masked whole (Python's parsers read it so).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^/\s]*@")
#: ``password=pw`` in a query string (``?password=``, ``&sslpassword=``), a libpq DSN, or a quoted key of a
#: dict's repr (``'password': 'pw'``; a bare ``password:`` is prose and stays); ``pass=`` only right after
#: ``?``, ``&`` or ``;``, where it cannot be an English word.
_PASSWORD_PARAM = re.compile(
    r"""(?P<name>(?:(?<=[?&;])pass|\b(?:ssl)?(?:password|passwd|pwd))(?:\s*=\s*|["']\s*:\s*)["']?)(?P<value>[^\s"'&#,;}\])]+)""",
    re.IGNORECASE,
)

#: The shortest string :func:`register_secret` accepts. Every key a server accepts is a secret whatever its
#: length, so the bar sits as low as it can without masking the text itself: strings of 1 to 3 characters
#: (``a``, ``ok``, ``576``) are in nearly every message, and a key that short would blank them all out of
#: every error and log line. Real keys are far longer (img2vid's own are 54 characters, Stability's 51).
MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def register_secret(secret: str | None) -> None:
    """Redact ``secret`` (without surrounding whitespace, as it is sent) from now on, for the life of the
    process. Strings shorter than :data:`MIN_SECRET_LENGTH` are ignored: masking them would mangle text."""
    secret = secret.strip() if isinstance(secret, str) else None
    if secret and len(secret) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """``text`` with every registered secret, every authorization-like header value and every URL password
    masked."""
    if not text:
        return text
    with _lock:
        known = set(_secrets)
    for secret in sorted(known, key=len, reverse=True):  # a longer key that contains a shorter one goes first
        if secret in text:
            text = text.replace(secret, MASK)
    text = mask_url_credentials(text)
    return _AUTH_HEADER.sub(lambda m: m.group("name") + (m.group("scheme") or "") + MASK, text)


def mask_url_credentials(text: str) -> str:
    """``text`` with every URL's password (in its user part or its query) and every ``password=`` value
    shown as ``********``; the scheme, user, host and database stay, so the message still says where."""
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
    return _PASSWORD_PARAM.sub(lambda m: m.group("name") + MASK, text)


def _redact_record(record: logging.LogRecord) -> None:
    """Mask ``record``'s message and traceback in place. A record whose text holds nothing to mask keeps its
    ``args`` (uvicorn's access formatter reads them as a tuple); otherwise its string arguments are masked
    one by one where that gives the masked message, else the message is replaced by its masked text."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken record is the logger's problem, not a reason to leak
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = _masked_args(record, cleaned)
    if record.exc_info and not record.exc_text:
        # Formatters use a record's exc_text when it is set: the traceback is formatted once, masked.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _masked_args(record: logging.LogRecord, cleaned: str) -> tuple[Any, Any]:
    args = record.args
    if isinstance(args, tuple) and args and isinstance(record.msg, str):
        masked = tuple(redact(arg) if isinstance(arg, str) else arg for arg in args)
        try:
            if record.msg % masked == cleaned:
                return record.msg, masked
        except (TypeError, ValueError):
            pass
    return cleaned, None


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with secrets masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
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


_factory_installed = False


def install_process_redaction() -> None:
    """Mask every log record this process creates, whichever library logs it, before any handler sees it.

    For processes img2vid owns (``img2vid serve``, ``img2vid worker``): Celery, kombu, uvicorn and SQLAlchemy
    log through handlers img2vid does not configure, and a filter on a logger misses its children. A
    library embedding img2vid (the remote engine in someone's app) keeps :func:`install_log_filter` instead:
    the record factory belongs to the process. Idempotent."""
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(make_record)
