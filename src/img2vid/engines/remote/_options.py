"""What ``RemoteEngine(...)`` is given, checked: the server and its key, the numbers, the headers.

Each check raises :class:`~img2vid.errors.InvalidInputError` naming the argument and what it may be, and
:func:`server_and_key` registers every key it meets with :mod:`img2vid.redact` before anything can show it.
This module never sends anything and must never put a key into a message.
"""

from __future__ import annotations

import dataclasses
import math

from ... import __version__, errors
from ...config import is_stability_url, load_config, missing_key_message, resolve_api_key, resolve_base_url
from ...redact import register_secret
from ._errors import retired_service_error
from ._policy import DEFAULT_RETRY_POLICY, RetryPolicy

__all__ = [
    "MAX_CLIENT_HEADER",
    "server_and_key",
    "positive",
    "checked_poll_interval",
    "checked_retry_policy",
    "model_name",
    "request_headers",
]

#: The protocol's limit on each ``stability-client-*`` header.
MAX_CLIENT_HEADER = 256


def server_and_key(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The server's URL and the key for it, from the arguments, the environment or the config file (every
    key registered as a secret). Stability's URL without a key is an error that says the service is gone,
    since a key alone would not help."""
    register_secret(api_key)
    config = load_config()
    url = resolve_base_url(base_url, config)
    key = resolve_api_key(api_key, url, config)
    register_secret(key)
    if key is None and is_stability_url(url):
        raise errors.AuthenticationError(f"{missing_key_message(url)}. But {retired_service_error(url).message}")
    return url, key


def positive(name: str, value: float, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise errors.InvalidInputError.for_field(name, value, allowed)
    return float(value)


def checked_poll_interval(value: float | None, default: float) -> float:
    """The pause between polls: ``default`` (by the server) unless a number of seconds, 0 or more, is given."""
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)
    raise errors.InvalidInputError.for_field("poll_interval", value, "a number of seconds, 0 or more")


def checked_retry_policy(policy: RetryPolicy | None, max_retries: int | None) -> RetryPolicy:
    """``policy`` (default: :data:`~._policy.DEFAULT_RETRY_POLICY`) with ``max_retries`` where given."""
    policy = policy or DEFAULT_RETRY_POLICY
    if max_retries is None:
        max_retries = policy.max_retries
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 10:
        raise errors.InvalidInputError.for_field("max_retries", max_retries, "an integer from 0 to 10")
    return dataclasses.replace(policy, max_retries=max_retries)


def model_name(model: str | None, is_stability: bool) -> str | None:
    """A server model's name as the ``model`` form field carries it, or None for the server's default."""
    if model is None or (isinstance(model, str) and not model.strip()):
        return None
    if not isinstance(model, str) or len(model.strip()) > 200 or not model.strip().isprintable():
        raise errors.InvalidInputError.for_field("model", model, "a model name the server lists (printable, at most 200 characters)")
    if is_stability:
        raise errors.InvalidInputError(
            f"model: Stability's image-to-video service has one model and takes no model name; {model.strip()!r} "
            "names a model of an img2vid server: pass that server's URL",
            field="model",
            value=model,
            allowed="no model for Stability's service",
        )
    return model.strip()


def _client_header(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    text = str(value)
    if len(text) > MAX_CLIENT_HEADER or any(c in text for c in "\r\n") or not text.isprintable():
        raise errors.InvalidInputError.for_field(
            name, text, f"printable text of at most {MAX_CLIENT_HEADER} characters"
        )
    return text


def request_headers(
    key: str | None, *, client_id: str | None, user_id: str | None, version: str | None
) -> dict[str, str]:
    """The headers of every request: who is asking (the ``stability-client-*`` ones where given) and the key."""
    headers = {"user-agent": f"img2vid/{__version__}", "accept": "video/*"}
    for name, value in (
        ("stability-client-id", _client_header("client_id", client_id)),
        ("stability-client-user-id", _client_header("user_id", user_id)),
        ("stability-client-version", _client_header("version", version)),
    ):
        if value is not None:
            headers[name] = value
    if key is not None:
        if not (key.isascii() and key.isprintable()):
            # Never shown: only where it came from and what a key looks like.
            raise errors.InvalidInputError(
                "api_key must be printable ASCII text, as the server issued it; the key given (argument, "
                "environment or config file) has other characters",
                field="api_key",
                allowed="printable ASCII text",
            )
        headers["authorization"] = f"Bearer {key}"
    return headers
