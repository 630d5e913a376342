"""The embedded dispatcher's engines: loaded before jobs are taken, refused at start when they are not
img2vid engines, and closed when the dispatcher stops."""

from __future__ import annotations

import pytest

from img2vid.errors import InvalidInputError
from img2vid.jobs.embedded import EmbeddedDispatcher, warm_engines
from img2vid.jobs.store import JobStore
from support.fake_engine import FakeEngine


class CountingEngine(FakeEngine):
    """A fake engine that counts the lifecycle calls a dispatcher makes."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = self.closes = 0

    def load(self, progress: object = None) -> None:
        self.loads += 1

    def close(self) -> None:
        self.closes += 1


def test_a_factory_whose_engine_lacks_the_lifecycle_is_refused_by_name_at_start() -> None:
    class OnlyGenerates:
        size_rule = FakeEngine.size_rule

        def generate(self, request: object, progress: object = None, cancel: object = None) -> object:
            raise AssertionError("never reached: the start refuses it")

    with pytest.raises(InvalidInputError) as refused:
        warm_engines(OnlyGenerates, 1)
    assert refused.value.field == "engine_factory"
    assert "OnlyGenerates" in str(refused.value) and "load and close" in str(refused.value)


def test_engines_are_loaded_before_jobs_are_taken_and_closed_when_the_dispatcher_stops(store: JobStore) -> None:
    made: list[CountingEngine] = []

    def factory() -> CountingEngine:
        made.append(CountingEngine())
        return made[-1]

    dispatcher = EmbeddedDispatcher(store, factory, workers=2)
    dispatcher.start()
    try:
        assert dispatcher.ready and [e.loads for e in made] == [1, 1] and [e.closes for e in made] == [0, 0]
    finally:
        dispatcher.stop(timeout=5)
    assert [e.closes for e in made] == [1, 1]
