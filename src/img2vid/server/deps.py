"""The request-scoped dependencies, as ``Annotated`` aliases the route handlers declare.

``OwnerDep`` authenticates the caller (``Bearer <key>`` or the bare key) and applies the per-key rate
limit; it yields the owner id (the key's hash), never the key. It also declares the key as an HTTP bearer
security scheme, so every route that depends on it shows the lock in the OpenAPI document and a generated
client sends the header. This module must never log a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from ..jobs.embedded import Dispatcher
from ..jobs.health import Probe
from ..jobs.served import ServedModel
from ..jobs.settings import ServerSettings
from ..jobs.store import JobStore
from .keys import KeyChecker
from .metrics import ServerMetrics
from .ratelimit import RateLimiter
from .statuscache import StatusCache

__all__ = ["ServerState", "StateDep", "OwnerDep", "get_state", "BEARER_SCHEME"]


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
    #: ``/healthz``'s check of the store: bounded and briefly cached (its value: the queued jobs).
    store_probe: Probe

    def served_models(self) -> list[ServedModel]:
        """The models a request may name, the default first: the settings' ``--model`` options; or, for a
        Celery front end started without any, the models live workers hold (their announced names and
        families, a view at most ~2 s old that never waits on the store), so that serving a new model is
        starting its workers, not reconfiguring every front end. With no live worker, the settings' default
        (its jobs are queued with a notice until a worker holds it)."""
        settings = self.settings
        configured = settings.served_models()
        if settings.dispatch != "celery" or settings.models or settings.model:
            return configured
        live = self.store.live_model_view(settings.lease_seconds).served(configured[0].name)
        return live or configured


async def get_state(request: Request) -> ServerState:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, on every request.
    return request.app.state.img2vid


StateDep = Annotated[ServerState, Depends(get_state)]


class _Authenticate(HTTPBearer):
    """Who is calling: the owner id for the ``authorization`` header, after the per-key rate limit.

    Being FastAPI's ``HTTPBearer``, it also declares the key as the OpenAPI document's HTTP bearer scheme on
    every route that depends on it, at no cost per request. Its own ``__call__`` replaces HTTPBearer's,
    which would drop the bare-key form Stability's examples send; :class:`~.keys.KeyChecker` reads the
    header and answers 401 (or 429 for an address that sent too many wrong keys) itself.
    """

    async def __call__(self, request: Request, state: StateDep) -> str:  # type: ignore[override]
        # async: a cached key costs no thread hop; a miss reads the store in a worker thread, so a store
        # that is slow to answer (or down) never holds up the event loop and every other request with it.
        header = request.headers.get("authorization")
        owner = state.keys.cached_owner(header)
        if owner is None:
            client = request.client.host if request.client is not None else "unknown"
            owner = await run_in_threadpool(state.keys.owner_for, header, client)
        state.limiter.check(owner)
        return owner


#: The security scheme's name in the OpenAPI document.
BEARER_SCHEME = "apiKey"

authenticate = _Authenticate(
    scheme_name=BEARER_SCHEME,
    bearerFormat="sk-img2vid-...",
    description="An API key made with 'img2vid keys create', sent as 'authorization: Bearer <key>'. "
    "The bare key ('authorization: <key>'), as in Stability's own examples, is accepted too.",
    auto_error=False,
)

OwnerDep = Annotated[str, Security(authenticate)]
