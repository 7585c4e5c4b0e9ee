"""Prometheus metrics of a probe worker, read from the scheduler and publisher at each scrape (so nothing
is counted twice), served on ``probe.metrics_bind``:``probe.metrics_port`` at ``/metrics``, beside the
health checks an orchestrator asks: ``/healthz`` (the scheduler's loop turned lately) and ``/readyz`` (it has
targets and has fired probes: it is probing)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
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
            yield CounterMetricFamily(
                "migwatch_probe_messages_sent", "Kafka messages acknowledged (batches of samples)",
                value=publisher.messages,
            )  # fmt: skip
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


# The scheduler's loop wakes at least every WAKE_S; one that has not turned for this long is stuck.
STUCK_AFTER_S = 30.0


def health(scheduler: Scheduler, path: str) -> tuple[int, str]:
    """(HTTP status, body) of ``/healthz`` or ``/readyz``; (404, ...) for any other path."""
    if path == "/healthz":
        idle = time.monotonic() - scheduler.alive_at
        return (200, "ok\n") if idle < STUCK_AFTER_S else (503, f"stuck: the scheduler has not run for {idle:.0f} s\n")
    if path == "/readyz":
        if scheduler.targets and scheduler.fired:
            return 200, f"probing {scheduler.targets} targets\n"
        return 503, f"not probing yet: {scheduler.targets} targets, {scheduler.fired} probes fired\n"
    return 404, "not found: /metrics, /healthz, /readyz\n"


def serve(
    scheduler: Scheduler, publisher: Publisher | PublisherProcess | None, bind: str, port: int
) -> CollectorRegistry:
    """Start the endpoints (``/metrics``, ``/healthz``, ``/readyz``) in a thread; returns the metrics' registry."""
    registry = CollectorRegistry()
    registry.register(ProbeCollector(scheduler, publisher))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                status, body, kind = 200, generate_latest(registry), CONTENT_TYPE_LATEST
            else:
                status, text = health(scheduler, path)
                body, kind = text.encode(), "text/plain; charset=utf-8"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes and health checks every few seconds would flood the log

    server = ThreadingHTTPServer((bind, port), Handler)
    threading.Thread(target=server.serve_forever, name="probe-metrics", daemon=True).start()
    return registry
