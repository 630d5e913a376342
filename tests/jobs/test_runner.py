"""JobRunner: what becomes of a held job when its time runs out, its worker stops, its owner cancels it, or
the store cannot be written for a while. Clocks and sleeps are fakes: no test waits for real time except
the heartbeat thread's own short interval."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from img2vid.engines.base import Engine
from img2vid.errors import CancelledError, OutOfMemoryError, StoreUnavailableError
from img2vid.jobs.runner import JobRunner, RunOptions
from img2vid.jobs.store import Claim, JobStore
from support.fake_engine import FakeEngine
from support.images import png_bytes


def claim_one(store: JobStore, seed: int = 7) -> Claim:
    store.add_job(owner="a", image=png_bytes(64, 64), seed=seed, params={})
    claim = store.claim_next(lease_seconds=30)
    assert claim is not None
    return claim


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class EngineThatRunsUntilCancelled(Engine):
    """Each step advances the fake clock by ``step`` seconds; stops only through cancel."""

    size_rule = FakeEngine.size_rule

    def __init__(self, clock: FakeClock, step: float) -> None:
        self.clock = clock
        self.step = step
        self.steps = 0

    def generate(self, request: Any, progress: Any = None, cancel: Any = None) -> Any:
        while True:
            if cancel is not None and cancel():
                raise CancelledError("stopped")
            self.steps += 1
            self.clock.now += self.step
            if self.steps > 1000:
                raise AssertionError("the runner never cancelled the engine")


def test_a_job_past_its_time_limit_is_stopped_and_failed_with_a_message_that_says_so(store: JobStore) -> None:
    clock = FakeClock()
    engine = EngineThatRunsUntilCancelled(clock, step=10.0)
    runner = JobRunner(store, RunOptions(job_timeout=60), clock=clock)
    claim = claim_one(store)
    assert runner.run(engine, claim) == "failed"
    status = store.status(claim.job.id)
    assert status.status == "failed" and status.error_name == "timeout"
    assert "ran out of time" in status.error_message and "60 s" in status.error_message
    assert engine.steps == 7  # stopped at the first check past 60 s of engine time


def test_an_engine_out_of_memory_fails_the_job_with_the_engines_name_and_message(store: JobStore) -> None:
    said = "the cuda device ran out of memory at 1024x576, 25 frames: try --memory low"
    engine = FakeEngine(fail_with=lambda _request: OutOfMemoryError(said))
    claim = claim_one(store)
    assert JobRunner(store, RunOptions()).run(engine, claim) == "failed"
    status = store.status(claim.job.id)
    assert (status.error_status, status.error_name, status.error_message) == (500, "out_of_memory", said)


def test_the_runner_reads_only_img2vids_errors_and_never_touches_torch(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library's own error, even one that says "out of memory", is an engine failure; recognising it is
    the engine's business (the local engine raises OutOfMemoryError), and so is the device's memory."""
    touched: list[str] = []
    cuda = SimpleNamespace(is_available=lambda: touched.append("is_available") or True,
                           empty_cache=lambda: touched.append("empty_cache"))  # fmt: skip
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    engine = FakeEngine(fail_with=lambda _request: RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    claim = claim_one(store)
    assert JobRunner(store, RunOptions()).run(engine, claim) == "failed"
    status = store.status(claim.job.id)
    assert status.error_name == "internal_error"
    assert status.error_message == (
        "the engine failed while making this video (RuntimeError); the worker's log has the details"
    )
    assert touched == []


def test_a_job_cut_short_by_a_shutdown_goes_back_to_the_queue_without_using_an_attempt(store: JobStore) -> None:
    stopping = threading.Event()
    clock = FakeClock()
    engine = EngineThatRunsUntilCancelled(clock, step=1.0)
    stopping.set()
    runner = JobRunner(store, RunOptions(), stopping=stopping.is_set, clock=clock)
    claim = claim_one(store)
    assert runner.run(engine, claim) == "released"
    assert store.status(claim.job.id).status == "queued"
    again = store.claim_next()
    assert again is not None and again.attempt == 1


def test_a_job_cancelled_by_its_owner_is_dropped_by_its_worker_at_the_next_heartbeat(store: JobStore) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    claim = claim_one(store)
    runner = JobRunner(store, RunOptions(lease_seconds=0.3))
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(runner.run(engine, claim)))
    worker.start()
    assert engine.started.wait(10)
    assert store.cancel(claim.job.id, "a", ttl=60) == "cancelled"
    worker.join(10)  # the heartbeat (every 0.1 s here) finds the job gone; the engine stops at its next check
    assert outcome == ["lost"] and store.status(claim.job.id).status == "cancelled"
    assert store.result(claim.job.id) is None


class FlakyStore:
    """A store whose result writes fail ``failures`` times as if the database were down, then work."""

    def __init__(self, store: JobStore, failures: int) -> None:
        self._store = store
        self.failures = failures

    def finish(self, *args: Any, **kwargs: Any) -> bool:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("down")
        return self._store.finish(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_result_is_kept_and_written_once_the_store_answers_again(store: JobStore) -> None:
    slept: list[float] = []
    flaky = FlakyStore(store, failures=3)
    runner = JobRunner(flaky, RunOptions(), sleep=slept.append)  # type: ignore[arg-type]
    claim = claim_one(store, seed=11)
    assert runner.run(FakeEngine(), claim) == "done"
    assert slept == [0.25, 0.5, 1.0]  # backing off between tries
    assert store.result(claim.job.id).seed == 11
