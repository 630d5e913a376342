"""Benchmark of img2vid past one machine: how throughput grows with workers, how soon an idle worker starts
a job, and what polling a Celery-mode front end on PostgreSQL costs against the one-machine server on SQLite.

Everything runs on this machine: a PostgreSQL and a Redis of their own on free ports, one front end
(``img2vid serve --dispatch celery``) and N workers (``img2vid worker``) with a model-free step engine whose
jobs take ``--job-seconds`` (they sleep, so the cores stay free for the machinery being measured). Writes
``bench/results/scale.json`` and prints a summary.

    python bench/scale.py [--workers 1 2 4 8] [--jobs 64] [--job-seconds 0.5] [--poll-seconds 5] [--out FILE]

Figures are ratios against references measured in the same run (N workers against N times one worker;
the PostgreSQL front end against the SQLite one, in alternating rounds), because shared machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from img2vid.jobs.store import JobStore  # noqa: E402
from img2vid.server.keys import create_key  # noqa: E402
from support.images import png_bytes  # noqa: E402
from support.server_harness import auth, free_port, subprocess_env, wait_healthy  # noqa: E402
from support.services import PostgresServer, RedisServer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.json"
SUBMIT = "/v2beta/image-to-video"
#: Encoded once: making a 1 MB PNG per submit would take the cores this benchmark measures.
IMAGE = png_bytes(1024, 576)
STEPS = 5


class Cluster:
    """One store, one broker, one front end; workers come and go between rounds."""

    def __init__(self, stack: ExitStack, folder: Path, job_seconds: float) -> None:
        self.pg = stack.enter_context(PostgresServer())
        self.redis = stack.enter_context(RedisServer())
        self.folder = folder
        self.env = subprocess_env(
            IMG2VID_DATABASE_URL=self.pg.url,
            IMG2VID_BROKER_URL=self.redis.url,
            IMG2VID_ENGINE_FACTORY="support.step_engine:from_env",
            IMG2VID_STEP_SECONDS=str(job_seconds / STEPS),
            IMG2VID_STEP_COUNT=str(STEPS),
            IMG2VID_RATE_LIMIT="0",
            IMG2VID_MAX_QUEUED_PER_KEY="100000",
            IMG2VID_DATA=str(folder / "data"),
        )
        self.store = JobStore(self.pg.url)
        stack.callback(self.store.close)
        self.key = create_key(self.store, "bench")[0]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.front = self._spawn(["serve", "--dispatch", "celery", "--port", str(self.port), "--log-level", "warning"], "front")
        stack.callback(self._stop, self.front)
        wait_healthy(self.url, self.front, timeout=120)
        self.workers: list[subprocess.Popen[bytes]] = []
        self._worker_numbers = itertools.count()

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen([sys.executable, "-m", "img2vid", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def start_workers(self, count: int) -> None:
        names = [f"bench-{next(self._worker_numbers)}" for _ in range(count)]  # a fresh log file each
        for name in names:
            self.workers.append(self._spawn(["worker", "--name", name, "--log-level", "INFO"], name))
        # Ready means consuming: Celery logs "<hostname> ready." once its consumer is connected, seconds
        # after the worker's first presence write when eight of them start on two cores.
        deadline = time.monotonic() + 180
        while not all(" ready." in (self.folder / f"{name}.log").read_text(errors="replace") for name in names):
            if time.monotonic() > deadline:
                raise SystemExit("workers did not start")
            time.sleep(0.2)

    def stop_workers(self) -> None:
        for process in self.workers:
            self._stop(process)
        self.workers.clear()

    def submit(self, client: httpx.Client, seed: int) -> str:
        files = {"image": ("i.png", IMAGE, "image/png")}
        answer = client.post(SUBMIT, headers=auth(self.key), files=files, data={"seed": str(seed)})
        answer.raise_for_status()
        return str(answer.json()["id"])

    def wait_done(self, ids: list[str], timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.store.counts()
            if counts["queued"] == 0 and counts["running"] == 0:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"jobs did not finish: {counts}")
            time.sleep(0.1)

    def times(self, ids: list[str]) -> list[tuple[float, float, float]]:
        """(created, started, finished) of each job, from the store."""
        from sqlalchemy import select

        from img2vid.jobs.store import jobs

        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.created_at, jobs.c.started_at, jobs.c.finished_at, jobs.c.status).where(jobs.c.id.in_(ids))
            ).all()
        assert all(row[3] == "done" for row in rows), "every job must finish"
        return [(float(a), float(b), float(c)) for a, b, c, _ in rows]


def throughput_round(cluster: Cluster, workers: int, jobs: int) -> dict[str, Any]:
    """Jobs per second from the first submit to the last result with ``workers`` ready workers, and
    submit-to-start with an idle worker.

    ``submits_per_second`` is how fast the one front end accepted the uploads meanwhile (4 clients): the
    workers cannot run jobs faster than it takes them in (8 workers of 0.5 s jobs need 16 a second).
    """
    cluster.start_workers(workers)
    try:
        submitted = time.monotonic()
        with httpx.Client(base_url=cluster.url, timeout=60) as client, ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda seed: cluster.submit(client, seed), range(1, jobs + 1)))
        submits_per_second = jobs / (time.monotonic() - submitted)
        cluster.wait_done(ids)
        times = cluster.times(ids)
        span = max(t[2] for t in times) - min(t[0] for t in times)
        # Submit-to-start with an idle worker: one job at a time, each after the last has finished.
        waits = []
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            for seed in range(jobs + 1, jobs + 11):
                job = cluster.submit(client, seed)
                cluster.wait_done([job])
                created, started, _ = cluster.times([job])[0]
                waits.append(started - created)
    finally:
        cluster.stop_workers()
    waits.sort()
    return {
        "workers": workers,
        "jobs": jobs,
        "seconds": round(span, 3),
        "jobs_per_second": round(jobs / span, 3),
        "submits_per_second": round(submits_per_second, 1),
        "idle_submit_to_start_p50_s": round(statistics.median(waits), 3),
        "idle_submit_to_start_p95_s": round(waits[int(0.95 * (len(waits) - 1))], 3),
    }


async def _poll_rate(url: str, key: str, job_id: str, seconds: float, connections: int = 8) -> float:
    count = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def loop() -> None:
            nonlocal count
            while time.monotonic() < deadline:
                answer = await client.get(f"{SUBMIT}/result/{job_id}", headers=auth(key))
                assert answer.status_code == 202, answer.status_code
                count += 1

        await asyncio.gather(*(loop() for _ in range(connections)))
    return count / seconds


def polling_rounds(cluster: Cluster, folder: Path, seconds: float, rounds: int = 3) -> dict[str, Any]:
    """Polls/s of a queued job: the Celery front end on PostgreSQL vs an embedded server on SQLite."""
    # The Celery front end: no worker runs, so the job stays queued.
    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        queued = cluster.submit(client, 1)
    sqlite_data = folder / "sqlite"
    sqlite_data.mkdir()
    env = subprocess_env(
        IMG2VID_ENGINE_FACTORY="support.step_engine:from_env",
        IMG2VID_STEP_SECONDS="3600",
        IMG2VID_RATE_LIMIT="0",
        IMG2VID_DATA=str(sqlite_data),
    )
    store = JobStore(f"sqlite:///{sqlite_data / 'jobs.sqlite3'}")
    key = create_key(store, "bench")[0]
    store.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    embedded = subprocess.Popen(
        [sys.executable, "-m", "img2vid", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(url, embedded, timeout=120)
        with httpx.Client(base_url=url, timeout=60) as client:
            files = {"image": ("i.png", IMAGE, "image/png")}
            client.post(SUBMIT, headers=auth(key), files=files)  # runs for an hour on the one worker
            held = client.post(SUBMIT, headers=auth(key), files=files).json()["id"]  # queued, like the other's
        postgres, sqlite = [], []
        for _ in range(rounds):
            postgres.append(asyncio.run(_poll_rate(cluster.url, cluster.key, queued, seconds)))
            sqlite.append(asyncio.run(_poll_rate(url, key, held, seconds)))
    finally:
        Cluster._stop(embedded)
    pg, sq = statistics.median(postgres), statistics.median(sqlite)
    return {
        "celery_postgres_polls_per_second": round(pg, 1),
        "embedded_sqlite_polls_per_second": round(sq, 1),
        "ratio": round(pg / sq, 3),
        "rounds": rounds,
        "seconds_per_round": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--job-seconds", type=float, default=0.5)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default bench/results/scale.json)")
    args = parser.parse_args()
    started = time.time()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="img2vid-scale-") as tmp:
        cluster = Cluster(stack, Path(tmp), args.job_seconds)
        rounds = []
        for count in args.workers:
            rounds.append(throughput_round(cluster, count, args.jobs))
            print(f"{count} worker(s): {rounds[-1]}", flush=True)
        polling = polling_rounds(cluster, Path(tmp), args.poll_seconds)
    base = next((r["jobs_per_second"] for r in rounds if r["workers"] == 1), None)
    for entry in rounds:
        entry["efficiency_vs_n_times_one"] = None if base is None else round(entry["jobs_per_second"] / (base * entry["workers"]), 3)
    report = {
        "machine": f"{platform.node()}: {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "load_average_before": round(os.getloadavg()[0], 2),
        "job_seconds": args.job_seconds,
        "throughput": rounds,
        "polling": polling,
        "targets": {
            "efficiency_vs_n_times_one": ">= 0.85 at every N",
            "idle_submit_to_start_p95_s": "< 2",
            "polling_ratio": ">= 0.8 (within 20% of the SQLite front end)",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'workers':>8} {'jobs/s':>8} {'efficiency':>10} {'start p95 s':>12}")
    for entry in rounds:
        print(f"{entry['workers']:>8} {entry['jobs_per_second']:>8} {entry['efficiency_vs_n_times_one']!s:>10} {entry['idle_submit_to_start_p95_s']:>12}")
    print(f"polling: celery+PostgreSQL {polling['celery_postgres_polls_per_second']}/s, embedded+SQLite "
          f"{polling['embedded_sqlite_polls_per_second']}/s, ratio {polling['ratio']}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
