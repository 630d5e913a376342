"""Routing by model, without services: the queue names, what workers announce and how a front end reads it
(the cached view of live workers' models, and the names a Celery front end without ``--model`` admits), the
per-model top-up of doorbells, which model a doorbell makes a worker claim, and fair turns within each model.

The same, end to end with real PostgreSQL, Redis, front ends and workers: tests/cluster/test_cluster_models.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from img2vid.families import FAMILIES, TINY_FAMILIES
from img2vid.jobs.celery_app import QUEUE, model_of_queue, queue_for, queues_for
from img2vid.jobs.celery_dispatch import CeleryDispatcher
from img2vid.jobs.engine_set import EngineSet
from img2vid.jobs.registry import LiveModels, LiveWorker, announce, parse_announced, served_from_live
from img2vid.jobs.served import ServedModel, claim_names, parse_served
from img2vid.jobs.settings import load_settings
from img2vid.jobs.store import JobStore
from support.fake_engine import FakeEngine

SVD = ServedModel("svd", "tiny", TINY_FAMILIES["tiny"])
WAN = ServedModel("wan", "tiny-wan2.2-ti2v-5b", TINY_FAMILIES["tiny-wan2.2-ti2v-5b"])


def add(store: JobStore, owner: str, model: str, seed: int = 1) -> str:
    return store.add_job(owner=owner, image=b"png", seed=seed, params={}, model=model)[0]


# ---------------------------------------------------------------------- queue names


def test_each_model_has_its_queue_and_jobs_from_before_model_names_keep_the_legacy_one() -> None:
    assert queue_for("wan") == "img2vid.wan" and queue_for("") == QUEUE == "img2vid"
    assert model_of_queue("img2vid.wan") == "wan" and model_of_queue("img2vid") == ""
    assert model_of_queue("celery") is None and model_of_queue(None) is None and model_of_queue("img2vid.") is None
    # An SVD worker also takes jobs from before model names; a Wan worker does not.
    assert queues_for(claim_names([SVD])) == ["img2vid.svd", "img2vid"]
    assert queues_for(claim_names([WAN])) == ["img2vid.wan"]
    assert queues_for(claim_names([WAN, SVD])) == ["img2vid.wan", "img2vid.svd", "img2vid"]


# ---------------------------------------------------------------------- what workers announce


def test_a_worker_announces_its_models_with_their_families_and_a_front_end_reads_them(store: JobStore) -> None:
    custom = ServedModel("mine", "my-engine", None)
    assert announce([SVD, WAN, custom]) == "svd:tiny,wan:tiny-wan2.2-ti2v-5b,mine:custom"
    store.worker_seen("gpu-0", models=[WAN])
    store.worker_seen("gpu-1", models=[SVD, WAN])
    store.worker_seen("gpu-1")  # a heartbeat without models leaves them as they were
    live = store.live_models(within=30)
    assert [w.name for w in live] == ["gpu-0", "gpu-1"]
    assert live[1].models == (("svd", "tiny"), ("wan", "tiny-wan2.2-ti2v-5b"))
    assert live[1].holds("svd") and live[1].holds("") and not live[0].holds("") and not live[0].holds("svd")
    # Dead workers (not seen within the window) hold nothing.
    assert store.live_models(within=-1) == []


def test_announcements_parse_back_to_families_and_the_default_goes_first() -> None:
    assert parse_announced("") == () and parse_announced(None) == ()
    assert parse_announced("a:svd-xt, b ,,c:") == (("a", "svd-xt"), ("b", "custom"), ("c", "custom"))
    workers = [LiveWorker("w1", (("wan", "tiny-wan2.2-ti2v-5b"),)), LiveWorker("w2", (("big", "svd-xt"), ("wan", "svd-xt")))]
    served = served_from_live(workers)
    # Each name once (the oldest worker's family); the first SVD model is the default when the settings'
    # default is not held: a client that sends only Stability's fields sends an SVD request.
    assert [(m.name, m.family) for m in served] == [("big", FAMILIES["svd-xt"]), ("wan", TINY_FAMILIES["tiny-wan2.2-ti2v-5b"])]
    assert [m.name for m in served_from_live(workers, default="wan")] == ["wan", "big"]
    assert [m.name for m in served_from_live(workers[:1])] == ["wan"]
    assert served_from_live([]) == []
    # A family this version does not know is judged by SVD's protocol rules (family None), not refused.
    assert served_from_live([LiveWorker("w", (("x", "from-the-future"),))])[0].family is None


def test_the_live_view_is_read_at_most_every_two_seconds_and_never_waits_once_it_has_an_answer() -> None:
    now = [0.0]
    reads: list[int] = []
    gate = threading.Event()
    answers: list[Any] = [[LiveWorker("a", (("svd", "tiny"),))]]

    def read() -> list[LiveWorker]:
        reads.append(1)
        if len(reads) > 1:
            gate.wait(5)
        answer = answers[-1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    view = LiveModels(read, max_age=2.0, clock=lambda: now[0])
    assert view.holders("svd") == 1 and view.holders("wan") == 0 and len(reads) == 1  # the first read waits
    now[0] = 1.9
    assert view.holders("svd") == 1 and len(reads) == 1  # fresh: no read
    now[0] = 2.5
    answers.append([LiveWorker("b", (("wan", "tiny-wan2.2-ti2v-5b"),))])
    assert view.holders("svd") == 1  # stale: answered at once from the last view, while a new one is read
    assert view.holders("svd") == 1 and len(reads) == 2  # one read in flight at a time
    gate.set()
    for _ in range(200):
        if view.holders("wan") == 1:
            break
        threading.Event().wait(0.01)
    assert view.holders("wan") == 1 and view.holders("svd") == 0
    # A store that is down keeps the last view.
    answers.append(RuntimeError("down"))
    now[0] = 10.0
    view.refresh()
    assert view.holders("wan") == 1


# ---------------------------------------------------------------------- fair turns, per model


def test_fair_turns_across_keys_hold_within_each_model(store: JobStore) -> None:
    # Key a floods the Wan queue first; key b's Wan job still waits behind at most one of a's, and a's
    # SVD jobs neither take b's Wan turns nor are held back by a's Wan jobs.
    a_wan = [add(store, "a", "wan", seed) for seed in range(1, 5)]
    a_svd = [add(store, "a", "svd", seed) for seed in range(1, 3)]
    b_wan = add(store, "b", "wan")
    b_svd = add(store, "b", "svd")
    order: dict[str, list[str]] = {"wan": [], "svd": []}
    for model in order:
        while (claim := store.claim_next("w", models=[model])) is not None:
            assert claim.job.model == model
            order[model].append(claim.job.id)
    assert order["wan"] == [a_wan[0], b_wan, *a_wan[1:]]
    assert order["svd"] == [a_svd[0], b_svd, a_svd[1]]


def test_queue_position_counts_only_the_jobs_of_the_same_model(store: JobStore) -> None:
    for seed in range(3):
        add(store, "a", "wan", seed)
    svd = add(store, "b", "svd")
    status = store.status(svd)
    assert status is not None and store.queue_position(status) == 1


# ---------------------------------------------------------------------- a front end's doorbells


class _Dispatcher(CeleryDispatcher):
    """A Celery dispatcher whose broker is a dict of queue -> message count, publishing into a list."""

    def __init__(self, store: JobStore, waiting: dict[str, int]) -> None:
        super().__init__(store, "redis://127.0.0.1:1/0", app=object())
        self.waiting = waiting
        self.sent: list[tuple[str, str]] = []

    def waiting_messages(self, models: list[str] | None = None) -> dict[str, int]:
        return {model: self.waiting.get(queue_for(model), 0) for model in models or [""]}

    def publish(self, job_id: str, model: str = "") -> None:
        self.sent.append((job_id, queue_for(model)))


def test_top_up_rings_each_model_s_own_queue_for_its_queued_jobs(store: JobStore) -> None:
    wan = [add(store, "a", "wan", seed) for seed in range(3)]
    svd = add(store, "a", "svd")
    legacy = add(store, "b", "")
    dispatcher = _Dispatcher(store, {"img2vid.wan": 1, "img2vid.svd": 5})
    # Wan: three queued, one message waiting: two more, in start order. SVD: more messages than jobs (a
    # queue with doorbells for jobs no longer there does not make up for another model's). Legacy: one.
    assert dispatcher.top_up() == 3
    assert dispatcher.sent == [(legacy, "img2vid"), (wan[0], "img2vid.wan"), (wan[1], "img2vid.wan")]
    # Doorbells still in the outbox count as sent.
    dispatcher.sent.clear()
    dispatcher.waiting = {"img2vid.wan": 3, "img2vid.svd": 0, "img2vid": 1}
    dispatcher.notify(svd, "svd")
    assert dispatcher.pending("svd") == 1
    assert dispatcher.top_up() == 0 and dispatcher.sent == []


def test_a_job_whose_model_no_live_worker_holds_gets_a_notice(store: JobStore) -> None:
    dispatcher = _Dispatcher(store, {})
    dispatcher.live.max_age = 0.0  # read the registry at every ask (stale reads refresh in the background)
    dispatcher.live.refresh()
    assert dispatcher.waiting_notice("wan") == "no live worker holds model wan; the job waits until one does"
    store.worker_seen("gpu-0", models=[WAN])
    dispatcher.live.refresh()
    assert dispatcher.waiting_notice("wan") is None
    assert "svd" in (dispatcher.waiting_notice("") or "")  # a job from before model names needs an SVD model


# ---------------------------------------------------------------------- a worker's claims


def test_a_doorbell_makes_a_worker_claim_a_job_of_its_queue_s_model(tmp_path: Path) -> None:
    from img2vid.jobs.worker import Worker

    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        broker_url="redis://127.0.0.1:1/0",
        models=["svd=tiny", "wan=tiny-wan2.2-ti2v-5b"],
        engine_factory="support.fake_engine:FakeEngine",
    )
    worker = Worker(settings, name="w")
    try:
        worker.engines = EngineSet({"svd": FakeEngine(), "wan": FakeEngine()}, settings.served_models())
        assert [m.name for m in worker.served] == ["svd", "wan"]
        assert worker.claim_models("img2vid.wan") == ["wan"]
        assert worker.claim_models("img2vid") == [""]
        assert worker.claim_models(None) == ["svd", "wan", ""]
        assert worker.claim_models("img2vid.ltx") == ["svd", "wan", ""]  # not held: whatever it holds
        # Claims through the store: a Wan doorbell never starts the SVD job queued before it.
        svd = add(worker.store, "a", "svd")
        wan = add(worker.store, "a", "wan")
        claim = worker.store.claim_next("w", models=worker.claim_models("img2vid.wan"))
        assert claim is not None and claim.job.id == wan
        claim = worker.store.claim_next("w", models=worker.claim_models("img2vid.svd"))
        assert claim is not None and claim.job.id == svd
    finally:
        worker.store.close()


@pytest.mark.parametrize("configured", [[], ["svd=tiny"]])
def test_a_celery_front_end_without_model_options_admits_what_live_workers_hold(tmp_path: Path, configured: list[str]) -> None:
    from img2vid.server.app import create_app

    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        broker_url="redis://127.0.0.1:1/0",
        dispatch="celery",
        models=configured,
        engine_factory="support.fake_engine:FakeEngine",
    )
    state = create_app(settings).state.img2vid
    try:
        view = state.store.live_model_view(settings.lease_seconds)
        view.refresh()
        defaults = [m.name for m in settings.served_models()]
        assert [m.name for m in state.served_models()] == defaults  # no live worker: the settings' default
        state.store.worker_seen("gpu-0", models=[WAN])
        state.store.worker_seen("gpu-1", models=[SVD])
        view.refresh()
        names = [m.name for m in state.served_models()]
        if configured:
            assert names == ["svd"]  # --model options: exactly those
        else:
            assert names == ["svd", "wan"]  # the SVD model first: the default for a request that names none
            assert state.served_models()[1].family == TINY_FAMILIES["tiny-wan2.2-ti2v-5b"]
    finally:
        state.store.close()


def test_parse_served_and_announce_agree_on_names(tmp_path: Path) -> None:
    served = parse_served(["svd=tiny", "wan=tiny-wan2.2-ti2v-5b"], default_source="tiny")
    assert [m.name for m in served_from_live([LiveWorker("w", parse_announced(announce(served)))])] == ["svd", "wan"]
