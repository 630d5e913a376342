"""Real Redis and PostgreSQL servers for tests, each started on a free port in its own temporary folder,
from the binaries on the machine, so a test can stop, kill or restart it.

PostgreSQL's ``initdb`` refuses to run as root: when the tests run as root, the server runs as the
``postgres`` system user (present wherever the PostgreSQL packages are installed). Each class is a context
manager; ``stop()`` / ``start()`` in between simulate an outage on the same port and data.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from .server_harness import free_port


def _wait_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def _binary(name: str, *folders: str) -> str:
    for folder in folders:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed on this machine")
    return found


class RedisServer:
    """``redis-server`` with no persistence: a restart loses every message, as a crashed broker does.
    ``password`` sets ``requirepass`` (its clients then need ``redis://:password@host``)."""

    def __init__(self, *, password: str | None = None) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="img2vid-redis-"))
        self.binary = _binary("redis-server")
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
            + (["--requirepass", self.password] if self.password else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, 10, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL cluster of its own (trust auth on 127.0.0.1), with database ``img2vid``."""

    BIN_FOLDERS = [str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="img2vid-pg-"))
        self.folder.chmod(0o755)
        self.data = self.folder / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("PostgreSQL cannot run as root and there is no 'postgres' user")
            self.user = "postgres"
            shutil.chown(self.folder, user="postgres")
        self.initdb = _binary("initdb", *self.BIN_FOLDERS)
        self.pg_ctl = _binary("pg_ctl", *self.BIN_FOLDERS)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://img2vid@127.0.0.1:{self.port}/img2vid"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = list(args)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "img2vid", "--no-sync", "-E", "UTF8")
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.folder}'\n")
                conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n")
            self._pg_ctl("start")
            self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "img2vid", "-d", "postgres", "-q", "-c", "CREATE DATABASE img2vid")
        else:
            self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        extra = ["-m", "immediate"] if action == "stop" else ["-w", "-l", str(self.folder / "log")]
        self._run(self.pg_ctl, "-D", str(self.data), *extra, action)
        if action == "start":
            _wait_port(self.port, 30)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop")

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
