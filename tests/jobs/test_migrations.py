"""The store's schema revisions on SQLite: a new store is made by them, every earlier version's store is
recognised, stamped and upgraded without loss, and the queries' tables match the head revision."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from img2vid.jobs import migrate
from img2vid.jobs.schema import metadata
from img2vid.jobs.store import JobStore
from support.old_stores import RELEASES
from support.upgrades import check_upgrade


def test_head_is_the_newest_revision_alembic_knows() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(migrate.__file__).parent / "migrations"))
    assert script.get_current_head() == migrate.HEAD


def test_a_new_store_made_by_the_revisions_has_the_tables_the_queries_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    JobStore(url).close()
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        for table in metadata.sorted_tables:
            found = {column["name"]: column["nullable"] for column in inspector.get_columns(table.name)}
            assert found == {column.name: column.nullable for column in table.columns}, table.name
            indexes = {index["name"] for index in inspector.get_indexes(table.name)}
            assert {index.name for index in table.indexes} <= indexes, table.name
        assert migrate.current(engine) == migrate.HEAD
    finally:
        engine.dispose()


@pytest.mark.parametrize(("release", "revision"), list(RELEASES.items()))
def test_a_store_of_each_earlier_version_is_upgraded_with_every_key_job_and_result(
    tmp_path: Path, release: str, revision: str
) -> None:
    check_upgrade(f"sqlite:///{tmp_path / 'old.sqlite3'}", release, revision)
