"""Models routed through a scaled-out img2vid: a job for model X runs only on a worker that holds X.

One cluster for the module, on the session's PostgreSQL and Redis, running the step engine (no model is
loaded; the served names and families come from ``--model NAME=tiny...``): a front end started with
``--model svd=tiny --model wan=tiny-wan2.2-ti2v-5b --model ltx=tiny-ltx-video`` (it admits exactly those),
one started without ``--model`` (it admits what live workers hold), one SVD worker and two Wan workers. No
worker holds ltx until the last test starts one. Each test uses seeds of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from support.cluster import IMAGE, Cluster, FrontEnd, new_database, redis_db_url, start_job
from support.server_harness import V2BETA, auth, submit, wait_result
from support.services import PostgresServer, RedisServer

pytestmark = [pytest.mark.services, pytest.mark.live]

STEP_SECONDS = 0.3
LEASE_SECONDS = 3.0
SVD = ["--model", "svd=tiny"]
WAN = ["--model", "wan=tiny-wan2.2-ti2v-5b"]
LTX = ["--model", "ltx=tiny-ltx-video"]
#: Which worker names hold which model (the ltx worker is started by the last test).
HOLDERS = {"svd": {"svd-1"}, "wan": {"wan-1", "wan-2"}, "ltx": {"ltx-1"}}
PROMPT = {"prompt": "a boat drifts on a calm lake"}


@dataclass
class Running:
    cluster: Cluster
    key: str
    named: FrontEnd  # started with --model options
    open: FrontEnd  # started without: admits what live workers hold


def _admitted(fe: FrontEnd) -> list[str]:
    answer = httpx.get(fe.url + "/info", timeout=10)
    assert answer.status_code == 200, answer.text
    return [model["name"] for model in answer.json()["models"]]


@pytest.fixture(scope="module")
def running(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    cluster = Cluster(
        folder=tmp_path_factory.mktemp("models"),
        database_url=new_database(postgres_server),
        broker_url=redis_db_url(redis_server.url),
        lease_seconds=LEASE_SECONDS,
        step_seconds=STEP_SECONDS,
        step_count=2,
    )
    try:
        processes = [
            cluster.front_end("fe-named", args=[*SVD, *WAN, *LTX]),
            cluster.front_end("fe-open"),
            cluster.worker("svd-1", args=SVD),
            cluster.worker("wan-1", args=WAN),
            cluster.worker("wan-2", args=WAN),
        ]
        for process in processes:
            process.wait_ready()
        named, open_ = processes[0], processes[1]
        assert isinstance(named, FrontEnd) and isinstance(open_, FrontEnd)
        # The open front end learns the workers' models from their heartbeats (a view at most ~2 s old).
        cluster.wait_for(lambda: _admitted(open_) == ["svd", "wan"], what="the open front end to admit svd and wan")
        yield Running(cluster, cluster.key(), named, open_)
    finally:
        cluster.close()


@pytest.fixture(autouse=True)
def settled(running: Running) -> Iterator[None]:
    """Every worker consuming and nothing queued or running, before each test."""
    running.cluster.settle()
    yield


def _ran_on(cluster: Cluster, job_id: str) -> tuple[str, str]:
    row = cluster.row(job_id)
    return str(row["model"]), str(row["worker"])


def test_jobs_of_two_models_through_two_front_ends_each_run_on_a_worker_of_their_model(running: Running) -> None:
    cluster, key = running.cluster, running.key
    wanted: dict[str, str] = {}
    with running.named.client() as a, running.open.client() as b:
        for index, client in enumerate((a, b, a, b)):
            wanted[start_job(client, key, seed=100 + index, model="svd")] = "svd"
            wanted[start_job(client, key, seed=110 + index, model="wan", **PROMPT)] = "wan"
        # A request that names no model gets the open front end's default: the SVD model a worker holds.
        answer = submit(b, key, image=IMAGE, seed=120)
        assert answer.status_code == 200 and "notice" not in answer.json(), answer.text
        wanted[answer.json()["id"]] = "svd"
        for job_id in wanted:
            done = wait_result(a, key, job_id, timeout=90)
            assert done.status_code == 200, done.text
    for job_id, model in wanted.items():
        ran = _ran_on(cluster, job_id)
        assert ran[0] == model and ran[1] in HOLDERS[model], (job_id, ran)
    # Both front ends report each model's workers; the unlabelled totals stay.
    for fe in (running.named, running.open):
        text = httpx.get(fe.url + "/metrics", timeout=10).text
        assert 'img2vid_live_workers_by_model{model="svd"} 1.0' in text
        assert 'img2vid_live_workers_by_model{model="wan"} 2.0' in text
        assert "img2vid_live_workers 3.0" in text and "img2vid_queue_depth 0.0" in text
        health = httpx.get(fe.url + "/healthz", timeout=10).json()
        assert health["models"]["svd"] == {"held": True, "live_workers": 1}
        assert health["models"]["wan"] == {"held": True, "live_workers": 2}


def test_a_worker_killed_mid_job_is_taken_over_only_by_a_worker_of_the_same_model(running: Running) -> None:
    cluster, key = running.cluster, running.key
    with running.open.client() as b:
        job_id = start_job(b, key, seed=201, model="wan", steps=12, **PROMPT)
        first = cluster.wait_for(lambda: cluster.events("step", 201), what="the Wan job's first step")[0]
        victim = cluster.worker_with_pid(first.pid)
        assert victim.name in HOLDERS["wan"]
        victim.kill()
        # The SVD worker is idle and awake the whole time (it runs an SVD job meanwhile), and never takes it.
        svd_job = start_job(b, key, seed=202, model="svd")
        assert wait_result(b, key, svd_job, timeout=60).status_code == 200
        assert wait_result(b, key, job_id, timeout=90).status_code == 200
        cluster.restart(victim.name)
    starts = cluster.events("start", 201)
    assert len(starts) == 2, starts
    assert [cluster.worker_with_pid(step.pid).name in HOLDERS["wan"] for step in starts] == [True, True]
    (done,) = cluster.events("done", 201)
    heir = cluster.worker_with_pid(done.pid)
    assert heir.name in HOLDERS["wan"] and heir.pid != victim.pid
    row = cluster.row(job_id)
    assert row["worker"] == heir.name and row["attempts"] == 2 and row["status"] == "done"
    assert _ran_on(cluster, svd_job) == ("svd", "svd-1")


def test_a_job_for_a_model_no_live_worker_holds_waits_with_a_notice_and_runs_when_one_starts(running: Running) -> None:
    cluster, key = running.cluster, running.key
    notice = "no live worker holds model ltx; the job waits until one does"
    with running.named.client() as a, running.open.client() as b:
        answer = submit(a, key, image=IMAGE, seed=301, model="ltx", **PROMPT)
        assert answer.status_code == 200, answer.text
        assert answer.json()["notice"] == notice
        job_id = answer.json()["id"]
        # Queued, and it says why, through either front end.
        for client in (a, b):
            poll = client.get(f"{V2BETA}/result/{job_id}", headers=auth(key))
            assert poll.status_code == 202, poll.text
            assert poll.json()["notice"] == notice and poll.json()["queue_position"] == 1
        # The open front end admits only what live workers hold: ltx is not served there yet.
        refused = submit(b, key, image=IMAGE, seed=302, model="ltx", **PROMPT)
        assert refused.status_code == 400 and "ltx" in refused.json()["errors"][0], refused.text
        healthz = a.get("/healthz")
        health = healthz.json()
        assert healthz.status_code == 200, health  # a model without workers does not fail health
        assert health["models"]["ltx"] == {"held": False, "live_workers": 0}
        text = a.get("/metrics").text
        assert 'img2vid_queue_depth_by_model{model="ltx"} 1.0' in text
        assert 'img2vid_live_workers_by_model{model="ltx"} 0.0' in text
        # The other models' workers go on with their own jobs, and leave the ltx job queued.
        other = start_job(b, key, seed=303, model="wan", **PROMPT)
        assert wait_result(b, key, other, timeout=60).status_code == 200
        assert cluster.row(job_id)["status"] == "queued" and not cluster.events("start", 301)

        cluster.worker("ltx-1", args=LTX).wait_ready()
        done = wait_result(a, key, job_id, timeout=60)
        assert done.status_code == 200, done.text
        assert _ran_on(cluster, job_id) == ("ltx", "ltx-1")
        # The open front end now admits ltx too, and a new ltx job carries no notice.
        cluster.wait_for(lambda: "ltx" in _admitted(running.open), what="the open front end to admit ltx")
        again = submit(b, key, image=IMAGE, seed=304, model="ltx", **PROMPT)
        assert again.status_code == 200 and "notice" not in again.json(), again.text
        assert wait_result(b, key, again.json()["id"], timeout=60).status_code == 200
    assert _ran_on(cluster, again.json()["id"]) == ("ltx", "ltx-1")
