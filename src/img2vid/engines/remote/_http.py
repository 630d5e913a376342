"""The one place a request is sent: one attempt, then whatever ``_policy`` decides.

:meth:`Sender.send` builds a request, runs it through the generation's :class:`~._wait.Waiter` (so cancel
and the deadline are watched while it is in flight), turns what happened into a ``_policy`` outcome, and
acts on the decision: hand the answer over, wait and send again, or raise the error ``_errors`` words.
Per-request httpx timeouts are cut to what is left of the deadline. This module never logs a header, and
never sends a non-idempotent request again unless ``_policy`` says the server surely did not take it.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
from collections.abc import Callable

import httpx

from ... import errors
from ...redact import redact
from . import _policy
from ._errors import connection_error
from ._policy import RetryPolicy
from ._wait import LAST_REQUEST_SECONDS, Waiter

__all__ = ["Sender", "request_timeouts", "UnreadableAnswerError", "tls_context"]

log = logging.getLogger("img2vid.remote")

#: Per-request limits; each is also cut to what is left of the caller's deadline.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
WRITE_TIMEOUT = 60.0

#: Failures that prove the request never reached the server: always safe to send again.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every engine's connections share: httpx's default (certifi's CA bundle, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set), built once per setting. Building one reads the whole CA
    bundle, about 40 ms of CPU, which every new engine paid (a node run, each test) even for plain HTTP."""
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _tls_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """Keyed on the variables httpx reads, so a changed setting gets its own context; never modified after."""
    return httpx.create_ssl_context(verify=True, trust_env=True)


def request_timeouts(remaining: float) -> httpx.Timeout:
    """Per-request limits, none longer than what is left (but long enough to get one last answer)."""
    left = max(LAST_REQUEST_SECONDS, remaining)
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
        waiter: Waiter,
        what: str,
        on_wait: Callable[[float, str], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """The server's answer (any status) once it is final, after the retries the policy allows.

        Raises :class:`~img2vid.errors.ConnectionFailedError` when no readable answer came,
        :class:`~img2vid.errors.ServiceError` for an unreadable success to a non-idempotent request,
        :class:`~img2vid.errors.DeadlineExceededError` and :class:`~img2vid.errors.CancelledError`.
        """
        deadline = waiter.deadline
        retry = 0
        while True:
            if deadline.expired():
                raise deadline.error()
            request = build(request_timeouts(deadline.remaining()))
            began = waiter.clock.now()
            failure: httpx.HTTPError | None = None
            response: httpx.Response | None = None
            try:
                response = waiter.run(lambda request=request: self._attempt(request), on_tick)
            except UnreadableAnswerError as exc:
                log.debug("%s %s -> %s, body unreadable: %s", request.method, request.url.path,
                          exc.response.status_code, exc.cause)  # fmt: skip
                failure = exc.cause
                outcome: _policy.Outcome = _policy.BodyLost(exc.response.status_code)
            except httpx.HTTPError as exc:
                log.debug("%s %s failed: %s", request.method, request.url.path, redact(repr(exc)))
                failure = exc
                outcome = _policy.NoAnswer(
                    never_sent=isinstance(exc, _NEVER_SENT),
                    timed_out=isinstance(exc, httpx.TimeoutException),
                    kind=type(exc).__name__,
                )
            else:
                log.debug("%s %s -> %s in %.2f s", request.method, request.url.path, response.status_code,
                          waiter.clock.now() - began)  # fmt: skip
                outcome = _policy.Answered(response.status_code, _policy.retry_after_seconds(response.headers))

            decision = _policy.after_attempt(
                outcome, idempotent=idempotent, retry=retry, remaining=deadline.remaining(), policy=self.policy
            )
            if isinstance(decision, _policy.Deliver):
                assert response is not None  # only an answer is delivered
                return response
            if isinstance(decision, _policy.GiveUp):
                raise self._give_up(decision.why, outcome, failure, what, deadline.error) from failure
            retry += 1
            log.info("%s: %s; retrying in %.1f s (%d/%d)", what, decision.reason, decision.delay, retry,
                     self.policy.max_retries)  # fmt: skip
            if on_wait is not None:
                on_wait(decision.delay, f"{decision.reason}; retrying in {decision.delay:.0f} s")
            waiter.pause(decision.delay)

    def _give_up(
        self,
        why: _policy.Why,
        outcome: _policy.Outcome,
        failure: httpx.HTTPError | None,
        what: str,
        deadline_error: Callable[[], errors.DeadlineExceededError],
    ) -> errors.Img2VidError:
        """The error for a request the policy gave up on, worded for the person who sent it."""
        if why is _policy.Why.DEADLINE or failure is None:
            return deadline_error()
        if why is _policy.Why.UNREADABLE_SUCCESS and isinstance(outcome, _policy.BodyLost):
            return errors.ServiceError(
                f"the server answered {outcome.status} to {what} but the answer could not be read "
                f"({type(failure).__name__}); not sending it again, because the server may already "
                "have started (and charged for) the job",
                status=outcome.status,
            )
        if why is _policy.Why.MAY_HAVE_ARRIVED:
            timed_out = isinstance(failure, httpx.TimeoutException)
            happened = "did not answer in time" if timed_out else "broke the connection"
            return errors.ConnectionFailedError(
                f"{redact(self.base_url)} {happened} after the request to {what} was sent "
                f"({type(failure).__name__}); not sending it again, because the server may already have "
                "started (and charged for) the job"
            )
        return connection_error(failure, self.base_url, what=what)
