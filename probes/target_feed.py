"""The targets of a site shared by its probe workers through Kafka's consumer-group assignment.

Every worker of a site joins one consumer group on the compacted ``targets`` topic. The group coordinator
gives each worker some of the topic's partitions; a worker probes the targets (of its site) in the
partitions it holds, read from the start of each partition when it gets it. Start a second worker and the
partitions, and so the targets, split; stop or lose one and its partitions move to the others once the
group's session times out. No coordinator of our own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError

from migwatch.contract.codec import decode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import DeadLetter, Target
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients

log = logging.getLogger(__name__)


class TargetFeed(ConsumerRebalanceListener):
    """Calls ``on_change(targets)`` from its own thread whenever this worker's share of targets changes."""

    def __init__(
        self,
        kafka: KafkaSettings,
        site: str,
        on_change: Callable[[list[Target]], None],
        session_timeout_s: float = 10.0,
        on_bad: Callable[[DeadLetter, bytes | None], None] | None = None,
    ) -> None:
        self.kafka = kafka
        self.site = site
        self.on_change = on_change
        self.on_bad = on_bad  # gets the dead letter of each target record that cannot be used
        self.session_timeout_s = session_timeout_s
        self.topic = TopicNames(kafka.topic_prefix).targets
        self.group = f"{kafka.topic_prefix}probes-{site}"
        self.partitions: dict[int, dict[str, Target]] = {}
        self.bad_records = 0
        self._stop = threading.Event()
        self._changed = False
        self._thread = threading.Thread(target=self._run, name="target-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    # ConsumerRebalanceListener: called inside poll(), on the feed's thread.
    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for partition in revoked:
            self.partitions.pop(partition.partition, None)
        self._changed = True

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for partition in assigned:
            self.partitions[partition.partition] = {}
        if assigned:
            self._consumer.seek_to_beginning(*assigned)  # a compacted topic: its whole content is the state
        self._changed = True
        log.warning("target feed %s: partitions %s", self.group, sorted(self.partitions))

    def _run(self) -> None:
        timeout_ms = int(self.session_timeout_s * 1000)
        while not self._stop.is_set():
            try:
                self._consumer = clients.consumer(
                    self.kafka, group_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
                    session_timeout_ms=timeout_ms, heartbeat_interval_ms=max(500, timeout_ms // 4),
                )  # fmt: skip
            except KafkaError as error:
                log.warning("target feed: no broker yet (%s)", error)
                self._stop.wait(1.0)
                continue
            try:
                self._consumer.subscribe([self.topic], listener=self)
                while not self._stop.is_set():
                    for partition, messages in self._consumer.poll(timeout_ms=500).items():
                        for message in messages:
                            self._apply(partition.partition, message.offset, message.key, message.value)
                    if self._changed:
                        self._changed = False
                        self.on_change([t for share in self.partitions.values() for t in share.values()])
            finally:
                self._consumer.close()  # leaves the group: the others take over at once

    def _apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        share = self.partitions.setdefault(partition, {})
        target_id = (key or b"").decode("utf-8", "replace")
        if value is None:
            self._changed |= share.pop(target_id, None) is not None
            return
        try:
            target = decode(Target, value)
        except FieldError as error:
            self.bad_records += 1
            log.error("target feed: bad target %r in %s[%d]: %s", target_id, self.topic, partition, error)
            if self.on_bad is not None:
                self.on_bad(DeadLetter.of(self.topic, partition, offset, str(error), value), key)
            return
        if target.site != self.site:
            self._changed |= share.pop(target_id, None) is not None
            return
        if share.get(target_id) != target:
            share[target_id] = target
            self._changed = True
