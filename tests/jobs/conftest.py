"""The job-store tests' shared fixture: a fresh SQLite store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from img2vid.jobs.store import JobStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    try:
        yield store
    finally:
        store.close()
