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
"""

from __future__ import annotations

import argparse
import statistics
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--submits", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-kib", type=int, default=600)
    opts = parser.parse_args()
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
                        store.engine = store.engine.execution_options(isolation_level="SERIALIZABLE")
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
