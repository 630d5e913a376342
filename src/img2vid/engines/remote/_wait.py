"""The one place the remote engine lets time pass: a pause, or a request in flight.

:class:`Waiter` is built once per generation from a clock, the total :class:`Deadline` and the caller's
``cancel``. Its two waits share one loop: :meth:`Waiter.pause` sleeps (never past the deadline) and
:meth:`Waiter.run` runs a request in a short-lived worker thread while watching it. Either way ``cancel``
is checked at least every 0.1 s, so a stop is obeyed at once even while a slow server holds the
connection, and a ``tick`` callback hears about once a second that time goes by.

The clock is a parameter: :data:`SYSTEM_CLOCK` in use, a fake one in tests, whose sleeps return at once.
This module never decides how long to wait (``_policy`` does) and never touches HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from ... import errors
from ..base import CANCEL_CHECK_INTERVAL, CancelCheck, raise_if_cancelled

__all__ = ["Clock", "SystemClock", "SYSTEM_CLOCK", "Deadline", "Waiter", "CancelWatch", "TICK_SECONDS"]

T = TypeVar("T")

#: How often a caller waiting on the engine hears that time goes by.
TICK_SECONDS = 1.0
#: However little of the deadline is left, a request gets this long to bring its answer.
LAST_REQUEST_SECONDS = 0.5


class Clock(Protocol):
    """Where the remote engine reads the time and lets it pass."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``event``; whether it is set."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.sleep`` and ``Event.wait``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


class Deadline:
    """The caller's total time budget for one generation (or one cancel)."""

    def __init__(self, seconds: float, describe: Callable[[], str], clock: Clock = SYSTEM_CLOCK) -> None:
        self.seconds = seconds
        self.clock = clock
        self.started = clock.now()
        self.end = self.started + seconds
        self._describe = describe

    def remaining(self) -> float:
        return self.end - self.clock.now()

    def elapsed(self) -> float:
        return self.clock.now() - self.started

    def expired(self) -> bool:
        return self.remaining() <= 0

    def error(self) -> errors.DeadlineExceededError:
        return errors.DeadlineExceededError(self._describe())


class CancelWatch:
    """``cancel`` as given, remembering whether it ever said stop (so the engine knows a
    :class:`~img2vid.errors.CancelledError` was the user's, not the server's)."""

    def __init__(self, cancel: CancelCheck | None) -> None:
        self._cancel = cancel
        self.seen = False

    def __call__(self) -> bool:
        if self._cancel is not None and self._cancel():
            self.seen = True
        return self.seen


class Waiter:
    """Pauses and watched requests for one generation, under one clock, deadline and cancel."""

    def __init__(self, clock: Clock, deadline: Deadline, cancel: CancelCheck | None) -> None:
        self.clock = clock
        self.deadline = deadline
        self.cancel = cancel

    def pause(self, seconds: float, tick: Callable[[], None] | None = None) -> None:
        """Sleep ``seconds``, cut short at the deadline (the caller then finds it spent).

        Raises :class:`~img2vid.errors.CancelledError` once ``cancel`` says stop."""
        started = self.clock.now()
        self._wait(started, min(started + max(0.0, seconds), self.deadline.end), None, tick)

    def run(self, call: Callable[[], T], tick: Callable[[], None] | None = None) -> T:
        """``call()`` (one request) in a worker thread, while this thread watches ``cancel`` and the deadline.

        The request gets what is left of the deadline, but at least :data:`LAST_REQUEST_SECONDS`; past
        that, :class:`~img2vid.errors.DeadlineExceededError`. An abandoned request finishes on its own
        within its own timeouts; its answer is dropped."""
        raise_if_cancelled(self.cancel)
        started = self.clock.now()
        end = started + max(LAST_REQUEST_SECONDS, self.deadline.remaining())
        box: dict[str, object] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it is
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="img2vid-remote-request", daemon=True).start()
        if not self._wait(started, end, done, tick):
            raise self.deadline.error()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    def _wait(
        self, started: float, end: float, done: threading.Event | None, tick: Callable[[], None] | None
    ) -> bool:
        """The one loop, begun at ``started``: until ``done`` is set (True) or the clock reaches ``end`` (False).

        Time that passed is reported first. An answer that comes after ``end`` counts as none, as it
        would with httpx's own timeouts, which end at the same moment. A finished request wins over a
        cancel seen at the same moment, so an answer that arrived (a job id) is never thrown away."""
        next_tick = started + TICK_SECONDS
        while True:
            now = self.clock.now()
            if tick is not None and now >= next_tick:
                tick()
                next_tick = now + TICK_SECONDS
            if now >= end:
                return False
            if done is not None and done.is_set():
                return True
            raise_if_cancelled(self.cancel)
            step = min(CANCEL_CHECK_INTERVAL, end - now)
            if tick is not None:
                step = min(step, max(0.0, next_tick - now))
            if done is None:
                self.clock.sleep(step)
            else:
                self.clock.wait(done, step)
