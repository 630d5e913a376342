"""Benchmark of admission on PostgreSQL: what each way of checking the caps and inserting in one step costs.

Submits race from ``--threads`` threads through two stores (two front ends' pools) on one PostgreSQL of its
own, each job a ``--image-kib`` blob, with both caps set high enough never to refuse (so every submit pays
the check and the insert), and then once more with a per-key cap of 3 from one key, to count how many a
burst gets past the cap. Ways measured, in alternating rounds:

- ``unlocked``: count, then insert, in a READ COMMITTED transaction (what the store did: not atomic);
- ``advisory``: the same under transaction-scoped advisory locks, the owner's and the server-wide one
  (what the store does);
- ``serializable``: the same in a SERIALIZABLE transaction, retried on a serialization failure.

    python bench/admission.py [--threads 16] [--submits 400] [--rounds 3] [--image-kib 600]

``--reference-src DIR`` measures the whole submit path instead, before and after a change: two ``img2vid
serve`` front ends (``--workers 0``, so jobs stay queued) of this checkout and of another (``git worktree
add /tmp/ref <commit>``, or ``git archive``), each pair on a fresh database of the same PostgreSQL, in
alternating rounds, with ``--threads`` clients posting a 1024x576 PNG through both front ends in turn.

    python bench/admission.py --reference-src /tmp/ref/src [--rounds 3] [--submits 300] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from sqlalchemy.exc import DBAPIError  # noqa: E402

from img2vid.errors import QueueFullError, StoreUnavailableError, TooManyJobsError  # noqa: E402
from img2vid.jobs.store import JobStore  # noqa: E402
from support.cluster import new_database  # noqa: E402
from support.services import PostgresServer  # noqa: E402

WAYS = ("unlocked", "advisory", "serializable")


class _Store(JobStore):
    """The store with its admission lock swapped for the way being measured."""

    way = "advisory"

    def _lock_admission(self, conn: Any, owner: str, *, whole_queue: bool) -> None:
        if self.way == "advisory":
            super()._lock_admission(conn, owner, whole_queue=whole_queue)

    def add_job(self, **kwargs: Any) -> tuple[str, bool]:
        while True:
            try:
                return super().add_job(**kwargs)
            except StoreUnavailableError as error:  # a serialization failure (40001): try again
                cause = error.__cause__
                if not isinstance(cause, DBAPIError) or getattr(cause.orig, "sqlstate", None) != "40001":
                    raise
                self.retries += 1

    retries = 0


def _burst(
    stores: list[_Store], threads: int, submits: int, image: bytes, owners: list[str], caps: tuple[int, int]
) -> tuple[float, int]:
    """Seconds for ``submits`` racing submits, and how many were accepted."""
    gate = threading.Barrier(threads)
    accepted = 0
    lock = threading.Lock()

    def work(index: int) -> None:
        nonlocal accepted
        gate.wait()
        for n in range(index, submits, threads):
            try:
                stores[n % 2].add_job(
                    owner=owners[n % len(owners)], image=image, seed=n + 1, params={}, max_per_owner=caps[0], max_active=caps[1]
                )
            except (TooManyJobsError, QueueFullError):
                continue
            with lock:
                accepted += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return time.perf_counter() - started, accepted


def _front_ends(src: Path, url: str, folder: Path) -> tuple[list[subprocess.Popen[bytes]], list[str], str]:
    """Two ``img2vid serve`` of the checkout at ``src`` on ``url`` (no workers, caps out of reach); their
    processes, base URLs and an API key."""
    from support.server_harness import free_port, wait_healthy

    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "IMG2VID_DATABASE_URL": url,
        "IMG2VID_DATA": str(folder),
        "IMG2VID_MAX_QUEUED": "1000000",
        "IMG2VID_MAX_QUEUED_PER_KEY": "1000000",
        "IMG2VID_RATE_LIMIT": "0",
        "IMG2VID_ENGINE_FACTORY": "support.step_engine:from_env",
    }
    env["PYTHONPATH"] += os.pathsep + str(ROOT / "tests")
    key = subprocess.run(
        [sys.executable, "-m", "img2vid", "keys", "create", "--name", "bench"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    processes, urls = [], []
    for _ in range(2):
        port = free_port()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "img2vid", "serve", "--port", str(port), "--workers", "0", "--log-level", "warning"],
                env=env,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for base, process in zip(urls, processes, strict=True):
        wait_healthy(base, process, timeout=120)
    return processes, urls, key


def _http_burst(urls: list[str], key: str, threads: int, submits: int, image: bytes) -> tuple[float, list[float]]:
    """Submits per second and each submit's latency (ms), ``threads`` clients through the front ends in turn."""
    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    gate = threading.Barrier(threads)

    def work(index: int) -> None:
        clients = [httpx.Client(base_url=url, timeout=60) for url in urls]
        try:
            gate.wait()
            for n in range(index, submits, threads):
                started = time.perf_counter()
                answer = clients[n % 2].post(
                    "/v2beta/image-to-video",
                    headers={"authorization": f"Bearer {key}"},
                    files={"image": ("i.png", image, "image/png")},
                    data={"seed": str(n + 1)},
                )
                assert answer.status_code == 200, answer.text
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
        finally:
            for client in clients:
                client.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return submits / (time.perf_counter() - started), latencies


