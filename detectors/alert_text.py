"""What a SIEM reads on an alert beside the detectors' figures (issue #19): a one-line ``message``, the
``rule`` that fired, the hosts to pivot on (``related``), the target's kind, site and labels, and links to the
fleet page (``event.url``, ``event.reference``) and the runbook (``rule.reference``). Pure: the same alert
reads the same in the worker, ``watch`` and a replay.

    >>> from migwatch.contract.records import Evidence, Target
    >>> from migwatch.detectors.fusion import make_alert
    >>> alert = make_alert("confirmed", 1764180012.7, ("web-01", "192.0.2.10", "worker-1"), event_id="e",
    ...                    severity=4, likelihood=0.97, first_ts=1764180001.0, phase="switched",
    ...                    evidence=Evidence(time_lag_ms=-31.0, unanswered=2), action="vm-live-migration")
    >>> finish(alert, Target(id="web-01", address="192.0.2.10", site="dc1", labels={"team": "db"}),
    ...        AlertLinks(public_url="https://migwatch.example/"))
    >>> alert.message
    'vm web-01: live migration confirmed, clock 31 ms behind after 2 unanswered pings'
    >>> alert.rule.id, alert.rule.name, alert.host.type, alert.labels, alert.event.url
    ('migwatch-103', 'ntp-time-lag', 'vm', {'team': 'db'}, 'https://migwatch.example/#web-01')
    >>> alert.related.hosts, alert.related.ip
    (['web-01'], ['192.0.2.10'])
"""

from __future__ import annotations

import urllib.parse

import msgspec

from migwatch.contract.config import AlertLinks
from migwatch.contract.fields import iso
from migwatch.contract.records import PRODUCT_VERSION, Alert, AlertRelated, AlertRule, Evidence, Target

# The rules a detector alert can come from, by state (and action for the ones that are not a migration's
# rise): (rule.id, rule.name, rule.description). Ids are stable: SIEM rules and suppressions key on them.
RULES: dict[str, tuple[str, str, str]] = {
    "cleared": ("migwatch-100", "quiet", "No evidence for clear_after_s of event time: the episode is over."),
    "suspected": (
        "migwatch-101",
        "ping-pattern",
        "The ping heuristic (Fiebig et al. 2013): raised mean RTT with high outliers, a run of unanswered pings, "
        "a new reply TTL or clock skew. A bulk copy looks the same: an early warning, not a verdict.",
    ),
    "likely": (
        "migwatch-102",
        "ping-pattern-with-loss",
        "The ping pattern with unanswered pings in the same episode (a stop-and-copy), or with a new reply TTL, "
        "clock skew or round trip; or a pattern that analysts' verdicts taught is a migration.",
    ),
    "confirmed": (
        "migwatch-103",
        "ntp-time-lag",
        "The VM's clock lags the probe's by about the time it was paused: it was stopped and resumed, as the "
        "switch of a live migration does.",
    ),
    "vm-relocated": (
        "migwatch-104",
        "relocation",
        "After a confirmed move the VM's lowest round trip settled at another level: it runs elsewhere now.",
    ),
    "vm-silent": (
        "migwatch-105",
        "vm-silent",
        "No ping and no NTP query answered for silent_after_s while the probe kept asking: the VM vanished "
        "(moved away, stopped or cut off).",
    ),
    "vm-silent-cleared": ("migwatch-106", "vm-answers-again", "A VM that had gone silent answers again."),
    # Look-alikes (issue #20, detectors/lookalike.py): named for what they are, never a likely/confirmed move.
    "vm-paused": (
        "migwatch-107",
        "vm-paused",
        "The VM's clock lags by about a stop its pings showed, with no memory copy before it and no hypervisor "
        "showing a migration stream: it was paused and resumed where it was (a snapshot, a hypervisor's stop).",
    ),
    "vm-clock-step": (
        "migwatch-108",
        "vm-clock-step",
        "The VM's clock stepped back by more than any stop its pings allow: it answered all along, its own "
        "clock was set back.",
    ),
    "vm-rebooted": (
        "migwatch-109",
        "vm-rebooted",
        "After a long outage the VM's clock is not behind by about the outage: it started afresh (a reboot).",
    ),
    "vm-route-change": (
        "migwatch-110",
        "vm-route-change",
        "The VM's replies cross another number of routers (reply TTL) without it having stopped: a route "
        "change. A clock lag after it still confirms a move to another subnet.",
    ),
}


