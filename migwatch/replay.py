"""Runs the detectors over a trace in ``ts`` order from a cold start, as the stream worker runs them."""

from __future__ import annotations

import os
from collections.abc import Iterator

from migwatch.detectors.fleet import Fleet
from migwatch.detectors.settings import DEFAULTS, Settings
from migwatch.progress import Progress
from migwatch.records import Alert
from migwatch.trace import read_trace


def replay(
    trace: str | os.PathLike[str], settings: Settings = DEFAULTS, observer: str = "replay", quiet: bool = False
) -> Iterator[Alert]:
    """The alerts the detectors raise over the trace, in the order they are raised."""
    fleet = Fleet(settings, observer)
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
