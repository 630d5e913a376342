"""The server's edges: a client that goes away mid-upload is one INFO line in the log, never a traceback;
a method a path does not serve is a 405 whose ``Allow`` lists every method the path does serve."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from img2vid.server import ServerSettings, create_app
from support.fake_engine import FakeEngine
from support.server_harness import V2ALPHA, V2BETA, create_key_direct, live_server

FAKE = {"IMG2VID_ENGINE_FACTORY": "support.fake_engine:from_env"}
JOB_ID = "0" * 64


def _upload_then_hang_up(url: str, key: str, *, declared: int, sent: int) -> None:
    """Send a submit's headers declaring ``declared`` bytes, then ``sent`` bytes of body, then close."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "edgesboundary"
    head = (
        f"POST {V2BETA} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n"
        f"content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {declared}\r\n\r\n"
    ).encode()
    part = f'--{boundary}\r\ncontent-disposition: form-data; name="image"; filename="a.png"\r\ncontent-type: image/png\r\n\r\n'
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + part.encode() + b"\x89PNG" + b"\0" * (sent - len(part) - 4))
        time.sleep(0.3)  # the server is now waiting for the rest


@pytest.mark.live
def test_a_client_that_hangs_up_mid_upload_is_one_info_line_and_no_traceback(tmp_path: Path) -> None:
    key = create_key_direct(tmp_path)
    with live_server(tmp_path, args=("--log-level", "info"), env=FAKE) as server:
        _upload_then_hang_up(server.url, key, declared=5_000_000, sent=200_000)
        log = server.data / f"server-{server.url.rsplit(':', 1)[1]}.log"
        deadline = time.monotonic() + 10
        while "disconnected" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.05)
        with server.client() as client:
            assert client.get("/healthz").status_code == 200  # and the server is none the worse
        time.sleep(0.3)  # anything else it logs about that request is written by now
        text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if "disconnected" in line]
    assert len(lines) == 1 and " INFO " in lines[0] and V2BETA in lines[0], text
    assert "Traceback" not in text and "ERROR" not in text and "Exception in ASGI application" not in text, text


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = create_app(ServerSettings(data=tmp_path_factory.mktemp("edges"), auth=False), engine=FakeEngine())
    return TestClient(app)


@pytest.mark.parametrize("prefix", [V2BETA, V2ALPHA], ids=["v2beta", "v2alpha"])
@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
def test_a_405_on_a_result_path_allows_get_and_delete(client: TestClient, prefix: str, method: str) -> None:
    answer = client.request(method, f"{prefix}/result/{JOB_ID}")
    assert answer.status_code == 405
    assert sorted(part.strip() for part in answer.headers["allow"].split(",")) == ["DELETE", "GET"]
    assert answer.json()["name"] == "method_not_allowed"


@pytest.mark.parametrize("prefix", [V2BETA, V2ALPHA], ids=["v2beta", "v2alpha"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_405_on_a_submit_path_allows_post(client: TestClient, prefix: str, method: str) -> None:
    answer = client.request(method, prefix)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


def test_a_405_on_healthz_allows_get(client: TestClient) -> None:
    answer = client.post("/healthz")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"
