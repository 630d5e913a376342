"""Idempotent submits and queue positions on a real PostgreSQL store, in this process (no subprocess): the
app with its embedded dispatcher and one worker thread, on a database of its own (and, for the race, a
second app on the same database as another front end)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from img2vid.engines.base import CancelCheck, Engine, ProgressCallback, raise_if_cancelled
from img2vid.fitting import MultipleOf
from img2vid.request import VideoRequest
from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from img2vid.video import Video
from support.cluster import IMAGE, new_database
from support.fake_engine import expected_frames
from support.server_harness import V2BETA, auth, submit, wait_result
from support.services import PostgresServer

pytestmark = pytest.mark.services


class TurnEngine(Engine):
    """Runs one job each time the test says so: ``started`` gets each job's seed as it begins."""

    size_rule = MultipleOf(16, 2048 * 2048)

    def __init__(self) -> None:
        self.started: queue.Queue[int] = queue.Queue()
        self.turns = threading.Semaphore(0)

    def generate(self, request: VideoRequest, progress: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> Video:
        self.started.put(request.seed)
        while not self.turns.acquire(timeout=0.05):
            raise_if_cancelled(cancel)
        return Video(frames=expected_frames(request), fps=7, seed=request.seed)


@dataclass
class OnPostgres:
    client: TestClient
    engine: TurnEngine
    settings: ServerSettings


@pytest.fixture
def app_on_postgres(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[OnPostgres]:
    engine = TurnEngine()
    settings = ServerSettings(
        data=tmp_path, database_url=new_database(postgres_server), status_cache_seconds=0, rate_limit=0
    )
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        yield OnPostgres(client, engine, settings)
        for _ in range(16):  # let a job still waiting for its turn end, so the app stops at once
            engine.turns.release()


def _start(client: TestClient, key: str, seed: int, idempotency_key: str | None = None) -> str:
    headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
    answer = client.post(
        V2BETA,
        headers={**auth(key), **headers},
        files={"image": ("image.png", IMAGE, "image/png")},
        data={"seed": str(seed)},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def test_an_idempotency_key_names_one_job_per_api_key(app_on_postgres: OnPostgres) -> None:
    client, engine = app_on_postgres.client, app_on_postgres.engine
    store = client.app.state.img2vid.store  # type: ignore[attr-defined]
    mine, _ = create_key(store, "mine")
    theirs, _ = create_key(store, "theirs")
    first = _start(client, mine, 11, "order-1")
    assert _start(client, mine, 11, "order-1") == first  # a retried submit: the same job
    reused = client.post(  # the same key with another request: refused, naming the key
        V2BETA,
        headers={**auth(mine), "idempotency-key": "order-1"},
        files={"image": ("image.png", IMAGE, "image/png")},
        data={"seed": "12"},
    )
    assert reused.status_code == 422 and reused.json()["name"] == "idempotency_key_reused", reused.text
    other_key = _start(client, theirs, 11, "order-1")  # the same header from another API key: its own job
    other_order = _start(client, mine, 11, "order-2")
    assert len({first, other_key, other_order}) == 3
    assert sum(store.counts().values()) == 3

    # A second front end on the same store (no workers of its own): submits racing on one key through
    # both, as a client's retries through a load balancer would, make one job.
    second = create_app(app_on_postgres.settings.model_copy(update={"workers": 0}), engine=TurnEngine())
    with TestClient(second) as other_front_end:
        fronts = [client, other_front_end] * 3
        with ThreadPoolExecutor(len(fronts)) as pool:
            raced = set(pool.map(lambda front: _start(front, mine, 13, "order-3"), fronts))
        assert _start(other_front_end, mine, 11, "order-1") == first
    assert len(raced) == 1 and sum(store.counts().values()) == 4
    engine.turns.release()
    assert wait_result(client, mine, first).headers["seed"] == "11"


def test_queue_positions_are_0_running_then_1_2_3_in_the_order_jobs_start(
    app_on_postgres: OnPostgres,
) -> None:
    client, engine = app_on_postgres.client, app_on_postgres.engine
    store = client.app.state.img2vid.store  # type: ignore[attr-defined]
    busy, _ = create_key(store, "busy")
    quiet, _ = create_key(store, "quiet")
    running = submit(client, busy, seed=21).json()["id"]
    assert engine.started.get(timeout=30) == 21
    waiting = {
        22: submit(client, busy, seed=22).json()["id"],
        23: submit(client, busy, seed=23).json()["id"],
        24: submit(client, quiet, seed=24).json()["id"],
    }
    owners = {22: busy, 23: busy, 24: quiet}

    def position(seed: int, job_id: str) -> int:
        answer = client.get(f"{V2BETA}/result/{job_id}", headers=auth(owners.get(seed, busy)))
        assert answer.status_code == 202, answer.text
        return int(answer.json()["queue_position"])

    assert position(21, running) == 0
    positions = {seed: position(seed, job_id) for seed, job_id in waiting.items()}
    assert sorted(positions.values()) == [1, 2, 3]
    # Fair turns: the quiet key's only job goes before the busy key's second waiting one.
    assert positions[24] < positions[23]

    order = []
    for _ in waiting:
        engine.turns.release()
        order.append(engine.started.get(timeout=30))
        # The one that started now runs (position 0), and every job behind it moved up by one.
        assert position(order[-1], waiting[order[-1]]) == 0
        left = {seed: position(seed, waiting[seed]) for seed in waiting if seed not in order}
        assert sorted(left.values()) == list(range(1, len(left) + 1))
    assert order == sorted(positions, key=positions.__getitem__)
    engine.turns.release()
    assert wait_result(client, quiet, waiting[24]).status_code == 200
