"""Virtual time for the remote engine's tests: no test sleeps, and no test reads the wall clock.

:class:`FakeClock` plays the remote engine's ``Clock`` (``now``, ``sleep``, ``wait``). Its time moves only
when someone sleeps on it (the engine pausing between polls or retries, the scripted server taking an
answer's ``delay``) or a test calls :meth:`FakeClock.advance`; a sleep returns at once. Waiting for a real
request in flight (``wait`` on an event) waits for real, briefly, without moving the virtual time, so the
bytes on the loopback socket cost no virtual seconds. :meth:`FakeClock.call_at` runs an action when the
virtual time passes a moment: a user pressing Cancel 0.2 s into a pause, say.

:func:`use_fake_clock` gives every ``RemoteEngine`` built afterwards, and the scripted server, one such clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

__all__ = ["FakeClock", "use_fake_clock"]


class FakeClock:
    """A clock whose time moves only when something sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._alarms: list[tuple[float, Callable[[], None]]] = []
        #: Every sleep asked for, in order: what the engine waited, without anyone waiting.
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)  # a real request in flight: real time, no virtual time

    def advance(self, seconds: float) -> None:
        """Move the time forward, running each action that falls due on the way, in time order."""
        with self._lock:
            target = self._now + max(0.0, seconds)
        while True:
            with self._lock:
                due = [alarm for alarm in self._alarms if alarm[0] <= target]
                if not due:
                    self._now = max(self._now, target)
                    return
                when, action = min(due, key=lambda alarm: alarm[0])
                self._alarms.remove((when, action))
                self._now = max(self._now, when)
            action()

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` once the time reaches ``when``."""
        with self._lock:
            self._alarms.append((when, action))


def use_fake_clock(monkeypatch: pytest.MonkeyPatch, server: object | None = None) -> FakeClock:
    """A fake clock for every ``RemoteEngine`` built from now on in this test, and for ``server``."""
    from img2vid.engines.remote import _wait

    clock = FakeClock()
    monkeypatch.setattr(_wait, "SYSTEM_CLOCK", clock)
    if server is not None:
        monkeypatch.setattr(server, "clock", clock)
    return clock
