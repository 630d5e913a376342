"""``img2vid serve`` and ``img2vid keys``: a bad setting, as an option or a variable, is a plain error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")

from img2vid.cli import app  # noqa: E402


def test_an_out_of_range_serve_option_is_exit_code_2_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--data", str(tmp_path), "--workers", "100"])
    assert result.exit_code == 2, result.output
    assert "workers (IMG2VID_WORKERS) must be less than or equal to 64; got 100" in result.output
    assert "internal error" not in result.output and "Traceback" not in result.output


def test_a_bad_variable_is_exit_code_2_for_the_keys_command_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMG2VID_RATE_LIMIT", "lots")
    result = CliRunner().invoke(app, ["keys", "list", "--data", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "rate_limit (IMG2VID_RATE_LIMIT)" in result.output and "'lots'" in result.output
    assert "internal error" not in result.output


def test_an_empty_database_url_means_the_default_file_whose_folder_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMG2VID_DATABASE_URL", "")
    data = tmp_path / "not" / "yet"
    result = CliRunner().invoke(app, ["keys", "create", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert (data / "jobs.sqlite3").is_file()


@pytest.mark.parametrize(
    ("url", "code", "words"),
    [
        ("nonsense", 2, "database_url (IMG2VID_DATABASE_URL) cannot be used"),
        ("postgres2://user:hunter22@db/jobs", 2, "database_url (IMG2VID_DATABASE_URL) cannot be used"),
        ("postgresql+psycopg://user:hunter22@127.0.0.1:1/jobs", 6, "cannot open the job store"),
    ],
)
def test_a_bad_or_unreachable_database_is_a_plain_error_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, code: int, words: str
) -> None:
    if url.startswith("postgresql+psycopg"):
        pytest.importorskip("psycopg")
    monkeypatch.setenv("IMG2VID_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["keys", "list", "--data", str(tmp_path)])
    assert result.exit_code == code, result.output
    assert words in result.output and "hunter22" not in result.output


def test_create_app_reads_the_environment_with_the_same_plain_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from img2vid.errors import InvalidInputError
    from img2vid.server import create_app

    monkeypatch.setenv("IMG2VID_RESULT_TTL", "-5")
    with pytest.raises(InvalidInputError) as info:
        create_app()
    assert info.value.field == "result_ttl" and "IMG2VID_RESULT_TTL" in str(info.value)


def test_the_settings_repr_never_shows_the_database_url() -> None:
    from img2vid.jobs.settings import ServerSettings

    settings = ServerSettings(database_url="postgresql+psycopg://img2vid:hunter22@db/jobs")
    assert "hunter22" not in repr(settings) and "hunter22" not in str(settings)


def test_serve_leaves_no_log_handler_or_level_behind_when_it_returns(tmp_path: Path) -> None:
    """A process that runs ``serve`` and goes on (a test run, a host that embeds the CLI) must not keep a
    handler bound to a stream that is closed by then: a later log line would be a 'Logging error'."""
    import logging

    logger = logging.getLogger("img2vid")
    before = (list(logger.handlers), logger.level)
    result = CliRunner().invoke(app, ["serve", "--data", str(tmp_path), "--model", str(tmp_path / "missing-model")])
    assert result.exit_code != 0 and "missing-model" in result.output
    assert (list(logger.handlers), logger.level) == before
    logging.getLogger("img2vid.engines.remote").warning("a later line")  # no 'Logging error' on a closed stream
