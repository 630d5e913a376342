"""Which dispatcher a server gets: worker threads in this process (embedded), or Celery workers elsewhere.

The choice is ``settings.dispatch``; building either is a jobs concern (the HTTP app only asks for one),
so it lives here beside both. This module must never import FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .embedded import Dispatcher, EmbeddedDispatcher, EngineFactory, OutcomeHook
from .engines import engine_factories_for
from .runner import RunOptions
from .settings import ServerSettings
from .store import JobStore

__all__ = ["make_dispatcher"]


def make_dispatcher(
    settings: ServerSettings,
    store: JobStore,
    engine_factory: EngineFactory | Mapping[str, EngineFactory] | None = None,
    *,
    on_change: Callable[[str], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_outcome: OutcomeHook | None = None,
) -> Dispatcher:
    """The dispatcher ``settings.dispatch`` names. ``engine_factory`` (embedded only): one factory whose
    engine serves every job, or one per served name; None: the served models' local engines. The hooks
    tell the server's caches and metrics what the embedded workers did."""
    from .worker import default_worker_name

    options = RunOptions.from_settings(settings, worker=default_worker_name())
    if settings.dispatch == "celery":
        from .celery_dispatch import CeleryDispatcher

        broker_url = settings.require_broker("dispatch=celery")
        return CeleryDispatcher(store, broker_url, options=options, sweep_interval=settings.sweep_interval)
    factories = engine_factory if engine_factory is not None else engine_factories_for(settings)
    return EmbeddedDispatcher(
        store,
        factories,
        served=None if callable(factories) else settings.served_models(),
        workers=settings.workers,
        options=options,
        sweep_interval=settings.sweep_interval,
        on_change=on_change,
        on_start=on_start,
        on_outcome=on_outcome,
    )
