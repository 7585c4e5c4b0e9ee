"""``migwatch probe``: a probe worker publishing every sample of its site's targets to Kafka."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from migwatch.contract import logs
from migwatch.contract.config import Config
from migwatch.contract.records import DeadLetter, Target
from migwatch.probes import metrics
from migwatch.probes.publisher_process import PublisherProcess, flush_regularly
from migwatch.probes.scheduler import Scheduler
from migwatch.probes.target_feed import TargetFeed

log = logging.getLogger(__name__)


async def probe(config: Config, duration_s: float | None = None) -> tuple[Scheduler, PublisherProcess]:
    """Probe until SIGINT/SIGTERM (or ``duration_s``), then flush what Kafka will take."""
    settings = config.probe
    publisher = PublisherProcess(
        config.kafka,
        Path(settings.spill_dir) / f"{settings.name}.spill",
        memory_limit=settings.buffer_samples,
        spill_limit_bytes=settings.spill_limit_mb << 20,
        linger_s=settings.batch_linger_ms / 1000,
        batch_max_samples=settings.batch_max_samples,
    )
    scheduler = Scheduler(settings, publisher.publish)
    if settings.metrics_port:
        metrics.serve(scheduler, publisher, settings.metrics_bind, settings.metrics_port)
    loop = asyncio.get_running_loop()
    feed = None
    if settings.targets_from == "topic":

        def changed(targets: list[Target]) -> None:
            loop.call_soon_threadsafe(scheduler.set_targets, targets)

        def bad(letter: DeadLetter, key: bytes | None) -> None:
            loop.call_soon_threadsafe(publisher.publish_dead_letter, letter, key)

        feed = TargetFeed(config.kafka, settings.site, changed, settings.session_timeout_s, on_bad=bad)
        feed.start()
        source = f"topic {feed.topic}, group {feed.group}"
    else:
        scheduler.set_targets(target for target in config.targets if target.site == settings.site)
        source = f"{scheduler.targets} targets of the config"
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, scheduler.stop)
    log.warning("probe %s of site %s: %s -> %s", settings.name, settings.site, source, config.kafka.bootstrap)
    flusher = asyncio.create_task(flush_regularly(publisher))
    try:
        await scheduler.run(duration_s)
    finally:
        flusher.cancel()
        if feed is not None:
            await asyncio.to_thread(feed.stop)
        scheduler.close()
        await asyncio.to_thread(publisher.close)
    log.warning(
        "probe %s: %d samples sent, %d dropped, %d left for the next run", settings.name, publisher.sent,
        publisher.dropped, publisher.left_over,
    )  # fmt: skip
    return scheduler, publisher


def run(config: Config, duration_s: float | None = None) -> None:
    logs.configure(config.logging)
    asyncio.run(probe(config, duration_s))
