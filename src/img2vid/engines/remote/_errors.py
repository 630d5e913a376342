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

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class _Refusal:
    """One error answer, read once: what the wording and the error's fields are made from."""

    status: int
    reason: str
    body: ErrorBody
    where: str  # the server's URL, redacted
    keys: str  # where an API key for this server can be set, in words
    path: str
    retry_after: float | None
    stage: Stage
    job_id: str | None
    has_key: bool

    @property
    def said(self) -> str:
        """The protocol's ``name`` as a message shows it: `` (name)``, or nothing."""
        return f" ({self.body.name})" if self.body.name else ""


def error_from_response(
    response: httpx.Response,
    *,
    base_url: str,
    stage: Stage,
    job_id: str | None = None,
    has_key: bool = True,
) -> errors.Img2VidError:
    """The img2vid error for an error answer to a submit, a poll or a cancel.

    Its class is the one :func:`img2vid.errors.error_for_status` gives for the status and the body's
    ``name`` (so a server's ``model_error`` is a :class:`~img2vid.errors.ModelError` here too), else the
    status's own class."""
    if response.status_code == 404 and stage == "submit" and is_stability_url(base_url):
        return retired_service_error(redact(base_url))
    refusal = _Refusal(
        status=response.status_code,
        reason=response.reason_phrase or "error",
        body=parse_error_body(response),
        where=redact(base_url),
        keys=key_places(base_url),
        path=response.request.url.path,
        retry_after=retry_after_seconds(response.headers),
        stage=stage,
        job_id=job_id,
        has_key=has_key,
    )
    cls = errors.error_for_status(refusal.status, refusal.body.name)
    return _build(cls, _wording(cls, refusal), refusal)


def _wording(cls: type[errors.Img2VidError], r: _Refusal) -> str:
    """The message for an answer that became ``cls``: what happened, in the terms of what the client was
    doing, and what to do about it."""
    job = f"job {r.job_id}"
    if issubclass(cls, errors.CancelledError):
        return f"{job} was cancelled on the server"
    if issubclass(cls, errors.PayloadTooLargeError):
        return (
            "the image upload is larger than the server accepts (the protocol allows 10 MiB); "
            "use a smaller or JPEG-compressed image"
        )
    if issubclass(cls, errors.InvalidInputError):
        return f"the server refused the request as invalid{r.said}"
    if issubclass(cls, errors.AuthenticationError):
        if not r.has_key:
            return f"{r.where} asks for an API key and none was given: {r.keys}"
        return f"{r.where} refused the API key{r.said}: check ${ENV_API_KEY} or the api_key in your config file"
    if issubclass(cls, errors.InsufficientCreditsError):
        return (
            f"the account behind this API key has no credit left{r.said}: add credit, or use an img2vid "
            "server or the local engine"
        )
    if issubclass(cls, errors.ContentModerationError):
        return "the image was refused by the server's content moderation; try another image"
    if issubclass(cls, errors.PermissionDeniedError):
        return f"{r.where} does not allow this API key to do that{r.said}"
    if issubclass(cls, errors.ContentFilteredError):
        return f"the server filtered the result of {job}{r.said}; no video is handed over: try another image or seed"
    if issubclass(cls, errors.NotFoundError):
        if r.stage == "poll":
            return f"{job} was not found: it expired (results are kept for 24 hours), or it belongs to another API key"
        if r.stage == "cancel":
            return (
                f"{job} was not found: the id is unknown, the job expired (results are kept for "
                "24 hours), or it belongs to another API key"
            )
        return (
            f"{r.where} has no image-to-video route at {r.path}: is it an img2vid server, "
            "or a protocol server that only has the older v2alpha routes?"
        )
    if issubclass(cls, errors.ConflictError):
        if r.stage == "cancel":
            return f"{job} has already finished; there is nothing to cancel"
        return f"{r.where} refused the request: it conflicts with the job's state{r.said}"
    if issubclass(cls, errors.UnprocessableError):
        return f"the server refused the request{r.said}"
    if issubclass(cls, errors.RateLimitedError):
        wait = f"; it asks to wait {r.retry_after:g} s" if r.retry_after is not None else ""
        return f"{r.where} is refusing requests because too many were sent{wait}"
    # The server or its engine failed (ServiceError and its kinds, ModelError): say where it was.
    if r.stage == "cancel" and r.status == 405:
        what = f"{r.where} does not offer cancelling jobs (it is not an img2vid server, or an older one)"
    elif r.stage == "poll":
        what = f"the server failed on {job}"
    else:
        what = "the server failed"
    return f"{what}: HTTP {r.status} {r.reason}{r.said}"


def _build(cls: type[errors.Img2VidError], message: str, r: _Refusal) -> errors.Img2VidError:
    """``cls`` made with the fields of its kind: the upload's field, the server's wait, the status and id."""
    details = r.body.messages
    if issubclass(cls, errors.PayloadTooLargeError):
        return cls(message, field="image", details=details)
    if issubclass(cls, errors.RateLimitedError):
        return cls(message, retry_after=r.retry_after, details=details)
    if issubclass(cls, errors.ServiceError):
        return cls(message, status=r.status, error_id=r.body.error_id, retry_after=r.retry_after, details=details)
    return cls(message, details=details)


def connection_error(exc: httpx.HTTPError, base_url: str, *, what: str) -> errors.ConnectionFailedError:
    """A request that never got a readable answer; the message names the server, never a header."""
    kind = type(exc).__name__
    reason = redact(str(exc))[:_MAX_DETAIL] or kind
    return errors.ConnectionFailedError(f"could not {what} at {redact(base_url)}: {reason}")
