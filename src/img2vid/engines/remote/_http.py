"""The remote engine's one retry policy and the one place a request is sent.

What is retried: connection failures, 408, 429 and 5xx answers, with exponential backoff and jitter, or
exactly as long as the server's ``Retry-After`` asks (up to a cap), a bounded number of times, never past
the caller's deadline. What is never retried: a request that is not idempotent (the paid submit) once it
may have reached the server. A submit is sent again only when the connection was never made, or when the
server answered 408, 429 or 5xx (it refused the job, so nothing was charged); a broken connection after
sending, a read timeout or an unreadable 200 end the attempt with an error instead.

Every request runs in a short-lived worker thread while the caller watches ``cancel`` every 0.1 s, so a
stop is obeyed at once even while a slow server holds the connection. This module never logs headers.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import httpx

from ... import errors
from ..base import CANCEL_CHECK_INTERVAL, CancelCheck, raise_if_cancelled, sleep_unless_cancelled
from ._redact import redact

__all__ = [
    "RetryPolicy",
    "DEFAULT_RETRY_POLICY",
    "Deadline",
    "Sender",
    "retry_after_seconds",
    "is_retryable_status",
    "UnreadableAnswerError",
]

log = logging.getLogger("img2vid.remote")

T = TypeVar("T")

#: How often a caller waiting on a request hears that time goes by.
TICK_SECONDS = 1.0

#: Per-request limits; each is also cut to what is left of the caller's deadline.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
WRITE_TIMEOUT = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before sending a failed request again."""

    max_retries: int = 2
    #: The first backoff; it doubles each retry up to ``max_delay``, minus up to ``jitter`` of itself.
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25
    #: A ``Retry-After`` longer than this is not waited for: the error goes to the caller instead.
    max_retry_after: float = 60.0

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0-based) when the server gave no ``Retry-After``."""
        delay = min(self.initial_delay * (2**retry), self.max_delay)
        return delay * (1.0 - self.jitter * random.random())


DEFAULT_RETRY_POLICY = RetryPolicy()


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds: ``retry-after-ms``, a number of seconds, or an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class Deadline:
    """The caller's total time budget for one generation."""

    def __init__(self, seconds: float, describe: Callable[[], str]) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self._end = self.started + seconds
        self._describe = describe

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def expired(self) -> bool:
        return self.remaining() <= 0

    def error(self) -> errors.DeadlineExceededError:
        return errors.DeadlineExceededError(self._describe())

    def timeout(self) -> httpx.Timeout:
        """Per-request limits, none longer than what is left (but long enough to get one last answer)."""
        left = max(0.5, self.remaining())
        return httpx.Timeout(
            connect=min(CONNECT_TIMEOUT, left),
            read=min(READ_TIMEOUT, left),
            write=min(WRITE_TIMEOUT, left),
            pool=min(CONNECT_TIMEOUT, left),
        )


class UnreadableAnswerError(Exception):
    """Internal: the status line arrived but the body did not; carries the status."""

    def __init__(self, response: httpx.Response, cause: httpx.HTTPError) -> None:
        super().__init__(str(cause))
        self.response = response
        self.cause = cause


#: Failures that prove the request never reached the server: always safe to send again.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _run_interruptibly(
    call: Callable[[], T], cancel: CancelCheck | None, tick: Callable[[], None] | None = None
) -> T:
    """``call()`` in a worker thread, while this thread checks ``cancel`` every 0.1 s and calls ``tick``
    about once a second (a slow upload still shows the time going by)."""
    if cancel is None and tick is None:
        return call()
    raise_if_cancelled(cancel)
    box: dict[str, object] = {}
    done = threading.Event()
    next_tick = time.monotonic() + TICK_SECONDS

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it is
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="img2vid-remote-request", daemon=True).start()
    while not done.wait(CANCEL_CHECK_INTERVAL):
        raise_if_cancelled(cancel)  # the worker finishes on its own within its timeouts
        if tick is not None and time.monotonic() >= next_tick:
            tick()
            next_tick = time.monotonic() + TICK_SECONDS
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


