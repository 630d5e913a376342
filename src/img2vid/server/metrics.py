"""Prometheus metrics: what an operator (or an autoscaler) watches.

Read from the shared store at scrape time, so every front end reports the whole cluster: queue depth, the
oldest queued job's age, running jobs, live workers (by their heartbeat), outcomes by worker, and the
durations of the finished jobs still kept. Queue depth, running jobs and live workers are also reported per
model (``img2vid_queue_depth_by_model{model}`` and so on; the unlabelled totals stay), because only a
model's own workers shorten its queue: an autoscaler scales each model's workers on its own depth, and a
model with jobs queued and no live worker shows as such (``model=""``: jobs from before model names). Jobs this process ran itself (embedded mode) also feed a
histogram of their durations by outcome. Each app has its own registry, so several apps in one process
(tests) never collide. This module must never label a metric with an API key or an owner id.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..jobs.registry import LiveWorker
from ..jobs.store import QUEUED, RUNNING, JobStore

__all__ = ["ServerMetrics", "CONTENT_TYPE_LATEST"]

_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, float("inf"))


class _StoreCollector(Collector):
    def __init__(self, store: JobStore, live_within: float) -> None:
        self.store = store
        self.live_within = live_within

    def collect(self) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        counts = self.store.counts()
        yield GaugeMetricFamily("img2vid_queue_depth", "Jobs waiting for a worker.", value=counts[QUEUED])
        yield GaugeMetricFamily("img2vid_running_jobs", "Jobs a worker is running now.", value=counts[RUNNING])
        by_state = GaugeMetricFamily("img2vid_jobs", "Jobs in the store by state.", labels=["state"])
        for state, count in sorted(counts.items()):
            by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily(
            "img2vid_oldest_queued_seconds", "Age of the oldest queued job (0 when none).", value=self.store.oldest_queued_age()
        )
        live = self.store.live_models(self.live_within)
        yield GaugeMetricFamily("img2vid_live_workers", "Workers whose heartbeat is recent.", value=len(live))
        yield from self._by_model(live)
        outcomes = GaugeMetricFamily(
            "img2vid_jobs_by_worker", "Ended jobs still in the store, by the worker that ran them.", labels=["worker", "state"]
        )
        for (worker, state), count in sorted(self.store.outcomes_by_worker().items()):
            outcomes.add_metric([worker, state], count)
        yield outcomes
        durations = sorted(self.store.durations())
        buckets = [(str(bound), sum(1 for d in durations if d <= bound)) for bound in _DURATION_BUCKETS]
        yield GaugeHistogramMetricFamily(
            "img2vid_finished_job_seconds",
            "Run time of the finished jobs still in the store (the whole cluster).",
            buckets=buckets,
            gsum_value=sum(durations),
        )


    def _by_model(self, live: list[LiveWorker]) -> Iterator[GaugeMetricFamily]:
        """Queued and running jobs and live workers per model: every model with an active job or a live
        worker (a model with jobs and no worker shows 0 workers)."""
        active = self.store.active_by_model()
        models = sorted(set(active) | {name for worker in live for name, _ in worker.models})
        depth = GaugeMetricFamily("img2vid_queue_depth_by_model", "Jobs waiting for a worker, by model.", labels=["model"])
        running = GaugeMetricFamily("img2vid_running_jobs_by_model", "Jobs a worker is running now, by model.", labels=["model"])
        workers = GaugeMetricFamily(
            "img2vid_live_workers_by_model", "Workers whose heartbeat is recent, by a model they hold.", labels=["model"]
        )
        for model in models:
            counts = active.get(model, {})
            depth.add_metric([model], counts.get(QUEUED, 0))
            running.add_metric([model], counts.get(RUNNING, 0))
            workers.add_metric([model], sum(1 for worker in live if worker.holds(model)))
        yield depth
        yield running
        yield workers


class ServerMetrics:
    def __init__(self, store: JobStore, *, live_within: float = 30.0) -> None:
        self.registry = CollectorRegistry()
        self.job_duration = Histogram(
            "img2vid_job_duration_seconds",
            "Seconds from a worker in this process taking a job to its outcome.",
            ["outcome"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.jobs_submitted = Counter("img2vid_jobs_submitted", "Jobs accepted.", registry=self.registry)
        self.registry.register(_StoreCollector(store, live_within))

    def observe_outcome(self, outcome: str, seconds: float) -> None:
        if outcome in ("done", "failed"):
            self.job_duration.labels(outcome=outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
