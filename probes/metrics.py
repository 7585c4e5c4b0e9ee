"""Prometheus metrics of a probe worker, read from the scheduler and publisher at each scrape (so nothing
is counted twice), served on ``probe.metrics_bind``:``probe.metrics_port`` at ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from migwatch.probes.publisher import Publisher
from migwatch.probes.publisher_process import PublisherProcess
from migwatch.probes.scheduler import Scheduler


class ProbeCollector(Collector):
    def __init__(self, scheduler: Scheduler, publisher: Publisher | PublisherProcess | None) -> None:
        self.scheduler = scheduler
        self.publisher = publisher

    def collect(self) -> Iterator[Metric]:
        scheduler, publisher = self.scheduler, self.publisher
        yield GaugeMetricFamily("migwatch_probe_targets", "Targets this worker probes", value=scheduler.targets)
        yield CounterMetricFamily("migwatch_probe_probes", "Probes fired", value=scheduler.fired)
        yield CounterMetricFamily(
            "migwatch_probe_skipped", "Probes skipped: due more than one interval ago", value=scheduler.skipped
        )
        yield CounterMetricFamily("migwatch_probe_unanswered", "Pings without a reply", value=scheduler.unanswered)
        errors = CounterMetricFamily("migwatch_probe_ntp_errors", "Failed NTP queries", labels=["error"])
        for error, count in sorted(scheduler.ntp_errors.items()):
            errors.add_metric([error], count)
        yield errors
        buckets = [(_bound(bound), count) for bound, count in scheduler.lateness_buckets.items()]
        yield HistogramMetricFamily(
            "migwatch_probe_lateness_seconds", "How late each probe fired against its schedule",
            buckets=buckets, sum_value=scheduler.lateness_sum,
        )  # fmt: skip
        if publisher is not None:
            yield CounterMetricFamily(
                "migwatch_probe_samples_sent", "Samples acknowledged by Kafka", value=publisher.sent
            )
            yield GaugeMetricFamily(
                "migwatch_probe_samples_buffered", "Samples waiting for Kafka", value=publisher.queued
            )
            yield CounterMetricFamily(
                "migwatch_probe_samples_spilled", "Samples that waited in the spill file", value=publisher.spilled
            )
            yield CounterMetricFamily(
                "migwatch_probe_samples_dropped", "Samples lost to a full spill file", value=publisher.dropped
            )


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def serve(
    scheduler: Scheduler, publisher: Publisher | PublisherProcess | None, bind: str, port: int
) -> CollectorRegistry:
    """Start the /metrics endpoint in a thread; returns its registry."""
    registry = CollectorRegistry()
    registry.register(ProbeCollector(scheduler, publisher))
    start_http_server(port, addr=bind, registry=registry)
    return registry
