"""Turning a server's error answer into one of img2vid's errors, with a message a person can act on.

Which error class an answer becomes is decided by :func:`img2vid.errors.error_for_status`, the one table
from HTTP status (and the protocol's ``name``) to error; this module only reads the error body, words the
message for what the client was doing (``submit``, ``poll`` or ``cancel``) and redacts it.
:func:`connection_error` words a request that never got an answer. The protocol's error body
(``{"id", "name", "errors"}``) supplies the details; img2vid supplies the advice. Every text built here
goes through :func:`~img2vid.redact.redact`, because a server may echo what it was sent. This module never
retries anything and never maps a status itself.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx

from ... import errors
from ...config import ENV_API_KEY, ENV_BASE_URL, is_stability_url, key_places
from ...redact import redact
from ._policy import retry_after_seconds

__all__ = ["ErrorBody", "parse_error_body", "error_from_response", "retired_service_error", "connection_error"]

_MAX_DETAIL = 300

Stage = Literal["submit", "poll", "cancel"]


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
    stage: Stage,
    job_id: str | None = None,
    has_key: bool = True,
) -> errors.Img2VidError:
    """The img2vid error for an error answer to a submit, a poll or a cancel."""
    status = response.status_code
    body = parse_error_body(response)
    details = body.messages
    said = f" ({body.name})" if body.name else ""
    where = redact(base_url)

    if status == 404 and stage == "submit" and is_stability_url(base_url):
        return retired_service_error(where)

    cls = errors.error_for_status(status, body.name)
    if issubclass(cls, errors.CancelledError):
        return errors.CancelledError(f"job {job_id} was cancelled on the server", details=details)
    if issubclass(cls, errors.PayloadTooLargeError):
        return errors.PayloadTooLargeError(
            "the image upload is larger than the server accepts (the protocol allows 10 MiB); "
            "use a smaller or JPEG-compressed image",
            field="image",
            details=details,
        )
    if issubclass(cls, errors.InvalidInputError):
        return cls(f"the server refused the request as invalid{said}", details=details)
    if issubclass(cls, errors.AuthenticationError):
        if not has_key:
            return cls(f"{where} asks for an API key and none was given: {key_places(base_url)}", details=details)
        return cls(
            f"{where} refused the API key{said}: check ${ENV_API_KEY} or the api_key in your config file",
            details=details,
        )
    if issubclass(cls, errors.InsufficientCreditsError):
        return cls(
            f"the account behind this API key has no credit left{said}: add credit, or use an img2vid "
            "server or the local engine",
            details=details,
        )
    if issubclass(cls, errors.ContentModerationError):
        return cls("the image was refused by the server's content moderation; try another image", details=details)
    if issubclass(cls, errors.PermissionDeniedError):
        return cls(f"{where} does not allow this API key to do that{said}", details=details)
    if issubclass(cls, errors.NotFoundError):
        if stage == "poll":
            return cls(
                f"job {job_id} was not found: it expired (results are kept for 24 hours), or it belongs to "
                "another API key",
                details=details,
            )
        if stage == "cancel":
            return cls(
                f"job {job_id} was not found: the id is unknown, the job expired (results are kept for "
                "24 hours), or it belongs to another API key",
                details=details,
            )
        return cls(
            f"{where} has no image-to-video route at {response.request.url.path}: is it an img2vid server, "
            "or a protocol server that only has the older v2alpha routes?",
            details=details,
        )
    if issubclass(cls, errors.ConflictError):
        if stage == "cancel":
            return cls(f"job {job_id} has already finished; there is nothing to cancel", details=details)
        return cls(f"{where} refused the request: it conflicts with the job's state{said}", details=details)
    if issubclass(cls, errors.UnprocessableError):
        return cls(f"the server refused the request{said}", details=details)
    if issubclass(cls, errors.RateLimitedError):
        retry_after = retry_after_seconds(response.headers)
        wait = f"; it asks to wait {retry_after:g} s" if retry_after is not None else ""
        return cls(
            f"{where} is refusing requests because too many were sent{wait}", retry_after=retry_after, details=details
        )
    reason = response.reason_phrase or "error"
    if stage == "cancel" and status == 405:
        what = f"{where} does not offer cancelling jobs (it is not an img2vid server, or an older one)"
    elif stage == "poll":
        what = f"the server failed on job {job_id}"
    else:
        what = "the server failed"
    service = cls if issubclass(cls, errors.ServiceError) else errors.ServiceError
    return service(
        f"{what}: HTTP {status} {reason}{said}",
        status=status,
        error_id=body.error_id,
        retry_after=retry_after_seconds(response.headers),
        details=details,
    )


def connection_error(exc: httpx.HTTPError, base_url: str, *, what: str) -> errors.ConnectionFailedError:
    """A request that never got a readable answer; the message names the server, never a header."""
    kind = type(exc).__name__
    reason = redact(str(exc))[:_MAX_DETAIL] or kind
    return errors.ConnectionFailedError(f"could not {what} at {redact(base_url)}: {reason}")
