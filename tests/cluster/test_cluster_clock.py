"""Workers whose clocks are off, on a real cluster: leases are the database's clock's, never a process's.

Two workers run under libfaketime, one 40 s behind and one 40 s ahead (``FAKETIME`` and ``LD_PRELOAD``
set in that worker's environment only), beside a front end and the database on the true clock. When the
workers wrote their leases as their own ``time.time()`` plus the lease, the slow one's were already over
when written (the reconciler handed its jobs to another worker while it ran them: a double run) and the
fast one's ran 40 s too long (a job of a killed worker waited 40 s more). Now the database's clock writes
and compares every lease, so neither happens. Skipped where libfaketime is not installed (``.ci/run``
installs Debian's ``faketime``).
"""

from __future__ import annotations

import glob
import signal
import time
from collections.abc import Iterator

import pytest

from support.cluster import Cluster, assert_video, new_database, redis_db_url, start_job
from support.server_harness import wait_result
from support.services import PostgresServer, RedisServer

pytestmark = pytest.mark.services

LEASE_SECONDS = 3.0
#: The front end's reconciler pass (CeleryDispatcher's default).
RECONCILE_SECONDS = 2.0
SKEWS = {"behind": "-40s", "ahead": "+40s"}


def _libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") + glob.glob("/usr/lib/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


@pytest.fixture(scope="module")
def skewed(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, str]]:
    library = _libfaketime()
    if library is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime): the skewed workers need it")
    cluster = Cluster(
        folder=tmp_path_factory.mktemp("clock"),
        database_url=new_database(postgres_server),
        broker_url=redis_db_url(redis_server.url),
        lease_seconds=LEASE_SECONDS,
        step_seconds=0.3,
        step_count=3,
    )
    try:
        front = cluster.front_end("fe1")
        workers = [
            cluster.worker(name, env={"LD_PRELOAD": library, "FAKETIME": offset, "FAKETIME_DONT_RESET": "1"})
            for name, offset in SKEWS.items()
        ]
        for process in [front, *workers]:
            process.wait_ready()
        yield cluster, cluster.key()
    finally:
        cluster.close()


def test_the_skew_is_real(skewed: tuple[Cluster, str]) -> None:
    # The premise: each worker's own clock is 40 s off the true one (its log's timestamps say so).
    cluster, _key = skewed
    import datetime as dt
    import re

    now = dt.datetime.now()
    for name, sign in (("behind", -1), ("ahead", 1)):
        stamps = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+", cluster.current[name].log_text())
        assert stamps, cluster.current[name].log_text()[-2000:]
        offset = (dt.datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S") - now).total_seconds()
        assert sign * offset > 25, (name, offset)


def test_skewed_workers_run_every_job_once_and_lose_none(skewed: tuple[Cluster, str]) -> None:
    cluster, key = skewed
    seeds = range(1001, 1011)
    front = cluster.current["fe1"]
    with front.client() as client:  # type: ignore[attr-defined]
        ids = {seed: start_job(client, key, seed=seed) for seed in seeds}
        for seed, job_id in ids.items():
            assert_video(wait_result(client, key, job_id, timeout=90), seed)
    pids = {cluster.current[name].pid for name in SKEWS}
    for seed, job_id in ids.items():
        assert len(cluster.events("start", seed)) == 1, f"job {seed} ran twice: {cluster.events('start', seed)}"
        assert len(cluster.events("done", seed)) == 1
        row = cluster.row(job_id)
        assert row["status"] == "done" and row["attempts"] == 1 and row["lease_token"] == 1
    ran = {event.pid for seed in seeds for event in cluster.events("start", seed)}
    assert ran == pids, "both skewed workers should have run jobs"


@pytest.mark.parametrize("victim", list(SKEWS))
def test_a_killed_skewed_worker_s_job_is_taken_over_within_the_lease_and_a_reconciler_pass(
    skewed: tuple[Cluster, str], victim: str
) -> None:
    cluster, key = skewed
    other = next(name for name in SKEWS if name != victim)
    seed = 1100 + list(SKEWS).index(victim)
    front = cluster.current["fe1"]
    dying, survivor = cluster.current[victim], cluster.current[other]
    survivor.signal(signal.SIGSTOP)  # so the job goes to the victim
    try:
        with front.client() as client:  # type: ignore[attr-defined]
            job_id = start_job(client, key, seed=seed, steps=60)
            cluster.wait_for(lambda: cluster.events("step", seed), what=f"the job to start on {victim}")
            assert cluster.events("start", seed)[0].pid == dying.pid
            dying.kill()
            killed = time.monotonic()
            survivor.signal(signal.SIGCONT)
            cluster.wait_for(lambda: len(cluster.events("start", seed)) == 2, what="another worker to take the job over")
            took = time.monotonic() - killed
            assert took < LEASE_SECONDS + RECONCILE_SECONDS + 3.0, f"taken over after {took:.1f} s"
            assert cluster.events("start", seed)[1].pid == survivor.pid
            client.delete(f"/v2beta/image-to-video/result/{job_id}", headers={"authorization": f"Bearer {key}"})
    finally:
        survivor.signal(signal.SIGCONT)
        cluster.restart(victim).wait_ready()
    assert cluster.row(job_id)["attempts"] == 2
