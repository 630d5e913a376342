"""The store's schema revisions on a real PostgreSQL: every earlier version's store upgraded without loss,
and many processes opening an old store at once upgrade it once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from img2vid.jobs import migrate
from img2vid.jobs.store import JobStore
from support.cluster import new_database
from support.old_stores import RELEASES, build_old_store
from support.services import PostgresServer
from support.upgrades import check_upgrade

pytestmark = pytest.mark.services


@pytest.mark.parametrize(("release", "revision"), list(RELEASES.items()))
def test_a_store_of_each_earlier_version_is_upgraded_with_every_key_job_and_result(
    postgres_server: PostgresServer, release: str, revision: str
) -> None:
    check_upgrade(new_database(postgres_server), release, revision)


def test_front_ends_and_workers_starting_together_on_an_old_store_upgrade_it_once(postgres_server: PostgresServer) -> None:
    url = new_database(postgres_server)
    old = build_old_store(url, "first-server", time.time())
    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _index: JobStore(url), range(6)))
    try:
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SELECT count(*), min(version_num) FROM alembic_version")).one() == (1, migrate.HEAD)
        assert all(store.result(old.done) is not None for store in stores)
    finally:
        for store in stores:
            store.close()
