"""``/healthz`` tells the truth quickly on a Celery front end: 503 within 2 s of Redis or PostgreSQL going
away, 200 again within 2 s of its return, and no answer ever takes long, so a load balancer acts in time.

This module starts its own Redis and PostgreSQL, because it kills them, and one real front end
(``img2vid serve --dispatch celery``); no worker is needed: health does not depend on one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from support.cluster import Cluster, FrontEnd
from support.services import PostgresServer, RedisServer

pytestmark = [pytest.mark.services, pytest.mark.live]

#: What the front end must do within this many seconds of a service going away or coming back.
WITHIN = 2.0


@dataclass
class Setup:
    cluster: Cluster
    redis: RedisServer
    postgres: PostgresServer
    fe: FrontEnd


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    pytest.importorskip("psycopg")
    with RedisServer() as redis, PostgresServer() as postgres:
        cluster = Cluster(folder=tmp_path_factory.mktemp("health"), database_url=postgres.url, broker_url=redis.url)
        try:
            (fe,), _ = cluster.start(front_ends=1, workers=0)
            yield Setup(cluster, redis, postgres, fe)
        finally:
            cluster.close()


def _seconds_until(fe: FrontEnd, wanted: int, part: str, state: str, *, limit: float = 15.0) -> float:
    """Poll /healthz until it answers ``wanted`` with ``part`` in ``state``; the seconds that took. Each
    answer must come within a second and a half: a health check that hangs is no better than a wrong one."""
    started = time.monotonic()
    with httpx.Client(base_url=fe.url, timeout=10.0) as client:
        while True:
            asked = time.monotonic()
            answer = client.get("/healthz")
            took = time.monotonic() - asked
            assert took < 1.5, f"/healthz took {took:.2f} s to answer"
            body = answer.json()
            if answer.status_code == wanted and body.get(part) == state:
                return time.monotonic() - started
            if time.monotonic() - started > limit:
                raise AssertionError(f"/healthz still {answer.status_code} {body} after {limit:g} s")
            time.sleep(0.05)


def _outage(setup: Setup, stop: Callable[[], None], start: Callable[[], None], part: str) -> None:
    assert _seconds_until(setup.fe, 200, part, "ok") < WITHIN  # healthy to begin with
    stop()
    try:
        went = _seconds_until(setup.fe, 503, part, "down")
        assert went < WITHIN, f"/healthz turned 503 {went:.2f} s after the {part} went away"
    finally:
        start()
    came = _seconds_until(setup.fe, 200, part, "ok")
    assert came < WITHIN, f"/healthz turned 200 again {came:.2f} s after the {part} came back"


def test_healthz_follows_the_broker_within_two_seconds(setup: Setup) -> None:
    _outage(setup, setup.redis.stop, setup.redis.start, "broker")


def test_healthz_follows_the_store_within_two_seconds(setup: Setup) -> None:
    _outage(setup, setup.postgres.stop, setup.postgres.start, "store")


def test_healthz_says_which_part_is_down(setup: Setup) -> None:
    setup.redis.stop()
    try:
        _seconds_until(setup.fe, 503, "broker", "down")
        body = httpx.get(setup.fe.url + "/healthz", timeout=10).json()
        assert body["status"] == "degraded" and body["store"] == "ok" and "queued" in body
    finally:
        setup.redis.start()
    _seconds_until(setup.fe, 200, "broker", "ok")
