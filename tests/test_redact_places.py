"""Every place img2vid prints or logs a broker or store URL, walked with every form of credential such a URL
can carry: ``img2vid worker``'s and ``img2vid serve``'s start-up errors (``check_services``), ``--debug``
tracebacks, ``/healthz``'s body and the log lines around it, and a real worker's and front end's logs
(Celery's banner and its reconnect errors included) while their password-protected Redis goes away. The
password never shows; the URL, masked, still says where."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from img2vid.cli import app
from img2vid.redact import install_process_redaction, redact
from support.cluster import Cluster, wait_for
from support.services import RedisServer

SECRET = "Sup3rSecretPw"

#: Brokers where nothing listens (port 1), in every form of credential.
BROKER_URLS = [
    f"redis://:{SECRET}@127.0.0.1:1/0",
    f"redis://user:{SECRET}@127.0.0.1:1/0",
    f"rediss://:{SECRET}@127.0.0.1:1/0",
    f"amqp://user:{SECRET}@127.0.0.1:1//",
    f"redis://127.0.0.1:1/0?password={SECRET}",
]
#: Stores that cannot be used or reached, in every form of credential.
DATABASE_URLS = [
    f"postgresql+psycopg://img2vid:{SECRET}@127.0.0.1:1/img2vid",
    f"postgresql+psycopg://:{SECRET}@127.0.0.1:1/img2vid",
    f"postgresql+psycopg://img2vid@127.0.0.1:1/img2vid?password={SECRET}",
    f"postgresql+psycopg//img2vid:{SECRET}@127.0.0.1:1/img2vid",  # malformed
    f"postgresql+nodriver://img2vid:{SECRET}@127.0.0.1:1/img2vid",  # no such driver
]
COMMANDS = {"worker": ["worker"], "serve": ["serve", "--dispatch", "celery"]}


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("url", BROKER_URLS)
def test_an_unreachable_broker_is_one_line_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, url: str, debug: bool
) -> None:
    monkeypatch.setenv("IMG2VID_DATA", str(tmp_path))
    monkeypatch.setenv("IMG2VID_BROKER_URL", url)
    result = CliRunner().invoke(app, COMMANDS[command] + (["--debug"] if debug else []))
    assert result.exit_code == 6, result.output
    assert "cannot reach the broker at " + redact(url) in result.output
    assert SECRET not in result.output


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("url", DATABASE_URLS)
def test_an_unusable_store_is_one_line_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, url: str
) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setenv("IMG2VID_DATA", str(tmp_path))
    monkeypatch.setenv("IMG2VID_DATABASE_URL", url)
    monkeypatch.setenv("IMG2VID_BROKER_URL", BROKER_URLS[0])
    for extra in ([], ["--debug"]):
        result = CliRunner().invoke(app, COMMANDS[command] + extra)
        assert result.exit_code in (2, 6), result.output
        assert "database_url" in result.output or "cannot open the job store" in result.output
        assert SECRET not in result.output


@pytest.mark.parametrize("url", BROKER_URLS)
def test_healthz_and_the_log_around_it_never_show_the_broker_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    from fastapi.testclient import TestClient

    from img2vid.server import ServerSettings, create_app

    install_process_redaction()  # as `img2vid serve` does first
    caplog.set_level(logging.DEBUG)
    app_ = create_app(ServerSettings(data=tmp_path, dispatch="celery", broker_url=url))
    with TestClient(app_) as client:
        app_.state.img2vid.dispatcher.reconciler.run_once()  # a reconcile pass that fails on the broker
        answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["broker"] == "down"
    assert SECRET not in answer.text
    logged = [logging.Formatter().format(record) for record in caplog.records]
    assert not [line for line in logged if SECRET in line]


@pytest.mark.services
@pytest.mark.live
@pytest.mark.parametrize("user", ["", "default"], ids=["no-user", "user"])
def test_a_worker_and_a_front_end_never_log_their_redis_password(tmp_path: Path, user: str) -> None:
    """Celery prints the broker in its banner and in every reconnect error: with a password-protected Redis
    that goes away, neither the worker's nor the front end's output shows the password."""
    with RedisServer(password=SECRET) as redis:
        broker = f"redis://{user}:{SECRET}@127.0.0.1:{redis.port}/0"
        cluster = Cluster(folder=tmp_path, database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}", broker_url=broker)
        try:
            (fe,), (worker,) = cluster.start(front_ends=1, workers=1)
            redis.stop()
            wait_for(
                lambda: "Cannot connect to" in worker.log_text() or "Connection to broker lost" in worker.log_text(),
                timeout=30,
                what="the worker to log the lost broker",
                logs=[worker.log],
            )
            health = httpx.get(fe.url + "/healthz", timeout=10)
            assert SECRET not in health.text
            for log in cluster.logs:
                text = log.read_text(errors="replace")
                assert SECRET not in text, f"{log.name}:\n{text}"
            assert f"redis://{user}:**@127.0.0.1:{redis.port}" in worker.log_text()  # Celery's banner, masked
        finally:
            cluster.close()
