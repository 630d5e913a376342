"""``create_app``: the FastAPI app, its shared state, and its lifespan (workers start and stop with it).

The engine is injected (``engine=`` one shared engine, or ``engine_factory=`` one per worker); left out,
it comes from ``settings.engine_factory`` (``module:callable``) or else is the local engine with
``settings.model``. The dispatcher is injected the same way, which is the seam for a scaled-out one. This
module must never import torch itself: only the engine factory does, when the app starts.
"""

from __future__ import annotations

import gc
import importlib
import os
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .. import __version__
from ..engines.base import Engine
from ..errors import InvalidInputError
from .deps import ServerState, StateDep
from .dispatch import Dispatcher, EmbeddedDispatcher, EngineFactory, ExpirySweeper
from .errors import install_error_handlers
from .keys import KeyChecker
from .metrics import CONTENT_TYPE_LATEST, ServerMetrics
from .ratelimit import RateLimiter
from .routes import router
from .settings import ServerSettings, load_settings
from .statuscache import StatusCache
from .store import QUEUED

__all__ = ["create_app", "engine_factory_for"]

log = logging.getLogger("img2vid.server")

#: A one-page client of the protocol, for trying the server from a browser.
_PLAYGROUND = Path(__file__).with_name("static") / "playground.html"


def engine_factory_for(settings: ServerSettings) -> EngineFactory:
    """The engine each worker gets: ``settings.engine_factory`` if set, else the local engine."""
    if settings.engine_factory:
        module_name, _, attr = settings.engine_factory.partition(":")
        if not module_name or not attr:
            raise InvalidInputError.for_field("engine_factory", settings.engine_factory, "module:callable")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise InvalidInputError(
                f"engine_factory {settings.engine_factory!r} cannot be imported: {exc}", field="engine_factory"
            ) from exc
        return factory

    def local() -> Engine:
        from ..engines.local import DEFAULT_MODEL, LocalEngine

        model = settings.model or DEFAULT_MODEL
        if settings.workers <= 1:
            engine = LocalEngine.shared(model, device=settings.device, dtype=settings.dtype, speed=settings.speed, memory=settings.memory)
        else:
            engine = LocalEngine(model, device=settings.device, dtype=settings.dtype, speed=settings.speed, memory=settings.memory)
        if str(engine.device).startswith("cpu"):
            _leave_a_core_for_requests(settings.engine_threads)
        return engine

    return local


def _leave_a_core_for_requests(threads: int | None) -> None:
    """On a CPU-only machine, torch would take every core and polls would queue behind the model: keep
    one core for answering requests (measured in bench/results/server.md)."""
    import torch

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))


def create_app(
    settings: ServerSettings | None = None,
    *,
    engine: Engine | None = None,
    engine_factory: EngineFactory | None = None,
    dispatcher: Dispatcher | None = None,
) -> FastAPI:
    """The server app. Its workers start when the app starts (lifespan) and stop with it."""
    settings = settings or load_settings()
    store = settings.open_store()
    metrics = ServerMetrics(store)
    statuses = StatusCache(store, ttl=settings.status_cache_seconds)
    if dispatcher is None:
        if engine is not None:
            shared = engine
            factory: EngineFactory = lambda: shared  # noqa: E731
        else:
            factory = engine_factory or engine_factory_for(settings)
        dispatcher = EmbeddedDispatcher(
            store, factory, workers=settings.workers, result_ttl=settings.result_ttl, metrics=metrics, on_change=statuses.forget
        )
    sweeper = ExpirySweeper(store, settings.sweep_interval)
    state = ServerState(
        settings=settings,
        store=store,
        keys=KeyChecker(store, enabled=settings.auth, cache_seconds=settings.key_cache_seconds),
        limiter=RateLimiter(settings.rate_limit, settings.rate_window),
        dispatcher=dispatcher,
        metrics=metrics,
        statuses=statuses,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store.remove_expired()
        dispatcher.start()
        sweeper.start()
        # Everything loaded so far (FastAPI, SQLAlchemy, a model) lives as long as the server: keep it out
        # of the garbage collector's scans, which otherwise show up as pauses in poll latency.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            sweeper.stop()
            dispatcher.stop()
            store.close()

    app = FastAPI(
        title="img2vid server",
        version=__version__,
        description="Stability AI's image-to-video protocol (v2beta and v2alpha routes), served by img2vid.",
        lifespan=lifespan,
    )
    app.state.img2vid = state
    install_error_handlers(app)
    app.include_router(router)

    @app.get("/healthz", tags=["operations"], summary="Liveness and readiness")
    def healthz(state: StateDep) -> JSONResponse:
        state.store.ping()
        ready = state.dispatcher.ready
        body: dict[str, Any] = {"status": "ok" if ready else "starting", "version": __version__}
        body["queued"] = state.store.counts()[QUEUED]
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/", include_in_schema=False)
    def playground() -> HTMLResponse:
        return HTMLResponse(_PLAYGROUND.read_text(encoding="utf-8"))

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    def metrics_route(state: StateDep) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
