"""The warm engines one worker holds, one per served model, and how a claimed job finds its engine.

A worker (an embedded thread, an ``img2vid worker`` process) holds an engine for each model it serves and
claims only jobs of those models; a job from before model names (``model = ''``, always SVD) runs on the
first SVD model. A single factory (a custom ``IMG2VID_ENGINE_FACTORY`` engine, or a test's) makes one engine
that serves every job. This module must never import torch or FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..engines.base import Engine
from ..errors import InvalidInputError
from .served import ServedModel, claim_names

__all__ = ["EngineFactory", "EngineSet", "warm_engines"]

EngineFactory = Callable[[], Engine]


def warm_engines(factory: EngineFactory, count: int) -> list[Engine]:
    """``count`` engines from ``factory``, each loaded now, so the first job does not pay for loading and
    a model that cannot load fails the start, not a job. A factory's engine that lacks the lifecycle is
    refused here, by name, rather than failing its first job."""
    engines = [factory() for _ in range(count)]
    for engine in engines:
        if not isinstance(engine, Engine):
            raise InvalidInputError(
                f"engine_factory made {type(engine).__name__}, which is not an img2vid Engine: it needs "
                "size_rule, generate, load and close (subclass img2vid.engines.Engine for the defaults)",
                field="engine_factory",
                allowed="a callable that returns an img2vid.engines.Engine",
            )
        engine.load()
    return engines


class EngineSet:
    """The warm engines one worker holds, by served name; built (and loaded) by :meth:`build`."""

    def __init__(self, engines: dict[str, Engine], served: Sequence[ServedModel] | None) -> None:
        self.engines = engines
        self.served = list(served) if served is not None else None

    @classmethod
    def build(cls, factories: Mapping[str, EngineFactory] | EngineFactory, served: Sequence[ServedModel] | None = None) -> EngineSet:
        """One engine per factory, each loaded now (a model that cannot load fails the start, not a job).

        A single factory (a custom engine, or a test's) makes one engine that serves every job."""
        if callable(factories):
            return cls({"": warm_engines(factories, 1)[0]}, None)
        engines: dict[str, Engine] = {}
        try:
            for name, factory in factories.items():
                engines[name] = warm_engines(factory, 1)[0]
        except BaseException:
            for engine in engines.values():
                engine.close()
            raise
        return cls(engines, served)

    @property
    def claim_models(self) -> list[str] | None:
        """The job ``model`` values to claim (None: any job, for an engine that serves every name)."""
        return None if self.served is None else claim_names([m for m in self.served if m.name in self.engines])

    def for_job(self, model: str) -> Engine:
        """The engine for a job's model; '' (a job from before model names) runs on the first SVD model."""
        if self.served is None:
            return self.engines[""]
        if model in self.engines:
            return self.engines[model]
        for served in self.served:
            if served.takes_svd_jobs and served.name in self.engines:
                return self.engines[served.name]
        raise KeyError(model)  # claim_models never lets such a job be claimed

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
