"""Keys: both header forms, isolation between keys (another key's job is an unknown job), revocation,
the per-key rate limit, and the keys command line (the key printed once, stored only as a hash)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.fake_engine import FakeEngine
from support.images import png_bytes
from support.server_harness import V2ALPHA, V2BETA, auth, create_key_cli, submit, subprocess_env, wait_result


@pytest.fixture
def app_and_client(tmp_path: Path) -> Iterator[tuple[object, TestClient]]:
    app = create_app(ServerSettings(data=tmp_path, key_cache_seconds=0, rate_limit=0), engine=FakeEngine())
    with TestClient(app) as client:
        yield app, client


def _image_part() -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("i.png", png_bytes(1024, 576), "image/png")}


@pytest.mark.parametrize("route", [V2BETA, V2ALPHA])
@pytest.mark.parametrize("headers", [{}, {"authorization": ""}, {"authorization": "Bearer "}, {"authorization": "Bearer sk-wrong"}, {"authorization": "sk-wrong"}])
def test_missing_or_wrong_key_is_401_with_the_error_body(app_and_client, route: str, headers: dict[str, str]) -> None:
    app, client = app_and_client
    for answer in (
        client.post(route, headers=headers, files=_image_part()),
        client.get(f"{route}/result/{'0' * 64}", headers=headers),
    ):
        assert answer.status_code == 401
        body = answer.json()
        assert set(body) == {"id", "name", "errors"} and body["name"] == "unauthorized"
    assert app.state.img2vid.store.counts()["queued"] == 0


def test_bearer_and_bare_key_are_both_accepted(app_and_client) -> None:
    app, client = app_and_client
    key, _ = create_key(app.state.img2vid.store, "k")
    for header in (f"Bearer {key}", f"bearer {key}", key):
        answer = client.post(V2BETA, headers={"authorization": header}, files=_image_part())
        assert answer.status_code == 200, answer.text
        job_id = answer.json()["id"]
        assert client.get(f"{V2BETA}/result/{job_id}", headers={"authorization": header}).status_code in (200, 202)


def test_a_key_sees_only_its_own_jobs(app_and_client) -> None:
    app, client = app_and_client
    alice, _ = create_key(app.state.img2vid.store, "alice")
    bob, _ = create_key(app.state.img2vid.store, "bob")
    job_id = submit(client, alice).json()["id"]
    assert wait_result(client, alice, job_id).status_code == 200
    unknown = client.get(f"{V2BETA}/result/{'f' * 64}", headers=auth(bob))
    for route in (V2BETA, V2ALPHA):
        stolen = client.get(f"{route}/result/{job_id}", headers=auth(bob))
        assert stolen.status_code == 404
        # Nothing tells "someone else's" apart from "unknown".
        assert stolen.json()["name"] == unknown.json()["name"]
        assert stolen.json()["errors"] == unknown.json()["errors"]
        assert stolen.headers.get("content-type") == unknown.headers.get("content-type")


def test_a_revoked_key_is_refused(app_and_client) -> None:
    app, client = app_and_client
    store = app.state.img2vid.store
    key, row = create_key(store, "temp")
    job_id = submit(client, key).json()["id"]
    assert [r.name for r in store.revoke_key(row.key_id)] == ["temp"]
    assert client.get(f"{V2BETA}/result/{job_id}", headers=auth(key)).status_code == 401
    assert submit(client, key).status_code == 401


def test_the_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path, rate_limit=3, rate_window=60), engine=FakeEngine())
    with TestClient(app) as client:
        store = app.state.img2vid.store
        noisy, _ = create_key(store, "noisy")
        calm, _ = create_key(store, "calm")
        statuses = [client.get(f"{V2BETA}/result/{'0' * 64}", headers=auth(noisy)).status_code for _ in range(3)]
        assert statuses == [404, 404, 404]
        limited = submit(client, noisy)
        assert limited.status_code == 429
        assert limited.json()["name"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        # The limit is per key.
        assert submit(client, calm).status_code == 200


def test_keys_command_prints_the_key_alone_and_stores_only_its_hash(tmp_path: Path) -> None:
    key = create_key_cli(tmp_path, name="laptop")
    assert key.startswith("sk-img2vid-") and len(key.splitlines()) == 1 and " " not in key
    database = (tmp_path / "jobs.sqlite3").read_bytes()
    wal = tmp_path / "jobs.sqlite3-wal"
    stored = database + (wal.read_bytes() if wal.exists() else b"")
    assert key.encode() not in stored and key[len("sk-img2vid-"):].encode() not in stored
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert [name for (name,) in db.execute("select name from api_keys")] == ["laptop"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "img2vid", "keys", *args, "--data", str(tmp_path)],
            env=subprocess_env(), capture_output=True, text=True, timeout=60,
        )

    # IMG2VID_DATA names the same folder as --data.
    listed = subprocess.run(
        [sys.executable, "-m", "img2vid", "keys", "list"],
        env=subprocess_env(IMG2VID_DATA=str(tmp_path)), capture_output=True, text=True, timeout=60,
    )
    assert listed.returncode == 0 and "laptop" in listed.stdout and key not in listed.stdout + listed.stderr
    assert run("revoke", "nobody").returncode == 4
    revoked = run("revoke", "laptop")
    assert revoked.returncode == 0 and "laptop" in revoked.stderr
    app = create_app(ServerSettings(data=tmp_path), engine=FakeEngine())
    with TestClient(app) as client:
        assert submit(client, key).status_code == 401
