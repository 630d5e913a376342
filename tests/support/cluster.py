"""A scaled-out img2vid on this machine, for the scale-out tests: front ends (``img2vid serve --dispatch
celery``) and workers (``img2vid worker``) as real subprocesses that share one PostgreSQL database and one
Redis database, running the step engine (tests/support/step_engine.py) so no model is needed.

Every process of a :class:`Cluster` writes its log to the cluster's folder (shown when a wait fails), and
every engine event goes to one step log, so a test can tell which process started, stepped, finished or
was cancelled on which seed. Processes start in parallel (``start`` returns at once; ``wait_ready`` waits),
because each one pays a couple of seconds of imports. Nothing here sleeps for a fixed time: waits poll a
condition every few hundredths of a second, up to a bound that only a broken cluster reaches.
"""

from __future__ import annotations

import itertools
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from img2vid.jobs.store import JobStore, jobs
from img2vid.request import VideoRequest
from img2vid.server.keys import create_key
from img2vid.video import Video

from .fake_engine import assert_same_frames, expected_frames
from .images import png_bytes
from .server_harness import free_port, submit, subprocess_env, wait_healthy
from .services import PostgresServer

__all__ = [
    "Cluster",
    "Step",
    "FrontEnd",
    "WorkerProcess",
    "wait_for",
    "STEP_ENGINE",
    "IMAGE",
    "assert_video",
    "start_job",
    "new_database",
    "redis_db_url",
]

STEP_ENGINE = "support.step_engine:from_env"
#: Redis has 16 numbered databases; each cluster on a shared Redis server takes its own (0 is left alone).
_REDIS_DBS = itertools.cycle(range(1, 16))

T = TypeVar("T")

#: The first frame every job of these tests animates.
IMAGE = png_bytes(1024, 576)


