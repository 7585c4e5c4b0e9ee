"""Publishes samples to Kafka without ever blocking the probes, and loses none while the broker is away.

``publish()`` only appends to a queue. A sender thread takes what gathered within ``linger_s`` (or
``batch_max_samples`` as soon as that many wait), groups it by topic and partition (Kafka's default
partitioner on the target id: every sample of a target in its partition, in order) and sends each group as
one batch message (migwatch.contract.batches; ``batch_max_samples=1``: one sample per message, as before
batches), so the producer's ~85 us per message is paid once per batch. The kafka-python producer
(``acks=all``, idempotent, lz4-compressed) retries a message for as long as the
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

from migwatch.contract import batches
from migwatch.contract.codec import encode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.records import ClockSample, PingSample
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients
from migwatch.kafka_io.partitioning import Partitioner

log = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000
ROUND_MAX = 20_000  # records taken from the queue at once: a round's batches go to the producer together

Record = tuple[str, bytes, bytes]  # topic, key (the target id), value (the encoded sample)


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
        linger_s: float = 0.1,
        batch_max_samples: int = 1000,
        **producer_overrides: Any,
    ) -> None:
        self.topics = TopicNames(settings.topic_prefix)
        self.spill_path = spill_path
        self.memory_limit = memory_limit
        self.spill_limit_bytes = spill_limit_bytes
        self.in_flight_limit = in_flight_limit  # handed to the producer, not yet acknowledged
        self.linger_s = linger_s
        self.batch_max_samples = batch_max_samples
        self.messages = 0  # Kafka messages acknowledged (batches, or single samples)
        # The sample topics, sent in batches (unless one sample per message is asked for).
        self._batched = {self.topics.ping, self.topics.ntp} if batch_max_samples > 1 else set()
        self.sent = 0  # acknowledged by the broker
        self.dropped = 0  # lost to the spill limit (or refused by the broker for good)
        self.spilled = 0  # went through the spill file
        self.retried = 0
        self.left_over = 0  # records kept in the spill file by close() for the next run
        self._memory: deque[Record] = deque()
        self._gathering_since = 0.0  # when the oldest record in memory came (monotonic)
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
        self._partitioners: dict[str, Partitioner] = {}  # topic -> its partitioner
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
                if not self._memory:
                    self._gathering_since = time.monotonic()
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

    def _next_round(self) -> list[Record] | None:
        """The records to send next, oldest first: what gathered within the linger, or at once when a batch's
        worth waits (or when closing); None once closing and empty."""
        with self._lock:
            while True:
                if not self._memory and self._spill_bytes > self._spill_read:
                    self._refill()
                room = self.in_flight_limit - self._in_flight
                if self._memory and room > 0:
                    wait = self._gathering_since + self.linger_s - time.monotonic()
                    if wait <= 0 or len(self._memory) >= self.batch_max_samples or self._closing:
                        records = [self._memory.popleft() for _ in range(min(len(self._memory), room, ROUND_MAX))]
                        self._gathering_since = time.monotonic()  # what stays has gathered since
                        return records
                    self._lock.wait(wait)
                    continue
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
        self._gathering_since = 0.0  # read back from the spill: long past its linger
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
        while (records := self._next_round()) is not None:
            messages = self._messages(records)
            for index, (topic, partition, chunk) in enumerate(messages):
                if not self._send(topic, partition, chunk):
                    # Closing while the broker is away: this message and the rest go back, in order.
                    with self._lock:
                        self._memory.extendleft(reversed([r for _, _, rest in messages[index:] for r in rest]))
                    return
            if not messages and records:  # closing before the topics' partitions were known
                with self._lock:
                    self._memory.extendleft(reversed(records))
                return

    def _messages(self, records: list[Record]) -> list[tuple[str, int, list[Record]]]:
        """The round's records as messages: per topic and partition, in order, cut at ``batch_max_samples``
        samples and at the batch size cap."""
        partitioners: dict[str, Partitioner] = {}
        for topic in {record[0] for record in records}:
            partitioner = self._partitioner(topic)
            if partitioner is None:
                return []
            partitioners[topic] = partitioner
        groups: dict[tuple[str, int], list[Record]] = {}
        for record in records:
            topic, key = record[0], record[1]
            groups.setdefault((topic, partitioners[topic].of(key)), []).append(record)
        messages = []
        limit = batches.MAX_BATCH_BYTES - batches.OVERHEAD
        for (topic, partition), group in groups.items():
            most = self.batch_max_samples if topic in self._batched else 1  # dead letters go one by one
            chunk: list[Record] = []
            size = 0
            for record in group:
                if chunk and (len(chunk) >= most or size + len(record[2]) + 1 > limit):
                    messages.append((topic, partition, chunk))
                    chunk, size = [], 0
                chunk.append(record)
                size += len(record[2]) + 1
            messages.append((topic, partition, chunk))
        return messages

    def _send(self, topic: str, partition: int, chunk: list[Record]) -> bool:
        """Hand one message to the producer, waiting while it has no metadata (the broker is away); False
        when closing meanwhile."""
        assert self._producer is not None
        if topic not in self._batched:
            key, value, headers = chunk[0][1], chunk[0][2], None
        else:
            key, value = None, batches.encode_batch([record[2] for record in chunk])
            headers = [(batches.HEADER, batches.ENCODING)]
        while True:
            try:
                future = self._producer.send(topic, key=key, value=value, partition=partition, headers=headers)
                break
            except KafkaTimeoutError:
                # No metadata: the broker is away. Wait and try again; probing goes on meanwhile.
                self.retried += 1
                if self._closing:
                    return False
                time.sleep(0.5)
        with self._lock:
            self._in_flight += len(chunk)
        future.add_callback(self._acked, len(chunk))
        future.add_errback(self._failed, chunk)
        return True

    def _partitioner(self, topic: str) -> Partitioner | None:
        """Kafka's default partitioner for the topic (the workers check every sample of a batch against it),
        once the broker told its partition count; None when closing while it is away."""
        partitioner = self._partitioners.get(topic)
        while partitioner is None:
            assert self._producer is not None
            try:
                partitioner = self._partitioners[topic] = Partitioner(len(self._producer.partitions_for(topic)))
            except KafkaTimeoutError:
                self.retried += 1
                if self._closing:
                    return None
                time.sleep(0.5)
        return partitioner

    def _acked(self, count: int, _metadata: object) -> None:
        with self._lock:
            self._in_flight -= count
            self.sent += count
            self.messages += 1
            self._lock.notify()

    def _failed(self, chunk: list[Record], error: Exception) -> None:
        with self._lock:
            self._in_flight -= len(chunk)
            if isinstance(error, KafkaError) and error.retriable:
                self._memory.extendleft(reversed(chunk))  # tried for a week or cut short: try again
                self.retried += 1
            else:
                self.dropped += len(chunk)
                log.error("publisher: the broker refused %d samples for good (%s): dropped", len(chunk), error)
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
