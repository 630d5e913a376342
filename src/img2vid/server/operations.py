"""The routes an operator and a browser use around the protocol: ``/healthz``, ``/metrics``, the playground.

``/healthz`` is what a load balancer or ``examples/quickstart.sh`` waits on: 200 only when the store
answers, every dispatch part (workers, broker) is up and the engines have loaded; 503 with ``starting`` or
``degraded`` otherwise, naming the part that is down. It tells the truth quickly: each part is asked
through a :class:`~img2vid.jobs.health.Probe` (at most a second's wait, answers at most half a second old),
the parts are asked at once, and from worker threads, so the event loop never waits on a service. A Celery
front end's body also says, for each model it admits, how many live workers hold it (``models``): a model
no worker holds does not make the front end unhealthy (its jobs wait, queued), but an operator sees it.
The playground page and its assets ship in the package (``STATIC_DIR``), so nothing is fetched from elsewhere.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .deps import ServerState, StateDep
from .metrics import CONTENT_TYPE_LATEST
from .openapi import HEALTH_ANSWERS, METRICS_ANSWERS

__all__ = ["router", "STATIC_DIR"]

#: The playground: a page (and its CSS, script and icon) that is a client of the protocol.
STATIC_DIR = Path(__file__).with_name("static")

router = APIRouter()


@router.get("/healthz", tags=["operations"], summary="Liveness and readiness", responses=HEALTH_ANSWERS)
async def healthz(state: StateDep) -> JSONResponse:
    store, dispatch, models = await asyncio.gather(
        run_in_threadpool(state.store_probe.read),
        run_in_threadpool(state.dispatcher.health),
        run_in_threadpool(_models_held, state),
    )
    queued: int | None = store.value if store.ok else None
    parts: dict[str, bool] = {"store": store.ok, **dispatch}
    ready = state.dispatcher.ready
    healthy = ready and all(parts.values())
    body: dict[str, Any] = {
        "status": "ok" if healthy else ("starting" if not ready else "degraded"),
        "version": __version__,
        "dispatch": state.settings.dispatch,
        **{name: "ok" if ok else "down" for name, ok in parts.items()},
    }
    if queued is not None:
        body["queued"] = queued
    if models is not None:
        body["models"] = models
    return JSONResponse(body, status_code=200 if healthy else 503)


def _models_held(state: ServerState) -> dict[str, dict[str, Any]] | None:
    """For a Celery front end, each admitted model -> whether a live worker holds it and how many do (from
    the cached view of the workers' heartbeats, which never waits on the store); None in embedded mode,
    where this process holds every model it admits."""
    if state.settings.dispatch != "celery":
        return None
    view = state.store.live_model_view(state.settings.lease_seconds)
    held = {model.name: view.holders(model.name) for model in state.served_models()}
    return {name: {"held": count > 0, "live_workers": count} for name, count in held.items()}


@router.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response, responses=METRICS_ANSWERS)
def metrics_route(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
def playground() -> FileResponse:
    return FileResponse(STATIC_DIR / "playground.html", media_type="text/html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")
