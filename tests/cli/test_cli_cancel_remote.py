"""``img2vid cancel ID`` against the scripted protocol server.

What a shell user relies on: the server and key are found as ``img2vid generate`` finds them (``--engine``,
then the environment, then the config file); one line on success; an exit code per outcome (0 cancelled,
2 already finished, 4 no such job, 6 unreachable); the key never printed.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from img2vid.cli import app
from support.clock import use_fake_clock
from support.fake_protocol import JOB_ID, FakeProtocolServer, error

KEY = "sk-cli-cancel-0a1b2c3d4e5f60718293"


@pytest.fixture
def cli(fake_protocol_server: FakeProtocolServer, monkeypatch: pytest.MonkeyPatch):
    use_fake_clock(monkeypatch, fake_protocol_server)

    def run(*args: str):
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def configured(fake_protocol_server: FakeProtocolServer, monkeypatch: pytest.MonkeyPatch) -> FakeProtocolServer:
    monkeypatch.setenv("IMG2VID_BASE_URL", fake_protocol_server.url)
    monkeypatch.setenv("IMG2VID_API_KEY", KEY)
    return fake_protocol_server


def test_cancel_sends_delete_with_the_key_and_prints_one_line(cli, configured: FakeProtocolServer) -> None:
    result = cli("cancel", JOB_ID)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"job {JOB_ID} cancelled"]
    (cancel,) = configured.cancels
    assert (cancel.method, cancel.path) == ("DELETE", f"/v2beta/image-to-video/result/{JOB_ID}")
    assert cancel.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in result.output


@pytest.mark.parametrize(
    ("answer", "code", "says"),
    [
        (error(404, "not_found"), 4, "was not found"),
        (error(409, "conflict", "the job already succeeded"), 2, "already finished"),
        (error(401, "unauthorized"), 3, "refused the API key"),
        (error(405, "method_not_allowed"), 6, "does not offer cancelling jobs"),
    ],
)
def test_each_refusal_is_its_exit_code_and_plain_lines(
    cli, configured: FakeProtocolServer, answer, code: int, says: str
) -> None:
    configured.cancel(answer)
    result = cli("cancel", "job-7")
    assert result.exit_code == code
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: ") and says in lines[0]
    assert result.stdout == "" and "Traceback" not in result.output and KEY not in result.output


def test_an_unreachable_server_exits_6(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("IMG2VID_API_KEY", KEY)
    result = cli("cancel", JOB_ID, "--engine", f"http://127.0.0.1:{port}")
    assert result.exit_code == 6 and "could not cancel job" in result.stderr


def test_engine_option_wins_over_the_environment(cli, fake_protocol_server: FakeProtocolServer, monkeypatch) -> None:
    monkeypatch.setenv("IMG2VID_BASE_URL", "http://127.0.0.1:9")  # nothing there
    result = cli("cancel", JOB_ID, "--engine", fake_protocol_server.url)
    assert result.exit_code == 0 and len(fake_protocol_server.cancels) == 1


def test_server_and_key_come_from_the_config_file(
    cli, fake_protocol_server: FakeProtocolServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'base_url = "{fake_protocol_server.url}"\napi_key = "{KEY}"\n')
    monkeypatch.setenv("IMG2VID_CONFIG", str(config))
    result = cli("cancel", JOB_ID)
    assert result.exit_code == 0
    assert fake_protocol_server.cancels[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--engine", "local"], "talks to an img2vid server"),
        (["--engine", "stability"], "offers no way to cancel"),
        ([], "offers no way to cancel"),  # nothing configured: Stability's URL, which has no cancel
    ],
)
def test_no_server_to_cancel_on_exits_2_saying_where_to_set_one(cli, args: list[str], says: str) -> None:
    result = cli("cancel", JOB_ID, *args)
    assert result.exit_code == 2 and says in result.stderr and "IMG2VID_BASE_URL" in result.stderr


def test_an_id_that_is_not_one_exits_2_naming_it(cli, configured: FakeProtocolServer) -> None:
    result = cli("cancel", "../keys")
    assert result.exit_code == 2 and "id must be" in result.stderr
    assert configured.requests == []



def _submitted_ids(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The job ids the engine logged as submitted, in order."""
    found = (re.match(r"job (\S+) submitted to ", r.getMessage()) for r in caplog.records if r.name == "img2vid.remote")
    return [match.group(1) for match in found if match]


@pytest.mark.live
def test_against_a_live_server_both_sides_of_cancel_agree(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The client's DELETE and the server's answers to it: 200 then 410 on the result, 409, 404."""
    from img2vid import VideoRequest, errors
    from img2vid.engines.remote import RemoteEngine
    from support.server_harness import create_key_direct, live_server

    caplog.set_level(logging.INFO, logger="img2vid.remote")
    key = create_key_direct(tmp_path)
    # A step engine whose job takes 2 s: long enough to be stopped while it runs, short enough to finish.
    env = {"IMG2VID_ENGINE_FACTORY": "support.step_engine:from_env", "IMG2VID_STEP_SECONDS": "0.1",
           "IMG2VID_STEP_COUNT": "20"}  # fmt: skip
    request = VideoRequest(image=np.zeros((576, 1024, 3), dtype=np.uint8), seed=3)
    with live_server(tmp_path, env=env) as server, RemoteEngine(server.url, key, poll_interval=0.1) as engine:
        stop = threading.Event()

        def stop_once_running(fraction: float | None, text: str) -> None:
            if text.startswith("running on the server"):
                stop.set()

        with pytest.raises(errors.CancelledError):
            engine.generate(request, progress=stop_once_running, cancel=stop.is_set)
        engine.generate(request)  # a job that finishes
        stopped, finished = _submitted_ids(caplog)
        with server.client(headers={"authorization": f"Bearer {key}"}) as client:
            gone = client.get(f"/v2beta/image-to-video/result/{stopped}")
        cli = CliRunner()
        args = ["--engine", server.url]
        again = cli.invoke(app, ["cancel", stopped, *args], env={"IMG2VID_API_KEY": key}, catch_exceptions=False)
        late = cli.invoke(app, ["cancel", finished, *args], env={"IMG2VID_API_KEY": key}, catch_exceptions=False)
        unknown = cli.invoke(app, ["cancel", "f" * 64, *args], env={"IMG2VID_API_KEY": key}, catch_exceptions=False)
    assert gone.status_code == 410 and gone.json()["name"] == "cancelled"  # the engine's DELETE took
    assert again.exit_code == 0 and again.stdout.strip() == f"job {stopped} cancelled"
    assert late.exit_code == 2 and "already finished" in late.stderr
    assert unknown.exit_code == 4 and "was not found" in unknown.stderr
    assert key not in again.output + late.output + unknown.output
