"""A scaled-out img2vid whose broker restarts and whose store goes away mid-job (issue 10, "What must
hold" 4 and 8, celery mode).

This module starts its own Redis and PostgreSQL, because its tests kill them: one front end and two workers
on them, with the step engine's 0.5 s steps and a 3 s lease. The tests run in order and each leaves both
services up again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from support.cluster import Cluster, FrontEnd, assert_video, start_job
from support.server_harness import auth, submit, wait_result
from support.services import PostgresServer, RedisServer

pytestmark = pytest.mark.services


@dataclass
class Outage:
    cluster: Cluster
    redis: RedisServer
    postgres: PostgresServer
    fe: FrontEnd
    key: str


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    pytest.importorskip("psycopg")
    with RedisServer() as redis, PostgresServer() as postgres:
        cluster = Cluster(
            folder=tmp_path_factory.mktemp("outage"),
            database_url=postgres.url,
            broker_url=redis.url,
            lease_seconds=3.0,
            step_seconds=0.5,
            step_count=2,
        )
        try:
            (fe,), _workers = cluster.start(front_ends=1, workers=2)
            yield Outage(cluster, redis, postgres, fe, cluster.key())
        finally:
            cluster.close()


def test_restarting_redis_while_jobs_are_queued_and_running_loses_no_job(outage: Outage) -> None:
    cluster, key = outage.cluster, outage.key
    seeds = range(401, 407)
    with outage.fe.client() as client:
        ids = {seed: start_job(client, key, seed=seed) for seed in seeds}
        cluster.wait_for(lambda: cluster.store.counts()["running"] >= 1, what="a job to start")
        counts = cluster.store.counts()
        assert counts["running"] >= 1 and counts["queued"] >= 1, counts
        # Killed and started again on its port, empty: every doorbell still waiting in it is gone.
        outage.redis.stop()
        outage.redis.start()
        for seed, job_id in ids.items():
            assert_video(wait_result(client, key, job_id, timeout=120), seed)
    for seed in seeds:
        assert len(cluster.events("done", seed)) == 1


def test_the_store_going_away_mid_job_is_a_503_on_submit_and_the_job_still_finishes(outage: Outage) -> None:
    cluster, key = outage.cluster, outage.key
    with outage.fe.client() as client:
        job_id = start_job(client, key, seed=801, steps=4)
        before = cluster.job_count()
        # Stop PostgreSQL 1.5 s before the job ends, well inside its 3 s lease: its worker then has a
        # result it cannot write.
        first = cluster.wait_for(lambda: cluster.events("step", 801), what="the job's first step")[0]
        holder = cluster.worker_with_pid(first.pid)
        outage.postgres.stop()
        try:
            started = time.monotonic()
            answer = submit(client, key, seed=802)
            elapsed = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["name"] == "store_unavailable" and body["errors"] and set(body) == {"id", "name", "errors"}
            assert answer.headers["retry-after"]
            assert elapsed < 2.0, f"the 503 took {elapsed:.1f} s"
            health = client.get("/healthz")
            assert health.status_code == 503 and health.json()["store"] == "down"

            # The worker keeps its result and retries the write with growing pauses, until its lease is
            # surely gone; then it lets the job go, to be run again from its stored inputs.
            gave_up = "the store stayed unreachable for a whole lease"
            cluster.wait_for(lambda: gave_up in holder.log_text(), what="the worker to give the job up")
            delays = [float(d) for d in re.findall(r"store is unreachable; retrying in ([0-9.]+) s", holder.log_text())]
            assert len(delays) >= 2 and delays == sorted(delays) and delays[-1] > delays[0], delays
            # An outage that lasts minutes must leave a log an operator can read: one line per retry.
            assert "heartbeat failed (StoreUnavailableError)" in holder.log_text()
            assert "Traceback" not in holder.log_text()
        finally:
            outage.postgres.start()
        answer = wait_result(client, key, job_id, timeout=120)
    assert_video(answer, 801)
    stored = cluster.row(job_id)
    assert stored["status"] == "done" and stored["attempts"] == 2
    assert len(cluster.events("done", 801)) == 2  # the result made during the outage, and the re-run's
    # The refused submit left nothing behind.
    assert cluster.job_count() == before
    assert not cluster.events("start", 802)
    assert all(worker.alive for worker in cluster.workers)
    with outage.fe.client() as client:
        assert client.get(f"/v2beta/image-to-video/result/{job_id}", headers=auth(key)).status_code == 200
