"""Follows compacted topics for as long as it runs: every partition of each, from its start, in a thread.

A stream worker must know every target's record, every maintenance window and what every watched
hypervisor showed, whichever partitions of the samples it owns: these topics are small, so each worker
reads all of them (no consumer group). Each table is a :class:`LiveTable`: a read-only mapping whose
contents the follower replaces whole after each poll that changed it (copy on write), so that a reader on
another thread never sees a table change while it iterates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from kafka.errors import KafkaError

from migwatch.contract.config import KafkaSettings
from migwatch.kafka_io import clients
from migwatch.kafka_io.compacted import CompactedTopic, from_the_start

log = logging.getLogger(__name__)


class LiveTable(Mapping[str, Any]):
    """A mapping whose whole contents are replaced at once (``replace``), never changed in place."""

    def __init__(self) -> None:
        self._current: dict[str, Any] = {}

    def replace(self, contents: dict[str, Any]) -> None:
        self._current = contents

    def snapshot(self) -> dict[str, Any]:
        return self._current

    def __getitem__(self, key: str) -> Any:
        return self._current[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current)

    def __len__(self) -> int:
        return len(self._current)


class CompactedFollower:
    """``tables[topic]`` holds the records in force of each followed topic, by key."""

    def __init__(self, settings: KafkaSettings, topics: list[CompactedTopic[Any]]) -> None:
        self.settings = settings
        self.topics = {topic.topic: topic for topic in topics}
        self.tables = {name: LiveTable() for name in self.topics}
        self.bad_records = 0
        self.caught_up = threading.Event()  # set once every partition was read to its end as of the start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="compacted-follower", daemon=True)

    def start(self, wait_s: float = 30.0) -> bool:
        """Start following; wait up to ``wait_s`` until what is in force now was read (True when it was)."""
        self._thread.start()
        return self.caught_up.wait(wait_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = clients.consumer(self.settings, enable_auto_commit=False)
            except KafkaError as error:
                log.warning("compacted follower: no broker yet (%s)", error)
                self._stop.wait(1.0)
                continue
            try:
                self._follow(consumer)
            except KafkaError as error:
                log.warning("compacted follower: %s; reading the topics again", error)
                self._stop.wait(1.0)
            finally:
                consumer.close()

    def _follow(self, consumer: Any) -> None:
        partitions, ends = from_the_start(consumer, list(self.topics))
        # Read from the start into fresh tables; they replace the live ones once read to the end (a topic
        # read again after a broker error may have lost keys meanwhile).
        fresh: dict[str, dict[str, Any]] = {name: {} for name in self.topics}
        caught_up = False
        while not self._stop.is_set():
            polled = consumer.poll(timeout_ms=500)
            changed = {tp.topic for tp in polled}
            working = fresh if not caught_up else {name: dict(self.tables[name].snapshot()) for name in changed}
            for tp, messages in polled.items():
                for message in messages:
                    where = f"{tp.topic}[{tp.partition}]@{message.offset}"
                    problem = self.topics[tp.topic].apply(working[tp.topic], message.key, message.value, where)
                    if problem is not None:
                        self.bad_records += 1
                        log.error("compacted follower: skipped a bad record: %s", problem)
            if caught_up:
                for name in changed:
                    self.tables[name].replace(working[name])
            elif all(consumer.position(tp) >= ends[tp] for tp in partitions):
                for name, table in fresh.items():
                    self.tables[name].replace(table)
                caught_up = True
                self.caught_up.set()
