"""What the web pages of a stream worker and of ``migwatch watch`` answer, whichever server serves them."""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from migwatch.contract.config import WorkerSettings
from migwatch.streams.metrics import WorkerMetrics
from migwatch.streams.partitions import Partitions

PAGE = Path(__file__).with_name("page.html")


@cache  # read once: the page does not change while the process runs
def fleet_page() -> str:
    """The human page: the fleet view and, per VM, its detailed chart (plain HTML and JavaScript)."""
    return PAGE.read_text(encoding="utf-8")


def status(settings: WorkerSettings, partitions: Partitions) -> dict[str, Any]:
    """``/status``: every target's state, likelihood, last RTT, baseline, clock offset, last alert, site,
    allowed hosts and where it was last seen; and the maintenance windows not yet over."""
    return {"worker": settings.name, "targets": partitions.status(), "silences": partitions.silences(time.time())}


def chart(settings: WorkerSettings, partitions: Partitions, target: str) -> tuple[dict[str, Any], int]:
    """``/targets/<id>/chart``: the chart's points and the HTTP status (404 for a target not watched here)."""
    points = partitions.chart(target, settings.chart_windows)
    if points is None:
        return {"error": f"target: not watched here, got {target!r}"}, 404
    return {"target": target, "points": points}, 200


def metrics(registry: WorkerMetrics, partitions: Partitions) -> tuple[bytes, str]:
    """``/metrics``: the Prometheus text and its content type."""
    registry.targets.set(partitions.target_count())
    return generate_latest(registry.registry), CONTENT_TYPE_LATEST