def start_job(client: httpx.Client, key: str, seed: int, **fields: Any) -> str:
    """Submit a job with ``seed`` (and any other form fields); its id."""
    answer = submit(client, key, image=IMAGE, seed=seed, **fields)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def assert_video(answer: httpx.Response, seed: int) -> None:
    """``answer`` is the finished video the step engine makes for ``seed`` (the same on every worker)."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["seed"] == str(seed)
    expected = expected_frames(VideoRequest(image=IMAGE, seed=seed, cfg_scale=1.8, motion_bucket_id=127))
    assert_same_frames(Video.from_bytes(answer.content).frames, expected)


def wait_for(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.03, logs: Iterable[Path] = ()) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail naming ``what`` (and
    showing the tails of ``logs``) after ``timeout`` seconds, a bound only a broken cluster reaches."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}:\n{_tail(log)}" for log in logs)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{tails}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def redis_db_url(server_url: str) -> str:
    """``server_url`` (``redis://host:port/0``) pointed at a Redis database no other cluster uses."""
    return server_url.rsplit("/", 1)[0] + f"/{next(_REDIS_DBS)}"


def new_database(server: PostgresServer) -> str:
    """A fresh, empty database on ``server``; its URL."""
    from sqlalchemy import create_engine, text

    name = f"cluster_{secrets.token_hex(4)}"
    admin = create_engine(server.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@dataclass(frozen=True)
class Step:
    """One line of the step log: ``event`` is start, step, done or cancelled."""

    event: str
    pid: int
    seed: int
    step: int


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and reap it (a crash, as far as the rest of the cluster can tell)."""
        if self.alive:
            self.popen.kill()
        self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a clean stop, as systemd's ``stop`` sends) and wait for the exit."""
        if self.alive:
            self.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class FrontEnd(_Process):
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **options)

    def wait_ready(self, timeout: float = 120.0) -> FrontEnd:
        wait_healthy(self.url, self.popen, timeout=timeout, log=self.log)
        return self


@dataclass
class WorkerProcess(_Process):
    def ready(self) -> bool:
        """Whether Celery is consuming (it logs "<hostname> ready.")."""
        if not self.alive:
            raise AssertionError(f"worker {self.name} exited with {self.popen.returncode}:\n{_tail(self.log)}")
        return " ready." in self.log_text()

    def wait_ready(self, timeout: float = 120.0) -> WorkerProcess:
        wait_for(self.ready, timeout=timeout, what=f"worker {self.name} to consume", logs=[self.log])
        return self


@dataclass
class Cluster:
    """Front ends and workers on ``database_url`` and ``broker_url``, with the step engine.

    ``lease_seconds`` is short so that a stopped or killed worker's job is handed on within seconds; the
    step engine's length is ``step_count`` steps of ``step_seconds`` (a request's ``steps`` field wins).
    Processes are known by name; :meth:`restart` starts a new process under a name whose process ended
    (a front end on the same port), and :meth:`supervised` does that in a loop, as systemd's
    ``Restart=always`` would.
    """

    folder: Path
    database_url: str
    broker_url: str
    lease_seconds: float = 2.0
    step_seconds: float = 0.1
    step_count: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Variables for one named process only (a worker under libfaketime), kept across its restarts.
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Extra command-line options for one named process only (``--model svd=tiny``), kept across its restarts.
    process_args: dict[str, list[str]] = field(default_factory=dict)
    processes: list[_Process] = field(default_factory=list)
    current: dict[str, _Process] = field(default_factory=dict)
    _store: JobStore | None = None

    @property
    def step_log(self) -> Path:
        return self.folder / "steps.log"

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(
            IMG2VID_DATABASE_URL=self.database_url,
            IMG2VID_BROKER_URL=self.broker_url,
            IMG2VID_DATA=str(self.folder / "data"),
            IMG2VID_ENGINE_FACTORY=STEP_ENGINE,
            IMG2VID_LEASE_SECONDS=str(self.lease_seconds),
            IMG2VID_STEP_LOG=str(self.step_log),
            IMG2VID_STEP_SECONDS=str(self.step_seconds),
            IMG2VID_STEP_COUNT=str(self.step_count),
            IMG2VID_RATE_LIMIT="0",
            IMG2VID_CONFIG=str(self.folder / "config.toml"),
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
            **self.extra_env,
            **extra,
        )

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, args: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        # Each process gets a log of its own: a restarted worker's "ready" must be its own.
        log = self.folder / f"{name}.log"
        for run in itertools.count(2):
            if not log.exists():
                break
            log = self.folder / f"{name}.{run}.log"
        with open(log, "wb") as out:
            env = self.env(**self.process_env.get(name, {}))
            popen = subprocess.Popen([sys.executable, "-m", "img2vid", *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        return popen, log

    def front_end(self, name: str, *, port: int | None = None, args: list[str] | None = None) -> FrontEnd:
        """Start ``img2vid serve --dispatch celery`` (returns at once; call ``wait_ready``); ``args``: more
        options for this front end alone (``--model wan=tiny-wan2.2-ti2v-5b``), kept for its restarts."""
        if args is not None:
            self.process_args[name] = list(args)
        port = port or free_port()
        extra = self.process_args.get(name, [])
        popen, log = self._spawn(name, ["serve", "--dispatch", "celery", "--port", str(port), "--log-level", "warning", *extra])
        process = FrontEnd(name=name, popen=popen, log=log, port=port)
        self.processes.append(process)
        self.current[name] = process
        return process

    def worker(self, name: str, *, env: dict[str, str] | None = None, args: list[str] | None = None) -> WorkerProcess:
        """Start ``img2vid worker --name name`` (returns at once; call ``wait_ready``); ``env`` and ``args``
        (``--model wan=tiny-wan2.2-ti2v-5b``): variables and options for this worker alone, kept for its restarts."""
        if env is not None:
            self.process_env[name] = env
        if args is not None:
            self.process_args[name] = list(args)
        popen, log = self._spawn(name, ["worker", "--name", name, "--log-level", "INFO", *self.process_args.get(name, [])])
        process = WorkerProcess(name=name, popen=popen, log=log)
        self.processes.append(process)
        self.current[name] = process
        return process

    def restart(self, name: str) -> _Process:
        """A new process under ``name`` (its last one must have ended): a front end keeps its port."""
        last = self.current[name]
        assert not last.alive, f"{name} is still running"
        if isinstance(last, FrontEnd):
            return self.front_end(name, port=last.port)
        return self.worker(name)

    def start(self, *, front_ends: int = 1, workers: int = 1) -> tuple[list[FrontEnd], list[WorkerProcess]]:
        """Start front ends ``fe1..`` and workers ``w1..`` all at once; return when all are ready."""
        fes = [self.front_end(f"fe{index + 1}") for index in range(front_ends)]
        wks = [self.worker(f"w{index + 1}") for index in range(workers)]
        for process in [*fes, *wks]:
            process.wait_ready()
        return fes, wks

    @property
    def workers(self) -> list[WorkerProcess]:
        return [process for process in self.current.values() if isinstance(process, WorkerProcess)]

    def worker_with_pid(self, pid: int) -> WorkerProcess:
        return next(process for process in self.processes if isinstance(process, WorkerProcess) and process.pid == pid)

    @contextmanager
    def supervised(self, names: Iterable[str]) -> Iterator[list[_Process]]:
        """While inside, a process of ``names`` that ends is started again at once (systemd's
        ``Restart=always``); yields the list of restarts, in order."""
        names = list(names)
        restarts: list[_Process] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.05):
                for name in names:
                    if not self.current[name].alive:
                        restarts.append(self.restart(name))

        thread = threading.Thread(target=watch, name="supervisor", daemon=True)
        thread.start()
        try:
            yield restarts
        finally:
            stop.set()
            thread.join(5)

    def settle(self) -> None:
        """Every worker consuming (a stopped one continued, a dead one restarted) and nothing queued or
        running: the state each cluster test starts from."""
        for worker in self.workers:
            if worker.alive:
                worker.signal(signal.SIGCONT)
            else:
                self.restart(worker.name)
        for worker in self.workers:
            worker.wait_ready()
        self.wait_for(lambda: self.store.counts()["queued"] + self.store.counts()["running"] == 0, what="no active jobs")

    def close(self) -> None:
        """Kill every process and close the store. Nothing is checked after this, and a clean stop would
        cost seconds per process (an idle Celery worker's warm shutdown alone takes about four)."""
        for process in self.processes:
            process.kill()
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def logs(self) -> list[Path]:
        return [process.log for process in self.current.values()]

    # ------------------------------------------------------------------ what happened

    @property
    def store(self) -> JobStore:
        """The cluster's store, opened in the test process, to read what the processes recorded."""
        if self._store is None:
            self._store = JobStore(self.database_url)
        return self._store

    def key(self, name: str = "test") -> str:
        return create_key(self.store, name)[0]

    def row(self, job_id: str) -> dict[str, Any]:
        """A job's stored columns (without the image and the result)."""
        wanted = [c for c in jobs.columns if c.name not in ("image", "result")]
        with self.store.engine.connect() as conn:
            found = conn.execute(select(*wanted).where(jobs.c.id == job_id)).mappings().first()
        assert found is not None, f"job {job_id} is not in the store"
        return dict(found)

    def job_count(self) -> int:
        return sum(self.store.counts().values())

    def steps(self) -> list[Step]:
        if not self.step_log.exists():
            return []
        found = []
        for line in self.step_log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:  # a line being written right now is skipped until it is whole
                found.append(Step(parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
        return found

    def events(self, event: str, seed: int) -> list[Step]:
        return [step for step in self.steps() if step.event == event and step.seed == seed]

    def wait_for(self, condition: Callable[[], T], *, what: str, timeout: float = 60.0) -> T:
        return wait_for(condition, timeout=timeout, what=what, logs=self.logs)