def compare(opts: argparse.Namespace) -> None:
    from support.images import png_bytes

    image = png_bytes(1024, 576)
    sources = {"this checkout": ROOT / "src", "reference": Path(opts.reference_src).resolve()}
    if not (sources["reference"] / "img2vid").is_dir():
        raise SystemExit(f"--reference-src {opts.reference_src}: no img2vid package there (give a checkout's src folder)")
    rates: dict[str, list[float]] = {label: [] for label in sources}
    latencies: dict[str, list[float]] = {label: [] for label in sources}
    load = os.getloadavg()[0]
    with PostgresServer() as server:
        for round_ in range(opts.rounds):
            order = list(sources) if round_ % 2 == 0 else list(reversed(sources))
            for label in order:
                with tempfile.TemporaryDirectory() as folder:
                    processes, urls, key = _front_ends(sources[label], new_database(server), Path(folder))
                    try:
                        _http_burst(urls, key, opts.threads, opts.threads * 2, image)  # warm both front ends
                        rate, times = _http_burst(urls, key, opts.threads, opts.submits, image)
                    finally:
                        for process in processes:
                            process.kill()
                            process.wait(10)
                rates[label].append(rate)
                latencies[label] += times
                print(f"round {round_ + 1} {label}: {rate:.1f} submits/s", flush=True)
    lines = [
        f"`python bench/admission.py --reference-src {opts.reference_src}` on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average before {load:.2f}. Two `img2vid serve --workers 0` front ends per checkout on one PostgreSQL "
        f"(a fresh database each), {opts.submits} submits of a 1024x576 PNG from {opts.threads} clients through both "
        f"in turn, {opts.rounds} alternating rounds.",
        "",
        "| checkout | submits/s, each round | median submits/s | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for label in sources:
        ordered = sorted(latencies[label])
        p50, p99 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        lines.append(
            f"| {label} | {', '.join(f'{r:.1f}' for r in rates[label])} | {statistics.median(rates[label]):.1f} | "
            f"{p50:.0f} | {p99:.0f} |"
        )
    ratio = statistics.median(rates["this checkout"]) / statistics.median(rates["reference"])
    lines += ["", f"Throughput ratio (this checkout / reference, median): {ratio:.3f}.", ""]
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--submits", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-kib", type=int, default=600)
    parser.add_argument("--reference-src", metavar="DIR", help="compare the whole submit path with the img2vid in DIR")
    opts = parser.parse_args()
    if opts.reference_src:
        compare(opts)
        return
    image = bytes(range(256)) * (opts.image_kib * 4)
    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    over: dict[str, int] = {}
    retries: dict[str, int] = dict.fromkeys(WAYS, 0)
    with PostgresServer() as server:
        for round_ in range(opts.rounds):
            for way in WAYS if round_ % 2 == 0 else reversed(WAYS):
                url = new_database(server)
                stores = [_Store(url), _Store(url)]
                for store in stores:
                    store.way = way
                    if way == "serializable":
                        store.db.engine = store.db.engine.execution_options(isolation_level="SERIALIZABLE")
                seconds, _ = _burst(stores, opts.threads, opts.submits, image, [f"o{n}" for n in range(8)], (10**6, 10**6))
                rates[way].append(opts.submits / seconds)
                over[way] = max(over.get(way, 0), _burst(stores, opts.threads, 48, image, ["burst"], (3, 10**6))[1])
                retries[way] += sum(store.retries for store in stores)
                for store in stores:
                    store.close()
    print(f"{opts.submits} submits of {opts.image_kib} KiB from {opts.threads} threads, 2 stores, {opts.rounds} rounds")
    print("| way | submits/s (median) | accepted of 48 racing with a per-key cap of 3 | serialization retries |")
    print("|---|---:|---:|---:|")
    for way in WAYS:
        print(f"| {way} | {statistics.median(rates[way]):.0f} | {over[way]} | {retries[way]} |")


if __name__ == "__main__":
    main()
