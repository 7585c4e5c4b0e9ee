"""Integration with the real Apache Kafka broker: every record type round-trips with kafka-python,
the topics have the contract's layout, and the clients we build on (kafka-python, aiokafka,
faust-streaming) all work against this broker version."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from migwatch.contract.codec import decode, encode
from migwatch.contract.config import parse
from migwatch.contract.records import Alert, ClockSample, DeadLetter, Feedback, PingSample, Target
from migwatch.contract.topics import TOPICS, TopicNames
from migwatch.kafka_io.topic_admin import TopicLayoutError, cleanup_policies, ensure_topics
from migwatch.streams.app import WorkerApp
from migwatch.streams.worker import prepare_topics, with_replication
from migwatch_dev.lab.processes import stop
from tests.conftest import TEST_PARTITIONS
from tests.test_records import CONTRACT_EXAMPLES

pytestmark = pytest.mark.kafka

TOPIC_OF = {
    Target: "targets", PingSample: "ping", ClockSample: "ntp",
    Alert: "alerts", Feedback: "feedback", DeadLetter: "deadletter",
}  # fmt: skip
TARGET_IDS = [f"vm-{i:02d}" for i in range(12)]


def _records(kind: type) -> list[tuple[str, bytes]]:
    """(key, value) for each target id: the contract's example record, moved to that target."""
    records = []
    for target in TARGET_IDS:
        document = msgspec.json.decode(msgspec.json.encode(CONTRACT_EXAMPLES[kind]))
        if kind is Target:
            document["id"] = target
        elif kind is Alert:
            document["migwatch"]["target"] = target
            document["event"]["id"] = f"alert-{target}"
        elif kind is not DeadLetter:
            document["target"] = target
        records.append((target, encode(decode(kind, msgspec.json.encode(document)))))
    return records


def _consume(
    bootstrap: str, topic: str, count: int, timeout_s: float = 30.0, while_true: Callable[[], bool] = lambda: True
) -> list:
    """Up to ``count`` messages from the start of ``topic``; gives up after ``timeout_s`` or once
    ``while_true()`` turns false (the process that should produce them died, say)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=f"test-{uuid.uuid4().hex[:6]}", consumer_timeout_ms=1000,
    )  # fmt: skip
    messages: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline and while_true():
            messages.extend(consumer)
    finally:
        consumer.close()
    return messages


def test_every_record_type_round_trips_through_the_broker(kafka_bootstrap: str, topics: TopicNames) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    sent = {kind: _records(kind) for kind in TOPIC_OF}
    for kind, records in sent.items():
        for key, value in records:
            producer.send(getattr(topics, TOPIC_OF[kind]), key=key.encode(), value=value)
    producer.flush()
    producer.close()

    partition_of: dict[str, dict[str, int]] = {}
    for kind, records in sent.items():
        topic = getattr(topics, TOPIC_OF[kind])
        # Other tests may share the topic: judge the records of this test's keys.
        received = [m for m in _consume(kafka_bootstrap, topic, len(records)) if m.key.decode() in TARGET_IDS]
        assert {m.key.decode(): decode(kind, m.value) for m in received} == {
            key: decode(kind, value) for key, value in records
        }, topic
        assert len(received) == len(records)
        partition_of[TOPIC_OF[kind]] = {m.key.decode(): m.partition for m in received}
    # Keyed by target id, one target's records share a partition number across topics (co-partitioning).
    assert partition_of["ping"] == partition_of["ntp"] == partition_of["alerts"]
    assert len(set(partition_of["ping"].values())) > 1  # the keys do spread over partitions


def test_topics_have_the_contract_layout(kafka_admin: KafkaAdminClient, topics: TopicNames) -> None:
    described = {d["name"]: d for d in kafka_admin.describe_topics(list(topics.all()))}
    assert {name: len(d["partitions"]) for name, d in described.items()} == dict.fromkeys(topics.all(), TEST_PARTITIONS)
    assert cleanup_policies(kafka_admin, list(topics.all())) == {
        topics.prefix + name: policy for name, policy in TOPICS.items()
    }
    assert cleanup_policies(kafka_admin, [topics.targets]) == {topics.targets: "compact"}


def test_ensure_topics_is_idempotent_and_refuses_another_layout(
    kafka_admin: KafkaAdminClient, topics: TopicNames
) -> None:
    assert set(ensure_topics(kafka_admin, topics.prefix, TEST_PARTITIONS).values()) == {"exists"}
    with pytest.raises(TopicLayoutError, match=rf"{topics.ping} has {TEST_PARTITIONS} partitions, wanted 5"):
        ensure_topics(kafka_admin, topics.prefix, 5)


def test_the_worker_makes_faust_changelogs_before_faust_starts(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, topics: TopicNames
) -> None:
    """Laid out as Faust declares them (compacted), with the source topics' partition count."""
    app_id = f"pre-{uuid.uuid4().hex[:6]}"
    config = with_replication(parse("", source="empty.toml", environ={
        "MIGWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap, "MIGWATCH_KAFKA_TOPIC_PREFIX": topics.prefix,
        "MIGWATCH_KAFKA_PARTITIONS": str(TEST_PARTITIONS), "MIGWATCH_WORKER_APP_ID": app_id,
    }))  # fmt: skip
    assert (config.kafka.replication_factor, config.kafka.min_insync_replicas) == (1, 1)  # one broker
    prepare_topics(config, WorkerApp(config).app)
    changelogs = [f"{app_id}-{table}-changelog" for table in ("detectors", "fleets", "chart-slots")]
    counts = {d["name"]: len(d["partitions"]) for d in kafka_admin.describe_topics(changelogs) if not d["error_code"]}
    assert counts == dict.fromkeys(changelogs, TEST_PARTITIONS)
    assert cleanup_policies(kafka_admin, changelogs) == dict.fromkeys(changelogs, "compact")
    kafka_admin.delete_topics([*changelogs, f"{app_id}-__assignor-__leader"])


