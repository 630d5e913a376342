"""The one polling loop: fetch the result until it is ready, the deadline passes or the user cancels.

How long to wait after each answer is ``_policy``'s decision (the server's ``Retry-After``, else the
engine's interval, never past the deadline); the waiting is the generation's :class:`~._wait.Waiter`, so a
cancel is obeyed at once. While it waits it ticks the progress callback about once a second with the
elapsed time (and the server's progress fraction when it sends one), so a front door shows life even while
the service gives no figure. It never submits anything.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ..base import ProgressCallback
from . import _policy
from ._result import parse_progress
from ._wait import Waiter

__all__ = ["poll_until_done"]


def _status_text(elapsed: float, fraction: float | None) -> str:
    shown = f"{fraction:.0%}, " if fraction is not None else ""
    return f"running on the server ({shown}{elapsed:.0f} s)"


def poll_until_done(
    fetch: Callable[[], httpx.Response],
    *,
    interval: float,
    waiter: Waiter,
    progress: ProgressCallback | None,
    on_error: Callable[[httpx.Response], Exception],
    first_wait: float = 0.0,
) -> httpx.Response:
    """The 200 answer with the result; any answer but 202 or 200 becomes ``on_error(answer)``.

    ``first_wait`` is a pause before the first poll (a service that asked not to be polled more often).
    """
    deadline = waiter.deadline
    fraction: float | None = None

    def report() -> None:
        if progress is not None:
            progress(fraction, _status_text(deadline.elapsed(), fraction))

    waiter.pause(first_wait, report)
    while True:
        response = fetch()
        decision = _policy.after_poll(
            response.status_code,
            retry_after=_policy.retry_after_seconds(response.headers),
            interval=interval,
            remaining=deadline.remaining(),
        )
        if isinstance(decision, _policy.PollFinished):
            return response
        if isinstance(decision, _policy.PollFailed):
            raise on_error(response)
        sent = parse_progress(response)
        fraction = sent if sent is not None else fraction
        report()
        if isinstance(decision, _policy.PollExpired):
            raise deadline.error()
        waiter.pause(decision.wait, report)
