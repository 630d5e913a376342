"""Fixtures for the scale-out tests: one PostgreSQL and one Redis server for the whole session, started on
free ports from the binaries on the machine (tests/support/services.py). Each module's cluster takes a new
database on the PostgreSQL server and a Redis database of its own (tests/support/cluster.py), so modules do
not see each other's jobs or doorbells. A module whose tests stop or restart a service starts its own
servers instead."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.services import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg")
    with PostgresServer() as server:
        yield server
