"""The embedded server's SQLite store becomes unwritable while a job runs (issue 10, "What must hold" 8,
embedded mode): a submit then answers 503 ``store_unavailable`` at once, the worker keeps its result and
retries until its lease is surely gone, and once the file can be written again the job is re-queued and
run again; nothing stays running forever (before the lease rules, such a job answered 202 for ever).

Making the file read-only with ``chmod`` proves nothing here: root ignores file modes, and the server's
pooled connections keep their open descriptors anyway. The file is made immutable instead (``chattr +i``,
which binds root too): SQLite then fails every write, on open connections ("disk I/O error") and new ones
("attempt to write a readonly database"), while reads go on. Only the database and its WAL are made
immutable, never the ``-shm`` file, which SQLite maps into memory (a write to it would kill the process with
SIGBUS). Skipped where ``chattr +i`` is refused (no CAP_LINUX_IMMUTABLE, or a file system without it).
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.cluster import IMAGE, assert_video, wait_for
from support.server_harness import submit, wait_result
from support.step_engine import StepEngine

pytestmark = pytest.mark.live


def _chattr(flag: str, *paths: Path) -> bool:
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True)
    return done.returncode == 0


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """The files cannot be written, by anyone, until the block ends."""
    assert _chattr("+i", *paths)
    try:
        yield
    finally:
        assert _chattr("-i", *paths)


@pytest.fixture
def can_freeze_files(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    try:
        if not _chattr("+i", probe):
            pytest.skip("chattr +i is refused here (it needs root's CAP_LINUX_IMMUTABLE and ext4, xfs or btrfs)")
    except FileNotFoundError:
        pytest.skip("chattr is not installed")
    _chattr("-i", probe)


def test_an_unwritable_sqlite_store_is_a_503_and_the_running_job_finishes_when_it_is_back(
    tmp_path: Path, can_freeze_files: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="img2vid.jobs")
    log = tmp_path / "steps.log"
    settings = ServerSettings(data=tmp_path, lease_seconds=3.0, status_cache_seconds=0, rate_limit=0)
    app = create_app(settings, engine=StepEngine(step_seconds=0.3, steps=4, log=str(log)))
    database = tmp_path / "jobs.sqlite3"
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        answer = submit(client, key, image=IMAGE, seed=851)
        job_id = answer.json()["id"]
        # Freeze the store once the job is under way: it ends 0.6-0.9 s later, well inside its lease.
        wait_for(lambda: log.exists() and "step" in log.read_text(), timeout=30, what="the job's first step")
        with immutable(database, database.with_name("jobs.sqlite3-wal")):
            started = time.monotonic()
            refused = submit(client, key, image=IMAGE, seed=852)
            elapsed = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            body = refused.json()
            assert body["name"] == "store_unavailable" and set(body) == {"id", "name", "errors"}
            assert elapsed < 2.0, f"the 503 took {elapsed:.1f} s"
            # The worker holds its result and retries, with growing pauses, until its lease is surely gone.
            gave_up = "the store stayed unreachable for a whole lease"
            wait_for(lambda: _messages(caplog, gave_up), timeout=30, what="the worker to give the job up")
            delays = [float(m.rsplit(" ", 2)[-2]) for m in _messages(caplog, "store is unreachable; retrying in")]
            assert len(delays) >= 2 and delays == sorted(delays) and delays[-1] > delays[0], delays
            # While it lasts, each retry, heartbeat and claim is one line, not a traceback.
            assert _messages(caplog, "heartbeat failed (StoreUnavailableError)")
            assert not [record for record in caplog.records if record.exc_info]
            assert app.state.img2vid.store.status(job_id).status == "running"  # reads go on
        # Writable again: the job whose lease ran out is re-queued and run again from its stored inputs.
        assert_video(wait_result(client, key, job_id, timeout=60), 851)
        assert log.read_text().count("start") == 2
        assert sum(app.state.img2vid.store.counts().values()) == 1  # the refused submit left nothing
        assert "852" not in log.read_text()


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if text in record.getMessage()]
