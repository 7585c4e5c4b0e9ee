"""A compacted topic as a table of records by key: the latest record per key is in force, a null value
removes it. ``targets`` (Target by id) and ``silences`` (Silence by id) are such tables; the stream workers
share what their hypervisors show on ``hosts`` (HostView by host id) the same way.

``put``/``remove`` publish and wait until the broker acknowledged each record; ``read`` reads every
partition from its start to its end as of now (the table in force, and one line per bad record);
:class:`~migwatch.kafka_io.compacted_follower.CompactedFollower` keeps following them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from kafka import KafkaConsumer, TopicPartition

from migwatch.contract.codec import decode, encode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.fields import FieldError
from migwatch.kafka_io import clients

R = TypeVar("R")


def from_the_start(
    consumer: KafkaConsumer, topics: list[str]
) -> tuple[list[TopicPartition], dict[TopicPartition, int]]:
    """Assign every partition of ``topics`` from its first message; the partitions and their ends as of now."""
    partitions = [TopicPartition(name, p) for name in topics for p in sorted(consumer.partitions_for_topic(name) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return partitions, consumer.end_offsets(partitions)


class CompactedTopic(Generic[R]):
    """One compacted topic of ``kind`` records, keyed by ``key(record)``."""

    def __init__(self, settings: KafkaSettings, topic: str, kind: type[R], key: Callable[[R], str]) -> None:
        self.settings, self.topic, self.kind, self.key = settings, topic, kind, key

    def put(self, records: Iterable[R]) -> int:
        """Publish each record under its key; how many the broker acknowledged."""
        return self._send((self.key(record), encode(record)) for record in records)

    def remove(self, keys: Iterable[str]) -> int:
        """Publish a tombstone (null value) for each key."""
        return self._send((key, None) for key in keys)

    def _send(self, records: Iterable[tuple[str, bytes | None]]) -> int:
        producer = clients.producer(self.settings)
        try:
            futures = [producer.send(self.topic, key=key.encode(), value=value) for key, value in records]
            producer.flush()
            for future in futures:
                future.get(timeout=30)  # raises the broker's error instead of losing it
        finally:
            producer.close()
        return len(futures)

    def read(self, timeout_s: float = 30.0) -> tuple[dict[str, R], list[str]]:
        """The records in force now by key, and one line per record that could not be used."""
        consumer = clients.consumer(self.settings, enable_auto_commit=False)
        try:
            partitions, ends = from_the_start(consumer, [self.topic])
            if not partitions:
                raise FieldError(f"topic {self.topic} does not exist on {self.settings.bootstrap}")
            table: dict[str, R] = {}
            problems: list[str] = []
            deadline = time.monotonic() + timeout_s
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {self.topic} took longer than {timeout_s:.0f} s")
                for tp, messages in consumer.poll(timeout_ms=500).items():
                    for message in messages:
                        where = f"{tp.topic}[{tp.partition}]@{message.offset}"
                        problem = self.apply(table, message.key, message.value, where)
                        if problem is not None:
                            problems.append(problem)
            return table, problems
        finally:
            consumer.close()

    def apply(self, table: dict[str, R], raw_key: bytes | None, value: bytes | None, where: str) -> str | None:
        """Apply one message to ``table``; what is wrong with it, or None."""
        key = (raw_key or b"").decode("utf-8", "replace")
        if value is None:
            table.pop(key, None)
            return None
        try:
            record = decode(self.kind, value)
        except FieldError as error:
            return f"{where} key {key!r}: {error}"
        if self.key(record) != key:
            return f"{where} key {key!r}: id: must equal the key, got {self.key(record)!r}"
        table[key] = record
        return None
