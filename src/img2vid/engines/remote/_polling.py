"""The one polling loop: fetch the result until it is ready, the deadline passes or the user cancels.

Between polls it waits as long as the server's ``Retry-After`` asks, else the engine's interval, never past
the deadline, in slices of at most 0.1 s so a cancel is obeyed at once, and ticks the progress callback
about once a second with the elapsed time (and the server's progress fraction when it sends one), so a
front door shows life even while the service gives no figure. It never submits anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from ..base import CANCEL_CHECK_INTERVAL, CancelCheck, ProgressCallback, raise_if_cancelled
from ._http import TICK_SECONDS, Deadline, retry_after_seconds
from ._result import parse_progress

__all__ = ["poll_until_done", "wait_with_ticks"]


def wait_with_ticks(seconds: float, cancel: CancelCheck | None, tick: Callable[[], None]) -> None:
    """Sleep ``seconds`` in short slices, checking ``cancel`` and calling ``tick`` about once a second."""
    end = time.monotonic() + max(0.0, seconds)
    next_tick = time.monotonic() + TICK_SECONDS
    while True:
        raise_if_cancelled(cancel)
        now = time.monotonic()
        if now >= end:
            return
        if now >= next_tick:
            tick()
            next_tick = now + TICK_SECONDS
        time.sleep(min(CANCEL_CHECK_INTERVAL, end - now, max(0.0, next_tick - now)))


def _status_text(elapsed: float, fraction: float | None) -> str:
    shown = f"{fraction:.0%}, " if fraction is not None else ""
    return f"running on the server ({shown}{elapsed:.0f} s)"


def poll_until_done(
    fetch: Callable[[], httpx.Response],
    *,
    interval: float,
    deadline: Deadline,
    cancel: CancelCheck | None,
    progress: ProgressCallback | None,
    on_error: Callable[[httpx.Response], Exception],
    first_wait: float = 0.0,
) -> httpx.Response:
    """The 200 answer with the result; any answer but 202 or 200 becomes ``on_error(answer)``.

    ``first_wait`` is a pause before the first poll (a service that asked not to be polled more often).
    """
    fraction: float | None = None

    def report() -> None:
        if progress is not None:
            progress(fraction, _status_text(deadline.elapsed(), fraction))

    wait_with_ticks(min(first_wait, max(0.0, deadline.remaining())), cancel, report)
    while True:
        raise_if_cancelled(cancel)
        response = fetch()
        if response.status_code == 200:
            return response
        if response.status_code != 202:
            raise on_error(response)
        sent = parse_progress(response)
        fraction = sent if sent is not None else fraction
        report()
        if deadline.expired():
            raise deadline.error()
        asked = retry_after_seconds(response.headers)
        wait = asked if asked is not None else interval
        wait_with_ticks(min(wait, deadline.remaining()), cancel, report)
