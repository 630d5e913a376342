"""Turning a server's error answer into one of img2vid's errors, with a message a person can act on.

One function per direction of travel: :func:`error_from_response` for a status the server sent,
:func:`connection_error` for a request that never got an answer. The protocol's error body
(``{"id", "name", "errors"}``) supplies the details; img2vid supplies the advice. Every text built here goes
through :func:`redact`, because a server may echo what it was sent. This module never retries anything.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ... import errors
from ...config import ENV_API_KEY, ENV_BASE_URL, is_stability_url, key_places
from ._redact import redact

__all__ = ["ErrorBody", "parse_error_body", "error_from_response", "retired_service_error", "connection_error"]

_MAX_DETAIL = 300


class ErrorBody:
    """The protocol's error body, tolerant of servers that send something else."""

    def __init__(self, error_id: str | None, name: str | None, messages: list[str]) -> None:
        self.error_id = error_id
        self.name = name
        self.messages = messages


def parse_error_body(response: httpx.Response) -> ErrorBody:
    """The error body's fields; a non-JSON body becomes one short line of its text."""
    try:
        data: Any = json.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        text = response.content[:_MAX_DETAIL].decode("utf-8", errors="replace").strip()
        return ErrorBody(None, None, [redact(text)] if text else [])
    if not isinstance(data, dict):
        return ErrorBody(None, None, [])
    raw = data.get("errors")
    if isinstance(raw, str):
        raw = [raw]
    messages = [redact(str(m))[:_MAX_DETAIL] for m in raw] if isinstance(raw, list) else []
    if not messages:  # other servers' bodies: {"message": ...}, FastAPI's {"detail": ...}
        said = next((data[k] for k in ("message", "detail") if isinstance(data.get(k), str)), None)
        messages = [redact(said)[:_MAX_DETAIL]] if said else []
    name = data.get("name")
    error_id = data.get("id")
    return ErrorBody(
        str(error_id) if isinstance(error_id, (str, int)) else None,
        redact(str(name)) if isinstance(name, str) else None,
        messages,
    )


def _retry_after_of(response: httpx.Response) -> float | None:
    from ._http import retry_after_seconds

    return retry_after_seconds(response.headers)


def retired_service_error(base_url: str) -> errors.NotFoundError:
    """The hosted service answers 404 on image-to-video for everyone: say so, and what to use instead."""
    return errors.NotFoundError(
        f"{base_url} no longer serves image-to-video: it answers 404 on every image-to-video route "
        "(Stability's hosted service stopped offering it). "
        f"Run an img2vid server and point ${ENV_BASE_URL} (or --engine URL) at it, "
        "or use the local engine (--engine local)."
    )


def error_from_response(
    response: httpx.Response,
    *,
    base_url: str,
    stage: str,
    job_id: str | None = None,
    has_key: bool = True,
) -> errors.Img2VidError:
    """The img2vid error for an error answer; ``stage`` is ``"submit"`` or ``"poll"``."""
    status = response.status_code
    body = parse_error_body(response)
    details = body.messages
    said = f" ({body.name})" if body.name else ""
    where = redact(base_url)

    if status == 404 and stage == "submit" and is_stability_url(base_url):
        return retired_service_error(where)

    cls = errors.error_for_status(status, body.name)
    if status == 400:
        return errors.InvalidInputError(f"the server refused the request as invalid{said}", details=details)
    if status == 401:
        if not has_key:
            return errors.AuthenticationError(
                f"{where} asks for an API key and none was given: {key_places(base_url)}",
                details=details,
            )
        return errors.AuthenticationError(
            f"{where} refused the API key{said}: check ${ENV_API_KEY} or the api_key in your config file",
            details=details,
        )
    if status == 402:
        return errors.InsufficientCreditsError(
            f"the account behind this API key has no credit left{said}: add credit, or use an img2vid "
            "server or the local engine",
            details=details,
        )
    if status == 403:
        if cls is errors.ContentModerationError:
            return errors.ContentModerationError(
                "the image was refused by the server's content moderation; try another image", details=details
            )
        return errors.PermissionDeniedError(f"{where} does not allow this API key to do that{said}", details=details)
    if status == 404:
        if stage == "poll":
            return errors.NotFoundError(
                f"job {job_id} was not found: it expired (results are kept for 24 hours), or it belongs to "
                "another API key",
                details=details,
            )
        return errors.NotFoundError(
            f"{where} has no image-to-video route at {response.request.url.path}: is it an img2vid server, "
            "or a protocol server that only has the older v2alpha routes?",
            details=details,
        )
    if status == 413:
        return errors.PayloadTooLargeError(
            "the image upload is larger than the server accepts (the protocol allows 10 MiB); "
            "use a smaller or JPEG-compressed image",
            field="image",
            details=details,
        )
    if status == 422:
        return errors.UnprocessableError(f"the server refused the request{said}", details=details)
    if status == 429:
        retry_after = _retry_after_of(response)
        wait = f"; it asks to wait {retry_after:g} s" if retry_after is not None else ""
        return errors.RateLimitedError(
            f"{where} is refusing requests because too many were sent{wait}",
            retry_after=retry_after,
            details=details,
        )
    reason = response.reason_phrase or "error"
    what = f"the server failed on job {job_id}" if stage == "poll" else "the server failed"
    return errors.ServiceError(
        f"{what}: HTTP {status} {reason}{said}", status=status, error_id=body.error_id, details=details
    )


def connection_error(exc: httpx.HTTPError, base_url: str, *, what: str) -> errors.ConnectionFailedError:
    """A request that never got a readable answer; the message names the server, never a header."""
    kind = type(exc).__name__
    reason = redact(str(exc))[:_MAX_DETAIL] or kind
    return errors.ConnectionFailedError(f"could not {what} at {redact(base_url)}: {reason}")
