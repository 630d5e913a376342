"""The one error tree of img2vid.

Every engine raises these, and every front door maps them to its own form: the CLI to an exit code, the
ComfyUI nodes to a one-line message, the server to the protocol's error body and status. Lower-level
errors (httpx, PyAV, Pillow, torch) are caught at one place each and re-raised as one of these ``from``
the cause, so a user reads what went wrong and what to do, never a library's traceback.

Messages must never contain a secret: an API key is redacted before it reaches any text built here.

    Img2VidError
    ├── InvalidInputError            bad field, unreadable image, wrong size        (400)
    │   └── PayloadTooLargeError     upload over the size limit                     (413)
    ├── AuthenticationError          missing or wrong API key                       (401)
    ├── InsufficientCreditsError     the hosted service says the account is empty   (402)
    ├── PermissionDeniedError        the key may not do this                        (403)
    │   └── ContentModerationError   the input was refused by moderation            (403)
    ├── NotFoundError                unknown, expired or someone else's job; gone   (404)
    ├── ConflictError                the job is past the state this asks for        (409)
    ├── UnprocessableError           well formed but refused                        (422)
    │   └── IdempotencyKeyReusedError  an Idempotency-Key sent again with another request (422)
    ├── RateLimitedError             too many requests; carries retry_after          (429)
    │   └── TooManyJobsError         this key already has its quota of jobs waiting  (429)
    ├── ServiceError                 the engine or server failed                     (500)
    │   ├── StoreUnavailableError    the job store cannot be read or written         (503)
    │   ├── QueueFullError           the server's whole queue is full                (503)
    │   └── OutOfMemoryError         the device ran out of memory making the video   (500)
    ├── ModelError                   a local model cannot be found or loaded
    ├── ConnectionFailedError        the server could not be reached
    ├── DeadlineExceededError        the job did not finish in time
    ├── CancelledError               the user stopped the job (a cancelled job's result: 410)
    └── ContentFilteredError         the result was filtered; no video is handed over
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Img2VidError",
    "InvalidInputError",
    "PayloadTooLargeError",
    "AuthenticationError",
    "InsufficientCreditsError",
    "PermissionDeniedError",
    "ContentModerationError",
    "NotFoundError",
    "UnprocessableError",
    "IdempotencyKeyReusedError",
    "ConflictError",
    "RateLimitedError",
    "TooManyJobsError",
    "ServiceError",
    "StoreUnavailableError",
    "QueueFullError",
    "OutOfMemoryError",
    "ModelError",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "CancelledError",
    "ContentFilteredError",
    "error_for_status",
    "CANCELLED_HTTP_STATUS",
]


class Img2VidError(Exception):
    """Base of every error img2vid raises on purpose."""

    #: The HTTP status the server answers with, and the status a client maps back to this class.
    http_status: ClassVar[int] = 500
    #: The protocol's machine-readable ``name`` for this error.
    error_name: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Extra human-readable lines (the protocol's ``errors`` list), without the message itself.
        self.details: list[str] = list(details or [])

    def __str__(self) -> str:
        return self.message


class InvalidInputError(Img2VidError):
    """A field, an image or a file the user gave cannot be used as it is."""

    http_status = 400
    error_name = "invalid_parameters"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        allowed: str | None = None,
        details: list[str] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        #: The name of the offending field, as the user wrote it (``cfg_scale``, ``image``).
        self.field = field
        self.value = value
        #: The allowed values in words (``0 .. 10``, ``1024x576, 576x1024 or 768x768``).
        self.allowed = allowed

    @classmethod
    def for_field(cls, field: str, value: Any, allowed: str) -> InvalidInputError:
        """The standard message: which field, what was given, what is allowed."""
        shown = repr(value) if isinstance(value, str) else str(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return cls(
            f"{field} must be {allowed}; got {shown}",
            field=field,
            value=value,
            allowed=allowed,
        )


class PayloadTooLargeError(InvalidInputError):
    """The upload is larger than the server accepts."""

    http_status = 413
    error_name = "payload_too_large"


class AuthenticationError(Img2VidError):
    """The API key is missing or was refused."""

    http_status = 401
    error_name = "unauthorized"


class InsufficientCreditsError(Img2VidError):
    """The hosted service refused the job because the account has no credit left."""

    http_status = 402
    error_name = "payment_required"


class PermissionDeniedError(Img2VidError):
    """The key is valid but may not do this."""

    http_status = 403
    error_name = "forbidden"


class ContentModerationError(PermissionDeniedError):
    """The service's moderation refused the input image."""

    error_name = "content_moderation"


