"""The remote engine: a client of Stability's image-to-video protocol (hosted service or img2vid server).

``RemoteEngine`` is the public name; the modules under it each do one job: ``_http`` (the retry policy and
sending), ``_polling`` (waiting for a result), ``_errors`` (statuses to img2vid errors), ``_result`` (the
two result forms) and ``_redact`` (keeping the key out of every text). Nothing here is imported by
``import img2vid``: the package loads on first use of ``RemoteEngine``.
"""

from __future__ import annotations

from ._http import DEFAULT_RETRY_POLICY, RetryPolicy
from ._redact import redact
from .engine import DEFAULT_TIMEOUT, ROUTES, RemoteEngine, default_poll_interval

__all__ = ["RemoteEngine", "RetryPolicy", "DEFAULT_RETRY_POLICY", "DEFAULT_TIMEOUT", "ROUTES", "default_poll_interval", "redact"]
