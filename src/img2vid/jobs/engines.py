"""Which engines a job-running process gets: one per served model (``--model NAME=SOURCE``), each the
local engine with the settings' device, dtype, speed and memory modes, or ``settings.engine_factory``
(``module:callable``, which then serves every name); and :class:`EngineSet`, the engines one worker holds,
which picks the engine for a claimed job by the job's model name.

Shared by the embedded dispatcher and ``img2vid worker``. This module must never import torch itself: only
the factories it returns do, when they are called.
"""

from __future__ import annotations

import importlib
import os

from ..engines.base import Engine
from ..errors import InvalidInputError
from .engine_set import EngineFactory, EngineSet
from .served import ServedModel
from .settings import ServerSettings

__all__ = ["engine_factory_for", "engine_factories_for", "EngineSet"]


def engine_factories_for(settings: ServerSettings) -> dict[str, EngineFactory]:
    """Served name -> the factory of its engine, in the served order (the first is the default model)."""
    return {model.name: engine_factory_for(settings, model) for model in settings.served_models()}


def engine_factory_for(settings: ServerSettings, model: ServedModel | None = None) -> EngineFactory:
    """The engine of one served model (default: the first): ``settings.engine_factory`` if set, else the
    local engine of the model's source."""
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

    source = (model or settings.served_models()[0]).source

    def local() -> Engine:
        from ..engines.local import LocalEngine

        if settings.workers <= 1:
            engine = LocalEngine.shared(source, device=settings.device, dtype=settings.dtype, speed=settings.speed, memory=settings.memory)
        else:
            engine = LocalEngine(source, device=settings.device, dtype=settings.dtype, speed=settings.speed, memory=settings.memory)
        if str(engine.device).startswith("cpu"):
            _leave_a_core_for_requests(settings.engine_threads)
        return engine

    return local


def _leave_a_core_for_requests(threads: int | None) -> None:
    """On a CPU-only machine, torch would take every core and polls would queue behind the model: keep
    one core for answering requests (measured in bench/results/server.md)."""
    import torch

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))
