"""Helpers for the server tests and the benchmarks: a live server in a subprocess, the one free-port and
start-up wait that every test, benchmark and service uses, and a plain protocol client written from
PROTOCOL.md (httpx calls only, not img2vid's own client). ``bench/`` imports this module (and
``support.images``) from here: there are no copies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import img2vid

from .images import png_bytes

SRC = str(Path(img2vid.__file__).resolve().parents[1])
TESTS = str(Path(__file__).resolve().parents[1])

V2BETA = "/v2beta/image-to-video"
V2ALPHA = "/v2alpha/generation/image-to-video"
ROUTES = {"v2beta": V2BETA, "v2alpha": V2ALPHA}


def auth(key: str) -> dict[str, str]:
    """The protocol's auth header; no header at all for ``""`` (a server run with ``--no-auth``)."""
    return {"authorization": f"Bearer {key}"} if key else {}


def submit(client: httpx.Client, key: str, *, route: str = V2BETA, image: bytes | None = None, **fields: Any) -> httpx.Response:
    """POST the start request the way the protocol describes it."""
    image = png_bytes(1024, 576) if image is None else image
    data = {name: str(value) for name, value in fields.items()}
    return client.post(route, headers=auth(key), files={"image": ("image.png", image, "image/png")}, data=data)


def wait_result(
    client: httpx.Client, key: str, job_id: str, *, route: str = V2BETA, accept: str | None = None, timeout: float = 30.0
) -> httpx.Response:
    """Poll until the answer is not 202 (no sleeping beyond a short pause between polls)."""
    headers = auth(key)
    if accept is not None:
        headers["accept"] = accept
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"{route}/result/{job_id}", headers=headers)
        if answer.status_code != 202:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still running after {timeout} s")
        time.sleep(0.02)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, TESTS])
    env.update(extra)
    return env


def create_key_cli(data: Path, name: str = "test") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "img2vid", "keys", "create", "--name", name, "--data", str(data)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def create_key_direct(data: Path, name: str = "test") -> str:
    """A key written straight into the store in ``data`` (faster than the CLI, for tests not about it)."""
    from img2vid.jobs.settings import ServerSettings
    from img2vid.jobs.store import JobStore
    from img2vid.server.keys import create_key

    store = JobStore(ServerSettings(data=data).store_url())
    try:
        return create_key(store, name)[0]
    finally:
        store.close()


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    url: str
    data: Path

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **options)


def wait_healthy(url: str, process: subprocess.Popen[bytes], *, timeout: float, log: Path | None = None) -> None:
    """Return once ``url``'s /healthz answers 200; fail at once if ``process`` exits (showing ``log``), or
    after ``timeout`` seconds. The one start-up wait of every test, benchmark and example server."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log is not None and log.exists() else ""
            raise AssertionError(f"the server at {url} exited with {process.returncode}: {text}")
        try:
            if httpx.get(url + "/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the server at {url} did not answer /healthz within {timeout:g} s")
        time.sleep(0.05)


@contextmanager
def live_server(data: Path, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None, start_timeout: float = 90.0) -> Iterator[LiveServer]:
    """``python -m img2vid serve`` on a free port; yields once /healthz answers 200; killed at the end."""
    port = free_port()
    log_path = data / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "img2vid", "serve", "--port", str(port), "--data", str(data), "--log-level", "warning", *args],
        env=subprocess_env(**(env or {})),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, timeout=start_timeout, log=log_path)
        yield LiveServer(process=process, url=url, data=data)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()
