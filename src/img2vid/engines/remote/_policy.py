"""The remote engine's decisions, with no clock and no socket: what to do after each answer.

Two questions are answered here, and only here:

- after one attempt of a request (:func:`after_attempt`): hand the answer over, send it again after N s,
  or give up (and why);
- after one poll of a result (:func:`after_poll`): the video is ready, poll again after N s, the job
  failed, or the time is up.

Both take what happened and how much time is left as plain values and return a plain value, so a test
drives every branch without sleeping or serving anything. What is retried: connection failures, 408, 429
and 5xx, with exponential backoff and jitter, or as long as ``Retry-After`` asks (up to a cap), a bounded
number of times, never past the deadline. What is never retried: a request that is not idempotent (the paid
submit) once it may have reached the server; it is sent again only when the connection was never made, or
the server answered 408, 429 or 5xx (it refused the job, so nothing was charged).

This module never sleeps, sends, logs or builds an error message: ``_wait`` lets time pass, ``_http`` sends
and ``_errors`` words the errors.
"""

from __future__ import annotations

import email.utils
import enum
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "RetryPolicy",
    "DEFAULT_RETRY_POLICY",
    "is_retryable_status",
    "retry_after_seconds",
    "Answered",
    "BodyLost",
    "NoAnswer",
    "Outcome",
    "Deliver",
    "Retry",
    "GiveUp",
    "Why",
    "Decision",
    "after_attempt",
    "PollFinished",
    "PollAgain",
    "PollFailed",
    "PollExpired",
    "PollDecision",
    "after_poll",
    "first_poll_wait",
]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before sending a failed request again."""

    max_retries: int = 2
    #: The first backoff; it doubles each retry up to ``max_delay``, minus up to ``jitter`` of itself.
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25
    #: A ``Retry-After`` longer than this is not waited for: the answer goes to the caller instead.
    max_retry_after: float = 60.0

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``retry`` (0-based) when the server gave no ``Retry-After``.

        ``rand`` (0..1) picks the jitter, so many clients refused at once do not come back in step."""
        delay = min(self.initial_delay * (2**retry), self.max_delay)
        return delay * (1.0 - self.jitter * rand())


DEFAULT_RETRY_POLICY = RetryPolicy()


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx: the server did not take the request on, so sending it again is safe."""
    return status in (408, 429) or status >= 500


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: ``retry-after-ms``, a number of seconds, or an HTTP date.

    ``now`` is the wall-clock time (``time.time()``) an HTTP date is measured from."""
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
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# ---------------------------------------------------------------------- one attempt of a request


@dataclass(frozen=True)
class Answered:
    """The server answered (any status) and the whole body arrived."""

    status: int
    retry_after: float | None = None


@dataclass(frozen=True)
class BodyLost:
    """The status line arrived but the body did not (the connection broke, the read timed out)."""

    status: int


@dataclass(frozen=True)
class NoAnswer:
    """No answer came. ``never_sent``: the connection was never made, so the server surely saw nothing."""

    never_sent: bool
    timed_out: bool
    kind: str  # the failure's name for the log and the progress text ("ConnectError")


Outcome = Answered | BodyLost | NoAnswer


class Why(enum.Enum):
    """Why a request is given up."""

    DEADLINE = "the total time allowed is spent"
    MAY_HAVE_ARRIVED = "the non-idempotent request may have reached the server, and no answer came"
    UNREADABLE_SUCCESS = "the non-idempotent request was answered, but the answer could not be read"
    RETRIES_SPENT = "no readable answer after every retry allowed"


@dataclass(frozen=True)
class Deliver:
    """Hand the answer to the caller (which may still be an error status)."""


@dataclass(frozen=True)
class Retry:
    """Send the request again after ``delay`` seconds; ``reason`` is a few words for a person."""

    delay: float
    reason: str


@dataclass(frozen=True)
class GiveUp:
    why: Why


Decision = Deliver | Retry | GiveUp


def after_attempt(
    outcome: Outcome,
    *,
    idempotent: bool,
    retry: int,
    remaining: float,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What to do after attempt number ``retry`` (0-based) of a request, with ``remaining`` seconds left."""
    if isinstance(outcome, Answered):
        if not is_retryable_status(outcome.status) or retry >= policy.max_retries:
            return Deliver()
        asked = outcome.retry_after
        if asked is not None and asked > policy.max_retry_after:
            return Deliver()  # the server wants a longer pause than is worth waiting for here
        delay = asked if asked is not None else policy.backoff(retry, rand)
        if delay >= remaining:
            return Deliver()  # no time to wait for a better answer: this one is the answer
        return Retry(delay, f"HTTP {outcome.status}")

    if isinstance(outcome, BodyLost):
        if remaining <= 0:
            return GiveUp(Why.DEADLINE)
        if not idempotent and not is_retryable_status(outcome.status):
            return GiveUp(Why.UNREADABLE_SUCCESS)
        reason = f"answer {outcome.status} broken off"
    else:
        if remaining <= 0 and outcome.timed_out:
            return GiveUp(Why.DEADLINE)
        if not idempotent and not outcome.never_sent:
            return GiveUp(Why.MAY_HAVE_ARRIVED)
        reason = outcome.kind
    if retry >= policy.max_retries:
        return GiveUp(Why.RETRIES_SPENT)
    delay = policy.backoff(retry, rand)
    if delay >= remaining:
        return GiveUp(Why.DEADLINE)
    return Retry(delay, reason)


# ---------------------------------------------------------------------- one poll of a result


@dataclass(frozen=True)
class PollFinished:
    """200: the result is in this answer."""


@dataclass(frozen=True)
class PollAgain:
    """202: still running; poll again after ``wait`` seconds."""

    wait: float


@dataclass(frozen=True)
class PollFailed:
    """Any other status: the answer is an error for the caller."""


@dataclass(frozen=True)
class PollExpired:
    """Still running, and the total time allowed is spent."""


PollDecision = PollFinished | PollAgain | PollFailed | PollExpired


def after_poll(status: int, *, retry_after: float | None, interval: float, remaining: float) -> PollDecision:
    """What to do after a poll answered ``status``: the server's ``Retry-After`` sets the pause, else
    ``interval``; never a pause past the deadline."""
    if status == 200:
        return PollFinished()
    if status != 202:
        return PollFailed()
    if remaining <= 0:
        return PollExpired()
    wait = retry_after if retry_after is not None else interval
    return PollAgain(max(0.0, min(wait, remaining)))


def first_poll_wait(*, is_stability: bool, interval: float, remaining: float) -> float:
    """The pause between the submit and the first poll. Stability asked for ``interval`` between
    requests; an img2vid server answers a poll cheaply and may already be done, so it is asked at once."""
    return max(0.0, min(interval, remaining)) if is_stability else 0.0
