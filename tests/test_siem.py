"""The Alert JSON Schema for SIEMs (deploy/siem/alert.schema.json) is what the Alert record generates, and agrees
with the record: it takes the contract's example and the detectors' alerts, and refuses what the record refuses."""

from __future__ import annotations

import json

import msgspec
import pytest

from migwatch.contract.alert_schema import alert_schema_text
from migwatch.contract.codec import decode
from migwatch.contract.fields import FieldError
from migwatch.contract.records import Alert
from migwatch.detectors.target_group import TargetGroup
from migwatch_dev.synthetic import Episode, generate
from tests.siem import SCHEMA, alert_schema_validator
from tests.test_records import CONTRACT_EXAMPLES

CONTRACT_EXAMPLE = CONTRACT_EXAMPLES[Alert]


def test_the_schema_file_is_what_the_alert_record_generates() -> None:
    assert SCHEMA.read_text() == alert_schema_text(), (
        "the schema file is stale: python -m migwatch.contract.alert_schema > deploy/siem/alert.schema.json"
    )


def test_the_contract_example_and_every_detector_alert_are_valid() -> None:
    validator = alert_schema_validator()
    assert not list(validator.iter_errors(CONTRACT_EXAMPLE))
    samples, _ = generate(
        [Episode("migration", "vm-1", 300.0, copy_s=20.0, downtime_s=0.5),
         Episode("ttl-change", "vm-2", 200.0)],
        targets=["vm-1", "vm-2", "vm-3"], duration_s=600.0,
    )  # fmt: skip
    fleet = TargetGroup()
    alerts = [alert for sample in samples for alert in fleet.update(sample)]
    assert {a.migwatch.state for a in alerts} >= {"suspected", "likely", "confirmed", "cleared"}
    for alert in alerts:
        assert not list(validator.iter_errors(json.loads(msgspec.json.encode(alert))))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("event.severity", 5),
        ("event.risk_score", 101.0),
        ("migwatch.state", "maybe"),
        ("migwatch.phase", "teleported"),
        ("migwatch.likelihood", 1.5),
        ("migwatch.evidence.outliers", -1),
        ("@timestamp", "yesterday"),
        ("migwatch.target", "two words"),
    ],
)
def test_what_the_record_refuses_the_schema_refuses(path: str, value: object) -> None:
    document = json.loads(json.dumps(CONTRACT_EXAMPLE))
    *parents, leaf = path.split(".") if path != "@timestamp" else ["@timestamp"]
    node = document
    for name in parents:
        node = node[name]
    node[leaf] = value
    with pytest.raises(FieldError):
        decode(Alert, json.dumps(document))
    assert list(alert_schema_validator().iter_errors(document))


def test_a_missing_required_field_is_refused_by_both() -> None:
    document = json.loads(json.dumps(CONTRACT_EXAMPLE))
    del document["migwatch"]["detected_ts"]
    with pytest.raises(FieldError):
        decode(Alert, json.dumps(document))
    assert list(alert_schema_validator().iter_errors(document))
