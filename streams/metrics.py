"""Prometheus metrics of a stream worker, served by its Faust web server at ``/metrics``."""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from migwatch.contract.records import AlertState


class WorkerMetrics:
    """Counters the agents update; consumer lag is set at each scrape from the consumer's offsets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.samples = Counter(
            "migwatch_worker_samples", "Samples run through the detectors", ["topic"], registry=self.registry
        )
        self.dead_letters = Counter(
            "migwatch_worker_dead_letters", "Messages sent to the dead-letter topic", ["topic"], registry=self.registry
        )
        self.alerts = Counter("migwatch_worker_alerts", "Alerts published", ["state"], registry=self.registry)
        self.publish_failures = Counter(
            "migwatch_worker_publish_failures", "Times Kafka refused a batch's alerts or dead letters (sent again)",
            registry=self.registry,
        )  # fmt: skip
        self.feedback = Counter(
            "migwatch_worker_feedback", "Analysts' verdicts, by whether their alert was known", ["learned"],
            registry=self.registry,
        )  # fmt: skip
        self.checkpoints = Counter(
            "migwatch_worker_checkpoints", "State rows written to the tables", registry=self.registry
        )
        self.batch_seconds = Histogram(
            "migwatch_worker_batch_seconds", "Time to process one batch of samples",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=self.registry,
        )  # fmt: skip
        self.batch_samples = Histogram(
            "migwatch_worker_batch_samples", "Messages per batch",
            buckets=(1, 10, 100, 1000, 5000, 20000, 100000), registry=self.registry,
        )  # fmt: skip
        self.lag = Gauge(
            "migwatch_worker_consumer_lag", "Messages not yet consumed", ["topic", "partition"], registry=self.registry
        )
        self.targets = Gauge("migwatch_worker_targets", "Targets with state in this worker", registry=self.registry)

    def start_at_zero(self, sample_topics: list[str], feedback_topic: str | None = None) -> None:
        """Export every labelled series from the start, so that dashboards and rates see 0, not nothing."""
        for topic in sample_topics:
            self.samples.labels(topic)
            self.dead_letters.labels(topic)
        if feedback_topic is not None:
            self.dead_letters.labels(feedback_topic)
            for learned in ("true", "false"):
                self.feedback.labels(learned)
        for state in get_args(AlertState):
            self.alerts.labels(state)
