"""The shared store on a real PostgreSQL, in this process: what many front ends and workers starting or
submitting at once rely on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from img2vid.jobs.store import JobStore
from support.cluster import new_database
from support.services import PostgresServer

pytestmark = pytest.mark.services


def test_many_processes_opening_a_new_database_at_once_all_get_the_store(postgres_server: PostgresServer) -> None:
    # Front ends and workers are often started together on an empty database; each creates the tables
    # it finds missing. Before the schema lock, two of them raced and one died on a duplicate pg_type row.
    url = new_database(postgres_server)
    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _index: JobStore(url), range(6)))
    try:
        job_id, _ = stores[0].add_job(owner="o", image=b"x", seed=1, params={})
        assert all(store.status(job_id) is not None for store in stores)
    finally:
        for store in stores:
            store.close()
