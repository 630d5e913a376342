"""The request-scoped dependencies, as ``Annotated`` aliases the route handlers declare.

``OwnerDep`` authenticates the caller (``Bearer <key>`` or the bare key) and applies the per-key rate
limit; it yields the owner id (the key's hash), never the key. This module must never log a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from ..jobs.embedded import Dispatcher
from .keys import KeyChecker
from .metrics import ServerMetrics
from .ratelimit import RateLimiter
from ..jobs.settings import ServerSettings
from .statuscache import StatusCache
from ..jobs.store import JobStore

__all__ = ["ServerState", "StateDep", "OwnerDep", "get_state"]


@dataclass
class ServerState:
    """Everything the handlers share, built once by :func:`img2vid.server.create_app`."""

    settings: ServerSettings
    store: JobStore
    keys: KeyChecker
    limiter: RateLimiter
    dispatcher: Dispatcher
    metrics: ServerMetrics
    statuses: StatusCache


async def get_state(request: Request) -> ServerState:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, on every request.
    return request.app.state.img2vid


StateDep = Annotated[ServerState, Depends(get_state)]


async def authenticate(
    state: StateDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    # async: a cached key costs no thread hop; a cache miss is one indexed read.
    owner = state.keys.owner_for(authorization)
    state.limiter.check(owner)
    return owner


OwnerDep = Annotated[str, Depends(authenticate)]
