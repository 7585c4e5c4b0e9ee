"""Planned migrations: a migration alert inside a maintenance window of its target is expected.

An alert whose target a :class:`~migwatch.contract.silences.Silence` covers at its ``detected_ts`` gets
``migwatch.outcome: expected``, the window's id and severity 1 (ECS's ``event.type: allowed`` is not one a
``host`` event may carry, so the outcome says it) —
unless the move went where it may not: a destination that is not allowed, not the window's planned one
(``to_hosts``), or a relocation to another round trip. Those, and every migration alert outside a window,
are ``unexpected`` and keep their severity.

    >>> from migwatch.contract.records import Alert, AlertDetail, AlertEvent, AlertHost, AlertObserver
    >>> from migwatch.contract.silences import Silence
    >>> alert = Alert(timestamp="2026-12-02T22:10:00.000Z", host=AlertHost(name="web-01"),
    ...               event=AlertEvent(id="a", severity=4, risk_score=97.0, risk_score_norm=97.0),
    ...               observer=AlertObserver(name="w"),
    ...               migwatch=AlertDetail(target="web-01", state="confirmed", likelihood=0.97, detected_ts=1000.0))
    >>> judge(alert, None, [Silence(id="night", start=900.0, end=4500.0, targets=["web-01"])])
    >>> alert.migwatch.outcome, alert.migwatch.window, alert.event.severity
    ('expected', 'night', 1)
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from migwatch.contract.records import Alert, Target
from migwatch.contract.silences import Silence


def judge(alert: Alert, record: Target | None, silences: Iterable[Silence]) -> None:
    """Mark a migration alert expected (in a window, gone where allowed) or unexpected; cleared ones stay."""
    detail = alert.migwatch
    if detail.state == "cleared":
        return
    site, labels = (record.site, record.labels) if record is not None else (None, {})
    window = next((s for s in silences if s.covers(detail.target, site, labels, detail.detected_ts)), None)
    if window is None:
        detail.outcome = "unexpected"
        return
    detail.window = window.id
    evidence = detail.evidence
    destination = evidence.destination_host
    astray = (
        evidence.destination_allowed is False
        or detail.relocation is not msgspec.UNSET
        or (bool(window.to_hosts) and destination is not msgspec.UNSET and destination not in window.to_hosts)
    )
    if astray:
        detail.outcome = "unexpected"
        return
    detail.outcome = "expected"
    alert.event.severity = 1
