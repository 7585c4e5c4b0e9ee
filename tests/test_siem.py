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


SIEM = SCHEMA.parent


def test_the_index_template_file_is_what_the_alert_record_generates() -> None:
    from migwatch.contract.alert_index import index_template_text

    assert (SIEM / "opensearch" / "index-template.json").read_text() == index_template_text(), (
        "stale: python -m migwatch.contract.alert_index > deploy/siem/opensearch/index-template.json"
    )


def sigma_queries() -> dict[str, str]:
    """Each Sigma rule of deploy/siem/sigma as pySigma's OpenSearch backend writes it (Lucene), by rule id."""
    from sigma.backends.opensearch import OpensearchLuceneBackend
    from sigma.collection import SigmaCollection

    queries = {}
    for path in sorted((SIEM / "sigma").glob("*.yml")):
        collection = SigmaCollection.from_yaml(path.read_text())
        [query] = OpensearchLuceneBackend().convert(collection)
        queries[str(collection.rules[0].id)] = query
    return queries


def rule_queries() -> dict[str, str]:
    """The queries the ready-made OpenSearch monitors and Elastic detection rules carry, by file."""
    queries = {}
    for path in sorted((SIEM / "opensearch").glob("monitor-*.json")):
        monitor = json.loads(path.read_text())
        [search] = monitor["inputs"]
        [_, query_string] = search["search"]["query"]["query"]["bool"]["filter"]
        queries[path.name] = query_string["query_string"]["query"]
    for line in (SIEM / "elastic" / "detection-rules.ndjson").read_text().splitlines():
        rule = json.loads(line)
        assert rule["language"] == "lucene" and rule["index"] == ["migwatch-alerts*"]
        queries[rule["name"]] = rule["query"]
    return queries


def test_the_monitors_and_elastic_rules_say_what_the_sigma_rules_say() -> None:
    """Two rules (a confirmed migration outside a window, a VM gone silent), written three ways: the Sigma
    rule is the source, pySigma's conversion of it is the query the OpenSearch monitor and the Elastic rule run."""
    sigma, rules = sigma_queries(), rule_queries()
    assert len(sigma) == 2 and set(rules.values()) == set(sigma.values()), (sigma, rules)


def test_the_shipper_configs_name_the_topic_and_the_document_id() -> None:
    import yaml

    filebeat = yaml.safe_load((SIEM / "filebeat" / "filebeat.yml").read_text())
    [kafka] = filebeat["filebeat.inputs"]
    assert kafka["type"] == "kafka" and kafka["topics"] == ["migwatch.alerts"]
    assert kafka["parsers"][0]["ndjson"]["document_id"] == "event.id"
    assert filebeat["setup.template.pattern"] == "migwatch-alerts*"
    logstash = (SIEM / "logstash" / "migwatch-alerts.conf").read_text()
    assert 'topics => ["migwatch.alerts"]' in logstash and 'document_id => "%{[event][id]}"' in logstash
    splunk = json.loads((SIEM / "splunk" / "connector.json").read_text())["config"]
    assert splunk["topics"] == "migwatch.alerts" and splunk["splunk.sourcetypes"] == "migwatch:alert"
    assert "[migwatch:alert]" in (SIEM / "splunk" / "props.conf").read_text()
