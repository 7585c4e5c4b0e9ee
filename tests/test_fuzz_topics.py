"""Issue #8, bad input: more than 10,000 malformed messages, made by hypothesis, on the ping, ntp, feedback
and targets topics, among good ones. A real `migwatch worker` (ping, ntp, feedback) and a real
`migwatch probe` (targets, from the compacted topic) must not crash, must put every bad message in the
dead-letter topic with its reason, and must still use every good message around them.

Every mutation is invalid by construction against the contract (not by asking our own decoder)."""

from __future__ import annotations

import base64
import json
import math
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaAdminClient, KafkaProducer

from migwatch.contract import batches
from migwatch.contract.codec import decode
from migwatch.contract.records import DEAD_LETTER_PAYLOAD_BYTES, MAX_DURATION_MS, DeadLetter, PingSample
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io.topic_admin import ensure_topics
from tests.processes import wait_for
from tests.stream_workers import StreamWorker, probe_process, read_all, samples_in, worker_env
from tests.test_streams import PARTITIONS

pytestmark = pytest.mark.kafka
NOW = time.time()
GOOD: dict[str, dict[str, Any]] = {
    "ping": {"v": 1, "target": "vm-1", "address": "192.0.2.1", "kind": "vm", "probe": "p", "seq": 1, "ts": NOW,
             "rtt_ms": 0.5, "ttl": 64},
    "ntp": {"v": 1, "target": "vm-1", "address": "192.0.2.1", "probe": "p", "ts": NOW, "offset_ms": -1.5,
            "delay_ms": 0.4},
    "feedback": {"v": 1, "alert_id": "3f1c", "target": "vm-1", "label": "benign", "ts": NOW, "by": "analyst"},
    "targets": {"v": 1, "id": "vm-1", "address": "192.0.2.1", "site": "fuzz"},
}  # fmt: skip
KEY_FIELD = {"ping": "target", "ntp": "target", "feedback": "target", "targets": "id"}
NUMBERS = {"ping": ["seq", "ts", "rtt_ms"], "ntp": ["ts", "offset_ms", "delay_ms"], "feedback": ["ts"],
           "targets": ["ping_interval_s"]}  # fmt: skip
STRINGS = {"ping": ["target", "address", "probe"], "ntp": ["target", "address", "probe"],
           "feedback": ["alert_id", "target", "label", "by"], "targets": ["id", "address"]}  # fmt: skip
TS_TOPICS = ("ping", "ntp")  # the worker bounds samples' event time (max_sample_ahead_s, max_sample_age_s)


def dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, allow_nan=True).encode()


def mutations(topic: str) -> st.SearchStrategy[tuple[bytes, bytes]]:
    """(key, value) pairs that break the contract for ``topic``, each in one way."""
    good, key = GOOD[topic], GOOD[topic][KEY_FIELD[topic]].encode()
    required = [name for name in good if name not in ("v", "kind", "ttl", "site")]
    not_numbers = st.one_of(st.text(max_size=8), st.lists(st.integers(), max_size=2), st.booleans(),
                            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))  # fmt: skip
    not_strings = st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.text(max_size=3), max_size=2))
    kinds = [
        st.binary(max_size=300).map(lambda junk: (key, b"\xff" + junk)),  # never UTF-8 JSON
        st.sampled_from([b"[]", b"1", b'"x"', b"null", b"true", b"{"]).map(lambda raw: (key, raw)),
        st.sampled_from(required).map(lambda name: (key, dump({k: v for k, v in good.items() if k != name}))),
        st.tuples(st.sampled_from(NUMBERS[topic]), not_numbers).map(lambda p: (key, dump({**good, p[0]: p[1]}))),
        st.tuples(st.sampled_from(STRINGS[topic]), not_strings).map(lambda p: (key, dump({**good, p[0]: p[1]}))),
        st.tuples(st.sampled_from(NUMBERS[topic]), st.sampled_from([math.nan, math.inf, -math.inf]))
        .map(lambda p: (key, dump({**good, p[0]: p[1]}))),
        st.integers(min_value=2, max_value=10**6).map(lambda v: (key, dump({**good, "v": v}))),
        st.binary(max_size=0).map(lambda empty: (key, empty)),
        st.integers(min_value=70_000, max_value=80_000).map(lambda size: (key, dump({**good, "pad": "x" * size}))),
    ]  # fmt: skip
    if topic != "targets":  # a target's key is only its table row: the feed takes the id from the record
        kinds.append(st.text(min_size=1, max_size=10, alphabet="abc").map(lambda other: (b"x-" + other.encode(),
                                                                                         dump(good))))  # fmt: skip
    if topic == "ping":
        kinds.append(st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)
                     .map(lambda rtt: (key, dump({**good, "rtt_ms": rtt}))))  # fmt: skip
        kinds.append(st.floats(min_value=MAX_DURATION_MS * 2, max_value=1e300)
                     .map(lambda rtt: (key, dump({**good, "rtt_ms": rtt}))))  # fmt: skip
    if topic in TS_TOPICS:
        kinds.append(st.floats(min_value=NOW + 3600, max_value=4_000_000_000.0)
                     .map(lambda ts: (key, dump({**good, "ts": ts}))))  # fmt: skip
        kinds.append(
            st.floats(min_value=0.0, max_value=NOW - 30 * 86400).map(lambda ts: (key, dump({**good, "ts": ts})))
        )
    if topic == "targets":
        kinds.append(
            st.sampled_from(["300.1.1.1", "a b", "", "::g"]).map(lambda a: (key, dump({**good, "address": a})))
        )
    return st.one_of(kinds)


