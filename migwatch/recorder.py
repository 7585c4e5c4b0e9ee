"""``migwatch record``: the real probes writing straight into a trace file (CONTRACT section 3)."""

from __future__ import annotations

import asyncio
import os
import signal

from migwatch.contract.config import Config
from migwatch.contract.records import Sample
from migwatch.contract.trace import TraceWriter
from migwatch.probes.scheduler import Scheduler
from migwatch.progress import Progress


async def record(config: Config, out: str | os.PathLike[str], duration_s: float) -> Scheduler:
    """Probe the config's targets (of this probe's site) for ``duration_s`` into ``out``.

    SIGINT or SIGTERM ends the recording early with a complete file (the lab stops its recorders so).
    """
    progress = Progress("record")
    with TraceWriter(out) as writer:

        def sink(sample: Sample) -> None:
            writer.write(sample)
            progress.add()

        scheduler = Scheduler(config.probe, sink)
        scheduler.set_targets(t for t in config.targets if t.site == config.probe.site)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, scheduler.stop)
        try:
            await scheduler.run(duration_s)
        finally:
            scheduler.close()
    lateness = scheduler.lateness_quantiles()
    progress.done(f"lateness p50 {lateness['p50']:.1f} ms, p99 {lateness['p99']:.1f} ms, {scheduler.skipped} skipped")
    return scheduler


def run(config: Config, out: str | os.PathLike[str], duration_s: float) -> Scheduler:
    return asyncio.run(record(config, out, duration_s))
