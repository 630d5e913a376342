"""Admission under many front ends, on a real PostgreSQL: the per-key cap (``max_queued_per_key``) and the
server-wide cap (``max_queued``) hold exactly when submits race through two front ends on one store.

Counting the active jobs and then inserting, in two steps, let a burst through (24 racing submits with
caps 3 / 6 were accepted 12 times); the store now checks and inserts in one transaction that no other
front end can interleave with. The front ends here are two apps in this process, each with its own
connection pool, and no workers, so every accepted job stays queued and counts against the caps."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.cluster import IMAGE, new_database
from support.server_harness import V2BETA, auth
from support.services import PostgresServer
from support.step_engine import StepEngine

pytestmark = pytest.mark.services

SUBMITS = 24


@pytest.fixture
def two_front_ends(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[list[TestClient]]:
    settings = ServerSettings(
        data=tmp_path,
        database_url=new_database(postgres_server),
        workers=0,
        rate_limit=0,
        status_cache_seconds=0,
        max_queued_per_key=3,
        max_queued=6,
    )
    first = create_app(settings, engine=StepEngine())
    second = create_app(settings, engine=StepEngine())
    with TestClient(first) as one, TestClient(second) as two:
        yield [one, two]


def _race(fronts: list[TestClient], keys: list[str]) -> Counter[tuple[int, str]]:
    """``SUBMITS`` submits at once, alternating front ends and keys; (status, error name or 'ok') -> count."""
    gate = threading.Barrier(SUBMITS)

    def one(index: int) -> tuple[int, str]:
        client, key = fronts[index % len(fronts)], keys[index % len(keys)]
        gate.wait(30)
        answer = client.post(
            V2BETA, headers=auth(key), files={"image": ("image.png", IMAGE, "image/png")}, data={"seed": str(index + 1)}
        )
        return answer.status_code, answer.json().get("name", "ok")

    with ThreadPoolExecutor(SUBMITS) as pool:
        return Counter(pool.map(one, range(SUBMITS)))


def test_one_key_racing_through_two_front_ends_gets_exactly_its_cap(two_front_ends: list[TestClient]) -> None:
    store = two_front_ends[0].app.state.img2vid.store  # type: ignore[attr-defined]
    key, _ = create_key(store, "burst")
    outcomes = _race(two_front_ends, [key])
    assert outcomes == Counter({(200, "ok"): 3, (429, "too_many_jobs"): SUBMITS - 3}), outcomes
    assert store.counts()["queued"] == 3


def test_many_keys_racing_through_two_front_ends_fill_exactly_the_server_cap(two_front_ends: list[TestClient]) -> None:
    store = two_front_ends[0].app.state.img2vid.store  # type: ignore[attr-defined]
    keys = [create_key(store, f"key-{index}")[0] for index in range(4)]
    outcomes = _race(two_front_ends, keys)
    # 4 keys x cap 3 would be 12: the server's cap of 6 is the one that binds.
    assert outcomes[(200, "ok")] == 6, outcomes
    assert outcomes[(503, "queue_full")] + outcomes[(429, "too_many_jobs")] == SUBMITS - 6, outcomes
    assert store.counts()["queued"] == 6
