"""What the web pages of a stream worker and of ``migwatch watch`` answer, whichever server serves them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from migwatch.contract.config import WorkerSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import TargetStatus
from migwatch.streams.fleet import FleetQuery, FleetView
from migwatch.streams.metrics import WorkerMetrics
from migwatch.streams.partitions import Partitions

PAGE = Path(__file__).with_name("page.html")
PROXY_TIMEOUT_S = 5.0


@cache  # read once: the page does not change while the process runs
def fleet_page() -> str:
    """The human page: the fleet view and, per target, its detailed chart (plain HTML, SVG and JavaScript)."""
    return PAGE.read_text(encoding="utf-8")


def status(settings: WorkerSettings, partitions: Partitions) -> dict[str, Any]:
    """``/status``: this worker's targets' state, likelihood, last RTT, baseline, clock offset, last alert,
    site, allowed hosts and where each was last seen; and the maintenance windows not yet over."""
    return {
        "worker": settings.name,
        "targets": msgspec.to_builtins(partitions.status()),
        "silences": partitions.silences(time.time()),
    }


def fleet(
    settings: WorkerSettings,
    partitions: Partitions,
    view: FleetView,
    statuses: Mapping[str, TargetStatus],
    params: Mapping[str, str],
) -> tuple[dict[str, Any], int]:
    """``/fleet``: one page of the whole fleet (FleetView) and the maintenance windows; 400 naming a bad
    parameter."""
    try:
        query = FleetQuery.of(params)
    except FieldError as error:
        return {"error": str(error)}, 400
    body = view.answer(statuses, query)
    body.update(worker=settings.name, silences=partitions.silences(time.time()), now=time.time())
    return body, 200


async def chart(
    settings: WorkerSettings,
    partitions: Partitions,
    statuses: Mapping[str, TargetStatus],
    target: str,
    *,
    forward: bool = True,
) -> tuple[dict[str, Any], int]:
    """``/targets/<id>/chart``: the target's chart points and status, and the HTTP status. A target that
    another worker watches is asked of that worker (its status names it), unless ``forward`` is off (the
    request came from a worker already); 404 for a target no worker told of."""
    points = partitions.chart(target, settings.chart_windows)
    if points is not None:
        told = msgspec.to_builtins(partitions.status_of(target) or statuses.get(target))
        return {"target": target, "worker": settings.name, "status": told, "points": points}, 200
    elsewhere = statuses.get(target)
    if not forward or elsewhere is None or not elsewhere.url or elsewhere.url == settings.own_url:
        return {"error": f"target: not watched by any worker, got {target!r}"}, 404
    url = f"{elsewhere.url}/targets/{quote(target, safe='')}/chart?forward=0"
    try:
        timeout = aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            return await response.json(), response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        return {"error": f"target: its worker {elsewhere.worker} at {elsewhere.url} did not answer ({error!r})"}, 502


def metrics(registry: WorkerMetrics, partitions: Partitions) -> tuple[bytes, str]:
    """``/metrics``: the Prometheus text and its content type."""
    registry.targets.set(partitions.target_count())
    return generate_latest(registry.registry), CONTENT_TYPE_LATEST
