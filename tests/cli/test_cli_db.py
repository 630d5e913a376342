"""``img2vid db current`` and ``img2vid db upgrade``: where a store stands, and bringing an old one up."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("alembic")

from img2vid.cli import app  # noqa: E402
from img2vid.jobs import migrate  # noqa: E402
from support.old_stores import build_old_store  # noqa: E402


def test_an_old_store_is_recognised_then_upgraded_once(tmp_path: Path) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["db", "current", "--data", str(tmp_path / "empty")])
    assert empty.exit_code == 0 and empty.stdout.strip() == "none"

    build_old_store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", "leases", 1_700_000_000.0)
    current = runner.invoke(app, ["db", "current", "--data", str(tmp_path)])
    assert current.exit_code == 0 and current.stdout.strip() == "0002"
    assert "img2vid db upgrade" in current.stderr

    upgraded = runner.invoke(app, ["db", "upgrade", "--data", str(tmp_path)])
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stdout.strip() == migrate.HEAD and f"from revision 0002 to {migrate.HEAD}" in upgraded.stderr
    again = runner.invoke(app, ["db", "upgrade", "--data", str(tmp_path)])
    assert again.exit_code == 0 and "already at revision" in again.stderr
    assert runner.invoke(app, ["db", "current", "--data", str(tmp_path)]).stdout.strip() == migrate.HEAD
