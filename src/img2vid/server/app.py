"""``create_app``: the FastAPI app, its shared state, and its lifespan (workers start and stop with it).

The engine is injected (``engine=`` one shared engine, or ``engine_factory=`` one per worker); left out,
it comes from ``settings.engine_factory`` (``module:callable``) or else is the local engine with
``settings.model``. The dispatcher is injected the same way, which is the seam for a scaled-out one. This
module must never import torch itself: only the engine factory does, when the app starts.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..engines.base import Engine
from ..jobs.dispatch import make_dispatcher
from ..jobs.embedded import Dispatcher, EngineFactory
from ..jobs.health import Probe
from ..jobs.settings import ServerSettings, load_settings
from ..jobs.store import QUEUED
from .deps import ServerState
from .errors import install_error_handlers
from .fitplan import router as fitplan_router
from .info import router as info_router
from .keys import KeyChecker
from .metrics import ServerMetrics
from .openapi import install_openapi
from .operations import STATIC_DIR
from .operations import router as operations_router
from .ratelimit import AuthFailureLimiter, RateLimiter
from .routes import router
from .statuscache import StatusCache

__all__ = ["create_app"]

log = logging.getLogger("img2vid.server")


def _build_state(
    settings: ServerSettings,
    *,
    engine: Engine | None,
    engine_factory: EngineFactory | Mapping[str, EngineFactory] | None,
    dispatcher: Dispatcher | None,
) -> ServerState:
    """Everything the routes share: the store, its status cache and metrics, key checks, limits, dispatch."""
    store = settings.open_store()
    metrics = ServerMetrics(store, live_within=settings.lease_seconds)
    statuses = StatusCache(store, ttl=settings.status_cache_seconds)
    if dispatcher is None:
        if engine is not None:
            shared = engine
            factory: EngineFactory | Mapping[str, EngineFactory] | None = lambda: shared  # noqa: E731
        else:
            factory = engine_factory
        dispatcher = make_dispatcher(
            settings, store, factory, on_change=statuses.forget, on_start=statuses.left_queue, on_outcome=metrics.observe_outcome
        )
    return ServerState(
        settings=settings,
        store=store,
        keys=KeyChecker(
            store,
            enabled=settings.auth,
            cache_seconds=settings.key_cache_seconds,
            unknown_seconds=settings.unknown_key_cache_seconds,
            failures=AuthFailureLimiter(settings.auth_failure_limit, settings.auth_failure_window),
        ),
        limiter=RateLimiter(settings.rate_limit, settings.rate_window),
        dispatcher=dispatcher,
        metrics=metrics,
        statuses=statuses,
        store_probe=Probe("store", lambda: store.counts()[QUEUED]),
    )


def create_app(
    settings: ServerSettings | None = None,
    *,
    engine: Engine | None = None,
    engine_factory: EngineFactory | Mapping[str, EngineFactory] | None = None,
    dispatcher: Dispatcher | None = None,
) -> FastAPI:
    """The server app. Its workers start when the app starts (lifespan) and stop with it."""
    settings = settings or load_settings()
    state = _build_state(settings, engine=engine, engine_factory=engine_factory, dispatcher=dispatcher)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.dispatcher.start()
        # Everything loaded so far (FastAPI, SQLAlchemy, a model) lives as long as the server: keep it out
        # of the garbage collector's scans, which otherwise show up as pauses in poll latency.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            state.dispatcher.stop()
            state.store.close()

    app = FastAPI(
        title="img2vid server",
        version=__version__,
        description="Stability AI's image-to-video protocol (v2beta and v2alpha routes), served by img2vid.",
        lifespan=lifespan,
    )
    app.state.img2vid = state
    routers = (router, info_router, fitplan_router, operations_router)
    install_error_handlers(app, routers)
    for included in routers:
        app.include_router(included)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_openapi(app, settings)
    return app
