"""A scaled-out img2vid under the faults real clusters have (issue 10, "What must hold" 1, 2, 3, 5, 6, 7, 9).

One cluster for the whole module, because every process start costs seconds of imports: two front ends
(``img2vid serve --dispatch celery``) and two workers (``img2vid worker``) on the session's PostgreSQL and
Redis, running the step engine with 0.5 s steps and a 3 s lease. Tests that kill, stop or restart a process
leave the cluster as they found it (the worker restarted, the front end back on its port); before each test
every worker is consuming and no job is queued or running. Each test uses seeds of its own, so the shared
step log tells its jobs apart.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from support.cluster import Cluster, FrontEnd, assert_video, new_database, redis_db_url, start_job
from support.server_harness import V2ALPHA, V2BETA, auth, submit, wait_result
from support.services import PostgresServer, RedisServer

pytestmark = pytest.mark.services

#: A job with this seed kills the worker process running it, at its second step (the poison job).
POISON_SEED = 666
STEP_SECONDS = 0.5
LEASE_SECONDS = 3.0


@dataclass
class Running:
    cluster: Cluster
    key: str

    @property
    def fes(self) -> list[FrontEnd]:
        return [process for name, process in sorted(self.cluster.current.items()) if isinstance(process, FrontEnd)]


@pytest.fixture(scope="module")
def running(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    cluster = Cluster(
        folder=tmp_path_factory.mktemp("cluster"),
        database_url=new_database(postgres_server),
        broker_url=redis_db_url(redis_server.url),
        lease_seconds=LEASE_SECONDS,
        step_seconds=STEP_SECONDS,
        step_count=2,
        extra_env={"IMG2VID_STEP_KILL_SEED": str(POISON_SEED)},
    )
    try:
        # The key is made once, with the CLI an operator uses, while the front ends and workers start.
        keys = subprocess.Popen(
            [sys.executable, "-m", "img2vid", "keys", "create", "--name", "shared"],
            env=cluster.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        cluster.start(front_ends=2, workers=2)
        out, err = keys.communicate(timeout=120)
        assert keys.returncode == 0, err
        yield Running(cluster, out.strip())
    finally:
        cluster.close()


@pytest.fixture(autouse=True)
def settled(running: Running) -> Iterator[None]:
    """Every worker consuming and nothing queued or running, before each test."""
    running.cluster.settle()
    yield


def _cancel(client: httpx.Client, key: str, job_id: str) -> None:
    answer = client.delete(f"{V2BETA}/result/{job_id}", headers=auth(key))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": job_id, "status": "cancelled"}


def _assert_cancelled(client: httpx.Client, key: str, job_id: str) -> None:
    answer = client.get(f"{V2BETA}/result/{job_id}", headers=auth(key))
    assert answer.status_code == 410, answer.text
    body = answer.json()
    assert body["name"] == "cancelled" and body["errors"] and set(body) == {"id", "name", "errors"}


# ---------------------------------------------------------------------- 1. two front ends, one store


def test_a_job_submitted_through_one_front_end_is_fetched_through_the_other(running: Running) -> None:
    one, two = running.fes[:2]
    key = running.key
    with one.client() as a, two.client() as b:
        first = start_job(a, key, seed=101)
        second = start_job(b, key, seed=102)
        assert_video(wait_result(b, key, first, timeout=60), 101)
        assert_video(wait_result(a, key, second, timeout=60), 102)
        # The key was created once, in the shared store: both front ends know it, and neither a wrong one.
        for client in (a, b):
            assert client.get(f"{V2BETA}/result/{first}", headers=auth(key)).status_code == 200
            refused = client.get(f"{V2BETA}/result/{first}", headers=auth("sk-" + "0" * 40))
            assert refused.status_code == 401 and refused.json()["name"] == "unauthorized"
        old = b.get(f"{V2ALPHA}/result/{second}", headers={**auth(key), "accept": "application/json"})
        assert old.status_code == 200 and old.json()["seed"] == 102


# ---------------------------------------------------------------------- 9. the protocol's integers


@pytest.mark.parametrize(
    ("name", "value"),
    [("seed", "+5"), ("seed", "1_000"), ("seed", "\u0665"), ("seed", "1\uff12"), ("motion_bucket_id", "+5")],
)
def test_form_integers_are_plain_decimal_digits(running: Running, name: str, value: str) -> None:
    with running.fes[0].client() as client:
        before = running.cluster.job_count()
        answer = submit(client, running.key, **{name: value})
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert body["name"] == "invalid_parameters" and name in " ".join(body["errors"])
        assert running.cluster.job_count() == before


# ---------------------------------------------------------------------- 7. cancel


def test_a_queued_and_a_running_job_are_cancelled_at_once_and_the_worker_takes_the_next(running: Running) -> None:
    cluster, key = running.cluster, running.key
    one, two = running.fes[:2]
    with one.client() as a, two.client() as b:
        doomed = start_job(a, key, seed=701, steps=40)
        busy = start_job(a, key, seed=702, steps=40)
        cluster.wait_for(lambda: cluster.events("start", 701) and cluster.events("start", 702), what="both workers to start")
        queued = start_job(b, key, seed=703)
        after = start_job(b, key, seed=704)
        answer = a.get(f"{V2BETA}/result/{queued}", headers=auth(key))
        assert answer.status_code == 202 and answer.json()["queue_position"] == 1

        # Queued: cancelled in the store at once, so the very next fetch (through the other front end) is 410.
        _cancel(a, key, queued)
        _assert_cancelled(b, key, queued)

        # Running: the answer is at once; the engine stops within one step of 0.5 s after the one it was in.
        cluster.wait_for(lambda: cluster.events("step", 701), what="the running job's first step")
        _cancel(b, key, doomed)
        steps_then = len(cluster.events("step", 701))
        _assert_cancelled(a, key, doomed)
        stopped = cluster.wait_for(lambda: cluster.events("cancelled", 701), what="the engine to stop")[0]
        assert stopped.step <= steps_then + 2, (stopped, steps_then)
        assert not cluster.events("done", 701)

        # The freed worker takes the next job while the other is still busy; the cancelled one never runs.
        assert_video(wait_result(a, key, after, timeout=60), 704)
        assert cluster.events("start", 704)[0].pid == cluster.events("start", 701)[0].pid
        assert not cluster.events("start", 703)
        assert cluster.row(doomed)["status"] == "cancelled" and cluster.row(queued)["status"] == "cancelled"
        _cancel(a, key, busy)


# ---------------------------------------------------------------------- 5. front ends come and go


def test_restarting_a_front_end_and_adding_one_re_runs_nothing_a_live_worker_holds(running: Running) -> None:
    cluster, key = running.cluster, running.key
    one, two = running.fes[:2]
    with two.client() as b:
        # Two jobs far longer than a front end's start, one per worker, and one waiting behind them.
        held = [start_job(b, key, seed=501, steps=100), start_job(b, key, seed=502, steps=100)]
        waiting = start_job(b, key, seed=503)
        cluster.wait_for(lambda: cluster.events("start", 501) and cluster.events("start", 502), what="both jobs to start")

        one.stop()
        again = cluster.restart(one.name)
        third = cluster.front_end("fe3")
        assert isinstance(again, FrontEnd)
        again.wait_ready()
        third.wait_ready()
        # Both new front ends are up (their reconcilers run every 2 s) while the jobs run on: let them
        # run four more seconds' worth of steps, longer than a lease and two reconciler passes.
        counts = {seed: len(cluster.events("step", seed)) for seed in (501, 502)}
        for seed in (501, 502):
            cluster.wait_for(lambda seed=seed: len(cluster.events("step", seed)) >= counts[seed] + 8, what=f"job {seed} to go on")

        with again.client() as a, third.client() as c:
            for job_id in held:
                assert c.get(f"{V2BETA}/result/{job_id}", headers=auth(key)).status_code == 202
                _cancel(a, key, job_id)
            assert_video(wait_result(c, key, waiting, timeout=60), 503)
    for seed, job_id in zip((501, 502), held, strict=True):
        assert len(cluster.events("start", seed)) == 1, f"job {seed} was started again"
        assert cluster.row(job_id)["attempts"] == 1
    assert len(cluster.events("start", 503)) == 1


# ---------------------------------------------------------------------- 2. a worker killed mid-job


def test_a_worker_killed_mid_job_loses_no_job_and_another_makes_the_same_video(running: Running) -> None:
    cluster, key = running.cluster, running.key
    seeds = (201, 202, 203, 204)
    with running.fes[0].client() as a:
        ids = {seed: start_job(a, key, seed=seed, steps=4) for seed in seeds}
        first = cluster.wait_for(lambda: cluster.events("step", 201), what="the first job's first step")[0]
        victim = cluster.worker_with_pid(first.pid)
        victim.kill()
        cluster.restart(victim.name)  # as systemd would; the job must not wait for it
        for seed, job_id in ids.items():
            assert_video(wait_result(a, key, job_id, timeout=90), seed)
    # No job lost, none finished twice; the killed one was started again, by another process.
    for seed in seeds:
        done = cluster.events("done", seed)
        assert len(done) == 1, (seed, done)
    assert cluster.events("done", 201)[0].pid != victim.pid
    assert len(cluster.events("start", 201)) == 2
    assert cluster.row(ids[201])["attempts"] == 2
    assert all(cluster.row(ids[seed])["status"] == "done" for seed in seeds)


# ---------------------------------------------------------------------- 3. a worker stopped past its lease


def test_a_worker_stopped_past_its_lease_has_its_late_writes_refused(running: Running) -> None:
    cluster, key = running.cluster, running.key
    with running.fes[0].client() as a:
        # Stop the worker during the job's last step, so that when it wakes it has a result to write.
        for seed in (301, 302, 303):
            job_id = start_job(a, key, seed=seed, steps=4)
            third = cluster.wait_for(
                lambda seed=seed: [e for e in cluster.events("step", seed) if e.step == 3], what=f"job {seed}'s third step"
            )[0]
            victim = cluster.worker_with_pid(third.pid)
            victim.signal(signal.SIGSTOP)
            if not cluster.events("done", seed):
                break
            victim.signal(signal.SIGCONT)  # too late: it had finished; try again with the next job
            wait_result(a, key, job_id, timeout=60)
        else:
            pytest.fail("the worker finished each job before it could be stopped")

        # Its lease runs out, the reconciler re-queues the job, and the other worker starts it again.
        rerun = cluster.wait_for(
            lambda: [e for e in cluster.events("start", seed) if e.pid != victim.pid], what="the job to start again"
        )[0]
        other = cluster.worker_with_pid(rerun.pid)
        # Woken while the job is the other worker's, the stopped one writes with its old lease token, and the
        # store refuses it: its result, when the engine finishes the step first, or its heartbeat, when the
        # heartbeat thread wakes first (then the engine is stopped). Either way it drops the job.
        victim.signal(signal.SIGCONT)
        cluster.wait_for(lambda: f"job {job_id[:12]}: lost" in victim.log_text(), what="the woken worker to drop the job")
        log = victim.log_text()
        if "the store refused a stale lease" in log:  # the result was refused
            assert [e for e in cluster.events("done", seed) if e.pid == victim.pid]
        else:  # the heartbeat was refused first
            assert f"job {job_id[:12]} is no longer this worker's" in log

        assert_video(wait_result(a, key, job_id, timeout=60), seed)
    # One result, written once, by the worker that held the lease.
    assert f"job {job_id[:12]}: done" in other.log_text()
    stored = cluster.row(job_id)
    assert stored["status"] == "done" and stored["attempts"] == 2 and stored["worker"] == other.name


# ---------------------------------------------------------------------- 6. a poison job


def test_a_job_that_kills_its_worker_fails_after_three_attempts_and_the_others_run(running: Running) -> None:
    cluster, key = running.cluster, running.key
    with running.fes[0].client() as a, cluster.supervised([worker.name for worker in cluster.workers]) as restarts:
        poison = start_job(a, key, seed=POISON_SEED, steps=4)
        others = {seed: start_job(a, key, seed=seed) for seed in (601, 602, 603)}
        answer = wait_result(a, key, poison, timeout=120)
        for seed, job_id in others.items():
            assert_video(wait_result(a, key, job_id, timeout=60), seed)
    assert answer.status_code == 500, answer.text
    body = answer.json()
    assert body["name"] == "internal_error"
    assert "started 3 times" in body["errors"][0] and "worker stopped unexpectedly" in body["errors"][0]
    assert len(cluster.events("start", POISON_SEED)) == 3
    assert not cluster.events("done", POISON_SEED)
    assert len(restarts) >= 3
    assert cluster.row(poison)["attempts"] == 3
    for seed in others:
        assert len(cluster.events("done", seed)) == 1