def finish(alert: Alert, record: Target | None, links: AlertLinks) -> None:
    """Add what a SIEM reads to a detector's alert: the target's record (site, labels, allowed hosts,
    kind), the rule, related hosts, the message and the links."""
    detail = alert.migwatch
    alert.host.type = "hypervisor" if record is not None and record.kind == "host" else "vm"
    if record is not None:
        detail.site = record.site
        if record.hosts:
            detail.allowed_hosts = list(record.hosts)
        if record.labels:
            alert.labels = dict(record.labels)
    action = alert.event.action
    key = detail.state if action == "vm-live-migration" else action
    if action == "vm-silent" and detail.state == "cleared":
        key = "vm-silent-cleared"
    rule_id, name, description = RULES[key]
    alert.rule = AlertRule(id=rule_id, name=name, description=description)
    alert.observer.version = PRODUCT_VERSION
    alert.related = _related(alert)
    alert.message = message(alert)
    if links.public_url:
        entry = f"{links.public_url.rstrip('/')}/#{urllib.parse.quote(detail.target, safe='')}"
        alert.event.url = alert.event.reference = entry
    if links.runbook_url:
        alert.rule.reference = links.runbook_url


def stamp_created(alert: Alert, now: float) -> None:
    """ECS ``event.created``: when a live process made the alert (wall clock), beside ``@timestamp``, when the
    samples said so (event time). A replay leaves it out: its alerts equal the live run's."""
    alert.event.created = iso(now)


def _related(alert: Alert) -> AlertRelated:
    """The target and every hypervisor the alert names; its IP when it has one."""
    evidence = alert.migwatch.evidence
    hosts = [alert.host.name]
    for host in (evidence.source_host, evidence.destination_host, *(evidence.hosts_seen or ())):
        if isinstance(host, str) and host not in hosts:
            hosts.append(host)
    related = AlertRelated(hosts=hosts)
    if alert.host.ip is not msgspec.UNSET:
        related.ip = list(alert.host.ip)
    return related


def message(alert: Alert) -> str:
    """One line a person reads in the SIEM's event list: what, which VM, and the figure that says so."""
    detail, evidence = alert.migwatch, alert.migwatch.evidence
    what = "hypervisor" if alert.host.type == "hypervisor" else "vm"
    head = f"{what} {detail.target}:"
    if alert.event.action == "vm-silent":
        if detail.state == "cleared":
            return f"{head} answers again after {_seconds(detail.silent_s)} of silence"
        return f"{head} silent for {_seconds(detail.silent_s)}, no ping or NTP answer (vanished?)"
    if detail.state == "cleared":
        return f"{head} quiet again, migration alert cleared"
    if alert.event.action in LOOKALIKES:
        return f"{head} {LOOKALIKES[alert.event.action]}{_figures(evidence)}, not a migration"
    if alert.event.action == "vm-relocated" and detail.relocation is not msgspec.UNSET:
        moved = detail.relocation
        return (
            f"{head} relocated after its migration: lowest round trip {moved.rtt_min_before_ms:g} -> "
            f"{moved.rtt_min_after_ms:g} ms (up to {moved.distance_km_max:g} km farther)"
        )
    text = f"{head} live migration {detail.state}{_figures(evidence)}"
    if detail.outcome == "expected":
        text += f", expected (maintenance window {detail.window})"
    elif evidence.destination_allowed is False:
        text += f", to a host not allowed ({evidence.destination_host})"
    return text


# The look-alikes' messages, before their figures.
LOOKALIKES = {
    "vm-paused": "paused and resumed in place",
    "vm-clock-step": "its clock was set back",
    "vm-rebooted": "rebooted",
    "vm-route-change": "route changed",
}


def _figures(evidence: Evidence) -> str:
    """The strongest evidence in words: the clock lag, else the round trips, else the unanswered pings."""
    lost = f"{evidence.unanswered} unanswered ping{'s' * (evidence.unanswered != 1)}" if evidence.unanswered else ""
    if evidence.ttl_change is not None and evidence.time_lag_ms is None:
        return f", reply TTL {evidence.ttl_change:+d}"
    if evidence.time_lag_ms is not None:
        side = "behind" if evidence.time_lag_ms < 0 else "ahead"
        return f", clock {abs(evidence.time_lag_ms):.0f} ms {side}" + (f" after {lost}" if lost else "")
    if evidence.rtt_mean_ms is not None and evidence.rtt_baseline_ms is not None:
        rtt = f", mean RTT {evidence.rtt_mean_ms:.3g} ms (usual {evidence.rtt_baseline_ms:.3g} ms)"
        return rtt + (f", {lost}" if lost else "")
    return f", {lost}" if lost else ""


def _seconds(value: float | msgspec.UnsetType) -> str:
    return f"{value:.0f} s" if isinstance(value, float | int) else "a while"
