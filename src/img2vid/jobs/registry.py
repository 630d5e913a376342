"""The worker registry: each worker's own heartbeat, the models it holds, and which workers are live (seen
within a lease).

Workers write ``last_seen`` with the database's clock and liveness compares against it, so a worker whose
clock is off is neither dead early nor alive late. Each heartbeat also writes the models the worker holds
(``workers.models``: ``name:family_key`` entries, comma-separated), so a Celery front end that loads no model
knows which names it may admit and each one's family (its request rules) without loading a weight. This is
what ``/metrics`` and ``/healthz`` report as live workers, and what a front end started without ``--model``
admits; the queue never reads it (a job's own lease decides who holds it). This module must never touch
the jobs table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..families import FAMILIES, TINY_FAMILIES, Family
from .database import Database
from .schema import workers
from .served import ServedModel

__all__ = [
    "WorkerRegistry",
    "LiveWorker",
    "LiveModels",
    "CUSTOM_FAMILY",
    "announce",
    "parse_announced",
    "family_for_key",
    "served_from_live",
    "LIVE_MODELS_MAX_AGE",
]

log = logging.getLogger("img2vid.jobs")

#: The family key a worker announces for a model whose family img2vid does not know (a custom engine's).
CUSTOM_FAMILY = "custom"
#: How old a front end's view of the live workers' models may be: a submit reads it, never the database.
LIVE_MODELS_MAX_AGE = 2.0


def announce(models: Sequence[ServedModel]) -> str:
    """What a worker writes to ``workers.models``: ``name:family_key`` for each model it holds."""
    return ",".join(f"{model.name}:{model.family.key if model.family is not None else CUSTOM_FAMILY}" for model in models)


def parse_announced(text: str | None) -> tuple[tuple[str, str], ...]:
    """``workers.models`` as (name, family key) pairs; an entry without a family is a custom one (a worker
    that announced only names), and an empty column (a worker from before models were announced) none."""
    found: list[tuple[str, str]] = []
    for entry in (text or "").split(","):
        name, _, key = entry.strip().partition(":")
        if name.strip():
            found.append((name.strip(), key.strip() or CUSTOM_FAMILY))
    return tuple(found)


def family_for_key(key: str) -> Family | None:
    """The family a worker announced by its key (a full-size or a tiny one); None for a custom engine's
    or a key this version does not know (its requests are then judged by SVD's protocol rules)."""
    return FAMILIES.get(key) or TINY_FAMILIES.get(key)


def _takes_svd_jobs(key: str) -> bool:
    family = family_for_key(key)
    return family is None or family.kind == "svd"


@dataclass(frozen=True)
class LiveWorker:
    """A live worker and the models it announced, as (name, family key) pairs."""

    name: str
    models: tuple[tuple[str, str], ...] = ()

    def holds(self, model: str) -> bool:
        """Whether this worker claims jobs of ``model`` (``''``, a job from before model names: when it holds
        an SVD model, or a custom engine's)."""
        if model == "":
            return any(_takes_svd_jobs(key) for _, key in self.models)
        return any(name == model for name, _ in self.models)


def served_from_live(live: Sequence[LiveWorker], default: str | None = None) -> list[ServedModel]:
    """The models live workers hold, as a front end admits them: each name once (the first worker's
    family, oldest worker first), the default first: ``default`` when a worker holds it, else the first
    SVD model (a client that sends only Stability's fields sends an SVD request), else the first found."""
    seen: dict[str, ServedModel] = {}
    for worker in live:
        for name, key in worker.models:
            if name not in seen:
                seen[name] = ServedModel(name=name, source=key, family=family_for_key(key))
    models = list(seen.values())
    if not models:
        return []
    first = next((i for i, m in enumerate(models) if m.name == default), None)
    if first is None:
        first = next((i for i, m in enumerate(models) if m.family is not None and m.family.kind == "svd"), 0)
    return [models[first], *models[:first], *models[first + 1 :]]


class LiveModels:
    """A front end's view of the live workers and their models, at most ``max_age`` seconds old.

    A submit, a poll's notice and ``/healthz`` read it on the event loop, so a read never waits on the
    database once a first answer is in: a stale view is returned as it is while one background thread
    reads a new one (a store that is down keeps the last view, and is asked again after ``max_age``).
    Only the very first read waits, bounded by the store's connect timeout; a Celery front end makes it
    at start, before it serves a request.
    """

    def __init__(self, read: Callable[[], Sequence[LiveWorker]], *, max_age: float = LIVE_MODELS_MAX_AGE, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: tuple[LiveWorker, ...] | None = None
        self._at = -float("inf")
        self._refreshing = False

    def workers(self) -> tuple[LiveWorker, ...]:
        """The live workers, oldest first: a view at most ``max_age`` old, or the last one while a new one is read."""
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None:
                if self._clock() - self._at >= self.max_age and not self._refreshing:
                    self._refreshing = True
                    threading.Thread(target=self.refresh, name="img2vid-live-models", daemon=True).start()
                return snapshot
        self.refresh()
        return self._snapshot or ()

    def refresh(self) -> None:
        """Read the live workers now (a failed read keeps the last view, or an empty one at first)."""
        try:
            found: tuple[LiveWorker, ...] | None = tuple(self._read())
        except Exception as error:  # noqa: BLE001 - the store may be down; the last view stands
            log.debug("could not read the live workers' models (%s)", type(error).__name__)
            found = None
        with self._lock:
            if found is not None:
                self._snapshot = found
            elif self._snapshot is None:
                self._snapshot = ()
            self._at = self._clock()
            self._refreshing = False

    def served(self, default: str | None = None) -> list[ServedModel]:
        """The models live workers hold, the default first (:func:`served_from_live`)."""
        return served_from_live(self.workers(), default)

    def holders(self, model: str) -> int:
        """How many live workers claim jobs of ``model``."""
        return sum(1 for worker in self.workers() if worker.holds(model))


class WorkerRegistry:
    """The workers table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = db.now
        self._views: dict[float, LiveModels] = {}
        self._views_lock = threading.Lock()

    def worker_seen(self, name: str, models: Sequence[ServedModel] | None = None) -> None:
        """A worker's own heartbeat (live workers are those seen within a lease), with the models it holds
        (None: leave them as they are, for a presence that holds none of its own, such as an embedded server's)."""
        now = self.now
        values: dict[str, object] = {"last_seen": now}
        if models is not None:
            values["models"] = announce(models)
        with self.db.begin() as conn:
            if conn.execute(update(workers).where(workers.c.name == name).values(**values)).rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(workers.insert().values(name=name, started_at=now, **values))
                except IntegrityError:
                    conn.execute(update(workers).where(workers.c.name == name).values(**values))

    def live_workers(self, within: float) -> list[str]:
        with self.db.connect() as conn:
            rows = conn.execute(select(workers.c.name).where(workers.c.last_seen >= self.now - within)).all()
        return sorted(str(row[0]) for row in rows)

    def live_models(self, within: float) -> list[LiveWorker]:
        """The live workers with the models each announced, oldest first (read now, not cached)."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(workers.c.name, workers.c.models)
                .where(workers.c.last_seen >= self.now - within)
                .order_by(workers.c.started_at, workers.c.name)
            ).all()
        return [LiveWorker(name=str(row[0]), models=parse_announced(row[1])) for row in rows]

    def live_model_view(self, within: float, *, max_age: float = LIVE_MODELS_MAX_AGE) -> LiveModels:
        """This store's shared, briefly cached view of :meth:`live_models` (one per ``within``), so every
        reader in a front end (admission, notices, ``/healthz``) shares one read per ``max_age``."""
        with self._views_lock:
            view = self._views.get(within)
            if view is None:
                view = self._views[within] = LiveModels(lambda: self.live_models(within), max_age=max_age)
            return view