PER_TOPIC = {"ping": 4000, "ntp": 3000, "feedback": 2000, "targets": 1200}
BATCH = 40


def produce_bad(producer: KafkaProducer, names: TopicNames, topic: str, sent: Counter[tuple[str, bytes]]) -> None:
    @settings(max_examples=PER_TOPIC[topic] // BATCH, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(mutations(topic), min_size=BATCH, max_size=BATCH))
    def publish(batch: list[tuple[bytes, bytes]]) -> None:
        for key, value in batch:
            producer.send(getattr(names, topic), key=key, value=value)
            sent[topic, value[:DEAD_LETTER_PAYLOAD_BYTES]] += 1  # as its dead letter keeps it

    publish()


def test_thousands_of_malformed_messages_become_dead_letters_and_good_ones_count(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    names = TopicNames(f"fuzz-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20, max_request_size=2_000_000)
    bad: Counter[tuple[str, bytes]] = Counter()  # (topic, payload as a dead letter keeps it)
    good: Counter[str] = Counter()
    for topic in ("ping", "ntp", "feedback", "targets"):
        produce_bad(producer, names, topic, bad)
        for i in range(200 if topic != "targets" else 20):  # good messages among the bad
            document = {**GOOD[topic], "seq": i, "ts": time.time()} if topic == "ping" else dict(GOOD[topic])
            if topic == "ntp":
                document["ts"] = time.time()
            if topic == "targets":
                document["id"] = f"vm-{i}"
                document["address"] = f"127.3.0.{i + 1}"
            key = document[KEY_FIELD[topic]].encode()
            producer.send(getattr(names, topic), key=key, value=dump(document))
            good[topic] += 1
        for _ in range(3):  # and a few 1 MB values
            value = dump({**GOOD[topic], "pad": "x" * 1_000_000})
            producer.send(getattr(names, topic), key=b"vm-1", value=value)
            bad[topic, value[:DEAD_LETTER_PAYLOAD_BYTES]] += 1
    producer.flush(120)
    producer.close()
    total_bad = sum(bad.values())
    assert total_bad >= 10_000, total_bad
    per_topic = Counter({topic: 0 for topic in GOOD})
    for (topic, _), count in bad.items():
        per_topic[topic] += count
    env = worker_env(kafka_bootstrap, names.prefix, PARTITIONS, tmp_path, f"fuzz-{uuid.uuid4().hex[:6]}")
    worker = StreamWorker(env, "fuzz-worker", tmp_path)
    config = tmp_path / "probe.toml"
    config.write_text(f'[probe]\nname = "fuzz-probe"\nsite = "fuzz"\ntargets_from = "topic"\nmetrics_port = 0\n'
                      f'spill_dir = "{tmp_path / "spill"}"\n')  # fmt: skip
    with probe_process(config, env, tmp_path / "probe.log") as probe:
        try:

            def letters() -> Counter[tuple[str, bytes]]:
                found = [decode(DeadLetter, m.value) for m in read_all(kafka_bootstrap, names.deadletter, PARTITIONS)]
                assert all(letter.error for letter in found)
                return Counter((letter.topic.removeprefix(names.prefix), base64.b64decode(letter.payload_b64))
                               for letter in found)  # fmt: skip

            started = time.monotonic()
            wait_for(lambda: sum(letters().values()) >= total_bad, 300,
                     lambda: f"{sum(letters().values())} dead letters of {total_bad}\n{worker.log_tail()}")  # fmt: skip
            print(f"{total_bad} bad messages dead-lettered in {time.monotonic() - started:.0f} s: {dict(per_topic)}")

            # At least the good samples (the probe adds its own, of the good targets it now watches).
            def all_good_counted() -> bool:
                return all(worker.counted().get(getattr(names, t), 0) >= good[t] for t in ("ping", "ntp"))

            wait_for(all_good_counted, 60, lambda: f"good ones counted: {worker.counted()}")
            # Exactly the bad messages, by content, each once: none lost, no good one among them.
            found = letters()
            assert found == bad, (sorted(found - bad)[:5], sorted(bad - found)[:5])
            assert worker.alive() and probe.poll() is None, worker.log_tail()
            assert "vm-1" in worker.status()  # the good samples reached the detectors
            # Every good verdict reached the learners (their alert is unknown here: counted as not learned).
            feedback = re.findall(r'migwatch_worker_feedback_total\{learned="\w+"\} (\S+)',
                                  (worker.get("/metrics") or b"").decode())  # fmt: skip
            assert sum(map(float, feedback)) == good["feedback"], feedback

            # Every good target record took effect: the probe pings each of them.
            def pinged() -> set[str]:  # the probe's batches (this test's messages are single ones)
                messages = read_all(kafka_bootstrap, names.ping, PARTITIONS)
                pings = samples_in([m for m in messages if batches.is_batch(m.headers)], PingSample)
                return {sample.target for sample in pings if sample.probe == "fuzz-probe"}

            wanted = {f"vm-{i}" for i in range(good["targets"])}
            wait_for(lambda: pinged() >= wanted, 60, lambda: f"the probe pinging {sorted(wanted - pinged())}")
        finally:
            worker.stop()
    kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])
