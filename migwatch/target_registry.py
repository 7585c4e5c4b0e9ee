"""The watched targets on the compacted ``targets`` topic: the latest Target per id, a null value removes
one. Probe workers of a site share these targets through the topic (issue #3); this module writes and
reads it."""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import TopicPartition

from migwatch.contract.codec import decode, encode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import Target
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients


def push(settings: KafkaSettings, targets: Iterable[Target]) -> int:
    """Publish each target keyed by its id; returns how many were acknowledged by the broker."""
    return _send(settings, ((target.id, encode(target)) for target in targets))


def remove(settings: KafkaSettings, ids: Iterable[str]) -> int:
    """Publish a tombstone (null value) for each id."""
    return _send(settings, ((target_id, None) for target_id in ids))


def _send(settings: KafkaSettings, records: Iterable[tuple[str, bytes | None]]) -> int:
    topic = TopicNames(settings.topic_prefix).targets
    producer = clients.producer(settings)
    try:
        futures = [producer.send(topic, key=key.encode(), value=value) for key, value in records]
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises the broker's error instead of losing it
    finally:
        producer.close()
    return len(futures)


def current(settings: KafkaSettings, timeout_s: float = 30.0) -> tuple[dict[str, Target], list[str]]:
    """Read the topic from the start to its end now: the targets in force, and one line per bad record."""
    topic = TopicNames(settings.topic_prefix).targets
    consumer = clients.consumer(settings, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            raise FieldError(f"topic {topic} does not exist on {settings.bootstrap}")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        targets: dict[str, Target] = {}
        problems: list[str] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout_s:.0f} s")
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for message in messages:
                    key = (message.key or b"").decode("utf-8", "replace")
                    if message.value is None:
                        targets.pop(key, None)
                        continue
                    where = f"{tp.topic}[{tp.partition}]@{message.offset} key {key!r}"
                    try:
                        target = decode(Target, message.value)
                    except FieldError as error:
                        problems.append(f"{where}: {error}")
                        continue
                    if target.id != key:
                        problems.append(f"{where}: id: must equal the key, got {target.id!r}")
                        continue
                    targets[key] = target
        return targets, problems
    finally:
        consumer.close()
