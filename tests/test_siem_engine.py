"""Alerts into a real OpenSearch (2.19.6, ``deploy/local/opensearch``) through ``migwatch alerts ship``
(issue #19): the index template maps every field with its ECS type, a SOC's detection queries find them,
an alert of a VM addressed by a DNS name is indexed, the engine stopped for 30 s loses nothing and repeats
nothing, and what the engine or the record refuses is a dead letter that says why. The pipeline test
(tests/test_pipeline.py) ships a real worker's alerts the same way."""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka import KafkaAdminClient, KafkaProducer

from migwatch.contract.records import ECS_VERSION, Alert, DeadLetter
from migwatch.contract.topics import TopicNames
from migwatch.detectors.alert_text import stamp_created
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.local_opensearch import LocalOpenSearch
from tests.processes import wait_for
from tests.stream_workers import read_all
from tests.test_ecs import ALERTS, DATA
from tests.test_siem import SIEM, rule_queries, sigma_queries

pytestmark = pytest.mark.kafka
PARTITIONS = 3
# The SOC's detection query for a confirmed migration (deploy/siem: the Sigma and OpenSearch rules).
DETECTION = "event.action:vm-live-migration AND migwatch.state:confirmed"
UNIQUE = {alert.event.id for alert in ALERTS}


def search(node: LocalOpenSearch, index: str, query: dict[str, Any], size: int = 1000) -> list[dict[str, Any]]:
    """The documents a query finds."""
    return [hit["_source"] for hit in node.search(index, {"query": query, "size": size})["hits"]["hits"]]


@pytest.fixture
def shipping(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> Iterator[tuple[TopicNames, str, Path]]:
    """Fresh topics, an index name of this test's own, and a config naming them."""
    names = TopicNames(f"ship-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    config = tmp_path / "ship.toml"
    config.write_text(f'[kafka]\nbootstrap = "{kafka_bootstrap}"\ntopic_prefix = "{names.prefix}"\n')
    yield names, f"migwatch-alerts-{names.prefix.strip('.')}", config
    kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])


def shipper(config: Path, node_url: str, index: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "migwatch.cli", "alerts", "ship", "--config", str(config), "--to", node_url,
         "--index", index, *extra],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"), env={**os.environ},
    )  # fmt: skip


