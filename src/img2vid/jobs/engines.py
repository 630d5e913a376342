"""Which engine a job-running process gets: ``settings.engine_factory`` (``module:callable``) if set, else
the local engine with the settings' model, device, dtype, speed and memory modes.

Shared by the embedded dispatcher and ``img2vid worker``. This module must never import torch itself: only
the factory it returns does, when it is called.
"""

from __future__ import annotations

import importlib
import os

from ..engines.base import Engine
from ..errors import InvalidInputError, ModelError
from .embedded import EngineFactory
from .settings import ServerSettings

__all__ = ["engine_factory_for"]


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
        family = getattr(engine, "family", None)
        if family is not None and family.kind != "svd":
            # The protocol's form has no prompt or model field yet, and fills SVD's motion bucket: every job
            # would be refused. Say so at start rather than fail each job.
            raise ModelError(
                f"{model} is a {family.title} model; img2vid serve and img2vid worker run Stable Video Diffusion "
                "models for now (Wan and LTX-Video run from img2vid generate, the library and the ComfyUI node)"
            )
        if str(engine.device).startswith("cpu"):
            _leave_a_core_for_requests(settings.engine_threads)
        return engine

    return local


def _leave_a_core_for_requests(threads: int | None) -> None:
    """On a CPU-only machine, torch would take every core and polls would queue behind the model: keep
    one core for answering requests (measured in bench/results/server.md)."""
    import torch

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))
