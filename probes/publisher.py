"""Publishes samples to Kafka without ever blocking the probes, and loses none while the broker is away.

``publish()`` only appends to a queue. A sender thread hands the queue, in order, to a kafka-python
producer (``acks=all``, idempotent, lz4-compressed batches) that retries a record for as long as the
broker is unreachable (``delivery_timeout_ms`` of a week, reconnecting every second). While it is away the
queue grows: up to ``memory_limit`` records in memory, then on into a spill file next to the worker, read
back in order when the broker returns. Only past ``spill_limit_bytes`` are samples dropped, and each drop
is counted, logged loudly and exported as a metric.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.partitioner.default import murmur2

from migwatch.contract.codec import encode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.records import ClockSample, PingSample
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients

log = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000


def _spill_line(topic: str, key: bytes, value: bytes) -> bytes:
    """A record in the spill file: topic, key and value (compact JSON: no tab, no newline) on one line."""
    return topic.encode() + b"\t" + key + b"\t" + value + b"\n"


class Publisher:
    """``publish(sample)`` from any thread; ``close()`` flushes what it can within its timeout."""

    def __init__(
        self,
        settings: KafkaSettings,
        spill_path: Path,
        *,
        memory_limit: int = 200_000,
        spill_limit_bytes: int = 1 << 30,
        in_flight_limit: int = 50_000,
        **producer_overrides: Any,
    ) -> None:
        self.topics = TopicNames(settings.topic_prefix)
        self.spill_path = spill_path
        self.memory_limit = memory_limit
        self.spill_limit_bytes = spill_limit_bytes
        self.in_flight_limit = in_flight_limit  # handed to the producer, not yet acknowledged
        self.sent = 0  # acknowledged by the broker
        self.dropped = 0  # lost to the spill limit (or refused by the broker for good)
        self.spilled = 0  # went through the spill file
        self.retried = 0
        self.left_over = 0  # records kept in the spill file by close() for the next run
        self._memory: deque[tuple[str, bytes, bytes]] = deque()
        self._spill_bytes = 0  # written and not yet read back
        self._spill_read = 0  # read position
        self._in_flight = 0
        self._lock = threading.Condition()
        self._closing = False
        spill_path.parent.mkdir(parents=True, exist_ok=True)
        self._spill = open(spill_path, "a+b")  # noqa: SIM115 - closed in close()
        self._spill_bytes = spill_path.stat().st_size  # a spill left by a previous run is sent first
        self._settings = settings
        self._options = {
            "compression_type": "lz4",
            "linger_ms": 20,
            "batch_size": 256 * 1024,
            "delivery_timeout_ms": WEEK_MS,
            "request_timeout_ms": 10_000,
            "max_block_ms": 5_000,
            "reconnect_backoff_max_ms": 1_000,
            "bootstrap_timeout_ms": 5_000,
            **producer_overrides,
        }
        self._producer: KafkaProducer | None = None  # made by the sender thread, once a broker answers
        self._partitions: dict[str, tuple[dict[bytes, int], list[int]]] = {}  # topic -> (key -> partition, all)
        self._thread = threading.Thread(target=self._send_loop, name="publisher", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------------------------------- producing side

    def publish(self, sample: PingSample | ClockSample) -> None:
        topic = self.topics.ping if isinstance(sample, PingSample) else self.topics.ntp
        self.publish_raw(topic, sample.target.encode(), encode(sample))

    def publish_raw(self, topic: str, key: bytes, value: bytes) -> None:
        with self._lock:
            if self._spill_bytes or len(self._memory) >= self.memory_limit:
                # Once anything is in the spill file, newer records go there too: order is kept.
                line = _spill_line(topic, key, value)
                if self._spill_bytes + len(line) > self.spill_limit_bytes:
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 10_000 == 0:
                        log.error("publisher: spill file %s is full: %d samples dropped", self.spill_path, self.dropped)
                    return
                self._spill.seek(0, 2)
                self._spill.write(line)
                self._spill_bytes += len(line)
                self.spilled += 1
            else:
                self._memory.append((topic, key, value))
            self._lock.notify()

    @property
    def queued(self) -> int:
        """Records not yet acknowledged: in memory, in the spill file (estimated), handed to the producer."""
        return len(self._memory) + self._in_flight + self._spill_lines_estimate()

    def _spill_lines_estimate(self) -> int:
        unread = self._spill_bytes - self._spill_read
        return max(0, unread // 200)  # samples are about 200 bytes

    # ----------------------------------------------------------------------------------------- sending side

    def _next(self) -> tuple[str, bytes, bytes] | None:
        """The oldest record waiting, refilling memory from the spill file; None once closing and empty."""
        with self._lock:
            while True:
                if not self._memory and self._spill_bytes > self._spill_read:
                    self._refill()
                if self._memory and self._in_flight < self.in_flight_limit:
                    return self._memory.popleft()
                if self._closing and not self._memory and self._spill_bytes <= self._spill_read:
                    return None
                self._lock.wait(0.5)

    def _refill(self) -> None:
        self._spill.flush()
        self._spill.seek(self._spill_read)
        for _ in range(self.memory_limit // 2 or 1):
            line = self._spill.readline()
            if not line:
                break
            self._spill_read += len(line)
            topic, key, value = line.rstrip(b"\n").split(b"\t", 2)
            self._memory.append((topic.decode(), key, value))
        if self._spill_read >= self._spill_bytes:
            self._spill.truncate(0)  # all read back: start the file afresh
            self._spill_bytes = self._spill_read = 0

    def _connect(self) -> KafkaProducer | None:
        """A producer, once a broker answers: probing starts (and samples queue) while none does."""
        while self._producer is None and not self._closing:
            try:
                self._producer = clients.producer(self._settings, **self._options)
            except KafkaError as error:
                log.warning("publisher: no broker yet (%s); samples wait", error)
                with self._lock:
                    self._lock.wait(1.0)
        return self._producer

    def _send_loop(self) -> None:
        if self._connect() is None:
            return
        assert self._producer is not None
        while (record := self._next()) is not None:
            topic, key, value = record
            while True:
                try:
                    partition = self._partition(topic, key)
                    future = self._producer.send(topic, key=key, value=value, partition=partition)
                    break
                except KafkaTimeoutError:
                    # No metadata: the broker is away. Wait and try again; probing goes on meanwhile.
                    self.retried += 1
                    if self._closing:
                        with self._lock:
                            self._memory.appendleft(record)
                        return
                    time.sleep(0.5)
            with self._lock:
                self._in_flight += 1
            future.add_callback(self._acked)
            future.add_errback(self._failed, record)

    def _partition(self, topic: str, key: bytes) -> int:
        """Kafka's default partition for the key (murmur2), computed once per target: kafka-python's
        partitioner is pure Python and would hash every sample's key again."""
        cache = self._partitions.get(topic)
        if cache is None:
            assert self._producer is not None
            cache = self._partitions[topic] = ({}, sorted(self._producer.partitions_for(topic)))
        chosen, partitions = cache
        partition = chosen.get(key)
        if partition is None:
            partition = chosen[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        return partition

    def _acked(self, _metadata: object) -> None:
        with self._lock:
            self._in_flight -= 1
            self.sent += 1
            self._lock.notify()

    def _failed(self, error: Exception, record: tuple[str, bytes, bytes]) -> None:
        with self._lock:
            self._in_flight -= 1
            if isinstance(error, KafkaError) and error.retriable:
                self._memory.appendleft(record)  # tried for a week or cut short: try again
                self.retried += 1
            else:
                self.dropped += 1
                log.error("publisher: the broker refused a sample for good (%s): dropped", error)
            self._lock.notify()

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is queued (memory and spill) within ``timeout_s``; what is left stays in the spill file."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._producer is not None:
            self._producer.flush(timeout=max(0.1, deadline - time.monotonic()))
            self._producer.close(timeout=1)
        with self._lock:
            # Anything not sent stays for the next run, oldest first: memory, then the unread spill.
            self._spill.flush()
            self._spill.seek(self._spill_read)
            unread = self._spill.read()
            kept = b"".join(_spill_line(*record) for record in self._memory)
            self._memory.clear()
            self._spill.seek(0)
            self._spill.truncate(0)
            self._spill.write(kept + unread)
            self.left_over = (kept + unread).count(b"\n")
        self._spill.close()
        if self.left_over:
            log.warning("publisher: %d samples kept in %s for the next run", self.left_over, self.spill_path)
