"""The remote engine: a client of Stability's image-to-video protocol (hosted service or img2vid server).

``RemoteEngine`` is the public name; the modules under it each do one job: ``_policy`` (what to do after
each answer: retry after N s, give up, done; no clock, no socket), ``_wait`` (the one wait: pauses and
requests in flight, watching cancel and the deadline), ``_http`` (sending one request under the policy),
``_polling`` (waiting for a result), ``_errors`` (wording the error that ``img2vid.errors.error_for_status``
picks) and ``_result`` (the two result forms). Keys are kept out of every text by the core's
``img2vid.redact``. Nothing here is imported by ``import img2vid``: the package loads on first use of
``RemoteEngine``.
"""

from __future__ import annotations

from ...redact import redact
from ._policy import DEFAULT_RETRY_POLICY, RetryPolicy
from ._wait import SYSTEM_CLOCK, Clock
from .engine import CANCEL_TIMEOUT, DEFAULT_TIMEOUT, ROUTES, RemoteEngine, default_poll_interval

__all__ = [
    "RemoteEngine",
    "RetryPolicy",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUT",
    "CANCEL_TIMEOUT",
    "ROUTES",
    "Clock",
    "SYSTEM_CLOCK",
    "default_poll_interval",
    "redact",
]
