"""The probe publisher against a real broker: every sample arrives, also across a 20 s broker outage
while probing goes on; the spill file carries samples over a restart of the worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer

from migwatch.contract.config import KafkaSettings, ProbeSettings
from migwatch.contract.records import PingSample, Target
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch.probes.publisher import Publisher
from migwatch.probes.scheduler import Scheduler
from migwatch_dev.local_kafka import LocalKafka
from tests.stream_workers import samples_in

pytestmark = pytest.mark.kafka


def _pings_in(
    bootstrap: str, topic: str, expected: int, probe: str | None = None, timeout_s: float = 60.0
) -> list[PingSample]:
    """The pings on ``topic`` (of ``probe`` only, when given), once ``expected`` of them are there."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )  # fmt: skip
    found: list[PingSample] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            pings = samples_in(consumer, PingSample)
            found.extend(ping for ping in pings if probe is None or ping.probe == probe)
    finally:
        consumer.close()
    return found


def _sample(seq: int) -> PingSample:
    return PingSample(
        target=f"vm-{seq % 7}", address="192.0.2.1", probe="publisher-test", seq=seq, ts=1.0 + seq, rtt_ms=0.3
    )


def test_every_sample_is_acknowledged(kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path) -> None:
    topics = TopicNames(f"publisher-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, topics.prefix, 3)
    publisher = Publisher(KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=topics.prefix), tmp_path / "spill")
    for seq in range(5000):
        publisher.publish(_sample(seq))
    publisher.close()
    assert (publisher.sent, publisher.dropped, publisher.left_over) == (5000, 0, 0)
    assert publisher.messages < 5000 / 10  # in batches: a round's samples per partition in one message
    received = _pings_in(kafka_bootstrap, topics.ping, 5000, probe="publisher-test")
    assert sorted(p.seq for p in received) == list(range(5000))
    by_target: dict[str, list[int]] = defaultdict(list)
    for ping in received:  # consumed partition by partition: each target's samples in the order published
        by_target[ping.target].append(ping.seq)
    assert all(seqs == sorted(seqs) for seqs in by_target.values())
    kafka_admin.delete_topics(list(topics.all()))


def test_a_full_spill_file_drops_counts_and_keeps_the_rest(tmp_path: Path) -> None:
    # No broker at this address: everything waits, first in memory, then in the spill file.
    settings = KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="none.")
    publisher = Publisher(settings, tmp_path / "spill", memory_limit=10, spill_limit_bytes=20 * 200)
    for seq in range(100):
        publisher.publish(_sample(seq))
    assert publisher.dropped > 0 and publisher.spilled > 0
    assert publisher.dropped + publisher.spilled + 10 >= 100
    publisher.close(timeout_s=1)
    assert publisher.left_over == 100 - publisher.dropped  # nothing else lost: kept for the next run


def test_probing_through_a_broker_outage_loses_no_sample(spare_broker: LocalKafka, tmp_path: Path) -> None:
    spare_broker.start()
    admin = KafkaAdminClient(bootstrap_servers=spare_broker.bootstrap)
    ensure_topics(admin, "outage.", 2)
    admin.close()
    targets = [Target(id=f"lo-{i}", address=f"127.3.0.{i + 1}", ping_interval_s=0.1, ntp=False) for i in range(20)]
    kafka = KafkaSettings(bootstrap=spare_broker.bootstrap, topic_prefix="outage.")
    # Small buffers, so the outage also goes through the spill file.
    publisher = Publisher(kafka, tmp_path / "spill", memory_limit=1000, in_flight_limit=500)
    scheduler = Scheduler(ProbeSettings(name="outage"), publisher.publish)
    scheduler.set_targets(targets)

    async def probe_while_the_broker_goes() -> None:
        runner = asyncio.create_task(scheduler.run())
        await asyncio.sleep(5)
        await asyncio.to_thread(spare_broker.stop)  # the broker is away for 20 s ...
        await asyncio.sleep(20)
        await asyncio.to_thread(spare_broker.start)  # ... and comes back with its data
        await asyncio.sleep(10)
        scheduler.stop()
        await runner
        scheduler.close()

    asyncio.run(probe_while_the_broker_goes())
    assert publisher.spilled > 0
    publisher.close(timeout_s=60)
    assert (publisher.dropped, publisher.left_over) == (0, 0)
    received = _pings_in(spare_broker.bootstrap, "outage.ping", publisher.sent)
    by_target: dict[str, list[int]] = defaultdict(list)
    for ping in received:
        by_target[ping.target].append(ping.seq)
    assert set(by_target) == {t.id for t in targets}
    for target, seqs in by_target.items():
        assert sorted(seqs) == list(range(len(seqs))), f"{target}: a gap or a repeat in seq"
    assert sum(len(seqs) for seqs in by_target.values()) == publisher.sent >= 20 * 10 * 30
