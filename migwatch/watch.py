"""``migwatch watch``: probes and detectors in one process, no Kafka; alerts as JSON Lines on stdout.

The embedded default for one monitoring host with a few hundred VMs. The probes of ``probes/`` feed the
same per-partition detector state as a stream worker (one partition: the whole fleet, so common-mode
rejection and hypervisor naming see every target), in batches of ``worker.batch_within_s`` sorted by
``ts``; the same web pages and metrics are served on ``worker.web_bind``:``web_port``. State lives in
memory: a restart learns the baselines again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO

from aiohttp import web

from migwatch.contract import logs
from migwatch.contract.codec import encode
from migwatch.contract.config import Config
from migwatch.contract.records import Alert, PingSample, Sample
from migwatch.detectors.alert_text import stamp_created
from migwatch.probes.metrics import ProbeCollector
from migwatch.probes.scheduler import Scheduler
from migwatch.streams import views
from migwatch.streams.fleet import FleetStatuses, FleetView
from migwatch.streams.metrics import WorkerMetrics
from migwatch.streams.partitions import Partitions
from migwatch.streams.tables import MemoryTables

log = logging.getLogger(__name__)


class Watch:
    """Probes into detectors into alert lines; ``flush()`` runs what came since the last one."""

    def __init__(self, config: Config, outputs: list[IO[bytes]]) -> None:
        settings = config.worker
        self.config = config
        self.outputs = outputs
        self.pending: list[Sample] = []
        self.scheduler = Scheduler(config.probe, self.pending.append)
        self.scheduler.set_targets(t for t in config.targets if t.site == config.probe.site)
        self.partitions = Partitions.for_worker(MemoryTables(keep=settings.chart_windows), config)
        self.metrics = WorkerMetrics()
        self.metrics.start_at_zero(["ping", "ntp"])
        self.metrics.registry.register(ProbeCollector(self.scheduler, None))
        self.alerts = 0
        self.statuses, self.fleet = FleetStatuses(None, self.partitions.status), FleetView()

    def flush(self) -> list[Alert]:
        batch, self.pending[:] = sorted(self.pending, key=_ts), []
        if not batch:
            return []
        alerts = self.partitions.update(0, batch)
        counts = Counter("ping" if isinstance(sample, PingSample) else "ntp" for sample in batch)
        for kind, count in counts.items():
            self.metrics.samples.labels(kind).inc(count)
        now = time.time()
        for alert in alerts:
            stamp_created(alert, now)
            line = encode(alert) + b"\n"
            for output in self.outputs:
                output.write(line)
                output.flush()
            self.metrics.alerts.labels(alert.migwatch.state).inc()
        self.alerts += len(alerts)
        return alerts

    def web_app(self) -> web.Application:
        settings = self.config.worker

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=views.fleet_page(), content_type="text/html")

        async def status(request: web.Request) -> web.Response:
            return web.json_response(views.status(settings, self.partitions))

        async def fleet(request: web.Request) -> web.Response:
            body, code = views.fleet(settings, self.partitions, self.fleet, self.statuses(), request.query)
            return web.json_response(body, status=code)

        async def chart(request: web.Request) -> web.Response:
            target = request.match_info["target"]
            body, code = await views.chart(settings, self.partitions, {}, target, forward=False)
            return web.json_response(body, status=code)

        async def metrics(request: web.Request) -> web.Response:
            body, content_type = views.metrics(self.metrics, self.partitions)
            return web.Response(body=body, headers={"Content-Type": content_type})

        app = web.Application()
        app.add_routes([
            web.get("/", page), web.get("/status", status), web.get("/fleet", fleet),
            web.get("/targets/{target}/chart", chart), web.get("/metrics", metrics),
        ])  # fmt: skip
        return app


async def watch(config: Config, out: Path | None = None, duration_s: float | None = None) -> Watch:
    """Probe, detect and print alerts until SIGINT/SIGTERM (or ``duration_s``)."""
    settings = config.worker
    with contextlib.ExitStack() as files:
        outputs: list[IO[bytes]] = [sys.stdout.buffer]
        if out is not None:
            outputs.append(files.enter_context(open(out, "ab")))
        running = Watch(config, outputs)
        runner = None
        if settings.web_port:
            runner = web.AppRunner(running.web_app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, settings.web_bind, settings.web_port).start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, running.scheduler.stop)

        async def detect_regularly() -> None:
            while True:
                await asyncio.sleep(settings.batch_within_s)
                running.flush()

        web_note = f"http://{settings.web_bind}:{settings.web_port}/" if settings.web_port else "no web server"
        log.warning("watch %s: %d targets, %s", settings.name, running.scheduler.targets, web_note)
        detector = asyncio.create_task(detect_regularly())
        try:
            await running.scheduler.run(duration_s)
        finally:
            detector.cancel()
            running.scheduler.close()
            running.flush()  # what came in last
            if runner is not None:
                await runner.cleanup()
    log.warning("watch %s: %d alerts", settings.name, running.alerts)
    return running


def run(config: Config, out: Path | None = None, duration_s: float | None = None) -> None:
    logs.configure(config.logging)
    asyncio.run(watch(config, out, duration_s))


def _ts(sample: Sample) -> float:
    return sample.ts
