"""The remote engine's one wait, on a fake clock: pauses and requests in flight obey cancel and the deadline.

What a caller relies on: a pause lasts what was asked and never past the deadline; a stop is obeyed within
0.1 s of the clock, during a pause and during a request; progress hears once a second that time goes by; an
answer that arrived is not thrown away for a cancel seen at the same moment.
"""

from __future__ import annotations

import threading

import pytest

from img2vid import errors
from img2vid.engines.remote._wait import LAST_REQUEST_SECONDS, Deadline, Waiter
from support.clock import FakeClock


def make_waiter(clock: FakeClock, seconds: float = 600.0, cancel=None) -> Waiter:
    return Waiter(clock, Deadline(seconds, lambda: "out of time", clock), cancel)


def test_a_pause_lasts_what_was_asked_in_short_slices_ticking_each_second() -> None:
    clock = FakeClock()
    began = clock.now()
    ticks: list[float] = []
    make_waiter(clock).pause(3.5, lambda: ticks.append(clock.now() - began))
    assert clock.now() - began == pytest.approx(3.5)
    assert ticks == pytest.approx([1.0, 2.0, 3.0])
    assert max(clock.sleeps) <= 0.1 + 1e-9  # cancel is looked at least every 0.1 s


def test_a_pause_ends_at_the_deadline() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock, seconds=2.0)
    waiter.pause(30.0)
    assert waiter.deadline.remaining() == pytest.approx(0.0) and waiter.deadline.expired()


def test_cancel_during_a_pause_is_obeyed_within_a_tenth_of_a_second() -> None:
    clock = FakeClock()
    stop = threading.Event()
    pressed_at = clock.now() + 2.35
    clock.call_at(pressed_at, stop.set)
    with pytest.raises(errors.CancelledError):
        make_waiter(clock, cancel=stop.is_set).pause(30.0)
    assert 0.0 <= clock.now() - pressed_at <= 0.1 + 1e-9


def test_a_request_returns_its_answer_or_its_exception() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock)
    assert waiter.run(lambda: "answer") == "answer"
    with pytest.raises(KeyError):
        waiter.run(lambda: {}["missing"])


def test_cancel_stops_waiting_for_a_request_that_never_answers() -> None:
    clock = FakeClock()
    stop, never = threading.Event(), threading.Event()
    started = threading.Event()

    def request() -> str:
        started.set()
        never.wait(10)
        return "too late"

    def press_when_sent() -> None:
        started.wait(5)
        stop.set()

    presser = threading.Thread(target=press_when_sent)
    presser.start()
    try:
        with pytest.raises(errors.CancelledError):
            make_waiter(clock, cancel=stop.is_set).run(request)
    finally:
        never.set()
        presser.join()


def test_a_request_past_the_deadline_is_no_answer() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock, seconds=5.0)

    def slow() -> str:
        clock.advance(6.0)  # the server took 6 s of the 5 allowed
        return "late"

    with pytest.raises(errors.DeadlineExceededError, match="out of time"):
        waiter.run(slow)


def test_a_last_request_gets_a_moment_even_when_the_deadline_is_close() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock, seconds=0.1)

    def quick_enough() -> str:
        clock.advance(LAST_REQUEST_SECONDS / 2)  # past the deadline, inside the last request's moment
        return "answer"

    assert waiter.run(quick_enough) == "answer"


def test_an_answer_that_arrived_wins_over_a_cancel_seen_with_it() -> None:
    clock = FakeClock()
    stop = threading.Event()

    def answered_then_pressed() -> str:
        stop.set()  # the user pressed Cancel just as the job id arrived
        return "job id"

    assert make_waiter(clock, cancel=stop.is_set).run(answered_then_pressed) == "job id"


def test_a_slow_request_ticks_as_its_time_goes_by() -> None:
    clock = FakeClock()
    ticks: list[float] = []
    began = clock.now()

    def slow() -> str:
        clock.advance(1.3)
        return "answer"

    assert make_waiter(clock).run(slow, lambda: ticks.append(clock.now() - began)) == "answer"
    assert ticks == pytest.approx([1.3])
