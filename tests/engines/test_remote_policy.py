"""The remote engine's decisions as plain values: no clock, no socket, every branch a caller relies on.

What must hold: a paid submit is never sent twice once it may have reached the server; refusals (408, 429,
5xx) are retried as long as ``Retry-After`` asks or with jittered backoff, a bounded number of times and
never past the deadline; polling waits as the server asks, else the engine's interval, never past the deadline.
"""

from __future__ import annotations

import pytest

from img2vid.engines.remote._policy import (
    Answered,
    BodyLost,
    Deliver,
    GiveUp,
    NoAnswer,
    PollAgain,
    PollExpired,
    PollFailed,
    PollFinished,
    Retry,
    RetryPolicy,
    Why,
    after_attempt,
    after_poll,
    first_poll_wait,
)

POLICY = RetryPolicy(max_retries=2, initial_delay=0.5, max_delay=8.0, jitter=0.25, max_retry_after=60.0)
NO_JITTER = lambda: 0.0  # noqa: E731 - rand() for a backoff without jitter
FULL_JITTER = lambda: 1.0  # noqa: E731

REFUSED = NoAnswer(never_sent=True, timed_out=False, kind="ConnectError")
BROKEN = NoAnswer(never_sent=False, timed_out=False, kind="RemoteProtocolError")
TIMED_OUT = NoAnswer(never_sent=False, timed_out=True, kind="ReadTimeout")


def decide(outcome, *, idempotent=True, retry=0, remaining=600.0, rand=NO_JITTER):
    return after_attempt(outcome, idempotent=idempotent, retry=retry, remaining=remaining, policy=POLICY, rand=rand)


@pytest.mark.parametrize("status", [200, 202, 400, 401, 404, 409, 410, 413, 422])
def test_answers_that_are_not_refusals_are_delivered_at_once(status: int) -> None:
    assert decide(Answered(status)) == Deliver()
    assert decide(Answered(status), idempotent=False) == Deliver()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_refusals_are_retried_with_doubling_backoff_then_delivered(status: int) -> None:
    assert decide(Answered(status), retry=0) == Retry(0.5, f"HTTP {status}")
    assert decide(Answered(status), retry=1) == Retry(1.0, f"HTTP {status}")
    assert decide(Answered(status), retry=2) == Deliver()  # the bound: the error answer goes to the caller
    assert decide(Answered(status), idempotent=False) == Retry(0.5, f"HTTP {status}")  # it was refused: no job


def test_retry_after_sets_the_wait_up_to_its_cap_and_the_deadline() -> None:
    assert decide(Answered(429, retry_after=3.0)) == Retry(3.0, "HTTP 429")
    assert decide(Answered(503, retry_after=0.0)) == Retry(0.0, "HTTP 503")
    assert decide(Answered(429, retry_after=61.0)) == Deliver()  # longer than worth waiting for here
    assert decide(Answered(429, retry_after=3.0), remaining=2.0) == Deliver()  # would outlive the deadline


def test_backoff_jitter_takes_up_to_a_quarter_off() -> None:
    assert decide(Answered(500), retry=1, rand=FULL_JITTER) == Retry(0.75, "HTTP 500")
    assert [POLICY.backoff(n, NO_JITTER) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_submit_that_may_have_arrived_is_never_sent_again() -> None:
    assert decide(BROKEN, idempotent=False) == GiveUp(Why.MAY_HAVE_ARRIVED)
    assert decide(TIMED_OUT, idempotent=False) == GiveUp(Why.MAY_HAVE_ARRIVED)
    assert decide(BodyLost(200), idempotent=False) == GiveUp(Why.UNREADABLE_SUCCESS)
    # ... but one the server surely never saw, or refused, is.
    assert decide(REFUSED, idempotent=False) == Retry(0.5, "ConnectError")
    assert decide(BodyLost(503), idempotent=False) == Retry(0.5, "answer 503 broken off")


def test_idempotent_requests_are_retried_after_any_failure_up_to_the_bound() -> None:
    for outcome in (REFUSED, BROKEN, TIMED_OUT, BodyLost(200)):
        assert isinstance(decide(outcome), Retry)
        assert decide(outcome, retry=2) == GiveUp(Why.RETRIES_SPENT)


def test_the_deadline_ends_every_retry() -> None:
    assert decide(TIMED_OUT, remaining=0.0) == GiveUp(Why.DEADLINE)
    assert decide(BodyLost(200), remaining=-1.0) == GiveUp(Why.DEADLINE)
    assert decide(REFUSED, remaining=0.4) == GiveUp(Why.DEADLINE)  # the 0.5 s backoff would outlive it


def test_polls_wait_as_the_server_asks_else_the_interval_never_past_the_deadline() -> None:
    assert after_poll(200, retry_after=None, interval=1.0, remaining=10.0) == PollFinished()
    assert after_poll(202, retry_after=None, interval=1.0, remaining=10.0) == PollAgain(1.0)
    assert after_poll(202, retry_after=4.0, interval=1.0, remaining=10.0) == PollAgain(4.0)
    assert after_poll(202, retry_after=30.0, interval=1.0, remaining=2.5) == PollAgain(2.5)
    assert after_poll(202, retry_after=None, interval=1.0, remaining=0.0) == PollExpired()
    for status in (404, 410, 500):
        assert after_poll(status, retry_after=None, interval=1.0, remaining=10.0) == PollFailed()


def test_stability_is_first_polled_after_one_interval_a_server_at_once() -> None:
    assert first_poll_wait(is_stability=True, interval=10.0, remaining=600.0) == 10.0
    assert first_poll_wait(is_stability=True, interval=10.0, remaining=3.0) == 3.0
    assert first_poll_wait(is_stability=False, interval=10.0, remaining=600.0) == 0.0
