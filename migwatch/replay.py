"""Runs the detectors over a trace in ``ts`` order from a cold start, as the stream worker runs them."""

from __future__ import annotations

import os
from collections.abc import Iterator

from migwatch.contract.config import AlertLinks
from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import Alert
from migwatch.contract.trace import read_trace
from migwatch.detectors.target_group import NO_LINKS, Directory, TargetGroup
from migwatch.progress import Progress


def replay(
    trace: str | os.PathLike[str],
    settings: DetectorSettings = DEFAULTS,
    observer: str = "replay",
    *,
    quiet: bool = False,
    directory: Directory | None = None,
    links: AlertLinks = NO_LINKS,
) -> Iterator[Alert]:
    """The alerts the detectors raise over the trace, in the order they are raised. ``directory`` holds the
    watched targets' records (their hypervisors, site, labels, own settings) and the maintenance windows,
    as the stream worker knows them."""
    fleet = TargetGroup(settings, observer, directory, links)
    progress = Progress("replay") if not quiet else None
    alerts = 0
    for sample in read_trace(trace):
        raised = fleet.update(sample)
        alerts += len(raised)
        yield from raised
        if progress is not None:
            progress.add(1, f"{alerts} alerts")
    if progress is not None:
        progress.done(f"{alerts} alerts, {len(fleet.detectors)} targets")