def publish(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def encoded(alerts: list[Alert]) -> list[tuple[bytes, bytes]]:
    now = time.time()
    for alert in alerts:
        stamp_created(alert, now)  # as a live worker sends them
    return [(a.migwatch.target.encode(), msgspec.json.encode(a)) for a in alerts]


def test_every_field_is_mapped_with_its_ecs_type_and_detection_queries_find_the_alerts(
    kafka_bootstrap: str, opensearch: LocalOpenSearch, shipping: tuple[TopicNames, str, Path], tmp_path: Path
) -> None:
    names, index, config = shipping
    publish(kafka_bootstrap, names.alerts, encoded(ALERTS))
    done = subprocess.run(
        [sys.executable, "-m", "migwatch.cli", "alerts", "ship", "--config", str(config), "--to", opensearch.url,
         "--index", index, "--count", str(len(ALERTS))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"shipped {len(ALERTS)} alerts" in done.stderr
    assert opensearch.count(index) == len(UNIQUE)

    with urllib.request.urlopen(f"{opensearch.url}/{index}/_mapping", timeout=30) as response:
        mapping = next(iter(json.load(response).values()))["mappings"]["properties"]
    with open(DATA / f"ecs-{ECS_VERSION}-fields.csv", newline="") as file:
        ecs = {row["Field"]: row["Type"] for row in csv.DictReader(file)}

    def mapped(path: str) -> str:
        node: dict[str, Any] = {"properties": mapping}
        for name in path.split("."):
            node = node["properties"][name]
        return str(node.get("type", "object"))

    emitted = {path for a in ALERTS for path in _paths(json.loads(msgspec.json.encode(a)))}
    for path in sorted(p for p in emitted if not p.startswith(("migwatch.", "labels."))):
        assert mapped(path) == {"match_only_text": "text"}.get(ecs[path], ecs[path]), path
    assert mapped("labels.team") == "keyword" and mapped("migwatch.detected_ts") == "double"

    confirmed = search(opensearch, index, {"query_string": {"query": DETECTION}})
    expected = {(a.migwatch.target, a.migwatch.detected_ts) for a in ALERTS
                if a.event.action == "vm-live-migration" and a.migwatch.state == "confirmed"}  # fmt: skip
    assert {(d["migwatch"]["target"], d["migwatch"]["detected_ts"]) for d in confirmed} == expected
    # Typed: a range on @timestamp (a date), a term on host.name (a keyword), host.ip as an address block.
    first = min(a.migwatch.detected_ts for a in ALERTS if a.migwatch.target == "vm-1")
    typed = search(opensearch, index, {"bool": {"filter": [
        {"range": {"@timestamp": {"gte": int(first * 1000), "format": "epoch_millis"}}},
        {"term": {"host.name": "vm-1"}}, {"term": {"host.ip": "10.0.0.0/24"}},
    ]}})  # fmt: skip
    assert len(typed) == sum(a.migwatch.target == "vm-1" for a in ALERTS)
    named = search(opensearch, index, {"term": {"host.hostname": "vm-dns.example.internal"}})
    assert named and all("ip" not in d["host"] for d in named)  # a DNS name is indexed, never put in host.ip
    silent = search(
        opensearch, index, {"query_string": {"query": "event.action:vm-silent AND migwatch.state:suspected"}}
    )
    expected_silent = [
        a.migwatch.target for a in ALERTS if a.event.action == "vm-silent" and a.migwatch.state != "cleared"
    ]
    assert sorted(d["host"]["name"] for d in silent) == sorted(expected_silent) and "vm-3" in expected_silent
    ready_made_rules_find_what_they_say(opensearch, index)


def ready_made_rules_find_what_they_say(node: LocalOpenSearch, index: str) -> None:
    """deploy/siem's Sigma rules (through pySigma), OpenSearch monitors and Elastic rules, run on the engine:
    the confirmed migrations outside a maintenance window, and the VM that went silent."""
    unplanned = {a.event.id for a in ALERTS if a.event.action == "vm-live-migration"
                 and a.migwatch.state == "confirmed" and a.migwatch.outcome != "expected"}  # fmt: skip
    silent = {a.event.id for a in ALERTS if a.event.action == "vm-silent" and a.migwatch.state == "suspected"}
    assert unplanned and silent and any(a.migwatch.outcome == "expected" for a in ALERTS)
    queries = {**sigma_queries(), **rule_queries()}
    found_by_query = {}
    for name, query in queries.items():
        found = {d["event"]["id"] for d in search(node, index, {"query_string": {"query": query}})}
        assert found in (unplanned, silent), (name, query, found)
        found_by_query[query] = found
    # A monitor as OpenSearch's alerting plugin runs it: its whole query, over a period (2 min) that ends just
    # after the last alert it is to find, and one that ends 5 min later (nothing new: no trigger).
    detected = {a.event.id: a.migwatch.detected_ts for a in ALERTS}
    for path in sorted((SIEM / "opensearch").glob("monitor-*.json")):
        query = rule_queries()[path.name]
        last_ms = int(max(detected[i] for i in found_by_query[query]) * 1000) + 1
        totals = []
        for end_ms in (last_ms, last_ms + 300_000):
            [search_input] = json.loads(path.read_text().replace("{{period_end}}", str(end_ms)))["inputs"]
            totals.append(node.search(index, search_input["search"]["query"])["hits"]["total"]["value"])
        # The trigger's condition is ctx.results[0].hits.total.value > 0.
        assert totals[0] > 0 and totals[1] == 0, (path.name, totals)


def _paths(document: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in document.items():
        if isinstance(value, dict):
            yield from _paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_the_engine_away_for_30_s_loses_nothing_repeats_nothing_and_refusals_are_dead_letters(
    kafka_bootstrap: str, opensearch: LocalOpenSearch, shipping: tuple[TopicNames, str, Path], tmp_path: Path
) -> None:
    names, index, config = shipping
    before, during = ALERTS[: len(ALERTS) // 2], ALERTS[len(ALERTS) // 2 :]
    # Refused by the record (not an alert) and by the engine (an address that is none, in an ip field).
    refused_by_engine = json.loads(msgspec.json.encode(ALERTS[0]))
    refused_by_engine["event"]["id"] = "refused-by-engine"
    refused_by_engine["related"]["ip"] = ["not-an-address"]
    bad = [(b"vm-x", b'{"event": "not an alert"}'), (b"vm-1", json.dumps(refused_by_engine).encode())]
    log = tmp_path / "shipper.log"
    process = shipper(config, opensearch.url, index, log)
    try:
        publish(kafka_bootstrap, names.alerts, encoded(before))
        wait_for(lambda: opensearch.count(index) == len(before), 60, log.read_text)
        opensearch.stop()
        stopped = time.monotonic()
        # While it is away: the rest, the two refusals, and every alert of before again (a worker's restart).
        publish(kafka_bootstrap, names.alerts, encoded(during) + bad + encoded(before))
        time.sleep(max(0.0, 30.0 - (time.monotonic() - stopped)))
        opensearch.start()
        restarted = time.monotonic()
        wait_for(lambda: opensearch.count(index) == len(UNIQUE), 120, log.read_text)
        print(f"all {len(UNIQUE)} alerts indexed {time.monotonic() - restarted:.1f} s after the engine came back")
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(30)
    text = log.read_text()
    assert "the search engine is unavailable" in text, text
    ids = {d["event"]["id"] for d in search(opensearch, index, {"match_all": {}})}
    assert ids == UNIQUE  # each once, the refused one not
    letters = [msgspec.json.decode(m.value, type=DeadLetter) for m in read_all(kafka_bootstrap, names.deadletter,
                                                                               PARTITIONS)]  # fmt: skip
    by_payload = {base64.b64decode(letter.payload_b64): letter.error for letter in letters}
    assert set(by_payload) == {value for _, value in bad}
    assert by_payload[bad[0][1]].startswith("not an alert: ")
    assert "the search engine refused it (HTTP 400)" in by_payload[bad[1][1]]
    assert "related.ip" in by_payload[bad[1][1]] or "not-an-address" in by_payload[bad[1][1]]
    committed = _committed(kafka_bootstrap, names.alerts)
    total = len(before) * 2 + len(during) + len(bad)
    assert committed == total, f"committed {committed} of {total}"


def _committed(bootstrap: str, topic: str) -> int:
    """The shipper group's committed offsets on the topic, summed (= messages shipped or dead-lettered)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets("migwatch-shipper")["migwatch-shipper"]
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


def test_the_ship_verb_names_a_bad_url_and_index(shipping: tuple[TopicNames, str, Path]) -> None:
    _, _, config = shipping
    for extra, said in (
        (["--to", "ftp://engine:9200"], "--to: must be an http:// or https:// URL of the search engine, got "
                                        "'ftp://engine:9200'"),
        (["--to", "http://127.0.0.1:9", "--index", "Alerts!"],
         "--index: must be a lowercase index name, got 'Alerts!'"),
        ([], "--to: alerts ship needs the search engine's URL"),
    ):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "migwatch.cli", "alerts", "ship", "--config", str(config), *extra],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 2 and said in done.stderr, done.stderr