class Sender:
    """Sends requests through one httpx client under one retry policy."""

    def __init__(self, client: httpx.Client, policy: RetryPolicy, base_url: str) -> None:
        self.client = client
        self.policy = policy
        self.base_url = base_url

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        response = self.client.send(request, stream=True)
        try:
            response.read()
        except httpx.HTTPError as exc:
            raise UnreadableAnswerError(response, exc) from exc
        finally:
            response.close()
        return response

    def send(
        self,
        build: Callable[[httpx.Timeout], httpx.Request],
        *,
        idempotent: bool,
        deadline: Deadline,
        cancel: CancelCheck | None,
        what: str,
        on_wait: Callable[[float, str], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """The server's answer (any status) once it is final, after the retries the policy allows.

        Raises :class:`~img2vid.errors.ConnectionFailedError` when no readable answer came,
        :class:`~img2vid.errors.ServiceError` for an unreadable success to a non-idempotent request,
        :class:`~img2vid.errors.DeadlineExceededError` and :class:`~img2vid.errors.CancelledError`.
        """
        retry = 0
        while True:
            if deadline.expired():
                raise deadline.error()
            request = build(deadline.timeout())
            began = time.monotonic()
            try:
                response = _run_interruptibly(lambda: self._attempt(request), cancel, on_tick)
            except UnreadableAnswerError as exc:
                status = exc.response.status_code
                log.debug("%s %s -> %s, body unreadable: %s", request.method, request.url.path, status, exc.cause)
                if deadline.expired():
                    raise deadline.error() from exc.cause
                if not idempotent and not is_retryable_status(status):
                    raise errors.ServiceError(
                        f"the server answered {status} to {what} but the answer could not be read "
                        f"({type(exc.cause).__name__}); not sending it again, because the server may already "
                        "have started (and charged for) the job",
                        status=status,
                    ) from exc.cause
                if retry >= self.policy.max_retries:
                    raise self._connection_error(exc.cause, what) from exc.cause
                delay = self.policy.backoff(retry)
                reason = f"answer {status} broken off"
            except httpx.HTTPError as exc:
                log.debug("%s %s failed: %s", request.method, request.url.path, redact(repr(exc)))
                if deadline.expired() and isinstance(exc, httpx.TimeoutException):
                    raise deadline.error() from exc
                may_have_arrived = not isinstance(exc, _NEVER_SENT)
                if may_have_arrived and not idempotent:
                    happened = (
                        "did not answer in time"
                        if isinstance(exc, httpx.TimeoutException)
                        else "broke the connection"
                    )
                    raise errors.ConnectionFailedError(
                        f"{redact(self.base_url)} {happened} after the request to {what} was sent "
                        f"({type(exc).__name__}); not sending it again, because the server may already have "
                        "started (and charged for) the job"
                    ) from exc
                if retry >= self.policy.max_retries:
                    raise self._connection_error(exc, what) from exc
                delay = self.policy.backoff(retry)
                reason = type(exc).__name__
            else:
                log.debug(
                    "%s %s -> %s in %.2f s",
                    request.method,
                    request.url.path,
                    response.status_code,
                    time.monotonic() - began,
                )
                if not is_retryable_status(response.status_code) or retry >= self.policy.max_retries:
                    return response
                asked = retry_after_seconds(response.headers)
                if asked is not None and asked > self.policy.max_retry_after:
                    return response  # the server wants a longer pause than is worth waiting for here
                delay = asked if asked is not None else self.policy.backoff(retry)
                reason = f"HTTP {response.status_code}"
                if delay >= deadline.remaining():
                    return response
            if delay >= deadline.remaining():
                raise deadline.error()
            retry += 1
            log.info("%s: %s; retrying in %.1f s (%d/%d)", what, reason, delay, retry, self.policy.max_retries)
            if on_wait is not None:
                on_wait(delay, f"{reason}; retrying in {delay:.0f} s")
            sleep_unless_cancelled(delay, cancel)

    def _connection_error(self, exc: httpx.HTTPError, what: str) -> errors.ConnectionFailedError:
        from ._errors import connection_error

        return connection_error(exc, self.base_url, what=what)
