"""The publisher in a child process of the probe worker, so that probing and Kafka each get a core.

kafka-python spends about 85 us of CPU per record (measured here: ~11,700 sends/s on one core), and the
probes need most of a core at 10,000 pings/s: under one GIL they cannot both keep up. The worker hands
encoded samples to its child in batches over a pipe, every ``flush_s``; the child runs the
:class:`~migwatch.probes.publisher.Publisher` (ordered queue, spill file, counted drops) and keeps its
counters in shared memory for the worker's metrics.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import struct
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from migwatch.contract.codec import encode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.records import ClockSample, DeadLetter, PingSample
from migwatch.contract.topics import TopicNames

_FRAME = struct.Struct("!BHI")  # topic (0 ping, 1 ntp, 2 deadletter), key length, value length
_COUNTERS = ("sent", "messages", "dropped", "spilled", "queued", "left_over")


def _child(connection: Connection, settings: KafkaSettings, spill: Path, options: dict[str, Any], shared: Any) -> None:
    from migwatch.probes.publisher import Publisher  # imported here: the parent needs no producer

    publisher = Publisher(settings, spill, **options)
    topics = (publisher.topics.ping, publisher.topics.ntp, publisher.topics.deadletter)

    def count() -> None:
        for index, name in enumerate(_COUNTERS):
            shared[index] = getattr(publisher, name)

    try:
        while True:
            if connection.poll(0.5):
                batch = connection.recv_bytes()
                if not batch:
                    break  # the parent closes
                offset = 0
                while offset < len(batch):
                    topic, key_length, value_length = _FRAME.unpack_from(batch, offset)
                    offset += _FRAME.size
                    key = batch[offset : offset + key_length]
                    value = batch[offset + key_length : offset + key_length + value_length]
                    offset += key_length + value_length
                    publisher.publish_raw(topics[topic], key, value)
            count()
    finally:
        publisher.close()
        count()


class PublisherProcess:
    """``publish(sample)`` from the probe loop; the Kafka work happens in a child process."""

    def __init__(self, settings: KafkaSettings, spill_path: Path, flush_s: float = 0.02, **options: Any) -> None:
        self.topics = TopicNames(settings.topic_prefix)
        self.flush_s = flush_s
        self._frames: list[bytes] = []
        self._last_flush = time.monotonic()
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads and a loop
        self._shared = context.Array("q", len(_COUNTERS), lock=False)
        receiving, self._sending = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(receiving, settings, spill_path, options, self._shared), name="publisher",
            daemon=True,
        )  # fmt: skip
        self._process.start()
        receiving.close()

    def publish(self, sample: PingSample | ClockSample) -> None:
        self._frame(0 if isinstance(sample, PingSample) else 1, sample.target.encode(), encode(sample))

    def publish_dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        """A record the probe could not use (a bad target), kept with its reason like the workers' ones."""
        self._frame(2, key or b"", encode(letter))

    def _frame(self, topic: int, key: bytes, value: bytes) -> None:
        self._frames.append(_FRAME.pack(topic, len(key), len(value)))
        self._frames.append(key + value)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if self._frames:
            self._sending.send_bytes(b"".join(self._frames))
            self._frames = []
        self._last_flush = time.monotonic()

    def __getattr__(self, name: str) -> int:
        if name in _COUNTERS:
            return int(self._shared[_COUNTERS.index(name)])
        raise AttributeError(name)

    def close(self, timeout_s: float = 60.0) -> None:
        """Hand over what is left, let the child send (or spill) it, and wait for it."""
        self.flush()
        self._sending.send_bytes(b"")
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
        self._sending.close()


async def flush_regularly(publisher: PublisherProcess) -> None:
    """Hand samples over at least every flush interval, also when few come (long probe intervals)."""
    while True:
        await asyncio.sleep(publisher.flush_s)
        publisher.flush()