class NotFoundError(Img2VidError):
    """The job, route or model does not exist, has expired, or belongs to someone else."""

    http_status = 404
    error_name = "not_found"


class UnprocessableError(Img2VidError):
    """The request was well formed but the service refused it."""

    http_status = 422
    error_name = "unprocessable"


class IdempotencyKeyReusedError(UnprocessableError):
    """An Idempotency-Key came again with a different request than the one it first named."""

    error_name = "idempotency_key_reused"

    @classmethod
    def for_key(cls, key: str) -> IdempotencyKeyReusedError:
        return cls(
            f"Idempotency-Key {key!r} was already used with a different request (another image, route or field "
            "value) in the last 24 hours; send the same request to get its job, or use a new key for a new job"
        )


class ConflictError(Img2VidError):
    """The job is already past the state the request needs (cancelling a job that has finished)."""

    http_status = 409
    error_name = "conflict"


class RateLimitedError(Img2VidError):
    """Too many requests; ``retry_after`` says how many seconds to wait, when known."""

    http_status = 429
    error_name = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float | None = None, details: list[str] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class TooManyJobsError(RateLimitedError):
    """This key already has as many jobs queued or running as the server allows; wait for one to end."""

    error_name = "too_many_jobs"


class ServiceError(Img2VidError):
    """The engine or the server failed while doing the job; trying again later may work."""

    http_status = 500
    error_name = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_id: str | None = None,
        retry_after: float | None = None,
        details: list[str] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.status = status
        self.error_id = error_id
        #: Seconds after which trying again may work, when the server said so (a 503's ``Retry-After``).
        self.retry_after = retry_after


class StoreUnavailableError(ServiceError):
    """The job store cannot be reached or written; nothing was accepted, so sending again later is safe."""

    http_status = 503
    error_name = "store_unavailable"


class QueueFullError(ServiceError):
    """The server's queue holds as many jobs as it allows; try again later."""

    http_status = 503
    error_name = "queue_full"


class OutOfMemoryError(ServiceError):
    """The device ran out of memory making the video; the message says what to try (fewer frames, a
    smaller image or decode chunk, offload). The engine that ran out recognises it; nothing else guesses."""

    http_status = 500
    error_name = "out_of_memory"


class ModelError(Img2VidError):
    """A local model cannot be found, downloaded or loaded."""

    http_status = 500
    error_name = "model_error"


class ConnectionFailedError(Img2VidError):
    """The server could not be reached, or the connection broke."""

    http_status = 503
    error_name = "connection_failed"


class DeadlineExceededError(Img2VidError):
    """The job did not finish within the time the caller allowed."""

    http_status = 504
    error_name = "timeout"


class CancelledError(Img2VidError):
    """The user stopped the job (Ctrl-C, ComfyUI's Cancel, a cancel callback, the protocol's DELETE).

    In-process it never reaches HTTP (499 is nginx's "client closed request"); a server answers a
    cancelled job's result with 410 Gone and this name (see :data:`CANCELLED_HTTP_STATUS`)."""

    http_status = 499
    error_name = "cancelled"


class ContentFilteredError(Img2VidError):
    """The service finished but filtered the result; no video is handed over."""

    http_status = 403
    error_name = "content_filtered"


#: The status a server answers when the result of a cancelled job is fetched.
CANCELLED_HTTP_STATUS = 410

_BY_STATUS: dict[int, type[Img2VidError]] = {
    400: InvalidInputError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: NotFoundError,
    413: PayloadTooLargeError,
    422: UnprocessableError,
    429: RateLimitedError,
}


#: Protocol names that pick a narrower class than the status alone.
_BY_NAME: dict[str, type[Img2VidError]] = {
    cls.error_name: cls
    for cls in (
        ContentModerationError,
        ContentFilteredError,
        TooManyJobsError,
        StoreUnavailableError,
        QueueFullError,
        OutOfMemoryError,
        ModelError,
        IdempotencyKeyReusedError,
    )
}


def error_for_status(status: int, name: str | None = None) -> type[Img2VidError]:
    """The error class for an HTTP status (and the protocol's error ``name`` where it refines it)."""
    if status == CANCELLED_HTTP_STATUS and name == CancelledError.error_name:
        return CancelledError
    refined = _BY_NAME.get(name or "")
    if refined is not None and refined.http_status == status:
        return refined
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServiceError
