"""``img2vid serve`` as a subprocess for the browser tests, with the holding engine, that a test can stop and
start again on the same port and data folder (a restart mid-job)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.server_harness import create_key_direct, free_port, subprocess_env, wait_healthy

HERE = Path(__file__).resolve().parent


class Server:
    """``img2vid serve`` on a fixed port, so that a restart keeps the page's URL: with the holding engine, or
    with ``models`` (``NAME=SOURCE`` each, ``--model`` repeated) the real local engine's tiny models."""

    def __init__(self, data: Path, models: tuple[str, ...] = (), **env: str) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hold = data / "hold"
        self.models = models
        engine = {} if models else {"IMG2VID_ENGINE_FACTORY": "holding_engine:from_env", "IMG2VID_STEP_HOLD": str(self.hold)}
        self.env = subprocess_env(**engine, **env)
        self.env["PYTHONPATH"] += os.pathsep + str(HERE)
        self.process: subprocess.Popen[bytes] | None = None
        self.key = create_key_direct(data, "browser")

    def start(self) -> None:
        log = open(self.data / "server.log", "ab")  # noqa: SIM115 - the child holds it; closed in stop()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "img2vid", "serve", "--port", str(self.port), "--data", str(self.data)),
                *("--log-level", "warning"),
                *(arg for model in self.models for arg in ("--model", model)),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_healthy(self.url, self.process, timeout=180 if self.models else 60, log=self.data / "server.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def job_count(self) -> int:
        """Jobs in the store, whatever their state: what "one click is one job" is checked against."""
        from img2vid.jobs.settings import ServerSettings
        from img2vid.jobs.store import JobStore

        store = JobStore(ServerSettings(data=self.data).store_url())
        try:
            return sum(store.counts().values())
        finally:
            store.close()
