"""Fixtures for the scale-out tests: one PostgreSQL and one Redis server for the whole session (started on
free ports from the binaries on the machine), and a factory of clusters, each on a database of its own and
a Redis database of its own, so tests do not see each other's jobs or doorbells. A test that stops or
restarts a service starts its own server instead (tests/support/services.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cluster import Cluster, new_database, redis_db_url
from support.services import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server(redis_server: RedisServer) -> Iterator[PostgresServer]:
    # Needs redis_server only so that both exist for every test that takes either; Redis starts first.
    pytest.importorskip("psycopg")
    with PostgresServer() as server:
        yield server


ClusterFactory = Callable[..., Cluster]


@pytest.fixture
def make_cluster(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> Iterator[ClusterFactory]:
    """``make_cluster(**options)``: a :class:`Cluster` on a new database of the session's PostgreSQL and a
    new database of its Redis (``database_url=`` / ``broker_url=`` point it at a server of the test's own);
    every process it started is stopped at the end of the test."""
    made: list[Cluster] = []
    lock = threading.Lock()

    def make(**options: object) -> Cluster:
        options.setdefault("database_url", new_database(postgres_server))
        options.setdefault("broker_url", redis_db_url(redis_server.url))
        with lock:
            folder = tmp_path / f"cluster{len(made)}"
        folder.mkdir()
        cluster = Cluster(folder=folder, **options)  # type: ignore[arg-type]
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()
