"""Every field an alert carries exists in the Elastic Common Schema with the right type, or is ours under
``migwatch`` (issue #19). ``tests/data/ecs-8.17.0-fields.csv`` is ECS's own flat field list (Field, Type, Level
of ``generated/csv/fields.csv`` at the ECS tag v8.17.0, Apache-2.0, github.com/elastic/ecs), and
``ecs-8.17.0-allowed-values.json`` the allowed values of event.kind, event.category and event.type with the
types each category expects (``generated/ecs/ecs_flat.yml`` of the same tag)."""

from __future__ import annotations

import csv
import ipaddress
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from migwatch.contract.config import AlertLinks
from migwatch.contract.records import ECS_VERSION, Alert, ClockSample, PingSample, Target
from migwatch.contract.silences import Silence
from migwatch.detectors.target_group import Directory, TargetGroup
from migwatch.replay import replay
from migwatch_dev.synthetic import START_TS, Episode, generate

DATA = Path(__file__).parent / "data"
CORPUS = Path(__file__).resolve().parents[1] / "deploy" / "dev" / "corpus"


def ecs_fields() -> dict[str, str]:
    with open(DATA / f"ecs-{ECS_VERSION}-fields.csv", newline="") as file:
        return {row["Field"]: row["Type"] for row in csv.DictReader(file)}


