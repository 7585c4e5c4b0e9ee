"""Event-time alignment of the co-partitioned sample topics, so that a worker sees a partition's samples in
``ts`` order as a replay does.

A worker reading a backlog (after a restart, a takeover, a backfill by ``migwatch publish``) gets the
``ping`` and ``ntp`` messages of a partition at different event times: Kafka's fetcher hands out what each
topic-partition has, and a clock sample from minutes later would reach the detectors before the pings that
came first, raising other alerts than the replay of the same samples. So a sample waits while the other
topic of its partition still has unread messages and has not yet reached the sample's ``ts``. A topic that is
caught up (the live case: both topics read to their end) holds nothing back, nor does one that is idle.

    >>> aligner = Aligner(("ping", "ntp"))
    >>> aligner.add("ping", 0, 10, [(1.0, "p1"), (2.0, "p2"), (3.0, "p3")])
    >>> aligner.add("ntp", 0, 4, [(1.5, "n1")])
    >>> aligner.release(0, behind={("ntp", 0)})  # ntp has unread messages: only what it has reached goes
    ['p1', 'n1']
    >>> aligner.release(0, behind=set())  # both caught up
    ['p2', 'p3']
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Aligner(Generic[T]):
    """Per partition, the samples not yet released, in ``ts`` order (ties in arrival order), and per
    topic-partition how far it has come: the last offset and the greatest ``ts`` seen."""

    def __init__(self, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self._held: dict[int, list[tuple[float, int, T]]] = {}
        self._order = 0  # arrival order, for stable ties
        self.reached: dict[tuple[str, int], float] = {}  # (topic, partition) -> the greatest ts seen
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> the last offset seen

    def add(self, topic: str, partition: int, offset: int, samples: Iterable[tuple[float, T]]) -> None:
        """The samples of one message (topic, partition, offset): held until released."""
        held = self._held.setdefault(partition, [])
        reached = self.reached.get((topic, partition), float("-inf"))
        for ts, item in samples:
            heapq.heappush(held, (ts, self._order, item))
            self._order += 1
            reached = max(reached, ts)
        self.reached[(topic, partition)] = reached
        self.offsets[(topic, partition)] = offset

    def release(self, partition: int, behind: Collection[tuple[str, int]]) -> list[T]:
        """The partition's samples that may go to the detectors now, in ``ts`` order: those no topic of
        ``behind`` (topic-partitions with unread messages) can still precede."""
        held = self._held.get(partition)
        if not held:
            return []
        limit = min(
            (
                self.reached.get((topic, partition), float("-inf"))
                for topic in self.topics
                if (topic, partition) in behind
            ),
            default=float("inf"),
        )
        released = []
        while held and held[0][0] <= limit:
            released.append(heapq.heappop(held)[2])
        return released

    def flush(self, partition: int) -> list[T]:
        """Everything the partition holds, in ``ts`` order (its partition is revoked, or the worker stops)."""
        held = self._held.pop(partition, [])
        return [item for _, _, item in sorted(held)]

    def forget(self, partition: int) -> None:
        """Drop what is known of a partition that went to another worker (it may come back moved on)."""
        self._held.pop(partition, None)
        for topic in self.topics:
            self.reached.pop((topic, partition), None)
            self.offsets.pop((topic, partition), None)

    def partitions(self) -> set[int]:
        """The partitions this aligner has seen samples of (and may hold some of)."""
        return {partition for _, partition in self.reached}
