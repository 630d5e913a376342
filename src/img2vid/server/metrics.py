"""Prometheus metrics: queue depth and jobs by state (read from the store at scrape time), and how long
jobs take. Each app has its own registry, so several apps in one process (tests) never collide. This
module must never label a metric with an API key or an owner id.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .store import QUEUED, JobStore

__all__ = ["ServerMetrics", "CONTENT_TYPE_LATEST"]

_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, float("inf"))


class _StoreCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.store.counts()
        yield GaugeMetricFamily("img2vid_queue_depth", "Jobs waiting for a worker.", value=counts[QUEUED])
        by_state = GaugeMetricFamily("img2vid_jobs", "Jobs in the store by state.", labels=["state"])
        for state, count in sorted(counts.items()):
            by_state.add_metric([state], count)
        yield by_state


class ServerMetrics:
    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.job_duration = Histogram(
            "img2vid_job_duration_seconds",
            "Seconds from a worker taking a job to its outcome.",
            ["outcome"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.jobs_submitted = Counter("img2vid_jobs_submitted", "Jobs accepted.", registry=self.registry)
        self.registry.register(_StoreCollector(store))

    def render(self) -> bytes:
        return generate_latest(self.registry)