def _leaves(document: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in document.items():
        if isinstance(value, dict) and key != "labels":
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_date(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# What JSON value each ECS type takes (the types our alerts use; any other type fails the check).
TYPE_CHECKS = {
    "keyword": lambda value: isinstance(value, str),
    "match_only_text": lambda value: isinstance(value, str),
    "ip": _is_ip,
    "date": _is_date,
    "float": _is_number,
    "scaled_float": _is_number,
    "long": lambda value: _is_number(value) and isinstance(value, int),
    "object": lambda value: isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
}


def _fits(ecs_type: str, value: Any) -> bool:
    """A JSON value an ECS field of that type takes (ECS fields may hold arrays of their type)."""
    check = TYPE_CHECKS.get(ecs_type)
    values = value if isinstance(value, list) else [value]
    return check is not None and all(check(item) for item in values)


def ecs_violations(alert: dict[str, Any]) -> list[str]:
    """What in one alert (as JSON) is not ECS: an unknown field outside ``migwatch``, a value of the wrong
    type, an event.kind/category/type that ECS does not allow, or a type its category does not expect."""
    fields = ecs_fields()
    allowed = json.loads((DATA / f"ecs-{ECS_VERSION}-allowed-values.json").read_text())
    wrong = []
    for path, value in _leaves(alert):
        if path.startswith("migwatch."):
            continue
        if path not in fields:
            wrong.append(f"{path}: not an ECS field")
        elif not _fits(fields[path], value):
            wrong.append(f"{path}: {value!r} is not of ECS type {fields[path]}")
    event = alert["event"]
    if event["kind"] not in allowed["event.kind"]:
        wrong.append(f"event.kind: {event['kind']!r} not allowed")
    for category in event["category"]:
        expected = allowed["event.category"].get(category)
        if expected is None:
            wrong.append(f"event.category: {category!r} not allowed")
            continue
        wrong += [
            f"event.type: {kind!r} not one {category!r} expects" for kind in event["type"] if kind not in expected
        ]
    return wrong


def _unanswered(sample: PingSample | ClockSample) -> PingSample | ClockSample:
    if isinstance(sample, PingSample):
        return msgspec.structs.replace(sample, rtt_ms=None, ttl=None)
    return msgspec.structs.replace(sample, offset_ms=None, delay_ms=None, error="timeout")


def _alerts_of_every_kind() -> list[Alert]:
    """Alerts of every action and state: synthetic migrations and look-alikes, a VM that vanished, a planned
    move in a maintenance window, a VM addressed by a DNS name, and the relocated corpus (vm-relocated)."""
    samples, _ = generate(
        [Episode("migration", "vm-1", 300.0, copy_s=20.0, downtime_s=0.5),
         Episode("migration", "vm-dns", 300.0, copy_s=20.0, downtime_s=0.5),
         Episode("ttl-change", "vm-2", 200.0)],
        targets=["vm-1", "vm-2", "vm-3", "vm-dns"], duration_s=600.0,
    )  # fmt: skip
    samples = [
        msgspec.structs.replace(s, address="vm-dns.example.internal") if s.target == "vm-dns" else s for s in samples
    ]
    # vm-3 vanishes after its 400th second: the probe asks on, unanswered, until it answers again at 550 s.
    samples = [_unanswered(s) if s.target == "vm-3" and START_TS + 400 <= s.ts < START_TS + 550 else s for s in samples]
    targets = [Target(id="vm-1", address="10.0.0.0", site="dc1", labels={"team": "db", "env": "prod"},
                      hosts=["hv-1", "hv-2"]),
               Target(id="vm-dns", address="vm-dns.example.internal", site="dc2")]  # fmt: skip
    silences = [Silence(id="patch-night", start=START_TS + 250, end=START_TS + 900, targets=["vm-dns"])]
    fleet = TargetGroup(
        directory=Directory.of(targets, silences),
        links=AlertLinks(public_url="https://migwatch.example/fleet", runbook_url="https://wiki.example/vm-moved"),
    )
    alerts = [alert for sample in samples for alert in fleet.update(sample)]
    # The lab's moves far away (vm-relocated), and its look-alikes (issue #20): pauses, clock steps, route
    # changes, reboots.
    for run in ("relocated", "benign", "capped"):
        alerts += replay(CORPUS / run / "trace-1000ms.jsonl.gz", quiet=True)
    return alerts


ALERTS = _alerts_of_every_kind()


def test_the_alerts_cover_every_action_and_state() -> None:
    kinds = {(a.event.action, a.migwatch.state) for a in ALERTS}
    assert kinds >= {
        ("vm-live-migration", "suspected"), ("vm-live-migration", "likely"), ("vm-live-migration", "confirmed"),
        ("vm-live-migration", "cleared"), ("vm-relocated", "confirmed"), ("vm-silent", "suspected"),
        ("vm-silent", "cleared"), ("vm-paused", "suspected"), ("vm-clock-step", "suspected"),
        ("vm-rebooted", "suspected"), ("vm-route-change", "suspected"),
    }  # fmt: skip
    assert {a.migwatch.outcome for a in ALERTS if a.migwatch.state != "cleared"} == {"expected", "unexpected"}


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: f"{a.migwatch.target}-{a.event.action}-{a.migwatch.state}")
def test_every_field_of_every_alert_is_ecs(alert: Alert) -> None:
    document = json.loads(msgspec.json.encode(alert))
    assert ecs_violations(document) == []
    assert document["ecs"]["version"] == ECS_VERSION
    assert document["message"].startswith(f"vm {alert.migwatch.target}:")
    assert document["rule"]["id"].startswith("migwatch-") and document["rule"]["description"]


def test_the_checker_finds_what_is_not_ecs() -> None:
    """The check above can fail: a DNS name in host.ip, a field ECS does not have, a type host events do not
    take, a string where ECS has a float."""
    document = json.loads(msgspec.json.encode(ALERTS[0]))
    document["host"]["ip"] = ["web-01.example"]
    document["observer"]["vendor_name"] = "x"
    document["event"]["type"] = ["change", "allowed"]
    document["event"]["risk_score"] = "high"
    assert sorted(ecs_violations(document)) == [
        "event.risk_score: 'high' is not of ECS type float",
        "event.type: 'allowed' not one 'host' expects",
        "host.ip: ['web-01.example'] is not of ECS type ip",
        "observer.vendor_name: not an ECS field",
    ]


def test_a_dns_address_is_a_hostname_and_links_and_labels_are_carried() -> None:
    dns = [a for a in ALERTS if a.migwatch.target == "vm-dns"]
    assert dns and all(a.host.ip is msgspec.UNSET and a.host.hostname == "vm-dns.example.internal" for a in dns)
    assert all(a.related.ip is msgspec.UNSET for a in dns)
    vm1 = [a for a in ALERTS if a.migwatch.target == "vm-1"]
    assert all(a.host.ip == ["10.0.0.0"] and a.labels == {"team": "db", "env": "prod"} for a in vm1)
    assert all(a.migwatch.site == "dc1" and a.event.url == "https://migwatch.example/fleet/#vm-1" for a in vm1)
    assert all(a.event.reference == a.event.url and a.rule.reference == "https://wiki.example/vm-moved" for a in vm1)
    confirmed = next(a for a in vm1 if a.migwatch.state == "confirmed")
    assert confirmed.message.startswith("vm vm-1: live migration confirmed, clock ")
    assert confirmed.rule.name == "ntp-time-lag" and confirmed.event.risk_score == confirmed.migwatch.likelihood
    assert confirmed.event.risk_score_norm == round(100 * confirmed.migwatch.likelihood, 1)
    cleared = [a for a in ALERTS if a.migwatch.state == "cleared"]
    assert cleared and all(a.event.type == ["end"] and a.event.risk_score == 0.0 for a in cleared)


def test_a_vanished_vm_gets_a_silent_alert_and_one_when_it_answers_again() -> None:
    silent = [a for a in ALERTS if a.event.action == "vm-silent" and a.migwatch.target == "vm-3"]
    assert [(a.migwatch.target, a.migwatch.state) for a in silent] == [("vm-3", "suspected"), ("vm-3", "cleared")]
    told, back = silent
    assert told.migwatch.detected_ts - (START_TS + 400) == pytest.approx(120.0, abs=1.5)
    assert told.event.severity == 3 and told.rule.name == "vm-silent" and "silent for 12" in told.message
    assert back.migwatch.detected_ts == pytest.approx(START_TS + 550, abs=1.5)
    assert back.message.startswith("vm vm-3: answers again after 1")
