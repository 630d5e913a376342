"""The job store and the protocol routes on PostgreSQL (a shared store's database): a PostgreSQL server of
this module's own, started on a free port from the binaries on the machine (tests/support/services.py), and
a fresh database on it per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from img2vid.jobs.store import JobStore
from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.cluster import new_database
from support.fake_engine import FakeEngine
from support.server_harness import submit, wait_result
from support.services import PostgresServer

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return new_database(postgres_server)


def test_the_store_claims_each_job_once_and_recovers_running_ones(postgres_url: str) -> None:
    store = JobStore(postgres_url)
    try:
        ids = [
            store.add_job(owner="o", image=b"x", seed=i + 1, params={"cfg_scale": 1.8})[0] for i in range(3)
        ]
        first = store.claim_next()
        assert first is not None and first.job.id == ids[0] and first.job.seed == 1
        assert first.job.params == {"cfg_scale": 1.8}
        assert store.counts() == {"queued": 2, "running": 1, "done": 0, "failed": 0, "cancelled": 0}
        assert store.requeue_running() == 1
        claimed = [store.claim_next() for _ in range(3)]
        assert sorted(claim.job.id for claim in claimed) == sorted(ids) and store.claim_next() is None
        mine = next(claim for claim in claimed if claim.job.id == ids[0])
        assert mine.token == first.token + 1  # the second lease on the job has a newer token
        assert not store.finish(ids[0], first.token, video=b"stale", seed=1, finish_reason="SUCCESS", ttl=60)
        assert store.finish(ids[0], mine.token, video=b"mp4", seed=1, finish_reason="SUCCESS", ttl=60)
        assert not store.finish(ids[0], mine.token, video=b"other", seed=1, finish_reason="SUCCESS", ttl=60)
        assert store.result(ids[0]).video == b"mp4"
    finally:
        store.close()


def test_the_routes_work_on_a_postgres_store(postgres_url: str, tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path, database_url=postgres_url), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "pg")
        job_id = submit(client, key, seed=5).json()["id"]
        answer = wait_result(client, key, job_id)
    assert answer.status_code == 200 and answer.headers["seed"] == "5"
    assert not (tmp_path / "jobs.sqlite3").exists()
