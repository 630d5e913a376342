"""Health probes that tell the truth quickly: each check of a service is bounded in time and briefly cached.

``/healthz`` is what a load balancer acts on, so it must turn 503 within a couple of seconds of the store or
the broker going away, and 200 again as soon as they are back. A :class:`Probe` runs its check in a thread
of its own, waits for it at most ``timeout`` seconds (a service that does not answer in time is down, even
while its driver is still waiting on a socket), and keeps the answer ``ttl`` seconds, so a flood of health
checks costs the service one check per ``ttl``. Concurrent askers share the check in flight rather than
piling up behind a hung one. This module must never import FastAPI (workers import ``jobs``) and never
show why a check failed beyond the exception's type: a driver's message may hold a URL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

__all__ = ["Probe", "Reading", "PROBE_TIMEOUT", "PROBE_TTL"]

#: The longest a probe waits for its service: well inside the 2 s in which /healthz must turn 503.
PROBE_TIMEOUT = 1.0
#: How long an answer is reused: short enough that a change shows within half a second.
PROBE_TTL = 0.5


@dataclass(frozen=True)
class Reading:
    """One probe's answer: whether the service answered in time, what the check returned, and when."""

    ok: bool
    value: Any = None
    error: str | None = None
    at: float = 0.0


class Probe:
    """A bounded, briefly cached check of one service; ``check`` raises (or hangs) when it is down."""

    def __init__(
        self,
        name: str,
        check: Callable[[], Any],
        *,
        timeout: float = PROBE_TIMEOUT,
        ttl: float = PROBE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.check = check
        self.timeout = timeout
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Reading | None = None
        self._running: Future[Any] | None = None
        self._started = 0.0

    def read(self) -> Reading:
        """The service's state now: the cached answer if it is fresh, else a check bounded by ``timeout``."""
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last.at < self.ttl:
                return self._last
            if self._running is None:
                self._running, self._started = self._launch(), now
            running, deadline = self._running, self._started + self.timeout
        try:
            value = _wait(running, max(0.0, deadline - self._clock()))
        except TimeoutError:
            # Still waiting on the service: down for now; the check in flight is reused until it ends.
            return self._record(Reading(False, error=f"no answer within {self.timeout:g} s", at=self._clock()), None)
        except Exception as error:  # noqa: BLE001 - any failure of the check means "down"
            return self._record(Reading(False, error=type(error).__name__, at=self._clock()), running)
        return self._record(Reading(True, value=value, at=self._clock()), running)

    def _launch(self) -> Future[Any]:
        """Run ``check`` once in a daemon thread; a check that hangs holds only that thread."""
        future: Future[Any] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self.check())
            except BaseException as error:  # noqa: BLE001 - handed to whoever reads the future
                future.set_exception(error)

        threading.Thread(target=run, name=f"img2vid-probe-{self.name}", daemon=True).start()
        return future

    def _record(self, reading: Reading, finished: Future[Any] | None) -> Reading:
        with self._lock:
            if finished is not None and self._running is finished:
                self._running = None
            self._last = reading
        return reading


def _wait(future: Future[Any], seconds: float) -> Any:
    """``future``'s result within ``seconds``; :class:`TimeoutError` when it is not ready by then."""
    from concurrent.futures import TimeoutError as FutureTimeout

    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        raise TimeoutError from None