def test_a_null_value_removes_a_target_from_the_compacted_topic(kafka_bootstrap: str, topics: TopicNames) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    target = Target(id="gone-01", address="192.0.2.99")
    producer.send(topics.targets, key=b"gone-01", value=encode(target))
    producer.send(topics.targets, key=b"gone-01", value=None)
    producer.flush()
    producer.close()
    received = [m for m in _consume(kafka_bootstrap, topics.targets, 2 + len(TARGET_IDS)) if m.key == b"gone-01"]
    assert [m.value for m in received][-2:] == [encode(target), None]


def test_aiokafka_produces_and_consumes(kafka_bootstrap: str, topics: TopicNames) -> None:
    ping = PingSample(target="aio-01", address="192.0.2.5", probe="p", seq=7, ts=1764180000.5, rtt_ms=0.3, ttl=64)

    async def round_trip() -> list:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(topics.ping, key=b"aio-01", value=encode(ping))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topics.ping, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
            group_id=f"aio-{uuid.uuid4().hex[:6]}",
        )  # fmt: skip
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=15_000, max_records=10_000)
            found = [m for messages in batches.values() for m in messages if m.key == b"aio-01"]
            while not found:
                message = await asyncio.wait_for(consumer.getone(), 15)
                found = [message] if message.key == b"aio-01" else []
            return found
        finally:
            await consumer.stop()

    found = asyncio.run(round_trip())
    assert decode(PingSample, found[0].value) == ping


def test_faust_worker_consumes_and_keeps_a_table(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    app_id = f"echo-{uuid.uuid4().hex[:6]}"
    source, sink = f"{app_id}-in", f"{app_id}-out"
    kafka_admin.create_topics([NewTopic(name, TEST_PARTITIONS, 1) for name in (source, sink)])
    env = {
        **os.environ,
        "ECHO_APP_ID": app_id, "ECHO_BOOTSTRAP": kafka_bootstrap, "ECHO_DATADIR": str(tmp_path / "faust"),
        "ECHO_SOURCE": source, "ECHO_SINK": sink, "ECHO_PARTITIONS": str(TEST_PARTITIONS),
    }  # fmt: skip
    log = open(tmp_path / "faust.log", "wb")  # noqa: SIM115 - closed below, after the process
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("faust_echo.py")), "worker", "--loglevel", "warn"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        for i in range(6):
            producer.send(source, key=f"k{i % 2}".encode(), value=f"m{i}".encode())
        producer.flush()
        producer.close()
        echoed = _consume(kafka_bootstrap, sink, 6, timeout_s=90, while_true=lambda: worker.poll() is None)
        assert worker.poll() is None, (tmp_path / "faust.log").read_text()[-3000:]
        assert sorted(m.value for m in echoed) == [b"m0:1", b"m1:1", b"m2:2", b"m3:2", b"m4:3", b"m5:3"], (
            tmp_path / "faust.log"
        ).read_text()[-3000:]
    finally:
        stop(worker)
        log.close()
    changelog = f"{app_id}-counts-changelog"
    assert changelog in kafka_admin.list_topics()
    kafka_admin.delete_topics([source, sink, changelog])


def test_targets_push_list_remove_through_the_compacted_topic(
    kafka_bootstrap: str, topics: TopicNames, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[targets]]\nid = "t-1"\naddress = "192.0.2.1"\n[[targets]]\nid = "t-2"\naddress = "vm.example"\n'
    )
    env = {**os.environ, "MIGWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap, "MIGWATCH_KAFKA_TOPIC_PREFIX": topics.prefix}

    def migwatch(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "migwatch.cli", "targets", *args, "--config", str(config)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert migwatch("push").stdout == f"pushed 2 targets to {topics.targets}\n"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topics.targets, key=b"t-bad", value=b'{"id":"t-bad","address":"300.1.1.1"}')
    producer.flush()
    producer.close()
    listed = migwatch("list")
    ids = {decode(Target, line).id for line in listed.stdout.splitlines()}
    assert {"t-1", "t-2"} <= ids and "t-bad" not in ids
    assert "key 't-bad': address: must be an IPv4/IPv6 address or a host name, got '300.1.1.1'" in listed.stderr
    assert migwatch("remove", "t-1").returncode == 0
    ids = {decode(Target, line).id for line in migwatch("list").stdout.splitlines()}
    assert "t-1" not in ids and "t-2" in ids


def test_an_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[kafka]\nbootstrap = "127.0.0.1:1"\nconnect_timeout_s = 2\n')
    result = subprocess.run(
        [sys.executable, "-m", "migwatch.cli", "targets", "list", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "migwatch: Kafka error: BrokersUnreachableError: cannot connect to 127.0.0.1:1 (PLAINTEXT): "
        "KafkaConnectionError: 111 ECONNREFUSED\n"
    )
